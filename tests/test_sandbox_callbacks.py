"""Callbacks from the live sandbox, received by a local HTTP server in the test.

Signatures are checked over the raw bytes with a standalone HMAC, written here on purpose
instead of importing the site's ``signing`` module: the contract, not our code, is what
these tests hold the sandbox to.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import re

import httpx
import pytest

from tests.plugins.sandbox import CallbackReceiver, Sandbox

pytestmark = pytest.mark.sandbox

IMAGE = "google/nano-banana-pro"
OFFSET_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00")


def expected_signature(body: bytes, secret: str) -> str:
    return hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def org_with_secret(sandbox: Sandbox) -> tuple[str, str]:
    key = sandbox.new_key()
    with sandbox.api(key) as client:
        secret = client.post("/v1/callback-secrets", json={"label": "test"}).json()["plain_secret"]
    return key, secret


def launch(sandbox: Sandbox, key: str, url: str, prompt: str, **extra: object) -> dict:
    with sandbox.api(key) as client:
        response = client.post(
            f"/v1/models/{IMAGE}/runs",
            json={"input": {"prompt": prompt}, "callback_url": url, **extra},
        )
    assert response.status_code == 201, response.text
    return response.json()


def test_success_callback_is_signed_over_the_raw_body(
    sandbox: Sandbox, callback_receiver: CallbackReceiver
) -> None:
    key, secret = org_with_secret(sandbox)
    run = launch(
        sandbox,
        key,
        callback_receiver.url + "?team=1",
        "a teal bicycle",
        metadata={"run": "ours", "nested": {"a": [1, 2]}},
    )
    (received,) = callback_receiver.wait(1)
    body = received.json()
    assert received.path == "/hooks/runflow/?team=1"
    assert received.headers["Runflow-Signature"] == expected_signature(received.body, secret)
    assert re.fullmatch(r"[0-9a-f]{64}", received.headers["Runflow-Signature"])
    assert received.headers["Runflow-Request-Id"]
    assert received.headers["Content-Type"] == "application/json"
    # A re-serialized body does not verify: the signature is over the exact bytes.
    reserialized = json.dumps(body, indent=2).encode()
    assert not hmac.compare_digest(
        expected_signature(reserialized, secret), received.headers["Runflow-Signature"]
    )
    assert (
        body["event"] == "run.completed"
        and body["run_id"] == run["id"]
        and body["status"] == "succeeded"
    )
    assert body["metadata"] == {"run": "ours", "nested": {"a": [1, 2]}}
    assert OFFSET_TIME.fullmatch(body["created_at"]) and OFFSET_TIME.fullmatch(body["completed_at"])
    assert "Z" not in body["created_at"]
    assert body["duration_ms"] > 0
    assert body["output"]["outputs"][0]["url"].startswith(sandbox.url)
    assert set(body) == {
        "event",
        "run_id",
        "status",
        "output",
        "duration_ms",
        "created_at",
        "completed_at",
        "metadata",
    }


def test_no_secret_means_no_signature_header(
    sandbox: Sandbox, callback_receiver: CallbackReceiver
) -> None:
    launch(sandbox, sandbox.new_key(), callback_receiver.url, "unsigned please")
    (received,) = callback_receiver.wait(1)
    assert "Runflow-Signature" not in received.headers
    assert received.headers["Runflow-Request-Id"]


@pytest.mark.parametrize(
    ("marker", "event", "status"),
    [
        ("[fail]", "run.failed", "failed"),
        ("[cancel]", "run.cancelled", "canceled"),
        ("[partial]", "run.partial_succeeded", "partial_succeeded"),
    ],
)
def test_scenario_markers_choose_the_ending(
    sandbox: Sandbox, callback_receiver: CallbackReceiver, marker: str, event: str, status: str
) -> None:
    key, secret = org_with_secret(sandbox)
    run = launch(
        sandbox,
        key,
        callback_receiver.url,
        f"a test {marker}",
    )
    (received,) = callback_receiver.wait(1)
    body = received.json()
    assert received.headers["Runflow-Signature"] == expected_signature(received.body, secret)
    assert (body["event"], body["status"]) == (event, status)
    final = sandbox.wait_for(key, run["id"])
    assert final["status_code"] == status
    if status == "failed":
        assert (
            final["output"] is None
            and final["failure_code"]
            and final["failure_stage_code"]
            and final["failure_message"]
        )
        assert body["output"]["error"]["code"] == final["failure_code"]
    elif status == "canceled":
        assert body["output"] is None and final["output"] is None
    else:
        assert body["output"]["outputs"] and final["cost"] == "0.15"


def test_scenario_header_and_partial_keep_some_outputs(sandbox: Sandbox) -> None:
    key = sandbox.new_key()
    with sandbox.api(key) as client:
        run = client.post(
            f"/v1/models/{IMAGE}/runs",
            json={"input": {"prompt": "four cats", "num_images": 4}},
            headers={"X-Sandbox-Scenario": "partial"},
        ).json()
    final = sandbox.wait_for(key, run["id"])
    assert final["status_code"] == "partial_succeeded"
    assert len(final["output"]["outputs"]) == 2 and final["cost"] == "0.30"


def test_slow_marker_keeps_the_run_in_flight_longer(sandbox: Sandbox) -> None:
    key = sandbox.new_key()
    with sandbox.api(key) as client:
        slow = client.post(
            f"/v1/models/{IMAGE}/runs", json={"input": {"prompt": "slowly [slow]"}}
        ).json()
        fast = client.post(f"/v1/models/{IMAGE}/runs", json={"input": {"prompt": "quickly"}}).json()
        assert sandbox.wait_for(key, fast["id"])["status_code"] == "succeeded"
        assert client.get(f"/v1/runs/{slow['id']}").json()["status_code"] in (
            "queued",
            "dispatching",
            "running",
        )


def test_failed_deliveries_are_retried_with_backoff_and_recorded(
    sandbox: Sandbox, callback_receiver: CallbackReceiver
) -> None:
    key, secret = org_with_secret(sandbox)
    callback_receiver.statuses = [500, 503]
    run = launch(sandbox, key, callback_receiver.url, "retry me")
    received = callback_receiver.wait(3)
    assert len({r.body for r in received}) == 1, "every attempt sends the same frozen bytes"
    assert all(
        r.headers["Runflow-Signature"] == expected_signature(r.body, secret) for r in received
    )
    assert len({r.headers["Runflow-Request-Id"] for r in received}) == 1
    # Exponential: the second gap (0.2 s) is longer than the first (0.1 s).
    gaps = [b.at - a.at for a, b in itertools.pairwise(received)]
    assert gaps[0] >= 0.08 and gaps[1] >= 0.18
    with sandbox.api(key) as client:
        history = client.get(f"/v1/runs/{run['id']}/callback").json()
    (delivery,) = history
    assert delivery["status_code"] == "succeeded" and delivery["attempt_count"] == 3
    assert [a["status_code"] for a in delivery["attempts"]] == [500, 503, 200]
    assert delivery["payload_bytes"].encode() == received[0].body
    assert delivery["is_automatic"] is True and delivery["signing_secret_id"]
    ledger = sandbox.ledger(key)["callbacks"]
    assert [c["status_code"] for c in ledger] == [500, 503, 200]


def test_delivery_gives_up_after_max_attempts(
    sandbox: Sandbox, callback_receiver: CallbackReceiver
) -> None:
    key = sandbox.new_key()
    callback_receiver.default_status = 500
    run = launch(sandbox, key, callback_receiver.url, "never accepted")
    callback_receiver.wait(4)
    with sandbox.api(key) as client:
        for _ in range(50):
            (delivery,) = client.get(f"/v1/runs/{run['id']}/callback").json()
            if delivery["status_code"] == "failed":
                break
            import time

            time.sleep(0.1)
    assert (
        delivery["status_code"] == "failed"
        and delivery["failure_reason_code"] == "MAX_ATTEMPTS_EXCEEDED"
    )
    assert delivery["attempt_count"] == delivery["max_attempts"] == 4


def test_timeouts_count_as_failed_attempts(
    sandbox: Sandbox, callback_receiver: CallbackReceiver
) -> None:
    key = sandbox.new_key()
    callback_receiver.delay = 1.5  # longer than the sandbox's 1 s callback timeout in tests
    run = launch(sandbox, key, callback_receiver.url, "too slow to answer")
    callback_receiver.wait(1, timeout=20)
    callback_receiver.delay = 0
    callback_receiver.wait(2, timeout=20)
    with sandbox.api(key) as client:
        import time

        for _ in range(60):
            (delivery,) = client.get(f"/v1/runs/{run['id']}/callback").json()
            if delivery["status_code"] == "succeeded":
                break
            time.sleep(0.1)
    assert delivery["attempts"][0]["status_code"] is None
    assert "Timed out" in delivery["attempts"][0]["error_message"]
    assert delivery["status_code"] == "succeeded"


def test_redelivery_is_rebuilt_from_current_state(
    sandbox: Sandbox, callback_receiver: CallbackReceiver
) -> None:
    key, old_secret = org_with_secret(sandbox)
    run = launch(sandbox, key, callback_receiver.url, "redeliver me")
    callback_receiver.wait(1)
    with sandbox.api(key) as client:
        new = client.post("/v1/callback-secrets", json={"label": "rotated"}).json()
        client.patch(f"/v1/callback-secrets/{new['id']}", json={"is_current": True})
        redelivered = client.post(f"/v1/runs/{run['id']}/callback-redeliveries")
        second = callback_receiver.wait(2)[1]
        history = client.get(f"/v1/runs/{run['id']}/callback").json()
        in_flight = client.post(
            f"/v1/models/{IMAGE}/runs",
            json={"input": {"prompt": "still going [slow]"}, "callback_url": callback_receiver.url},
        ).json()
        too_early = client.post(f"/v1/runs/{in_flight['id']}/callback-redeliveries")
        no_url = client.post(
            f"/v1/models/{IMAGE}/runs", json={"input": {"prompt": "no url"}}
        ).json()
        sandbox.wait_for(key, no_url["id"])
        nothing = client.post(f"/v1/runs/{no_url['id']}/callback-redeliveries")
    assert redelivered.status_code == 201 and redelivered.json()["is_automatic"] is False
    # Signed with the organization's current secret, now the rotated one.
    assert second.headers["Runflow-Signature"] == expected_signature(
        second.body, new["plain_secret"]
    )
    assert second.headers["Runflow-Signature"] != expected_signature(second.body, old_secret)
    assert second.json()["run_id"] == run["id"] and second.json()["event"] == "run.completed"
    assert len(history) == 2 and history[1]["is_automatic"] is False
    assert too_early.status_code == 409 and nothing.status_code == 422


def test_batch_callback_envelope(sandbox: Sandbox, callback_receiver: CallbackReceiver) -> None:
    key, secret = org_with_secret(sandbox)
    inputs = [{"prompt": "ok one"}, {"prompt": "bad [fail]"}, {"prompt": "stop [cancel]"}]
    with sandbox.api(key) as client:
        batch = client.post(
            f"/v1/models/{IMAGE}/batches",
            json={"input": inputs, "callback_url": callback_receiver.url, "metadata": {"b": 2}},
        ).json()
    (received,) = callback_receiver.wait(1)
    body = received.json()
    assert received.headers["Runflow-Signature"] == expected_signature(received.body, secret)
    assert (
        body["event"] == "batch.partial_succeeded"
        and body["batch_id"] == batch["id"]
        and "run_id" not in body
    )
    output = body["output"]
    assert (output["succeeded"], output["failed"], output["cancelled"], output["total"]) == (
        1,
        1,
        1,
        3,
    )
    assert [item["run_id"] for item in output["items"]] == [i["run_id"] for i in batch["items"]]
    assert body["metadata"] == {"b": 2} and OFFSET_TIME.fullmatch(body["completed_at"])
    with sandbox.api(key) as client:
        history = client.get(f"/v1/batches/{batch['id']}/callback").json()
        again = client.post(f"/v1/batches/{batch['id']}/callback-redeliveries")
    assert history[0]["status_code"] == "succeeded"
    assert again.status_code == 201
    assert callback_receiver.wait(2)[1].json()["batch_id"] == batch["id"]


def test_callbacks_only_go_to_loopback_by_default(sandbox: Sandbox) -> None:
    key = sandbox.new_key()
    run = launch(sandbox, key, "http://203.0.113.7/hooks/", "nowhere to go")
    sandbox.wait_for(key, run["id"])
    with sandbox.api(key) as client:
        for _ in range(40):
            history = client.get(f"/v1/runs/{run['id']}/callback").json()
            if history:
                break
    assert history[0]["status_code"] == "refused"
    assert (
        history[0]["failure_reason_code"] == "DESTINATION_NOT_ALLOWED"
        and history[0]["attempts"] == []
    )
    (entry,) = sandbox.ledger(key)["callbacks"]
    assert entry["outcome"] == "refused" and entry["status_code"] is None


def test_cancelled_by_admin_sends_run_cancelled(
    sandbox: Sandbox, callback_receiver: CallbackReceiver
) -> None:
    key = sandbox.new_key()
    run = launch(sandbox, key, callback_receiver.url, "wait for it [slow]")
    with sandbox.api(sandbox.new_key(admin=True)) as admin:
        assert (
            admin.post(
                f"/v1/admin/runs/{run['id']}/cancellation", json={"reason": "operator"}
            ).status_code
            == 201
        )
    (received,) = callback_receiver.wait(1)
    assert (received.json()["event"], received.json()["status"]) == ("run.cancelled", "canceled")


def test_output_urls_in_callbacks_download(
    sandbox: Sandbox, callback_receiver: CallbackReceiver
) -> None:
    launch(sandbox, sandbox.new_key(), callback_receiver.url, "download me")
    (received,) = callback_receiver.wait(1)
    output = received.json()["output"]["outputs"][0]
    response = httpx.get(output["url"])
    assert response.status_code == 200 and len(response.content) == output["size_bytes"]
