"""The Usage page: aggregates, periods, durations, balance and charts."""

from __future__ import annotations

import json
import re
import sys
import threading
import types
from collections.abc import Callable, Iterator
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from runs import charts, usage
from runs.models import Run, Status, Team
from tests.conftest import READ_EXPECTED, Cast, assert_access, make_user

pytestmark = pytest.mark.django_db

D = Decimal
API = "https://api.runflow.io"


def run(team: Team, **fields: Any) -> Run:
    values: dict[str, Any] = {"team": team, "api_url": API, "model_id": "acme/image"}
    values.update(fields)
    return Run.objects.create(**values)


def days_ago(n: int, hour: int = 12) -> Any:
    local = timezone.localtime() - timedelta(days=n)
    return local.replace(hour=hour, minute=0, second=0, microsecond=0)


@pytest.fixture(autouse=True)
def _fresh_cache() -> Iterator[None]:
    cache.clear()
    yield
    cache.clear()


# ---------- Access ----------


def test_usage_page_access_matrix(cast: Cast) -> None:
    assert_access(cast, "get", reverse("runs:usage", args=[cast.team.uuid]), READ_EXPECTED)


def test_usage_shows_only_the_teams_own_spend(cast: Cast) -> None:
    run(cast.team, created_by=cast.member, cost=D("1.25"), model_id="acme/mine")
    run(cast.other_team, created_by=cast.outsider, cost=D("99"), model_id="other/secret-model")
    response = cast.client_for("viewer").get(reverse("runs:usage", args=[cast.team.uuid]))
    body = response.content.decode()
    assert "acme/mine" in body and "$1.25" in body
    assert "other/secret-model" not in body and "$99" not in body


# ---------- Periods ----------


def test_period_presets_and_custom_dates() -> None:
    now = timezone.make_aware(timezone.datetime(2026, 3, 15, 10))
    assert usage.parse_period({}, now).first_day == date(2026, 2, 14)  # 30 days incl. today
    week = usage.parse_period({"period": "7d"}, now)
    assert (week.first_day, week.last_day) == (date(2026, 3, 9), date(2026, 3, 15))
    month = usage.parse_period({"period": "month"}, now)
    assert month.first_day == date(2026, 3, 1)
    last = usage.parse_period({"period": "last_month"}, now)
    assert (last.first_day, last.last_day) == (date(2026, 2, 1), date(2026, 2, 28))
    custom = usage.parse_period({"period": "custom", "start": "2026-01-10", "end": "2026-01-05"})
    assert (custom.first_day, custom.last_day) == (date(2026, 1, 5), date(2026, 1, 10))
    assert len(custom.days) == 6


def test_bad_period_values_fall_back_with_a_message() -> None:
    bad = usage.parse_period({"period": "custom", "start": "yesterday"})
    assert bad.key == "30d" and "2026-05-31" in bad.error
    assert usage.parse_period({"period": "forever"}).key == "30d"
    huge = usage.parse_period({"period": "custom", "start": "2000-01-01", "end": "2026-01-01"})
    assert (huge.last_day - huge.first_day).days == usage.MAX_PERIOD_DAYS and huge.error


# ---------- Aggregates ----------


def test_spend_by_day_fills_quiet_days_and_sums_each_day(cast: Cast) -> None:
    run(cast.team, cost=D("1.10"), created_at=days_ago(2, hour=1))
    run(cast.team, cost=D("0.40"), created_at=days_ago(2, hour=23))
    run(cast.team, cost=None, status=Status.FAILED, created_at=days_ago(2))
    run(cast.team, cost=D("3"), created_at=days_ago(20))  # outside the week
    period = usage.parse_period({"period": "7d"})
    rows = usage.spend_by_day(cast.team, period)
    assert len(rows) == 7
    by_day = {day: (spend, runs) for day, spend, runs in rows}
    assert by_day[days_ago(2).date()] == (D("1.50"), 3)
    assert by_day[days_ago(1).date()] == (D(0), 0)
    assert sum(spend for _, spend, _ in rows) == D("1.50")


def test_spend_by_model_and_member_largest_first(cast: Cast) -> None:
    gone = make_user("gone")
    run(cast.team, created_by=cast.member, model_id="a/cheap", cost=D("0.10"))
    run(cast.team, created_by=cast.member, model_id="b/dear", cost=D("2.00"))
    run(cast.team, created_by=cast.admin, model_id="b/dear", cost=D("1.00"))
    run(cast.team, created_by=gone, model_id="a/cheap", cost=D("0.05"))
    gone.delete()
    period = usage.parse_period({})
    models = usage.spend_by_model(cast.team, period)
    assert [(r.label, r.spend, r.runs) for r in models] == [
        ("b/dear", D("3.00"), 2),
        ("a/cheap", D("0.15"), 2),
    ]
    members = usage.spend_by_member(cast.team, period)
    assert [(r.label, r.spend) for r in members] == [
        ("mo", D("2.10")),
        ("ada", D("1.00")),
        ("(deleted account)", D("0.05")),
    ]


def test_runs_by_status_and_totals(cast: Cast) -> None:
    for status in (Status.SUCCEEDED, Status.SUCCEEDED, Status.FAILED, Status.RUNNING):
        run(cast.team, status=status, cost=D("1") if status == Status.SUCCEEDED else None)
    run(cast.team, status=Status.SUCCEEDED, cost=None)
    period = usage.parse_period({})
    counts = usage.runs_by_status(cast.team, period)
    assert counts["succeeded"] == 3 and counts["failed"] == 1 and counts["running"] == 1
    assert counts["canceled"] == 0
    totals = usage.totals(cast.team, period)
    assert (totals.runs, totals.succeeded, totals.failed, totals.in_flight) == (5, 3, 1, 1)
    assert totals.spend == D("2") and totals.unpriced == 1
    assert totals.success_rate == 0.75


def test_deleted_runs_still_count_as_spend(cast: Cast) -> None:
    run(cast.team, cost=D("4"), deleted_at=timezone.now())
    assert usage.totals(cast.team, usage.parse_period({})).spend == D("4")
    assert usage.month_spend(cast.team) == D("4")


def test_usage_page_queries_do_not_grow_with_runs(cast: Cast) -> None:
    client = cast.client_for("admin")
    url = reverse("runs:usage", args=[cast.team.uuid])

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert client.get(url).status_code == 200
        return len(captured)

    for n in range(3):
        run(cast.team, created_by=cast.member, cost=D("1"), model_id=f"m/{n}", duration_ms=100)
    queries()  # the first visit also stores the current team in the session
    few = queries()
    for n in range(40):
        run(cast.team, created_by=cast.admin, cost=D("1"), model_id=f"m/{n % 7}", duration_ms=n)
    assert queries() == few


# ---------- Durations ----------


def test_median_and_90th_percentile_are_nearest_rank(cast: Cast) -> None:
    for seconds in range(1, 11):  # 1 s .. 10 s
        run(cast.team, status=Status.SUCCEEDED, duration_ms=seconds * 1000)
    run(cast.team, status=Status.FAILED, duration_ms=999_000)  # failures end early or late
    run(cast.other_team, status=Status.SUCCEEDED, duration_ms=1)
    found = usage.expected_duration(cast.team, "acme/image")
    assert found is not None
    assert (found.median_ms, found.p90_ms, found.samples) == (5000, 9000, 10)
    assert "usually 5.0 s" in found.summary and "under 9.0 s" in found.summary


def test_durations_per_model_from_the_period(cast: Cast) -> None:
    run(cast.team, model_id="a/one", status=Status.SUCCEEDED, duration_ms=7000)
    for ms in (1000, 2000, 3000):
        run(cast.team, model_id="b/three", status=Status.SUCCEEDED, duration_ms=ms)
    run(
        cast.team,
        model_id="c/old",
        status=Status.SUCCEEDED,
        duration_ms=5,
        created_at=days_ago(200),
    )
    rows = usage.durations_by_model(cast.team, since=days_ago(30))
    assert [(d.model_id, d.median_ms, d.p90_ms, d.samples) for d in rows] == [
        ("b/three", 2000, 3000, 3),
        ("a/one", 7000, 7000, 1),
    ]
    assert usage.expected_duration(cast.team, "c/old") is None  # older than the history window


def test_expected_duration_without_history_is_none(cast: Cast) -> None:
    assert usage.expected_duration(cast.team, "never/ran") is None


def test_format_duration() -> None:
    assert usage.format_duration(2500) == "2.5 s"
    assert usage.format_duration(42_000) == "42 s"
    assert usage.format_duration(125_000) == "2 min 5 s"
    assert usage.format_duration(3_900_000) == "1 h 5 min"


# ---------- Balance ----------


@pytest.fixture
def runflow_answers(monkeypatch: pytest.MonkeyPatch) -> Callable[..., list[httpx.Request]]:
    """Point ``client_for_team`` at a real client whose transport answers as told."""
    seen: list[httpx.Request] = []

    def install(
        status: int = 200, body: Any = None, delay: threading.Event | None = None
    ) -> list[httpx.Request]:
        def handler(request: httpx.Request) -> httpx.Response:
            seen.append(request)
            if delay is not None:
                delay.wait(5)
            return httpx.Response(status, json=body)

        from runs.runflow.client import RunflowClient

        def client_for_team(team: Team, *, key: object = None) -> RunflowClient:
            return RunflowClient(
                API, "rf_live_testkey1234", transport=httpx.MockTransport(handler), max_attempts=1
            )

        module = sys.modules.get("runs.connection")
        if module is None:
            module = types.ModuleType("runs.connection")
            monkeypatch.setitem(sys.modules, "runs.connection", module)
        monkeypatch.setattr(module, "client_for_team", client_for_team, raising=False)
        return seen

    return install


def balance_url(cast: Cast) -> str:
    return reverse("runs:usage", args=[cast.team.uuid]) + "?balance=1"


def test_balance_is_fetched_on_demand_and_cached(cast: Cast, runflow_answers: Any) -> None:
    seen = runflow_answers(body={"balance": "124.50", "low_balance_threshold": "10.00"})
    client = cast.client_for("member")
    page = client.get(reverse("runs:usage", args=[cast.team.uuid]))
    assert seen == []  # the page itself never waits on Runflow
    assert b"hx-get" in page.content and b"?balance=1" in page.content
    partial = client.get(balance_url(cast), headers={"HX-Request": "true"})
    assert partial.status_code == 200
    assert b"$124.50" in partial.content and b"<html" not in partial.content
    assert seen[0].url.path == "/v1/billing/balance"
    client.get(balance_url(cast), headers={"HX-Request": "true"})
    again = client.get(reverse("runs:usage", args=[cast.team.uuid]))
    assert len(seen) == 1 and b"$124.50" in again.content


def test_balance_without_javascript_is_a_plain_link(cast: Cast, runflow_answers: Any) -> None:
    runflow_answers(body={"balance": "3.00", "low_balance_threshold": "5.00"})
    response = cast.client_for("admin").get(balance_url(cast))
    assert response.status_code == 200
    assert b"<html" in response.content and b"$3.00" in response.content
    assert b"Low" in response.content


def test_viewers_never_cause_the_upstream_call(cast: Cast, runflow_answers: Any) -> None:
    seen = runflow_answers(body={"balance": "1"})
    response = cast.client_for("viewer").get(balance_url(cast), headers={"HX-Request": "true"})
    assert response.status_code == 200 and seen == []


def test_balance_error_degrades_to_a_sentence(cast: Cast, runflow_answers: Any) -> None:
    runflow_answers(status=401, body={"code": "UNAUTHORIZED", "message": "bad key"})
    response = cast.client_for("member").get(balance_url(cast), headers={"HX-Request": "true"})
    assert response.status_code == 200
    assert b"Unavailable" in response.content


def test_slow_runflow_does_not_hold_the_page(
    cast: Cast, runflow_answers: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = threading.Event()
    runflow_answers(body={"balance": "1"}, delay=release)
    monkeypatch.setattr(usage, "BALANCE_TIMEOUT", 0.2)
    started = timezone.now()
    try:
        view = usage.runflow_balance(cast.team)
    finally:
        release.set()
    assert (timezone.now() - started).total_seconds() < 2
    assert view.balance is None and "did not answer in time" in view.error


def test_no_connection_yet_is_said_plainly(cast: Cast, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(team: Team, *, key: object = None) -> None:
        raise RuntimeError("This team has no Runflow key yet.")

    module = sys.modules.get("runs.connection") or types.ModuleType("runs.connection")
    monkeypatch.setitem(sys.modules, "runs.connection", module)
    monkeypatch.setattr(module, "client_for_team", refuse, raising=False)
    assert usage.runflow_balance(cast.team).error == "This team has no Runflow key yet."


# ---------- Charts ----------


def test_chart_text_is_escaped(cast: Cast) -> None:
    run(cast.team, model_id='evil/<script>alert("x")</script>', cost=D("1"), created_by=cast.member)
    body = cast.client_for("member").get(reverse("runs:usage", args=[cast.team.uuid])).content
    assert b"<script>alert" not in body
    assert b"&lt;script&gt;alert" in body


def test_nice_scale_rounds_up_to_a_readable_axis() -> None:
    assert charts.nice_scale(0) == (1.0, 0.25)
    assert charts.nice_scale(9.3) == (10.0, 2.5)
    top, step = charts.nice_scale(0.37)
    assert top >= 0.37 and step in (0.1, 0.2, 0.25)


def test_column_chart_geometry() -> None:
    chart = charts.column_chart(
        [("a", 1, "a"), ("b", 4, "b"), ("c", 0, "c")], title="t", fmt=str, height=240
    )
    tallest = max(chart.columns, key=lambda c: c.height)
    assert tallest.label == "b"
    assert tallest.y + tallest.height == chart.bottom
    assert chart.columns[2].height == 0
    assert chart.ticks[0].pos == chart.bottom and not chart.empty


def test_column_chart_places_day_labels_by_share_of_the_width_and_thins_them() -> None:
    """The plot is stretched to the page's width, so day labels (which must not stretch)
    are placed in percent; every other shown label is "minor", hidden on narrow plots."""
    points = [(f"d{i}", i, f"d{i}") for i in range(30)]
    chart = charts.column_chart(points, title="t", fmt=str)
    assert chart.columns[0].label_x == pytest.approx(100 * 0.5 / 30, abs=0.01)
    assert chart.columns[-1].label_x == pytest.approx(100 * 29.5 / 30, abs=0.01)
    last = chart.columns[-1]
    assert last.x + last.width <= chart.width  # the plot's own units, no margins
    shown = [c for c in chart.columns if c.show_label]
    assert len(shown) <= 8
    assert [c.minor for c in shown] == [i % 2 == 1 for i in range(len(shown))]


def test_bar_chart_scales_to_the_largest_and_shortens_long_labels() -> None:
    long_id = "bytedance/seedance/2.0/fast/text-to-video-very-long"
    chart = charts.bar_chart([(long_id, 10), ("b", 5)], title="t", fmt=str)
    # Bar lengths are percentages of the plot, which fills the card at any width.
    assert chart.bars[0].width == 100
    assert chart.bars[1].width == 50
    # Each label has its own line above its bar, so a long one never runs into the bar.
    assert chart.bars[0].label_y < chart.bars[0].y < chart.bars[1].label_y
    assert chart.bars[0].short_label.startswith("…") and len(chart.bars[0].short_label) <= 24
    assert chart.bars[0].title.startswith(long_id)


def test_range_chart_places_bars_and_ticks_in_percent_and_thins_tick_labels() -> None:
    chart = charts.range_chart([("a", 500, 1000), ("b", 250, 400)], title="t", fmt=str)
    assert [t.x for t in chart.ticks] == [0, 25, 50, 75, 100]
    assert chart.rows[0].p90_width == 100 and chart.rows[0].median_x == 50
    assert chart.rows[1].p90_width == 40
    # Narrow plots hide the minor tick labels, then all but the ends: never the ends.
    assert [t.minor for t in chart.ticks] == [False, True, False, True, False]
    assert [t.inner for t in chart.ticks] == [False, True, True, True, False]
    assert chart.rows[-1].y + chart.bar_height < chart.axis_y < chart.label_y <= chart.height


def test_stack_chart_shares() -> None:
    chart = charts.stack_chart([("ok", 3, "ok"), ("bad", 1, "bad"), ("none", 0, "x")], title="t")
    assert [s.share for s in chart.segments] == ["75%", "25%"]
    assert sum(s.width for s in chart.segments) == pytest.approx(chart.width)


def test_usage_page_links_the_export_of_its_period(cast: Cast) -> None:
    inside = run(cast.team, created_by=cast.member, created_at=days_ago(3))
    outside = run(cast.team, created_by=cast.member, created_at=days_ago(40))
    client = cast.client_for("viewer")
    page = client.get(reverse("runs:usage", args=[cast.team.uuid]), {"period": "7d"})
    link = re.search(r'href="([^"]*/runs/export\.json\?[^"]*)"', page.content.decode())
    assert link is not None
    response = client.get(link.group(1).replace("&amp;", "&"))
    exported = {row["id"] for row in json.loads(b"".join(response.streaming_content))}
    assert exported == {str(inside.uuid)} and str(outside.uuid) not in exported


def test_summary_counts_agree_with_the_status_chart(cast: Cast) -> None:
    """QA: "9 succeeded" beside a chart of 8 succeeded and 1 partly succeeded."""
    for _ in range(8):
        run(cast.team, status=Status.SUCCEEDED, cost=D("1"))
    run(cast.team, status=Status.PARTIAL_SUCCEEDED, cost=None)
    run(cast.team, status=Status.FAILED)
    response = cast.client_for("viewer").get(reverse("runs:usage", args=[cast.team.uuid]))
    html = response.content.decode()
    outcomes = re.search(r'id="outcomes">([^<]*)<', html)
    assert outcomes is not None
    assert outcomes.group(1) == "8 succeeded · 1 partly succeeded · 1 failed"
    legend = dict(
        re.findall(r'class="badge badge--\w+">([^<]+)</span> <strong>(\d+)</strong>', html)
    )
    assert legend == {"Succeeded": "8", "Partly succeeded": "1", "Failed": "1"}
    # 8 of the 10 runs that reached an outcome fully succeeded.
    totals = response.context["totals"]
    assert totals.success_percent == 80
    assert 'class="stat__value">80%</span>' in html
    # A partly succeeded run without a cost is one "without a reported cost".
    assert totals.unpriced == 1
