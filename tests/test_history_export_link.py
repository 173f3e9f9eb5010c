"""The run history links the export of exactly what it shows (its filters, not its page)."""

from __future__ import annotations

import csv
import io
import re
from datetime import timedelta
from html import unescape

import pytest
from django.urls import reverse
from django.utils import timezone

from runs.models import Status
from tests.conftest import Cast
from tests.workspace_factories import make_run, media  # noqa: F401

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("media")]

HTMX = {"HTTP_HX_REQUEST": "true"}


def export_links(html: str) -> dict[str, str]:
    found = re.findall(r'href="([^"]*/runs/export\.(csv|json)[^"]*)"', html)
    return {fmt: unescape(href) for href, fmt in found}


def test_every_role_gets_csv_and_json_links_of_the_filtered_view(cast: Cast) -> None:
    make_run(cast.team, cast.member, status=Status.FAILED, model_id="acme/x", prompt="fox & hound")
    url = reverse("runs:team", args=[cast.team.uuid])
    query = {"status": "failed", "model": "acme/x", "q": "fox & hound"}
    for who in ("admin", "member", "viewer"):
        html = cast.client_for(who).get(url, query).content.decode()
        links = export_links(html)
        assert set(links) == {"csv", "json"}, who
        for fmt, href in links.items():
            assert href.startswith(reverse("runs:export_runs", args=[cast.team.uuid, fmt]))
            assert "status=failed" in href and "model=acme%2Fx" in href
            assert "q=fox+%26+hound" in href


def test_the_link_leaves_out_page_cursors_and_bad_values(cast: Cast) -> None:
    runs = [make_run(cast.team, cast.member) for _ in range(3)]
    url = reverse("runs:team", args=[cast.team.uuid])
    html = cast.client_for("member").get(url, {"after": str(runs[-1].uuid), "status": "nope"})
    href = export_links(html.content.decode())["csv"]
    assert "after=" not in href and "status" not in href


def test_the_filtered_partial_carries_the_new_link(cast: Cast) -> None:
    make_run(cast.team, cast.member, status=Status.FAILED)
    url = reverse("runs:team", args=[cast.team.uuid])
    partial = cast.client_for("member").get(url, {"status": "failed"}, **HTMX).content.decode()
    assert "status=failed" in export_links(partial)["json"]


def test_following_the_link_downloads_exactly_the_runs_the_view_shows(cast: Cast) -> None:
    now = timezone.now()
    wanted = make_run(cast.team, cast.member, status=Status.FAILED, prompt="a red fox")
    make_run(cast.team, cast.member, status=Status.SUCCEEDED, prompt="a red fox")
    make_run(cast.team, cast.member, status=Status.FAILED, prompt="a blue owl")
    make_run(
        cast.team,
        cast.member,
        status=Status.FAILED,
        prompt="a red fox",
        created_at=now - timedelta(9),
    )
    client = cast.client_for("viewer")
    since = now.date().isoformat()
    query = {"status": "failed", "q": "fox", "since": since}
    page = client.get(reverse("runs:team", args=[cast.team.uuid]), query).content.decode()
    shown = re.findall(r'<tr id="run-([0-9a-f-]{36})"', page)
    response = client.get(export_links(page)["csv"])
    assert response.status_code == 200
    body = b"".join(response.streaming_content).decode()  # type: ignore[attr-defined]
    exported = [row["id"] for row in csv.DictReader(io.StringIO(body.lstrip("\ufeff")))]
    assert exported == shown == [str(wanted.uuid)]


def test_an_empty_history_offers_no_export(cast: Cast) -> None:
    html = cast.client_for("member").get(reverse("runs:team", args=[cast.team.uuid]))
    assert export_links(html.content.decode()) == {}
