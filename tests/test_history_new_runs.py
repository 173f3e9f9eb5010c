"""The history's first page brings in runs launched since (by anyone) at the top, live.

The one rows poll carries the page's filters and its top run; its answer inserts the newer
runs matching those filters above the table's first row, and moves its own ``top`` on.
"""

from __future__ import annotations

import re
from datetime import timedelta
from html import unescape
from urllib.parse import urlencode

import pytest
from django.urls import reverse
from django.utils import timezone

from runs.history import PAGE_SIZE
from runs.models import Run, Star, Status
from tests.conftest import Cast
from tests.workspace_factories import make_run, media  # noqa: F401

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("media")]

HTMX = {"HTTP_HX_REQUEST": "true"}
INSERTED = '<tbody hx-swap-oob="afterbegin:#history-rows">'


def history(cast: Cast, who: str = "member", **query: str) -> str:
    url = reverse("runs:team", args=[cast.team.uuid])
    return cast.client_for(who).get(url, query).content.decode()


def poller(html: str) -> tuple[str, str]:
    """The poll's URL as htmx sends it (its hx-get plus the hidden filter inputs it
    includes) and its trigger, from a page or from a poll's answer."""
    found = re.search(
        r'<div id="history-poller"[^>]*hx-get="([^"]+)" hx-trigger="([^"]+)"[^>]*>(.*?)</div>',
        html,
    )
    assert found is not None, "no poll"
    url, trigger, inputs = unescape(found.group(1)), found.group(2), found.group(3)
    hidden = re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', inputs)
    if hidden:
        assert 'hx-include="this"' in found.group(0)
        url += "&" + urlencode([(name, unescape(value)) for name, value in hidden])
    return url, trigger


def inserted(html: str) -> list[str]:
    """Run ids the answer puts on top of the table, in order."""
    if INSERTED not in html:
        return []
    block = html.split(INSERTED, 1)[1].split("</tbody>", 1)[0]
    assert "hx-swap-oob" not in block  # rows inside are inserted, not swapped by id
    return re.findall(r'<tr id="run-([0-9a-f-]{36})"', block)


def poll(cast: Cast, url: str, who: str = "member") -> tuple[int, str]:
    response = cast.client_for(who).get(url, **HTMX)
    return response.status_code, response.content.decode()


def test_a_quiet_first_page_keeps_a_slow_poll_for_new_runs(cast: Cast) -> None:
    done = make_run(cast.team, cast.member)
    url, trigger = poller(history(cast))
    assert trigger == "every 5s"
    assert f"top={done.uuid}" in url and "new=1" in url and "ids=" not in url


def test_a_run_launched_by_someone_else_arrives_on_top_once(cast: Cast) -> None:
    mine = make_run(cast.team, cast.member)
    url, _ = poller(history(cast))
    status, html = poll(cast, url)
    assert status == 200 and inserted(html) == []

    theirs = make_run(cast.team, cast.admin, status=Status.RUNNING, prompt="a new owl")
    status, html = poll(cast, url)
    assert status == 200
    assert inserted(html) == [str(theirs.uuid)]
    assert "a new owl" in html and 'class="run-row is-updated"' in html
    next_url, trigger = poller(html)
    # The next poll watches the new run (in flight) and starts above it: no second copy.
    assert f"ids={theirs.uuid}" in next_url and f"top={theirs.uuid}" in next_url
    assert trigger == "every 2s"
    assert str(mine.uuid) not in next_url
    _, again = poll(cast, next_url)
    assert inserted(again) == []


def test_new_runs_follow_the_filters_of_the_page(cast: Cast) -> None:
    make_run(cast.team, cast.member, status=Status.FAILED, prompt="a red fox")
    page = history(cast, status="failed", q="fox")
    url, _ = poller(page)
    assert "status=failed" in url and "q=fox" in url
    # The filters ride in hidden inputs: a search text never lands in an hx- attribute.
    assert re.search(r'hx-get="[^"]*q=fox', page) is None
    make_run(cast.team, cast.admin, status=Status.SUCCEEDED, prompt="a red fox")
    make_run(cast.team, cast.admin, status=Status.FAILED, prompt="a blue owl")
    make_run(cast.other_team, cast.outsider, status=Status.FAILED, prompt="a red fox")
    wanted = make_run(cast.team, cast.admin, status=Status.FAILED, prompt="a grey fox")
    assert inserted(poll(cast, url)[1]) == [str(wanted.uuid)]


def test_starred_view_brings_only_what_this_person_starred(cast: Cast) -> None:
    first = make_run(cast.team, cast.member)
    Star.objects.create(user=cast.member, run=first)
    url, _ = poller(history(cast, starred="1"))
    theirs = make_run(cast.team, cast.admin)
    Star.objects.create(user=cast.admin, run=theirs)
    assert inserted(poll(cast, url)[1]) == []
    Star.objects.create(user=cast.member, run=theirs)
    assert inserted(poll(cast, url)[1]) == [str(theirs.uuid)]


def test_many_new_runs_arrive_in_keyset_order_without_gaps_or_repeats(cast: Cast) -> None:
    start = timezone.now() - timedelta(hours=1)
    make_run(cast.team, cast.member, created_at=start)
    url, _ = poller(history(cast))
    # More than a page arrives at once, some with the same timestamp.
    arrived = [
        make_run(cast.team, cast.admin, created_at=start + timedelta(seconds=1 + i // 3))
        for i in range(PAGE_SIZE + 12)
    ]
    screen: list[str] = []
    for _ in range(4):
        _, html = poll(cast, url)
        screen = inserted(html) + screen  # each answer goes above what is shown
        url, _ = poller(html)
    newest_first = [
        str(r.uuid) for r in sorted(arrived, key=lambda r: (r.created_at, r.pk), reverse=True)
    ]
    assert screen == newest_first


def test_older_pages_do_not_watch_for_new_runs(cast: Cast) -> None:
    runs = [make_run(cast.team, cast.member) for _ in range(PAGE_SIZE + 2)]
    first_page = history(cast)
    older = re.search(r'rel="next" href="([^"]+)"', first_page)
    assert older is not None
    html = cast.client_for("member").get(
        reverse("runs:team", args=[cast.team.uuid]) + unescape(older.group(1))
    )
    assert 'hx-trigger="every' not in html.content.decode()
    assert len(runs) > PAGE_SIZE


def test_an_unknown_top_brings_nothing_rather_than_the_newest_page_again(cast: Cast) -> None:
    top = make_run(cast.team, cast.member)
    url, _ = poller(history(cast))
    Run.objects.filter(pk=top.pk).delete()
    make_run(cast.team, cast.member)
    status, html = poll(cast, url)
    assert status == 200 and inserted(html) == []


def test_an_empty_history_is_redrawn_whole_when_its_first_run_arrives(cast: Cast) -> None:
    page = history(cast, "viewer")
    assert "No runs yet" in page
    url, trigger = poller(page)
    assert trigger == "every 5s" and "top=" not in url
    status, html = poll(cast, url, "viewer")
    assert status == 200 and 'id="history"' not in html
    first = make_run(cast.team, cast.member, status=Status.RUNNING)
    response = cast.client_for("viewer").get(url, **HTMX)
    assert response["HX-Retarget"] == "#history" and response["HX-Reswap"] == "outerHTML"
    html = response.content.decode()
    assert 'id="history"' in html and f'<tr id="run-{first.uuid}"' in html
    assert f"top={first.uuid}" in poller(html)[0]


def test_another_teams_runs_never_arrive(cast: Cast) -> None:
    make_run(cast.team, cast.member)
    url, _ = poller(history(cast))
    make_run(cast.other_team, cast.outsider)
    assert inserted(poll(cast, url)[1]) == []
    status, _ = poll(cast, url, "outsider")
    assert status == 404
