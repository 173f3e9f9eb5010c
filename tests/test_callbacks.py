"""runs.callbacks: stored deliveries parsed, matched inside the team and applied; batches."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from runs.callbacks import ledger_headers, match_run, process_delivery, store_callback
from runs.models import Batch, BatchChunk, Delivery, Outcome, Output, Run, Source, Status
from tests.conftest import Cast
from tests.hooks_support import (
    BATCH_ID,
    OUR_RUN,
    RUNFLOW_ID,
    SECRET,
    add_secret,
    fixture,
    make_run,
    post_callback,
)

pytestmark = pytest.mark.django_db

ITEM_RUNS = [
    uuid.UUID("0190f3d1-0000-7000-8000-000000000000"),
    uuid.UUID("0190f3d1-0000-7000-8000-000000000001"),
]


def stored(cast: Cast, body: bytes) -> Delivery:
    return store_callback(cast.team, body, {"Runflow-Request-Id": "req_1"}, "req_1")


def make_batch(cast: Cast, *, with_ids: bool = True, count: int = 2) -> tuple[Batch, list[Run]]:
    batch = Batch.objects.create(
        team=cast.team, api_url="http://sandbox.test", model_id="acme/text-to-image"
    )
    chunk = BatchChunk.objects.create(batch=batch, index=0, runflow_batch_id=str(BATCH_ID))
    runs = [
        make_run(
            cast.team,
            batch=batch,
            batch_chunk=chunk,
            batch_index=index,
            status=Status.QUEUED,
            runflow_id=ITEM_RUNS[index] if with_ids and index < len(ITEM_RUNS) else None,
        )
        for index in range(count)
    ]
    return batch, runs


def test_store_then_process_is_idempotent(cast: Cast) -> None:
    run = make_run(cast.team, uuid=OUR_RUN, runflow_id=RUNFLOW_ID, status=Status.RUNNING)
    delivery = stored(cast, fixture("run_completed"))
    assert delivery.outcome == Outcome.RECEIVED and delivery.run is None
    assert process_delivery(delivery) == Outcome.APPLIED
    assert process_delivery(delivery) == Outcome.DUPLICATE
    assert Output.objects.filter(run=run).count() == 2


def test_partial_success_keeps_the_outputs_present(cast: Cast) -> None:
    run = make_run(cast.team, runflow_id=RUNFLOW_ID, status=Status.RUNNING)
    assert process_delivery(stored(cast, fixture("run_partial_succeeded"))) == Outcome.APPLIED
    run.refresh_from_db()
    assert run.status == Status.PARTIAL_SUCCEEDED
    output = Output.objects.get(run=run)
    assert (output.kind, output.width, output.duration) == ("video", 1280, 5.0)


def test_match_prefers_runflow_id_and_stays_inside_the_team(cast: Cast) -> None:
    run = make_run(cast.team, runflow_id=RUNFLOW_ID)
    assert match_run(cast.team.pk, RUNFLOW_ID, None) == run
    assert match_run(cast.other_team.pk, RUNFLOW_ID, {"run": str(run.uuid)}) is None
    assert match_run(cast.team.pk, None, {"run": str(run.uuid)}) == run
    assert match_run(cast.team.pk, None, {"run": "not-a-uuid"}) is None
    assert match_run(cast.team.pk, None, {"run": ["a list"]}) is None


def test_ledger_headers_are_bounded() -> None:
    headers = {f"X-H{i}": "v" * 1000 for i in range(80)}
    kept = ledger_headers({"Cookie": "a=b", **headers})
    assert len(kept) == 50 and "Cookie" not in kept
    assert all(len(value) <= 500 for value in kept.values())


def test_batch_callback_updates_each_item(cast: Cast) -> None:
    batch, (first, second) = make_batch(cast)
    delivery = stored(cast, fixture("batch_succeeded"))
    assert process_delivery(delivery) == Outcome.APPLIED
    first.refresh_from_db()
    second.refresh_from_db()
    assert first.status == Status.SUCCEEDED and first.cost == Decimal("0.04")
    assert Output.objects.filter(run=first).count() == 1
    assert second.status == Status.FAILED and second.failure_code == "NSFW"
    batch.refresh_from_db()
    assert batch.completed_at is not None
    delivery.refresh_from_db()
    assert delivery.batch == batch and delivery.event == "batch.succeeded"
    assert process_delivery(delivery) == Outcome.DUPLICATE


def test_batch_items_match_by_position_when_ids_are_not_known_yet(cast: Cast) -> None:
    _, (first, second) = make_batch(cast, with_ids=False)
    process_delivery(stored(cast, fixture("batch_succeeded")))
    first.refresh_from_db()
    second.refresh_from_db()
    assert first.runflow_id == ITEM_RUNS[0] and first.status == Status.SUCCEEDED
    assert second.runflow_id == ITEM_RUNS[1] and second.status == Status.FAILED


def test_batch_runs_left_out_of_the_callback_are_polled(
    cast: Cast, settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    from django.tasks import default_task_backend

    settings.TASKS = {"default": {"BACKEND": "django.tasks.backends.dummy.DummyBackend"}}
    _, runs = make_batch(cast, count=3)
    with django_capture_on_commit_callbacks(execute=True):
        process_delivery(stored(cast, fixture("batch_succeeded")))
    polled = [r.args[0] for r in default_task_backend.results if r.task.name == "poll_run"]  # type: ignore[attr-defined]
    assert polled == [runs[2].pk]
    batch = runs[0].batch
    assert batch is not None
    batch.refresh_from_db()
    assert batch.completed_at is None  # one item is still in flight


def test_unknown_batch_is_unmatched(cast: Cast) -> None:
    assert process_delivery(stored(cast, fixture("batch_succeeded"))) == Outcome.UNMATCHED


def test_batch_completes_when_its_last_run_ends_by_poll(cast: Cast) -> None:
    from runs.transitions import Report, apply_report

    batch, runs = make_batch(cast)
    for run in runs:
        apply_report(run, Report(status="failed"), source=Source.POLL)
    # on_transition runs on commit; in this test's transaction call what it would.
    from runs.callbacks import on_run_transition

    for run in runs:
        run.refresh_from_db()
        on_run_transition(run)
    batch.refresh_from_db()
    assert batch.completed_at is not None


def test_view_answer_includes_the_delivery_id(cast: Cast) -> None:
    add_secret(cast.team, SECRET)
    make_run(cast.team, runflow_id=RUNFLOW_ID, status=Status.RUNNING)
    response = post_callback(Client(), cast.team, fixture("run_completed"))
    delivery = Delivery.objects.get()
    assert response.json() == {"delivery": str(delivery.uuid), "outcome": Outcome.APPLIED}
    assert delivery.received_at <= timezone.now()
