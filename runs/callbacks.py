"""Verified callback bodies: store them, then parse, match and apply them (W6 to W13).

The view (``runs/views/hooks.py``) checks the signature and calls ``store_callback`` *before*
anything here reads the body, so a delivery Runflow got a 2xx for is always in the ledger,
whatever happens next (D4). ``process_delivery`` is then safe to run any number of times on
the same row: from the view, and again from the worker's reconcile sweep for rows that were
unmatched (the callback came before the create answer was stored, W11) or never processed
(the process died between storing and applying).

A delivery is matched only inside the team whose URL and secret it came with (W3): by
Runflow's run id, else by our own run UUID echoed in ``metadata.run``.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from django.db import DataError, transaction
from django.db.models import Q
from django.utils import timezone
from pydantic import ValidationError

from runs.models import (
    TERMINAL,
    BatchChunk,
    Delivery,
    Outcome,
    Run,
    Source,
    Team,
)
from runs.runflow.schemas import (
    BatchCallbackOutput,
    BatchItemInfo,
    CallbackEnvelope,
)
from runs.transitions import Report, apply_report

logger = logging.getLogger(__name__)

# Event names are matched exactly, UK spelling included (RUNFLOW_API.md "Callbacks").
RUN_EVENTS = frozenset({"run.completed", "run.failed", "run.cancelled", "run.partial_succeeded"})
BATCH_EVENT_PREFIX = "batch."

# Headers never kept in the ledger, whatever a proxy in front of us adds.
_DROPPED_HEADERS = frozenset(
    {"cookie", "authorization", "proxy-authorization", "x-csrftoken", "x-api-key"}
)
_MAX_HEADERS = 50
_MAX_HEADER_VALUE = 500

# How long an unmatched callback is retried against new runs before it is left alone.
REMATCH_WINDOW = timedelta(hours=24)
# A delivery still "received" after this long was stored but never processed: pick it up.
STALE_RECEIVED = timedelta(seconds=30)


def ledger_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The request headers worth keeping: no cookies, no credentials, bounded (W13)."""
    kept: dict[str, str] = {}
    for name, value in headers.items():
        lowered = name.lower()
        if lowered in _DROPPED_HEADERS or len(kept) >= _MAX_HEADERS:
            continue
        if lowered == "runflow-signature":
            # Enough to tell deliveries apart in the admin; never the whole signature.
            value = f"{value[:8]}…" if value else ""
        kept[name[:100]] = str(value)[:_MAX_HEADER_VALUE]
    return kept


def store_callback(
    team: Team, body: bytes, headers: Mapping[str, str], request_id: str = ""
) -> Delivery:
    """Write the verified body to the ledger, unparsed (W6). Raises on a database failure."""
    return Delivery.objects.create(
        team=team,
        source=Source.CALLBACK,
        request_id=request_id[:200],
        signature_verified=True,
        raw_body=body,
        headers=ledger_headers(headers),
        outcome=Outcome.RECEIVED,
    )


def process_delivery(delivery: Delivery) -> str:
    """Parse, match and apply a stored callback; return (and record) its outcome.

    Input problems become outcomes, never exceptions: ``INVALID`` (not JSON, not a callback
    envelope, or values the database refuses), ``IGNORED`` (an event we do not know),
    ``UNMATCHED`` (no such run in this team yet). Other database errors propagate: the row
    stays as it was and the reconcile sweep tries again.
    """
    try:
        with transaction.atomic():
            return _process(delivery)
    except DataError:
        # Valid JSON the database cannot hold (PostgreSQL refuses NUL characters in text
        # and JSON): a problem with this body, which no retry would fix.
        logger.warning("Callback %s holds values the database refuses", delivery.uuid)
        return _finish(delivery, Outcome.INVALID, "The body holds values the database refuses.")


def _process(delivery: Delivery) -> str:
    data = _json_object(bytes(delivery.raw_body))
    if data is None:
        return _finish(delivery, Outcome.INVALID, "The body is not a JSON object.")
    try:
        envelope = CallbackEnvelope.model_validate(data)
    except ValidationError as error:
        reasons = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}"
            for e in error.errors(include_url=False, include_input=False)
        )
        return _finish(delivery, Outcome.INVALID, f"Not a callback envelope ({reasons})."[:1000])
    was_unmatched = delivery.outcome == Outcome.UNMATCHED
    # What the envelope says is written with the outcome, in one UPDATE of the row at the
    # end of this transaction (every path below ends in ``_finish``).
    delivery.event = envelope.event[:100]
    delivery.reported_status = (envelope.status or "")[:30]
    delivery.runflow_run_id = str(envelope.batch_id or envelope.run_id or "")
    if envelope.is_batch:
        return _apply_batch(delivery, envelope)
    if envelope.event not in RUN_EVENTS:
        return _finish(
            delivery, Outcome.IGNORED, f"Unknown event {envelope.event[:100]!r}.", parsed=True
        )
    run = match_run(delivery.team_id, envelope.run_id, envelope.metadata)
    if run is None:
        return _finish(
            delivery, Outcome.UNMATCHED, "No run of this team has this id (yet).", parsed=True
        )
    outcome = apply_report(run, Report.from_callback(envelope), source=Source.CALLBACK)
    note = ""
    if was_unmatched:
        waited = (timezone.now() - delivery.received_at).total_seconds()
        note = f"Matched {waited:.0f} s after it arrived (it came before its run)."
    delivery.run = run
    return _finish(delivery, outcome, note, parsed=True)


def match_run(
    team_id: int, runflow_id: uuid.UUID | None, metadata: Mapping[str, Any] | None
) -> Run | None:
    """The team's run a callback is about, by Runflow's id or by our UUID in the metadata."""
    runs = Run.objects.filter(team_id=team_id)
    if runflow_id is not None:
        run = runs.filter(runflow_id=runflow_id).first()
        if run is not None:
            return run
    ours = _uuid((metadata or {}).get("run"))
    if ours is None:
        return None
    run = runs.filter(uuid=ours).first()
    if run is not None and runflow_id and run.runflow_id and run.runflow_id != runflow_id:
        # Our run is already linked to another upstream run: this body names a run we did
        # not create for it, so it must not move our run (W10).
        logger.warning("Callback names run %s but carries another upstream id", ours)
        return None
    return run


def rematch(*, now: Any = None, limit: int = 500) -> dict[str, int]:
    """Process again the callbacks that could not be applied yet (reconcile, W11, D4)."""
    now = now or timezone.now()
    pending = (
        Delivery.objects.filter(source=Source.CALLBACK, received_at__gte=now - REMATCH_WINDOW)
        .filter(
            Q(outcome=Outcome.UNMATCHED)
            | Q(outcome=Outcome.RECEIVED, received_at__lte=now - STALE_RECEIVED)
        )
        .order_by("received_at")[:limit]
    )
    counts: dict[str, int] = {}
    for delivery in pending:
        try:
            outcome = process_delivery(delivery)
        except Exception:
            logger.exception("Re-matching delivery %s failed; will try again", delivery.uuid)
            continue
        counts[outcome] = counts.get(outcome, 0) + 1
    return counts


# ---- batches ----


def _apply_batch(delivery: Delivery, envelope: CallbackEnvelope) -> str:
    """A batch ended: apply what each item says to its run, and poll the ones it left out."""
    chunk = (
        BatchChunk.objects.select_related("batch")
        .filter(batch__team_id=delivery.team_id, runflow_batch_id=str(envelope.batch_id))
        .first()
    )
    if chunk is None:
        return _finish(delivery, Outcome.UNMATCHED, "No batch of this team has this id (yet).")
    items = envelope.output.items if isinstance(envelope.output, BatchCallbackOutput) else []
    runs = list(Run.objects.filter(batch_chunk=chunk).order_by("batch_index", "id"))
    outcomes: list[str] = []
    touched: set[int] = set()
    for raw in items:
        try:
            item = BatchItemInfo.model_validate(raw)
        except ValidationError:
            continue
        run = _item_run(item, runs, delivery.team_id)
        if run is None:
            continue
        touched.add(run.pk)
        outcomes.append(apply_report(run, _item_report(item), source=Source.CALLBACK))
    # Items the callback did not describe are fetched by the poller, now rather than later.
    untouched = [run for run in runs if run.pk not in touched and run.status not in TERMINAL]
    if untouched:
        from runs.tasks.polling import poll_soon

        for run in untouched:
            poll_soon(run)
    note = f"{len(touched)} of {len(runs)} runs described; {len(untouched)} left to polling."
    if Outcome.APPLIED in outcomes:
        outcome = Outcome.APPLIED
    elif outcomes and all(o == Outcome.DUPLICATE for o in outcomes):
        outcome = Outcome.DUPLICATE
    elif Outcome.CONFLICT in outcomes:
        outcome = Outcome.CONFLICT
    else:
        outcome = Outcome.IGNORED
    mark_batch_progress(chunk.batch_id)
    delivery.batch_id = chunk.batch_id
    return _finish(delivery, outcome, note, parsed=True)


def _item_run(item: BatchItemInfo, runs: list[Run], team_id: int) -> Run | None:
    runflow_id = item.run_id or (item.run.id if item.run else None)
    if runflow_id is not None:
        for run in runs:
            if run.runflow_id == runflow_id:
                return run
    ours = _uuid(item.client_ref)
    if ours is not None:
        for run in runs:
            if run.uuid == ours:
                return run
    index = item.sequence_index
    if (
        index is not None
        and 0 <= index < len(runs)
        and runs[index].runflow_id in (None, runflow_id)
    ):
        return runs[index]
    return None


def _item_report(item: BatchItemInfo) -> Report:
    if item.run is not None:
        return Report.from_run_info(item.run)
    error = item.error if isinstance(item.error, Mapping) else {}
    output = item.output.model_dump(mode="json") if item.output is not None else None
    return Report(
        status=item.status_code,
        runflow_id=str(item.run_id) if item.run_id else None,
        output=output,
        cost=item.cost,
        started_at=item.started_at,
        completed_at=item.completed_at,
        failure_code=str(error.get("code") or error.get("failure_code") or ""),
        failure_message=str(error.get("message") or error.get("failure_message") or ""),
    )


def mark_batch_progress(batch_id: int | None) -> None:
    """Stamp the batch complete once every one of its runs is terminal (idempotent)."""
    if batch_id is None:
        return
    runs = Run.objects.filter(batch_id=batch_id)
    if runs.exists() and not runs.exclude(status__in=TERMINAL).exists():
        from runs.models import Batch

        Batch.objects.filter(pk=batch_id, completed_at__isnull=True).update(
            completed_at=timezone.now()
        )


def on_run_transition(run: Run) -> None:
    """``transitions.on_transition`` hook: batch progress follows its runs."""
    if run.batch_id is not None and run.status in TERMINAL:
        mark_batch_progress(run.batch_id)


# ---- helpers ----


def _finish(delivery: Delivery, outcome: str, note: str = "", *, parsed: bool = False) -> str:
    """Record the outcome; with ``parsed``, also what was read from the body (one UPDATE).

    Without it only the outcome and note are written: the body could not be read, or held
    values the database refused, so the parsed fields in memory must not be written.
    """
    changes: dict[str, Any] = {"outcome": outcome, "note": note}
    if parsed:
        changes.update(
            event=delivery.event,
            reported_status=delivery.reported_status,
            runflow_run_id=delivery.runflow_run_id,
            run_id=delivery.run_id,
            batch_id=delivery.batch_id,
        )
    Delivery.objects.filter(pk=delivery.pk).update(**changes)
    delivery.outcome, delivery.note = outcome, note
    if outcome in (Outcome.INVALID, Outcome.IGNORED, Outcome.UNMATCHED):
        logger.info(
            "Callback %s (request %s) for team %s: %s. %s",
            delivery.uuid,
            delivery.request_id or "-",
            delivery.team_id,
            outcome,
            note,
        )
    return outcome


def _json_object(body: bytes) -> dict[str, Any] | None:
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        # ValueError covers bad JSON, invalid UTF-8 and integers too long to convert.
        return None
    return data if isinstance(data, dict) else None


def _uuid(value: Any) -> uuid.UUID | None:
    if isinstance(value, uuid.UUID):
        return value
    if not isinstance(value, str) or len(value) > 64:
        return None
    try:
        return uuid.UUID(value)
    except ValueError:
        return None
