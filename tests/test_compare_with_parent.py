"""The run page's "Compare with parent" button: on the page, and kept by the live poll."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from runs.models import Run, Status
from tests.conftest import Cast
from tests.workspace_factories import make_run, media  # noqa: F401

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("media")]

HTMX = {"HTTP_HX_REQUEST": "true"}


def run_url(run: Run) -> str:
    return reverse("runs:run", args=[run.team.uuid, run.uuid])


def compare_link(cast: Cast, parent: Run, child: Run) -> str:
    compare = reverse("runs:compare", args=[cast.team.uuid])
    return f'href="{compare}?runs={parent.uuid}&amp;runs={child.uuid}">Compare with parent</a>'


def poll_url(html: str) -> str:
    found = re.search(r'id="run-poller"[^>]*hx-get="([^"]+)"', html)
    assert found is not None, "no poller"
    return found.group(1).replace("&amp;", "&")


def test_a_rerun_links_to_the_compare_of_it_and_its_parent(cast: Cast) -> None:
    parent = make_run(cast.team, cast.member)
    child = make_run(cast.team, cast.member, parent=parent)
    html = cast.client_for("viewer").get(run_url(child)).content.decode()
    assert compare_link(cast, parent, child) in html


def test_a_run_without_a_parent_or_with_a_deleted_one_has_no_button(cast: Cast) -> None:
    alone = make_run(cast.team, cast.member)
    parent = make_run(cast.team, cast.member, deleted_at=timezone.now())
    orphan = make_run(cast.team, cast.member, parent=parent)
    client = cast.client_for("member")
    assert "Compare with parent" not in client.get(run_url(alone)).content.decode()
    assert "Compare with parent" not in client.get(run_url(orphan)).content.decode()


def test_the_live_poll_keeps_the_button_when_it_redraws_the_head(cast: Cast) -> None:
    parent = make_run(cast.team, cast.member)
    child = make_run(cast.team, cast.member, parent=parent, status=Status.RUNNING)
    client = cast.client_for("member")
    url = poll_url(client.get(run_url(child)).content.decode())
    # The run moves on: the poll redraws the head region out of band.
    Run.objects.filter(pk=child.pk).update(
        status=Status.SUCCEEDED,
        completed_at=timezone.now(),
        updated_at=timezone.now() + timedelta(seconds=1),
    )
    live = client.get(url, **HTMX).content.decode()
    head = live[live.index('id="region-head"') :]
    head = head[: head.index('id="region-failure"')]
    assert 'hx-swap-oob="true"' in head and "badge--succeeded" in head
    assert compare_link(cast, parent, child) in head
