"""The run history in a real browser: runs launched by someone else arrive on top, live.

Runs are inserted straight into the live site's database from another process (as another
member's launch would be), and the open page must show them without a reload, once each,
following its filters, with no Content-Security-Policy complaint from Chromium.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.plugins.live import LiveSite, screenshot, sign_in

SEED = r"""
import json
from django.contrib.auth import get_user_model
from runs.models import Membership, Role, Team
User = get_user_model()
admin = User.objects.get(username="admin")
nora, _ = User.objects.get_or_create(username="nora")
team = Team.objects.create(name="History live E2E")
Membership.objects.create(user=admin, team=team, role=Role.ADMIN)
Membership.objects.create(user=nora, team=team, role=Role.MEMBER)
print(json.dumps({"team": str(team.uuid)}))
"""

# A run by nora, created now; {status} and {prompt} are filled in by the test.
NEW_RUN = r"""
from django.utils import timezone
from runs.models import Run, Team
from django.contrib.auth import get_user_model
team = Team.objects.get(uuid="{team}")
now = timezone.now()
finished = "{status}" in ("succeeded", "failed")
run = Run.objects.create(
    team=team, created_by=get_user_model().objects.get(username="nora"),
    api_url="http://127.0.0.1:8765", model_id="google/nano-banana-pro",
    input={{"prompt": "{prompt}"}}, status="{status}", created_at=now, queued_at=now,
    completed_at=now if finished else None)
print(run.uuid)
"""

# Long enough for a 5 s poll, a busy host and the page's own settling.
ARRIVAL_MS = 20_000


@pytest.fixture(scope="module")
def team(live_site: LiveSite) -> Iterator[str]:
    yield json.loads(live_site.shell(SEED).strip().splitlines()[-1])["team"]


def add_run(site: LiveSite, team: str, prompt: str, status: str = "running") -> str:
    code = NEW_RUN.format(team=team, prompt=prompt, status=status)
    return site.shell(code).strip().splitlines()[-1]


def csp_complaints(page: Any) -> list[str]:
    found: list[str] = []
    page.on(
        "console",
        lambda message: (
            found.append(message.text)
            if "Content Security Policy" in message.text or "Refused to" in message.text
            else None
        ),
    )
    return found


def row_ids(page: Any) -> list[str]:
    return [(row.get_attribute("id") or "")[4:] for row in page.locator("#history-rows tr").all()]


def test_runs_from_another_member_arrive_on_top_once(
    live_site: LiveSite, team: str, page: Any
) -> None:
    complaints = csp_complaints(page)
    first = add_run(live_site, team, "an old finished run", "succeeded")
    sign_in(page, live_site)
    page.goto(f"{live_site.url}/t/{team}/")
    assert row_ids(page) == [first]

    second = add_run(live_site, team, "a heron launched by nora")
    page.wait_for_selector(f"#history-rows tr:first-child#run-{second}", timeout=ARRIVAL_MS)
    assert "nora" in page.locator(f"#run-{second} .col-by").inner_text()
    third = add_run(live_site, team, "a kingfisher launched by nora", "succeeded")
    page.wait_for_selector(f"#history-rows tr:first-child#run-{third}", timeout=ARRIVAL_MS)
    time.sleep(6)  # another slow poll: nothing may arrive twice
    assert row_ids(page) == [third, second, first]
    # The new in-flight row is watched like the others: it turns finished in place.
    live_site.shell(
        "from runs.models import Run\n"
        f"Run.objects.filter(uuid='{second}').update(status='succeeded')"
    )
    page.wait_for_selector(f"#run-{second} .badge--succeeded", timeout=ARRIVAL_MS)
    assert row_ids(page) == [third, second, first]
    screenshot(page, "history-new-runs")
    assert complaints == []


def test_a_filtered_empty_view_fills_with_matching_runs_only(
    live_site: LiveSite, team: str, page: Any
) -> None:
    complaints = csp_complaints(page)
    sign_in(page, live_site)
    page.goto(f"{live_site.url}/t/{team}/?status=failed")
    assert page.locator("text=No runs match these filters").count() == 1
    add_run(live_site, team, "this one succeeded", "succeeded")
    failed = add_run(live_site, team, "this one failed", "failed")
    page.wait_for_selector(f"#run-{failed}", timeout=ARRIVAL_MS)
    assert row_ids(page) == [failed]
    later = add_run(live_site, team, "this one failed too", "failed")
    add_run(live_site, team, "this one is still running")
    page.wait_for_selector(f"#history-rows tr:first-child#run-{later}", timeout=ARRIVAL_MS)
    time.sleep(6)
    assert row_ids(page) == [later, failed]
    csv_link = page.locator(".history-export a", has_text="CSV").get_attribute("href")
    assert csv_link is not None and "status=failed" in csv_link
    assert complaints == []
