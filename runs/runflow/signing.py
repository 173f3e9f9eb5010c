"""Runflow-Signature: sign and verify callback bodies (RUNFLOW_API.md "Callbacks", W1).

The signature is the lowercase hex HMAC-SHA256 of the raw body bytes, keyed with the UTF-8
bytes of the whole ``plain_secret`` string, ``whsec_`` prefix included (no base64 decoding,
no timestamp, no ``sha256=`` prefix). Verify over ``request.body`` exactly as received: a
re-serialized body does not verify.
"""

from __future__ import annotations

import hashlib
import hmac
import string
from collections.abc import Sequence

SIGNATURE_LENGTH = 64  # hex characters of a SHA-256 digest
_HEX = frozenset(string.hexdigits)


def sign(body: bytes, secret: str) -> str:
    """The ``Runflow-Signature`` value for ``body`` under ``secret``."""
    if not secret:
        raise ValueError("a callback secret must not be empty")
    return hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def verify(body: bytes, signature: str | None, secrets: Sequence[str]) -> int | None:
    """The index in ``secrets`` of the secret that signed ``body``, or None.

    During a rotation a team holds two active secrets; each one is checked, and every check
    runs to the end (no early return on a match), so the time taken does not tell an
    attacker which secret, or which prefix of a signature, was right.
    """
    candidate = _well_formed(signature)
    if candidate is None:
        return None
    match: int | None = None
    for index, secret in enumerate(secrets):
        if not secret:
            continue
        expected = sign(body, secret).encode("ascii")
        if hmac.compare_digest(expected, candidate) and match is None:
            match = index
    return match


def _well_formed(signature: str | None) -> bytes | None:
    # The shape is public (64 hex characters), so refusing other shapes early leaks nothing.
    if not signature:
        return None
    text = signature.strip()
    if len(text) != SIGNATURE_LENGTH or not set(text) <= _HEX:
        return None
    return text.lower().encode("ascii")
