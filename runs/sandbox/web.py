"""Requests and answers as the sandbox's handlers see them, plus list paging and filters."""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from email.message import Message
from io import BufferedIOBase
from pathlib import Path
from typing import Any, TypeVar

from runs.sandbox.state import Org
from runs.sandbox.util import ApiError, dumps

T = TypeVar("T")
DEFAULT_LIMIT = 50
MAX_LIMIT = 500
_CHUNK = 64 * 1024


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: Message
    rfile: BufferedIOBase
    max_body: int
    org: Org | None = None
    request_id: str = ""
    consumed: bool = False
    fault: str | None = None
    _body: bytes | None = field(default=None, repr=False)

    def param(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None

    def content_length(self) -> int | None:
        raw = self.headers.get("Content-Length")
        if raw is None:
            return None if self.headers.get("Transfer-Encoding") else 0
        try:
            value = int(raw)
        except ValueError:
            return None
        return value if value >= 0 else None

    def body(self) -> bytes:
        if self._body is None:
            length = self.content_length()
            if length is None:
                raise ApiError(411, "LENGTH_REQUIRED", "Send a Content-Length header.")
            if length > self.max_body:
                raise ApiError(
                    413, "PAYLOAD_TOO_LARGE", f"The body is larger than {self.max_body} bytes."
                )
            self._body = self.rfile.read(length) if length else b""
            self.consumed = True
        return self._body

    def json(self, *, required: bool = True) -> Any:
        raw = self.body()
        if not raw.strip():
            if required:
                raise ApiError(400, "BAD_REQUEST", "Send a JSON body.")
            return None
        try:
            return json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise ApiError(400, "BAD_REQUEST", "The body is not valid JSON.") from None

    def save_body(self, path: Path, length: int) -> None:
        remaining = length
        with path.open("wb") as out:
            while remaining:
                chunk = self.rfile.read(min(_CHUNK, remaining))
                if not chunk:
                    raise ApiError(400, "BAD_REQUEST", "The upload ended early.")
                out.write(chunk)
                remaining -= len(chunk)
        self.consumed = True


@dataclass
class Answer:
    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    path: Path | None = None

    @classmethod
    def json(cls, status: int, data: Any, **headers: str) -> Answer:
        return cls(status, dumps(data), headers=dict(headers))


def paginate[T](
    request: Request, items: Sequence[T], position: Callable[[T], int], render: Callable[[T], Any]
) -> dict[str, Any]:
    """The list envelope over ``items`` (already in display order; ``position`` increases)."""
    limit = _limit(request.param("limit"))
    cursor = request.param("pq")
    if cursor:
        direction, anchor = _decode(cursor)
        if direction == "a":
            start = next((i for i, item in enumerate(items) if position(item) > anchor), len(items))
            page = list(items[start : start + limit])
        else:
            end = next((i for i, item in enumerate(items) if position(item) >= anchor), len(items))
            start = max(0, end - limit)
            page = list(items[start:end])
    else:
        start = 0
        page = list(items[:limit])
    has_more = start + len(page) < len(items)
    rendered = [render(item) for item in page]
    fields = request.param("fields")
    if fields:
        wanted = {name.strip() for name in fields.split(",")} | {"id"}
        rendered = [
            {k: v for k, v in row.items() if k in wanted} if isinstance(row, dict) else row
            for row in rendered
        ]
    return {
        "items": rendered,
        "first": None,
        "next": _encode("a", position(page[-1])) if page and has_more else None,
        "previous": _encode("b", position(page[0])) if page and start > 0 else None,
    }


def _limit(raw: str | None) -> int:
    if raw is None:
        return DEFAULT_LIMIT
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise ApiError(
            422,
            "VALIDATION_ERROR",
            "limit must be between 1 and 500.",
            [
                {
                    "loc": ["query", "limit"],
                    "msg": "Input should be between 1 and 500",
                    "type": "range",
                }
            ],
        )
    return int(raw)


def _encode(direction: str, anchor: int) -> str:
    return base64.urlsafe_b64encode(f"{direction}:{anchor}".encode()).decode().rstrip("=")


def _decode(cursor: str) -> tuple[str, int]:
    try:
        direction, anchor = (
            base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode().split(":")
        )
        if direction in ("a", "b"):
            return direction, int(anchor)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        pass
    raise ApiError(
        422,
        "VALIDATION_ERROR",
        "pq is not a cursor this API gave out.",
        [{"loc": ["query", "pq"], "msg": "Invalid cursor", "type": "value_error"}],
    )


# q=client_ref.EQ:'abc' AND status_code:succeeded (the two syntaxes Runflow's docs show)
_TERM = re.compile(
    r"^\s*(?P<field>[a-z_]+)(?:\.EQ)?\s*[:=]\s*(?P<value>'(?:[^'\\]|\\.)*'|\"[^\"]*\"|\S+)\s*$"
)


def parse_filter(raw: str | None, allowed: Sequence[str]) -> dict[str, str]:
    if not raw:
        return {}
    terms: dict[str, str] = {}
    for part in re.split(r"\s+AND\s+", raw.strip()):
        match = _TERM.match(part)
        if not match or match["field"] not in allowed:
            raise ApiError(
                422,
                "VALIDATION_ERROR",
                f"Unsupported filter {part!r}: use field.EQ:'value' on {', '.join(allowed)}.",
                [{"loc": ["query", "q"], "msg": "Unsupported filter", "type": "value_error"}],
            )
        value = match["value"]
        if value[:1] in ("'", '"') and value[-1:] == value[:1]:
            value = value[1:-1].replace("\\'", "'")
        terms[match["field"]] = value
    return terms
