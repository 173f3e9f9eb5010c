"""An encrypted text field for API keys and callback secrets (S1, S2, S3).

Values are encrypted with ``MultiFernet`` over ``settings.FIELD_ENCRYPTION_KEYS``: the first
key encrypts, every key decrypts, so keys rotate without downtime (``manage.py
rotate_keys``). Decryption never falls back to the ciphertext or an empty string: it raises
``DecryptionError`` so a caller can mark the secret "needs re-entry" and never send garbage
upstream as if it were a key.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.db import models
from django.dispatch import receiver


class DecryptionError(Exception):
    """A stored secret could not be decrypted with any configured key."""


@cache
def _fernet_for(keys: tuple[str, ...]) -> MultiFernet:
    if not keys:
        raise ImproperlyConfigured("FIELD_ENCRYPTION_KEYS is empty.")
    try:
        return MultiFernet([Fernet(key.encode()) for key in keys])
    except (ValueError, TypeError) as exc:
        raise ImproperlyConfigured(
            "FIELD_ENCRYPTION_KEYS holds a malformed key (each must be 32 url-safe "
            "base64-encoded bytes, as made by Fernet.generate_key())."
        ) from exc


def fernet() -> MultiFernet:
    return _fernet_for(tuple(settings.FIELD_ENCRYPTION_KEYS))


@receiver(setting_changed)
def _forget_keys(*, setting: str, **kwargs: Any) -> None:
    if setting == "FIELD_ENCRYPTION_KEYS":
        _fernet_for.cache_clear()


def encrypt(plain: str) -> str:
    return fernet().encrypt(plain.encode()).decode()


def decrypt(token: str) -> str:
    try:
        return fernet().decrypt(token.encode()).decode()
    except InvalidToken:
        raise DecryptionError(
            "This secret cannot be decrypted with the configured FIELD_ENCRYPTION_KEYS."
        ) from None


def rotate(token: str) -> str:
    """Re-encrypt ``token`` under the first key (MultiFernet.rotate keeps the timestamp)."""
    try:
        return fernet().rotate(token.encode()).decode()
    except InvalidToken:
        raise DecryptionError("Cannot rotate: no configured key decrypts this value.") from None


class EncryptedSecret:
    """What an encrypted field holds in Python: the ciphertext, decrypted only on demand.

    Keeping the ciphertext until ``reveal()`` is called means that loading a row, printing
    it, or rendering it in an error report never decrypts (and so never leaks) the secret.
    """

    __slots__ = ("token",)

    def __init__(self, token: str) -> None:
        self.token = token

    def reveal(self) -> str:
        return decrypt(self.token)

    def __repr__(self) -> str:
        return "<EncryptedSecret ****>"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, EncryptedSecret) and other.token == self.token

    def __hash__(self) -> int:
        return hash(self.token)


class EncryptedTextField(models.TextField):
    """Stores a Fernet token; assign plain text, read back an ``EncryptedSecret``."""

    description = "Encrypted text"

    def from_db_value(self, value: str | None, *args: Any) -> EncryptedSecret | None:
        return None if value is None else EncryptedSecret(value)

    def to_python(self, value: Any) -> Any:
        if value is None or isinstance(value, EncryptedSecret):
            return value
        return EncryptedSecret(encrypt(str(value)))

    def get_prep_value(self, value: Any) -> str | None:
        if value is None:
            return None
        if isinstance(value, EncryptedSecret):
            return value.token
        return encrypt(str(value))

    def value_to_string(self, obj: models.Model) -> str:
        # dumpdata writes the ciphertext, never the plain secret.
        value = self.value_from_object(obj)
        return "" if value is None else self.get_prep_value(value) or ""
