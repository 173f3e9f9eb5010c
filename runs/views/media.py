"""Archived output files, served only to the team that owns them (T5) and inertly (B5).

Files are never exposed under MEDIA_URL: every byte goes through these views, which check
team membership (or a live share link), allowlist the content types a browser may show
inline, send everything else as an ``application/octet-stream`` attachment (SVG and HTML
included, whatever their stored type says), and forbid sniffing and scripting.
"""

from __future__ import annotations

import mimetypes
import re
from collections.abc import Iterator
from typing import IO
from uuid import UUID

from django.contrib.auth.decorators import login_required
from django.db.models import QuerySet
from django.http import (
    FileResponse,
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseBase,
    StreamingHttpResponse,
)
from django.utils.http import content_disposition_header
from django.utils.text import slugify
from django.views.decorators.http import require_GET

from runs.access import membership_for
from runs.models import ArchiveState, Output, ShareLink

# What a browser may render inline. Everything else, SVG and HTML first, is an attachment.
INLINE_TYPES = frozenset(
    {
        "image/png",
        "image/jpeg",
        "image/gif",
        "image/webp",
        "image/avif",
        "video/mp4",
        "video/webm",
        "video/quicktime",
        "audio/mpeg",
        "audio/mp4",
        "audio/aac",
        "audio/wav",
        "audio/x-wav",
        "audio/wave",
        "audio/ogg",
        "audio/flac",
        "audio/webm",
    }
)
# Even when shown inline, a file may not run script, load anything or be framed.
MEDIA_CSP = "default-src 'none'; img-src 'self'; media-src 'self'; sandbox"
CHUNK = 64 * 1024
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def served_type(declared: str, name: str) -> str:
    """The Content-Type we answer with: an allowlisted type, else octet-stream."""
    declared = (declared or "").split(";", 1)[0].strip().lower()
    if not declared:
        declared = (mimetypes.guess_type(name)[0] or "").lower()
    return declared if declared in INLINE_TYPES else "application/octet-stream"


def download_name(output: Output, name: str, *, thumbnail: bool = False) -> str:
    """``<model>-<run>-<n>.<ext>``: readable, and built only from safe characters."""
    run = output.run
    stem = slugify(run.model_id.replace("/", "-"))[:60] or "output"
    ext = ""
    if "." in name.rsplit("/", 1)[-1]:
        ext = "." + re.sub(r"[^a-z0-9]", "", name.rsplit(".", 1)[-1].lower())[:8]
    suffix = "-thumb" if thumbnail else ""
    return f"{stem}-{run.uuid.hex[:8]}-{output.index + 1}{suffix}{ext}"


def _ranged(handle: IO[bytes], start: int, length: int) -> Iterator[bytes]:
    try:
        handle.seek(start)
        remaining = length
        while remaining > 0:
            chunk = handle.read(min(CHUNK, remaining))
            if not chunk:
                break
            remaining -= len(chunk)
            yield chunk
    finally:
        handle.close()


def _byte_range(header: str, size: int) -> tuple[int, int] | bool | None:
    """(start, end) of one satisfiable range; False when unsatisfiable; None to send it all.

    Only single ranges are served (what media players ask for); any other form of the
    header is ignored, which RFC 9110 allows.
    """
    match = _RANGE.match(header.strip()) if header else None
    if match is None:
        return None
    first, last = match.groups()
    if size == 0 or (not first and not last):
        return False
    if not first:  # the last N bytes
        start, end = max(0, size - int(last)), size - 1
    else:
        start = int(first)
        end = min(int(last), size - 1) if last else size - 1
    if start > end or start >= size:
        return False
    return start, end


def serve_output(request: HttpRequest, output: Output, *, thumbnail: bool) -> HttpResponseBase:
    field = output.thumbnail if thumbnail else output.file
    if output.archive_state != ArchiveState.ARCHIVED or not field:
        raise Http404("This file has not been copied here (yet).")
    # A thumbnail's type comes from its own name; the original's from what archiving found.
    content_type = served_type("" if thumbnail else output.content_type, field.name or "")
    as_attachment = content_type not in INLINE_TYPES or request.GET.get("download") == "1"
    try:
        handle = field.open("rb")
        size = field.size
    except (FileNotFoundError, OSError) as exc:
        raise Http404("The stored file is missing.") from exc
    wanted = _byte_range(request.headers.get("Range", ""), size)
    response: HttpResponseBase
    if wanted is False:
        handle.close()
        response = HttpResponse(status=416)
        response["Content-Range"] = f"bytes */{size}"
    elif isinstance(wanted, tuple):
        start, end = wanted
        response = StreamingHttpResponse(
            _ranged(handle, start, end - start + 1), status=206, content_type=content_type
        )
        response["Content-Range"] = f"bytes {start}-{end}/{size}"
        response["Content-Length"] = str(end - start + 1)
    else:
        response = FileResponse(handle, content_type=content_type)
        response["Content-Length"] = str(size)
    filename = download_name(output, field.name or "", thumbnail=thumbnail)
    response["Content-Type"] = content_type
    response["Content-Disposition"] = (
        content_disposition_header(as_attachment, filename) or "attachment"
    )
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = MEDIA_CSP
    response["Cross-Origin-Resource-Policy"] = "same-origin"
    response["Accept-Ranges"] = "bytes"
    response["Cache-Control"] = "private, max-age=86400"
    if output.sha256 and not thumbnail:
        response["ETag"] = f'"{output.sha256}"'
    return response


def _team_output(request: HttpRequest, team: UUID, output: UUID) -> Output:
    membership = membership_for(request, team)
    found = (
        Output.objects.select_related("run")
        .filter(uuid=output, run__team=membership.team, run__deleted_at__isnull=True)
        .first()
    )
    if found is None:
        raise Http404
    return found


@login_required
@require_GET
def output_file(request: HttpRequest, team: UUID, output: UUID) -> HttpResponseBase:
    return serve_output(request, _team_output(request, team, output), thumbnail=False)


@login_required
@require_GET
def output_thumb(request: HttpRequest, team: UUID, output: UUID) -> HttpResponseBase:
    return serve_output(request, _team_output(request, team, output), thumbnail=True)


def live_share(token: str) -> ShareLink:
    """A share link that still works, or 404 (expired and revoked links look unknown)."""
    link = ShareLink.objects.filter(token=token, revoked_at__isnull=True).first()
    if link is None or not link.is_live:
        raise Http404("This link does not exist or no longer works.")
    return link


def shared_outputs(link: ShareLink) -> QuerySet[Output]:
    return Output.objects.select_related("run").filter(
        run__share_links=link, run__team_id=link.team_id, run__deleted_at__isnull=True
    )


def _shared_output(token: str, output: UUID) -> Output:
    found = shared_outputs(live_share(token)).filter(uuid=output).first()
    if found is None:
        raise Http404
    return found


@require_GET
def shared_file(request: HttpRequest, token: str, output: UUID) -> HttpResponseBase:
    return serve_output(request, _shared_output(token, output), thumbnail=False)


@require_GET
def shared_thumb(request: HttpRequest, token: str, output: UUID) -> HttpResponseBase:
    return serve_output(request, _shared_output(token, output), thumbnail=True)
