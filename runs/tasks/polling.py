"""Polling: every run converges whether or not its callback ever arrives (R5, R6).

``start_polling(run)`` arms a chain of ``poll_run`` tasks for a run Runflow has accepted
(``submit_run`` calls it right after applying the create answer). Each ``poll_run`` fetches
the run with its logs and steps, applies the report through the one transition function,
and, while the run is in flight, enqueues the next one with ``run_after``: every 2.5 s for
the first minute (so logs and steps are live on the run page), then backing off to 5 s,
15 s, a minute, five minutes.

There is one chain per run, kept so by ``Run.next_poll_at``: a poll first claims the run with
a compare-and-set UPDATE that only matches when the run is due, so a duplicate task (a
reconcile re-arm racing the real chain, a redelivered task) finds nothing to claim and
stops without enqueuing another. A worker that dies mid-poll leaves ``next_poll_at`` in the
past; the ``reconcile`` sweep re-arms such runs (D4).

``reconcile()`` runs at worker start and every few minutes: it re-arms in-flight runs that
have no live poll, re-matches callbacks that came before their run was known, flags runs
stuck past their model's limit, and retries output copies that are still owed.
"""

from __future__ import annotations

import logging
import random
import time
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.db.models import F, Q
from django.tasks import task
from django.utils import timezone

from runs.models import (
    IN_FLIGHT,
    TERMINAL,
    WITH_OUTPUTS,
    ArchiveState,
    Delivery,
    Outcome,
    Output,
    Run,
    RunflowModel,
    Source,
    Status,
)
from runs.transitions import Report, apply_report

logger = logging.getLogger(__name__)

# (run age below which, seconds between polls). Age counts from submission.
SCHEDULE: tuple[tuple[float, float], ...] = (
    (60, 2.5),
    (300, 5),
    (900, 15),
    (3600, 60),
    (6 * 3600, 300),
)
SLOWEST = 900.0
# A poll claims its run for this long; if the worker dies mid-call the claim lapses.
LEASE = timedelta(seconds=90)
# A run whose next poll is this late has lost its chain: reconcile re-arms it.
LOST_AFTER = timedelta(seconds=60)
# Upstream runs are not polled forever: past this age the run stays flagged as stuck.
GIVE_UP_AFTER = timedelta(days=3)
# How early a task may run relative to ``next_poll_at`` (clock skew between hosts).
SLACK = timedelta(seconds=1)

# Minutes a run may stay in flight before it is flagged as stuck, by output kind.
STUCK_MINUTES = {"image": 15, "audio": 15, "video": 45, "other": 30}


# ---- arming the chain ----


def start_polling(run: Run, *, delay: float | None = None) -> None:
    """Arm the poll chain for ``run`` (submit calls this once Runflow accepted the run).

    Safe to call any number of times: only one chain survives the claim in ``poll_run``.
    """
    now = timezone.now()
    when = now + timedelta(seconds=poll_interval(run, now) if delay is None else delay)
    updated = Run.objects.filter(pk=run.pk, status__in=IN_FLIGHT).update(next_poll_at=when)
    if updated:
        run.next_poll_at = when
        transaction.on_commit(lambda: _enqueue_poll(run.pk, when))


def poll_soon(run: Run) -> None:
    """Poll ``run`` as soon as a worker is free (a batch callback left it out, "poll now").

    Nothing is fetched in the caller's request: the admin's "poll now" button only enqueues.
    """
    start_polling(run, delay=0)


def _enqueue_poll(run_id: int, when: datetime, *, ensure_cycle: bool = True) -> None:
    if not poll_run.get_backend().supports_defer:
        # The immediate backend (tests) would poll inline, recursively; tests call
        # poll_run themselves instead.
        return
    poll_run.using(run_after=when).enqueue(run_id)
    if ensure_cycle:
        # One cache add, and it restarts the reconcile cycle if it ever died.
        from runs.worker import ensure_reconcile_cycle

        ensure_reconcile_cycle()


def poll_interval(run: Run, now: datetime) -> float:
    """Seconds until the next poll: fast while the run is young, slower as it ages."""
    started = run.submitted_at or run.created_at
    age = (now - started).total_seconds()
    for below, interval in SCHEDULE:
        if age < below:
            return interval
    return SLOWEST


# ---- one poll ----


@task
def poll_run(run_id: int) -> str:
    """Fetch one run from Runflow and apply what it says; re-arm while it is in flight."""
    now = timezone.now()
    run = Run.objects.select_related("team", "key").filter(pk=run_id).first()
    if run is None or run.status in TERMINAL:
        return "finished"
    if now - run.created_at > GIVE_UP_AFTER:
        Run.objects.filter(pk=run_id).update(next_poll_at=None)
        return "gave up"
    claimed = (
        Run.objects.filter(pk=run_id, status__in=IN_FLIGHT)
        .filter(Q(next_poll_at__isnull=True) | Q(next_poll_at__lte=now + SLACK))
        .update(next_poll_at=now + LEASE, last_polled_at=now, poll_count=F("poll_count") + 1)
    )
    if not claimed:
        return "not due"  # another poll of this run is already scheduled or running
    if not take_upstream_budget(run.team_id):
        _schedule_next(run, now, at_least=10)
        return "team over its upstream budget"
    result, retry_in = fetch_and_apply(run)
    # ``apply_report`` re-read the run; on the paths that did not reach it the status may be
    # stale, which is harmless: ``_schedule_next`` only re-arms a run still in flight.
    if run.status in IN_FLIGHT:
        _schedule_next(run, timezone.now(), at_least=retry_in)
    return result


def fetch_and_apply(run: Run) -> tuple[str, float]:
    """Ask Runflow about ``run`` (never inside a transaction) and apply the answer.

    Returns a short result and the minimum seconds before the next poll (longer after an
    error, so a failing upstream is not hammered).
    """
    from runs.connection import (
        ConnectionUnavailable,
        client_for_team,
        counts_against_breaker,
        record_upstream_failure,
        record_upstream_success,
    )
    from runs.runflow.errors import NotFound, RunflowError

    key = run.key if run.key is not None and run.key.is_active else None
    try:
        client = client_for_team(run.team, key=key)
    except ConnectionUnavailable as exc:
        logger.info("Run %s not polled: %s", run.uuid, exc.message)
        return f"not polled: {exc.reason or 'unavailable'}", _wait_for_connection(run, exc.reason)
    started = time.monotonic()
    try:
        with client:
            if run.runflow_id is not None:
                info = client.get_run(run.runflow_id)
            else:
                # The create answer was never stored (R1): find the run by our reference.
                found = client.find_runs(client_ref=str(run.uuid))
                if not found:
                    return "not created upstream (yet)", 0.0
                info = client.get_run(found[0].id)
    except NotFound:
        record_upstream_success(run.team)
        logger.warning("Run %s: Runflow does not know run %s", run.uuid, run.runflow_id)
        return "unknown upstream", 60.0
    except RunflowError as exc:
        if counts_against_breaker(exc):
            record_upstream_failure(run.team, exc.message)
        logger.info("Run %s: poll failed: %s", run.uuid, exc.message)
        return "upstream error", 30.0 if exc.retryable else 120.0
    elapsed_ms = (time.monotonic() - started) * 1000
    record_upstream_success(run.team)
    report = Report.from_run_info(info)
    outcome = apply_report(run, report, source=Source.POLL)
    _record_poll(run, report, outcome, elapsed_ms)
    return outcome, 0.0


def _wait_for_connection(run: Run, reason: str) -> float:
    """Seconds until polling this run could work again."""
    if reason == "breaker":
        until = (
            Run.objects.filter(pk=run.pk).values_list("team__breaker_open_until", flat=True).first()
        )
        if until is not None:
            return max(5.0, (until - timezone.now()).total_seconds())
        return 30.0
    return 300.0  # no usable key: an admin has to act; reconcile re-arms in the meantime


def _record_poll(run: Run, report: Report, outcome: str, elapsed_ms: float) -> None:
    # A poll that only confirms what we know is not worth a ledger row every 2.5 s; one
    # that moved the run, contradicted it or confirmed its end is.
    status = report.status or ""
    if outcome == Outcome.DUPLICATE and run.status not in TERMINAL:
        return
    Delivery.objects.create(
        team_id=run.team_id,
        run=run,
        source=Source.POLL,
        reported_status=status[:30],
        runflow_run_id=str(report.runflow_id or "")[:100],
        signature_verified=False,
        outcome=outcome,
        note=f"GET /v1/runs answered in {elapsed_ms:.0f} ms.",
    )


def _schedule_next(run: Run, now: datetime, *, at_least: float = 0.0) -> None:
    interval = max(poll_interval(run, now), at_least)
    interval *= random.uniform(0.9, 1.1)  # spread runs launched together
    when = now + timedelta(seconds=interval)
    updated = Run.objects.filter(pk=run.pk, status__in=IN_FLIGHT).update(next_poll_at=when)
    if updated:
        _enqueue_poll(run.pk, when, ensure_cycle=_cycle_check_due())


# When this process last made sure the reconcile cycle exists from a poll (monotonic seconds).
_cycle_checked_at: float | None = None
CYCLE_CHECK_EVERY = 60.0


def _cycle_check_due() -> bool:
    """True at most once a minute per process: a chain re-arming itself every 2.5 s need not
    take the cache's write lock each time to learn that the cycle is still alive."""
    global _cycle_checked_at
    now = time.monotonic()
    if _cycle_checked_at is not None and now - _cycle_checked_at < CYCLE_CHECK_EVERY:
        return False
    _cycle_checked_at = now
    return True


def take_upstream_budget(team_id: int) -> bool:
    """One upstream call of this team's per-minute budget; False when it is spent (T3).

    A fixed one-minute window in the shared cache (the database cache in production, so
    every worker process counts against the same budget). The window's counter exists for
    all but the first call of a minute, so it is incremented first and created only when
    missing (an ``add`` before every increment cost a write lock per poll).
    """
    limit = int(getattr(settings, "RUNFLOW_CALLS_PER_MINUTE", 120))
    window = int(time.time() // 60)
    key = f"runflow-calls:{team_id}:{window}"
    try:
        used = cache.incr(key)
    except ValueError:  # the first call of this window (unless another worker just made it)
        used = 1 if cache.add(key, 1, timeout=120) else _incr_or_start(key)
    return used <= limit


def _incr_or_start(key: str) -> int:
    try:
        return cache.incr(key)
    except ValueError:  # expired in between: start the window again
        cache.set(key, 1, timeout=120)
        return 1


# ---- "redeliver callback" (admins) ----


@task
def request_redelivery(run_id: int) -> str:
    """Ask Runflow to send the run's callback again (``POST …/callback-redeliveries``).

    The redelivered body arrives at the callback view like any other and lands in the
    ledger; a terminal run simply records it as a duplicate.
    """
    from runs.connection import (
        ConnectionUnavailable,
        client_for_team,
        counts_against_breaker,
        record_upstream_failure,
        record_upstream_success,
    )
    from runs.runflow.errors import RunflowError

    run = Run.objects.select_related("team", "key").filter(pk=run_id).first()
    if run is None or run.runflow_id is None:
        return "not sent to Runflow yet"
    key = run.key if run.key is not None and run.key.is_active else None
    try:
        with client_for_team(run.team, key=key) as client:
            client.redeliver_callback(run.runflow_id)
    except ConnectionUnavailable as exc:
        return exc.message
    except RunflowError as exc:
        if counts_against_breaker(exc):
            record_upstream_failure(run.team, exc.message)
        logger.info("Run %s: redelivery refused: %s", run.uuid, exc.message)
        return exc.message
    record_upstream_success(run.team)
    logger.info("Run %s: callback redelivery requested", run.uuid)
    return "requested"


# ---- the reconcile sweep ----


@task
def reconcile(chain: str = "") -> dict[str, Any]:
    """Repair what callbacks and crashes left behind; each step independent of the others.

    ``chain`` is given only by the periodic cycle (``runs.worker``), which this sweep then
    continues; a direct call sweeps once.
    """
    from runs.callbacks import rematch
    from runs.tasks.submit import resubmit_stranded
    from runs.worker import continue_cycle

    if chain and not continue_cycle(chain):  # first: an error below must not break the cycle
        return {"superseded": True}
    now = timezone.now()
    counts: dict[str, Any] = {}
    for name, step in (
        ("resubmitted", lambda: resubmit_stranded(now=now)),
        ("rearmed", lambda: rearm_polls(now)),
        ("rematched", lambda: rematch(now=now)),
        ("stuck", lambda: flag_stuck(now)),
        ("archives", lambda: rearm_archives(now)),
    ):
        try:
            counts[name] = step()
        except Exception:
            logger.exception("Reconcile step %s failed", name)
            counts[name] = "error"
    logger.info("Reconcile: %s", counts)
    return counts


def rearm_polls(now: datetime, limit: int = 1000) -> int:
    """Start a poll for every in-flight run whose chain is missing or lost."""
    lost = (
        Run.objects.filter(status__in=IN_FLIGHT, created_at__gte=now - GIVE_UP_AFTER)
        # A pending run never sent is submit's to finish; one that was sent is ours.
        .filter(
            ~Q(status=Status.PENDING) | Q(runflow_id__isnull=False) | Q(submitted_at__isnull=False)
        )
        .filter(Q(next_poll_at__isnull=True) | Q(next_poll_at__lt=now - LOST_AFTER))
        .order_by(F("next_poll_at").asc(nulls_first=True))[:limit]
    )
    count = 0
    for run in lost:
        poll_soon(run)
        count += 1
    return count


def flag_stuck(now: datetime, limit: int = 1000) -> int:
    """Mark runs in flight for longer than their model should take (not silently left)."""
    shortest = min(STUCK_MINUTES.values())
    candidates = Run.objects.filter(
        status__in=IN_FLIGHT,
        stuck_since__isnull=True,
        created_at__lt=now - timedelta(minutes=shortest),
    ).only("pk", "uuid", "api_url", "model_id", "created_at", "submitted_at")[:limit]
    kinds: dict[tuple[str, str], str] = {}
    flagged = 0
    for run in candidates:
        key = (run.api_url, run.model_id)
        if key not in kinds:
            found = RunflowModel.objects.filter(api_url=key[0], model_id=key[1]).first()
            kinds[key] = found.output_kind if found else "other"
        limit_minutes = _stuck_minutes().get(kinds[key], STUCK_MINUTES["other"])
        since = run.submitted_at or run.created_at
        if now - since < timedelta(minutes=limit_minutes):
            continue
        if Run.objects.filter(pk=run.pk, stuck_since__isnull=True, status__in=IN_FLIGHT).update(
            stuck_since=now
        ):
            logger.warning(
                "Run %s flagged stuck after %s minutes in flight", run.uuid, limit_minutes
            )
            flagged += 1
    return flagged


def _stuck_minutes() -> dict[str, int]:
    return {**STUCK_MINUTES, **getattr(settings, "RUN_STUCK_MINUTES", {})}


def rearm_archives(now: datetime, limit: int = 200) -> int:
    """Retry copying outputs still owed (pending, or failed and not yet expired)."""
    from runs.tasks.archive import archive_outputs

    run_ids = list(
        Output.objects.filter(
            archive_state__in=[ArchiveState.PENDING, ArchiveState.FAILED],
            run__status__in=WITH_OUTPUTS,
            created_at__gte=now - timedelta(days=7),
            created_at__lte=now - timedelta(seconds=30),
        )
        .values_list("run_id", flat=True)
        .distinct()[:limit]
    )
    for run_id in run_ids:
        archive_outputs.enqueue(run_id)
    return len(run_ids)
