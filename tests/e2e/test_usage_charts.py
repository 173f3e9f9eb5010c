"""The Usage page's charts in a real browser at a phone's, a laptop's and a wide screen's
width: their labels keep a readable size (they used to grow with the width, about 20 px at
1280 px for "Spend per day" and "How long runs take", about 15 px for the spend per model
and member, because each whole SVG was scaled to its card), labels never overlap, and
neither the page nor a chart scrolls sideways.

The seeded runs live in their own team ("Usage charts E2E") so other browser tests are not
disturbed.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.plugins.live import ARTIFACTS, LiveSite, signed_in_page

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
# Several models (one with a long id) and durations up to minutes, for the row charts.
models = ["google/nano-banana-pro", "bytedance/seedance/2.0/fast/text-to-video-very-long",
          "openai/gpt-image-1", "black-forest-labs/flux-1.1-pro-ultra"]
for day in range(30):
    Run.objects.create(team=team, created_by=admin, api_url="http://127.0.0.1:8765",
                       model_id=models[day % len(models)], input={"prompt": f"day {day}"},
                       status=Status.SUCCEEDED, created_at=now - timedelta(days=day, hours=1),
                       cost=Decimal("1.25") * (1 + day % 7),
                       duration_ms=4_000 + 9_000 * day * (1 + day % len(models)))
print(json.dumps({"team": str(team.uuid)}))
"""

# Every visible text of a chart and its box on screen, in CSS px.
CARD = "section[aria-labelledby=by-day-h]"
ROW_CARDS = {
    "model": "section[aria-labelledby=by-model-h]",
    "member": "section[aria-labelledby=by-member-h]",
    "durations": "section[aria-labelledby=durations-h]",
}
LABELS = """card => [...document.querySelectorAll(card + ' svg text')]
  .filter(t => getComputedStyle(t).display !== 'none')
  .map(t => { const r = t.getBoundingClientRect();
              return {text: t.textContent, left: r.left, right: r.right, top: r.top,
                      bottom: r.bottom, height: r.height}; })"""
# How far any box of a card (its tables aside) scrolls sideways: 0 when the chart fits.
OVERFLOW = """card => Math.max(0, ...[...document.querySelectorAll(card + ' *')]
  .filter(e => e instanceof HTMLElement && e.closest('.table-wrap') === null)
  .map(e => e.scrollWidth - e.clientWidth).filter(n => n > 0 && n < 1e6), 0)"""


@pytest.fixture(scope="module")
def team(live_site: LiveSite) -> Iterator[str]:
    yield json.loads(live_site.shell(SEED).strip().splitlines()[-1])["team"]


@pytest.fixture(params=[375, 1280, 1920], ids=lambda width: f"{width}px")
def usage(live_site: LiveSite, team: str, new_context: Any, request: Any) -> tuple[Any, int]:
    """The team's Usage page for the last 30 days at that screen width, and the width."""
    width = int(request.param)
    page = signed_in_page(new_context, live_site, width)
    page.goto(f"{live_site.url}/t/{team}/usage/?period=30d")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return page, width


def assert_readable(labels: list[dict[str, Any]], *context: object) -> None:
    for label in labels:
        # The box on screen, not the CSS font size: a scaled SVG draws its 12 px text larger
        # or smaller. 12 px text has a box about 14.4 px high; 13-17 is text of 11-14 px.
        assert 13 <= label["height"] <= 17, (*context, label)


def test_spend_per_day_labels_stay_readable_at_any_width(usage: tuple[Any, int]) -> None:
    page, width = usage
    page.locator(CARD).screenshot(path=str(ARTIFACTS / f"usage-chart-{width}.png"))
    labels = page.evaluate(LABELS, CARD)
    axis = [label for label in labels if label["text"].startswith("$")]
    days = [label for label in labels if not label["text"].startswith("$")]
    assert len(axis) >= 3 and len(days) >= 3, labels
    assert_readable(labels, width)
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


def _overlap(a: dict[str, float], b: dict[str, float]) -> bool:
    return (
        a["left"] < b["right"] - 0.5
        and b["left"] < a["right"] - 0.5
        and a["top"] < b["bottom"] - 0.5
        and b["top"] < a["bottom"] - 0.5
    )


def test_row_charts_keep_their_labels_readable_at_any_width(usage: tuple[Any, int]) -> None:
    """Spend per model and per member, and How long runs take."""
    page, width = usage
    for name, card in ROW_CARDS.items():
        page.locator(card).screenshot(path=str(ARTIFACTS / f"usage-{name}-{width}.png"))
        labels = page.evaluate(LABELS, card)
        assert len(labels) >= 2 * (4 if name != "member" else 1), (name, labels)
        assert_readable(labels, name, width)
        for a, b in itertools.combinations(labels, 2):
            assert not _overlap(a, b), (name, width, a, b)
        # Every label is inside its card, so nothing is cut off or needs scrolling.
        box = page.evaluate(f"() => document.querySelector('{card}').getBoundingClientRect()")
        for label in labels:
            assert box["left"] <= label["left"] and label["right"] <= box["right"], (name, label)
        assert page.evaluate(OVERFLOW, card) == 0, name
        # The chart fills its card: drawn at the card's width, not a fixed one.
        chart = page.evaluate(
            f"() => document.querySelector('{card} svg[role=img]').getBoundingClientRect().width"
        )
        assert chart >= box["width"] - 220, (name, chart, box["width"])
    assert page.evaluate("document.documentElement.scrollWidth") <= width
