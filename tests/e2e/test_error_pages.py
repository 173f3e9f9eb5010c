"""In Chromium, on the real ``serve``: the error pages, the account page and the favicon
load with no CSP violation and with the site's stylesheet applied."""

from __future__ import annotations

from typing import Any

from tests.e2e.test_history_live import csp_complaints
from tests.plugins.live import LiveSite, screenshot, sign_in


def _styled(page: Any) -> bool:
    """The page's main button has the site's accent colour: site.css loaded and applied."""
    colour = page.evaluate(
        "() => getComputedStyle(document.querySelector('.button--primary')).backgroundColor"
    )
    return colour not in ("", "rgba(0, 0, 0, 0)", "rgb(239, 239, 239)")


def test_error_and_account_pages_in_a_browser(live_site: LiveSite, new_context: Any) -> None:
    context = new_context(viewport={"width": 1280, "height": 800})
    visitor = context.new_page()
    violations = csp_complaints(visitor)

    answer = visitor.goto(f"{live_site.url}/s/{'x' * 43}/")  # a share link that is gone
    assert answer is not None and answer.status == 404
    assert visitor.locator("h1").inner_text() == "There is nothing to see here"
    assert visitor.get_by_role("link", name="Sign in").count() == 1
    assert _styled(visitor)
    screenshot(visitor, "error-404")

    icon = visitor.goto(f"{live_site.url}/favicon.ico")
    assert icon is not None and icon.status == 200
    assert icon.headers["content-type"] in ("image/x-icon", "image/vnd.microsoft.icon")

    member = new_context(viewport={"width": 1280, "height": 800}).new_page()
    violations += csp_complaints(member)
    sign_in(member, live_site)
    member.click("summary[aria-label=Account]")
    member.get_by_role("link", name="Account", exact=True).click()
    member.wait_for_url(f"{live_site.url}/accounts/")
    assert member.locator("#id_email").count() == 1
    screenshot(member, "account")

    assert violations == []
