"""The one transition: forward-only, terminal absorbing, duplicates and conflicts recorded."""

from __future__ import annotations

from decimal import Decimal

import pytest

from runs.models import Delivery, NodeRun, Outcome, Output, Run, RunLog, Source, Status
from runs.transitions import Report, apply_report, record_delivery
from tests.conftest import Cast

pytestmark = pytest.mark.django_db

RUNFLOW_ID = "0190f3c2-7a1b-7c3d-9e4f-0123456789ab"
IMAGE = {"outputs": [{"type": "image", "url": "https://cdn.example/a.png", "width": 64}]}


@pytest.fixture
def run(cast: Cast) -> Run:
    return Run.objects.create(
        team=cast.team,
        created_by=cast.member,
        api_url="http://sandbox",
        model_id="m/x",
        input={"prompt": "A Red Fox"},
    )


def apply(run: Run, status: str, **fields: object) -> str:
    return apply_report(run, Report(status=status, **fields), source=Source.POLL)  # type: ignore[arg-type]


def test_status_moves_forward_and_stamps_times(run: Run) -> None:
    assert apply(run, "queued", runflow_id=RUNFLOW_ID) == Outcome.APPLIED
    assert apply(run, "running") == Outcome.APPLIED
    run.refresh_from_db()
    assert run.status == Status.RUNNING
    assert str(run.runflow_id) == RUNFLOW_ID
    assert run.queued_at is not None and run.running_at is not None
    assert run.dispatching_at is None  # skipped, not invented


def test_earlier_status_is_late_and_not_applied(run: Run) -> None:
    apply(run, "running")
    assert apply(run, "queued") == Outcome.LATE
    run.refresh_from_db()
    assert run.status == Status.RUNNING


def test_terminal_is_absorbing_and_a_different_terminal_is_an_anomaly(run: Run) -> None:
    assert apply(run, "succeeded", output=IMAGE, cost=Decimal("0.04")) == Outcome.APPLIED
    assert apply(run, "succeeded", output=IMAGE) == Outcome.DUPLICATE
    assert apply(run, "failed", failure_code="X") == Outcome.CONFLICT
    run.refresh_from_db()
    assert run.status == Status.SUCCEEDED
    assert run.has_anomaly
    assert run.failure_code == ""
    assert run.cost == Decimal("0.04")


def test_cancelled_spelling_is_canceled(run: Run) -> None:
    assert apply(run, "cancelled") == Outcome.APPLIED
    run.refresh_from_db()
    assert run.status == Status.CANCELED


def test_unknown_status_is_ignored_and_run_stays_in_flight(run: Run) -> None:
    assert apply(run, "teleporting") == Outcome.IGNORED
    run.refresh_from_db()
    assert run.status == Status.PENDING


def test_outputs_are_created_once_even_when_success_is_reported_twice(run: Run) -> None:
    apply(run, "succeeded", output=IMAGE)
    apply(run, "succeeded", output=IMAGE)
    outputs = list(Output.objects.filter(run=run))
    assert len(outputs) == 1
    assert outputs[0].kind == "image" and outputs[0].width == 64


def test_failed_details_from_a_later_poll_fill_blanks_only(run: Run) -> None:
    apply(run, "failed")
    apply(run, "failed", failure_code="NSFW", failure_message="Blocked by the safety filter.")
    apply(run, "failed", failure_code="OTHER", failure_message="Something else.")
    run.refresh_from_db()
    assert (run.failure_code, run.failure_message) == ("NSFW", "Blocked by the safety filter.")


def test_logs_and_steps_merge_without_duplicates(run: Run) -> None:
    logs = (
        {
            "id": "l1",
            "level_code": "INFO",
            "message": "queued",
            "timestamp": "2026-05-06T10:00:00+00:00",
        },
    )
    nodes = ({"id": "n1", "node_id": "segment", "state_code": "running"},)
    apply(run, "running", logs=logs, node_runs=nodes)
    more = (*logs, {"id": "l2", "level_code": "warning", "message": "slow"})
    apply(
        run,
        "running",
        logs=more,
        node_runs=({"id": "n1", "node_id": "segment", "state_code": "succeeded"},),
    )
    assert sorted(RunLog.objects.filter(run=run).values_list("runflow_id", "level")) == [
        ("l1", "info"),
        ("l2", "warning"),
    ]
    assert NodeRun.objects.get(run=run).state == "succeeded"


def test_rejected_report_keeps_field_errors(run: Run) -> None:
    report = Report.rejected("VALIDATION", "Runflow refused the input.", {"prompt": ["Too long."]})
    assert apply_report(run, report, source=Source.SUBMIT) == Outcome.APPLIED
    run.refresh_from_db()
    assert run.status == Status.FAILED
    assert run.failure_stage_code == "submission"
    assert run.field_errors == {"prompt": ["Too long."]}


def test_delivery_records_the_outcome(run: Run) -> None:
    report = Report(status="queued")
    delivery = record_delivery(run, team_id=run.team_id, source=Source.POLL, report=report)
    apply_report(run, report, source=Source.POLL, delivery=delivery)
    apply_report(
        run,
        report,
        source=Source.POLL,
        delivery=record_delivery(run, team_id=run.team_id, source=Source.POLL, report=report),
    )
    assert list(Delivery.objects.order_by("id").values_list("outcome", flat=True)) == [
        Outcome.APPLIED,
        Outcome.DUPLICATE,
    ]


def test_bad_upstream_id_does_not_break_the_report(run: Run) -> None:
    assert apply(run, "queued", runflow_id="not-a-uuid") == Outcome.APPLIED
    run.refresh_from_db()
    assert run.runflow_id is None and run.status == Status.QUEUED
