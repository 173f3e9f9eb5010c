"""A new user's first minutes: serve starts, the printed login works, the Demo team is there."""

from __future__ import annotations

from tests.plugins.live import LiveSite, screenshot, sign_in


def test_printed_login_opens_the_demo_team(live_site: LiveSite, page: object) -> None:
    sign_in(page, live_site)
    assert page.locator(".team-switcher").inner_text().strip().startswith("Demo")  # type: ignore[attr-defined]
    screenshot(page, "01-runs-home")
    page.click("nav.topbar__inner .nav >> text=Team")  # type: ignore[attr-defined]
    page.wait_for_selector("h2:has-text('Members')")  # type: ignore[attr-defined]
    assert "admin" in page.inner_text("#members")  # type: ignore[attr-defined]


def test_anonymous_visitor_is_sent_to_sign_in(live_site: LiveSite, page: object) -> None:
    page.goto(live_site.url + "/")  # type: ignore[attr-defined]
    assert "/accounts/login/" in page.url  # type: ignore[attr-defined]
    assert page.locator("h1").inner_text() == "Sign in"  # type: ignore[attr-defined]
