"""The team gallery: access, filters, keyset pages, query counts, and ZIP downloads."""

from __future__ import annotations

import io
import re
import uuid
import zipfile
from datetime import timedelta
from html import unescape
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from runs.history import page_outputs, team_outputs
from runs.models import ArchiveState, Star
from runs.tasks.workspace import read_manifest
from tests.conftest import READ_EXPECTED, Cast, assert_access
from tests.workspace_factories import add_output, make_run, media, tiny_png  # noqa: F401

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("media")]

HTMX = {"HTTP_HX_REQUEST": "true"}


def gallery_url(cast: Cast) -> str:
    return reverse("runs:gallery", args=[cast.team.uuid])


def tiles(html: str) -> list[str]:
    return re.findall(r'<figure class="tile[^"]*" id="output-([0-9a-f-]{36})"', html)


def test_gallery_access_matrix(cast: Cast) -> None:
    assert_access(cast, "get", gallery_url(cast), READ_EXPECTED)


def test_gallery_lists_the_teams_outputs_only_newest_run_first(cast: Cast) -> None:
    now = timezone.now()
    old = make_run(cast.team, cast.member, created_at=now - timedelta(hours=1))
    new = make_run(cast.team, cast.admin, created_at=now)
    a, b = add_output(old, 0), add_output(old, 1)
    c = add_output(new, 0)
    add_output(make_run(cast.other_team, cast.outsider))
    html = cast.client_for("viewer").get(gallery_url(cast)).content.decode()
    assert tiles(html) == [str(c.uuid), str(a.uuid), str(b.uuid)]
    assert "data-lightbox" in html and 'data-width="6"' in html and 'data-height="4"' in html
    assert f'data-run-url="{reverse("runs:run", args=[cast.team.uuid, new.uuid])}"' in html


def test_video_has_no_autoplay_and_audio_has_a_player(cast: Cast) -> None:
    run = make_run(cast.team, cast.member)
    add_output(run, 0, kind="video", content_type="video/mp4", name="a.mp4", thumbnail=True)
    add_output(run, 1, kind="audio", content_type="audio/mpeg", name="a.mp3")
    html = cast.client_for("member").get(gallery_url(cast)).content.decode()
    video = re.search(r"<video[^>]*>", html)
    assert video is not None
    assert "controls" in video.group(0) and "poster=" in video.group(0)
    assert "autoplay" not in html
    assert re.search(r"<audio controls[^>]*>", html)


def test_placeholders_for_pending_and_expired_and_purged_hidden(cast: Cast) -> None:
    run = make_run(cast.team, cast.member)
    add_output(run, 0, archived=False)
    add_output(run, 1, archived=False, archive_state=ArchiveState.EXPIRED)
    add_output(run, 2, archived=False, archive_state=ArchiveState.PURGED)
    html = cast.client_for("member").get(gallery_url(cast)).content.decode()
    assert len(tiles(html)) == 2
    assert "Waiting to be copied" in html
    assert "Link expired before it could be copied" in html
    assert "files.runflow.example" not in html


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"kind": "video"}, ["clip"]),
        ({"kind": "image"}, ["pic"]),
        ({"model": "acme/video"}, ["clip"]),
        ({"member": "ada"}, ["clip"]),
        ({"starred": "1"}, ["pic"]),
        ({"kind": "hologram"}, ["clip", "pic"]),
    ],
)
def test_gallery_filters(cast: Cast, query: dict, expected: list[str]) -> None:
    now = timezone.now()
    pic_run = make_run(cast.team, cast.member, created_at=now - timedelta(minutes=1))
    clip_run = make_run(cast.team, cast.admin, model_id="acme/video", created_at=now)
    made = {
        "pic": add_output(pic_run),
        "clip": add_output(clip_run, kind="video", content_type="video/mp4", name="c.mp4"),
    }
    Star.objects.create(user=cast.member, run=pic_run)
    html = cast.client_for("member").get(gallery_url(cast), query).content.decode()
    assert tiles(html) == [str(made[name].uuid) for name in expected]


def test_output_keyset_pages_walk_every_output_once(cast: Cast) -> None:
    same = timezone.now()
    made = []
    for i in range(5):
        run = make_run(cast.team, cast.member, created_at=same if i < 3 else same - timedelta(i))
        made += [add_output(run, n, archived=False) for n in range(3)]
    ordered = sorted(made, key=lambda o: (-o.run.created_at.timestamp(), -o.run.pk, o.index))
    seen, after = [], None
    while True:
        page = page_outputs(cast.team, team_outputs(cast.team), after=after, size=4)
        seen += [o.uuid for o in page.items]
        if not page.older:
            break
        after = page.older
    assert seen == [o.uuid for o in ordered]
    back = page_outputs(cast.team, team_outputs(cast.team), before=str(ordered[8].uuid), size=4)
    assert [o.uuid for o in back.items] == [o.uuid for o in ordered[4:8]]


def test_gallery_query_count_is_constant(cast: Cast) -> None:
    client = cast.client_for("member")
    client.get(gallery_url(cast))

    def count() -> int:
        with CaptureQueriesContext(connection) as ctx:
            assert client.get(gallery_url(cast), {"starred": "1"}).status_code == 200
        return len(ctx.captured_queries)

    run = make_run(cast.team, cast.member)
    add_output(run)
    Star.objects.create(user=cast.member, run=run)
    few = count()
    for i in range(20):
        more = make_run(cast.team, cast.admin if i % 2 else cast.member)
        add_output(more, 0)
        add_output(more, 1, kind="audio", content_type="audio/mpeg", name="x.mp3")
        Star.objects.create(user=cast.member, run=more)
    assert count() == few


def test_gallery_partial_is_much_smaller_than_the_page(cast: Cast) -> None:
    add_output(make_run(cast.team, cast.member))
    client = cast.client_for("member")
    full = client.get(gallery_url(cast)).content
    partial = client.get(gallery_url(cast), {"kind": "image"}, **HTMX).content
    assert b"<html" not in partial and b'id="gallery"' in partial
    assert len(partial) < 0.5 * len(full)


def test_empty_gallery_explains_itself(cast: Cast) -> None:
    html = cast.client_for("member").get(gallery_url(cast)).content.decode()
    assert "No outputs yet" in html


# ---------------------------------------------------------------- ZIP downloads


def test_zip_of_a_selection_is_built_and_downloaded(cast: Cast) -> None:
    run = make_run(cast.team, cast.member)
    first = add_output(run, 0, data=tiny_png(3, 3))
    second = add_output(run, 1, data=tiny_png(5, 5))
    add_output(run, 2, archived=False)  # not copied yet: left out
    client = cast.client_for("viewer")
    create = reverse("runs:zip_create", args=[cast.team.uuid])
    confirm = client.get(create, {"outputs": [str(first.uuid), str(second.uuid)]})
    assert confirm.status_code == 200 and b"2 files" in confirm.content
    response = client.post(create, {"outputs": [str(first.uuid), str(second.uuid)]})
    assert response.status_code == 302
    status_url = response["Location"]
    job = status_url.rstrip("/").rsplit("/", 1)[-1]
    assert read_manifest(str(cast.team.uuid), job)["state"] == "ready"  # type: ignore[index]
    page = client.get(status_url).content.decode()
    assert "Download ZIP" in page
    poll = client.get(status_url, **HTMX)
    assert poll.status_code == 286
    download = client.get(reverse("runs:zip_download", args=[cast.team.uuid, job]))
    assert download["Content-Type"] == "application/zip"
    assert download["Content-Disposition"].startswith("attachment;")
    archive = zipfile.ZipFile(io.BytesIO(b"".join(download.streaming_content)))
    assert sorted(archive.namelist()) == sorted(
        [
            f"acme-text-to-image-{run.uuid.hex[:8]}-1.png",
            f"acme-text-to-image-{run.uuid.hex[:8]}-2.png",
        ]
    )
    assert archive.read(f"acme-text-to-image-{run.uuid.hex[:8]}-2.png") == tiny_png(5, 5)


def test_zip_of_whole_runs(cast: Cast) -> None:
    run = make_run(cast.team, cast.member)
    for i in range(3):
        add_output(run, i)
    response = cast.client_for("member").post(
        reverse("runs:zip_create", args=[cast.team.uuid]), {"runs": str(run.uuid)}, follow=True
    )
    assert b"3 files" in response.content


def test_zip_cannot_reach_another_teams_files_or_jobs(cast: Cast) -> None:
    foreign = add_output(make_run(cast.other_team, cast.outsider))
    create = reverse("runs:zip_create", args=[cast.team.uuid])
    response = cast.client_for("member").post(create, {"outputs": str(foreign.uuid)})
    assert response.status_code == 302 and "gallery" in response["Location"]
    # The outsider builds one for their own team; Acme's members cannot open it.
    theirs = cast.client_for("outsider").post(
        reverse("runs:zip_create", args=[cast.other_team.uuid]), {"outputs": str(foreign.uuid)}
    )
    job = theirs["Location"].rstrip("/").rsplit("/", 1)[-1]
    client = cast.client_for("member")
    assert client.get(reverse("runs:zip_status", args=[cast.team.uuid, job])).status_code == 404
    assert client.get(reverse("runs:zip_download", args=[cast.team.uuid, job])).status_code == 404
    assert (
        client.get(reverse("runs:zip_download", args=[cast.other_team.uuid, job])).status_code
        == 404
    )


def test_zip_access_matrix(cast: Cast) -> None:
    output = add_output(make_run(cast.team, cast.member))
    create = reverse("runs:zip_create", args=[cast.team.uuid])
    # Reading files is what viewers may do, so a ZIP is open to every member of the team.
    assert_access(
        cast,
        "post",
        create,
        READ_EXPECTED | {"viewer": 302, "member": 302, "admin": 302},
        {"outputs": str(output.uuid)},
    )
    unknown = reverse("runs:zip_status", args=[cast.team.uuid, uuid.uuid4()])
    assert cast.client_for("member").get(unknown).status_code == 404


def test_zip_create_by_get_builds_nothing(cast: Cast) -> None:
    output = add_output(make_run(cast.team, cast.member))
    create = reverse("runs:zip_create", args=[cast.team.uuid])
    response = cast.client_for("member").get(create, {"outputs": str(output.uuid)})
    assert response.status_code == 200
    assert not (Path(settings.MEDIA_ROOT) / "zips").exists()


def test_captions_join_only_the_facts_there_are(cast: Cast) -> None:
    run = make_run(cast.team, cast.member)
    add_output(run, 0, kind="audio", content_type="audio/mpeg", name="a.mp3", duration=3.0)
    add_output(run, 1)  # an image of 6 by 4 pixels, no duration
    html = cast.client_for("member").get(gallery_url(cast)).content.decode()
    facts = re.findall(r'class="muted small tile__facts">([^<]*)<', html)
    assert len(facts) == 2
    audio, picture = sorted(facts)  # the duration ("3.0 s") sorts before the size ("6")
    assert re.fullmatch(r"3\.0 s · \d+ B", audio.replace("\xa0", " ")), audio
    assert re.fullmatch(r"6×4 · \d+ B", picture.replace("\xa0", " ")), picture


def back_button(html: str) -> tuple[str, str]:
    """The (href, label) of the ZIP page's back button."""
    found = re.search(r'<div class="actions"><a class="button" href="([^"]+)">([^<]+)</a>', html)
    assert found is not None
    return found.group(1), found.group(2)


def test_zip_pages_lead_back_to_where_the_files_were_picked(cast: Cast) -> None:
    run = make_run(cast.team, cast.member)
    outputs = [str(add_output(run, i).uuid) for i in range(2)]
    other = make_run(cast.team, cast.member)
    add_output(other, 0)
    client = cast.client_for("member")
    create = reverse("runs:zip_create", args=[cast.team.uuid])
    run_url = reverse("runs:run", args=[cast.team.uuid, run.uuid])

    # "Download all" on the run page: both the confirmation and the progress page lead back.
    run_page = client.get(run_url).content.decode()
    link = re.search(r'href="([^"]*/downloads/new/[^"]*)">Download all<', run_page)
    assert link is not None
    confirm = client.get(unescape(link.group(1))).content.decode()
    assert back_button(confirm) == (run_url, "Back to the run")
    origin = re.search(r'name="from" value="([^"]+)"', confirm)
    assert origin is not None
    started = client.post(create, {"outputs": outputs, "from": origin.group(1)})
    assert started.status_code == 302
    assert back_button(client.get(started["Location"]).content.decode()) == (
        run_url,
        "Back to the run",
    )

    # Runs ticked in the run list, files ticked in the gallery.
    several = client.get(create, {"runs": [str(run.uuid), str(other.uuid)]}).content.decode()
    assert back_button(several) == (reverse("runs:team", args=[cast.team.uuid]), "Back to the runs")
    picked = client.get(create, {"outputs": outputs}).content.decode()
    assert back_button(picked) == (gallery_url(cast), "Back to the gallery")
    # Anything else leads to the gallery: the page never links out of the team.
    for junk in ("https://evil.example/", "run:not-a-uuid", "//evil.example"):
        html = client.get(create, {"outputs": outputs, "from": junk}).content.decode()
        assert back_button(html) == (gallery_url(cast), "Back to the gallery"), junk
