"""A Chromium crawl of a team full of hostile text: 0 CSP violations, 0 script executions (B3, B4).

The live site (real ``serve``) gets a team seeded through ``live_site.shell`` with runs whose
prompts, log lines, failure messages, step names and output URLs come from
``tests/fixtures/hostile/``. Every payload that could run sets ``window.__pwned`` or opens
a dialog. The crawl opens every page of that team (history, filtered history, each run
page, gallery, compare, presets, batch, share links, usage, audit, settings) plus the admin
changelists and change pages, and the share link as an anonymous visitor, tabbing through
each page so focus handlers would fire. It records:

- CSP violations, from Chromium's console ("Refused to ..." / "Content Security Policy");
- script executions: ``window.__pwned`` must stay undefined and no dialog may open.
Both must be 0.
"""

from __future__ import annotations

import json
from typing import Any

from tests.fixtures.hostile.seed import corpus_size
from tests.plugins.live import LiveSite, sign_in


def seed(site: LiveSite) -> dict[str, Any]:
    output = site.shell(
        "import json; from tests.fixtures.hostile.seed import seed_team; "
        "print(json.dumps(seed_team()))"
    )
    return json.loads(output.strip().splitlines()[-1])


class Recorder:
    def __init__(self) -> None:
        self.violations: list[str] = []
        self.dialogs: list[str] = []
        self.executions: list[str] = []
        self.errors: list[str] = []
        self.current = ""

    def attach(self, page: Any) -> None:
        page.on("console", self._console)
        page.on("dialog", self._dialog)
        page.on("pageerror", lambda error: self.errors.append(f"{self.current}: {error}"))

    def _console(self, message: Any) -> None:
        text = message.text
        if "Content Security Policy" in text or text.startswith("Refused to"):
            self.violations.append(f"{self.current}: {text[:300]}")

    def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(f"{self.current}: {dialog.type} {dialog.message[:100]}")
        dialog.dismiss()

    def visit(self, page: Any, url: str, *, tabs: int = 6) -> int:
        self.current = url
        response = page.goto(url, wait_until="load")
        status = response.status if response is not None else 0
        for _ in range(tabs):
            page.keyboard.press("Tab")
        page.wait_for_timeout(150)
        if page.evaluate("() => typeof window.__pwned !== 'undefined'"):
            self.executions.append(url)
        return status


def test_hostile_team_crawl_records_no_violation_and_no_execution(
    live_site: LiveSite, new_context: Any
) -> None:
    seeded = seed(live_site)
    team, base = seeded["team"], live_site.url
    recorder = Recorder()
    context = new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    recorder.attach(page)
    sign_in(page, live_site)

    pages = [
        f"/t/{team}/",
        f"/t/{team}/?q=%3Cscript%3Ewindow.__pwned%3D1%3C%2Fscript%3E",
        f"/t/{team}/?status=failed",
        f"/t/{team}/gallery/",
        f"/t/{team}/compare/?" + "&".join(f"runs={run}" for run in seeded["runs"][:4]),
        f"/t/{team}/presets/",
        f"/t/{team}/batches/{seeded['batch']}/",
        f"/t/{team}/shares/",
        f"/t/{team}/usage/",
        f"/t/{team}/audit/",
        f"/t/{team}/settings/",
        *[f"/t/{team}/runs/{run}/" for run in seeded["runs"]],
        *[
            f"/admin/runs/{model}/"
            for model in ("run", "output", "delivery", "runlog", "noderun", "auditentry", "batch")
        ],
        "/admin/runs/run/?q=%3Cscript%3E",
        *[f"/admin/runs/run/{pk}/change/" for pk in seeded["run_pks"]],
    ]
    statuses = {url: recorder.visit(page, base + url) for url in pages}
    assert all(status == 200 for status in statuses.values()), {
        url: status for url, status in statuses.items() if status != 200
    }

    # The share link, as someone who is not signed in.
    stranger = new_context().new_page()
    recorder.attach(stranger)
    assert recorder.visit(stranger, f"{base}/s/{seeded['share']}/") == 200

    crawled = len(pages) + 1
    print(
        f"\nCSP crawl: {crawled} pages, corpus {corpus_size()}: "
        f"{len(recorder.violations)} CSP violations, "
        f"{len(recorder.executions) + len(recorder.dialogs)} script executions"
    )
    assert recorder.violations == []
    assert recorder.executions == [] and recorder.dialogs == []

    # The recorder itself: an inline script added to a real page is refused and reported.
    canary = Recorder()
    canary.attach(page)
    canary.visit(page, f"{base}/t/{team}/", tabs=0)
    page.evaluate(
        "() => { const s = document.createElement('script');"
        " s.textContent = 'window.__pwned = 1'; document.body.appendChild(s); }"
    )
    page.wait_for_timeout(200)
    assert canary.violations, "the console listener saw no CSP report for an inline script"
    assert page.evaluate("() => typeof window.__pwned") == "undefined"
