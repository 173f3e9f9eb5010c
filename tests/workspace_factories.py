"""Test data for the workspace tests: runs, outputs with small real files, logs, steps.

Rows are created straight with the ORM (the results pipeline is not needed to show them);
output files are real PNGs (or bytes) saved into a temporary MEDIA_ROOT.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from django.core.files.base import ContentFile
from django.utils import timezone
from PIL import Image

from runs.models import ArchiveState, Output, Run, Status, Team

MODEL = "acme/text-to-image"


@pytest.fixture
def media(settings: Any, tmp_path: Path) -> Iterator[Path]:
    """A private MEDIA_ROOT for the test, so real files never land in var/."""
    settings.MEDIA_ROOT = tmp_path / "media"
    yield tmp_path / "media"


def tiny_png(width: int = 6, height: int = 4, color: tuple[int, int, int] = (200, 40, 90)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buffer, format="PNG")
    return buffer.getvalue()


def make_run(
    team: Team,
    user: Any = None,
    *,
    prompt: str = "a lighthouse at dusk",
    status: str = Status.SUCCEEDED,
    model_id: str = MODEL,
    created_at: datetime | None = None,
    **fields: Any,
) -> Run:
    now = created_at or timezone.now()
    defaults: dict[str, Any] = {
        "api_url": "http://127.0.0.1:8765",
        "submitted_at": now,
        "queued_at": now + timedelta(seconds=1),
    }
    if status in {Status.SUCCEEDED, Status.FAILED, Status.CANCELED, Status.PARTIAL_SUCCEEDED}:
        defaults.update(
            running_at=now + timedelta(seconds=3),
            completed_at=now + timedelta(seconds=12),
            duration_ms=9000,
        )
    if status == Status.SUCCEEDED:
        defaults["cost"] = Decimal("0.04")
    if status == Status.PENDING:
        defaults.update(submitted_at=None, queued_at=None)
    defaults.update(fields)
    return Run.objects.create(
        team=team,
        created_by=user,
        model_id=model_id,
        input={"prompt": prompt, "seed": 7},
        status=status,
        created_at=now,
        **defaults,
    )


def add_output(
    run: Run,
    index: int = 0,
    *,
    kind: str = "image",
    archived: bool = True,
    data: bytes | None = None,
    name: str = "",
    content_type: str = "image/png",
    thumbnail: bool = False,
    **fields: Any,
) -> Output:
    output = Output.objects.create(
        run=run,
        index=index,
        kind=kind,
        source_url=f"https://files.runflow.example/{run.uuid}/{index}.png?sig=expiring",
        content_type=content_type,
        width=6 if kind == "image" else None,
        height=4 if kind == "image" else None,
        **{"archive_state": ArchiveState.ARCHIVED if archived else ArchiveState.PENDING, **fields},
    )
    if archived:
        body = data if data is not None else tiny_png()
        output.file.save(name or f"output-{index}.png", ContentFile(body), save=False)
        output.size_bytes = len(body)
        if thumbnail:
            output.thumbnail.save(f"thumb-{index}.png", ContentFile(tiny_png(2, 2)), save=False)
        output.save()
    return output
