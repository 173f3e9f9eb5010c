"""Small helpers shared by the sandbox modules: ids, clocks, JSON, the API error."""

from __future__ import annotations

import json
import os
import secrets
import time
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any


class ApiError(Exception):
    """An answer in Runflow's error envelope: ``{"code", "message", "errors"}``."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.errors = errors
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "errors": self.errors}


def uuid7() -> uuid.UUID:
    """A UUIDv7 (time-ordered), as Runflow uses for run ids (Python 3.13 has no uuid7)."""
    millis = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    rand_a = (rand >> 68) & 0xFFF
    rand_b = rand & ((1 << 62) - 1)
    value = (millis & ((1 << 48) - 1)) << 80 | 0x7 << 76 | rand_a << 64 | 0b10 << 62 | rand_b
    return uuid.UUID(int=value)


def now() -> datetime:
    return datetime.now(UTC)


def iso_z(moment: datetime | None) -> str | None:
    """REST bodies: ISO-8601 with a ``Z``, as Runflow's reference examples show."""
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def iso_offset(moment: datetime | None) -> str | None:
    """Callback bodies: milliseconds and ``+00:00``, never ``Z`` (the contract's example)."""
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


def money(value: Decimal | None) -> str | None:
    """Money is a decimal string in USD."""
    if value is None:
        return None
    text = format(value.quantize(Decimal("0.0001")).normalize(), "f")
    whole, _, fraction = text.partition(".")
    return f"{whole}.{fraction.ljust(2, '0')}"


def _default(value: Any) -> Any:
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, Decimal):
        return money(value)
    if isinstance(value, datetime):
        return iso_z(value)
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    raise TypeError(f"cannot serialize {type(value).__name__}")


def dumps(data: Any) -> bytes:
    return json.dumps(data, default=_default, ensure_ascii=False, separators=(",", ":")).encode()


def canonical(data: Any) -> bytes:
    """Key-order independent bytes, to compare two request bodies for idempotency."""
    return json.dumps(data, default=_default, sort_keys=True, separators=(",", ":")).encode()


def token(nbytes: int = 16) -> str:
    return secrets.token_hex(nbytes)
