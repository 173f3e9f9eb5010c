"""Workspace background work: ZIP downloads of a selection, and feedback sent upstream.

A ZIP job lives entirely in storage, beside the archived files, so it needs no table and
works the same on local disk and S3 with any number of web and worker processes:
``zips/<team uuid>/<job uuid>.json`` is the manifest (what to pack, its state) and
``zips/<team uuid>/<job uuid>.zip`` appears once it is built. Jobs older than a day are
removed whenever the team asks for a new one.
"""

from __future__ import annotations

import json
import logging
import tempfile
import uuid
import zipfile
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.files import File
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.tasks import task
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from runs.models import ArchiveState, Output, Run, Team

logger = logging.getLogger(__name__)

ZIP_MAX_FILES = 500
ZIP_MAX_BYTES: int = getattr(settings, "ZIP_MAX_BYTES", 2 * 1024 * 1024 * 1024)
ZIP_KEEP = timedelta(days=1)
_COPY_CHUNK = 1024 * 1024


def _paths(team_uuid: str, job: str) -> tuple[str, str]:
    base = f"zips/{uuid.UUID(team_uuid)}/{uuid.UUID(job)}"
    return f"{base}.json", f"{base}.zip"


def read_manifest(team_uuid: str, job: str) -> dict[str, Any] | None:
    manifest_path, _ = _paths(team_uuid, job)
    if not default_storage.exists(manifest_path):
        return None
    with default_storage.open(manifest_path, "rb") as handle:
        data = json.loads(handle.read().decode())
    return data if isinstance(data, dict) else None


def _write_manifest(team_uuid: str, job: str, data: dict[str, Any]) -> None:
    manifest_path, _ = _paths(team_uuid, job)
    if default_storage.exists(manifest_path):
        default_storage.delete(manifest_path)
    default_storage.save(manifest_path, ContentFile(json.dumps(data).encode()))


def zip_path(team_uuid: str, job: str) -> str:
    return _paths(team_uuid, job)[1]


def start_zip(team: Team, user_id: int | None, outputs: list[Output]) -> str:
    """Record a ZIP job for ``outputs`` (already checked to belong to ``team``); build it."""
    _forget_old_zips(str(team.uuid))
    job = str(uuid.uuid4())
    _write_manifest(
        str(team.uuid),
        job,
        {
            "state": "building",
            "outputs": [str(output.uuid) for output in outputs[:ZIP_MAX_FILES]],
            "created_by": user_id,
            "created_at": timezone.now().isoformat(),
            "files": 0,
            "bytes": 0,
            "error": "",
        },
    )
    build_zip.enqueue(str(team.uuid), job)
    return job


def _forget_old_zips(team_uuid: str) -> None:
    folder = f"zips/{uuid.UUID(team_uuid)}"
    try:
        _, files = default_storage.listdir(folder)
    except (FileNotFoundError, NotADirectoryError):
        return
    cutoff = timezone.now() - ZIP_KEEP
    for name in files:
        path = f"{folder}/{name}"
        try:
            if default_storage.get_modified_time(path) < cutoff:
                default_storage.delete(path)
        except (FileNotFoundError, NotImplementedError):
            continue


def _arcname(output: Output, taken: set[str]) -> str:
    from runs.views.media import download_name

    name = download_name(output, output.file.name or "")
    candidate, counter = name, 1
    while candidate in taken:
        counter += 1
        stem, dot, ext = name.rpartition(".")
        candidate = f"{stem}-{counter}.{ext}" if dot else f"{name}-{counter}"
    taken.add(candidate)
    return candidate


@task
def build_zip(team_uuid: str, job: str) -> dict[str, Any]:
    """Pack the job's archived outputs into one ZIP in storage. Safe to run twice."""
    manifest = read_manifest(team_uuid, job)
    _, target = _paths(team_uuid, job)
    if manifest is None or (manifest.get("state") == "ready" and default_storage.exists(target)):
        return {"skipped": True}
    outputs = list(
        Output.objects.select_related("run")
        .filter(
            uuid__in=manifest.get("outputs", []),
            run__team__uuid=team_uuid,
            run__deleted_at__isnull=True,
            archive_state=ArchiveState.ARCHIVED,
        )
        .exclude(file="")
        .order_by("-run__created_at", "run_id", "index")
    )
    total, packed, taken = 0, 0, set[str]()
    try:
        with tempfile.NamedTemporaryFile(suffix=".zip") as spool:
            with zipfile.ZipFile(spool, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
                for output in outputs:
                    size = output.file.size
                    if total + size > ZIP_MAX_BYTES:
                        raise ValueError(
                            f"The selection is larger than {ZIP_MAX_BYTES // 1_000_000} MB; "
                            "pick fewer files."
                        )
                    # Media is already compressed: storing is as small and much faster.
                    with (
                        output.file.open("rb") as source,
                        archive.open(_arcname(output, taken), "w", force_zip64=True) as sink,
                    ):
                        while chunk := source.read(_COPY_CHUNK):
                            sink.write(chunk)
                    total += size
                    packed += 1
            spool.seek(0)
            if default_storage.exists(target):
                default_storage.delete(target)
            default_storage.save(target, File(spool, name=target.rsplit("/", 1)[-1]))
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        logger.warning("ZIP %s for team %s failed: %s", job, team_uuid, exc)
        _write_manifest(team_uuid, job, {**manifest, "state": "failed", "error": str(exc)})
        return {"failed": str(exc)}
    _write_manifest(team_uuid, job, {**manifest, "state": "ready", "files": packed, "bytes": total})
    return {"files": packed, "bytes": total}


def zip_is_expired(manifest: dict[str, Any]) -> bool:
    created = parse_datetime(str(manifest.get("created_at", "")))
    return created is None or timezone.now() - created > ZIP_KEEP


@task
def send_feedback(run_id: int) -> str:
    """Send the run's stored thumbs to Runflow. The local value is the truth; this mirrors it."""
    from runs.connection import ConnectionUnavailable, client_for_team
    from runs.runflow.errors import RunflowError

    run = Run.objects.select_related("team", "key").filter(pk=run_id).first()
    if run is None or run.runflow_id is None or run.feedback is None:
        return "nothing to send"
    key = run.key if run.key is not None and run.key.is_active else None
    try:
        with client_for_team(run.team, key=key) as client:
            client.send_feedback(str(run.runflow_id), is_positive=run.feedback)
    except (ConnectionUnavailable, RunflowError) as exc:
        logger.warning("Feedback for run %s not sent: %s", run.uuid, exc)
        return f"not sent: {exc}"
    return "sent"
