"""archive_outputs: outputs copied into storage with facts, thumbnails and clear errors (R7)."""

from __future__ import annotations

import hashlib
import io
import struct
import wave
import zlib
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.core.files.storage import default_storage
from django.utils import timezone
from PIL import Image

from runs.mediainfo import describe, sniff
from runs.models import ArchiveState, Output, Run, Source, Status
from runs.sandbox.mp4 import make_video
from runs.tasks.archive import archive_output, archive_outputs, link_deadline
from runs.transitions import Report, apply_report
from tests.archive_support import FileServer, png_bytes, send
from tests.conftest import Cast
from tests.hooks_support import make_run

pytestmark = pytest.mark.django_db


@pytest.fixture
def files(settings: Any, tmp_path: Path) -> Iterator[FileServer]:
    server = FileServer()
    settings.SANDBOX_URL = server.origin
    settings.SANDBOX_ENABLED = True
    settings.MEDIA_ROOT = tmp_path / "media"
    yield server
    server.close()


def succeeded_run(cast: Cast, *urls: str, kind: str = "image") -> Run:
    run = make_run(cast.team, status=Status.RUNNING)
    output = {"outputs": [{"type": kind, "url": url} for url in urls]}
    apply_report(run, Report(status="succeeded", output=output), source=Source.POLL)
    run.refresh_from_db()
    return run


def wav_bytes(seconds: float = 1.5, rate: int = 8000) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(b"\0\0" * int(rate * seconds))
    return out.getvalue()


def test_image_is_archived_with_facts_and_thumbnail(cast: Cast, files: FileServer) -> None:
    body = png_bytes((1200, 800))
    files.routes["/a.png"] = send(body, "binary/octet-stream")
    run = succeeded_run(cast, files.url("/a.png?X-Amz-Signature=s"))
    assert archive_outputs.call(run.pk) == {ArchiveState.ARCHIVED: 1}
    output = Output.objects.get(run=run)
    assert output.archive_state == ArchiveState.ARCHIVED
    assert (output.width, output.height) == (1200, 800)
    assert output.content_type == "image/png"
    assert output.size_bytes == len(body)
    assert output.sha256 == hashlib.sha256(body).hexdigest()
    assert output.archived_at is not None and output.archive_error == ""
    assert output.file.name.startswith(f"outputs/{cast.team.uuid}/{run.uuid}/")
    with default_storage.open(output.file.name) as stored:
        assert stored.read() == body
    with default_storage.open(output.thumbnail.name) as thumb, Image.open(thumb) as image:
        assert image.format == "WEBP"
        assert max(image.size) == 512


def test_transparent_image_keeps_alpha_in_thumbnail(cast: Cast, files: FileServer) -> None:
    files.routes["/t.png"] = send(png_bytes((40, 40), mode="RGBA"), "image/png")
    run = succeeded_run(cast, files.url("/t.png"))
    archive_outputs.call(run.pk)
    output = Output.objects.get(run=run)
    with default_storage.open(output.thumbnail.name) as thumb, Image.open(thumb) as image:
        assert image.mode == "RGBA"


def test_audio_gets_its_duration_and_kind_from_the_bytes(cast: Cast, files: FileServer) -> None:
    files.routes["/tone"] = send(wav_bytes(1.5), "audio/wav")
    run = succeeded_run(cast, files.url("/tone"), kind="image")  # Runflow said image
    archive_outputs.call(run.pk)
    output = Output.objects.get(run=run)
    assert output.archive_state == ArchiveState.ARCHIVED
    assert output.kind == "audio" and output.content_type == "audio/wav"
    assert output.duration == pytest.approx(1.5)
    assert not output.thumbnail


def test_video_gets_duration_and_size(cast: Cast, files: FileServer) -> None:
    video = make_video(Image.new("RGB", (64, 48), (10, 120, 200)), seconds=2.0)
    files.routes["/clip.mp4"] = send(video, "video/mp4")
    run = succeeded_run(cast, files.url("/clip.mp4"), kind="video")
    archive_outputs.call(run.pk)
    output = Output.objects.get(run=run)
    assert output.archive_state == ArchiveState.ARCHIVED
    assert output.content_type == "video/mp4"
    assert (output.width, output.height) == (64, 48)
    assert output.duration == pytest.approx(2.0, abs=0.2)


def test_html_labelled_as_png_is_refused_with_a_clear_error(cast: Cast, files: FileServer) -> None:
    files.routes["/x.png"] = send(b"<html><script>alert(1)</script></html>", "image/png")
    run = succeeded_run(cast, files.url("/x.png"))
    archive_outputs.call(run.pk)
    output = Output.objects.get(run=run)
    assert output.archive_state == ArchiveState.REFUSED
    assert "not an image, video or audio file" in output.archive_error
    assert "image/png" in output.archive_error
    assert not output.file


def test_private_address_output_is_refused_and_never_retried(cast: Cast, settings: Any) -> None:
    settings.SANDBOX_ENABLED = False
    run = succeeded_run(cast, "http://169.254.169.254/latest/meta-data/iam")
    archive_outputs.call(run.pk)
    output = Output.objects.get(run=run)
    assert output.archive_state == ArchiveState.REFUSED
    assert "non-public address" in output.archive_error
    assert archive_outputs.call(run.pk) == {}  # refused outputs are settled


def test_expired_link_is_marked_expired_with_a_clear_error(cast: Cast, files: FileServer) -> None:
    files.routes["/old.png"] = send(b"AccessDenied", "application/xml", 403)
    run = succeeded_run(cast, files.url("/old.png"))
    archive_outputs.call(run.pk)
    output = Output.objects.get(run=run)
    assert output.archive_state == ArchiveState.EXPIRED
    assert "expired" in output.archive_error


def test_transient_failure_retries_until_the_link_expires(cast: Cast, files: FileServer) -> None:
    files.routes["/flaky.png"] = send(b"busy", "text/plain", 503)
    run = succeeded_run(cast, files.url("/flaky.png"))
    archive_outputs.call(run.pk)
    output = Output.objects.get(run=run)
    assert output.archive_state == ArchiveState.FAILED
    assert "503" in output.archive_error and output.archive_attempts == 1
    # Still failing after the link's lifetime: it is now expired, and says why.
    Run.objects.filter(pk=run.pk).update(completed_at=timezone.now() - timedelta(days=2))
    archive_outputs.call(run.pk)
    output.refresh_from_db()
    assert output.archive_state == ArchiveState.EXPIRED
    assert output.archive_error.startswith("The link expired before the file could be copied")
    assert output.archive_attempts == 2


def test_failure_that_passes_is_archived_on_retry(cast: Cast, files: FileServer) -> None:
    files.routes["/later.png"] = send(b"busy", "text/plain", 502)
    run = succeeded_run(cast, files.url("/later.png"))
    archive_outputs.call(run.pk)
    files.routes["/later.png"] = send(png_bytes(), "image/png")
    archive_outputs.call(run.pk)
    output = Output.objects.get(run=run)
    assert output.archive_state == ArchiveState.ARCHIVED and output.archive_error == ""


def test_one_bad_output_does_not_stop_the_others(cast: Cast, files: FileServer) -> None:
    files.routes["/good.png"] = send(png_bytes(), "image/png")
    files.routes["/bad.png"] = send(b"<svg/>", "image/svg+xml")
    run = succeeded_run(cast, files.url("/bad.png"), files.url("/good.png"))
    counts = archive_outputs.call(run.pk)
    assert counts == {ArchiveState.REFUSED: 1, ArchiveState.ARCHIVED: 1}


def test_stale_claim_skips_an_output_someone_else_is_copying(cast: Cast, files: FileServer) -> None:
    files.routes["/a.png"] = send(png_bytes(), "image/png")
    run = succeeded_run(cast, files.url("/a.png"))
    first = Output.objects.get(run=run)
    second = Output.objects.get(run=run)  # read at the same time by another worker
    assert archive_output(first) == ArchiveState.ARCHIVED
    assert archive_output(second) == "skipped"
    assert files.hits.count("/a.png") == 1


def test_decompression_bomb_is_refused(cast: Cast, files: FileServer) -> None:
    files.routes["/bomb.png"] = send(_png_header_only(30_000, 30_000), "image/png")
    run = succeeded_run(cast, files.url("/bomb.png"))
    archive_outputs.call(run.pk)
    output = Output.objects.get(run=run)
    assert output.archive_state == ArchiveState.REFUSED
    assert "not a readable image" in output.archive_error


def two_colour_image(size: tuple[int, int]) -> Image.Image:
    """Red on the left half, blue on the right: a thumbnail must keep both where they were."""
    image = Image.new("RGB", size, (220, 30, 30))
    image.paste((30, 30, 220), (size[0] // 2, 0, size[0], size[1]))
    return image


def encoded(image: Image.Image, pil_format: str) -> bytes:
    out = io.BytesIO()
    image.save(out, pil_format, **({"quality": 90} if pil_format == "JPEG" else {}))
    return out.getvalue()


def archived_thumbnail(cast: Cast, files: FileServer, body: bytes, name: str) -> Output:
    files.routes[f"/{name}"] = send(body, "application/octet-stream")
    run = succeeded_run(cast, files.url(f"/{name}"))
    assert archive_outputs.call(run.pk) == {ArchiveState.ARCHIVED: 1}
    return Output.objects.get(run=run)


@pytest.mark.parametrize("pil_format", ["JPEG", "PNG"])
def test_thumbnail_is_made_from_the_one_decode_of_the_facts_step(
    cast: Cast, files: FileServer, monkeypatch: pytest.MonkeyPatch, pil_format: str
) -> None:
    from PIL import ImageFile

    decodes: list[tuple[int, int]] = []
    real_load = ImageFile.ImageFile.load

    def counting_load(image: ImageFile.ImageFile) -> Any:
        if image.tile:  # a load that decodes (a loaded image's load() is a no-op)
            decodes.append(image.size)
        return real_load(image)

    monkeypatch.setattr(ImageFile.ImageFile, "load", counting_load)
    body = encoded(two_colour_image((3000, 1500)), pil_format)
    output = archived_thumbnail(cast, files, body, f"wide.{pil_format.lower()}")
    # Facts are the real size, even where the JPEG was decoded at a fraction of it.
    assert (output.width, output.height) == (3000, 1500)
    assert len(decodes) == 1
    if pil_format == "JPEG":
        assert decodes[0][0] < 3000 and decodes[0][0] >= 1024  # decoded small, not tiny
    monkeypatch.undo()
    with default_storage.open(output.thumbnail.name) as thumb, Image.open(thumb) as image:
        assert image.format == "WEBP" and image.size == (512, 256)
        left, right = image.convert("RGB").getpixel((64, 128)), image.getpixel((448, 128))
    assert left[0] > 180 and left[2] < 80  # type: ignore[index]
    assert right[2] > 180 and right[0] < 80  # type: ignore[index]


@pytest.mark.parametrize("pil_format", ["JPEG", "PNG"])
@pytest.mark.parametrize("keep", [0.5, 0.98])
def test_truncated_image_is_refused(
    cast: Cast, files: FileServer, pil_format: str, keep: float
) -> None:
    body = encoded(two_colour_image((1600, 1200)), pil_format)
    files.routes["/cut"] = send(body[: int(len(body) * keep)], "image/png")
    run = succeeded_run(cast, files.url("/cut"))
    archive_outputs.call(run.pk)
    output = Output.objects.get(run=run)
    assert output.archive_state == ArchiveState.REFUSED
    assert "not a readable image" in output.archive_error
    assert not output.file and not output.thumbnail


@pytest.mark.parametrize(
    "body", [b"\x89PNG\r\n\x1a\n" + b"\x00" * 4000, b"\xff\xd8\xff\xe0" + b"fake" * 1000]
)
def test_fake_image_with_a_real_signature_is_refused(
    cast: Cast, files: FileServer, body: bytes
) -> None:
    files.routes["/fake"] = send(body, "image/png")
    run = succeeded_run(cast, files.url("/fake"))
    archive_outputs.call(run.pk)
    output = Output.objects.get(run=run)
    assert output.archive_state == ArchiveState.REFUSED
    assert "not a readable image" in output.archive_error


def test_success_enqueues_archiving_on_commit(
    cast: Cast, files: FileServer, django_capture_on_commit_callbacks: Any
) -> None:
    # The hook registered in RunsConfig.ready(): a transition to succeeded copies outputs.
    files.routes["/a.png"] = send(png_bytes(), "image/png")
    run = make_run(cast.team, status=Status.RUNNING)
    output = {"outputs": [{"type": "image", "url": files.url("/a.png")}]}
    with django_capture_on_commit_callbacks(execute=True):
        apply_report(run, Report(status="succeeded", output=output), source=Source.CALLBACK)
    assert Output.objects.get(run=run).archive_state == ArchiveState.ARCHIVED


def test_link_deadline_reads_presigned_expiry(cast: Cast) -> None:
    run = make_run(cast.team, status=Status.SUCCEEDED, completed_at=timezone.now())
    amz = Output(
        run=run,
        index=0,
        source_url="https://x.test/a.png?X-Amz-Date=20260506T100035Z&X-Amz-Expires=3600&sig=1",
    )
    assert link_deadline(amz).isoformat() == "2026-05-06T11:00:35+00:00"
    epoch = Output(run=run, index=1, source_url="https://x.test/a.png?Expires=1778061635")
    assert link_deadline(epoch).timestamp() == 1778061635
    plain = Output(run=run, index=2, source_url="https://x.test/a.png")
    assert link_deadline(plain) - run.completed_at == timedelta(hours=24)


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (png_bytes(), "image/png"),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF", "image/jpeg"),
        (b"GIF89a\x01\x00", "image/gif"),
        (b"RIFF\x00\x00\x00\x00WEBPVP8 ", "image/webp"),
        (b"RIFF\x00\x00\x00\x00WAVEfmt ", "audio/wav"),
        (b"\x00\x00\x00\x18ftypisom", "video/mp4"),
        (b"\x00\x00\x00\x18ftypM4A ", "audio/mp4"),
        (b"\x1a\x45\xdf\xa3\x9f", "video/webm"),
        (b"OggS\x00\x02", "audio/ogg"),
        (b"fLaC\x00\x00\x00\x22", "audio/flac"),
        (b"ID3\x04\x00", "audio/mpeg"),
        (b"\xff\xfb\x90\x64", "audio/mpeg"),
        (b"<svg xmlns='http://www.w3.org/2000/svg'/>", None),
        (b"<!DOCTYPE html>", None),
        (b"  <html>", None),
        (b"RIFF\x00\x00\x00\x00AVI LIST", None),
        (b"\xff\xff\xff\xff", None),
        (b"", None),
    ],
)
def test_sniff_table(head: bytes, expected: str | None) -> None:
    found = sniff(head)
    assert (found.content_type if found else None) == expected


def test_wav_duration_is_read() -> None:
    facts = describe(io.BytesIO(wav_bytes(2.0)), sniff(b"RIFF\x00\x00\x00\x00WAVE"))  # type: ignore[arg-type]
    assert facts.duration == pytest.approx(2.0)


def _png_header_only(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return (
        b"\x89PNG\r\n\x1a\n"
        + struct.pack(">I", len(ihdr))
        + chunk
        + struct.pack(">I", zlib.crc32(chunk))
        + struct.pack(">I", 0)
        + b"IEND"
        + struct.pack(">I", zlib.crc32(b"IEND"))
    )
