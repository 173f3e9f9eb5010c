"""The sandbox's settings: command-line options plus a few environment knobs."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SystemExit(f"{name}={raw!r} is not a number") from None
    if value < 0:
        raise SystemExit(f"{name}={raw!r} must not be negative")
    return value


def _env_int(name: str, default: int) -> int:
    return int(_env_float(name, default))


@dataclass
class Config:
    host: str = "127.0.0.1"
    port: int = 8765
    # Callbacks go only to URLs under one of these; empty means "loopback addresses only".
    callback_bases: list[str] = field(default_factory=list)
    # Base of the URLs the sandbox hands out (outputs, uploads, covers).
    public_url: str = ""
    # Seconds per lifecycle step (queued -> dispatching -> running ...).
    step_seconds: float = 2.0
    # How much longer a run marked [slow] takes.
    slow_factor: float = 10.0
    # Seconds before an output URL answers 403.
    output_ttl: float = 24 * 3600.0
    # Callback delivery: attempts, first backoff (doubles each time), per-attempt timeout.
    callback_attempts: int = 5
    callback_backoff: float = 1.0
    callback_timeout: float = 10.0
    # Where callback secrets survive a restart (None: memory only).
    secrets_file: Path | None = None
    # Bounds: everything the sandbox keeps or does at once is capped.
    max_runs: int = 5000
    max_ledger: int = 20000
    max_body_bytes: int = 1024 * 1024
    max_upload_bytes: int = 50 * 1024 * 1024
    max_storage_bytes: int = 1024 * 1024 * 1024
    max_connections: int = 64
    callback_workers: int = 16
    media_workers: int = 4

    @classmethod
    def from_env(cls, **options: object) -> Config:
        config = cls(
            step_seconds=_env_float("SANDBOX_STEP_SECONDS", 2.0),
            slow_factor=_env_float("SANDBOX_SLOW_FACTOR", 10.0),
            output_ttl=_env_float("SANDBOX_OUTPUT_TTL", 24 * 3600.0),
            callback_attempts=max(1, _env_int("SANDBOX_CALLBACK_ATTEMPTS", 5)),
            callback_backoff=_env_float("SANDBOX_CALLBACK_BACKOFF", 1.0),
            callback_timeout=_env_float("SANDBOX_CALLBACK_TIMEOUT", 10.0),
            max_runs=max(10, _env_int("SANDBOX_MAX_RUNS", 5000)),
        )
        for name, value in options.items():
            if value is not None:
                setattr(config, name, value)
        if not config.public_url:
            host = "127.0.0.1" if config.host in ("0.0.0.0", "", "::") else config.host  # noqa: S104
            if ":" in host and not host.startswith("["):
                host = f"[{host}]"
            config.public_url = f"http://{host}:{config.port}"
        config.public_url = config.public_url.rstrip("/")
        return config
