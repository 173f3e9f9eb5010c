"""The Usage page's "Spend per day" chart in a real browser at a phone's, a laptop's and a
wide screen's width: its axis labels keep a readable size (they used to grow with the
width, about 20 px at 1280 px, because the whole SVG was scaled to the card), labels never
overlap, and the page never scrolls sideways.

The seeded runs live in their own team ("Usage charts E2E") so other browser tests are not
disturbed.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.plugins.live import ARTIFACTS, LiveSite, sign_in

SEED = r"""
import json
from datetime import timedelta
from decimal import Decimal
from django.contrib.auth import get_user_model
from django.utils import timezone
from runs.models import Membership, Role, Run, Status, Team

admin = get_user_model().objects.get(username="admin")
team = Team.objects.create(name="Usage charts E2E")
Membership.objects.create(user=admin, team=team, role=Role.ADMIN)
now = timezone.now()
for day in range(30):
    Run.objects.create(team=team, created_by=admin, api_url="http://127.0.0.1:8765",
                       model_id="google/nano-banana-pro", input={"prompt": f"day {day}"},
                       status=Status.SUCCEEDED, created_at=now - timedelta(days=day, hours=1),
                       cost=Decimal("1.25") * (1 + day % 7))
print(json.dumps({"team": str(team.uuid)}))
"""

# Every visible text of the chart and its box on screen, in CSS px.
CARD = "section[aria-labelledby=by-day-h]"
LABELS = f"""() => [...document.querySelectorAll('{CARD} svg text')]
  .filter(t => getComputedStyle(t).display !== 'none')
  .map(t => {{ const r = t.getBoundingClientRect();
              return {{text: t.textContent, left: r.left, right: r.right, height: r.height}}; }})"""


@pytest.fixture(scope="module")
def team(live_site: LiveSite) -> Iterator[str]:
    yield json.loads(live_site.shell(SEED).strip().splitlines()[-1])["team"]


@pytest.mark.parametrize("width", [375, 1280, 1920])
def test_spend_per_day_labels_stay_readable_at_any_width(
    live_site: LiveSite, team: str, new_context: Any, width: int
) -> None:
    page = new_context(viewport={"width": width, "height": 900}).new_page()
    sign_in(page, live_site)
    page.goto(f"{live_site.url}/t/{team}/usage/?period=30d")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.locator(CARD).screenshot(path=str(ARTIFACTS / f"usage-chart-{width}.png"))
    labels = page.evaluate(LABELS)
    axis = [label for label in labels if label["text"].startswith("$")]
    days = [label for label in labels if not label["text"].startswith("$")]
    assert len(axis) >= 3 and len(days) >= 3, labels
    for label in labels:
        # The box on screen, not the CSS font size: a scaled SVG draws its 12 px text larger
        # or smaller. 12 px text has a box about 14.4 px high; 13-17 is text of 11-14 px.
        assert 13 <= label["height"] <= 17, label
    # Day labels side by side never overlap.
    ordered = sorted(days, key=lambda label: label["left"])
    for before, after in itertools.pairwise(ordered):
        assert before["right"] <= after["left"], (before, after)
    # The plot fills the card: it is stretched, not left at a fixed width.
    plot = page.evaluate(
        f"() => document.querySelector('{CARD} svg[role=img]').getBoundingClientRect().width"
    )
    card = page.evaluate(f"() => document.querySelector('{CARD}').getBoundingClientRect().width")
    assert plot >= card - 140, (plot, card)
    assert page.evaluate("document.documentElement.scrollWidth") <= width
