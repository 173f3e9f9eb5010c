"""RunflowClient through httpx.MockTransport: every method, every retry path, every error.

Bodies come from tests/fixtures/runflow/. ``sleep`` is injected, so retries take no time and
every wait is recorded.
"""

from __future__ import annotations

import json
import logging
import re
import tomllib
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from runs.runflow import (
    AuthenticationFailed,
    Conflict,
    NotFound,
    OutcomeUnknown,
    OutOfCredit,
    PermissionDenied,
    ProtocolError,
    RateLimited,
    RunflowClient,
    RunflowError,
    Unavailable,
    ValidationFailed,
)
from runs.runflow.checks import MAX_UPLOAD_BYTES
from runs.runflow.retry import MAX_DELAY, backoff_ceiling, backoff_delay, wait_before_retry

FIXTURES = Path(__file__).parent / "fixtures" / "runflow"
BASE = "https://api.runflow.test"
KEY = "rf_live_s3cretKEYvalue9876"
RUN_ID = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"
BATCH_ID = "0190b000-1111-7222-8333-444455556666"
SECRET_ID = "5e5e5e5e-0000-4000-8000-00000000c001"
OUR_RUN = "8d2f6c1e-2b7a-4c57-9a43-0d7e3c1b9f10"

Answer = httpx.Response | Exception | Callable[[httpx.Request], httpx.Response]


def recorded(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def reply(status: int, fixture: str | None = None, **headers: str) -> httpx.Response:
    body = recorded(fixture) if fixture else None
    return httpx.Response(status, json=body, headers=headers)


class FakeRunflow:
    """Answers queued in order (the last one repeats) and the requests that were made."""

    def __init__(self, *answers: Answer) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        if callable(answer) and not isinstance(answer, httpx.Response):
            return answer(request)
        return answer

    @property
    def paths(self) -> list[str]:
        return [f"{r.method} {r.url.raw_path.decode()}" for r in self.requests]

    def body(self, index: int = -1) -> Any:
        return json.loads(self.requests[index].content)


def client_for(
    fake: FakeRunflow, waits: list[float] | None = None, **options: Any
) -> RunflowClient:
    options.setdefault("rng", lambda: 1.0)  # the top of each jitter range: deterministic
    sleep = waits.append if waits is not None else (lambda seconds: None)
    return RunflowClient(BASE, KEY, transport=httpx.MockTransport(fake), sleep=sleep, **options)


# ---- every method, with the request it sends and the answer it reads ----


def test_health_me_balance() -> None:
    fake = FakeRunflow(reply(200, "health.json"), reply(200, "me.json"), reply(200, "balance.json"))
    with client_for(fake) as client:
        assert client.health().is_ok
        assert client.me().organization_name == "Acme Studio"
        assert client.balance().balance == Decimal("12.4500")
    assert fake.paths == [
        "GET /v1/health",
        "GET /v1/auth/me?embed=memberships",
        "GET /v1/billing/balance",
    ]


def test_every_request_names_the_site_and_carries_the_key() -> None:
    fake = FakeRunflow(reply(200, "health.json"))
    with client_for(fake) as client:
        client.health()
    version = tomllib.loads(Path("pyproject.toml").read_text())["project"]["version"]
    request = fake.requests[0]
    assert request.headers["user-agent"] == f"runflow-site/{version}"
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert request.headers["accept"] == "application/json"


def test_create_run_sends_the_contract_body_and_idempotency_key() -> None:
    fake = FakeRunflow(reply(201, "run_created.json"))
    with client_for(fake) as client:
        run = client.create_run(
            "google/nano-banana-pro",
            input={"prompt": "a red fox in snow", "resolution": "1K"},
            metadata={"run": OUR_RUN},
            callback_url="https://site.example.test/hooks/runflow/t/",
            client_ref=OUR_RUN,
            idempotency_key=OUR_RUN,
        )
    assert run.id == UUID(RUN_ID) and run.status_code == "queued"
    assert fake.paths == ["POST /v1/models/google/nano-banana-pro/runs"]
    assert fake.body() == {
        "input": {"prompt": "a red fox in snow", "resolution": "1K"},
        "metadata": {"run": OUR_RUN},
        "callback_url": "https://site.example.test/hooks/runflow/t/",
        "client_ref": OUR_RUN,
    }
    assert fake.requests[0].headers["idempotency-key"] == OUR_RUN
    assert fake.requests[0].headers["content-type"] == "application/json"


def test_create_run_always_sends_an_idempotency_key() -> None:
    fake = FakeRunflow(reply(201, "run_created.json"))
    with client_for(fake) as client:
        client.create_run("google/nano-banana-pro", input={"prompt": "x"})
    assert fake.body() == {"input": {"prompt": "x"}}  # no nulls sent
    assert UUID(fake.requests[0].headers["idempotency-key"])


def test_multi_segment_model_ids_keep_their_slashes() -> None:
    fake = FakeRunflow(reply(201, "run_created.json"), reply(200, "model_seedance.json"))
    model_id = "bytedance/seedance/2.0/fast/text-to-video"
    with client_for(fake) as client:
        client.create_run(model_id, input={"prompt": "waves"})
        assert client.get_model(model_id).id == model_id
    assert fake.paths == [f"POST /v1/models/{model_id}/runs", f"GET /v1/models/{model_id}"]


@pytest.mark.parametrize(
    "model_id",
    [
        "",
        "../admin",
        "a/../b",
        "a/./b",
        "a/%2e%2e/b",
        "a b",
        "a?x=1",
        "a#b",
        "/a",
        "a//b",
        "a/",
        "é/x",
    ],
)
def test_unsafe_model_ids_are_refused_before_sending(model_id: str) -> None:
    fake = FakeRunflow(reply(201, "run_created.json"))
    with client_for(fake) as client, pytest.raises(ValidationFailed) as caught:
        client.create_run(model_id, input={})
    assert caught.value.field_errors.keys() == {"model_id"}
    assert caught.value.status is None
    assert fake.requests == []


@pytest.mark.parametrize("run_id", ["../runs", "01J0ABCDEF", "", f"{RUN_ID}/logs"])
def test_run_ids_must_be_uuids_before_they_reach_a_path(run_id: str) -> None:
    fake = FakeRunflow(reply(200, "run_succeeded.json"))
    with client_for(fake) as client, pytest.raises(ValidationFailed):
        client.get_run(run_id)
    assert fake.requests == []


def test_get_run_with_logs_and_steps() -> None:
    fake = FakeRunflow(reply(200, "run_succeeded.json"))
    with client_for(fake) as client:
        run = client.get_run(UUID(RUN_ID))
    assert fake.paths == [f"GET /v1/runs/{RUN_ID}"]
    assert len(run.logs) == 2 and len(run.node_runs) == 2
    assert run.output is not None and run.output.outputs[0].width == 1024


def test_find_runs_filters_by_client_ref_and_double_checks_it() -> None:
    fake = FakeRunflow(reply(200, "runs_search.json"))
    with client_for(fake) as client:
        runs = client.find_runs(client_ref=OUR_RUN)
    # The fixture also holds another caller's run: it must never be taken for ours.
    assert [run.client_ref for run in runs] == [OUR_RUN]
    params = fake.requests[0].url.params
    assert params["q"] == f"client_ref.EQ:'{OUR_RUN}'"
    assert params["sort_by"] == "created_at:desc"


@pytest.mark.parametrize("ref", ["it's", "a b", "x\\y", "", "r" * 256])
def test_find_runs_refuses_refs_that_would_break_the_filter(ref: str) -> None:
    fake = FakeRunflow(reply(200, "runs_search.json"))
    with client_for(fake) as client, pytest.raises(ValidationFailed):
        client.find_runs(client_ref=ref)
    assert fake.requests == []


def test_logs_follow_every_page() -> None:
    fake = FakeRunflow(reply(200, "logs_page1.json"), reply(200, "logs_page2.json"))
    with client_for(fake) as client:
        logs = client.get_logs(RUN_ID)
    assert [log.message for log in logs] == ["Dispatching to provider", "Upscaling skipped"]
    assert [r.url.params.get("pq") for r in fake.requests] == [None, "cursor-logs-2"]
    assert all(r.url.params["limit"] == "500" for r in fake.requests)


def test_node_runs() -> None:
    fake = FakeRunflow(reply(200, "node_runs.json"))
    with client_for(fake) as client:
        steps = client.get_node_runs(RUN_ID)
    assert fake.paths[0].startswith(f"GET /v1/runs/{RUN_ID}/node-runs?")
    assert [(s.node_id, s.state_code) for s in steps] == [
        ("generate", "succeeded"),
        ("upscale", "succeeded"),
    ]


def test_callback_history_and_redelivery() -> None:
    fake = FakeRunflow(reply(200, "callback_history.json"), reply(201, "callback_redelivery.json"))
    with client_for(fake) as client:
        [delivery] = client.callback_history(RUN_ID)
        again = client.redeliver_callback(RUN_ID)
    assert delivery.status_code == "succeeded" and len(delivery.attempts) == 2
    assert again.is_automatic is False
    assert fake.paths == [
        f"GET /v1/runs/{RUN_ID}/callback",
        f"POST /v1/runs/{RUN_ID}/callback-redeliveries",
    ]


def test_callback_history_tolerates_the_list_envelope() -> None:
    envelope = {"items": recorded("callback_history.json"), "next": None}
    fake = FakeRunflow(httpx.Response(200, json=envelope))
    with client_for(fake) as client:
        assert len(client.callback_history(RUN_ID)) == 1


def test_feedback() -> None:
    fake = FakeRunflow(reply(200, "run_feedback.json"))
    with client_for(fake) as client:
        run = client.send_feedback(RUN_ID, is_positive=False, reason="blurry")
    assert fake.paths == [f"PATCH /v1/runs/{RUN_ID}/feedback"]
    assert fake.body() == {"is_positive": False, "reason": "blurry"}
    assert run.feedback_is_positive is False


@pytest.mark.parametrize("status", [201, 200])
def test_admin_cancel_answers_201_on_transition_and_200_when_already_terminal(status: int) -> None:
    fake = FakeRunflow(reply(status, "run_admin_cancelled.json"))
    with client_for(fake) as client:
        run = client.cancel_run(RUN_ID, reason="stuck for an hour")
    assert run.status_code == "canceled"
    assert fake.paths == [f"POST /v1/admin/runs/{RUN_ID}/cancellation"]
    assert fake.body() == {"reason": "stuck for an hour"}


def test_cancel_reason_length_is_checked_locally() -> None:
    fake = FakeRunflow(reply(201, "run_admin_cancelled.json"))
    with client_for(fake) as client, pytest.raises(ValidationFailed):
        client.cancel_run(RUN_ID, reason="no")
    assert fake.requests == []


def test_batches_create_get_and_items() -> None:
    fake = FakeRunflow(
        reply(201, "batch_created.json"),
        reply(200, "batch.json"),
        reply(200, "batch_items_page1.json"),
        reply(200, "batch_items_page2.json"),
    )
    inputs = [{"prompt": "a", "client_ref": "row-1"}, {"prompt": "b", "client_ref": "row-2"}]
    with client_for(fake) as client:
        created = client.create_batch(
            "google/nano-banana-pro",
            inputs=inputs,
            metadata={"batch": "local-1"},
            idempotency_key="chunk-1",
        )
        batch = client.get_batch(created.id)
        items = list(client.iter_batch_items(batch.id))
    assert created.items_total == 2
    assert fake.body(0) == {"input": inputs, "metadata": {"batch": "local-1"}}
    assert fake.requests[0].headers["idempotency-key"] == "chunk-1"
    assert batch.status_code == "partial_succeeded"
    assert [item.status_code for item in items] == ["succeeded", "failed"]
    assert fake.paths[:2] == [
        "POST /v1/models/google/nano-banana-pro/batches",
        f"GET /v1/batches/{BATCH_ID}",
    ]
    assert [r.url.params.get("pq") for r in fake.requests[2:]] == [None, "cursor-items-2"]


@pytest.mark.parametrize("count", [0, 101])
def test_batch_size_is_checked_locally(count: int) -> None:
    fake = FakeRunflow(reply(201, "batch_created.json"))
    with client_for(fake) as client, pytest.raises(ValidationFailed):
        client.create_batch("google/nano-banana-pro", inputs=[{"prompt": "x"}] * count)
    assert fake.requests == []


def test_asset_upload_in_three_steps_without_our_key_on_the_storage_put() -> None:
    def storage(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, text="")

    fake = FakeRunflow(reply(201, "asset_upload_session.json"), storage, reply(201, "asset.json"))
    png = b"\x89PNG\r\n\x1a\n"
    with client_for(fake) as client:
        asset = client.upload_asset("C:\\photos\\in.png", "image/png", png)
    create, put, confirm = fake.requests
    assert (create.method, create.url.path) == ("POST", "/v1/asset-uploads")
    assert fake.body(0) == {"filename": "in.png", "mime_type": "image/png", "size_bytes": len(png)}
    assert (put.method, put.url.host) == ("PUT", "uploads.example-r2.test")
    assert put.url.params["X-Amz-Signature"] == "abc"
    assert put.content == png and put.headers["content-type"] == "image/png"
    assert "authorization" not in put.headers
    assert (
        confirm.url.path == "/v1/asset-uploads/a55e7000-0000-4000-8000-00000000d001/confirmations"
    )
    assert asset.url == "https://assets.example-r2.test/in.png?sig=1"


def test_an_expired_upload_link_says_so() -> None:
    fake = FakeRunflow(
        reply(201, "asset_upload_session.json"), httpx.Response(403, text="<Error/>")
    )
    with client_for(fake) as client, pytest.raises(RunflowError, match="upload link") as caught:
        client.upload_asset("in.png", "image/png", b"12345")
    assert caught.value.status == 403
    assert len(fake.requests) == 2  # no confirmation of a file that is not there


@pytest.mark.parametrize(
    ("filename", "content_type", "size"),
    [
        ("", "image/png", 5),
        ("in.png", "png", 5),
        ("in.png", "image/png", 0),
        ("in.png", "image/png", MAX_UPLOAD_BYTES + 1),
    ],
)
def test_uploads_runflow_would_refuse_are_refused_locally(
    filename: str, content_type: str, size: int
) -> None:
    fake = FakeRunflow(reply(201, "asset_upload_session.json"))
    with client_for(fake) as client, pytest.raises(ValidationFailed):
        client.upload_asset(filename, content_type, bytes(size))
    assert fake.requests == []


def test_callback_secrets_create_get_update() -> None:
    fake = FakeRunflow(
        reply(201, "callback_secret_created.json"),
        reply(200, "callback_secret.json"),
        reply(200, "callback_secret_renamed.json"),
    )
    with client_for(fake) as client:
        created = client.create_callback_secret()
        fetched = client.get_callback_secret(created.id)
        renamed = client.update_callback_secret(created.id, label="renamed", is_current=False)
    assert created.plain_secret == "whsec_3kTq9mYx2bP7vR1cW8dZ0fLh"
    assert fetched.plain_secret is None
    assert renamed.label == "renamed"
    assert fake.paths == [
        "POST /v1/callback-secrets",
        f"GET /v1/callback-secrets/{SECRET_ID}",
        f"PATCH /v1/callback-secrets/{SECRET_ID}",
    ]
    assert fake.body(0) == {"label": "runflow-site"}
    assert fake.body(2) == {"label": "renamed", "is_current": False}


def test_update_callback_secret_refuses_unknown_fields() -> None:
    fake = FakeRunflow(reply(200, "callback_secret.json"))
    with client_for(fake) as client, pytest.raises(TypeError):
        client.update_callback_secret(SECRET_ID, plain_secret="whsec_mine")
    assert fake.requests == []


def test_catalog_pages_follow_cursors_from_urls_but_only_to_our_base() -> None:
    fake = FakeRunflow(reply(200, "models_page1.json"), reply(200, "models_page2.json"))
    with client_for(fake) as client:
        models = list(client.iter_models())
    assert [m.id for m in models] == [
        "google/nano-banana-pro",
        "bytedance/seedance/2.0/fast/text-to-video",
    ]
    second = fake.requests[1]
    assert (second.url.host, second.url.path) == ("api.runflow.test", "/v1/models")
    assert second.url.params["pq"] == "cursor-models-2"


def test_a_catalog_entry_we_cannot_read_is_skipped_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake = FakeRunflow(reply(200, "models_page1.json"))
    with caplog.at_level(logging.WARNING, logger="runs.runflow"), client_for(fake) as client:
        page = client.list_models(limit=10)
    assert [m.id for m in page.items] == ["google/nano-banana-pro"]
    assert page.next_cursor == "cursor-models-2"
    assert fake.requests[0].url.params["limit"] == "10"
    assert any("Skipped a model" in r.getMessage() for r in caplog.records)


def test_paging_stops_when_runflow_repeats_a_cursor() -> None:
    looping = {"items": recorded("models_page2.json")["items"], "next": "same", "previous": None}
    fake = FakeRunflow(httpx.Response(200, json=looping))
    with client_for(fake) as client:
        models = list(client.iter_models())
    assert len(fake.requests) == 2 and len(models) == 2


# ---- retries ----


def test_503_503_200_makes_three_calls() -> None:
    waits: list[float] = []
    fake = FakeRunflow(
        reply(503, "error_503.json"), reply(503, "error_503.json"), reply(200, "run_succeeded.json")
    )
    with client_for(fake, waits) as client:
        assert client.get_run(RUN_ID).status_code == "succeeded"
    assert len(fake.requests) == 3
    assert waits == [0.5, 1.0]  # full jitter at its ceiling (rng = 1.0)


def test_a_create_is_retried_on_503_with_the_same_idempotency_key() -> None:
    fake = FakeRunflow(
        reply(503, "error_503.json"), reply(503, "error_503.json"), reply(201, "run_created.json")
    )
    with client_for(fake) as client:
        client.create_run("google/nano-banana-pro", input={"prompt": "x"}, client_ref=OUR_RUN)
    assert len(fake.requests) == 3
    assert {r.headers["idempotency-key"] for r in fake.requests} == {OUR_RUN}


def test_429_with_retry_after_waits_exactly_that_long_once() -> None:
    waits: list[float] = []
    fake = FakeRunflow(
        reply(429, "error_429.json", **{"Retry-After": "2"}), reply(200, "run_succeeded.json")
    )
    with client_for(fake, waits) as client:
        client.get_run(RUN_ID)
    assert waits == [2.0]
    assert len(fake.requests) == 2


def test_400_is_not_retried() -> None:
    waits: list[float] = []
    fake = FakeRunflow(
        httpx.Response(400, json={"code": "BAD_REQUEST", "message": "Malformed JSON"})
    )
    with client_for(fake, waits) as client, pytest.raises(RunflowError) as caught:
        client.get_run(RUN_ID)
    assert len(fake.requests) == 1 and waits == []
    assert type(caught.value) is RunflowError
    assert (caught.value.status, caught.value.code, caught.value.retryable) == (
        400,
        "BAD_REQUEST",
        False,
    )
    assert "Malformed JSON" in caught.value.message


def test_endless_429_stops_after_exactly_five_calls() -> None:
    waits: list[float] = []
    fake = FakeRunflow(reply(429, "error_429.json"))
    with client_for(fake, waits) as client, pytest.raises(RateLimited) as caught:
        client.get_run(RUN_ID)
    assert len(fake.requests) == 5
    assert waits == [0.5, 1.0, 2.0, 4.0]
    assert caught.value.retryable and caught.value.status == 429
    assert "5 attempts" in caught.value.message


def test_max_attempts_is_honoured() -> None:
    fake = FakeRunflow(reply(502))
    with client_for(fake, max_attempts=2) as client, pytest.raises(Unavailable):
        client.get_run(RUN_ID)
    assert len(fake.requests) == 2


def test_read_timeout_on_create_is_outcome_unknown_and_never_reposted() -> None:
    waits: list[float] = []
    fake = FakeRunflow(httpx.ReadTimeout("timed out"), reply(201, "run_created.json"))
    with client_for(fake, waits) as client, pytest.raises(OutcomeUnknown) as caught:
        client.create_run("google/nano-banana-pro", input={"prompt": "x"}, client_ref=OUR_RUN)
    assert len(fake.requests) == 1 and waits == []
    assert "client reference" in caught.value.message
    assert not caught.value.retryable


@pytest.mark.parametrize("status", [500, 502, 504])
def test_a_5xx_that_may_follow_the_work_is_outcome_unknown_for_a_create(status: int) -> None:
    fake = FakeRunflow(httpx.Response(status), reply(201, "run_created.json"))
    with client_for(fake) as client, pytest.raises(OutcomeUnknown):
        client.create_batch("google/nano-banana-pro", inputs=[{"prompt": "x"}])
    assert len(fake.requests) == 1


def test_a_connect_error_on_create_is_retried_because_nothing_was_sent() -> None:
    fake = FakeRunflow(httpx.ConnectError("refused"), reply(201, "run_created.json"))
    with client_for(fake) as client:
        run = client.create_run("google/nano-banana-pro", input={"prompt": "x"}, client_ref=OUR_RUN)
    assert run.status_code == "queued"
    assert len(fake.requests) == 2


def test_an_unreadable_2xx_to_a_create_is_outcome_unknown() -> None:
    fake = FakeRunflow(httpx.Response(201, text="<html>ok</html>"))
    with client_for(fake) as client, pytest.raises(OutcomeUnknown):
        client.create_run("google/nano-banana-pro", input={"prompt": "x"}, client_ref=OUR_RUN)


def test_reads_are_retried_on_timeouts_and_then_unavailable() -> None:
    fake = FakeRunflow(httpx.ReadTimeout("slow"))
    with client_for(fake) as client, pytest.raises(Unavailable, match="did not answer in time"):
        client.get_run(RUN_ID)
    assert len(fake.requests) == 5


def test_connection_refused_says_nothing_was_sent() -> None:
    fake = FakeRunflow(httpx.ConnectError("refused"))
    with client_for(fake) as client, pytest.raises(Unavailable) as caught:
        client.health()
    assert "api.runflow.test" in caught.value.message
    assert "nothing was sent" in caught.value.message
    assert caught.value.status is None and caught.value.retryable


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_a_retry_after_past_the_deadline_gives_up_at_once_with_the_hint() -> None:
    clock = FakeClock()
    fake = FakeRunflow(reply(429, "error_429.json", **{"Retry-After": "120"}))
    client = RunflowClient(
        BASE, KEY, transport=httpx.MockTransport(fake), sleep=clock.sleep, clock=clock, deadline=60
    )
    with client, pytest.raises(RateLimited) as caught:
        client.get_run(RUN_ID)
    assert len(fake.requests) == 1 and clock.now == 1000.0
    assert caught.value.retry_after == 120
    assert "120 s" in caught.value.message


def test_the_deadline_bounds_the_whole_call_and_each_attempts_timeouts() -> None:
    clock = FakeClock()
    timeouts: list[dict[str, float]] = []

    def slow_503(request: httpx.Request) -> httpx.Response:
        timeouts.append(dict(request.extensions["timeout"]))
        clock.now += 20  # each attempt takes 20 s
        return reply(503)

    fake = FakeRunflow(slow_503)
    client = RunflowClient(
        BASE,
        KEY,
        transport=httpx.MockTransport(fake),
        sleep=clock.sleep,
        clock=clock,
        deadline=45,
        rng=lambda: 0.0,
    )
    with client, pytest.raises(Unavailable):
        client.get_run(RUN_ID)
    assert len(fake.requests) == 3  # at 0, 20 and 40 s; none starts after 45 s
    assert timeouts[0] == {"connect": 5.0, "read": 30.0, "write": 30.0, "pool": 5.0}
    assert timeouts[1]["read"] == 25.0  # 25 s of the deadline were left
    assert timeouts[2] == {"connect": 5.0, "read": 5.0, "write": 5.0, "pool": 5.0}


def test_timeouts_must_all_be_explicit() -> None:
    with pytest.raises(ValueError, match="timeout"):
        RunflowClient(BASE, KEY, timeout=httpx.Timeout(10.0, read=None))


# ---- errors a person can act on ----


@pytest.mark.parametrize(
    ("status", "fixture", "kind", "code", "phrase"),
    [
        (401, "error_401.json", AuthenticationFailed, "UNAUTHORIZED", "connection page"),
        (402, "error_402_credit.json", OutOfCredit, "INSUFFICIENT_CREDIT", "Add credit"),
        (402, "error_402_credits.json", OutOfCredit, "INSUFFICIENT_CREDITS", "Add credit"),
        (403, "error_403.json", PermissionDenied, "PERMISSION_DENIED", "scopes"),
        (403, "error_sdk_nested.json", PermissionDenied, "PERMISSION_DENIED", "runs:create"),
        (404, "error_404_run.json", NotFound, "RUN_NOT_FOUND", "another Runflow organization"),
        (404, "error_404_model.json", NotFound, "MODEL_UNAVAILABLE", "Pick another model"),
        (409, "error_409.json", Conflict, "CONFLICT", "different body"),
        (422, "error_422.json", ValidationFailed, "VALIDATION_ERROR", "prompt: Field required"),
    ],
)
def test_refusals_map_to_the_hierarchy_with_useful_messages(
    status: int, fixture: str, kind: type[RunflowError], code: str, phrase: str
) -> None:
    fake = FakeRunflow(reply(status, fixture, **{"Runflow-Request-Id": "req-77"}))
    with client_for(fake) as client, pytest.raises(kind) as caught:
        client.create_run("google/nano-banana-pro", input={}, client_ref=OUR_RUN)
    error = caught.value
    assert len(fake.requests) == 1
    assert (error.status, error.code, error.request_id) == (status, code, "req-77")
    assert not error.retryable
    assert phrase in error.message and str(error) == error.message
    assert f"({status}" in error.message


def test_the_401_message_is_the_one_people_see() -> None:
    fake = FakeRunflow(reply(401, "error_401.json"))
    with client_for(fake) as client, pytest.raises(AuthenticationFailed) as caught:
        client.me()
    assert caught.value.message == (
        "Runflow refused the API key (401). Check the key on the team's Runflow connection page."
    )


def test_validation_failures_carry_per_field_messages() -> None:
    fake = FakeRunflow(reply(422, "error_422.json"))
    with client_for(fake) as client, pytest.raises(ValidationFailed) as caught:
        client.create_run("google/nano-banana-pro", input={}, client_ref=OUR_RUN)
    assert caught.value.field_errors["prompt"] == ["Field required"]
    assert caught.value.field_errors["resolution"] == ["must be one of 1K, 2K, 4K"]


def test_a_redirect_is_not_followed_and_explains_the_url() -> None:
    fake = FakeRunflow(httpx.Response(302, headers={"Location": "https://elsewhere.test/login"}))
    with client_for(fake) as client, pytest.raises(ProtocolError, match="API URL"):
        client.balance()
    assert len(fake.requests) == 1


def test_a_web_page_instead_of_the_api_is_a_protocol_error() -> None:
    fake = FakeRunflow(httpx.Response(200, text="<!doctype html><title>Welcome</title>"))
    with client_for(fake) as client, pytest.raises(ProtocolError, match="not JSON"):
        client.health()


def test_a_wrong_shape_is_a_protocol_error_naming_the_field() -> None:
    fake = FakeRunflow(httpx.Response(200, json={"id": "nope", "status_code": "queued"}))
    with client_for(fake) as client, pytest.raises(ProtocolError, match="id"):
        client.get_run(RUN_ID)


def test_an_error_body_that_is_not_json_still_maps() -> None:
    fake = FakeRunflow(httpx.Response(403, text="Forbidden"))
    with client_for(fake) as client, pytest.raises(PermissionDenied):
        client.me()


# ---- the key never leaks ----


def test_repr_and_errors_and_logs_never_contain_the_key(caplog: pytest.LogCaptureFixture) -> None:
    fake = FakeRunflow(
        reply(503), reply(401, "error_401.json"), httpx.ConnectError(f"refused {BASE}")
    )
    with caplog.at_level(logging.DEBUG), client_for(fake, max_attempts=2) as client:
        assert KEY not in repr(client) and "9876" in repr(client)
        with pytest.raises(AuthenticationFailed) as first:
            client.me()
        with pytest.raises(Unavailable) as second:
            client.health()
    for text in (str(first.value), repr(first.value), str(second.value), caplog.text):
        assert KEY not in text
        assert "s3cretKEY" not in text
    assert "GET /v1/auth/me" in caplog.text  # the calls are logged, without headers


@pytest.mark.parametrize(
    "key", ["", "short", "rf_live_with space", "rf_live_x\r\nX-Evil: 1", "rf_live_é_ééééé"]
)
def test_malformed_keys_are_refused_before_anything_is_sent(key: str) -> None:
    with pytest.raises(AuthenticationFailed, match="malformed") as caught:
        RunflowClient(BASE, key)
    assert not key or key not in caught.value.message


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("https://api.runflow.io", "https://api.runflow.io"),
        ("https://api.runflow.io/", "https://api.runflow.io"),
        ("https://api.runflow.io/v1", "https://api.runflow.io"),
        ("http://127.0.0.1:8765/", "http://127.0.0.1:8765"),
    ],
)
def test_base_url_forms(given: str, expected: str) -> None:
    assert RunflowClient(given, KEY).base_url == expected


@pytest.mark.parametrize(
    "bad", ["", "api.runflow.io", "ftp://api.runflow.io", "javascript:alert(1)"]
)
def test_base_url_must_be_http(bad: str) -> None:
    with pytest.raises(ValueError):
        RunflowClient(bad, KEY)


def test_closing_the_client_closes_its_connection_pool() -> None:
    fake = FakeRunflow(reply(200, "health.json"))
    with client_for(fake) as client:
        client.health()
    with pytest.raises(RuntimeError):
        client.health()


def test_the_ca_bundle_is_loaded_once_per_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """A client is made per call (one per poll); loading the CA bundle for each cost more
    than the request. Counted where the bundle is read, so a context built anywhere
    (ours or one httpx would make for itself) counts."""
    import ssl
    import threading

    from runs.runflow import client as client_module

    loads: list[object] = []
    real_load = ssl.SSLContext.load_verify_locations

    def counting_load(context: ssl.SSLContext, *args: Any, **kwargs: Any) -> None:
        loads.append(args or kwargs)
        real_load(context, *args, **kwargs)

    monkeypatch.setattr(ssl.SSLContext, "load_verify_locations", counting_load)
    monkeypatch.setattr(client_module, "_ssl_context", None)  # as in a fresh process

    def make_and_close() -> None:
        with RunflowClient("https://api.runflow.io", KEY) as client:
            assert client.base_url == "https://api.runflow.io"

    threads = [threading.Thread(target=make_and_close) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for other_key in (KEY, "rf_live_AnotherKey0123456789"):
        make_and_close()
        RunflowClient("http://127.0.0.1:9", other_key).close()
    assert len(loads) == 1
    context = client_module.shared_ssl_context()
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname


# ---- backoff bounds (property tests) ----


@given(attempt=st.integers(min_value=-5, max_value=10_000), draw=st.floats(0, 1))
def test_backoff_stays_between_zero_and_the_capped_ceiling(attempt: int, draw: float) -> None:
    delay = backoff_delay(attempt, rng=lambda: draw)
    ceiling = backoff_ceiling(attempt)
    assert 0.0 <= delay <= ceiling <= MAX_DELAY
    assert delay == pytest.approx(draw * ceiling)


@given(attempt=st.integers(min_value=1, max_value=200))
def test_backoff_ceiling_doubles_until_the_cap(attempt: int) -> None:
    assert backoff_ceiling(attempt + 1) == min(MAX_DELAY, 2 * backoff_ceiling(attempt))


@given(draw=st.floats(allow_nan=False, allow_infinity=True))
def test_a_broken_random_source_cannot_push_the_wait_out_of_bounds(draw: float) -> None:
    assert 0.0 <= backoff_delay(3, rng=lambda: draw) <= backoff_ceiling(3)


@given(retry_after=st.floats(min_value=0, max_value=3600), attempt=st.integers(1, 5))
def test_a_numeric_retry_after_is_used_as_given(retry_after: float, attempt: int) -> None:
    assert wait_before_retry(attempt, retry_after, rng=lambda: 0.3) == retry_after


@given(
    header=st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=20)
    | st.from_regex(r"\A ?[0-9]{1,4}(\.[0-9]{1,3})? ?\Z")
    | st.sampled_from(["1e3", "inf", "nan", "-1", "Wed, 21 Oct 2026 07:28:00 GMT", "2.5"])
)
def test_any_retry_after_header_gives_a_bounded_or_exact_wait(header: str) -> None:
    waits: list[float] = []
    fake = FakeRunflow(
        httpx.Response(429, headers={"Retry-After": header}), reply(200, "health.json")
    )
    # A deadline far away, so that even a huge Retry-After is waited for, not given up on.
    with client_for(fake, waits, rng=lambda: 0.5, deadline=1e12) as client:
        client.health()
    [wait] = waits
    numeric = re.fullmatch(r"\s*[0-9]{1,9}(\.[0-9]{1,6})?\s*", header)
    if numeric:
        assert wait == float(header)
    else:
        assert 0 <= wait <= MAX_DELAY
