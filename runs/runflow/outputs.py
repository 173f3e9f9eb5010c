"""Runflow's run output, normalized: ``{"outputs": [{"type", "url", ...}]}``.

``normalize_output`` is the one place where legacy output shapes (``{"image_urls": [...]}``,
ComfyUI's ``{"image": [...]}``, a bare ``url``) become the normalized ``outputs[]``, with a
warning logged; nothing else in the site knows those shapes (RUNFLOW_API.md "Output").
"""

from __future__ import annotations

import logging
import mimetypes
from collections.abc import Iterable, Mapping
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    ValidationError,
    field_validator,
    model_validator,
)

from runs.runflow.scalars import OUTPUT_TYPES, Count, HttpURL, Lenient, Seconds, Text

logger = logging.getLogger(__name__)


class OutputItem(Lenient):
    type: str = "other"  # image | video | audio, anything else becomes "other"
    url: HttpURL
    width: Count = None
    height: Count = None
    duration: Seconds = None
    content_type: Text = None
    size_bytes: Count = None

    @model_validator(mode="before")
    @classmethod
    def _infer_type(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and not data.get("type"):
            guessed = _type_from(data.get("content_type")) or _type_from_url(data.get("url"))
            data = {**data, "type": guessed or "other"}
        return data

    @field_validator("type", mode="before")
    @classmethod
    def _known_type(cls, value: Any) -> str:
        kind = str(value or "").strip().lower()
        return kind if kind in OUTPUT_TYPES else "other"


class NormalizedOutput(BaseModel):
    """``{"outputs": [...]}``; other keys Runflow sends (seed, a failure envelope) are kept.

    Build it with ``normalize_output``: that is where legacy shapes are converted and unsafe
    entries dropped.
    """

    model_config = ConfigDict(extra="allow")

    outputs: list[OutputItem] = []


# Legacy keys that carry output URLs, and the kind of media each one holds (None: guess).
_LEGACY_OUTPUT_KEYS: dict[str, str | None] = {
    "image_urls": "image",
    "images": "image",
    "image": "image",
    "video_urls": "video",
    "video": "video",
    "audio_urls": "audio",
    "audio": "audio",
    "output_url": None,
    "url": None,
}


def normalize_output(raw: Any) -> NormalizedOutput | None:
    """The run's output as ``NormalizedOutput``; None when there is none (yet).

    Accepts the normalized shape and the legacy ones (``{"image_urls": [...]}``, ComfyUI's
    ``{"image": [...]}``, a bare ``url``), logging a warning for the latter. Entries whose URL
    is not http(s) (``javascript:``, ``data:`` from ``sync_mode``...) are dropped and logged,
    so nothing unsafe ever reaches storage or a page.
    """
    if raw is None or isinstance(raw, NormalizedOutput):
        return raw
    if not isinstance(raw, Mapping):
        logger.warning("Runflow sent an output of type %s; ignored", type(raw).__name__)
        return None
    if not raw:
        return None  # "{}" while a run is in flight
    rest = dict(raw)
    if isinstance(rest.get("outputs"), list):
        entries = rest.pop("outputs")
    else:
        rest.pop("outputs", None)
        entries = []
        for key, kind in _LEGACY_OUTPUT_KEYS.items():
            if key in rest:
                logger.warning("Runflow sent a legacy output shape (%r); normalized", key)
                entries.extend(_legacy_entries(rest.pop(key), kind))
    kept = [item for item in map(_output_item, entries) if item is not None]
    return NormalizedOutput.model_construct(outputs=kept, **rest)


def _legacy_entries(value: Any, kind: str | None) -> Iterable[Any]:
    for entry in value if isinstance(value, list | tuple) else [value]:
        if isinstance(entry, str):
            yield {"type": kind or _type_from_url(entry), "url": entry}
        elif isinstance(entry, Mapping):
            yield {"type": kind, **entry}
        else:
            yield entry


def _output_item(entry: Any) -> OutputItem | None:
    try:
        return OutputItem.model_validate(entry)
    except ValidationError as error:
        # Never log the URL itself: a presigned URL is a bearer credential for the file.
        reasons = "; ".join(str(e["msg"]) for e in error.errors(include_url=False))
        logger.warning("Dropped an output entry from Runflow: %s", reasons)
        return None


def _type_from(content_type: Any) -> str | None:
    major = str(content_type or "").split("/", 1)[0].strip().lower()
    return major if major in OUTPUT_TYPES else None


def _type_from_url(url: Any) -> str | None:
    if not isinstance(url, str):
        return None
    guessed, _ = mimetypes.guess_type(urlsplit(url).path)
    return _type_from(guessed)


OutputField = Annotated[NormalizedOutput | None, BeforeValidator(normalize_output)]
