"""The Runflow connection page: access, connecting keys, errors, secrets, audit entries."""

# The fake_runflow fixture is imported from tests/connection_support.py, then requested by name.
# ruff: noqa: F811

from __future__ import annotations

from typing import Any

import httpx
import pytest
from django.core.cache import cache
from django.urls import reverse

from runs.models import AuditEntry, CallbackSecret, RunflowKey
from tests.conftest import ADMIN_ONLY_EXPECTED, Cast, assert_access
from tests.connection_support import (  # noqa: F401 (fixture)
    API,
    GOOD_KEY,
    SENTINEL_KEY,
    SENTINEL_SECRET,
    FakeRunflow,
    error,
    fake_runflow,
    store_key,
    store_secret,
)


def url(cast: Cast, name: str = "connection", *args: object) -> str:
    return reverse(f"runs:{name}", args=[cast.team.uuid, *args])


def connect(client: Any, cast: Cast, **data: Any) -> Any:
    values = {"label": "Main", "api_url": API, "api_key": GOOD_KEY}
    values.update(data)
    return client.post(url(cast, "connection_key_add"), values, follow=True)


def actions(cast: Cast) -> list[str]:
    return list(
        AuditEntry.objects.filter(team=cast.team).order_by("id").values_list("action", flat=True)
    )


# ---- who may do what ----


def test_only_team_admins_reach_the_page(cast: Cast) -> None:
    assert_access(cast, "get", url(cast), ADMIN_ONLY_EXPECTED)


def test_every_write_is_admin_only(cast: Cast, fake_runflow: FakeRunflow) -> None:
    key = store_key(cast.team)
    secret = store_secret(cast.team)
    writes = [
        url(cast, "connection_key_add"),
        url(cast, "connection_key_reenter", key.uuid),
        url(cast, "connection_key_check", key.uuid),
        url(cast, "connection_key_default", key.uuid),
        url(cast, "connection_key_revoke", key.uuid),
        url(cast, "connection_secret_create"),
        url(cast, "connection_secret_paste"),
        url(cast, "connection_secret_retire", secret.uuid),
    ]
    for target in writes:
        assert_access(cast, "post", target, ADMIN_ONLY_EXPECTED, allowed=(200, 302))


def test_writes_refuse_get(cast: Cast) -> None:
    key = store_key(cast.team)
    client = cast.client_for("admin")
    assert client.get(url(cast, "connection_key_revoke", key.uuid)).status_code == 405
    assert client.get(url(cast, "connection_secret_create")).status_code == 405
    key.refresh_from_db()
    assert key.revoked_at is None


def test_another_teams_key_is_404(cast: Cast) -> None:
    theirs = store_key(cast.other_team)
    client = cast.client_for("admin")
    for name in ("connection_key_revoke", "connection_key_default", "connection_key_check"):
        assert client.post(url(cast, name, theirs.uuid)).status_code == 404
    theirs.refresh_from_db()
    assert theirs.revoked_at is None


# ---- connecting a key ----


def test_connecting_checks_the_key_and_shows_org_scopes_and_balance(
    cast: Cast, fake_runflow: FakeRunflow
) -> None:
    cache.clear()  # no catalog sync of this endpoint claimed by an earlier test
    response = connect(cast.client_for("admin"), cast)
    page = response.content.decode()
    assert "Acme Studio" in page
    assert "12.45 USD" in page
    assert "runs:create" in page
    assert "rf_live_…wxyz" in page
    assert GOOD_KEY not in page
    key = RunflowKey.objects.get(team=cast.team)
    assert key.is_default and key.org_name == "Acme Studio" and key.org_id == "org-acme"
    assert key.scopes == ["runs:create", "runs:read", "credit_balance:read"]
    assert key.masked == "rf_live_…wxyz"
    assert key.secret.reveal() == GOOD_KEY
    # The check, then the catalog sync that connecting asks for (tests run tasks at once).
    assert fake_runflow.routes == ["GET /v1/auth/me", "GET /v1/billing/balance", "GET /v1/models"]
    assert fake_runflow.keys_sent == {GOOD_KEY}
    entry = AuditEntry.objects.get(action="connection.key_connected")
    assert entry.actor == cast.admin and entry.detail["key"] == "rf_live_…wxyz"
    assert GOOD_KEY not in str(entry.detail)


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (error(401, "UNAUTHORIZED"), "refused this key (401)"),
        (error(403, "PERMISSION_DENIED"), "may not read its own account (403, PERMISSION_DENIED)"),
        (httpx.ConnectError("refused"), "Could not reach Runflow at api.runflow.test"),
        (httpx.ReadTimeout("slow"), "did not answer in time (read timeout"),
        (httpx.Response(200, text="<html>login</html>"), "cannot read"),
    ],
    ids=["bad-key-401", "missing-scope-403", "unreachable", "timeout", "not-runflow"],
)
def test_a_failed_check_says_exactly_why_and_saves_nothing(
    cast: Cast, fake_runflow: FakeRunflow, answer: Any, expected: str
) -> None:
    fake_runflow.answers["GET /v1/auth/me"] = answer
    response = connect(cast.client_for("admin"), cast, api_key=SENTINEL_KEY)
    page = response.content.decode()
    assert response.status_code == 200
    assert expected in page, page[page.find("errorlist") - 200 : page.find("errorlist") + 600]
    assert SENTINEL_KEY not in page  # the key is never written back into the form
    assert not RunflowKey.objects.exists()
    assert "connection.key_connected" not in actions(cast)


def test_balance_without_the_scope_is_a_warning_not_a_refusal(
    cast: Cast, fake_runflow: FakeRunflow
) -> None:
    fake_runflow.answers["GET /v1/billing/balance"] = error(403, "PERMISSION_DENIED")
    page = connect(cast.client_for("admin"), cast).content.decode()
    assert "may not read the balance (403)" in page
    assert RunflowKey.objects.filter(team=cast.team).count() == 1


def test_a_key_without_launch_scopes_is_saved_with_a_warning(
    cast: Cast, fake_runflow: FakeRunflow
) -> None:
    fake_runflow.me = {"memberships": [{"org": {"id": "o", "name": "Ro"}, "scopes": ["runs:read"]}]}
    page = connect(cast.client_for("admin"), cast).content.decode()
    assert "lacks runs:create" in page
    assert RunflowKey.objects.get().scopes == ["runs:read"]


def test_a_forged_endpoint_is_refused_before_anything_is_sent(
    cast: Cast, fake_runflow: FakeRunflow
) -> None:
    response = connect(cast.client_for("admin"), cast, api_url="https://evil.example/")
    assert "Select a valid choice" in response.content.decode()
    assert fake_runflow.requests == []
    assert not RunflowKey.objects.exists()


def test_only_configured_endpoints_are_offered(
    cast: Cast, fake_runflow: FakeRunflow, settings: Any
) -> None:
    settings.SANDBOX_ENABLED = True
    settings.SANDBOX_URL = "http://127.0.0.1:8765"
    page = cast.client_for("admin").get(url(cast)).content.decode()
    assert f'<option value="{API}" selected>' in page
    assert 'value="http://127.0.0.1:8765"' in page
    assert 'value="https://eu.runflow.test"' in page
    settings.SANDBOX_ENABLED = False
    page = cast.client_for("admin").get(url(cast)).content.decode()
    assert "127.0.0.1:8765" not in page


def test_another_endpoint_from_the_list_is_accepted(cast: Cast, fake_runflow: FakeRunflow) -> None:
    connect(cast.client_for("admin"), cast, api_url="https://eu.runflow.test")
    assert RunflowKey.objects.get().api_url == "https://eu.runflow.test"
    assert fake_runflow.requests[0].url.host == "eu.runflow.test"


def test_a_malformed_key_is_refused_locally(cast: Cast, fake_runflow: FakeRunflow) -> None:
    page = connect(cast.client_for("admin"), cast, api_key="sk-not-runflow").content.decode()
    assert "starts with rf_live_ or rf_svc_" in page
    page = connect(cast.client_for("admin"), cast, api_key="rf_live_has space").content.decode()
    assert "no spaces" in page
    assert fake_runflow.requests == []


def test_the_same_key_twice_is_refused(cast: Cast, fake_runflow: FakeRunflow) -> None:
    store_key(cast.team, GOOD_KEY, label="First")
    page = connect(cast.client_for("admin"), cast, label="Second").content.decode()
    assert "already connected as “First”" in page
    assert RunflowKey.objects.count() == 1


def test_the_first_key_is_default_and_a_second_one_is_not_unless_asked(
    cast: Cast, fake_runflow: FakeRunflow
) -> None:
    client = cast.client_for("admin")
    connect(client, cast, label="One", api_key="rf_live_one0000000000")
    connect(client, cast, label="Two", api_key="rf_live_two0000000000")
    assert RunflowKey.objects.get(label="One").is_default
    assert not RunflowKey.objects.get(label="Two").is_default
    connect(client, cast, label="Three", api_key="rf_live_three00000000", make_default="on")
    assert list(RunflowKey.objects.filter(is_default=True).values_list("label", flat=True)) == [
        "Three"
    ]


# ---- several keys: default, revoke, re-check, re-enter ----


def test_make_default_and_revoke(cast: Cast, fake_runflow: FakeRunflow) -> None:
    one = store_key(cast.team, "rf_live_one0000000000", label="One")
    two = store_key(cast.team, "rf_live_two0000000000", label="Two", default=False)
    client = cast.client_for("admin")
    client.post(url(cast, "connection_key_default", two.uuid))
    one.refresh_from_db()
    two.refresh_from_db()
    assert two.is_default and not one.is_default
    page = client.post(url(cast, "connection_key_revoke", two.uuid), follow=True)
    two.refresh_from_db()
    one.refresh_from_db()
    assert two.revoked_at is not None and not two.is_default
    assert one.is_default, "the remaining key takes over as default"
    assert "“One” is now the default key" in page.content.decode()
    assert cast.team.default_key() == one
    assert actions(cast) == ["connection.default_changed", "connection.key_revoked"]


def test_a_revoked_key_cannot_become_default(cast: Cast) -> None:
    key = store_key(cast.team)
    client = cast.client_for("admin")
    client.post(url(cast, "connection_key_revoke", key.uuid))
    response = client.post(url(cast, "connection_key_default", key.uuid), follow=True)
    assert "cannot become the default" in response.content.decode()
    key.refresh_from_db()
    assert not key.is_default


def test_check_now_refreshes_org_and_balance(cast: Cast, fake_runflow: FakeRunflow) -> None:
    key = store_key(cast.team)
    page = cast.client_for("admin").post(url(cast, "connection_key_check", key.uuid), follow=True)
    key.refresh_from_db()
    assert key.org_name == "Acme Studio" and key.last_checked_at is not None
    assert "12.45 USD" in page.content.decode()


def test_reentering_a_key_of_another_org_is_refused(cast: Cast, fake_runflow: FakeRunflow) -> None:
    key = store_key(cast.team)
    RunflowKey.objects.filter(pk=key.pk).update(
        org_id="org-other", org_name="Other Org", needs_reentry=True
    )
    client = cast.client_for("admin")
    page = client.post(
        url(cast, "connection_key_reenter", key.uuid), {"api_key": SENTINEL_KEY}, follow=True
    ).content.decode()
    assert "belongs to another Runflow organization" in page
    assert SENTINEL_KEY not in page
    key.refresh_from_db()
    assert key.needs_reentry
    RunflowKey.objects.filter(pk=key.pk).update(org_id="org-acme")
    client.post(url(cast, "connection_key_reenter", key.uuid), {"api_key": SENTINEL_KEY})
    key.refresh_from_db()
    assert not key.needs_reentry and key.secret.reveal() == SENTINEL_KEY
    assert key.masked == "rf_live_…Zk42"
    assert "connection.key_reentered" in actions(cast)


# ---- callback secrets ----


def test_one_click_creates_a_secret_at_runflow(cast: Cast, fake_runflow: FakeRunflow) -> None:
    store_key(cast.team)
    page = (
        cast.client_for("admin").post(url(cast, "connection_secret_create"), follow=True)
    ).content.decode()
    secret = CallbackSecret.objects.get(team=cast.team)
    assert secret.secret.reveal() == fake_runflow.secrets[0]
    assert secret.runflow_id and secret.masked.startswith("whsec_…")
    assert secret.masked in page
    assert fake_runflow.secrets[0] not in page
    assert "POST /v1/callback-secrets" in fake_runflow.routes
    assert actions(cast) == ["connection.secret_created"]


def test_creating_a_secret_needs_a_key(cast: Cast, fake_runflow: FakeRunflow) -> None:
    page = (
        cast.client_for("admin").post(url(cast, "connection_secret_create"), follow=True)
    ).content.decode()
    assert "not connected to Runflow yet" in page
    assert not CallbackSecret.objects.exists()
    assert fake_runflow.requests == []


def test_a_secret_runflow_did_not_make_current_is_promoted(
    cast: Cast, fake_runflow: FakeRunflow
) -> None:
    store_key(cast.team)
    fake_runflow.answers["POST /v1/callback-secrets"] = httpx.Response(
        201,
        json={
            "id": "5e5e5e5e-0000-4000-8000-00000000c001",
            "is_current": False,
            "plain_secret": "whsec_notcurrentyet12345",
        },
    )
    fake_runflow.answers["PATCH /v1/callback-secrets/5e5e5e5e-0000-4000-8000-00000000c001"] = (
        httpx.Response(200, json={"id": "5e5e5e5e-0000-4000-8000-00000000c001", "is_current": True})
    )
    cast.client_for("admin").post(url(cast, "connection_secret_create"))
    assert fake_runflow.routes[-1].startswith("PATCH /v1/callback-secrets/")
    assert b'"is_current":true' in fake_runflow.requests[-1].content.replace(b" ", b"")


def test_pasting_a_secret(cast: Cast) -> None:
    client = cast.client_for("admin")
    page = client.post(
        url(cast, "connection_secret_paste"), {"secret": "not-a-secret"}, follow=True
    ).content.decode()
    assert "starts with whsec_" in page and "not-a-secret" not in page
    client.post(url(cast, "connection_secret_paste"), {"secret": f"  {SENTINEL_SECRET} "})
    secret = CallbackSecret.objects.get(team=cast.team)
    assert secret.secret.reveal() == SENTINEL_SECRET and secret.runflow_id == ""
    page = client.post(
        url(cast, "connection_secret_paste"), {"secret": SENTINEL_SECRET}, follow=True
    ).content.decode()
    assert "already active" in page
    assert SENTINEL_SECRET not in page
    assert actions(cast) == ["connection.secret_pasted"]


def test_rotation_keeps_both_secrets_until_the_old_one_is_retired(
    cast: Cast, fake_runflow: FakeRunflow
) -> None:
    from runs.connection import active_secret_values

    store_key(cast.team)
    old = store_secret(cast.team, "whsec_old0000000000000")
    client = cast.client_for("admin")
    page = client.get(url(cast)).content.decode()
    assert "Rotate: create a new secret at Runflow" in page
    client.post(url(cast, "connection_secret_create"))
    new_plain = fake_runflow.secrets[0]
    assert active_secret_values(cast.team) == [new_plain, "whsec_old0000000000000"]
    page = client.get(url(cast)).content.decode()
    assert "Previous · still verifies" in page and "Rotation in progress" in page
    assert "Rotate: create" not in page  # two active: retire first
    response = client.post(url(cast, "connection_secret_create"), follow=True)
    assert "Two secrets are already active" in response.content.decode()
    client.post(url(cast, "connection_secret_retire", old.uuid))
    assert active_secret_values(cast.team) == [new_plain]
    assert actions(cast) == ["connection.secret_rotated", "connection.secret_retired"]


def test_the_only_working_secret_cannot_be_retired(cast: Cast) -> None:
    only = store_secret(cast.team)
    response = cast.client_for("admin").post(
        url(cast, "connection_secret_retire", only.uuid), follow=True
    )
    assert "only working secret" in response.content.decode()
    only.refresh_from_db()
    assert only.retired_at is None


def test_the_page_shows_the_callback_url_and_callback_health(cast: Cast) -> None:
    from django.utils import timezone

    store_secret(cast.team)
    client = cast.client_for("admin")
    page = client.get(url(cast)).content.decode()
    assert cast.team.callback_url in page
    assert f"/hooks/runflow/{cast.team.uuid}/" in page
    assert "None received yet" in page
    type(cast.team).objects.filter(pk=cast.team.pk).update(
        last_verified_callback_at=timezone.now(),
        bad_signature_count=3,
        last_bad_signature_at=timezone.now(),
    )
    page = client.get(url(cast)).content.decode()
    assert "Receiving" in page
    assert ">3<" in page
    assert "signing with a secret this page does not have" in page


def test_settings_card_for_admins_links_here_and_members_see_no_key(
    cast: Cast, fake_runflow: FakeRunflow
) -> None:
    store_key(cast.team, SENTINEL_KEY)
    store_secret(cast.team, SENTINEL_SECRET)
    settings_url = reverse("runs:team_settings", args=[cast.team.uuid])
    admin_page = cast.client_for("admin").get(settings_url).content.decode()
    assert url(cast) in admin_page and "Connected" in admin_page
    for who in ("member", "viewer"):
        page = cast.client_for(who).get(settings_url).content.decode()
        assert "Runflow connection" in page
        assert url(cast) not in page
        assert "Zk42" not in page and "…" + SENTINEL_SECRET[-4:] not in page
        assert SENTINEL_KEY not in page and SENTINEL_SECRET not in page


def test_no_key_is_sent_to_an_endpoint_the_site_no_longer_offers(
    cast: Cast, fake_runflow: FakeRunflow, settings: Any
) -> None:
    key = store_key(cast.team, api_url="https://eu.runflow.test")
    settings.RUNFLOW_API_URLS = []
    client = cast.client_for("admin")
    page = client.post(url(cast, "connection_key_check", key.uuid), follow=True).content.decode()
    assert "no longer offers" in page
    page = client.post(
        url(cast, "connection_key_reenter", key.uuid), {"api_key": GOOD_KEY}, follow=True
    ).content.decode()
    assert "no longer offers" in page
    assert "no longer offered by this site" in page  # how the key's endpoint is labelled
    assert fake_runflow.requests == []
