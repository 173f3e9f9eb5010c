"""Sending saved runs to Runflow: ``submit_run`` and ``submit_batch_chunk`` (R1, R3).

One launch never makes two upstream runs:
- the run's UUID is its ``client_ref`` and its ``Idempotency-Key``, so a repeated POST is
  answered with the first run by Runflow itself;
- an attempt is claimed with a compare-and-set on ``submit_attempts``, so two workers
  handed the same run do not both send it;
- whenever an earlier attempt may have reached Runflow (a lost answer, a crash, any
  attempt after the first), the run is looked up by ``client_ref`` *before* any POST.

A 4xx is final and is applied as a failed run through ``apply_report`` with Runflow's own
words (422 field errors are kept for "edit and relaunch"); 429, 5xx and connection errors
are tried again later with a growing delay, a bounded number of times. On a backend that
cannot defer (the ImmediateBackend used by tests) the retries happen in-process after a
short sleep, so the same code path is exercised.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

from django.db.models import F, Q
from django.tasks import task
from django.utils import timezone

from runs.connection import ConnectionUnavailable
from runs.models import Batch, BatchChunk, Run, Source, Status
from runs.policy import out_of_credit
from runs.runflow.client import RunflowClient
from runs.runflow.errors import (
    Conflict,
    OutcomeUnknown,
    OutOfCredit,
    RateLimited,
    RunflowError,
    ValidationFailed,
)
from runs.transitions import Report, apply_report, record_delivery

logger = logging.getLogger(__name__)

# Seconds before each retry; the length bounds the attempts (R3). A 429's Retry-After wins
# when it asks for longer.
RETRY_DELAYS: tuple[float, ...] = (2, 5, 15, 30, 60, 120, 300)
MAX_ATTEMPTS = len(RETRY_DELAYS) + 1
# Without a deferring backend, retries run in-process: wait only this long between them.
INLINE_MAX_WAIT = 0.25
# Replaceable in tests; the worker really sleeps.
sleep: Callable[[float], None] = time.sleep

DONE, RETRY = "done", "retry"


class _Retry(Exception):
    def __init__(
        self, message: str, delay: float | None = None, error: RunflowError | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.delay = delay
        self.error = error


def open_client(run_or_batch: Run | Batch) -> RunflowClient:
    """The team's client for this run's key; ``ConnectionUnavailable`` if there is none.

    The one seam tests replace to give the task a client over ``httpx.MockTransport``.
    """
    from runs.connection import client_for_team

    return client_for_team(run_or_batch.team, key=run_or_batch.key)


def _health(team: Any, error: RunflowError | None) -> None:
    """Tell the team's circuit breaker how the call went (R4): an answer about one run (a
    422, a 402) is a healthy Runflow; 5xx, 429 and lost answers count against it."""
    from runs.connection import (
        counts_against_breaker,
        record_upstream_failure,
        record_upstream_success,
    )

    if error is not None and counts_against_breaker(error):
        record_upstream_failure(team, error.message)
    else:
        record_upstream_success(team)


# ---- single runs ----


@task()
def submit_run(run_id: int) -> str:
    """Send one pending run; idempotent (a run already accepted is left alone)."""
    return _with_retries(submit_run, run_id, _attempt_run)


def _attempt_run(run_id: int) -> tuple[str, float]:
    run = Run.objects.select_related("team", "key").filter(pk=run_id).first()
    if run is None or run.status != Status.PENDING or run.runflow_id is not None:
        return DONE, 0
    attempt = run.submit_attempts + 1
    if not claim_attempt(run):
        return DONE, 0  # another worker holds this attempt
    try:
        info, found = _send_run(run, attempt)
    except _Retry as retry:
        if attempt >= MAX_ATTEMPTS:
            _reject(run, "SUBMIT_GAVE_UP", _gave_up(retry.message, attempt))
            return DONE, 0
        logger.info("Run %s: attempt %s not accepted (%s); will retry", run.uuid, attempt, retry)
        delay = _delay(attempt, retry.delay)
        _extend_lease(run, timedelta(seconds=delay) + ENQUEUE_GRACE)
        return RETRY, delay
    except RunflowError as error:
        _reject_error(run, error)
        return DONE, 0
    _accept(run, info, found=found)
    return DONE, 0


def claim_attempt(run: Run) -> bool:
    """Take the run's next attempt by compare-and-set, with a lease for its length.

    ``False`` when another worker took it first. The lease lets the reconcile sweep tell a
    worker still sending from one that died after the claim (``resubmit_stranded``).
    """
    return bool(
        Run.objects.filter(
            pk=run.pk, status=Status.PENDING, submit_attempts=run.submit_attempts
        ).update(
            submit_attempts=F("submit_attempts") + 1,
            submit_due_at=timezone.now() + ATTEMPT_LEASE,
        )
    )


def _extend_lease(run: Run, length: timedelta) -> None:
    Run.objects.filter(pk=run.pk, status=Status.PENDING).update(
        submit_due_at=timezone.now() + length
    )


def _send_run(run: Run, attempt: int) -> tuple[Any, bool]:
    """The create answer, or the run an earlier attempt made (``True``: found, not created)."""
    result: tuple[Any, bool] = _call_runflow(run, lambda client: _create_run(client, run, attempt))
    return result


def _call_runflow(owner: Run | Batch, send: Callable[[RunflowClient], Any]) -> Any:
    """``send`` with the owner's client, telling the team's circuit breaker how it went.

    No usable connection (no key, breaker open) is a retry later, never a failed run.
    """
    try:
        client = open_client(owner)
    except ConnectionUnavailable as exc:
        raise _Retry(exc.message) from exc
    try:
        with client:
            result = send(client)
    except RunflowError as error:
        _health(owner.team, error)
        raise
    except _Retry as retry:
        if retry.error is not None:
            _health(owner.team, retry.error)
        raise
    _health(owner.team, None)
    return result


def _create_run(client: RunflowClient, run: Run, attempt: int) -> tuple[Any, bool]:
    # An earlier attempt may have reached Runflow even if we never heard back: look first.
    if attempt > 1:
        found = _find(client, run)
        if found is not None:
            return found, True
    try:
        created = client.create_run(
            run.model_id,
            input=run.input,
            metadata={"run": str(run.uuid), "team": str(run.team.uuid)},
            callback_url=run.team.callback_url,
            client_ref=str(run.uuid),
            idempotency_key=str(run.uuid),
        )
    except (OutcomeUnknown, Conflict) as unknown:
        # A 409 on our own Idempotency-Key means another attempt with the same key is (or
        # was) being processed: the run exists or is about to. Look, never fail it.
        found = _find(client, run)
        if found is not None:
            return found, True
        raise _Retry(unknown.message, error=unknown) from unknown
    except RateLimited as limited:
        raise _Retry(limited.message, limited.retry_after, limited) from limited
    except RunflowError as error:
        if error.retryable:
            raise _Retry(error.message, error=error) from error
        raise
    return created, False


def _find(client: RunflowClient, run: Run) -> Any:
    """The upstream run carrying our ``client_ref``, if an earlier POST created one."""
    try:
        found = client.find_runs(client_ref=str(run.uuid))
    except RunflowError as error:
        # Not knowing is not "not there": never POST on a failed lookup.
        raise _Retry(
            f"Could not check whether Runflow has the run yet: {error.message}", error=error
        ) from error
    return found[0] if found else None


def _accept(run: Run, info: Any, *, found: bool = False) -> None:
    report = Report.from_run_info(info)
    source = Source.RECONCILE if found else Source.SUBMIT
    note = "found by client_ref after an unanswered attempt" if found else "create answer"
    delivery = record_delivery(run, team_id=run.team_id, source=source, report=report, note=note)
    Run.objects.filter(pk=run.pk, submitted_at__isnull=True).update(submitted_at=timezone.now())
    apply_report(run, report, source=source, delivery=delivery)
    start_polling([run])


def _reject_error(run: Run, error: RunflowError) -> None:
    if isinstance(error, ValidationFailed):
        _reject(run, error.code or "VALIDATION_FAILED", error.message, error.field_errors)
    elif isinstance(error, OutOfCredit):
        _reject(run, error.code or "INSUFFICIENT_CREDIT", _failure_message(error))
    else:
        _reject(run, error.code or f"HTTP_{error.status or 'ERROR'}", error.message)


def _failure_message(error: RunflowError) -> str:
    """What the run page says: a 402 in the words of our own budget refusals, with
    Runflow's detail; anything else in Runflow's words."""
    if isinstance(error, OutOfCredit):
        return out_of_credit(error.message).message
    return error.message


def _reject(
    run: Run, code: str, message: str, field_errors: dict[str, list[str]] | None = None
) -> None:
    """A final refusal: the run fails before it started, the input stays as typed."""
    report = Report.rejected(code, message, field_errors)
    delivery = record_delivery(
        run, team_id=run.team_id, source=Source.SUBMIT, report=report, note=f"refused: {code}"
    )
    apply_report(run, report, source=Source.SUBMIT, delivery=delivery)


def _gave_up(message: str, attempts: int) -> str:
    return (
        f"The run could not be sent to Runflow after {attempts} attempts: {message} "
        "Nothing was charged for it; launch it again when Runflow is reachable."
    )


# ---- batches ----


@task()
def submit_batch_chunk(chunk_id: int) -> str:
    """Send one chunk (≤ 100 runs) through POST /v1/models/<id>/batches; idempotent."""
    return _with_retries(submit_batch_chunk, chunk_id, _attempt_chunk)


def _attempt_chunk(chunk_id: int) -> tuple[str, float]:
    chunk = (
        BatchChunk.objects.select_related("batch", "batch__team", "batch__key")
        .filter(pk=chunk_id)
        .first()
    )
    if chunk is None or chunk.state not in ("pending", "retrying"):
        return DONE, 0
    runs = list(chunk.runs.order_by("batch_index", "id"))
    if not runs:
        BatchChunk.objects.filter(pk=chunk.pk).update(state="empty")
        return DONE, 0
    attempt = max(run.submit_attempts for run in runs) + 1
    # ``submitted_at`` marks when this send started, so a lease can tell a dead sender.
    claimed = BatchChunk.objects.filter(pk=chunk.pk, state=chunk.state).update(
        state="sending", submitted_at=timezone.now()
    )
    if not claimed:
        return DONE, 0
    Run.objects.filter(pk__in=[run.pk for run in runs]).update(submit_attempts=attempt)
    try:
        info = _send_chunk(chunk, runs, attempt)
    except _Retry as retry:
        if attempt >= MAX_ATTEMPTS:
            _fail_chunk(chunk, runs, "SUBMIT_GAVE_UP", _gave_up(retry.message, attempt))
            return DONE, 0
        BatchChunk.objects.filter(pk=chunk.pk).update(state="retrying", error=retry.message)
        return RETRY, _delay(attempt, retry.delay)
    except RunflowError as error:
        code = error.code or f"HTTP_{error.status or 'ERROR'}"
        errors = error.field_errors if isinstance(error, ValidationFailed) else None
        _fail_chunk(chunk, runs, code, _failure_message(error), errors)
        return DONE, 0
    _accept_chunk(chunk, runs, info)
    return DONE, 0


def _send_chunk(chunk: BatchChunk, runs: Sequence[Run], attempt: int) -> Any:
    return _call_runflow(chunk.batch, lambda client: _create_batch(client, chunk, runs, attempt))


def _create_batch(
    client: RunflowClient, chunk: BatchChunk, runs: Sequence[Run], attempt: int
) -> Any:
    batch = chunk.batch
    if attempt > 1 or chunk.runflow_batch_id:
        found = _find_chunk(client, chunk, runs)
        if found is not None:
            return found
    try:
        return client.create_batch(
            batch.model_id,
            # Each item names its run, so Runflow's items map back whatever the order.
            inputs=[{**run.input, "client_ref": str(run.uuid)} for run in runs],
            metadata={
                "batch": str(batch.uuid),
                "team": str(batch.team.uuid),
                "chunk": chunk.index,
            },
            callback_url=batch.team.callback_url,
            idempotency_key=str(chunk.idempotency_key),
        )
    except (OutcomeUnknown, Conflict) as unknown:
        found = _find_chunk(client, chunk, runs)
        if found is not None:
            return found
        raise _Retry(unknown.message, error=unknown) from unknown
    except RateLimited as limited:
        raise _Retry(limited.message, limited.retry_after, limited) from limited
    except RunflowError as error:
        if error.retryable:
            raise _Retry(error.message, error=error) from error
        raise


def _find_chunk(client: RunflowClient, chunk: BatchChunk, runs: Sequence[Run]) -> Any:
    """The batch an earlier attempt created, found through its first item's client_ref."""
    try:
        if chunk.runflow_batch_id:
            return client.get_batch(chunk.runflow_batch_id)
        found = client.find_runs(client_ref=str(runs[0].uuid))
        batch_id = next((run.batch_id for run in found if run.batch_id), None)
        return client.get_batch(batch_id) if batch_id else None
    except RunflowError as error:
        raise _Retry(
            f"Could not check whether Runflow has the batch yet: {error.message}"
        ) from error


def _accept_chunk(chunk: BatchChunk, runs: Sequence[Run], info: Any) -> None:
    BatchChunk.objects.filter(pk=chunk.pk).update(
        state="sent", runflow_batch_id=str(info.id), submitted_at=timezone.now(), error=""
    )
    by_ref = {str(run.uuid): run for run in runs}
    by_index = {position: run for position, run in enumerate(runs)}
    now = timezone.now()
    for item in info.items or []:
        run = by_ref.get(item.client_ref or "") or (
            by_index.get(item.sequence_index) if item.sequence_index is not None else None
        )
        if run is None:
            continue
        report = Report(
            status=item.status_code or Status.QUEUED,
            runflow_id=str(item.run_id) if item.run_id else None,
        )
        delivery = record_delivery(
            run, team_id=run.team_id, source=Source.SUBMIT, report=report, note="batch answer"
        )
        apply_report(run, report, source=Source.SUBMIT, delivery=delivery)
    Run.objects.filter(pk__in=[run.pk for run in runs], submitted_at__isnull=True).update(
        submitted_at=now
    )
    start_polling(runs)


def _fail_chunk(
    chunk: BatchChunk,
    runs: Sequence[Run],
    code: str,
    message: str,
    field_errors: dict[str, list[str]] | None = None,
) -> None:
    BatchChunk.objects.filter(pk=chunk.pk).update(state="failed", error=message)
    for position, run in enumerate(runs):
        _reject(run, code, message, _item_errors(field_errors, position))


def _item_errors(
    field_errors: dict[str, list[str]] | None, position: int
) -> dict[str, list[str]] | None:
    """A batch 422 names fields as ``<item>.<field>``; keep this item's, by field name."""
    if not field_errors:
        return None
    mine: dict[str, list[str]] = {}
    for name, messages in field_errors.items():
        head, _, rest = name.partition(".")
        if head.isdigit():
            if int(head) == position and rest:
                mine.setdefault(rest, []).extend(messages)
        else:
            mine.setdefault(name, []).extend(messages)
    return mine or None


# ---- shared: retries and polling ----


def _with_retries(
    this_task: Any, object_id: int, attempt: Callable[[int], tuple[str, float]]
) -> str:
    while True:
        outcome, delay = attempt(object_id)
        if outcome != RETRY:
            return outcome
        if this_task.get_backend().supports_defer:
            run_after = timezone.now() + timedelta(seconds=delay)
            this_task.using(run_after=run_after).enqueue(object_id)
            return "retry scheduled"
        sleep(min(delay, INLINE_MAX_WAIT))


def _delay(attempt: int, asked: float | None) -> float:
    planned = RETRY_DELAYS[min(attempt, len(RETRY_DELAYS)) - 1]
    return max(planned, min(asked or 0, 600))


def start_polling(runs: Sequence[Run]) -> None:
    """Hand accepted runs to the results pipeline's poller, when it is installed.

    Callbacks usually bring the result; polling is what makes a run finish when they do
    not (R5). The poller decides its own cadence; this only starts it.
    """
    try:
        from runs.tasks.polling import start_polling as arm_poll
    except ImportError:
        return
    for run in runs:
        fresh = Run.objects.filter(pk=run.pk).first()
        if fresh is not None and fresh.is_in_flight and fresh.runflow_id is not None:
            arm_poll(fresh)


# ---- stranded work (a crashed worker, a lost enqueue) ----

# How long an attempt may take: a lookup, a create and a second lookup, each with a 60 s
# deadline, plus margin. A sweep never races a worker still inside its lease.
ATTEMPT_LEASE = timedelta(minutes=4)
# How long a task just enqueued (or due to retry) may wait for a free worker before the
# sweep enqueues it again. A duplicate is harmless (attempts are claimed by compare-and-set
# and looked up by client_ref before any POST), so this can be short.
ENQUEUE_GRACE = timedelta(minutes=1)
# A chunk "sending" this long belongs to a worker that died mid-call.
SENDING_LEASE = timedelta(minutes=5)
# A batch whose chunks are still pending this long lost their tasks.
STRANDED_AFTER = timedelta(minutes=5)


def resubmit_stranded(*, now: Any = None, limit: int = 500) -> int:
    """Enqueue ``submit_run`` / ``submit_batch_chunk`` again for work nobody is doing.

    A pending run is stranded when its submit lease ran out (the worker that claimed it
    died, or its retry was never run) or, never claimed, when its first task has waited
    longer than ``ENQUEUE_GRACE``. Safe to run any time and as often as wanted: an attempt is
    claimed by compare-and-set, and every attempt after the first looks the run up by
    ``client_ref`` before a POST. Run by the reconcile sweep and at worker start.
    """
    now = now or timezone.now()
    lease_over = Q(submit_due_at__lt=now) | Q(
        submit_due_at__isnull=True, created_at__lt=now - ENQUEUE_GRACE
    )
    runs = (
        Run.objects.filter(
            lease_over,
            status=Status.PENDING,
            runflow_id__isnull=True,
            batch_chunk__isnull=True,
            # One more than the limit: the worker that died may have held the last attempt,
            # and the extra one starts with a lookup, so it never sends a second run.
            submit_attempts__lte=MAX_ATTEMPTS,
            deleted_at__isnull=True,
        )
        .order_by("created_at")
        .values_list("pk", flat=True)[:limit]
    )
    count = 0
    for run_id in runs:
        # Renew the lease as we enqueue, by compare-and-set: a second sweep (another
        # worker's, or the next cycle) then leaves the run to the task queued here.
        renewed = Run.objects.filter(lease_over, pk=run_id, status=Status.PENDING).update(
            submit_due_at=now + ENQUEUE_GRACE
        )
        if renewed:
            submit_run.enqueue(run_id)
            count += 1
    BatchChunk.objects.filter(state="sending", submitted_at__lt=now - SENDING_LEASE).update(
        state="retrying"
    )
    chunks = BatchChunk.objects.filter(
        state__in=("pending", "retrying"), batch__created_at__lt=now - STRANDED_AFTER
    ).values_list("pk", flat=True)[:limit]
    for chunk_id in chunks:
        submit_batch_chunk.enqueue(chunk_id)
        count += 1
    return count
