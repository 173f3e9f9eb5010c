"""Checks on what the site is about to send to Runflow, before anything is sent.

A bad value here is refused locally with ``ValidationFailed`` (``status`` None), so the
caller shows it like any refusal from Runflow and nothing odd ever reaches a URL path, a
header or a filter expression.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import urlsplit

from runs.runflow.errors import ValidationFailed
from runs.runflow.scalars import is_model_id, safe_http_url

MAX_UPLOAD_BYTES = 50 * 1024 * 1024  # Runflow's limit for presigned uploads
MAX_BATCH_ITEMS = 100
MAX_CALLBACK_URL = 2048
LIST_LIMIT = 500  # Runflow's largest page

# Keys look like "rf_live_..." or "rf_svc_..."; nothing that could end or smuggle a header.
_KEY_RE = re.compile(r"[A-Za-z0-9_.\-]{8,256}")
# client_ref is quoted inside a filter expression: no quotes, spaces or backslashes.
_REF_RE = re.compile(r"[A-Za-z0-9._:@+=/\-]{1,255}")
_IDEMPOTENCY_RE = re.compile(r"[\x21-\x7e]{1,255}")
_CONTENT_TYPE_RE = re.compile(r"[\w.+-]+/[\w.+-]+")


def refused(field: str, message: str) -> ValidationFailed:
    return ValidationFailed(message, field_errors={field: [message]}, status=None, code="INVALID")


def api_base(base_url: str) -> str:
    """The API's base address without a trailing ``/`` or ``/v1`` (every path adds /v1/)."""
    url = (base_url or "").strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query:
        raise ValueError(f"Runflow's API URL must be an http(s) address, got {base_url!r}")
    return url.removesuffix("/v1")


def is_api_key(value: str) -> bool:
    return bool(value) and _KEY_RE.fullmatch(value) is not None


def model_path(model_id: str) -> str:
    """``model_id`` for a URL path: slashes kept as they are (ids have several segments), and
    the pattern admits no ``..`` segment, ``%``, ``?`` or ``#``."""
    if not is_model_id(model_id):
        raise refused("model_id", f"{str(model_id)[:100]!r} is not a Runflow model id.")
    return model_id


def uuid_text(value: str | uuid.UUID, what: str) -> str:
    """A run, batch or secret id for a URL path: only a UUID is ever put there."""
    try:
        return str(value if isinstance(value, uuid.UUID) else uuid.UUID(str(value)))
    except ValueError:
        field = what.replace(" ", "_")
        raise refused(field, f"{str(value)[:60]!r} is not a Runflow {what}.") from None


def client_ref(value: str | None) -> str | None:
    if value is not None and not _REF_RE.fullmatch(value):
        raise refused("client_ref", "A client reference is 1 to 255 letters, digits or ._:@+=/-.")
    return value


def idempotency_key(value: str | None) -> str:
    # Always send one: even a caller that gave none gets its own retries deduplicated.
    key = value or str(uuid.uuid4())
    if not _IDEMPOTENCY_RE.fullmatch(key):
        raise refused("idempotency_key", "An Idempotency-Key is 1 to 255 visible characters.")
    return key


def callback_url(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        if len(value) > MAX_CALLBACK_URL:
            raise ValueError("too long")
        return safe_http_url(value)
    except ValueError:
        raise refused(
            "callback_url", "A callback URL is an http(s) address of at most 2048 characters."
        ) from None


def batch_inputs(inputs: Any) -> list[dict[str, Any]]:
    items = list(inputs)
    if not 1 <= len(items) <= MAX_BATCH_ITEMS:
        raise refused("inputs", f"A batch holds 1 to {MAX_BATCH_ITEMS} inputs.")
    if not all(isinstance(item, Mapping) for item in items):
        raise refused("inputs", "Each input of a batch is a set of named values.")
    return [dict(item) for item in items]


def cancel_reason(reason: str | None) -> str | None:
    if reason is not None and not 3 <= len(reason.strip()) <= 500:
        raise refused("reason", "A cancellation reason must be 3 to 500 characters.")
    return reason


def upload(filename: str, content_type: str, data: bytes) -> str:
    """The file name to declare (no directories); refuses what Runflow would refuse."""
    name = PurePosixPath(str(filename).replace("\\", "/")).name.strip()
    if not 1 <= len(name) <= 500:
        raise refused("filename", "A file name must be 1 to 500 characters.")
    if not _CONTENT_TYPE_RE.fullmatch(content_type or ""):
        raise refused("content_type", "The file type must look like image/png.")
    if not 1 <= len(data) <= MAX_UPLOAD_BYTES:
        raise refused("file", "Runflow accepts uploads of 1 byte to 50 MiB.")
    return name


def list_params(limit: int, cursor: str | None) -> dict[str, Any]:
    params: dict[str, Any] = {"limit": max(1, min(int(limit), LIST_LIMIT))}
    if cursor:
        params["pq"] = cursor
    return params


def without_none(body: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in body.items() if value is not None}
