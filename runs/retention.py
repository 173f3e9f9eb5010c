"""The retention rule: delete archived media (and optionally whole runs) past N days.

A rule runs in two steps that share one code path: ``plan`` works out exactly which runs
and files are concerned and ``apply`` deletes those and nothing else. The preview page
shows a plan and hands the browser a signed token naming it (bounds and a digest of the
ids); applying the token recomputes the selection and refuses if anything changed, so what
is deleted is always exactly what was previewed. The worker's scheduled sweep plans and
applies in one go.

Only finished runs are touched: a run still in flight is never deleted under the worker's
feet. Files are removed from storage after the database change commits, so a crash leaves
at worst an orphan file, never a row pointing at a missing one.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.core import signing
from django.db import transaction
from django.db.models import Max, Q, QuerySet, Sum
from django.utils import timezone

from runs.models import TERMINAL, ArchiveState, Output, Run, Team, record

logger = logging.getLogger(__name__)

TOKEN_SALT = "runs.retention.plan"
TOKEN_MAX_AGE = 60 * 60  # a preview is good for an hour
CHUNK = 500
SAMPLE = 20


class PlanChanged(Exception):
    """What the preview showed is no longer what would be deleted."""


@dataclass(frozen=True)
class Plan:
    team: Team
    days: int
    cutoff: datetime
    delete_runs: bool
    max_run_id: int
    max_output_id: int
    run_ids: tuple[int, ...]
    output_ids: tuple[int, ...]  # outputs whose stored files will be deleted
    media_bytes: int
    sample: tuple[Run, ...] = field(default=(), compare=False)

    @property
    def digest(self) -> str:
        data = json.dumps([self.delete_runs, self.run_ids, self.output_ids]).encode()
        return hashlib.sha256(data).hexdigest()[:32]

    @property
    def is_empty(self) -> bool:
        return not self.run_ids and not self.output_ids

    def token(self) -> str:
        return signing.dumps(
            {
                "team": self.team.pk,
                "days": self.days,
                "cutoff": self.cutoff.isoformat(),
                "delete_runs": self.delete_runs,
                "max_run": self.max_run_id,
                "max_output": self.max_output_id,
                "digest": self.digest,
            },
            salt=TOKEN_SALT,
        )


@dataclass(frozen=True)
class Result:
    runs_deleted: int
    files_deleted: int
    bytes_freed: int


def plan(team: Team, *, now: datetime | None = None, with_sample: bool = False) -> Plan | None:
    """What the team's rule would delete now, or None when the team has no rule."""
    if not team.retention_days:
        return None
    cutoff = (now or timezone.now()) - timedelta(days=team.retention_days)
    bounds = (
        Run.objects.aggregate(r=Max("pk"))["r"] or 0,
        Output.objects.aggregate(o=Max("pk"))["o"] or 0,
    )
    return _select(team, team.retention_days, cutoff, team.retention_delete_runs, *bounds,
                   with_sample=with_sample)  # fmt: skip


def _select(
    team: Team,
    days: int,
    cutoff: datetime,
    delete_runs: bool,
    max_run_id: int,
    max_output_id: int,
    *,
    with_sample: bool = False,
) -> Plan:
    # Bounded by the highest ids seen at preview: nothing created later can sneak in.
    runs = Run.objects.filter(
        team=team, created_at__lt=cutoff, status__in=TERMINAL, pk__lte=max_run_id
    )
    outputs = Output.objects.filter(run__in=runs, pk__lte=max_output_id).filter(
        ~Q(file="") | ~Q(thumbnail="")
    )
    run_ids = tuple(runs.order_by("pk").values_list("pk", flat=True)) if delete_runs else ()
    output_ids = tuple(outputs.order_by("pk").values_list("pk", flat=True))
    media_bytes = outputs.aggregate(n=Sum("size_bytes"))["n"] or 0
    sample: tuple[Run, ...] = ()
    if with_sample:
        shown = runs if delete_runs else runs.filter(outputs__pk__in=outputs.values("pk"))
        sample = tuple(
            shown.distinct().select_related("created_by").order_by("-created_at")[:SAMPLE]
        )
    return Plan(
        team, days, cutoff, delete_runs, max_run_id, max_output_id, run_ids, output_ids,
        media_bytes, sample,
    )  # fmt: skip


def plan_from_token(team: Team, token: str) -> Plan:
    """The plan a preview showed, recomputed; raises PlanChanged if it no longer matches."""
    try:
        data = signing.loads(token, salt=TOKEN_SALT, max_age=TOKEN_MAX_AGE)
    except signing.SignatureExpired as exc:
        raise PlanChanged("The preview is more than an hour old: preview again.") from exc
    except signing.BadSignature as exc:
        raise PlanChanged("This preview is not valid: preview again.") from exc
    if data.get("team") != team.pk:
        raise PlanChanged("This preview belongs to another team.")
    found = _select(
        team,
        int(data["days"]),
        datetime.fromisoformat(data["cutoff"]),
        bool(data["delete_runs"]),
        int(data["max_run"]),
        int(data["max_output"]),
    )
    if found.digest != data["digest"]:
        raise PlanChanged(
            "Runs or files changed since the preview (something finished, was archived or "
            "deleted): preview again to see what would be deleted now."
        )
    return found


def apply(chosen: Plan, *, actor: Any = None, trigger: str = "manual") -> Result:
    """Delete exactly the plan's runs and files, and write one audit entry."""
    files: list[str] = []
    runs_deleted = 0
    for chunk in _chunks(chosen.output_ids):
        with transaction.atomic():
            rows = Output.objects.filter(pk__in=chunk).values_list("file", "thumbnail")
            files.extend(name for pair in rows for name in pair if name)
            if not chosen.delete_runs:
                Output.objects.filter(pk__in=chunk).update(
                    file="",
                    thumbnail="",
                    archive_state=ArchiveState.PURGED,
                    archive_error=f"Deleted after {chosen.days} days by the retention rule.",
                )
    for chunk in _chunks(chosen.run_ids):
        with transaction.atomic():
            runs_deleted += Run.objects.filter(pk__in=chunk).delete()[1].get("runs.Run", 0)
    deleted = _delete_files(files)
    result = Result(runs_deleted, deleted, chosen.media_bytes)
    record(
        "retention.applied",
        team=chosen.team,
        actor=actor,
        target=f"older than {chosen.days} days",
        trigger=trigger,
        cutoff=chosen.cutoff.isoformat(),
        runs_deleted=result.runs_deleted,
        files_deleted=result.files_deleted,
        outputs_purged=len(chosen.output_ids),
        bytes_freed=result.bytes_freed,
        digest=chosen.digest,
    )
    return result


def _chunks(ids: Sequence[int]) -> Iterable[Sequence[int]]:
    for start in range(0, len(ids), CHUNK):
        yield ids[start : start + CHUNK]


def _delete_files(names: Iterable[str]) -> int:
    storage = Output._meta.get_field("file").storage  # type: ignore[attr-defined]
    deleted = 0
    for name in names:
        try:
            storage.delete(name)
            deleted += 1
        except Exception:  # one stuck file must not stop the sweep (logged, retried never)
            logger.exception("Retention could not delete stored file %s", name)
    return deleted


def due_teams() -> QuerySet[Team]:
    return Team.objects.filter(retention_days__isnull=False, retention_days__gt=0)
