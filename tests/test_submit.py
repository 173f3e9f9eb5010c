"""submit_run and submit_batch_chunk against a fake Runflow: one launch, one upstream run."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from runs.launching import launch_batch, launch_run
from runs.models import BatchChunk, Delivery, Membership, Run, Source, Status
from runs.tasks import submit
from runs.tasks.submit import MAX_ATTEMPTS, submit_batch_chunk, submit_run
from tests.conftest import Cast
from tests.launch_support import LOSE_ANSWER, FakeRunflow, connect, fake_runflow, make_model

__all__ = ["fake_runflow"]

pytestmark = pytest.mark.django_db


@pytest.fixture
def member(cast: Cast) -> Membership:
    connect(cast.team)
    return Membership.objects.get(user=cast.member, team=cast.team)


def saved_run(member: Membership, **input: Any) -> Run:
    """A pending run, saved without running the on-commit enqueue (the test sends it)."""
    return launch_run(member, "acme/text-to-image", input or {"prompt": "a red fox"})


def test_a_run_is_created_once_with_our_uuid_as_client_ref_and_key(
    member: Membership, fake_runflow: FakeRunflow
) -> None:
    run = saved_run(member)
    submit_run.enqueue(run.pk)
    run.refresh_from_db()
    assert run.status == Status.QUEUED
    assert run.submitted_at is not None
    [upstream] = fake_runflow.runs
    assert str(run.runflow_id) == upstream["id"]
    assert upstream["client_ref"] == str(run.uuid)
    assert upstream["metadata"] == {"run": str(run.uuid), "team": str(member.team.uuid)}
    [create] = [r for r in fake_runflow.requests if r.method == "POST"]
    assert create.headers["idempotency-key"] == str(run.uuid)
    assert json.loads(create.content)["callback_url"] == member.team.callback_url
    delivery = Delivery.objects.get(run=run)
    assert delivery.source == Source.SUBMIT and delivery.outcome == "applied"


def test_submitting_twice_sends_nothing_the_second_time(
    member: Membership, fake_runflow: FakeRunflow
) -> None:
    run = saved_run(member)
    submit_run.enqueue(run.pk)
    submit_run.enqueue(run.pk)
    assert len(fake_runflow.runs) == 1
    assert fake_runflow.count("create run") == 1


def test_lost_create_answer_is_reconciled_by_client_ref_not_reposted(
    member: Membership, fake_runflow: FakeRunflow
) -> None:
    fake_runflow.fail("create run", LOSE_ANSWER)
    run = saved_run(member)
    submit_run.enqueue(run.pk)
    run.refresh_from_db()
    assert run.status == Status.QUEUED
    assert len(fake_runflow.runs) == 1
    assert fake_runflow.count("create run") == 1  # found by client_ref, never sent again
    assert fake_runflow.count("find runs") == 1
    assert Delivery.objects.get(run=run).source == Source.RECONCILE


def test_lost_answer_with_a_failed_lookup_retries_the_lookup_before_any_post(
    member: Membership, fake_runflow: FakeRunflow
) -> None:
    fake_runflow.fail("create run", LOSE_ANSWER)
    fake_runflow.fail("find runs", httpx.ConnectError("down"), 503, 503, 503, 503)
    run = saved_run(member)
    submit_run.enqueue(run.pk)
    run.refresh_from_db()
    assert run.status == Status.QUEUED
    assert len(fake_runflow.runs) == 1
    assert fake_runflow.count("create run") == 1


def test_a_create_that_never_arrived_is_sent_again_after_checking(
    member: Membership, fake_runflow: FakeRunflow
) -> None:
    # A read timeout with nothing created upstream: look, find nothing, send again.
    fake_runflow.fail("create run", httpx.ReadTimeout("slow"))
    run = saved_run(member)
    submit_run.enqueue(run.pk)
    run.refresh_from_db()
    assert run.status == Status.QUEUED
    assert len(fake_runflow.runs) == 1
    assert fake_runflow.count("create run") == 2
    assert run.submit_attempts == 2


@pytest.mark.parametrize("status", [429, 503])
def test_busy_runflow_is_retried_until_it_accepts(
    member: Membership, fake_runflow: FakeRunflow, status: int
) -> None:
    # The client tries 5 times per attempt; 6 failures push the run to a second attempt.
    fake_runflow.fail("create run", *[status] * 6)
    run = saved_run(member)
    submit_run.enqueue(run.pk)
    run.refresh_from_db()
    assert run.status == Status.QUEUED
    assert run.submit_attempts == 2
    assert len(fake_runflow.runs) == 1


def test_retries_are_bounded_and_the_run_fails_with_a_plain_message(
    member: Membership, fake_runflow: FakeRunflow
) -> None:
    fake_runflow.fail("create run", *[503] * 200)
    run = saved_run(member)
    submit_run.enqueue(run.pk)
    run.refresh_from_db()
    assert run.status == Status.FAILED
    assert run.submit_attempts == MAX_ATTEMPTS
    assert run.failure_code == "SUBMIT_GAVE_UP"
    assert "could not be sent to Runflow" in run.failure_message
    assert fake_runflow.runs == []


def test_422_is_final_with_field_errors_and_the_input_kept(
    member: Membership, fake_runflow: FakeRunflow
) -> None:
    fake_runflow.fail("create run", 422)
    run = saved_run(member, prompt="boring", seed=7)
    submit_run.enqueue(run.pk)
    run.refresh_from_db()
    assert run.status == Status.FAILED
    assert run.field_errors == {"prompt": ["prompt is too dull"]}
    assert run.failure_stage_code == "submission"
    assert "rejected the input" in run.failure_message
    assert run.input == {"prompt": "boring", "seed": 7}
    assert fake_runflow.count("create run") == 1  # never retried


def test_402_is_final_and_says_out_of_credit(member: Membership, fake_runflow: FakeRunflow) -> None:
    fake_runflow.fail("create run", 402)
    run = saved_run(member)
    submit_run.enqueue(run.pk)
    run.refresh_from_db()
    assert run.status == Status.FAILED
    assert run.failure_code == "INSUFFICIENT_CREDIT"
    # Said as our own budget refusals say it, with what to do next.
    assert run.failure_message.startswith("Runflow refused the launch: the organisation is out")
    assert "Top up the balance at Runflow" in run.failure_message
    assert fake_runflow.count("create run") == 1


def test_a_run_already_accepted_is_left_alone(
    member: Membership, fake_runflow: FakeRunflow
) -> None:
    run = saved_run(member)
    Run.objects.filter(pk=run.pk).update(status=Status.RUNNING)
    assert submit_run.enqueue(run.pk).return_value == "done"
    assert fake_runflow.requests == []


def test_a_team_without_a_key_fails_after_bounded_retries(
    cast: Cast, fake_runflow: FakeRunflow
) -> None:
    member = Membership.objects.get(user=cast.member, team=cast.team)
    run = launch_run(member, "acme/text-to-image", {"prompt": "x"})
    submit_run.enqueue(run.pk)
    run.refresh_from_db()
    assert run.status == Status.FAILED
    assert "not connected" in run.failure_message
    assert fake_runflow.requests == []


def test_polling_starts_once_runflow_accepted(
    member: Membership, fake_runflow: FakeRunflow, monkeypatch: pytest.MonkeyPatch
) -> None:
    armed: list[int] = []
    monkeypatch.setattr("runs.tasks.polling.start_polling", lambda run: armed.append(run.pk))
    run = saved_run(member)
    submit_run.enqueue(run.pk)
    assert armed == [run.pk]


# ---- batches ----


def test_a_batch_is_sent_in_chunks_of_100_each_with_its_own_key(
    member: Membership, fake_runflow: FakeRunflow
) -> None:
    model = make_model(supports_batch=True)
    batch = launch_batch(
        member, model.model_id, [{"prompt": f"fox {i}"} for i in range(201)], model=model
    )
    chunks = list(batch.chunks.order_by("index"))
    assert [chunk.runs.count() for chunk in chunks] == [100, 100, 1]
    for chunk in chunks:
        submit_batch_chunk.enqueue(chunk.pk)
    assert fake_runflow.count("create batch") == 3
    keys = {r.headers["idempotency-key"] for r in fake_runflow.requests if r.method == "POST"}
    assert keys == {str(chunk.idempotency_key) for chunk in chunks}
    assert len(fake_runflow.runs) == 201
    runs = list(batch.runs.order_by("batch_index"))
    assert all(run.status == Status.QUEUED and run.runflow_id for run in runs)
    # Each upstream run names our run, whatever order Runflow answers in.
    refs = {r["client_ref"]: r["id"] for r in fake_runflow.runs}
    assert all(refs[str(run.uuid)] == str(run.runflow_id) for run in runs)
    assert all(c.state == "sent" and c.runflow_batch_id for c in BatchChunk.objects.all())


def test_a_lost_batch_answer_is_found_again_and_not_reposted(
    member: Membership, fake_runflow: FakeRunflow
) -> None:
    model = make_model(supports_batch=True)
    fake_runflow.fail("create batch", LOSE_ANSWER)
    batch = launch_batch(member, model.model_id, [{"prompt": "a"}, {"prompt": "b"}], model=model)
    submit_batch_chunk.enqueue(batch.chunks.get().pk)
    assert fake_runflow.count("create batch") == 1
    assert len(fake_runflow.runs) == 2
    assert all(run.status == Status.QUEUED for run in batch.runs.all())


def test_a_batch_422_fails_its_items_with_their_own_field_errors(
    member: Membership, fake_runflow: FakeRunflow
) -> None:
    model = make_model(supports_batch=True)
    fake_runflow.fail(
        "create batch",
        httpx.Response(
            422,
            json={
                "code": "VALIDATION_ERROR",
                "message": "bad",
                "errors": [{"loc": ["body", "input", "1", "prompt"], "msg": "too short"}],
            },
        ),
    )
    batch = launch_batch(member, model.model_id, [{"prompt": "good"}, {"prompt": "x"}], model=model)
    submit_batch_chunk.enqueue(batch.chunks.get().pk)
    first, second = batch.runs.order_by("batch_index")
    assert first.status == second.status == Status.FAILED
    assert second.field_errors == {"prompt": ["too short"]}
    assert first.field_errors == {}
    assert batch.chunks.get().state == "failed"


def test_models_that_do_not_claim_batches_get_ordinary_runs(
    member: Membership, fake_runflow: FakeRunflow, django_capture_on_commit_callbacks: Any
) -> None:
    model = make_model(supports_batch=False)
    with django_capture_on_commit_callbacks(execute=True):
        batch = launch_batch(
            member, model.model_id, [{"prompt": "a"}, {"prompt": "b"}], model=model
        )
    assert not batch.chunks.exists()
    assert fake_runflow.count("create run") == 2
    assert fake_runflow.count("create batch") == 0
    assert all(run.status == Status.QUEUED for run in batch.runs.all())


def test_inline_retry_waits_are_short(
    member: Membership, fake_runflow: FakeRunflow, monkeypatch: pytest.MonkeyPatch
) -> None:
    waits: list[float] = []
    monkeypatch.setattr(submit, "sleep", waits.append)
    fake_runflow.fail("create run", *[503] * 6)
    run = saved_run(member)
    submit_run.enqueue(run.pk)
    assert waits == [submit.INLINE_MAX_WAIT]


def test_stranded_runs_and_chunks_are_sent_again_once(
    member: Membership, fake_runflow: FakeRunflow
) -> None:
    from datetime import timedelta

    from django.utils import timezone

    from runs.tasks.submit import resubmit_stranded

    run = saved_run(member)
    model = make_model(supports_batch=True)
    batch = launch_batch(member, model.model_id, [{"prompt": "a"}], model=model)
    assert resubmit_stranded() == 0  # too fresh: their own tasks are still coming
    later = timezone.now() + timedelta(minutes=10)
    Run.objects.filter(pk=run.pk).update(created_at=timezone.now() - timedelta(minutes=10))
    batch.__class__.objects.filter(pk=batch.pk).update(
        created_at=timezone.now() - timedelta(minutes=10)
    )
    assert resubmit_stranded(now=later) == 2
    assert resubmit_stranded(now=later) == 0  # sent: nothing left to do
    assert len(fake_runflow.runs) == 2
    run.refresh_from_db()
    assert run.status == Status.QUEUED


def test_a_run_whose_worker_died_after_the_claim_is_sent_once_the_lease_runs_out(
    member: Membership, fake_runflow: FakeRunflow
) -> None:
    # D4: a worker claims the attempt, then is killed before its POST.
    from datetime import timedelta

    from django.utils import timezone

    from runs.tasks.submit import ATTEMPT_LEASE, claim_attempt, resubmit_stranded

    run = saved_run(member)
    assert claim_attempt(run)
    assert not claim_attempt(run)  # the attempt is taken: a second worker backs off
    Run.objects.filter(pk=run.pk).update(created_at=timezone.now() - timedelta(minutes=10))
    assert resubmit_stranded() == 0  # within the lease the worker may still be sending
    assert fake_runflow.count("create run") == 0
    after_lease = timezone.now() + ATTEMPT_LEASE + timedelta(seconds=1)
    assert resubmit_stranded(now=after_lease) == 1
    run.refresh_from_db()
    assert run.status == Status.QUEUED and run.submit_attempts == 2
    # The second attempt looked before it posted: one upstream run.
    assert fake_runflow.count("find runs") == 1
    assert len(fake_runflow.runs) == 1


def test_the_sweep_queues_a_stranded_run_once_however_often_it_runs(
    member: Membership, settings: Any
) -> None:
    # With a real queue (nothing runs until a worker claims it), two sweeps, from two
    # workers or two cycles, must not stack up two tasks for one run.
    from datetime import timedelta

    from django.utils import timezone
    from django_tasks_db.models import DBTaskResult

    from runs.tasks.submit import resubmit_stranded

    settings.TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}
    run = saved_run(member)
    Run.objects.filter(pk=run.pk).update(created_at=timezone.now() - timedelta(minutes=2))
    queued = DBTaskResult.objects.filter(task_path__endswith="submit_run", status="READY")
    assert resubmit_stranded() == 1
    assert resubmit_stranded() == 0
    assert queued.count() == 1


def test_a_chunk_whose_sender_died_is_taken_over(
    member: Membership, fake_runflow: FakeRunflow
) -> None:
    from datetime import timedelta

    from django.utils import timezone

    from runs.tasks.submit import resubmit_stranded

    model = make_model(supports_batch=True)
    batch = launch_batch(member, model.model_id, [{"prompt": "a"}], model=model)
    chunk = batch.chunks.get()
    long_ago = timezone.now() - timedelta(minutes=30)
    BatchChunk.objects.filter(pk=chunk.pk).update(state="sending", submitted_at=long_ago)
    batch.__class__.objects.filter(pk=batch.pk).update(created_at=long_ago)
    assert resubmit_stranded() == 1
    chunk.refresh_from_db()
    assert chunk.state == "sent" and len(fake_runflow.runs) == 1


def test_a_409_on_our_own_key_is_looked_up_not_failed(
    member: Membership, fake_runflow: FakeRunflow
) -> None:
    # Another attempt with this Idempotency-Key got there first (and made the run).
    fake_runflow.fail("create run", LOSE_ANSWER, 409)
    run = saved_run(member)
    submit_run.enqueue(run.pk)  # first attempt: answer lost, lookup finds it
    run.refresh_from_db()
    assert run.status == Status.QUEUED and len(fake_runflow.runs) == 1

    other = saved_run(member, prompt="a grey fox")
    fake_runflow.fail("create run", 409)
    submit_run.enqueue(other.pk)  # 409 and nothing found yet: tried again, never failed
    other.refresh_from_db()
    assert other.status == Status.QUEUED
    assert len(fake_runflow.runs) == 2
