"""The fault switches (POST /_sandbox/faults), the ledger, and a clean shutdown."""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Any

import httpx
import pytest

from tests.plugins.sandbox import CallbackReceiver, Received, Sandbox, stop_sandbox

pytestmark = pytest.mark.sandbox

IMAGE = "google/nano-banana-pro"


def signature(body: bytes, secret: str) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def post_run(client: httpx.Client, prompt: str, **extra: object) -> httpx.Response:
    return client.post(f"/v1/models/{IMAGE}/runs", json={"input": {"prompt": prompt}, **extra})


def test_faults_are_read_set_validated_and_reset(sandbox_faults: Sandbox) -> None:
    url = f"{sandbox_faults.url}/_sandbox/faults"
    clean = httpx.get(url).json()
    assert clean["create_error"] is None and clean["callbacks"]["duplicate"] == 1
    for bad in (
        {"create_error": {"status": 404}},
        {"hang": {"seconds": 999}},
        {"nope": True},
        {"callbacks": {"duplicate": 99}},
        {"callbacks": {"drop": {"rate": 2}}},
        [1],
    ):
        response = httpx.post(url, json=bad)
        assert response.status_code == 400 and response.json()["code"] == "INVALID_FAULTS", bad
    state = sandbox_faults.set_faults(
        create_error={"status": 503, "rate": 0.5}, callbacks={"drop": {"next": 2}}
    )
    assert state["create_error"]["status"] == 503 and state["create_error"]["rate"] == 0.5
    assert state["callbacks"]["drop"] == {"next": 2}
    merged = sandbox_faults.set_faults(extra_fields=True, create_error=None)
    assert (
        merged["create_error"] is None
        and merged["extra_fields"]
        and merged["callbacks"]["drop"] == {"next": 2}
    )
    sandbox_faults.reset_faults()
    assert httpx.get(url).json() == clean


def test_rate_limit_for_the_next_n_creates_with_retry_after(sandbox_faults: Sandbox) -> None:
    sandbox_faults.set_faults(create_error={"status": 429, "next": 2, "retry_after": 1})
    key = sandbox_faults.new_key()
    with sandbox_faults.api(key) as client:
        answers = [post_run(client, f"attempt {n}") for n in range(3)]
    assert [a.status_code for a in answers] == [429, 429, 201]
    assert answers[0].headers["Retry-After"] == "1" and answers[0].json()["code"] == "RATE_LIMITED"
    assert len(sandbox_faults.ledger(key)["runs"]) == 1
    faulted = [r for r in sandbox_faults.ledger(key)["requests"] if r["fault"]]
    assert [r["status"] for r in faulted] == [429, 429]
    assert sandbox_faults.set_faults()["create_error"]["next"] == 0


def test_rate_limit_without_retry_after(sandbox_faults: Sandbox) -> None:
    sandbox_faults.set_faults(create_error={"status": 429, "next": 1})
    with sandbox_faults.api(sandbox_faults.new_key()) as client:
        answer = post_run(client, "no hint")
    assert answer.status_code == 429 and "Retry-After" not in answer.headers


@pytest.mark.parametrize("status", [500, 503])
def test_server_errors_on_create_only_by_default(sandbox_faults: Sandbox, status: int) -> None:
    key = sandbox_faults.new_key()
    with sandbox_faults.api(key) as client:
        run = post_run(client, "before the storm").json()
        sandbox_faults.set_faults(create_error={"status": status, "rate": 1.0})
        failed = [post_run(client, "in the storm") for _ in range(3)]
        read = client.get(f"/v1/runs/{run['id']}")
        batch = client.post(f"/v1/models/{IMAGE}/batches", json={"input": [{"prompt": "abc"}]})
    assert [f.status_code for f in failed] == [status] * 3 and batch.status_code == status
    assert failed[0].json()["code"] in ("INTERNAL_ERROR", "SERVICE_UNAVAILABLE")
    assert read.status_code == 200
    assert len(sandbox_faults.ledger(key)["runs"]) == 1


def test_errors_on_reads_when_scoped_to_reads(sandbox_faults: Sandbox) -> None:
    with sandbox_faults.api(sandbox_faults.new_key()) as client:
        run = post_run(client, "read me").json()
        sandbox_faults.set_faults(create_error={"status": 502, "next": 1, "routes": "read"})
        first, second = client.get(f"/v1/runs/{run['id']}"), client.get(f"/v1/runs/{run['id']}")
    assert (first.status_code, second.status_code) == (502, 200)


def test_error_after_create_leaves_a_run_that_idempotency_recovers(sandbox_faults: Sandbox) -> None:
    sandbox_faults.set_faults(create_error={"status": 500, "next": 1, "after_create": True})
    key = sandbox_faults.new_key()
    body = {"input": {"prompt": "did it happen"}, "client_ref": "ambiguous-1"}
    with sandbox_faults.api(key) as client:
        first = client.post(
            f"/v1/models/{IMAGE}/runs", json=body, headers={"Idempotency-Key": "ambiguous-1"}
        )
        found = client.get("/v1/runs", params={"q": "client_ref.EQ:'ambiguous-1'"}).json()["items"]
        retry = client.post(
            f"/v1/models/{IMAGE}/runs", json=body, headers={"Idempotency-Key": "ambiguous-1"}
        )
    assert first.status_code == 500
    assert len(found) == 1
    assert retry.status_code == 201 and retry.json()["id"] == found[0]["id"]
    assert len(sandbox_faults.ledger(key)["runs"]) == 1


def test_hang_delays_the_answer_after_the_run_exists(sandbox_faults: Sandbox) -> None:
    sandbox_faults.set_faults(hang={"seconds": 2, "next": 1})
    key = sandbox_faults.new_key()
    with sandbox_faults.api(key, timeout=0.5) as client, pytest.raises(httpx.ReadTimeout):
        post_run(client, "timing out", client_ref="hung-1")
    with sandbox_faults.api(key) as client:
        found = client.get("/v1/runs", params={"q": "client_ref.EQ:'hung-1'"}).json()["items"]
        started = time.monotonic()
        quick = post_run(client, "not hung any more")
    assert len(found) == 1
    assert quick.status_code == 201 and time.monotonic() - started < 1.5


def test_duplicate_callbacks_arrive_together(
    sandbox_faults: Sandbox, callback_receiver: CallbackReceiver
) -> None:
    sandbox_faults.set_faults(callbacks={"duplicate": 5})
    key = sandbox_faults.new_key()
    with sandbox_faults.api(key) as client:
        secret = client.post("/v1/callback-secrets", json={}).json()["plain_secret"]
        run = post_run(client, "five times", callback_url=callback_receiver.url).json()
    received = callback_receiver.wait(5)
    assert len({r.body for r in received}) == 1 and received[0].json()["run_id"] == run["id"]
    assert all(r.headers["Runflow-Signature"] == signature(r.body, secret) for r in received)
    assert max(r.at for r in received) - min(r.at for r in received) < 0.5
    attempts = sandbox_faults.ledger(key)["callbacks"]
    assert sorted(a["copy"] for a in attempts) == [0, 1, 2, 3, 4]
    assert all(a["status_code"] == 200 for a in attempts)


def post_runs_apart(sandbox: Sandbox, key: str, prompt: str, count: int, callback_url: str) -> None:
    """``count`` runs, far enough apart that they end in launch order even on a loaded
    machine (0.1 s was not: two could end within a scheduler tick of each other)."""
    with sandbox.api(key) as client:
        for n in range(count):
            post_run(client, f"{prompt} {n}", callback_url=callback_url)
            time.sleep(0.5)


def assert_newest_first(sandbox: Sandbox, key: str, received: list[Received]) -> list[str]:
    """The callbacks came in the reverse order of their runs' completion; their run ids."""
    order = [r.json()["run_id"] for r in received]
    runs = {rid: sandbox.wait_for(key, rid) for rid in order}
    assert order == sorted(order, key=lambda rid: runs[rid]["completed_at"], reverse=True)
    return order


def test_out_of_order_callbacks_arrive_newest_first(
    sandbox_faults: Sandbox, callback_receiver: CallbackReceiver
) -> None:
    sandbox_faults.set_faults(callbacks={"out_of_order": {"window": 3, "hold_seconds": 10}})
    key = sandbox_faults.new_key()
    post_runs_apart(sandbox_faults, key, "run number", 3, callback_receiver.url)
    assert_newest_first(sandbox_faults, key, callback_receiver.wait(3))


def test_out_of_order_windows_are_per_organization(
    sandbox_faults: Sandbox, callback_receiver: CallbackReceiver
) -> None:
    # Another organization's callback, held first, must not take a place in this one's window
    # (the sandbox is shared: late callbacks of earlier tests used to fill it).
    sandbox_faults.set_faults(callbacks={"out_of_order": {"window": 2, "hold_seconds": 4}})
    other, mine = sandbox_faults.new_key(), sandbox_faults.new_key()
    with sandbox_faults.api(other) as client:
        lone = post_run(client, "held alone", callback_url=callback_receiver.url).json()
    sandbox_faults.wait_for(other, lone["id"])
    post_runs_apart(sandbox_faults, mine, "pair", 2, callback_receiver.url)
    order = assert_newest_first(sandbox_faults, mine, callback_receiver.wait(2))
    assert lone["id"] not in order
    (late,) = callback_receiver.wait(3)[2:]
    assert late.json()["run_id"] == lone["id"]


def test_dropped_callbacks_leave_polling_to_find_the_result(
    sandbox_faults: Sandbox, callback_receiver: CallbackReceiver
) -> None:
    # "Always" until this run's callback is dropped, rather than a one-shot: the sandbox is
    # shared, and a late callback of an earlier test could use up a one-shot switch.
    sandbox_faults.set_faults(callbacks={"drop": True})
    key = sandbox_faults.new_key()
    with sandbox_faults.api(key) as client:
        dropped = post_run(client, "lost in the post", callback_url=callback_receiver.url).json()
        final = sandbox_faults.wait_for(key, dropped["id"])
        history = _callback_history(client, dropped["id"])
        sandbox_faults.reset_faults()
        kept = post_run(client, "arrives fine", callback_url=callback_receiver.url).json()
        (received,) = callback_receiver.wait(1)
    assert final["status_code"] == "succeeded"
    assert received.json()["run_id"] == kept["id"]
    assert [h["status_code"] for h in history] == ["dropped"]
    outcomes = {
        c["run_id"]: c["outcome"]
        for c in sandbox_faults.ledger(key)["callbacks"]
        if c["attempt_number"] == 0
    }
    assert outcomes == {dropped["id"]: "dropped"}


def test_bad_signature_fault(sandbox_faults: Sandbox, callback_receiver: CallbackReceiver) -> None:
    # "Always" rather than a one-shot: the sandbox is shared, and a late callback of an
    # earlier test could otherwise use up a one-shot switch before this run's callback.
    sandbox_faults.set_faults(callbacks={"bad_signature": True})
    key = sandbox_faults.new_key()
    with sandbox_faults.api(key) as client:
        secret = client.post("/v1/callback-secrets", json={}).json()["plain_secret"]
        post_run(client, "forged", callback_url=callback_receiver.url)
        bad = callback_receiver.wait(1)[0]
        sandbox_faults.reset_faults()
        post_run(client, "genuine", callback_url=callback_receiver.url)
        good = callback_receiver.wait(2)[1]
    assert bad.headers["Runflow-Signature"] != signature(bad.body, secret)
    assert good.headers["Runflow-Signature"] == signature(good.body, secret)


def test_early_callback_arrives_before_the_create_answer(
    sandbox_faults: Sandbox, callback_receiver: CallbackReceiver
) -> None:
    sandbox_faults.set_faults(callbacks={"early": {"next": 1}})
    key = sandbox_faults.new_key()
    with sandbox_faults.api(key) as client:
        created = post_run(
            client,
            "faster than light",
            callback_url=callback_receiver.url,
            metadata={"run": "ours"},
        )
        answered_at = time.monotonic()
    (received,) = callback_receiver.wait(1)
    assert received.at < answered_at
    assert created.json()["status_code"] == "queued"
    body = received.json()
    assert body["run_id"] == created.json()["id"] and body["status"] == "succeeded"
    assert body["metadata"] == {"run": "ours"}
    assert sandbox_faults.wait_for(key, body["run_id"])["status_code"] == "succeeded"


def test_legacy_output_shape(sandbox_faults: Sandbox, callback_receiver: CallbackReceiver) -> None:
    sandbox_faults.set_faults(legacy_output={"next": 1})
    key = sandbox_faults.new_key()
    with sandbox_faults.api(key) as client:
        run = post_run(client, "old style", callback_url=callback_receiver.url).json()
    (received,) = callback_receiver.wait(1)
    final = sandbox_faults.wait_for(key, run["id"])
    assert set(final["output"]) == {"image_urls"} and final["output"]["image_urls"][0].startswith(
        "http"
    )
    assert received.json()["output"] == final["output"]
    assert httpx.get(final["output"]["image_urls"][0]).status_code == 200


def test_unknown_extra_fields(sandbox_faults: Sandbox, callback_receiver: CallbackReceiver) -> None:
    sandbox_faults.set_faults(extra_fields=True)
    key = sandbox_faults.new_key()
    with sandbox_faults.api(key) as client:
        run = post_run(client, "surprise fields", callback_url=callback_receiver.url).json()
        listed = client.get("/v1/runs").json()["items"][0]
    (received,) = callback_receiver.wait(1)
    assert "x_sandbox_unknown" in run and "x_sandbox_unknown" in listed
    assert "x_sandbox_unknown" in received.json()


def test_ledger_proves_nothing_was_lost(
    sandbox: Sandbox, callback_receiver: CallbackReceiver
) -> None:
    key = sandbox.new_key()
    with sandbox.api(key) as client:
        ids = [
            post_run(
                client, f"ledger {n}", callback_url=callback_receiver.url, client_ref=f"c-{n}"
            ).json()["id"]
            for n in range(6)
        ]
        client.get("/v1/auth/me")
    received = callback_receiver.wait(6)
    output = received[0].json()["output"]["outputs"][0]["url"]
    assert httpx.get(output).status_code == 200
    ledger = sandbox.ledger(key)
    assert sorted(r["run_id"] for r in ledger["runs"]) == sorted(ids)
    assert {r["client_ref"] for r in ledger["runs"]} == {f"c-{n}" for n in range(6)}
    assert sorted(c["run_id"] for c in ledger["callbacks"] if c["status_code"] == 200) == sorted(
        ids
    )
    creates = [
        r for r in ledger["requests"] if r["method"] == "POST" and r["path"].endswith("/runs")
    ]
    assert len(creates) == 6 and all(r["status"] == 201 for r in creates)
    assert all(key not in str(entry) for entry in ledger["requests"]), "keys never reach the ledger"
    (download,) = [r for r in ledger["requests"] if r["path"].startswith("/files/outputs/")]
    assert download["status"] == 200 and "signature" not in download["path"]


def test_callback_base_bounds_secrets_file_and_clean_restart(
    start_sandbox, callback_receiver: CallbackReceiver, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    # One extra sandbox (restarted once) for several checks: starting a process is the slow part.
    secrets_file = tmp_path / "secrets.json"
    options = (
        "--callback-base",
        callback_receiver.url + "allowed/",
        "--secrets-file",
        str(secrets_file),
    )
    sandbox = start_sandbox(*options, SANDBOX_MAX_RUNS="10")
    key = sandbox.new_key()
    with sandbox.api(key) as client:
        secret = client.post("/v1/callback-secrets", json={"label": "kept"}).json()
        first_ids = [post_run(client, f"filler {n}").json()["id"] for n in range(12)]
        # Runs end in creation order; older ones may already be evicted: wait on the last.
        sandbox.wait_for(key, first_ids[-1])
        allowed = post_run(client, "inside", callback_url=callback_receiver.url + "allowed/team-1/")
        refused = post_run(client, "outside", callback_url=callback_receiver.url + "elsewhere/")
        post_run(client, "in flight while stopping [slow]")
    (received,) = callback_receiver.wait(1)
    sandbox.wait_for(key, refused.json()["id"])
    assert received.path == "/hooks/runflow/allowed/team-1/"
    assert received.json()["run_id"] == allowed.json()["id"]
    for _ in range(50):
        ledger = sandbox.ledger(key)["callbacks"]
        if len(ledger) == 2:
            break
        time.sleep(0.05)
    outcomes = {c["run_id"]: c["outcome"] for c in ledger if c["attempt_number"] == 0}
    assert outcomes == {refused.json()["id"]: "refused"}
    # Bounded: only the newest runs are kept, the ledger still lists every one.
    with sandbox.api(key) as client:
        kept = client.get("/v1/runs", params={"limit": 100}).json()["items"]
        oldest = client.get(f"/v1/runs/{first_ids[0]}")
    assert len(kept) <= 10 and oldest.status_code == 404
    assert len(sandbox.ledger(key)["runs"]) == 15
    started = time.monotonic()
    assert stop_sandbox(sandbox) == 0
    assert time.monotonic() - started < 5
    assert "stopped" in sandbox.log()
    # A restarted sandbox still signs with the secret the site holds.
    restarted = start_sandbox(*options)
    with restarted.api(key) as client:
        assert client.get(f"/v1/callback-secrets/{secret['id']}").json()["is_current"] is True
        post_run(client, "after restart", callback_url=callback_receiver.url + "allowed/again/")
    again = callback_receiver.wait(2)[1]
    assert again.headers["Runflow-Signature"] == signature(again.body, secret["plain_secret"])


def _callback_history(client: httpx.Client, run_id: str, timeout: float = 10) -> list[Any]:
    """The run's callback deliveries, once there is one (it is made just after the run ends)."""
    deadline = time.monotonic() + timeout
    while not (history := client.get(f"/v1/runs/{run_id}/callback").json()):
        assert time.monotonic() < deadline, f"no callback delivery for {run_id}"
        time.sleep(0.05)
    return list(history)
