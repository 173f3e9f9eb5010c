"""Archived files: only the owning team (T5), served inertly (B5), ranges for players."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.urls import reverse

from runs.models import ArchiveState, Output
from tests.conftest import READ_EXPECTED, Cast, assert_access
from tests.workspace_factories import add_output, make_run, media, tiny_png  # noqa: F401

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("media")]


def file_url(output: Output, *, thumb: bool = False) -> str:
    name = "runs:output_thumb" if thumb else "runs:output_file"
    return reverse(name, args=[output.run.team.uuid, output.uuid])


def body(response: object) -> bytes:
    return b"".join(response.streaming_content)  # type: ignore[attr-defined]


def test_file_access_matrix(cast: Cast) -> None:
    output = add_output(make_run(cast.team, cast.member))
    assert_access(cast, "get", file_url(output), READ_EXPECTED)
    assert_access(cast, "get", file_url(output, thumb=False) + "?download=1", READ_EXPECTED)


def test_other_team_gets_404_for_file_and_thumbnail(cast: Cast) -> None:
    output = add_output(make_run(cast.team, cast.member), thumbnail=True)
    outsider = cast.client_for("outsider")
    assert outsider.get(file_url(output)).status_code == 404
    assert outsider.get(file_url(output, thumb=True)).status_code == 404
    # Nor through the outsider's own team in the URL.
    own = reverse("runs:output_file", args=[cast.other_team.uuid, output.uuid])
    assert outsider.get(own).status_code == 404


def test_image_is_served_inline_with_safe_headers(cast: Cast) -> None:
    data = tiny_png()
    output = add_output(make_run(cast.team, cast.member), data=data, sha256="ab" * 32)
    response = cast.client_for("viewer").get(file_url(output))
    assert response.status_code == 200
    assert body(response) == data
    assert response["Content-Type"] == "image/png"
    assert response["Content-Disposition"].startswith("inline;")
    assert response["X-Content-Type-Options"] == "nosniff"
    assert "sandbox" in response["Content-Security-Policy"]
    assert "default-src 'none'" in response["Content-Security-Policy"]
    assert response["Cache-Control"].startswith("private")
    assert response["ETag"] == f'"{"ab" * 32}"'
    assert response["Content-Length"] == str(len(data))


def test_download_asks_for_an_attachment_with_a_readable_name(cast: Cast) -> None:
    output = add_output(make_run(cast.team, cast.member))
    response = cast.client_for("member").get(file_url(output) + "?download=1")
    disposition = response["Content-Disposition"]
    assert disposition.startswith("attachment;")
    assert f"acme-text-to-image-{output.run.uuid.hex[:8]}-1.png" in disposition


@pytest.mark.parametrize(
    ("content_type", "name", "payload"),
    [
        (
            "image/svg+xml",
            "x.svg",
            b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>',
        ),
        ("text/html", "x.html", b"<html><script>alert(1)</script></html>"),
        ("", "x.html", b"<script>alert(1)</script>"),
        ("application/javascript", "x.js", b"alert(1)"),
        ("image/png; charset=<script>", "x.bin", b"\x89PNG"),
    ],
)
def test_svg_html_and_unknown_types_are_never_inline(
    cast: Cast, content_type: str, name: str, payload: bytes
) -> None:
    output = add_output(
        make_run(cast.team, cast.member),
        kind="other",
        data=payload,
        name=name,
        content_type=content_type,
    )
    response = cast.client_for("member").get(file_url(output))
    if content_type.startswith("image/png"):
        # A known type keeps its (cleaned) type; parameters are never echoed back.
        assert response["Content-Type"] == "image/png"
    else:
        assert response["Content-Type"] == "application/octet-stream"
        assert response["Content-Disposition"].startswith("attachment;")
    assert response["X-Content-Type-Options"] == "nosniff"
    assert "<script>" not in response["Content-Type"]


def test_not_archived_or_missing_files_are_404(cast: Cast) -> None:
    run = make_run(cast.team, cast.member)
    pending = add_output(run, 0, archived=False)
    purged = add_output(run, 1)
    Output.objects.filter(pk=purged.pk).update(archive_state=ArchiveState.PURGED)
    gone = add_output(run, 2)
    Path(gone.file.path).unlink()
    client = cast.client_for("member")
    assert client.get(file_url(pending)).status_code == 404
    assert client.get(file_url(purged)).status_code == 404
    assert client.get(file_url(gone)).status_code == 404
    assert client.get(file_url(run.outputs.get(index=1), thumb=True)).status_code == 404


def test_thumbnail_has_its_own_type(cast: Cast) -> None:
    output = add_output(
        make_run(cast.team, cast.member), kind="video", content_type="video/mp4", thumbnail=True
    )
    response = cast.client_for("member").get(file_url(output, thumb=True))
    assert response.status_code == 200
    assert response["Content-Type"] == "image/png"
    assert "-thumb.png" in response["Content-Disposition"]


def test_byte_ranges_for_media_players(cast: Cast) -> None:
    data = bytes(range(256)) * 4
    output = add_output(
        make_run(cast.team, cast.member),
        kind="video",
        content_type="video/mp4",
        data=data,
        name="clip.mp4",
    )
    client = cast.client_for("member")
    part = client.get(file_url(output), HTTP_RANGE="bytes=10-19")
    assert part.status_code == 206
    assert body(part) == data[10:20]
    assert part["Content-Range"] == f"bytes 10-19/{len(data)}"
    assert part["Content-Type"] == "video/mp4"
    tail = client.get(file_url(output), HTTP_RANGE="bytes=-4")
    assert body(tail) == data[-4:]
    open_ended = client.get(file_url(output), HTTP_RANGE="bytes=1020-")
    assert body(open_ended) == data[1020:]
    bad = client.get(file_url(output), HTTP_RANGE=f"bytes={len(data)}-")
    assert bad.status_code == 416
    assert bad["Content-Range"] == f"bytes */{len(data)}"
    ignored = client.get(file_url(output), HTTP_RANGE="bytes=0-1,4-5")
    assert ignored.status_code == 200
    assert body(ignored) == data


def test_media_is_never_under_media_url(cast: Cast) -> None:
    output = add_output(make_run(cast.team, cast.member))
    response = cast.client_for("member").get("/media/" + output.file.name)
    assert response.status_code == 404
