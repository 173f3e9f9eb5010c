"""Lenient scalar types for Runflow's JSON, and the few strict checks on ids and URLs.

One odd value (a cost that is not a number, an unreadable timestamp) must not make a whole
run unreadable: these readers turn it into None and the rest of the answer still counts.
What the site may later fetch or show (URLs) and put in a path (model ids) is checked
strictly instead.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any
from urllib.parse import parse_qs, urlsplit

from pydantic import BaseModel, BeforeValidator, ConfigDict

logger = logging.getLogger(__name__)

OUTPUT_TYPES = ("image", "video", "audio")
# Model ids are slash paths of any depth ("bytedance/seedance/2.0/fast/text-to-video"). Each
# segment starts with a letter or digit, so "." and ".." can never be a segment, and "%" is
# not allowed at all, so no encoded traversal either.
MODEL_ID_RE = re.compile(
    r"[A-Za-z0-9][A-Za-z0-9._~-]{0,99}(?:/[A-Za-z0-9][A-Za-z0-9._~-]{0,99}){0,9}"
)
MAX_URL_LENGTH = 8192


def is_model_id(value: object) -> bool:
    return isinstance(value, str) and len(value) <= 300 and MODEL_ID_RE.fullmatch(value) is not None


def safe_http_url(value: object) -> str:
    """``value`` unchanged if it is an absolute http(s) URL with a host, else ValueError."""
    if not isinstance(value, str):
        raise ValueError("a URL must be a string")
    if len(value) > MAX_URL_LENGTH or any(ord(ch) <= 32 or ord(ch) == 127 for ch in value):
        raise ValueError("a URL must be short and contain no spaces or control characters")
    parts = urlsplit(value)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ValueError("only absolute http and https URLs are accepted")
    return value


def cursor_of(link: str | None) -> str | None:
    """The cursor to send as ``pq`` for a page link.

    Runflow's ``next`` is a bare cursor or a URL carrying ``pq`` (the docs disagree). We never
    follow a URL we were given (it could point at another host, and we would send our key
    there): we take the cursor out and ask our own base URL.
    """
    if not link:
        return None
    if "://" in link or link.startswith(("/", "?")):
        values = parse_qs(urlsplit(link).query).get("pq")
        return values[0] if values else None
    return link


def to_text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool | int | float | Decimal):
        return str(value)
    return None


def to_count(value: Any) -> int | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, str):
        value = value.strip()
        if not value.isdigit():
            return None
        return int(value)
    if isinstance(value, int | float) and math.isfinite(value) and value >= 0:
        return int(value)
    return None


def to_seconds(value: Any) -> float | None:
    number = to_number(value)
    return number if number is not None and number >= 0 else None


def to_number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def to_money(value: Any) -> Decimal | None:
    # Money is a decimal *string* in USD; accept numbers too, never floats' binary noise.
    if value is None or value == "" or isinstance(value, bool):
        return None
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        logger.warning("Runflow sent an unreadable amount %r; treated as unknown", value)
        return None
    return number if number.is_finite() else None


def to_when(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str) and value.strip():
        try:
            parsed = datetime.fromisoformat(value.strip())
        except ValueError:
            logger.warning("Runflow sent an unreadable timestamp %r; treated as unknown", value)
            return None
    else:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def to_object(value: Any) -> dict[str, Any] | None:
    return dict(value) if isinstance(value, Mapping) else None


def to_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else []


def to_objects(value: Any) -> list[dict[str, Any]]:
    return [dict(item) for item in to_list(value) if isinstance(item, Mapping)]


def to_flag(value: Any) -> bool:
    # "false" is a true value to bool(); Runflow sends JSON booleans, but be exact anyway.
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    return value is True or (isinstance(value, int | float) and value == 1)


def to_optional_url(value: Any) -> str | None:
    # Pictures and links shown in pages: a bad scheme is dropped, not an error (B4).
    try:
        return safe_http_url(value) if value else None
    except ValueError:
        return None


Text = Annotated[str | None, BeforeValidator(to_text)]
Count = Annotated[int | None, BeforeValidator(to_count)]
Seconds = Annotated[float | None, BeforeValidator(to_seconds)]
Money = Annotated[Decimal | None, BeforeValidator(to_money)]
When = Annotated[datetime | None, BeforeValidator(to_when)]
JSONObject = Annotated[dict[str, Any] | None, BeforeValidator(to_object)]
OptionalURL = Annotated[str | None, BeforeValidator(to_optional_url)]
HttpURL = Annotated[str, BeforeValidator(safe_http_url)]


class Lenient(BaseModel):
    """Base of every Runflow shape: unknown fields ignored, names or aliases accepted."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True, protected_namespaces=())
