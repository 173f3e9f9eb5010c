"""The only code that speaks HTTP to Runflow: client, schemas, errors, signing."""

from runs.runflow.client import RunflowClient
from runs.runflow.errors import (
    AuthenticationFailed,
    Conflict,
    NotFound,
    OutcomeUnknown,
    OutOfCredit,
    PermissionDenied,
    ProtocolError,
    RateLimited,
    RunflowError,
    Unavailable,
    ValidationFailed,
)
from runs.runflow.signing import sign, verify

__all__ = [
    "AuthenticationFailed",
    "Conflict",
    "NotFound",
    "OutOfCredit",
    "OutcomeUnknown",
    "PermissionDenied",
    "ProtocolError",
    "RateLimited",
    "RunflowClient",
    "RunflowError",
    "Unavailable",
    "ValidationFailed",
    "sign",
    "verify",
]
