"""Connecting a key asks for that endpoint's catalog at once, so the Models page fills
without waiting for the next scheduled sync. Against the real sandbox over HTTP; tests run
tasks immediately, so the sync has happened when the connect POST returns."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from django.core.cache import cache
from django.urls import reverse

from runs.catalog import normalize_api_url
from runs.models import RunflowKey, RunflowModel
from tests.conftest import Cast
from tests.plugins.sandbox import Sandbox

pytestmark = pytest.mark.sandbox


@pytest.fixture
def on_sandbox(sandbox: Sandbox, settings: Any) -> Sandbox:
    settings.SANDBOX_ENABLED = True
    settings.SANDBOX_URL = sandbox.url
    cache.clear()  # no sync of the sandbox's catalog claimed by an earlier test
    return sandbox


def sandbox_model_ids(sandbox: Sandbox, key: str) -> set[str]:
    with sandbox.api(key) as api:
        answer = api.get("/v1/models", params={"limit": 100})
    answer.raise_for_status()
    return {model["id"] for model in answer.json()["items"]}


def test_connecting_a_key_fills_the_models_page(cast: Cast, on_sandbox: Sandbox) -> None:
    api_url = normalize_api_url(on_sandbox.url)
    RunflowModel.objects.filter(api_url=api_url).delete()
    key = on_sandbox.new_key()
    admin = cast.client_for("admin")
    answer = admin.post(
        reverse("runs:connection_key_add", args=[cast.team.uuid]),
        {"label": "Sandbox", "api_url": on_sandbox.url, "api_key": key},
    )
    assert answer.status_code == 302
    assert RunflowKey.objects.filter(team=cast.team).count() == 1
    synced = set(RunflowModel.objects.filter(api_url=api_url).values_list("model_id", flat=True))
    assert synced and synced <= sandbox_model_ids(on_sandbox, key)
    page = admin.get(reverse("runs:models", args=[cast.team.uuid])).content.decode()
    assert "google/nano-banana-pro" in page


def test_a_refused_key_asks_for_no_sync(cast: Cast, on_sandbox: Sandbox) -> None:
    api_url = normalize_api_url(on_sandbox.url)
    RunflowModel.objects.filter(api_url=api_url).delete()
    before = len(_ledger(on_sandbox))
    answer = cast.client_for("admin").post(
        reverse("runs:connection_key_add", args=[cast.team.uuid]),
        {"label": "Sandbox", "api_url": on_sandbox.url, "api_key": "rf_live_short"},
    )
    assert answer.status_code == 200  # the form again, with the refusal
    assert not RunflowModel.objects.filter(api_url=api_url).exists()
    assert not [r for r in _ledger(on_sandbox)[before:] if "/v1/models" in r.get("path", "")]


def _ledger(sandbox: Sandbox) -> list[dict[str, Any]]:
    answer = httpx.get(f"{sandbox.url}/_sandbox/ledger", timeout=10)
    answer.raise_for_status()
    return list(answer.json()["requests"])
