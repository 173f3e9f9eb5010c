"""The run history: access, columns, filters in the URL, keyset pages, the one live poll."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from runs import history
from runs.history import HistoryFilters, page_runs, team_runs
from runs.models import ArchiveState, Star, Status
from tests.conftest import READ_EXPECTED, WRITE_EXPECTED, Cast, assert_access
from tests.workspace_factories import add_output, make_run, media  # noqa: F401

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("media")]

HTMX = {"HTTP_HX_REQUEST": "true"}


def team_url(cast: Cast, **query: str) -> str:
    url = reverse("runs:team", args=[cast.team.uuid])
    if query:
        url += "?" + "&".join(f"{k}={v}" for k, v in query.items())
    return url


def rows_in(html: str) -> list[str]:
    return re.findall(r'<tr id="run-([0-9a-f-]{36})"', html)


# ---------------------------------------------------------------- access


def test_history_access_matrix(cast: Cast) -> None:
    assert_access(cast, "get", team_url(cast), READ_EXPECTED)


def test_rows_poll_access_matrix(cast: Cast) -> None:
    run = make_run(cast.team, cast.member, status=Status.RUNNING)
    url = reverse("runs:run_rows", args=[cast.team.uuid]) + f"?ids={run.uuid}"
    assert_access(cast, "get", url, READ_EXPECTED)


def test_outsider_never_sees_another_teams_runs(cast: Cast) -> None:
    mine = make_run(cast.team, cast.member, prompt="acme secret plan")
    theirs = make_run(cast.other_team, cast.outsider, prompt="other team's plan")
    html = cast.client_for("member").get(team_url(cast)).content.decode()
    assert rows_in(html) == [str(mine.uuid)]
    assert "other team" not in html
    # And the poll ignores UUIDs of runs in other teams.
    url = reverse("runs:run_rows", args=[cast.team.uuid]) + f"?ids={theirs.uuid}"
    response = cast.client_for("member").get(url, **HTMX)
    assert str(theirs.uuid) not in response.content.decode()


# ---------------------------------------------------------------- what a row shows


def test_rows_are_newest_first_with_model_who_status_duration_cost(cast: Cast) -> None:
    now = timezone.now()
    old = make_run(cast.team, cast.admin, prompt="older", created_at=now - timedelta(hours=2))
    new = make_run(
        cast.team, cast.member, prompt="newer", status=Status.FAILED, created_at=now, cost=None
    )
    add_output(old)
    html = cast.client_for("viewer").get(team_url(cast)).content.decode()
    assert rows_in(html) == [str(new.uuid), str(old.uuid)]
    row = html[html.index(f'id="run-{old.uuid}"') :]
    row = row[: row.index("</tr>")]
    assert "acme/text-to-image" in row
    assert ">ada<" in row
    assert 'class="badge badge--succeeded"' in row
    assert "9.0 s" in row
    assert "$0.04" in row
    thumb = reverse("runs:output_file", args=[cast.team.uuid, old.outputs.get().uuid])
    assert f'src="{thumb}"' in row
    assert 'badge--failed">Failed' in html


def test_pending_and_expired_outputs_show_placeholders_not_upstream_urls(cast: Cast) -> None:
    run = make_run(cast.team, cast.member)
    add_output(run, 0, archived=False)
    add_output(run, 1, archived=False, archive_state=ArchiveState.EXPIRED)
    html = cast.client_for("member").get(team_url(cast)).content.decode()
    assert "thumb--pending" in html
    assert "thumb--bad" in html
    assert "files.runflow.example" not in html


def test_deleted_runs_are_hidden(cast: Cast) -> None:
    make_run(cast.team, cast.member, prompt="gone", deleted_at=timezone.now())
    html = cast.client_for("member").get(team_url(cast)).content.decode()
    assert "gone" not in html
    assert "No runs yet" in html


def test_empty_history_invites_members_to_launch_and_explains_viewers(cast: Cast) -> None:
    member_html = cast.client_for("member").get(team_url(cast)).content.decode()
    viewer_html = cast.client_for("viewer").get(team_url(cast)).content.decode()
    assert "No runs yet" in member_html
    assert "launching needs the member role" in viewer_html
    assert "data-launch" not in viewer_html


# ---------------------------------------------------------------- filters


@pytest.fixture
def spread(cast: Cast) -> dict[str, object]:
    now = timezone.now()
    return {
        "cat": make_run(cast.team, cast.member, prompt="A Tabby CAT", created_at=now),
        "dog": make_run(
            cast.team,
            cast.admin,
            prompt="a dog",
            model_id="acme/video",
            status=Status.RUNNING,
            created_at=now - timedelta(days=3),
        ),
        "owl": make_run(
            cast.team,
            cast.member,
            prompt="an owl",
            status=Status.FAILED,
            created_at=now - timedelta(days=10),
        ),
    }


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"model": "acme/video"}, ["dog"]),
        ({"status": "failed"}, ["owl"]),
        ({"status": "in_flight"}, ["dog"]),
        ({"member": "ada"}, ["dog"]),
        ({"q": "tabby cat"}, ["cat"]),
        ({"q": "TABBY"}, ["cat"]),
        ({"q": "video"}, ["dog"]),
        ({"q": "nothing-like-this"}, []),
    ],
)
def test_filters(cast: Cast, spread: dict, query: dict, expected: list[str]) -> None:
    html = cast.client_for("member").get(team_url(cast), query).content.decode()
    assert rows_in(html) == [str(spread[name].uuid) for name in expected]


def test_date_range_is_inclusive_in_days(cast: Cast, spread: dict) -> None:
    today = timezone.localdate()
    query = {"since": str(today - timedelta(days=4)), "until": str(today - timedelta(days=1))}
    html = cast.client_for("member").get(team_url(cast), query).content.decode()
    assert rows_in(html) == [str(spread["dog"].uuid)]


def test_search_by_run_uuid(cast: Cast, spread: dict) -> None:
    html = cast.client_for("member").get(team_url(cast), {"q": str(spread["owl"].uuid)})
    assert rows_in(html.content.decode()) == [str(spread["owl"].uuid)]


def test_starred_filter_is_per_person(cast: Cast, spread: dict) -> None:
    Star.objects.create(user=cast.member, run=spread["owl"])
    mine = cast.client_for("member").get(team_url(cast), {"starred": "1"}).content.decode()
    theirs = cast.client_for("admin").get(team_url(cast), {"starred": "1"}).content.decode()
    assert rows_in(mine) == [str(spread["owl"].uuid)]
    assert rows_in(theirs) == []
    assert "No runs match these filters" in theirs


def test_bad_filter_values_are_ignored_with_a_notice(cast: Cast, spread: dict) -> None:
    response = cast.client_for("member").get(
        team_url(cast), {"status": "<script>", "since": "yesterday", "after": "not-a-uuid"}
    )
    html = response.content.decode()
    assert response.status_code == 200
    assert len(rows_in(html)) == 3
    assert "Unknown status ignored." in html
    assert "Dates must look like" in html
    assert "<script>" not in html


def test_filters_stay_in_the_form_and_in_page_links(cast: Cast) -> None:
    now = timezone.now()
    for i in range(55):
        make_run(cast.team, cast.member, prompt=f"fox {i}", created_at=now - timedelta(minutes=i))
    html = (
        cast.client_for("member")
        .get(team_url(cast), {"q": "fox", "member": "mo", "status": "succeeded"})
        .content.decode()
    )
    assert 'value="fox"' in html
    assert '<option value="mo" selected>' in html
    older = re.search(r'rel="next" href="([^"]+)"', html)
    assert older is not None
    link = older.group(1).replace("&amp;", "&")
    assert "q=fox" in link and "member=mo" in link and "status=succeeded" in link
    assert "after=" in link


def test_filter_parsing_is_lenient() -> None:
    from django.http import QueryDict

    filters = HistoryFilters.from_query(
        QueryDict("q=%20a%20%20b%20&status=running&since=2026-05-09&until=2026-05-01&starred=on")
    )
    assert filters.q == "a b"
    assert filters.status == "running"
    assert filters.since is not None and filters.until is not None
    assert filters.since < filters.until  # swapped into order
    assert filters.starred
    assert filters.params()["starred"] == "1"


# ---------------------------------------------------------------- keyset pages


def test_keyset_pages_have_no_gaps_or_repeats_even_with_equal_timestamps(cast: Cast) -> None:
    same = timezone.now()
    runs = [make_run(cast.team, cast.member, created_at=same) for _ in range(7)]
    runs += [
        make_run(cast.team, cast.member, created_at=same - timedelta(seconds=i)) for i in range(5)
    ]
    expected = [r.uuid for r in sorted(runs, key=lambda r: (r.created_at, r.pk), reverse=True)]
    seen, after = [], None
    while True:
        page = page_runs(cast.team, team_runs(cast.team), after=after, size=3)
        seen += [r.uuid for r in page.items]
        if not page.older:
            break
        after = page.older
    assert seen == expected
    # And walking back with "newer" cursors gives the same pages in reverse.
    back = page_runs(cast.team, team_runs(cast.team), before=str(expected[6]), size=3)
    assert [r.uuid for r in back.items] == expected[3:6]
    assert back.newer == str(expected[3])
    first = page_runs(cast.team, team_runs(cast.team), before=str(expected[3]), size=3)
    assert [r.uuid for r in first.items] == expected[:3]
    assert first.newer is None


def test_history_pages_through_the_view(cast: Cast) -> None:
    now = timezone.now()
    for i in range(60):
        make_run(cast.team, cast.member, prompt=f"run {i}", created_at=now - timedelta(minutes=i))
    client = cast.client_for("member")
    first = client.get(team_url(cast)).content.decode()
    assert len(rows_in(first)) == 50
    assert "Newer" not in first
    older = re.search(r'rel="next" href="\?after=([0-9a-f-]+)"', first)
    assert older is not None
    second = client.get(team_url(cast), {"after": older.group(1)}).content.decode()
    assert len(rows_in(second)) == 10
    assert not set(rows_in(first)) & set(rows_in(second))
    assert "Older" not in second and "Newer" in second


def test_cursor_of_another_team_is_ignored(cast: Cast) -> None:
    make_run(cast.team, cast.member)
    foreign = make_run(cast.other_team, cast.outsider, created_at=timezone.now() + timedelta(1))
    html = cast.client_for("member").get(team_url(cast), {"after": str(foreign.uuid)})
    assert len(rows_in(html.content.decode())) == 1


def test_query_count_does_not_grow_with_rows(cast: Cast, django_assert_num_queries: object) -> None:
    client = cast.client_for("member")
    client.get(team_url(cast))  # warm the session

    def count() -> int:
        with CaptureQueriesContext(connection) as ctx:
            assert client.get(team_url(cast)).status_code == 200
        return len(ctx.captured_queries)

    run = make_run(cast.team, cast.member)
    add_output(run)
    few = count()
    for i in range(30):
        extra = make_run(cast.team, cast.admin if i % 2 else cast.member, status=Status.RUNNING)
        add_output(extra, 0)
        add_output(extra, 1, archived=False)
        Star.objects.create(user=cast.member, run=extra)
    many = count()
    assert few == many
    with django_assert_num_queries(few):  # type: ignore[operator]
        client.get(team_url(cast))


# ---------------------------------------------------------------- live rows


def test_one_poll_for_the_visible_in_flight_rows(cast: Cast) -> None:
    flying = [make_run(cast.team, cast.member, status=Status.RUNNING) for _ in range(3)]
    done = make_run(cast.team, cast.member)
    html = cast.client_for("member").get(team_url(cast)).content.decode()
    assert html.count('hx-trigger="every') == 1
    poll = re.search(r'id="history-poller"[^>]*hx-get="([^"]+)"', html)
    assert poll is not None
    url = poll.group(1).replace("&amp;", "&")
    for run in flying:
        assert f"ids={run.uuid}" in url
    assert f"ids={done.uuid}" not in url


def test_nothing_in_flight_only_a_slow_poll_for_new_runs(cast: Cast) -> None:
    # The first page still asks for runs launched since (tests/test_history_new_runs.py).
    make_run(cast.team, cast.member)
    html = cast.client_for("member").get(team_url(cast)).content.decode()
    assert html.count('hx-trigger="every 5s"') == 1
    assert "ids=" not in html
    assert 'id="history-poller"' in html


def test_rows_poll_returns_oob_rows_and_stops_with_286_when_all_done(cast: Cast) -> None:
    run = make_run(cast.team, cast.member, status=Status.RUNNING)
    other = make_run(cast.team, cast.member, status=Status.QUEUED)
    url = reverse("runs:run_rows", args=[cast.team.uuid]) + f"?ids={run.uuid}&ids={other.uuid}"
    client = cast.client_for("member")
    response = client.get(url, **HTMX)
    html = response.content.decode()
    assert response.status_code == 200
    assert html.count('hx-swap-oob="true"') == 2
    assert "<template>" in html
    assert 'hx-trigger="every 2s"' in html  # the poller carries on
    run.status = Status.SUCCEEDED
    run.completed_at = timezone.now()
    run.save()
    html = client.get(url, **HTMX).content.decode()
    assert f"ids={other.uuid}" in html and f"ids={run.uuid}" not in html.split("</div>")[0]
    assert 'badge--succeeded">Succeeded' in html
    other.status = Status.CANCELED
    other.completed_at = timezone.now()
    other.save()
    response = client.get(url, **HTMX)
    assert response.status_code == 286
    assert "hx-trigger" not in response.content.decode()


def test_rows_keep_polling_until_outputs_are_archived(cast: Cast) -> None:
    run = make_run(cast.team, cast.member, completed_at=timezone.now())
    output = add_output(run, archived=False)
    html = cast.client_for("member").get(team_url(cast)).content.decode()
    assert 'hx-trigger="every' in html
    url = reverse("runs:run_rows", args=[cast.team.uuid]) + f"?ids={run.uuid}"
    assert cast.client_for("member").get(url, **HTMX).status_code == 200
    output.delete()
    add_output(run)
    response = cast.client_for("member").get(url, **HTMX)
    assert response.status_code == 286
    assert "<img" in response.content.decode()


def test_a_row_finished_by_callback_keeps_polling_until_its_cost_arrives(cast: Cast) -> None:
    # A callback carries no cost; one more read brings it a moment later (runs.tasks.details).
    run = make_run(
        cast.team, cast.member, completed_at=timezone.now(), cost=None, runflow_id=uuid.uuid4()
    )
    add_output(run)
    url = reverse("runs:run_rows", args=[cast.team.uuid]) + f"?ids={run.uuid}"
    client = cast.client_for("member")
    assert client.get(url, **HTMX).status_code == 200
    run.cost = Decimal("0.15")
    run.save(update_fields=["cost"])
    response = client.get(url, **HTMX)
    assert response.status_code == 286
    assert "$0.15" in response.content.decode()


def test_a_cost_that_never_comes_does_not_poll_forever(cast: Cast) -> None:
    ended = timezone.now() - history.DETAILS_WATCH - timedelta(seconds=1)
    run = make_run(cast.team, cast.member, completed_at=ended, cost=None, runflow_id=uuid.uuid4())
    add_output(run)
    url = reverse("runs:run_rows", args=[cast.team.uuid]) + f"?ids={run.uuid}"
    assert cast.client_for("member").get(url, **HTMX).status_code == 286


def test_partials_are_a_small_fraction_of_the_page(cast: Cast) -> None:
    for _ in range(5):
        make_run(cast.team, cast.member, status=Status.RUNNING)
    client = cast.client_for("member")
    full = client.get(team_url(cast)).content
    partial = client.get(team_url(cast), **HTMX).content
    assert b"<html" not in partial and b'id="history"' in partial
    assert len(partial) < 0.8 * len(full)
    one = make_run(cast.team, cast.member, status=Status.RUNNING)
    rows = client.get(
        reverse("runs:run_rows", args=[cast.team.uuid]) + f"?ids={one.uuid}", **HTMX
    ).content
    assert len(rows) < 0.15 * len(full)


# ---------------------------------------------------------------- stars


def test_star_access_matrix_and_toggle(cast: Cast) -> None:
    run = make_run(cast.team, cast.member)
    url = reverse("runs:star", args=[cast.team.uuid, run.uuid])
    assert_access(cast, "post", url, WRITE_EXPECTED)
    # member and admin each toggled their own star on once
    assert set(Star.objects.filter(run=run).values_list("user__username", flat=True)) == {
        "mo",
        "ada",
    }
    response = cast.client_for("member").post(url, **HTMX)
    assert response.status_code == 200
    assert 'aria-pressed="false"' in response.content.decode()
    assert not Star.objects.filter(run=run, user=cast.member).exists()


def test_star_on_another_teams_run_is_404(cast: Cast) -> None:
    foreign = make_run(cast.other_team, cast.outsider)
    url = reverse("runs:star", args=[cast.team.uuid, foreign.uuid])
    assert cast.client_for("member").post(url).status_code == 404
    url = reverse("runs:star", args=[cast.other_team.uuid, foreign.uuid])
    assert cast.client_for("member").post(url).status_code == 404


def test_star_redirects_only_to_this_site(cast: Cast) -> None:
    run = make_run(cast.team, cast.member)
    url = reverse("runs:star", args=[cast.team.uuid, run.uuid])
    client = cast.client_for("member")
    evil = client.post(url, {"next": "https://evil.example/"})
    assert evil["Location"] == reverse("runs:run", args=[cast.team.uuid, run.uuid])
    back = client.post(url, {"next": team_url(cast, status="failed")})
    assert back["Location"] == team_url(cast, status="failed")


def test_star_by_get_changes_nothing(cast: Cast) -> None:
    run = make_run(cast.team, cast.member)
    url = reverse("runs:star", args=[cast.team.uuid, run.uuid])
    assert cast.client_for("member").get(url).status_code == 405
    assert not Star.objects.exists()


def test_back_button_restore_gets_the_whole_page(cast: Cast) -> None:
    make_run(cast.team, cast.member)
    response = cast.client_for("member").get(
        team_url(cast), HTTP_HX_REQUEST="true", HTTP_HX_HISTORY_RESTORE_REQUEST="true"
    )
    assert b"<html" in response.content
    assert "HX-Request" in response["Vary"]
