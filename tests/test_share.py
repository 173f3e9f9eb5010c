"""Share links: create, list, revoke; the public page shows inputs and outputs, nothing else."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from runs.models import AuditEntry, Run, ShareLink
from tests.conftest import READ_EXPECTED, WRITE_EXPECTED, Cast, assert_access
from tests.workspace_factories import add_output, make_run, media  # noqa: F401

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("media")]


def share(cast: Cast, *runs: Run, **fields: object) -> ShareLink:
    link = ShareLink.objects.create(team=cast.team, created_by=cast.member, **fields)
    link.runs.set(runs)
    return link


def test_share_create_access_matrix(cast: Cast) -> None:
    run = make_run(cast.team, cast.member)
    url = reverse("runs:share_create", args=[cast.team.uuid])
    assert_access(cast, "post", url, WRITE_EXPECTED, {"runs": str(run.uuid), "expires": "7"})
    assert ShareLink.objects.filter(team=cast.team).count() == 2  # member and admin


def test_share_create_confirms_then_creates_an_unguessable_expiring_link(cast: Cast) -> None:
    runs = [make_run(cast.team, cast.member, prompt=f"p{i}") for i in range(2)]
    url = reverse("runs:share_create", args=[cast.team.uuid])
    client = cast.client_for("member")
    confirm = client.get(url, {"runs": [str(r.uuid) for r in runs]})
    assert confirm.status_code == 200 and b"Share 2 runs" in confirm.content
    assert not ShareLink.objects.exists()
    response = client.post(
        url, {"runs": [str(r.uuid) for r in runs], "title": "For the client", "expires": "1"}
    )
    link = ShareLink.objects.get()
    assert len(link.token) >= 40
    assert set(link.runs.all()) == set(runs)
    assert link.expires_at is not None
    assert timedelta(hours=23) < link.expires_at - timezone.now() < timedelta(hours=25)
    assert response["Location"].endswith(f"?new={link.token}")
    assert AuditEntry.objects.filter(action="share.created", team=cast.team).exists()


def test_share_create_ignores_runs_of_other_teams(cast: Cast) -> None:
    theirs = make_run(cast.other_team, cast.outsider)
    url = reverse("runs:share_create", args=[cast.team.uuid])
    response = cast.client_for("member").post(url, {"runs": str(theirs.uuid)})
    assert response.status_code == 400
    assert not ShareLink.objects.exists()


def test_share_list_access_and_revoke_button_for_members(cast: Cast) -> None:
    link = share(cast, make_run(cast.team, cast.member), title="Moodboard")
    url = reverse("runs:shares", args=[cast.team.uuid])
    assert_access(cast, "get", url, READ_EXPECTED)
    member_html = cast.client_for("member").get(url).content.decode()
    viewer_html = cast.client_for("viewer").get(url).content.decode()
    revoke = reverse("runs:share_revoke", args=[cast.team.uuid, link.token])
    assert "Moodboard" in member_html and revoke in member_html
    assert revoke not in viewer_html


def test_revoke_access_matrix_and_effect(cast: Cast) -> None:
    run = make_run(cast.team, cast.member)
    output = add_output(run)
    link = share(cast, run)
    url = reverse("runs:share_revoke", args=[cast.team.uuid, link.token])
    public = Client()
    assert public.get(link.get_absolute_url()).status_code == 200
    assert_access(cast, "post", url, WRITE_EXPECTED)
    link.refresh_from_db()
    assert link.revoked_at is not None
    assert public.get(link.get_absolute_url()).status_code == 404
    file_url = reverse("runs:shared_file", args=[link.token, output.uuid])
    assert public.get(file_url).status_code == 404


def test_revoking_another_teams_link_is_404(cast: Cast) -> None:
    link = ShareLink.objects.create(team=cast.other_team)
    url = reverse("runs:share_revoke", args=[cast.team.uuid, link.token])
    assert cast.client_for("admin").post(url).status_code == 404
    link.refresh_from_db()
    assert link.revoked_at is None


def test_public_page_shows_inputs_and_outputs_and_nothing_else(cast: Cast) -> None:
    run = make_run(cast.team, cast.member, prompt="neon koi", cost=Decimal("0.77"))
    output = add_output(run)
    hidden = make_run(cast.team, cast.member, prompt="not shared")
    link = share(cast, run, title="Koi study")
    response = Client().get(link.get_absolute_url())
    html = response.content.decode()
    assert response.status_code == 200
    assert "Koi study" in html and "neon koi" in html and ">seed<" in html
    file_url = reverse("runs:shared_file", args=[link.token, output.uuid])
    assert f'href="{file_url}"' in html
    for leak in ("Acme", "$0.77", ">mo<", "not shared", str(cast.team.uuid), "/t/"):
        assert leak not in html, leak
    assert response["X-Robots-Tag"] == "noindex, nofollow"
    assert str(hidden.uuid) not in html


def test_shared_files_only_for_shared_runs(cast: Cast) -> None:
    shared_run = make_run(cast.team, cast.member)
    other_run = make_run(cast.team, cast.member)
    shown = add_output(shared_run)
    not_shown = add_output(other_run)
    link = share(cast, shared_run)
    client = Client()
    ok = client.get(reverse("runs:shared_file", args=[link.token, shown.uuid]))
    assert ok.status_code == 200 and ok["X-Content-Type-Options"] == "nosniff"
    assert (
        client.get(reverse("runs:shared_file", args=[link.token, not_shown.uuid])).status_code
        == 404
    )
    assert (
        client.get(reverse("runs:shared_thumb", args=[link.token, shown.uuid])).status_code == 404
    )


def test_expired_unknown_and_deleted(cast: Cast) -> None:
    run = make_run(cast.team, cast.member, prompt="was here")
    expired = share(cast, run, expires_at=timezone.now() - timedelta(minutes=1))
    client = Client()
    assert client.get(expired.get_absolute_url()).status_code == 404
    assert client.get(reverse("runs:shared", args=["x" * 43])).status_code == 404
    live = share(cast, run)
    Run.objects.filter(pk=run.pk).update(deleted_at=timezone.now())
    html = client.get(live.get_absolute_url()).content.decode()
    assert "was here" not in html and "Nothing here any more" in html


def test_share_list_marks_the_new_link_and_shows_its_address(cast: Cast, settings: object) -> None:
    settings.SITE_URL = "https://studio.example"  # type: ignore[attr-defined]
    link = share(cast, make_run(cast.team, cast.member))
    url = reverse("runs:shares", args=[cast.team.uuid]) + f"?new={link.token}"
    html = cast.client_for("member").get(url).content.decode()
    assert "share-table__fresh" in html
    assert re.search(rf'value="https://studio.example/s/{re.escape(link.token)}/"', html)
