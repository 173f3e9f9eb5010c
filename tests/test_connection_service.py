"""The connection services other areas call: client_for_team, the breaker, launch_blocker,
active_secret_values and connect_sandbox (against a fake Runflow over MockTransport)."""

# The fake_runflow fixture is imported from tests/connection_support.py, then requested by name.
# ruff: noqa: F811

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest
from cryptography.fernet import Fernet
from django.utils import timezone

from runs.connection import (
    ConnectionUnavailable,
    active_secret_values,
    breaker,
    client_for_team,
    connect_sandbox,
    counts_against_breaker,
    launch_blocker,
    record_upstream_failure,
    record_upstream_success,
)
from runs.connection.status import NO_SECRET
from runs.models import AuditEntry, CallbackSecret, RunflowKey, Team
from runs.runflow import AuthenticationFailed, NotFound, RateLimited, Unavailable, ValidationFailed
from tests.conftest import Cast
from tests.connection_support import (  # noqa: F401 (fixture)
    API,
    GOOD_KEY,
    FakeRunflow,
    error,
    fake_runflow,
    store_key,
    store_secret,
)

# ---- client_for_team ----


def test_client_for_team_uses_the_default_key_and_notes_its_use(
    cast: Cast, fake_runflow: FakeRunflow
) -> None:
    store_key(cast.team, "rf_live_other000000000", label="Other", default=False)
    key = store_key(cast.team, GOOD_KEY)
    with client_for_team(cast.team) as client:
        assert client.me().organization_name == "Acme Studio"
    assert fake_runflow.keys_sent == {GOOD_KEY}
    key.refresh_from_db()
    assert key.last_used_at is not None


def test_client_for_team_with_an_explicit_key(cast: Cast, fake_runflow: FakeRunflow) -> None:
    store_key(cast.team, GOOD_KEY)
    other = store_key(cast.team, "rf_live_other000000000", label="Other", default=False)
    with client_for_team(cast.team, key=other) as client:
        client.health()
    assert fake_runflow.keys_sent == {"rf_live_other000000000"}
    with pytest.raises(ValueError, match="another team"):
        client_for_team(cast.other_team, key=other)


def test_no_key_is_a_clear_refusal(cast: Cast) -> None:
    with pytest.raises(ConnectionUnavailable, match="not connected to Runflow yet") as caught:
        client_for_team(cast.team)
    assert caught.value.reason == "no_key"


def test_a_revoked_key_is_never_handed_out(cast: Cast) -> None:
    key = store_key(cast.team)
    key.revoked_at = timezone.now()
    key.save()
    with pytest.raises(ConnectionUnavailable, match="not connected"):
        client_for_team(cast.team)
    with pytest.raises(ConnectionUnavailable, match="revoked"):
        client_for_team(cast.team, key=key)


def test_wrong_encryption_keys_fail_closed(
    cast: Cast, fake_runflow: FakeRunflow, settings: Any
) -> None:
    """S2: the key cannot be decrypted → refused, marked for re-entry, nothing sent."""
    key = store_key(cast.team)
    store_secret(cast.team)
    settings.FIELD_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    with pytest.raises(ConnectionUnavailable, match="cannot be decrypted") as caught:
        client_for_team(cast.team)
    assert caught.value.reason == "unreadable"
    assert "enter the key again" in caught.value.message
    key.refresh_from_db()
    assert key.needs_reentry
    assert fake_runflow.requests == []
    # The launch page says the same before anyone tries, and later calls stay refused.
    assert "cannot be decrypted" in (launch_blocker(cast.team) or "")
    with pytest.raises(ConnectionUnavailable):
        client_for_team(cast.team)
    assert fake_runflow.requests == []
    assert AuditEntry.objects.filter(action="connection.key_unreadable").count() == 1


def test_an_endpoint_no_longer_offered_is_refused(
    cast: Cast, fake_runflow: FakeRunflow, settings: Any
) -> None:
    store_key(cast.team, api_url="https://eu.runflow.test")
    settings.RUNFLOW_API_URLS = []
    with pytest.raises(ConnectionUnavailable, match="no longer offers"):
        client_for_team(cast.team)
    assert fake_runflow.requests == []


# ---- the circuit breaker (R4) ----


@pytest.fixture
def fast_breaker(settings: Any) -> None:
    settings.RUNFLOW_BREAKER_THRESHOLD = 3
    settings.RUNFLOW_BREAKER_SECONDS = 30
    settings.RUNFLOW_BREAKER_MAX_SECONDS = 120


def test_breaker_opens_after_n_failures_and_refuses_without_sending(
    cast: Cast, fake_runflow: FakeRunflow, fast_breaker: None
) -> None:
    store_key(cast.team)
    store_secret(cast.team)
    for _ in range(2):
        record_upstream_failure(cast.team, "Runflow is unavailable (503).")
    client_for_team(cast.team).close()  # two failures: still closed
    state = record_upstream_failure(cast.team, "Runflow is unavailable (503).")
    assert state.is_open and state.failures == 3
    with pytest.raises(ConnectionUnavailable, match="paused until") as caught:
        client_for_team(cast.team)
    assert caught.value.reason == "breaker"
    assert "503" in caught.value.message
    assert "paused until" in (launch_blocker(cast.team) or "")
    assert fake_runflow.requests == []
    assert AuditEntry.objects.filter(action="connection.breaker_opened").count() == 1
    # Other teams are not affected.
    store_key(cast.other_team)
    client_for_team(cast.other_team).close()


def test_breaker_waits_longer_after_each_failed_probe(cast: Cast, fast_breaker: None) -> None:
    opened = [record_upstream_failure(cast.team, "x") for _ in range(5)][-1]
    assert opened.open_until is not None
    wait = (opened.open_until - timezone.now()).total_seconds()
    assert 110 < wait <= 120  # 30, 60, 120 (capped)
    assert breaker.wait_after(3) == timedelta(seconds=30)
    assert breaker.wait_after(4) == timedelta(seconds=60)
    assert breaker.wait_after(50) == timedelta(seconds=120)


def test_after_the_wait_one_probe_goes_through_and_success_closes(
    cast: Cast, fake_runflow: FakeRunflow, fast_breaker: None
) -> None:
    store_key(cast.team)
    for _ in range(3):
        record_upstream_failure(cast.team, "timeout")
    Team.objects.filter(pk=cast.team.pk).update(
        breaker_open_until=timezone.now() - timedelta(seconds=1)
    )
    other_view = Team.objects.get(pk=cast.team.pk)  # another worker's copy of the team
    client_for_team(cast.team).close()  # the probe
    with pytest.raises(ConnectionUnavailable, match="paused"):
        client_for_team(other_view)  # only one probe at a time
    record_upstream_success(cast.team)
    cast.team.refresh_from_db()
    assert cast.team.breaker_failures == 0 and cast.team.breaker_open_until is None
    client_for_team(other_view).close()
    assert AuditEntry.objects.filter(action="connection.breaker_closed").count() == 1


def test_success_on_a_healthy_team_writes_nothing(
    cast: Cast, django_assert_num_queries: Any
) -> None:
    with django_assert_num_queries(1):
        record_upstream_success(cast.team)


def test_which_errors_count_against_the_breaker() -> None:
    assert counts_against_breaker(Unavailable("down"))
    assert counts_against_breaker(RateLimited("slow down"))
    assert not counts_against_breaker(ValidationFailed("bad input"))
    assert not counts_against_breaker(NotFound("no such run"))
    assert not counts_against_breaker(AuthenticationFailed("bad key"))


def test_checking_the_default_key_closes_an_open_breaker(
    cast: Cast, fake_runflow: FakeRunflow, fast_breaker: None
) -> None:
    from runs.connection import recheck_key

    key = store_key(cast.team)
    for _ in range(3):
        record_upstream_failure(cast.team, "timeout")
    recheck_key(key)
    cast.team.refresh_from_db()
    assert cast.team.breaker_open_until is None


# ---- launch_blocker ----


def test_launch_blocker_in_order(cast: Cast, fake_runflow: FakeRunflow) -> None:
    assert "not connected to Runflow yet" in (launch_blocker(cast.team) or "")
    store_key(cast.team)
    assert launch_blocker(cast.team) == NO_SECRET
    assert NO_SECRET.startswith("A team without a secret cannot launch runs with a callback URL")
    secret = store_secret(cast.team)
    assert launch_blocker(cast.team) is None
    CallbackSecret.objects.filter(pk=secret.pk).update(needs_reentry=True)
    assert launch_blocker(cast.team) == NO_SECRET


# ---- active_secret_values ----


def test_active_secret_values_newest_first_and_skips_unreadable(cast: Cast, settings: Any) -> None:
    old = store_secret(cast.team, "whsec_old0000000000000")
    store_secret(cast.team, "whsec_new0000000000000")
    retired = store_secret(cast.team, "whsec_retired000000000")
    CallbackSecret.objects.filter(pk=retired.pk).update(retired_at=timezone.now())
    CallbackSecret.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=1))
    assert active_secret_values(cast.team) == ["whsec_new0000000000000", "whsec_old0000000000000"]
    assert active_secret_values(cast.other_team) == []
    # A secret encrypted under a key the site no longer has is left out and flagged.
    settings.FIELD_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    assert active_secret_values(cast.team) == []
    flagged = set(CallbackSecret.objects.filter(needs_reentry=True).values_list("pk", flat=True))
    assert flagged == set(cast.team.active_secrets().values_list("pk", flat=True))
    assert retired.pk not in flagged


# ---- connect_sandbox (the Demo team) ----


@pytest.fixture
def sandbox_settings(settings: Any) -> None:
    settings.SANDBOX_ENABLED = True
    settings.SANDBOX_URL = "http://sandbox.test:8765"


def test_connect_sandbox_gives_a_key_and_a_secret_once(
    cast: Cast, fake_runflow: FakeRunflow, sandbox_settings: None
) -> None:
    key = connect_sandbox(cast.team, wait=0)
    assert key is not None and key.is_default and key.api_url == "http://sandbox.test:8765"
    plain = key.secret.reveal()
    assert plain.startswith("rf_svc_demo") and len(plain) > 20
    assert key.org_name == "Acme Studio"
    assert active_secret_values(cast.team) == fake_runflow.secrets
    assert launch_blocker(cast.team) is None
    # Idempotent: a second start reuses the key and the secret the sandbox still knows.
    again = connect_sandbox(cast.team, wait=0)
    assert again is not None and again.pk == key.pk
    assert RunflowKey.objects.filter(team=cast.team).count() == 1
    assert CallbackSecret.objects.filter(team=cast.team).count() == 1
    assert len(fake_runflow.secrets) == 1


def test_connect_sandbox_follows_a_new_port_and_replaces_a_forgotten_secret(
    cast: Cast, fake_runflow: FakeRunflow, sandbox_settings: None, settings: Any
) -> None:
    connect_sandbox(cast.team, wait=0)
    settings.SANDBOX_URL = "http://sandbox.test:9999"
    # A restarted sandbox has forgotten its secrets.
    fake_runflow.answers.update(
        {
            route: error(404, "NOT_FOUND")
            for route in [
                f"GET /v1/callback-secrets/{s.runflow_id}"
                for s in CallbackSecret.objects.filter(team=cast.team)
            ]
        }
    )
    key = connect_sandbox(cast.team, wait=0)
    assert key is not None and key.api_url == "http://sandbox.test:9999"
    assert active_secret_values(cast.team) == [fake_runflow.secrets[-1]]
    assert len(fake_runflow.secrets) == 2


def test_connect_sandbox_replaces_an_unreadable_demo_key(
    cast: Cast, fake_runflow: FakeRunflow, sandbox_settings: None, settings: Any
) -> None:
    first = connect_sandbox(cast.team, wait=0)
    assert first is not None
    settings.FIELD_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    key = connect_sandbox(cast.team, wait=0)
    assert key is not None and key.pk == first.pk
    key.refresh_from_db()
    assert not key.needs_reentry and key.secret.reveal().startswith("rf_svc_demo")
    assert launch_blocker(cast.team) is None


def test_connect_sandbox_without_a_sandbox_stores_an_unchecked_key(
    cast: Cast, fake_runflow: FakeRunflow, sandbox_settings: None
) -> None:
    fake_runflow.answers["GET /v1/health"] = httpx.ConnectError("refused")
    key = connect_sandbox(cast.team, wait=0, sleep=lambda s: None)
    assert key is not None and key.last_checked_at is None
    assert not CallbackSecret.objects.filter(team=cast.team).exists()
    assert fake_runflow.routes == ["GET /v1/health"]


def test_connect_sandbox_does_nothing_when_disabled(cast: Cast, settings: Any) -> None:
    settings.SANDBOX_ENABLED = False
    assert connect_sandbox(cast.team) is None
    assert not RunflowKey.objects.exists()
