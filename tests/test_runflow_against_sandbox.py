"""The site's RunflowClient against the live sandbox, over real HTTP (no MockTransport).

The same code path as production: real sockets, real timeouts, the sandbox's own answers,
its fault switches for the retry paths, and its ledger to count what really reached it.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest

from runs.runflow import (
    Conflict,
    NotFound,
    OutcomeUnknown,
    OutOfCredit,
    RateLimited,
    RunflowClient,
    ValidationFailed,
    verify,
)
from runs.runflow.schemas import CallbackEnvelope, RunInfo
from tests.plugins.sandbox import CallbackReceiver, Sandbox

pytestmark = pytest.mark.sandbox

IMAGE = "google/nano-banana-pro"
VIDEO = "bytedance/seedance/2.0/fast/text-to-video"
SOLUTION = "runflow/object-removal/prompt"
TERMINAL = ("succeeded", "failed", "canceled", "partial_succeeded")


@pytest.fixture
def waits() -> list[float]:
    return []


@pytest.fixture
def client(sandbox: Sandbox, waits: list[float]) -> Iterator[RunflowClient]:
    with RunflowClient(sandbox.url, sandbox.new_key(), sleep=waits.append) as instance:
        yield instance


def finished(client: RunflowClient, run_id: uuid.UUID, timeout: float = 20) -> RunInfo:
    deadline = time.monotonic() + timeout
    while True:
        run = client.get_run(run_id)
        if run.status_code in TERMINAL:
            return run
        assert time.monotonic() < deadline, f"run still {run.status_code}"
        time.sleep(0.05)


def launch(client: RunflowClient, prompt: str, **options: object) -> RunInfo:
    ref = str(uuid.uuid4())
    return client.create_run(
        IMAGE,
        input={"prompt": prompt},
        metadata={"run": ref},
        client_ref=ref,
        idempotency_key=ref,
        **options,  # type: ignore[arg-type]
    )


# ---- account and catalog ----


def test_health_me_and_balance(client: RunflowClient) -> None:
    assert client.health().is_ok
    assert client.me().memberships
    balance = client.balance().balance
    assert balance is not None and balance > 0


def test_the_whole_catalog_pages_through_and_deep_ids_resolve(client: RunflowClient) -> None:
    first = client.list_models(limit=3)
    assert len(first.items) == 3 and first.next_cursor
    models = {model.id: model for model in client.iter_models()}
    assert {IMAGE, VIDEO, SOLUTION} <= set(models)
    video = client.get_model(VIDEO)
    assert video.id == VIDEO and video.output_kind == "video"
    assert any(i.is_required for i in video.inputs)
    assert models[IMAGE].price_label and models[IMAGE].inputs


def test_an_unknown_model_is_not_found(client: RunflowClient) -> None:
    with pytest.raises(NotFound) as caught:
        client.create_run("nobody/no-such-model/v9", input={"prompt": "x"})
    assert caught.value.code == "MODEL_UNAVAILABLE"


# ---- runs ----


def test_a_run_from_create_to_outputs_logs_and_search(client: RunflowClient) -> None:
    created = launch(client, "a red fox in snow")
    assert created.status_code == "queued" and created.client_ref
    run = finished(client, created.id)
    assert run.status_code == "succeeded"
    assert run.output is not None and run.output.outputs
    image = run.output.outputs[0]
    assert image.type == "image" and image.url.startswith(client.base_url)
    assert httpx.get(image.url, timeout=10).content.startswith(b"\x89PNG")
    assert run.completed_at is not None and run.cost is not None
    logs = client.get_logs(run.id)
    assert logs and all(log.run_id == run.id for log in logs)
    [found] = client.find_runs(client_ref=created.client_ref)
    assert found.id == run.id


def test_a_multi_step_model_reports_its_node_runs(client: RunflowClient) -> None:
    ref = str(uuid.uuid4())
    created = client.create_run(
        SOLUTION,
        input={"image_url": "https://example.com/in.png", "prompt": "remove the cup"},
        client_ref=ref,
    )
    run = finished(client, created.id)
    steps = client.get_node_runs(run.id)
    assert len(steps) >= 2 and run.nodes_total == len(steps)
    assert all(step.state_code for step in steps)


@pytest.mark.parametrize(
    ("marker", "status"),
    [("[fail]", "failed"), ("[partial]", "partial_succeeded"), ("[cancel]", "canceled")],
)
def test_every_terminal_outcome_parses(client: RunflowClient, marker: str, status: str) -> None:
    run = finished(client, launch(client, f"scenario {marker}").id)
    assert run.status_code == status
    if status == "failed":
        assert run.failure_code and run.failure_message and run.output is None


def test_invalid_input_is_refused_with_per_field_errors(client: RunflowClient) -> None:
    with pytest.raises(ValidationFailed) as caught:
        client.create_run(IMAGE, input={"resolution": "8K"})
    assert caught.value.status == 422
    assert {"prompt", "resolution"} <= set(caught.value.field_errors)


def test_idempotency_key_replays_and_conflicts(client: RunflowClient) -> None:
    key = str(uuid.uuid4())
    first = client.create_run(IMAGE, input={"prompt": "once"}, client_ref=key, idempotency_key=key)
    again = client.create_run(IMAGE, input={"prompt": "once"}, client_ref=key, idempotency_key=key)
    assert again.id == first.id
    with pytest.raises(Conflict):
        client.create_run(IMAGE, input={"prompt": "other"}, client_ref=key, idempotency_key=key)


def test_another_organizations_run_is_not_found(sandbox: Sandbox, client: RunflowClient) -> None:
    run = launch(client, "mine")
    with RunflowClient(sandbox.url, sandbox.new_key()) as stranger, pytest.raises(NotFound):
        stranger.get_run(run.id)


def test_no_credit_is_out_of_credit(sandbox: Sandbox) -> None:
    broke = RunflowClient(sandbox.url, sandbox.new_key("nocredit"))
    with broke, pytest.raises(OutOfCredit) as caught:
        launch(broke, "too expensive")
    assert caught.value.status == 402


def test_feedback_and_admin_cancellation(sandbox: Sandbox, client: RunflowClient) -> None:
    done = finished(client, launch(client, "rate me").id)
    assert client.send_feedback(done.id, is_positive=False, reason="blurry").feedback_reason == (
        "blurry"
    )
    with RunflowClient(sandbox.url, sandbox.new_key(admin=True)) as admin:
        slow = launch(admin, "take your time [slow]")
        canceled = admin.cancel_run(slow.id, reason="stuck in the test")
        assert canceled.status_code == "canceled"
        assert admin.cancel_run(slow.id, reason="once more").status_code == "canceled"


# ---- callbacks and secrets ----


def test_signed_callback_history_and_redelivery(
    client: RunflowClient, callback_receiver: CallbackReceiver
) -> None:
    secret = client.create_callback_secret(label="contract test")
    assert secret.plain_secret and secret.plain_secret.startswith("whsec_")
    assert client.get_callback_secret(secret.id).plain_secret is None
    assert client.update_callback_secret(secret.id, label="renamed").label == "renamed"

    run = launch(client, "call me back", callback_url=callback_receiver.url)
    [received] = callback_receiver.wait(1)
    signature = received.headers.get("Runflow-Signature")
    assert verify(received.body, signature, ["whsec_wrong", secret.plain_secret]) == 1
    envelope = CallbackEnvelope.model_validate_json(received.body)
    assert (envelope.run_id, envelope.event, envelope.status) == (
        run.id,
        "run.completed",
        "succeeded",
    )
    history = client.callback_history(run.id)
    assert history and history[0].run_id == run.id
    again = client.redeliver_callback(run.id)
    assert again.is_automatic is False
    callback_receiver.wait(2)


# ---- batches and uploads ----


def test_a_batch_from_create_to_items(client: RunflowClient) -> None:
    inputs = [{"prompt": f"tile {n}", "client_ref": f"row-{n}"} for n in range(3)]
    batch = client.create_batch(IMAGE, inputs=inputs, idempotency_key=str(uuid.uuid4()))
    assert batch.items_total == 3
    deadline = time.monotonic() + 20
    while client.get_batch(batch.id).status_code not in TERMINAL:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    items = list(client.iter_batch_items(batch.id))
    assert sorted(item.client_ref or "" for item in items) == ["row-0", "row-1", "row-2"]
    assert all(item.run_id for item in items)


def test_an_asset_upload_in_three_steps(client: RunflowClient) -> None:
    png = b"\x89PNG\r\n\x1a\n" + bytes(64)
    asset = client.upload_asset("in.png", "image/png", png)
    assert asset.size_bytes == len(png) and asset.url
    assert httpx.get(asset.url, timeout=10).content == png


# ---- retries and lost answers, through the sandbox's fault switches ----


def creates_for(sandbox: Sandbox, key: str, ref: str) -> tuple[int, int]:
    """(create requests received, runs created) for ``ref`` in the sandbox's ledger."""
    ledger = sandbox.ledger(key)
    requests = [r for r in ledger["requests"] if r.get("method") == "POST" and "/runs" in r["path"]]
    runs = [r for r in ledger["runs"] if r["client_ref"] == ref]
    return len(requests), len(runs)


def test_503_twice_then_created_once(sandbox_faults: Sandbox, waits: list[float]) -> None:
    key = sandbox_faults.new_key()
    sandbox_faults.set_faults(create_error={"status": 503, "next": 2})
    with RunflowClient(sandbox_faults.url, key, sleep=waits.append, rng=lambda: 1.0) as client:
        run = launch(client, "third time lucky")
    assert creates_for(sandbox_faults, key, run.client_ref or "") == (3, 1)
    assert waits == [0.5, 1.0]


def test_429_retry_after_is_waited_exactly(sandbox_faults: Sandbox, waits: list[float]) -> None:
    key = sandbox_faults.new_key()
    sandbox_faults.set_faults(create_error={"status": 429, "retry_after": 2, "next": 1})
    with RunflowClient(sandbox_faults.url, key, sleep=waits.append) as client:
        launch(client, "patience")
    assert waits == [2.0]


def test_endless_429_gives_up_after_five_requests(sandbox_faults: Sandbox) -> None:
    key = sandbox_faults.new_key()
    sandbox_faults.set_faults(create_error={"status": 429})
    client = RunflowClient(sandbox_faults.url, key, sleep=lambda s: None)
    with client, pytest.raises(RateLimited):
        launch(client, "never")
    assert creates_for(sandbox_faults, key, "-")[0] == 5


def test_a_lost_create_answer_is_reconciled_not_reposted(sandbox_faults: Sandbox) -> None:
    key = sandbox_faults.new_key()
    sandbox_faults.set_faults(hang={"seconds": 1.5, "next": 1})
    short = httpx.Timeout(connect=2.0, read=0.3, write=2.0, pool=2.0)
    with RunflowClient(sandbox_faults.url, key, timeout=short) as client:
        ref = str(uuid.uuid4())
        with pytest.raises(OutcomeUnknown):
            client.create_run(IMAGE, input={"prompt": "lost"}, client_ref=ref, idempotency_key=ref)
        # What submit_run does next: look it up by client_ref, and find the one run.
        [found] = client.find_runs(client_ref=ref)
    assert found.client_ref == ref
    # The sandbox logs a request once it has answered it, i.e. after the hang.
    deadline = time.monotonic() + 10
    while creates_for(sandbox_faults, key, ref)[0] == 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert creates_for(sandbox_faults, key, ref) == (1, 1)


def test_a_500_after_the_work_was_done_is_outcome_unknown(sandbox_faults: Sandbox) -> None:
    key = sandbox_faults.new_key()
    sandbox_faults.set_faults(create_error={"status": 500, "after_create": True, "next": 1})
    with RunflowClient(sandbox_faults.url, key) as client:
        ref = str(uuid.uuid4())
        with pytest.raises(OutcomeUnknown):
            client.create_run(IMAGE, input={"prompt": "done?"}, client_ref=ref, idempotency_key=ref)
        assert len(client.find_runs(client_ref=ref)) == 1
    assert creates_for(sandbox_faults, key, ref) == (1, 1)


def test_legacy_outputs_and_unknown_fields_are_normalized(
    sandbox_faults: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    sandbox_faults.set_faults(legacy_output=True, extra_fields=True)
    client = RunflowClient(sandbox_faults.url, sandbox_faults.new_key())
    with client, caplog.at_level(logging.WARNING, logger="runs.runflow"):
        run = finished(client, launch(client, "old style").id)
    assert run.output is not None and run.output.outputs
    assert all(o.url.startswith(sandbox_faults.url) for o in run.output.outputs)
    assert "legacy output shape" in caplog.text
