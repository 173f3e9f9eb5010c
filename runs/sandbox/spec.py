"""How the sandbox describes a model: ModelInput/ModelOutput builders and ``Spec``.

``Spec.to_json`` is the Model object of the contract (inputs, outputs, examples, price label,
cover); the rest of ``Spec`` (kind, steps, nodes, price) is the sandbox's own: how a run of
the model behaves and what it costs.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

_NAMESPACE = uuid.UUID("6f0c5b1e-3a52-4c0b-9d3e-5b7a2f1c0e11")
_CREATED = "2026-01-12T09:00:00Z"
_UPDATED = "2026-04-28T14:30:00Z"


def field_(
    name: str,
    type_code: str,
    description: str,
    *,
    display: str | None = None,
    required: bool = False,
    default: Any = None,
    featured: bool = False,
    validator: str | None = None,
    **attrs: Any,
) -> dict[str, Any]:
    """One ModelInput. ``attrs`` become ``validator_attrs`` (choices, min, max ...)."""
    return {
        "name": name,
        "display_name": display or name.replace("_", " ").capitalize(),
        "description": description,
        "variable_type_code": type_code,
        "is_required": required,
        "default_value": default,
        "default_behavior_code": "use_default" if default is not None else "omit",
        "validator_code": validator or _validator_code(attrs),
        "validator_attrs": attrs,
        "is_featured": featured,
    }


def _validator_code(attrs: dict[str, Any]) -> str | None:
    if "choices" in attrs:
        return "choices"
    if "min_length" in attrs or "max_length" in attrs:
        return "length"
    return "range" if attrs else None


def output_(name: str, type_code: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "display_name": name.replace("_", " ").capitalize(),
        "description": description,
        "variable_type_code": type_code,
        "validator_code": None,
        "validator_attrs": {},
    }


@dataclass(frozen=True)
class Spec:
    """How a model's runs behave in the sandbox."""

    model_id: str
    name: str
    description: str
    category: str
    kind: str  # image | video | audio: what the outputs are
    price: Decimal
    unit: str  # image | second | request | megapixel
    inputs: list[dict[str, Any]]
    outputs: list[dict[str, Any]]
    price_label: str
    transform: str = "generate"  # generate | edit | cutout | upscale | remove
    running_steps: int = 1
    nodes: tuple[str, ...] = ()
    supports_batch: bool = False
    available: bool = True
    examples: list[dict[str, Any]] = field(default_factory=list)
    features: tuple[str, ...] = ()

    @property
    def uuid(self) -> uuid.UUID:
        return uuid.uuid5(_NAMESPACE, self.model_id)

    @property
    def slug(self) -> str:
        return self.model_id.replace("/", "--")

    def input(self, name: str) -> dict[str, Any] | None:
        return next((item for item in self.inputs if item["name"] == name), None)

    def to_json(self, public_url: str) -> dict[str, Any]:
        owner, _, slug = self.model_id.partition("/")
        cover = f"{public_url}/files/covers/{self.slug}.png"
        return {
            "id": self.model_id,
            "uuid": str(self.uuid),
            "owner": owner,
            "slug": slug,
            "name": self.name,
            "description": self.description,
            "content": f"# {self.name}\n\n{self.description}\n",
            "version": "1.0",
            "category_code": self.category,
            "status_code": "active" if self.available else "deprecated",
            "availability_status": "available" if self.available else "unavailable",
            "is_public": True,
            "is_official": True,
            "is_open_source": False,
            "license_code": "commercial",
            "price_label": self.price_label,
            "pricing_note": f"Sandbox pricing, modelled on Runflow's: {self.price_label}.",
            "supports_batch": self.supports_batch,
            "cover_url": cover,
            "icon_url": cover,
            "notable_features": list(self.features),
            "inputs": [
                {
                    "id": str(uuid.uuid5(self.uuid, item["name"])),
                    "model_id": str(self.uuid),
                    **item,
                    "sort_order": index,
                    "created_at": _CREATED,
                    "updated_at": _UPDATED,
                }
                for index, item in enumerate(self.inputs)
            ],
            "outputs": [
                {"id": str(uuid.uuid5(self.uuid, "out:" + item["name"])), **item, "sort_order": i}
                for i, item in enumerate(self.outputs)
            ],
            "examples": [
                {
                    "id": str(uuid.uuid5(self.uuid, f"example:{index}")),
                    "model_id": str(self.uuid),
                    "title": example["title"],
                    "description": example.get("description", ""),
                    "input": example["input"],
                    "output": {
                        "outputs": [
                            {
                                "type": self.kind if self.kind == "image" else "image",
                                "url": f"{public_url}/files/examples/{self.slug}/{index}.png",
                            }
                        ]
                    },
                    "thumbnail_url": f"{public_url}/files/examples/{self.slug}/{index}.png",
                    "is_featured": index == 0,
                    "sort_order": index,
                }
                for index, example in enumerate(self.examples)
            ],
            "created_at": _CREATED,
            "updated_at": _UPDATED,
        }
