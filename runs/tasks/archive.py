"""Copy a run's outputs into our storage before Runflow's links expire (R7).

``archive_outputs(run_id)`` is enqueued (on commit) when a run first reaches a status with
outputs, and again by the reconcile sweep for copies still owed. Each output is claimed with
a compare-and-set on its attempt counter, so two tasks never copy the same file at once.

An output ends in one of: ``ARCHIVED`` (our copy, with size, sha256, dimensions or duration
and, for images, a thumbnail); ``REFUSED`` (unsafe address or content: never retried);
``EXPIRED`` (the link answered 403/410, or kept failing until its expiry passed); or stays
``FAILED`` between retries, with the reason shown on the run page.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

from django.core.files import File
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db.models import F
from django.tasks import task
from django.utils import timezone

from runs.archive import ArchiveError, Downloaded, FetchFailed, LinkExpired, Refused, download
from runs.mediainfo import Undecodable, describe_with_thumbnail
from runs.models import ArchiveState, Output, OutputKind, Run

logger = logging.getLogger(__name__)

OWED = (ArchiveState.PENDING, ArchiveState.FAILED)
# Quick retries right after a failure; later ones come from the reconcile sweep.
RETRY_DELAYS = (10, 60, 300)
# When a link carries no expiry we can read, Runflow documents about a day.
DEFAULT_LINK_LIFETIME = timedelta(hours=24)


def enqueue_archive(run_id: int) -> None:
    """``transitions.on_outputs`` hook (called on commit)."""
    archive_outputs.enqueue(run_id)


@task
def archive_outputs(run_id: int) -> dict[str, int]:
    """Copy every output of the run still owed; one output's failure never stops the rest."""
    run = Run.objects.select_related("team").filter(pk=run_id).first()
    if run is None:
        return {}
    counts: dict[str, int] = {}
    attempts = 0
    for output in run.outputs.filter(archive_state__in=OWED).order_by("index"):
        output.run = run
        try:
            state = archive_output(output)
        except Exception:
            # A bug or a storage outage: leave the output owed for the next sweep.
            logger.exception("Archiving output %s of run %s failed", output.uuid, run.uuid)
            state = "error"
        counts[state] = counts.get(state, 0) + 1
        attempts = max(attempts, output.archive_attempts)
    if counts.get(ArchiveState.FAILED) and attempts <= len(RETRY_DELAYS):
        _retry_later(run_id, RETRY_DELAYS[attempts - 1])
    return counts


def _retry_later(run_id: int, seconds: int) -> None:
    if archive_outputs.get_backend().supports_defer:
        archive_outputs.using(run_after=timezone.now() + timedelta(seconds=seconds)).enqueue(run_id)


def archive_output(output: Output) -> str:
    """Copy one output; return its new ``archive_state`` (or "skipped" if another has it)."""
    claimed = Output.objects.filter(
        pk=output.pk, archive_state__in=OWED, archive_attempts=output.archive_attempts
    ).update(archive_attempts=F("archive_attempts") + 1)
    if not claimed:
        return "skipped"
    output.archive_attempts += 1
    deadline = link_deadline(output)
    try:
        downloaded = download(output.source_url)
    except Refused as exc:
        return _mark(output, ArchiveState.REFUSED, str(exc))
    except LinkExpired as exc:
        return _mark(output, ArchiveState.EXPIRED, f"{exc} The file could not be copied in time.")
    except FetchFailed as exc:
        if timezone.now() >= deadline:
            return _mark(
                output,
                ArchiveState.EXPIRED,
                f"The link expired before the file could be copied (last try: {exc})",
            )
        return _mark(output, ArchiveState.FAILED, f"{exc} Trying again later.")
    except ArchiveError as exc:
        return _mark(output, ArchiveState.FAILED, str(exc))
    try:
        return _store(output, downloaded)
    finally:
        downloaded.close()


def _store(output: Output, downloaded: Downloaded) -> str:
    sniffed = downloaded.sniffed
    try:
        facts, thumb = describe_with_thumbnail(downloaded.file, sniffed)
    except Undecodable as exc:
        return _mark(output, ArchiveState.REFUSED, f"The file is not a readable image ({exc}).")
    field = Output._meta.get_field("file")
    name = field.generate_filename(output, f"{output.uuid}.{sniffed.extension}")  # type: ignore[attr-defined]
    file_name = _save(name, File(downloaded.file))
    thumb_name = ""
    if thumb is not None:
        thumb_path = field.generate_filename(output, f"{output.uuid}-thumb.webp")  # type: ignore[attr-defined]
        thumb_name = _save(thumb_path, ContentFile(thumb))
    if output.kind not in (OutputKind.OTHER, sniffed.kind):
        logger.info(
            "Output %s said %s but its bytes are %s", output.uuid, output.kind, sniffed.kind
        )
    updated = Output.objects.filter(pk=output.pk, archive_state__in=OWED).update(
        file=file_name,
        thumbnail=thumb_name,
        kind=sniffed.kind,
        content_type=sniffed.content_type,
        size_bytes=downloaded.size,
        sha256=downloaded.sha256,
        width=facts.width or output.width,
        height=facts.height or output.height,
        duration=facts.duration or output.duration,
        archive_state=ArchiveState.ARCHIVED,
        archive_error="",
        archived_at=timezone.now(),
    )
    if not updated:
        # Purged or otherwise settled while we were copying: do not leave our files behind.
        for stored in (file_name, thumb_name):
            if stored:
                default_storage.delete(stored)
        return "skipped"
    return ArchiveState.ARCHIVED


def _save(name: str, content: Any) -> str:
    # A retry after a crash may find its own earlier partial copy under the same name.
    if default_storage.exists(name):
        default_storage.delete(name)
    return default_storage.save(name, content)


def _mark(output: Output, state: str, message: str) -> str:
    Output.objects.filter(pk=output.pk, archive_state__in=OWED).update(
        archive_state=state, archive_error=message[:2000]
    )
    level = logging.INFO if state == ArchiveState.FAILED else logging.WARNING
    logger.log(level, "Output %s %s: %s", output.uuid, state, message)
    return state


def link_deadline(output: Output) -> datetime:
    """When the output's link stops working: from the presigned query, else a day."""
    expiry = _presigned_expiry(output.source_url)
    if expiry is not None:
        return expiry
    run = output.run
    start = (run.completed_at if run is not None else None) or output.created_at
    return start + DEFAULT_LINK_LIFETIME


def _presigned_expiry(url: str) -> datetime | None:
    query = {k.lower(): v[0] for k, v in parse_qs(urlsplit(url).query).items() if v}
    try:
        if "x-amz-date" in query and "x-amz-expires" in query:
            signed = datetime.strptime(query["x-amz-date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
            return signed + timedelta(seconds=int(query["x-amz-expires"]))
        if "x-goog-date" in query and "x-goog-expires" in query:
            signed = datetime.strptime(query["x-goog-date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
            return signed + timedelta(seconds=int(query["x-goog-expires"]))
        if "expires" in query and query["expires"].isdigit():
            return datetime.fromtimestamp(int(query["expires"]), tz=UTC)
    except (ValueError, OverflowError, OSError):
        return None
    return None
