"""Date (and other number) query parameters never cause a 500 (QA: 9999-12-31 on any picker).

A date picker offers every day up to 9999-12-31; the day after it cannot be computed. Each
page with date filters refuses such a day with a sentence (beside its field where the page
has one) and still answers 200, showing what the other filters select.
"""

from __future__ import annotations

import json
import re
from datetime import date, timedelta
from typing import Any

import pytest
from django.http import QueryDict
from django.urls import reverse
from django.utils import timezone

from runs import dates, usage
from runs.history import HistoryFilters
from runs.models import AuditEntry, Run, record
from tests.conftest import Cast
from tests.workspace_factories import add_output, make_run, media  # noqa: F401 (fixture)

pytestmark = pytest.mark.django_db

EXTREMES = ["9999-12-31", "0001-01-01", "1999-12-31", "2100-01-01"]
# Numbers and garbage in every date and number parameter the pages read.
HOSTILE = [
    *EXTREMES,
    "2026-02-30",
    "-1",
    "99999999999999999999999999",
    "1e400",
    "nan",
    "yesterday",
    "\x00",
]
PARAMS = ("since", "until", "start", "end", "from", "to", "page", "after", "before", "logs")


def pages(cast: Cast) -> list[str]:
    team = cast.team.uuid
    return [
        reverse("runs:team", args=[team]),
        reverse("runs:run_rows", args=[team]),
        reverse("runs:gallery", args=[team]),
        reverse("runs:export_runs", args=[team, "csv"]),
        reverse("runs:export_runs", args=[team, "json"]),
        reverse("runs:usage", args=[team]),
        reverse("runs:audit", args=[team]),
    ]


def body(response: Any) -> str:
    return str(response.getvalue().decode())  # a streamed export too


@pytest.fixture
def run(cast: Cast, media: Any) -> Run:  # noqa: F811
    """A run of the team with a stored output: something for every page to list."""
    run = make_run(cast.team, cast.member)
    add_output(run)
    return run


# ---------- the reported cases ----------


@pytest.mark.parametrize("value", EXTREMES)
def test_history_gallery_and_exports_refuse_an_out_of_range_day(
    cast: Cast, run: Run, value: str
) -> None:
    client = cast.client_for("member")
    team = cast.team.uuid
    for name in ("runs:team", "runs:gallery"):
        response = client.get(reverse(name, args=[team]), {"until": value})
        assert response.status_code == 200, (name, value)
        assert dates.RANGE_HINT in body(response), (name, value)
        # The refused day is dropped: the team's run is still listed.
        assert str(run.uuid) in body(response), name
    for fmt in ("csv", "json"):
        response = client.get(reverse("runs:export_runs", args=[team, fmt]), {"until": value})
        assert response.status_code == 200, (fmt, value)
        assert str(run.uuid) in body(response), fmt


def test_history_date_pickers_offer_only_the_accepted_days(cast: Cast) -> None:
    html = cast.client_for("member").get(reverse("runs:team", args=[cast.team.uuid])).content
    for field in ("since", "until"):
        assert re.search(rf'name="{field}" min="2000-01-01" max="2099-12-31"', html.decode()), field


def test_history_names_the_refused_date(cast: Cast) -> None:
    filters = HistoryFilters.from_query(_query(since="2026-13-01", until="9999-12-31"))
    assert filters.since is None and filters.until is None
    assert filters.problems == [
        f"From date ignored: {dates.FORMAT_HINT}",
        f"To date ignored: {dates.RANGE_HINT}",
    ]


def test_the_last_day_of_the_range_still_filters(cast: Cast) -> None:
    """2099-12-31 is accepted, and the bound after it (2100-01-01) computes."""
    recent = make_run(cast.team, cast.member, created_at=timezone.now() - timedelta(days=1))
    filters = HistoryFilters.from_query(_query(since="2000-01-01", until="2099-12-31"))
    assert not filters.problems and filters.until == dates.LATEST
    assert list(filters.apply_to_runs(Run.objects.filter(team=cast.team), cast.member)) == [recent]


@pytest.mark.parametrize("field", ["start", "end"])
def test_usage_custom_period_puts_the_error_beside_the_field(cast: Cast, field: str) -> None:
    other = "end" if field == "start" else "start"
    params = {"period": "custom", field: "9999-12-31", other: "2026-01-01"}
    response = cast.client_for("viewer").get(reverse("runs:usage", args=[cast.team.uuid]), params)
    assert response.status_code == 200
    html = body(response)
    error = re.search(rf'<ul class="errorlist" id="{field}-error"><li>([^<]*)</li>', html)
    assert error is not None and error.group(1) == dates.RANGE_HINT
    # The typed value stays in its field, marked invalid, and the other field has no error.
    assert re.search(rf'id="{field}"[^>]*value="9999-12-31"[^>]*aria-invalid="true"', html)
    assert f'id="{other}-error"' not in html
    # The page falls back to its default period, and the pickers are bounded.
    assert response.context["period"].key == usage.DEFAULT_PERIOD
    assert 'min="2000-01-01" max="2099-12-31"' in html


def test_usage_period_parsing_refuses_out_of_range_days() -> None:
    for field in ("start", "end"):
        period = usage.parse_period(
            {"period": "custom", "start": "2026-01-01", field: "0001-01-01"}
        )
        assert (period.key, period.error_field, period.error) == ("30d", field, dates.RANGE_HINT)
    missing = usage.parse_period({"period": "custom"})
    assert missing.error_field == "start" and missing.key == "30d"
    edge = usage.parse_period({"period": "custom", "start": "2099-12-01", "end": "2099-12-31"})
    assert not edge.error and edge.end == dates.day_start(date(2100, 1, 1))


@pytest.mark.parametrize("field", ["from", "to"])
def test_audit_log_puts_the_error_beside_the_field(cast: Cast, field: str) -> None:
    record("member.added", team=cast.team, actor=cast.admin, target="mo")
    response = cast.client_for("admin").get(
        reverse("runs:audit", args=[cast.team.uuid]), {field: "9999-12-31"}
    )
    assert response.status_code == 200
    html = body(response)
    error = re.search(rf'<ul class="errorlist" id="f-{field}-error"><li>([^<]*)</li>', html)
    assert error is not None and error.group(1) == dates.RANGE_HINT
    # The refused bound is left out; the entry is still listed.
    assert [e.target for e in response.context["page"].object_list] == ["mo"]


def test_audit_log_still_filters_on_good_days(cast: Cast) -> None:
    AuditEntry.objects.create(
        team=cast.team,
        actor=cast.admin,
        action="member.removed",
        target="old",
        created_at=timezone.now() - timedelta(days=40),
    )
    record("member.added", team=cast.team, actor=cast.admin, target="new")
    since = (timezone.localdate() - timedelta(days=2)).isoformat()
    response = cast.client_for("admin").get(
        reverse("runs:audit", args=[cast.team.uuid]), {"from": since, "to": "2099-12-31"}
    )
    assert [e.target for e in response.context["page"].object_list] == ["new"]
    assert not response.context["errors"]


# ---------- the same class of bug everywhere ----------


@pytest.mark.usefixtures("run")
@pytest.mark.parametrize("value", HOSTILE)
def test_no_page_fails_on_hostile_date_and_number_parameters(cast: Cast, value: str) -> None:
    client = cast.client_for("admin")
    client.raise_request_exception = True  # a 500 fails here with its traceback
    for url in pages(cast):
        for extra in ({}, {"period": "custom"}):
            response = client.get(url, {**dict.fromkeys(PARAMS, value), **extra})
            assert response.status_code in (200, 286), (url, value, response.status_code)
            if url.endswith(".json"):
                json.loads(body(response))  # a whole document, not a stream cut short


def _query(**values: str) -> QueryDict:
    query = QueryDict(mutable=True)
    query.update(values)
    return query
