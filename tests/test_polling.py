"""poll_run, start_polling and the reconcile sweep (R5, R6, T3, W11, D4)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from django.core.cache import cache
from django.core.management import call_command
from django.tasks import default_task_backend
from django.test import Client
from django.utils import timezone

from runs.models import (
    ArchiveState,
    Delivery,
    NodeRun,
    Outcome,
    Output,
    Run,
    RunflowModel,
    RunLog,
    Source,
    Status,
    Team,
)
from runs.runflow.client import RunflowClient
from runs.tasks import polling
from runs.tasks.polling import poll_interval, poll_run, reconcile, start_polling
from runs.transitions import Report, apply_report
from runs.worker import CYCLE_KEY, ensure_reconcile_cycle
from tests.conftest import Cast
from tests.hooks_support import (
    OUR_RUN,
    RUNFLOW_ID,
    SECRET,
    add_secret,
    fixture,
    make_run,
    post_callback,
)

pytestmark = pytest.mark.django_db

DUMMY_TASKS = {"default": {"BACKEND": "django.tasks.backends.dummy.DummyBackend"}}


class FakeRunflow:
    """Runflow's run endpoints over httpx.MockTransport, with a request log."""

    def __init__(self) -> None:
        self.runs: dict[str, dict[str, Any]] = {}
        self.requests: list[str] = []
        self.fail_with: int | None = None

    def add(self, run_id: uuid.UUID, status: str, **fields: Any) -> dict[str, Any]:
        self.runs[str(run_id)] = {"id": str(run_id), "status_code": status, **fields}
        return self.runs[str(run_id)]

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(f"{request.method} {request.url.path}")
        if self.fail_with:
            return httpx.Response(self.fail_with, json={"code": "UNAVAILABLE", "message": "down"})
        path = request.url.path
        if path.endswith("/callback-redeliveries"):
            return httpx.Response(201, json={"id": "d1", "status_code": "pending"})
        if path == "/v1/runs":
            ref = request.url.params["q"].split("'")[1]
            items = [r for r in self.runs.values() if r.get("client_ref") == ref]
            return httpx.Response(200, json={"items": items, "next": None})
        run_id = path.rsplit("/", 1)[-1]
        if run_id not in self.runs:
            return httpx.Response(404, json={"code": "RUN_NOT_FOUND", "message": "no such run"})
        return httpx.Response(200, json=self.runs[run_id])


@pytest.fixture
def runflow(monkeypatch: pytest.MonkeyPatch) -> FakeRunflow:
    fake = FakeRunflow()

    def client_for_team(team: Team, *, key: Any = None) -> RunflowClient:
        return RunflowClient(
            "http://runflow.test",
            "rf_live_testkey0123456789abcdef",
            transport=httpx.MockTransport(fake.handler),
            sleep=lambda seconds: None,
            max_attempts=1,
        )

    monkeypatch.setattr("runs.connection.client_for_team", client_for_team)
    cache.clear()
    return fake


@pytest.fixture
def dummy_tasks(settings: Any) -> Iterator[Any]:
    settings.TASKS = DUMMY_TASKS
    default_task_backend.clear()  # type: ignore[attr-defined]
    cache.clear()
    yield default_task_backend
    default_task_backend.clear()  # type: ignore[attr-defined]


def enqueued(backend: Any, name: str) -> list[Any]:
    return [r for r in backend.results if r.task.name == name]


def in_flight(cast: Cast, **fields: Any) -> Run:
    values = {"runflow_id": RUNFLOW_ID, "status": Status.QUEUED, "submitted_at": timezone.now()}
    values.update(fields)
    return make_run(cast.team, **values)


def log(i: int) -> dict[str, Any]:
    return {"id": f"log{i}", "level_code": "info", "message": f"step {i}"}


# ---- one poll ----


def test_poll_applies_status_logs_and_steps_incrementally(cast: Cast, runflow: FakeRunflow) -> None:
    run = in_flight(cast)
    upstream = runflow.add(
        RUNFLOW_ID, "running", logs=[log(1)], node_runs=[{"id": "n1", "state_code": "running"}]
    )
    assert poll_run.call(run.pk) == Outcome.APPLIED
    upstream["logs"] = [log(1), log(2)]
    upstream["node_runs"] = [{"id": "n1", "state_code": "succeeded"}]
    Run.objects.filter(pk=run.pk).update(next_poll_at=None)
    assert poll_run.call(run.pk) == Outcome.DUPLICATE
    assert RunLog.objects.filter(run=run).count() == 2
    assert NodeRun.objects.get(run=run).state == "succeeded"
    upstream.update(
        status_code="succeeded",
        cost="0.04",
        output={"outputs": [{"type": "image", "url": "https://x.test/a.png"}]},
    )
    Run.objects.filter(pk=run.pk).update(next_poll_at=None)
    assert poll_run.call(run.pk) == Outcome.APPLIED
    run.refresh_from_db()
    assert run.status == Status.SUCCEEDED and run.poll_count == 3
    assert run.next_poll_at is None
    assert Output.objects.filter(run=run).count() == 1
    # The ledger keeps the polls that moved the run, not the one that only confirmed it.
    polls = Delivery.objects.filter(run=run, source=Source.POLL).order_by("id")
    assert [(d.reported_status, d.outcome) for d in polls] == [
        ("running", Outcome.APPLIED),
        ("succeeded", Outcome.APPLIED),
    ]
    assert "answered in" in polls[0].note
    assert poll_run.call(run.pk) == "finished"
    assert len(runflow.requests) == 3


def test_poll_without_upstream_id_finds_the_run_by_client_ref(
    cast: Cast, runflow: FakeRunflow
) -> None:
    run = in_flight(cast, runflow_id=None, status=Status.PENDING)
    runflow.add(RUNFLOW_ID, "running", client_ref=str(run.uuid))
    assert poll_run.call(run.pk) == Outcome.APPLIED
    run.refresh_from_db()
    assert run.runflow_id == RUNFLOW_ID and run.status == Status.RUNNING


def test_poll_that_is_not_due_makes_no_call(cast: Cast, runflow: FakeRunflow) -> None:
    run = in_flight(cast, next_poll_at=timezone.now() + timedelta(seconds=30))
    runflow.add(RUNFLOW_ID, "running")
    assert poll_run.call(run.pk) == "not due"
    assert runflow.requests == []


def test_upstream_failure_counts_against_the_breaker_and_backs_off(
    cast: Cast, runflow: FakeRunflow, dummy_tasks: Any
) -> None:
    run = in_flight(cast)
    runflow.fail_with = 503
    assert poll_run.call(run.pk) == "upstream error"
    run.refresh_from_db()
    cast.team.refresh_from_db()
    assert cast.team.breaker_failures == 1
    assert run.next_poll_at is not None
    assert run.next_poll_at - timezone.now() > timedelta(seconds=25)
    (task,) = enqueued(dummy_tasks, "poll_run")
    assert task.args == [run.pk] or task.args == (run.pk,)


def test_unknown_run_upstream_is_not_a_breaker_failure(cast: Cast, runflow: FakeRunflow) -> None:
    run = in_flight(cast)
    assert poll_run.call(run.pk) == "unknown upstream"
    cast.team.refresh_from_db()
    assert cast.team.breaker_failures == 0


def test_open_breaker_means_no_call(cast: Cast, monkeypatch: pytest.MonkeyPatch) -> None:
    from runs.connection import ConnectionUnavailable

    def refuse(team: Team, *, key: Any = None) -> RunflowClient:
        raise ConnectionUnavailable("paused", reason="breaker")

    monkeypatch.setattr("runs.connection.client_for_team", refuse)
    Team.objects.filter(pk=cast.team.pk).update(
        breaker_open_until=timezone.now() + timedelta(minutes=5)
    )
    run = in_flight(cast)
    assert poll_run.call(run.pk) == "not polled: breaker"
    run.refresh_from_db()
    assert run.next_poll_at is not None
    assert run.next_poll_at - timezone.now() > timedelta(minutes=4)


def test_team_budget_limits_upstream_calls(cast: Cast, runflow: FakeRunflow, settings: Any) -> None:
    settings.RUNFLOW_CALLS_PER_MINUTE = 2
    runs = [in_flight(cast, runflow_id=uuid.uuid4()) for _ in range(3)]
    for run in runs:
        runflow.add(run.runflow_id, "running")  # type: ignore[arg-type]
    results = [poll_run.call(run.pk) for run in runs]
    assert results[2] == "team over its upstream budget"
    assert len(runflow.requests) == 2
    # Another team has its own budget.
    other = make_run(cast.other_team, runflow_id=uuid.uuid4(), status=Status.QUEUED)
    runflow.add(other.runflow_id, "running")  # type: ignore[arg-type]
    assert poll_run.call(other.pk) == Outcome.APPLIED


def test_runs_older_than_the_give_up_age_are_left_alone(cast: Cast, runflow: FakeRunflow) -> None:
    run = in_flight(cast, created_at=timezone.now() - timedelta(days=4))
    assert poll_run.call(run.pk) == "gave up"
    assert runflow.requests == []


def test_redelivery_is_requested_upstream(cast: Cast, runflow: FakeRunflow) -> None:
    from runs.tasks.polling import request_redelivery

    run = in_flight(cast, status=Status.SUCCEEDED)
    assert request_redelivery.call(run.pk) == "requested"
    assert runflow.requests == [f"POST /v1/runs/{RUNFLOW_ID}/callback-redeliveries"]
    unsent = make_run(cast.team)
    assert request_redelivery.call(unsent.pk) == "not sent to Runflow yet"


# ---- the schedule and the chain ----


def test_cadence_starts_fast_and_backs_off(cast: Cast) -> None:
    now = timezone.now()
    run = make_run(cast.team, submitted_at=now)
    assert poll_interval(run, now) == 2.5
    assert poll_interval(run, now + timedelta(minutes=2)) == 5
    assert poll_interval(run, now + timedelta(minutes=10)) == 15
    assert poll_interval(run, now + timedelta(minutes=30)) == 60
    assert poll_interval(run, now + timedelta(hours=2)) == 300
    assert poll_interval(run, now + timedelta(hours=10)) == polling.SLOWEST


def test_start_polling_enqueues_a_deferred_poll(
    cast: Cast, dummy_tasks: Any, django_capture_on_commit_callbacks: Any
) -> None:
    run = in_flight(cast)
    with django_capture_on_commit_callbacks(execute=True):
        start_polling(run)
    (task,) = enqueued(dummy_tasks, "poll_run")
    assert list(task.args) == [run.pk]
    delay = (task.task.run_after - timezone.now()).total_seconds()
    assert 1.5 < delay <= 2.5
    run.refresh_from_db()
    assert run.next_poll_at == task.task.run_after
    # Arming the first poll also made sure the reconcile cycle exists.
    assert len(enqueued(dummy_tasks, "reconcile")) == 1


def test_in_flight_poll_schedules_the_next_and_terminal_stops(
    cast: Cast, runflow: FakeRunflow, dummy_tasks: Any
) -> None:
    run = in_flight(cast)
    upstream = runflow.add(RUNFLOW_ID, "running")
    poll_run.call(run.pk)
    assert len(enqueued(dummy_tasks, "poll_run")) == 1
    upstream["status_code"] = "failed"
    Run.objects.filter(pk=run.pk).update(next_poll_at=None)
    poll_run.call(run.pk)
    assert len(enqueued(dummy_tasks, "poll_run")) == 1  # nothing after the end
    run.refresh_from_db()
    assert run.next_poll_at is None


def test_duplicate_chains_collapse_into_one(
    cast: Cast, runflow: FakeRunflow, dummy_tasks: Any
) -> None:
    run = in_flight(cast, next_poll_at=timezone.now())
    runflow.add(RUNFLOW_ID, "running")
    # Two tasks for the same run become due together (a reconcile re-arm and the chain).
    assert poll_run.call(run.pk) == Outcome.APPLIED
    assert poll_run.call(run.pk) == "not due"
    assert len(runflow.requests) == 1
    assert len(enqueued(dummy_tasks, "poll_run")) == 1


def test_a_run_ended_by_a_callback_during_a_failed_poll_is_not_re_armed(
    cast: Cast, runflow: FakeRunflow, dummy_tasks: Any
) -> None:
    run = in_flight(cast)
    runflow.fail_with = 503
    real_handler = runflow.handler

    def callback_lands_meanwhile(request: httpx.Request) -> httpx.Response:
        Run.objects.filter(pk=run.pk).update(status=Status.SUCCEEDED, next_poll_at=None)
        return real_handler(request)

    runflow.handler = callback_lands_meanwhile  # type: ignore[method-assign]
    assert poll_run.call(run.pk) == "upstream error"
    assert enqueued(dummy_tasks, "poll_run") == []
    run.refresh_from_db()
    assert run.status == Status.SUCCEEDED and run.next_poll_at is None


def test_polls_check_the_reconcile_cycle_at_most_once_a_minute(
    cast: Cast, runflow: FakeRunflow, dummy_tasks: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each re-arm used to take the cache's write lock to learn the cycle was alive."""
    monkeypatch.setattr(polling, "_cycle_checked_at", None)
    run = in_flight(cast)
    runflow.add(RUNFLOW_ID, "running")

    def poll_again() -> None:
        cache.delete(CYCLE_KEY)  # as if the cycle had died
        Run.objects.filter(pk=run.pk).update(next_poll_at=None)
        poll_run.call(run.pk)

    poll_again()
    assert len(enqueued(dummy_tasks, "reconcile")) == 1
    poll_again()
    poll_again()
    assert len(enqueued(dummy_tasks, "reconcile")) == 1  # checked a moment ago
    assert len(enqueued(dummy_tasks, "poll_run")) == 3  # the chain itself went on
    monkeypatch.setattr(polling, "_cycle_checked_at", time.monotonic() - 61)
    poll_again()
    assert len(enqueued(dummy_tasks, "reconcile")) == 2  # a minute later: restarted


def test_upstream_budget_counts_each_call_in_its_window(settings: Any) -> None:
    settings.RUNFLOW_CALLS_PER_MINUTE = 3
    cache.clear()
    assert [polling.take_upstream_budget(7) for _ in range(4)] == [True, True, True, False]
    assert polling.take_upstream_budget(8) is True  # another team
    cache.clear()  # the window's counter expired (or a new minute began)
    assert polling.take_upstream_budget(7) is True


# ---- reconcile ----


def test_reconcile_rearms_runs_without_a_live_poll(
    cast: Cast, dummy_tasks: Any, django_capture_on_commit_callbacks: Any
) -> None:
    now = timezone.now()
    lost = in_flight(cast, next_poll_at=now - timedelta(minutes=5))
    never = in_flight(cast, runflow_id=uuid.uuid4(), next_poll_at=None)
    live = in_flight(cast, runflow_id=uuid.uuid4(), next_poll_at=now + timedelta(seconds=3))
    unsent = make_run(cast.team, status=Status.PENDING)  # submit's job, not ours
    done = make_run(cast.team, status=Status.SUCCEEDED, runflow_id=uuid.uuid4())
    with django_capture_on_commit_callbacks(execute=True):
        counts = reconcile.call()
    assert counts["rearmed"] == 2
    armed = {r.args[0] for r in enqueued(dummy_tasks, "poll_run")}
    assert armed == {lost.pk, never.pk}
    assert not {live.pk, unsent.pk, done.pk} & armed


def test_reconcile_rematches_a_callback_that_came_before_its_run_id(cast: Cast) -> None:
    # The legacy body carries no metadata, so only Runflow's id can match it.
    add_secret(cast.team, SECRET)
    run = make_run(cast.team, uuid=OUR_RUN, status=Status.QUEUED)
    response = post_callback(Client(), cast.team, fixture("run_completed_legacy"))
    assert response.json()["outcome"] == Outcome.UNMATCHED
    Run.objects.filter(pk=run.pk).update(runflow_id=RUNFLOW_ID)  # the create answer lands
    assert reconcile.call()["rematched"] == {Outcome.APPLIED: 1}
    run.refresh_from_db()
    assert run.status == Status.SUCCEEDED
    delivery = Delivery.objects.get(source=Source.CALLBACK)
    assert delivery.outcome == Outcome.APPLIED and delivery.run == run
    assert "came before its run" in delivery.note


def test_reconcile_applies_a_stored_but_unprocessed_delivery(cast: Cast) -> None:
    # The process died between storing (2xx sent) and applying: nothing is lost (D4).
    run = make_run(cast.team, runflow_id=RUNFLOW_ID, status=Status.RUNNING)
    Delivery.objects.create(
        team=cast.team,
        source=Source.CALLBACK,
        signature_verified=True,
        raw_body=fixture("run_failed"),
        received_at=timezone.now() - timedelta(minutes=2),
    )
    reconcile.call()
    run.refresh_from_db()
    assert run.status == Status.FAILED


def test_reconcile_flags_runs_stuck_past_their_models_limit(cast: Cast) -> None:
    for model_id, kind in (("acme/text-to-image", "image"), ("acme/video", "video")):
        RunflowModel.objects.create(
            api_url="http://sandbox.test", model_id=model_id, output_kind=kind
        )
    old = timezone.now() - timedelta(minutes=20)
    image = in_flight(cast, runflow_id=uuid.uuid4(), submitted_at=old, created_at=old)
    video = in_flight(
        cast, runflow_id=uuid.uuid4(), model_id="acme/video", submitted_at=old, created_at=old
    )
    assert reconcile.call()["stuck"] == 1
    image.refresh_from_db()
    video.refresh_from_db()
    assert image.stuck_since is not None and video.stuck_since is None
    # Progress clears the flag.
    apply_report(image, Report(status="running"), source=Source.POLL)
    image.refresh_from_db()
    assert image.stuck_since is None


def test_reconcile_retries_owed_output_copies(cast: Cast, dummy_tasks: Any) -> None:
    run = make_run(cast.team, status=Status.SUCCEEDED)
    Output.objects.create(
        run=run,
        index=0,
        source_url="https://x.test/a.png",
        archive_state=ArchiveState.FAILED,
        created_at=timezone.now() - timedelta(minutes=5),
    )
    assert reconcile.call()["archives"] == 1
    assert [r.args[0] for r in enqueued(dummy_tasks, "archive_outputs")] == [run.pk]


def test_reconcile_cycle_has_one_live_chain(dummy_tasks: Any) -> None:
    assert ensure_reconcile_cycle() is True
    assert ensure_reconcile_cycle() is False
    (first,) = enqueued(dummy_tasks, "reconcile")
    chain = first.kwargs["chain"]
    assert cache.get(CYCLE_KEY) == chain
    reconcile.call(chain=chain)  # the chain's sweep continues it
    assert len(enqueued(dummy_tasks, "reconcile")) == 2
    assert reconcile.call(chain="an-old-chain") == {"superseded": True}
    assert len(enqueued(dummy_tasks, "reconcile")) == 2


def test_reconcile_command(cast: Cast, capsys: pytest.CaptureFixture[str]) -> None:
    in_flight(cast, next_poll_at=None)
    call_command("reconcile")
    out = capsys.readouterr().out
    assert out.startswith("Reconciled:") and "rearmed 1" in out
    assert json.dumps(out)  # printable
