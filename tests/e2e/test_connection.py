"""In a real browser against the real sandbox: connect a new team, create a secret, see the
organization and balance; and the Demo team comes up already wired to the sandbox."""

from __future__ import annotations

import secrets
import string

import httpx

from tests.plugins.live import LiveSite, screenshot, sign_in


def sandbox_key() -> str:
    # The sandbox treats any rf_live_ key of letters and digits as its own organization.
    alphabet = string.ascii_letters + string.digits
    return "rf_live_e2e" + "".join(secrets.choice(alphabet) for _ in range(16))


def test_admin_connects_a_new_team_to_the_sandbox(live_site: LiveSite, page: object) -> None:
    key = sandbox_key()
    sign_in(page, live_site)
    page.goto(f"{live_site.url}/teams/new/")  # type: ignore[attr-defined]
    page.fill("#id_name", "Studio North")  # type: ignore[attr-defined]
    page.click("button:has-text('Create team')")  # type: ignore[attr-defined]
    page.wait_for_selector("#connection-link")  # type: ignore[attr-defined]
    assert "Not connected" in page.inner_text("#connection-link")  # type: ignore[attr-defined]
    page.click("#connection-link >> text=Manage")  # type: ignore[attr-defined]
    page.wait_for_selector("h1:has-text('Runflow connection')")  # type: ignore[attr-defined]
    assert "not connected to Runflow yet" in page.inner_text("#status")  # type: ignore[attr-defined]

    page.fill("#id_label", "Sandbox key")  # type: ignore[attr-defined]
    page.select_option("#id_api_url", live_site.sandbox_url)  # type: ignore[attr-defined]
    page.fill("#id_api_key", key)  # type: ignore[attr-defined]
    page.click("button:has-text('Check and connect')")  # type: ignore[attr-defined]
    page.wait_for_selector(".message--success")  # type: ignore[attr-defined]
    keys = page.inner_text("#keys")  # type: ignore[attr-defined]
    assert "Sandbox key" in keys and "Default" in keys
    assert "Sandbox org" in keys or "Sandbox" in keys
    assert "USD" in keys, keys  # the balance from GET /v1/billing/balance
    assert f"rf_live_…{key[-4:]}" in keys
    assert "balance" in page.inner_text(".messages")  # type: ignore[attr-defined]
    assert "A team without a secret" in page.inner_text("#status")  # type: ignore[attr-defined]

    page.click("button:has-text('Create a secret at Runflow')")  # type: ignore[attr-defined]
    page.wait_for_selector(".connection-secrets")  # type: ignore[attr-defined]
    callbacks = page.inner_text("#callbacks")  # type: ignore[attr-defined]
    assert "whsec_…" in callbacks and "Active" in callbacks
    assert "Ready." in page.inner_text("#status")  # type: ignore[attr-defined]
    html = page.content()  # type: ignore[attr-defined]
    assert key not in html
    screenshot(page, "connection-new-team")

    # The sandbox really holds the secret the page created, for this key's organization.
    answer = httpx.get(
        f"{live_site.sandbox_url}/v1/callback-secrets",
        headers={"Authorization": f"Bearer {key}"},
        timeout=5,
    )
    assert answer.status_code == 200
    assert answer.json(), answer.text


def test_the_demo_team_starts_connected_to_the_sandbox(live_site: LiveSite, page: object) -> None:
    sign_in(page, live_site)
    page.click("nav.topbar__inner .nav >> text=Team")  # type: ignore[attr-defined]
    page.wait_for_selector("#connection-link")  # type: ignore[attr-defined]
    assert "Connected" in page.inner_text("#connection-link")  # type: ignore[attr-defined]
    page.click("#connection-link >> text=Manage")  # type: ignore[attr-defined]
    page.wait_for_selector("#keys")  # type: ignore[attr-defined]
    assert "rf_svc_…" in page.inner_text("#keys")  # type: ignore[attr-defined]
    assert "Ready." in page.inner_text("#status")  # type: ignore[attr-defined]
    assert "whsec_…" in page.inner_text("#callbacks")  # type: ignore[attr-defined]


def test_a_member_is_refused_the_connection_page(live_site: LiveSite, page: object) -> None:
    team_uuid = live_site.shell(
        "from django.contrib.auth import get_user_model\n"
        "from runs.models import Membership, Team\n"
        "u, _ = get_user_model().objects.get_or_create(username='conn-member')\n"
        "u.set_password('member-pass-123'); u.save()\n"
        "t = Team.objects.get(name='Demo')\n"
        "Membership.objects.get_or_create(user=u, team=t, defaults={'role': 'member'})\n"
        "print(t.uuid)\n"
    ).strip()
    sign_in(page, live_site, "conn-member", "member-pass-123")
    response = page.goto(f"{live_site.url}/t/{team_uuid}/connection/")  # type: ignore[attr-defined]
    assert response.status == 403
