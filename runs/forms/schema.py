"""The pydantic model built from a model's input specs: one validator for every way of
launching (the form, batch rows, presets, defaults), with one table of human messages.

Field names inside the model are positional (``f0``, ``f1``…) with the input's name as the
alias, so an input called ``model_config`` or ``schema`` cannot collide with pydantic.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    create_model,
)

from runs.forms.inputs import (
    CONTROL_CHARACTERS_MESSAGE,
    MAX_JSON_CHARS,
    MAX_TEXT_LENGTH,
    MAX_URL_LENGTH,
    InputSpec,
    Kind,
    choice_key,
    has_control_characters,
    is_blank,
)

TEXT_KINDS = (Kind.TEXT, Kind.LONG_TEXT, Kind.PROMPT)


def _reject_bool(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("Enter a number, not yes or no.")
    return value


def _finite(value: float | int) -> float | int:
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("Enter a finite number.")
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    return value


def _no_control_characters(value: str) -> str:
    if has_control_characters(value):
        raise ValueError(CONTROL_CHARACTERS_MESSAGE)
    return value


def _check_url(value: str) -> str:
    if not is_http_url(value):
        raise ValueError("Enter an http:// or https:// address.")
    return value


def is_http_url(value: object) -> bool:
    if not isinstance(value, str) or len(value) > MAX_URL_LENGTH:
        return False
    try:
        parts = urlsplit(value.strip())
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def _choice_validator(spec: InputSpec) -> Callable[[Any], Any]:
    allowed = spec.choice_map

    def check(value: Any) -> Any:
        if isinstance(value, dict | list):
            raise ValueError("Choose one of the allowed values.")
        found = allowed.get(choice_key(value))
        if found is None:
            shown = ", ".join(list(allowed)[:8]) + ("…" if len(allowed) > 8 else "")
            raise ValueError(f"Choose one of the allowed values ({shown}).")
        return found

    return check


def _json_size(value: Any) -> Any:
    try:
        size = len(json.dumps(value))
    except (TypeError, ValueError):
        raise ValueError("This is not JSON.") from None
    if size > MAX_JSON_CHARS:
        raise ValueError(f"At most {MAX_JSON_CHARS:,} characters of JSON.")
    return value


def _annotation(spec: InputSpec) -> Any:
    if spec.kind == Kind.CHOICE:
        return Annotated[Any, AfterValidator(_choice_validator(spec))]
    if spec.kind in TEXT_KINDS:
        return Annotated[
            str,
            Field(
                min_length=spec.min_length or (1 if spec.required else None),
                max_length=min(spec.max_length or MAX_TEXT_LENGTH, MAX_TEXT_LENGTH),
            ),
            AfterValidator(_no_control_characters),
        ]
    if spec.kind == Kind.INTEGER:
        return Annotated[
            int, BeforeValidator(_reject_bool), Field(ge=spec.minimum, le=spec.maximum)
        ]
    if spec.kind == Kind.NUMBER:
        return Annotated[
            float,
            BeforeValidator(_reject_bool),
            Field(ge=spec.minimum, le=spec.maximum, allow_inf_nan=False),
            AfterValidator(_finite),
        ]
    if spec.kind == Kind.BOOLEAN:
        return bool
    if spec.kind == Kind.MEDIA:
        return Annotated[str, AfterValidator(_check_url)]
    if spec.kind == Kind.MEDIA_LIST:
        item = Annotated[str, AfterValidator(_check_url)]
        return Annotated[
            list[item],  # type: ignore[valid-type]
            Field(min_length=1 if spec.required else None, max_length=spec.max_items),
        ]
    return Annotated[Any, AfterValidator(_json_size)]


# One table from pydantic's error types to sentences (STYLE.md, practice 5).
_MESSAGES: dict[str, str] = {
    "missing": "This input is required.",
    "greater_than_equal": "Must be at least {ge}.",
    "less_than_equal": "Must be at most {le}.",
    "greater_than": "Must be more than {gt}.",
    "less_than": "Must be less than {lt}.",
    "string_too_short": "Must be at least {min_length} characters.",
    "string_too_long": "Must be at most {max_length} characters.",
    "too_short": "Give at least {min_length} items.",
    "too_long": "Give at most {max_length} items.",
    "int_parsing": "Enter a whole number.",
    "int_from_float": "Enter a whole number.",
    "int_type": "Enter a whole number.",
    "float_parsing": "Enter a number.",
    "float_type": "Enter a number.",
    "finite_number": "Enter a finite number.",
    "bool_parsing": "Enter yes or no.",
    "bool_type": "Enter yes or no.",
    "string_type": "Enter text.",
    "list_type": "Give a list.",
}


def human_message(error: Mapping[str, Any]) -> str:
    kind = str(error.get("type", ""))
    if kind == "value_error":
        context = error.get("ctx") or {}
        return str(context.get("error") or error.get("msg") or "This value is not valid.")
    template = _MESSAGES.get(kind)
    if template is None:
        return str(error.get("msg") or "This value is not valid.")
    context = {k: _plain(v) for k, v in (error.get("ctx") or {}).items()}
    try:
        return template.format(**context)
    except (KeyError, IndexError, ValueError):
        return str(error.get("msg") or "This value is not valid.")


@dataclass
class Validated:
    input: dict[str, Any]
    errors: dict[str, list[str]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.errors


class InputSchema:
    """The pydantic model of a model's inputs: one validator for every way of launching."""

    def __init__(self, specs: Sequence[InputSpec]) -> None:
        self.specs = tuple(specs)
        self._blank_is_missing = {
            spec.name for spec in self.specs if spec.required and spec.kind in TEXT_KINDS
        }
        fields: dict[str, Any] = {}
        # Field names are positional (f0, f1…) with the input name as alias: an input named
        # ``model_config`` or ``schema`` must not collide with pydantic's own attributes.
        for position, spec in enumerate(self.specs):
            annotation = _annotation(spec)
            if spec.required:
                fields[f"f{position}"] = (annotation, Field(alias=spec.name))
            else:
                fields[f"f{position}"] = (annotation | None, Field(default=None, alias=spec.name))
        self.model: type[BaseModel] = create_model(
            "LaunchInput",
            __config__=ConfigDict(extra="ignore", populate_by_name=False),
            **fields,
        )

    def validate(self, data: Mapping[str, Any]) -> Validated:
        """Validate ``data`` (JSON-native values); keys the model does not know are kept.

        Unknown keys are passed through untouched: the catalog may be older than the
        model, and Runflow, not us, has the last word on what it accepts.
        """
        # A required text of nothing but spaces is missing: Runflow would refuse it (422)
        # after the run was saved, so it is refused here, with the same message as empty.
        present = {
            key: value
            for key, value in data.items()
            if not (value is None or value == "" or value == [])
            and not (key in self._blank_is_missing and is_blank(value))
        }
        try:
            parsed = self.model.model_validate(present)
        except ValidationError as exc:
            errors: dict[str, list[str]] = {}
            for error in exc.errors():
                location = error.get("loc") or ("",)
                errors.setdefault(str(location[0]), []).append(human_message(error))
            return Validated(dict(present), errors)
        clean = parsed.model_dump(by_alias=True, exclude_unset=True, exclude_none=True)
        known = {spec.name for spec in self.specs}
        clean.update({k: v for k, v in present.items() if k not in known})
        return Validated(clean)


def _plain(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value
