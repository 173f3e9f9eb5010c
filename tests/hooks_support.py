"""Shared by the callback, polling and concurrency tests: recorded bodies, real signatures."""

from __future__ import annotations

import hashlib
import hmac
import uuid
from pathlib import Path
from typing import Any

from django.test import Client
from django.urls import reverse

from runs.models import CallbackSecret, Run, Team

FIXTURES = Path(__file__).parent / "fixtures" / "callbacks"

# The ids the recorded fixtures carry.
RUNFLOW_ID = uuid.UUID("0190f3c2-7a1b-7c3d-9e4f-0123456789ab")
OUR_RUN = uuid.UUID("6f1c8a52-3b8e-4d0e-9a51-2f9f3c1d7e10")
BATCH_ID = uuid.UUID("0190f3d0-1111-7222-8333-444455556666")

SECRET = "whsec_test_acme_0123456789abcdefghij"
OTHER_SECRET = "whsec_test_other_9876543210zyxwvuts"


def fixture(name: str) -> bytes:
    """A recorded callback body, byte for byte."""
    return (FIXTURES / f"{name}.json").read_bytes()


def hmac_hex(body: bytes, secret: str) -> str:
    """Runflow-Signature computed here, independently of runs.runflow.signing."""
    return hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def add_secret(team: Team, plain: str = SECRET) -> CallbackSecret:
    secret = CallbackSecret(team=team)
    secret.set_secret(plain)
    secret.save()
    return secret


def make_run(team: Team, **fields: Any) -> Run:
    values: dict[str, Any] = {
        "api_url": "http://sandbox.test",
        "model_id": "acme/text-to-image",
        "input": {"prompt": "a red fox"},
    }
    values.update(fields)
    return Run.objects.create(team=team, **values)


def hook_url(team: Team) -> str:
    return reverse("runs:hook", args=[team.uuid])


def post_callback(
    client: Client,
    team: Team,
    body: bytes,
    *,
    secret: str | None = SECRET,
    signature: str | None = None,
    headers: dict[str, str] | None = None,
) -> Any:
    """POST ``body`` to the team's hook, signed with ``secret`` unless ``signature`` is given."""
    extra: dict[str, str] = dict(headers or {})
    if signature is None and secret is not None:
        signature = hmac_hex(body, secret)
    if signature is not None:
        extra["Runflow-Signature"] = signature
    extra.setdefault("Runflow-Request-Id", f"req_{uuid.uuid4().hex[:12]}")
    return client.post(hook_url(team), data=body, content_type="application/json", headers=extra)
