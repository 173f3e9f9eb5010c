"""Launching runs and batches: save first, then let the worker send (DESIGN.md, steps 1 and 2).

Every launch path (the form, "Run again", "Edit and run", a batch, "retry failed items")
ends here. The ``Run`` rows are written before anything leaves the site, with the exact
input, who launched it and from which run; the worker's ``submit_run`` (or
``submit_batch_chunk``) is enqueued only once that transaction has committed, so a worker
never looks for a row that is not there yet and nothing typed is ever lost (W11, R1).

The run's UUID doubles as the one-time launch token of the form: a second POST of the same
form finds the run it already made instead of making another.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone

from runs.models import (
    TERMINAL,
    Batch,
    BatchChunk,
    Membership,
    Run,
    RunflowKey,
    RunflowModel,
    Status,
    Team,
    record,
)
from runs.models.runs import build_search_text
from runs.policy import Decision, check_launch
from runs.pricing import estimate_cost

logger = logging.getLogger(__name__)

# Runflow takes at most 100 inputs per POST /v1/models/<id>/batches (RUNFLOW_API.md).
CHUNK_SIZE = 100
# The most runs one form may launch: a grid of two long lists grows fast.
MAX_BATCH_ITEMS = 1_000


class LaunchError(Exception):
    """A launch that cannot be saved; ``message`` says why in a sentence."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# ---- the team's endpoint and catalog ----


def team_api_url(team: Team, key: RunflowKey | None = None) -> str:
    """The Runflow endpoint a launch of this team goes to: its key's, else the default."""
    key = key or team.default_key()
    return (key.api_url if key else settings.RUNFLOW_API_URL).rstrip("/")


def catalog_model(team: Team, model_id: str) -> RunflowModel | None:
    return RunflowModel.objects.filter(api_url=team_api_url(team), model_id=model_id).first()


def unavailable_message(model: RunflowModel | None) -> str | None:
    """Why the catalog says ``model`` cannot be launched (retired, disabled), or None.

    A model the catalog does not list at all is not "unavailable": it may be launched by
    id, and Runflow has the last word.
    """
    if model is None or model.is_available:
        return None
    return (
        "Runflow no longer offers this model: the catalog lists it as retired or "
        "unavailable, so a run would be refused. Pick another model; if Runflow offers it "
        "again, a team admin can sync the catalog."
    )


def launch_blocker(team: Team) -> str | None:
    """Why this team cannot launch right now (no key, key unreadable, breaker open)."""
    from runs.connection import launch_blocker as connection_blocker

    return connection_blocker(team)


# ---- the policy, asked before anything is saved ----


@dataclass(frozen=True)
class Estimate:
    per_run: Decimal | None
    total: Decimal | None
    count: int


def estimate(model: RunflowModel | None, inputs: Sequence[Mapping[str, Any]]) -> Estimate:
    costs = [estimate_cost(model, item) for item in inputs]
    if not costs or any(cost is None for cost in costs):
        return Estimate(None, None, len(costs))
    total = sum((cost for cost in costs if cost is not None), Decimal(0))
    return Estimate(total / len(costs), total, len(costs))


def decide(
    membership: Membership,
    model_id: str,
    model: RunflowModel | None,
    inputs: Sequence[Mapping[str, Any]],
) -> Decision:
    """``runs.policy.check_launch`` for these inputs (one run, or a whole batch).

    A model the catalog marks unavailable is refused first: every launch path (form, "Run
    again", batches, retries) comes through here, and Runflow would only answer 404.
    """
    unavailable = unavailable_message(model)
    if unavailable:
        return Decision(allowed=False, message=unavailable)
    guess = estimate(model, inputs)
    return check_launch(
        membership, model_id, estimated_cost=guess.per_run, count=max(1, guess.count)
    )


# ---- single runs ----


def existing_launch(
    membership: Membership,
    token: uuid.UUID | None,
    model_id: str,
    input: Mapping[str, Any] | None = None,
    *,
    ignore: Sequence[str] = (),
) -> Run | None:
    """The run a form with this launch token already made (a double click, a re-POST).

    With ``input``, only a run with that same input counts: a page brought back with the
    browser's Back button, edited and sent again is a new launch, not a duplicate. Names in
    ``ignore`` (files still to upload) are left out of the comparison.
    """
    if token is None:
        return None
    run = Run.objects.filter(
        uuid=token, team=membership.team, created_by=membership.user, model_id=model_id
    ).first()
    if run is None or input is None:
        return run
    same = {k: v for k, v in run.input.items() if k not in ignore} == {
        k: v for k, v in input.items() if k not in ignore
    }
    return run if same else None


def launch_run(
    membership: Membership,
    model_id: str,
    input: Mapping[str, Any],
    *,
    key: RunflowKey | None = None,
    parent: Run | None = None,
    run_uuid: uuid.UUID | None = None,
) -> Run:
    """Save a pending run with exactly ``input``, then enqueue ``submit_run`` on commit.

    ``run_uuid`` is the form's launch token: if a run with it already exists for the same
    person and model (two POSTs racing), that run is returned and nothing new is sent.
    """
    if not membership.can_launch:
        raise LaunchError("Viewers cannot launch runs.")
    team = membership.team
    key = key or team.default_key()
    run = Run(
        uuid=run_uuid or uuid.uuid4(),
        team=team,
        created_by=membership.user,
        key=key,
        api_url=team_api_url(team, key),
        model_id=model_id,
        input=dict(input),
        parent=parent,
    )
    try:
        with transaction.atomic():
            run.save()
            record(
                "run.launched",
                team=team,
                actor=membership.user,
                target=run.uuid,
                model=model_id,
                parent=str(parent.uuid) if parent else None,
            )
            transaction.on_commit(lambda: enqueue_submit(run.pk))
    except IntegrityError:
        existing = existing_launch(membership, run_uuid, model_id)
        if existing is None:
            raise LaunchError("This launch form was already used; open it again.") from None
        return existing
    return run


def rerun(membership: Membership, parent: Run, input: Mapping[str, Any] | None = None) -> Run:
    """ "Run again" (same input) or "Edit and run" (``input``), linked to ``parent``."""
    return launch_run(
        membership,
        parent.model_id,
        parent.input if input is None else input,
        parent=parent,
    )


def enqueue_submit(run_pk: int) -> None:
    from runs.tasks.submit import submit_run

    submit_run.enqueue(run_pk)


# ---- batches ----


def uses_batch_endpoint(model: RunflowModel | None) -> bool:
    """Only models Runflow marks batch-capable take POST …/batches (others answer 422).

    Runflow's catalog does not always say; a model that does not claim it gets its items
    sent as ordinary runs, which every model accepts, with the same one-upstream-run rule.
    """
    return bool(model is not None and model.supports_batch)


def launch_batch(
    membership: Membership,
    model_id: str,
    inputs: Sequence[Mapping[str, Any]],
    *,
    model: RunflowModel | None = None,
    source: str = "",
    label: str = "",
    batch_uuid: uuid.UUID | None = None,
) -> Batch:
    """Save a batch and one pending run per input, then send them in chunks of 100."""
    if not membership.can_launch:
        raise LaunchError("Viewers cannot launch runs.")
    if not inputs:
        raise LaunchError("A batch needs at least one item.")
    if len(inputs) > MAX_BATCH_ITEMS:
        raise LaunchError(f"A batch holds at most {MAX_BATCH_ITEMS:,} items.")
    team = membership.team
    key = team.default_key()
    batch = Batch(
        uuid=batch_uuid or uuid.uuid4(),
        team=team,
        created_by=membership.user,
        key=key,
        api_url=team_api_url(team, key),
        model_id=model_id,
        label=label[:200],
        source=source[:20],
    )
    try:
        with transaction.atomic():
            batch.save()
            _add_items(batch, membership, list(enumerate(inputs)), uses_batch_endpoint(model))
    except IntegrityError:
        existing = (
            Batch.objects.filter(uuid=batch_uuid, team=team, created_by=membership.user).first()
            if batch_uuid is not None
            else None
        )
        if existing is None:
            raise LaunchError("This batch form was already used; open it again.") from None
        return existing
    return batch


def retry_failed(membership: Membership, batch: Batch, model: RunflowModel | None) -> int:
    """Launch again every item whose latest run failed; return how many.

    The new run takes the failed item's place (same ``batch_index``, ``parent`` = the failed
    run), so the batch's counts and contact sheet show each item's latest attempt.
    """
    if not membership.can_launch:
        raise LaunchError("Viewers cannot launch runs.")
    failed = [run for run in latest_runs(batch) if run.status == Status.FAILED]
    if not failed:
        return 0
    with transaction.atomic():
        _add_items(
            batch,
            membership,
            [(run.batch_index or 0, run.input) for run in failed],
            uses_batch_endpoint(model),
            parents={run.batch_index or 0: run for run in failed},
        )
        Batch.objects.filter(pk=batch.pk).update(completed_at=None)
    return len(failed)


def _add_items(
    batch: Batch,
    membership: Membership,
    items: list[tuple[int, Mapping[str, Any]]],
    chunked: bool,
    parents: Mapping[int, Run] | None = None,
) -> None:
    """Runs for ``items`` (index, input) in ``batch``; chunks if sent through the batch API."""
    chunks: list[BatchChunk] = []
    if chunked:
        last = batch.chunks.aggregate(last=Max("index"))["last"]
        first = 0 if last is None else last + 1
        chunks = [
            BatchChunk.objects.create(batch=batch, index=first + number)
            for number in range((len(items) + CHUNK_SIZE - 1) // CHUNK_SIZE)
        ]
    runs = []
    for position, (index, input) in enumerate(items):
        run = Run(
            team=batch.team,
            created_by=membership.user,
            key=batch.key,
            api_url=batch.api_url,
            model_id=batch.model_id,
            input=dict(input),
            parent=(parents or {}).get(index),
            batch=batch,
            batch_index=index,
            batch_chunk=chunks[position // CHUNK_SIZE] if chunks else None,
        )
        run.search_text = build_search_text(run.input)  # bulk_create skips Run.save()
        runs.append(run)
    Run.objects.bulk_create(runs)
    record(
        "batch.launched",
        team=batch.team,
        actor=membership.user,
        target=batch.label or batch.uuid,
        batch=str(batch.uuid),
        model=batch.model_id,
        runs=len(runs),
    )
    if chunks:
        chunk_ids = [chunk.pk for chunk in chunks]
        transaction.on_commit(lambda: _enqueue_chunks(chunk_ids))
    else:
        uuids = [run.uuid for run in runs]
        transaction.on_commit(lambda: _enqueue_runs(uuids))


def _enqueue_chunks(chunk_ids: list[int]) -> None:
    from runs.tasks.submit import submit_batch_chunk

    for chunk_id in chunk_ids:
        submit_batch_chunk.enqueue(chunk_id)


def _enqueue_runs(uuids: list[uuid.UUID]) -> None:
    for pk in (
        Run.objects.filter(uuid__in=uuids).order_by("batch_index").values_list("pk", flat=True)
    ):
        enqueue_submit(pk)


# ---- batch progress ----


def latest_runs(batch: Batch) -> list[Run]:
    """Each item's latest attempt, in item order (a retried item has several runs)."""
    latest: dict[int, Run] = {}
    runs = batch.runs.filter(deleted_at__isnull=True).order_by("batch_index", "id")
    for run in runs.prefetch_related("outputs"):
        latest[run.batch_index or 0] = run
    return [latest[index] for index in sorted(latest)]


@dataclass(frozen=True)
class Progress:
    total: int
    pending: int
    queued: int
    running: int
    succeeded: int
    partial: int  # partly succeeded: some outputs, some errors
    failed: int
    canceled: int

    @property
    def done(self) -> int:
        return self.succeeded + self.partial + self.failed + self.canceled

    @property
    def is_finished(self) -> bool:
        return self.total > 0 and self.done == self.total

    @property
    def percent(self) -> int:
        return round(100 * self.done / self.total) if self.total else 0


def progress(runs: Sequence[Run]) -> Progress:
    statuses = [run.status for run in runs]
    return Progress(
        total=len(statuses),
        pending=statuses.count(Status.PENDING),
        queued=statuses.count(Status.QUEUED),
        running=statuses.count(Status.RUNNING) + statuses.count(Status.DISPATCHING),
        succeeded=statuses.count(Status.SUCCEEDED),
        partial=statuses.count(Status.PARTIAL_SUCCEEDED),
        failed=statuses.count(Status.FAILED),
        canceled=statuses.count(Status.CANCELED),
    )


def mark_finished(batch: Batch, runs: Sequence[Run]) -> None:
    """Stamp ``completed_at`` once every item's latest run is terminal (idempotent)."""
    if runs and all(run.status in TERMINAL for run in runs) and batch.completed_at is None:
        finished = max((run.completed_at for run in runs if run.completed_at), default=None)
        Batch.objects.filter(pk=batch.pk, completed_at__isnull=True).update(
            completed_at=finished or timezone.now()
        )
