"""The connection against the real sandbox over HTTP: connect, create and rotate secrets that
really sign callbacks, the Demo team's wiring, and a wrong FIELD_ENCRYPTION_KEYS that makes
launching refuse with nothing sent (the sandbox's own ledger is the witness)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import httpx
import pytest
from cryptography.fernet import Fernet
from django.urls import reverse

from runs.connection import (
    active_secret_values,
    client_for_team,
    connect_key,
    connect_sandbox,
    create_secret,
)
from runs.launching import launch_run
from runs.models import CallbackSecret, Membership, Run, RunflowKey, Status
from runs.runflow.signing import verify
from runs.tasks.polling import fetch_and_apply
from runs.tasks.submit import submit_run
from tests.conftest import Cast
from tests.plugins.sandbox import CallbackReceiver, Sandbox
from tests.processes import free_port

pytestmark = pytest.mark.sandbox

MODEL = "google/nano-banana-pro"


def org_requests(sandbox: Sandbox, org_id: str) -> list[dict[str, Any]]:
    answer = httpx.get(f"{sandbox.url}/_sandbox/ledger", params={"org_id": org_id}, timeout=10)
    answer.raise_for_status()
    return list(answer.json()["requests"])


def signed_callback(cast: Cast, receiver: CallbackReceiver, count: int) -> tuple[bytes, str]:
    """Launch one run through the team's client; return the callback body and signature."""
    with client_for_team(cast.team) as client:
        client.create_run(
            MODEL, input={"prompt": "a red fox"}, callback_url=receiver.url, client_ref=f"c{count}"
        )
    arrived = receiver.wait(count)[-1]
    headers = {k.lower(): v for k, v in arrived.headers.items()}
    return arrived.body, headers.get("runflow-signature", "")


def test_connect_through_the_page_shows_the_sandbox_org_and_balance(
    cast: Cast, on_sandbox: Sandbox
) -> None:
    key = on_sandbox.new_key()
    client = cast.client_for("admin")
    page = client.post(
        reverse("runs:connection_key_add", args=[cast.team.uuid]),
        {"label": "Sandbox", "api_url": on_sandbox.url, "api_key": key},
        follow=True,
    ).content.decode()
    stored = RunflowKey.objects.get(team=cast.team)
    with on_sandbox.api(key) as api:
        me = api.get("/v1/auth/me").json()
        balance = Decimal(api.get("/v1/billing/balance").json()["balance"])
    org = me["memberships"][0]["org"]
    assert stored.org_id == org["id"] and stored.org_name == org["name"]
    assert org["name"] in page
    assert f"{balance:.2f} USD" in page
    assert key not in page


def test_a_key_the_sandbox_refuses_is_a_precise_401(cast: Cast, on_sandbox: Sandbox) -> None:
    page = (
        cast.client_for("admin")
        .post(
            reverse("runs:connection_key_add", args=[cast.team.uuid]),
            {"label": "Bad", "api_url": on_sandbox.url, "api_key": "rf_live_not-a-sandbox-key"},
        )
        .content.decode()
    )
    assert "refused this key (401)" in page
    assert not RunflowKey.objects.exists()


def test_an_unreachable_endpoint_is_said_so(cast: Cast, settings: Any) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    settings.RUNFLOW_API_URLS = [closed]
    page = (
        cast.client_for("admin")
        .post(
            reverse("runs:connection_key_add", args=[cast.team.uuid]),
            {"label": "Nowhere", "api_url": closed, "api_key": "rf_live_abcdefgh12345678"},
        )
        .content.decode()
    )
    assert "Could not reach Runflow at 127.0.0.1" in page
    assert "connection refused" in page


def test_created_secrets_sign_callbacks_and_rotation_keeps_both_valid(
    cast: Cast, on_sandbox: Sandbox, callback_receiver: CallbackReceiver
) -> None:
    key = on_sandbox.new_key()
    connect_key(cast.team, label="Sandbox", api_url=on_sandbox.url, plain=key)
    first = create_secret(cast.team, actor=cast.admin)
    body, signature = signed_callback(cast, callback_receiver, 1)
    assert verify(body, signature, active_secret_values(cast.team)) == 0

    # Rotate: the new secret becomes current at the sandbox; both verify here meanwhile.
    second = create_secret(cast.team, actor=cast.admin)
    with on_sandbox.api(key) as api:
        assert api.get(f"/v1/callback-secrets/{second.runflow_id}").json()["is_current"] is True
        assert api.get(f"/v1/callback-secrets/{first.runflow_id}").json()["is_current"] is False
    values = active_secret_values(cast.team)
    assert len(values) == 2
    body, signature = signed_callback(cast, callback_receiver, 2)
    assert verify(body, signature, values) == 0  # signed with the new one
    assert verify(body, signature, values[1:]) is None
    old_body, old_signature = callback_receiver.received[0].body, signature_of(callback_receiver, 0)
    assert verify(old_body, old_signature, values) == 1  # a late retry of an old one still lands

    cast.client_for("admin").post(
        reverse("runs:connection_secret_retire", args=[cast.team.uuid, first.uuid])
    )
    assert verify(old_body, old_signature, active_secret_values(cast.team)) is None


def signature_of(receiver: CallbackReceiver, index: int) -> str:
    headers = {k.lower(): v for k, v in receiver.received[index].headers.items()}
    return headers.get("runflow-signature", "")


def test_wrong_encryption_keys_refuse_launching_and_send_nothing(
    cast: Cast, on_sandbox: Sandbox, settings: Any
) -> None:
    key = on_sandbox.new_key()
    stored, _ = connect_key(cast.team, label="Sandbox", api_url=on_sandbox.url, plain=key)
    create_secret(cast.team)
    before = org_requests(on_sandbox, stored.org_id)
    assert before, "the ledger sees this org's requests"

    settings.FIELD_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    member = cast.client_for("member")
    launch = reverse("runs:launch", args=[cast.team.uuid, MODEL])
    page = member.get(launch).content.decode()
    assert "cannot be decrypted" in page
    response = member.post(launch, {"input": '{"prompt": "a red fox"}'})
    assert response.status_code == 200
    assert "cannot be decrypted" in response.content.decode()
    assert not Run.objects.filter(team=cast.team).exists()
    stored.refresh_from_db()
    assert stored.needs_reentry
    assert org_requests(on_sandbox, stored.org_id) == before  # not one request more


def test_connect_sandbox_wires_the_team_and_is_idempotent(cast: Cast, on_sandbox: Sandbox) -> None:
    key = connect_sandbox(cast.team, wait=5)
    assert key is not None and key.is_default and key.org_name
    secret = CallbackSecret.objects.get(team=cast.team)
    with client_for_team(cast.team) as client:
        assert client.get_callback_secret(secret.runflow_id).is_current
    connect_sandbox(cast.team, wait=5)
    assert RunflowKey.objects.filter(team=cast.team).count() == 1
    assert list(CallbackSecret.objects.filter(team=cast.team)) == [secret]


def submitted_by_the_admin(cast: Cast, prompt: str) -> Run:
    """A run the team's admin launched, as the launch form does, once it is sent."""
    admin = Membership.objects.get(team=cast.team, user=cast.admin)
    run = launch_run(admin, MODEL, {"prompt": prompt})
    submit_run.enqueue(run.pk)
    run.refresh_from_db()
    return run


def test_an_admin_cancels_a_run_with_the_teams_service_key(cast: Cast, on_sandbox: Sandbox) -> None:
    key = on_sandbox.new_key(admin=True)
    connect_key(cast.team, label="Service", api_url=on_sandbox.url, plain=key, make_default=True)
    run = submitted_by_the_admin(cast, "a slow fox [slow]")
    assert run.runflow_id is not None and run.is_in_flight
    url = reverse("runs:cancel", args=[cast.team.uuid, run.uuid])
    page = cast.client_for("admin").get(reverse("runs:run", args=[cast.team.uuid, run.uuid]))
    assert url in page.content.decode()
    answer = cast.client_for("admin").post(url, follow=True).content.decode()
    assert "Cancel requested" in answer
    fetch_and_apply(run)
    run.refresh_from_db()
    assert run.status == Status.CANCELED


def test_cancel_is_not_offered_without_a_service_key_of_the_runs_organisation(
    cast: Cast, on_sandbox: Sandbox
) -> None:
    connect_key(
        cast.team,
        label="Live",
        api_url=on_sandbox.url,
        plain=on_sandbox.new_key(),
        make_default=True,
    )
    # A service key of another organisation cannot see, let alone cancel, this run.
    connect_key(
        cast.team, label="Other org", api_url=on_sandbox.url, plain=on_sandbox.new_key(admin=True)
    )
    run = submitted_by_the_admin(cast, "a slow owl [slow]")
    url = reverse("runs:cancel", args=[cast.team.uuid, run.uuid])
    page = cast.client_for("admin").get(reverse("runs:run", args=[cast.team.uuid, run.uuid]))
    html = page.content.decode()
    assert url not in html and 'id="cancel-hint"' in html
    answer = cast.client_for("admin").post(url, follow=True).content.decode()
    assert "only with a service key" in answer
    run.refresh_from_db()
    assert run.is_in_flight
