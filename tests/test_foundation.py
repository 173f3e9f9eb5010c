"""Settings, security headers, system checks, the encrypted field."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured
from django.urls import reverse

from runflow_site import env
from runs.fields import DecryptionError, EncryptedSecret, decrypt, encrypt
from tests.conftest import Cast

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("raw,expected", [("1", True), ("yes", True), ("off", False), ("", False)])
def test_env_bool_reads_common_spellings(
    monkeypatch: pytest.MonkeyPatch, raw: str, expected: bool
) -> None:
    monkeypatch.setenv("X_FLAG", raw)
    assert env.env_bool("X_FLAG") is expected


def test_env_bool_refuses_typos(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("X_FLAG", "flase")
    with pytest.raises(ImproperlyConfigured, match="X_FLAG"):
        env.env_bool("X_FLAG")


def test_env_url_refuses_other_schemes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("X_URL", "file:///etc/passwd")
    with pytest.raises(ImproperlyConfigured, match="X_URL"):
        env.env_url("X_URL", "https://example.com")


def test_encrypted_values_round_trip_and_fail_closed(settings: object) -> None:
    token = encrypt("rf_live_sentinel_1234")
    assert "sentinel" not in token
    assert decrypt(token) == "rf_live_sentinel_1234"
    assert "sentinel" not in repr(EncryptedSecret(token))
    settings.FIELD_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]  # type: ignore[attr-defined]
    with pytest.raises(DecryptionError):
        decrypt(token)


@pytest.mark.django_db
def test_pages_send_security_headers_and_strict_csp(cast: Cast) -> None:
    response = cast.client_for("member").get(reverse("runs:team_settings", args=[cast.team.uuid]))
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["X-Frame-Options"] == "DENY"
    assert response["Referrer-Policy"] == "same-origin"
    csp = response["Content-Security-Policy"]
    assert "script-src 'self'" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp


@pytest.mark.django_db
def test_pages_have_no_inline_script(cast: Cast) -> None:
    html = (
        cast.client_for("member").get(reverse("runs:team_settings", args=[cast.team.uuid])).content
    )
    import re

    for tag in re.findall(rb"<script[^>]*>", html):
        assert b"src=" in tag, tag


def _check(extra_env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL"}}
    environment.update(extra_env)
    return subprocess.run(
        [sys.executable, "manage.py", "check", *args],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_check_deploy_is_clean_with_production_settings(tmp_path: Path) -> None:
    result = _check(
        {
            "DEBUG": "0",
            "SECRET_KEY": "x" * 20 + Fernet.generate_key().decode(),
            "FIELD_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
            "ALLOWED_HOSTS": "runflow.example.com",
            "SITE_URL": "https://runflow.example.com",
            "RUNFLOW_VAR_DIR": str(tmp_path),
            "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
        },
        "--deploy",
        "--fail-level",
        "WARNING",
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_check_deploy_refuses_generated_and_malformed_keys(tmp_path: Path) -> None:
    result = _check(
        {
            "RUNFLOW_VAR_DIR": str(tmp_path),
            "SITE_URL": "https://runflow.example.com",
            "ALLOWED_HOSTS": "runflow.example.com",
        },
        "--deploy",
    )
    assert result.returncode != 0
    assert "runs.E001" in result.stderr
    bad = _check(
        {
            "RUNFLOW_VAR_DIR": str(tmp_path),
            "FIELD_ENCRYPTION_KEYS": "not-a-key",
            "SECRET_KEY": "y" * 60,
        },
        "--deploy",
    )
    assert bad.returncode != 0
    assert "runs.E003" in bad.stderr
