"""The one way a run changes state (W8, W9, R6, D2).

Submit answers, polls and callbacks all become a ``Report`` and go through
``apply_report``. The status moves by a compare-and-set UPDATE whose WHERE clause admits only
the statuses the report may move *from*, so under any number of concurrent duplicates exactly
one writer wins and the others see zero rows updated. No ``select_for_update`` (SQLite
ignores it) and no network call inside the transaction.

Rules:
- status only moves forward: pending → queued → dispatching → running → terminal;
- a terminal status is absorbing; a *different* terminal report is kept as an anomaly;
- the same status again is a duplicate, an earlier one is late: recorded, not applied;
- an unknown status is recorded and ignored, the run stays in flight (R9);
- logs and steps are merged whatever the status outcome (they only ever grow).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from runs.models import (
    STATUS_RANK,
    TERMINAL,
    WITH_OUTPUTS,
    Delivery,
    NodeRun,
    Outcome,
    Output,
    OutputKind,
    Run,
    RunLog,
    Source,
    Status,
    normalize_status,
)

logger = logging.getLogger(__name__)

# Which timestamp field records the moment a run entered each status.
STATUS_TIME_FIELD = {
    Status.QUEUED: "queued_at",
    Status.DISPATCHING: "dispatching_at",
    Status.RUNNING: "running_at",
}

# Called after a run first reaches a status with outputs (the results pipeline registers the
# archiver here), on commit, with the run's primary key.
on_outputs: list[Callable[[int], None]] = []
# Called after any applied status change, on commit (e.g. batch progress), with the run.
on_transition: list[Callable[[Run], None]] = []


@dataclass(frozen=True)
class Report:
    """What one source says about a run, independent of how it arrived."""

    status: str | None
    runflow_id: str | None = None
    output: Mapping[str, Any] | None = None
    cost: Decimal | None = None
    duration_ms: int | None = None
    failure_code: str = ""
    failure_stage_code: str = ""
    failure_message: str = ""
    started_at: datetime | None = None
    completed_at: datetime | None = None
    nodes_total: int | None = None
    nodes_completed: int | None = None
    logs: tuple[Mapping[str, Any], ...] = ()
    node_runs: tuple[Mapping[str, Any], ...] = ()
    field_errors: Mapping[str, list[str]] = field(default_factory=dict)

    @classmethod
    def from_run_info(cls, info: Any) -> Report:
        """From a ``runs.runflow.schemas.RunInfo`` (create answer or poll)."""
        return cls(
            status=_text(getattr(info, "status_code", None)) or None,
            runflow_id=_text(getattr(info, "id", None)) or None,
            output=_dump(getattr(info, "output", None)),
            cost=_decimal(getattr(info, "cost", None)),
            duration_ms=getattr(info, "duration_ms", None),
            failure_code=_text(getattr(info, "failure_code", None)),
            failure_stage_code=_text(getattr(info, "failure_stage_code", None)),
            failure_message=_text(getattr(info, "failure_message", None)),
            started_at=_when(getattr(info, "started_at", None)),
            completed_at=_when(getattr(info, "completed_at", None)),
            nodes_total=getattr(info, "nodes_total", None),
            nodes_completed=getattr(info, "nodes_completed", None),
            logs=tuple(_dump(item) or {} for item in getattr(info, "logs", None) or ()),
            node_runs=tuple(_dump(item) or {} for item in getattr(info, "node_runs", None) or ()),
        )

    @classmethod
    def from_callback(cls, envelope: Any) -> Report:
        """From a ``runs.runflow.schemas.CallbackEnvelope`` of a run (not a batch)."""
        output = _dump(getattr(envelope, "output", None))
        status = _text(getattr(envelope, "status", None))
        failure: Mapping[str, Any] = {}
        # The failure envelope inside a run.failed callback is undocumented (RUNFLOW_API.md,
        # open points): read the usual names if they are there, else leave them empty for
        # the next poll to fill in.
        if normalize_status(status) != Status.SUCCEEDED and isinstance(output, Mapping):
            failure = output
        return cls(
            status=status or None,
            runflow_id=_text(getattr(envelope, "run_id", None)) or None,
            output=output if normalize_status(status) in WITH_OUTPUTS else None,
            duration_ms=getattr(envelope, "duration_ms", None),
            completed_at=_when(getattr(envelope, "completed_at", None)),
            failure_code=_text(failure.get("failure_code") or failure.get("code")),
            failure_stage_code=_text(failure.get("failure_stage_code")),
            failure_message=_text(failure.get("failure_message") or failure.get("message")),
        )

    @classmethod
    def rejected(
        cls, code: str, message: str, field_errors: Mapping[str, list[str]] | None = None
    ) -> Report:
        """Runflow refused the run at submission (a final 4xx): it failed before it started."""
        return cls(
            status=Status.FAILED,
            failure_code=code,
            failure_stage_code="submission",
            failure_message=message,
            field_errors=dict(field_errors or {}),
        )


def apply_report(run: Run, report: Report, *, source: str, delivery: Delivery | None = None) -> str:
    """Apply ``report`` to ``run``; return the ``Outcome`` and record it on ``delivery``."""
    now = timezone.now()
    new_status = normalize_status(report.status)
    outcome: str
    with transaction.atomic():
        if report.runflow_id and run.runflow_id is None:  # only ever set once
            _remember_runflow_id(run, report.runflow_id)
        merge_logs(run, report.logs)
        merge_node_runs(run, report.node_runs)
        if new_status is None:
            logger.warning(
                "Run %s: unknown status %r from %s ignored", run.uuid, report.status, source
            )
            outcome = Outcome.IGNORED
        elif _compare_and_set(run, new_status, report, now):
            outcome = Outcome.APPLIED
            if new_status in WITH_OUTPUTS:
                _create_outputs(run, report.output)
        else:
            outcome = _why_not_applied(run, new_status, report)
        _update_progress(run, report)
        if delivery is not None:
            delivery.outcome = outcome
            delivery.run = run
            delivery.save(update_fields=["outcome", "run"])
    run.refresh_from_db()
    if outcome == Outcome.APPLIED and new_status is not None:
        _after_commit(run, new_status)
    return outcome


def _compare_and_set(run: Run, new_status: Status, report: Report, now: datetime) -> bool:
    earlier = [status for status, rank in STATUS_RANK.items() if rank < STATUS_RANK[new_status]]
    changes: dict[str, Any] = {"status": new_status, "updated_at": now, "stuck_since": None}
    time_field = STATUS_TIME_FIELD.get(new_status)
    if time_field:
        changes[time_field] = now
    if new_status in TERMINAL:
        changes.update(
            completed_at=report.completed_at or now,
            failure_code=report.failure_code[:100],
            failure_stage_code=report.failure_stage_code[:100],
            failure_message=report.failure_message,
            next_poll_at=None,
        )
        if report.output is not None:
            changes["output"] = dict(report.output)
        if report.cost is not None:
            changes["cost"] = report.cost
        if report.duration_ms is not None:
            changes["duration_ms"] = report.duration_ms
        if report.field_errors:
            changes["field_errors"] = dict(report.field_errors)
    if report.started_at is not None:
        changes["running_at"] = report.started_at
    updated = Run.objects.filter(pk=run.pk, status__in=earlier).update(**changes)
    return updated == 1


def _why_not_applied(run: Run, new_status: Status, report: Report) -> str:
    current = Run.objects.filter(pk=run.pk).values_list("status", flat=True).get()
    if current == new_status:
        if new_status in TERMINAL:
            _fill_missing_terminal_details(run, report)
        return Outcome.DUPLICATE
    if current in TERMINAL and new_status in TERMINAL:
        logger.warning(
            "Run %s: conflicting terminal report %s after %s", run.uuid, new_status, current
        )
        Run.objects.filter(pk=run.pk).update(has_anomaly=True)
        return Outcome.CONFLICT
    return Outcome.LATE


def _fill_missing_terminal_details(run: Run, report: Report) -> None:
    """A callback may say "failed" with no details and no cost; a later poll brings them.

    Only blanks are filled, each by its own conditional UPDATE, so this stays idempotent and
    never overwrites what an earlier report already set.
    """
    this_run = Run.objects.filter(pk=run.pk)
    if report.cost is not None:
        this_run.filter(cost__isnull=True).update(cost=report.cost)
    if report.duration_ms is not None:
        this_run.filter(duration_ms__isnull=True).update(duration_ms=report.duration_ms)
    if report.failure_message or report.failure_code:
        this_run.filter(failure_message="", failure_code="").update(
            failure_code=report.failure_code[:100],
            failure_stage_code=report.failure_stage_code[:100],
            failure_message=report.failure_message,
        )
    has_outputs = report.output is not None and normalize_status(report.status) in WITH_OUTPUTS
    if has_outputs and this_run.filter(output__isnull=True).update(
        output=dict(report.output or {})
    ):
        _create_outputs(run, report.output)


def _remember_runflow_id(run: Run, runflow_id: str) -> None:
    try:
        with transaction.atomic():  # a savepoint: PostgreSQL aborts a failed transaction
            Run.objects.filter(pk=run.pk, runflow_id__isnull=True).update(runflow_id=runflow_id)
    except (IntegrityError, ValueError, ValidationError):
        # Another of our runs already carries this upstream id, or it is not a UUID: never
        # let a bad report break the ledger write around it.
        logger.warning("Run %s: could not record upstream id %r", run.uuid, runflow_id)


def _update_progress(run: Run, report: Report) -> None:
    changes = {
        name: value
        for name, value in (
            ("nodes_total", report.nodes_total),
            ("nodes_completed", report.nodes_completed),
        )
        if isinstance(value, int) and value >= 0
    }
    if changes:
        Run.objects.filter(pk=run.pk).update(**changes)


def _create_outputs(run: Run, output: Mapping[str, Any] | None) -> None:
    items = (output or {}).get("outputs") or []
    rows = []
    for index, item in enumerate(items):
        if not isinstance(item, Mapping) or not isinstance(item.get("url"), str):
            continue
        kind = str(item.get("type") or "").lower()
        rows.append(
            Output(
                run=run,
                index=index,
                kind=kind if kind in OutputKind.values else OutputKind.OTHER,
                source_url=item["url"],
                content_type=str(item.get("content_type") or "")[:100],
                width=_positive_int(item.get("width")),
                height=_positive_int(item.get("height")),
                duration=_positive_float(item.get("duration")),
                size_bytes=_positive_int(item.get("size_bytes")),
            )
        )
    Output.objects.bulk_create(rows, ignore_conflicts=True)


def merge_logs(run: Run, logs: Iterable[Mapping[str, Any]]) -> int:
    """Add log lines not seen before (keyed by Runflow's id); return how many are new."""
    rows = []
    for position, entry in enumerate(logs):
        upstream_id = _text(entry.get("id")) or f"{entry.get('timestamp')}#{position}"
        rows.append(
            RunLog(
                run=run,
                runflow_id=upstream_id[:100],
                level=(_text(entry.get("level_code")) or "info").lower()[:20],
                message=_text(entry.get("message")),
                timestamp=_when(entry.get("timestamp")),
                meta=entry.get("meta") if isinstance(entry.get("meta"), dict) else None,
            )
        )
    if not rows:
        return 0
    before = RunLog.objects.filter(run=run).count()
    RunLog.objects.bulk_create(rows, ignore_conflicts=True)
    return RunLog.objects.filter(run=run).count() - before


def merge_node_runs(run: Run, node_runs: Iterable[Mapping[str, Any]]) -> None:
    for entry in node_runs:
        upstream_id = _text(entry.get("id"))
        if not upstream_id:
            continue
        NodeRun.objects.update_or_create(
            run=run,
            runflow_id=upstream_id[:100],
            defaults={
                "node_id": _text(entry.get("node_id"))[:200],
                "state": _text(entry.get("state_code"))[:30],
                "input": entry.get("input"),
                "output": entry.get("output"),
                "duration_ms": _positive_int(entry.get("duration_ms")),
                "cost": _decimal(entry.get("cost")),
                "retry_count": _positive_int(entry.get("retry_count")) or 0,
                "error_message": _text(entry.get("error_message")),
                "created_at": _when(entry.get("created_at")),
                "started_at": _when(entry.get("started_at")),
                "completed_at": _when(entry.get("completed_at")),
            },
        )


def record_delivery(
    run: Run | None, *, team_id: int, source: str, report: Report, note: str = ""
) -> Delivery:
    """Ledger row for a poll or submit answer (callbacks store theirs before parsing)."""
    return Delivery.objects.create(
        team_id=team_id,
        run=run,
        source=source,
        reported_status=_text(report.status)[:30],
        runflow_run_id=_text(report.runflow_id)[:100],
        signature_verified=False,
        note=note,
    )


def _after_commit(run: Run, status: Status) -> None:
    def notify() -> None:
        if status in WITH_OUTPUTS:
            for outputs_hook in on_outputs:
                outputs_hook(run.pk)
        for transition_hook in on_transition:
            transition_hook(run)

    transaction.on_commit(notify)


# ---- lenient readers: a report is foreign data, every field may be missing or odd ----


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _dump(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    return dict(value) if isinstance(value, Mapping) else None


def _decimal(value: Any) -> Decimal | None:
    if value is None or value == "":
        return None
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        return None
    return number if number.is_finite() and number >= 0 else None


def _when(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if timezone.is_aware(value) else timezone.make_aware(value, UTC)
    if isinstance(value, str):
        try:
            parsed = parse_datetime(value)
        except ValueError:
            return None
        if parsed is not None and timezone.is_naive(parsed):
            parsed = timezone.make_aware(parsed, UTC)
        return parsed
    return None


def _positive_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float) and value >= 0:
        return int(value)
    return None


def _positive_float(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float) and value >= 0:
        return float(value)
    return None


__all__ = [
    "Report",
    "Source",
    "apply_report",
    "merge_logs",
    "merge_node_runs",
    "on_outputs",
    "on_transition",
    "record_delivery",
]
