"""What can go wrong when the site talks to Runflow, as a small hierarchy of exceptions.

Every error carries ``message``: a sentence a person can act on (it is shown on run pages and
the connection page as is, so it never contains a key or a secret), plus ``status`` (the HTTP
status, or None when no answer arrived), ``code`` (Runflow's machine code, e.g.
``RUN_NOT_FOUND``) and ``retryable`` (trying the same call again later may succeed).

``error_from_response`` is the one table that turns an HTTP answer into one of these.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import httpx
from pydantic import ValidationError

from runs.runflow.schemas import ErrorEnvelope

# Runflow's own error text is foreign data of unknown length: keep what we show bounded.
_MAX_DETAIL = 300
_SECONDS_RE = re.compile(r"[0-9]{1,9}(?:\.[0-9]{1,6})?")


class RunflowError(Exception):
    """Base class: Runflow refused or failed the request, or could not be reached."""

    retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str = "",
        request_id: str = "",
        retryable: bool | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.request_id = request_id
        if retryable is not None:
            self.retryable = retryable

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}(status={self.status!r}, code={self.code!r})"


class AuthenticationFailed(RunflowError):
    """401: the key is missing, wrong or revoked."""


class OutOfCredit(RunflowError):
    """402: the organization's balance cannot pay for the run (or the whole batch)."""


class PermissionDenied(RunflowError):
    """403: the key works but lacks a scope or role for this action."""


class NotFound(RunflowError):
    """404: unknown id, another organization's object, or a model that is not available."""


class Conflict(RunflowError):
    """409: e.g. an Idempotency-Key reused with a different body."""


class ValidationFailed(RunflowError):
    """422 (or a request refused before sending): ``field_errors`` maps a field to messages."""

    def __init__(
        self,
        message: str,
        *,
        field_errors: Mapping[str, list[str]] | None = None,
        status: int | None = 422,
        code: str = "",
        request_id: str = "",
    ) -> None:
        super().__init__(message, status=status, code=code, request_id=request_id)
        self.field_errors: dict[str, list[str]] = {
            k: list(v) for k, v in (field_errors or {}).items()
        }


class RateLimited(RunflowError):
    """429 on every attempt; ``retry_after`` is Runflow's hint in seconds, when it gave one."""

    retryable = True

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class Unavailable(RunflowError):
    """Nothing useful reached Runflow, or it answered 5xx: safe to try again later."""

    retryable = True


class OutcomeUnknown(RunflowError):
    """A create request may have reached Runflow but its answer was lost.

    Never re-POST blindly: look the object up by ``client_ref`` (``find_runs``) first, then
    send it again with the same Idempotency-Key only if it is not there.
    """


class ProtocolError(RunflowError):
    """Runflow answered with something the site cannot read (not JSON, wrong shape)."""


# ---- the one table from an HTTP answer to an exception ----


def error_from_response(response: httpx.Response, *, attempts: int = 1) -> RunflowError:
    """The exception for a non-2xx answer, with a message a person can act on."""
    status = response.status_code
    envelope = _envelope(response)
    code = envelope.code
    detail = _bounded(envelope.message)
    request_id = response.headers.get("runflow-request-id", "")
    common: dict[str, Any] = {"status": status, "code": code, "request_id": request_id}
    said = f" Runflow said: “{detail}”" if detail else ""

    if status == 401:
        return AuthenticationFailed(
            "Runflow refused the API key (401). Check the key on the team's Runflow "
            "connection page.",
            **common,
        )
    if status == 402 or code.upper() in ("INSUFFICIENT_CREDIT", "INSUFFICIENT_CREDITS"):
        return OutOfCredit(
            "Runflow says the organization is out of credit (402). Add credit in the Runflow "
            "dashboard, then launch again.",
            **common,
        )
    if status == 403:
        return PermissionDenied(
            f"Runflow refused this action for the team's key (403, {code or 'no code'})."
            f"{said} Check the key's scopes, or use an admin key for admin actions.",
            **common,
        )
    if status == 404:
        return NotFound(_not_found_message(code, said), **common)
    if status == 409:
        return Conflict(
            f"Runflow reports a conflict (409).{said} If the same request was already sent, "
            "look it up instead of sending it again.",
            **common,
        )
    if status == 422:
        fields = envelope.field_errors()
        listed = "; ".join(f"{name}: {', '.join(msgs)}" for name, msgs in fields.items())
        return ValidationFailed(
            f"Runflow rejected the input (422): {_bounded(listed) or detail or 'no details'}. "
            "Correct the input and launch again.",
            field_errors=fields,
            **common,
        )
    if status == 429:
        retry_after = retry_after_seconds(response)
        wait = f"{retry_after:g} s" if retry_after is not None else "a minute"
        return RateLimited(
            f"Runflow is rate limiting this key (429, {plural(attempts, 'attempt')}). Wait {wait} "
            "and try again.",
            retry_after=retry_after,
            retryable=True,
            **common,
        )
    if status >= 500:
        return Unavailable(
            f"Runflow is unavailable ({status}, {plural(attempts, 'attempt')}).{said} Try again "
            "in a few minutes; runs already launched are not affected.",
            **common,
        )
    if 300 <= status < 400:
        return ProtocolError(
            f"Runflow answered with a redirect ({status}). Check the API URL on the "
            "connection page: it must be the API's base address, e.g. https://api.runflow.io.",
            **common,
        )
    return RunflowError(
        f"Runflow refused the request ({status}, {code or 'no code'}).{said}",
        **common,
    )


def _not_found_message(code: str, said: str) -> str:
    if code.upper() == "MODEL_UNAVAILABLE":
        return (
            f"This model is not available on Runflow (404, MODEL_UNAVAILABLE).{said} Pick "
            "another model, or sync the catalog to see what is offered now."
        )
    return (
        f"Runflow does not know this object (404, {code or 'no code'}).{said} It may belong "
        "to another Runflow organization, or the id is wrong."
    )


def retry_after_seconds(response: httpx.Response) -> float | None:
    """A numeric ``Retry-After`` in seconds; None when absent, an HTTP date, or nonsense."""
    raw = response.headers.get("retry-after", "").strip()
    # delta-seconds only (RFC 9110); a date is not known from Runflow: our backoff applies.
    if not _SECONDS_RE.fullmatch(raw):
        return None
    return float(raw)


def _envelope(response: httpx.Response) -> ErrorEnvelope:
    try:
        return ErrorEnvelope.model_validate(response.json())
    except (ValueError, ValidationError):
        return ErrorEnvelope(code="", message=response.reason_phrase or "")


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _bounded(text: str | None) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= _MAX_DETAIL else text[: _MAX_DETAIL - 1] + "…"
