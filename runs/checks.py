"""System checks. Those tagged ``deploy`` run with ``manage.py check --deploy`` (S5, B1)."""

from __future__ import annotations

from typing import Any

from cryptography.fernet import Fernet
from django.conf import settings
from django.core.checks import Error, Tags, Warning, register


@register(Tags.security, deploy=True)
def check_generated_secrets(app_configs: Any, **kwargs: Any) -> list[Error]:
    """Production must bring its own SECRET_KEY and FIELD_ENCRYPTION_KEYS."""
    errors = []
    for name in sorted(settings.GENERATED_SECRETS):
        label = "FIELD_ENCRYPTION_KEYS" if name == "FIELD_ENCRYPTION_KEY" else name
        errors.append(
            Error(
                f"{label} was generated into var/secrets.json for the embedded default.",
                hint=f"Set {label} in the environment for a deployment.",
                id="runs.E001",
            )
        )
    return errors


@register(Tags.security, deploy=True)
def check_encryption_keys(app_configs: Any, **kwargs: Any) -> list[Error]:
    errors = []
    keys = settings.FIELD_ENCRYPTION_KEYS
    if not keys:
        errors.append(Error("FIELD_ENCRYPTION_KEYS is empty.", id="runs.E002"))
    for position, key in enumerate(keys, start=1):
        try:
            Fernet(key.encode())
        except (ValueError, TypeError):
            errors.append(
                Error(
                    f"FIELD_ENCRYPTION_KEYS entry {position} is not a valid Fernet key.",
                    hint="Make one with: python -c 'from cryptography.fernet import Fernet; "
                    "print(Fernet.generate_key().decode())'",
                    id="runs.E003",
                )
            )
    return errors


@register(Tags.security, deploy=True)
def check_site_url(app_configs: Any, **kwargs: Any) -> list[Warning]:
    if not settings.SITE_URL.startswith("https://"):
        return [
            Warning(
                "SITE_URL is not https: Runflow would send callbacks over plain HTTP.",
                hint="Set SITE_URL to the public https:// address of this site.",
                id="runs.W001",
            )
        ]
    return []
