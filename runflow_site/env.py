"""Typed readers for environment variables.

Every setting comes from the environment. A value that cannot be read is a startup error
with the variable's name in it, never a silent default: a typo in ``DEBUG=flase`` must not
quietly run production in some other mode.
"""

from __future__ import annotations

import json
import math
import os
import secrets
from collections.abc import Callable
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default).strip()


def env_bool(name: str, default: bool = False) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name}={raw!r} is not a boolean (use 1/0, true/false, yes/no).")


def env_int(name: str, default: int, *, minimum: int | None = None) -> int:
    return _env_number(name, default, int, "a whole number", minimum)


def env_float(name: str, default: float, *, minimum: float | None = None) -> float:
    return _env_number(name, default, _finite, "a finite number", minimum)


def _finite(raw: str) -> float:
    value = float(raw)
    if not math.isfinite(value):  # "inf" and "nan" parse, but mean no setting
        raise ValueError(raw)
    return value


def _env_number[N: (int, float)](
    name: str, default: N, parse: Callable[[str], N], kind: str, minimum: N | None
) -> N:
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = parse(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not {kind}.") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name}={raw!r} is below its minimum of {minimum}.")
    return value


def env_list(name: str, default: list[str] | None = None) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return list(default or [])
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_url(name: str, default: str) -> str:
    value = env_str(name, default).rstrip("/")
    if not value.startswith(("http://", "https://")):
        raise ImproperlyConfigured(f"{name}={value!r} must be an http:// or https:// URL.")
    return value


class GeneratedSecrets:
    """Secrets made once for the embedded default and kept in ``var/secrets.json``.

    Production must set its own; the ``deploy`` system check refuses generated ones.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.used: set[str] = set()
        self._values: dict[str, str] | None = None

    def _load(self) -> dict[str, str]:
        if self._values is None:
            if self.path.exists():
                self._values = json.loads(self.path.read_text())
            else:
                self._values = {}
        return self._values

    def get(self, name: str, make: str) -> str:
        values = self._load()
        if name not in values:
            values[name] = make
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # Written with 0600: these are the keys that protect stored API keys.
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as handle:
                json.dump(values, handle, indent=2)
        self.used.add(name)
        return values[name]


def new_secret_key() -> str:
    return secrets.token_urlsafe(50)


def new_fernet_key() -> str:
    from cryptography.fernet import Fernet

    return Fernet.generate_key().decode()
