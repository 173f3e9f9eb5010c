"""Results against the live sandbox: the real ``serve`` (gunicorn, workers) and real faults.

Runs are launched in the live site's Demo team (wired to its sandbox); the sandbox calls the
site's callback URL for real, with its fault switches on, and the site's worker polls. Then
the sandbox's ledger and ours are compared: every callback the sandbox got a 2xx for is in
our ledger as often as it was accepted, nothing else is, and every run ended as Runflow says
("lost 0 / N").
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.plugins.live import LiveSite

pytestmark = pytest.mark.sandbox

MODEL = "google/nano-banana-pro"
EVENT_STATUS = {
    "run.completed": "succeeded",
    "run.failed": "failed",
    "run.cancelled": "canceled",
    "run.partial_succeeded": "partial_succeeded",
}
TERMINAL = set(EVENT_STATUS.values())
PROMPTS = [
    "a fox in snow",
    "a lighthouse [fail]",
    "two cats [partial]",
    "a red kite",
    "a city [cancel]",
    "a pear",
]


@pytest.fixture
def faults(live_site: LiveSite) -> Iterator[Any]:
    def set_faults(**switches: Any) -> None:
        response = httpx.post(f"{live_site.sandbox_url}/_sandbox/faults", json=switches, timeout=5)
        assert response.status_code == 200, response.text

    httpx.post(f"{live_site.sandbox_url}/_sandbox/reset", timeout=5).raise_for_status()
    yield set_faults
    httpx.post(f"{live_site.sandbox_url}/_sandbox/reset", timeout=5).raise_for_status()


def launch(site: LiveSite, prompts: list[str]) -> list[str]:
    """Launch one run per prompt in the Demo team, the way the launch page does."""
    code = f"""
import json
from runs.launching import launch_run
from runs.models import Membership
membership = Membership.objects.select_related("team", "user").get(
    team__name="Demo", user__username="admin"
)
runs = [launch_run(membership, {MODEL!r}, {{"prompt": prompt}}) for prompt in {prompts!r}]
print(json.dumps([str(run.uuid) for run in runs]))
"""
    return list(json.loads(site.shell(code).strip().splitlines()[-1]))


def local_state(site: LiveSite, uuids: list[str]) -> dict[str, Any]:
    code = f"""
import json
from runs.models import Run
out = {{}}
for run in Run.objects.filter(uuid__in={uuids!r}).prefetch_related("outputs", "deliveries"):
    out[str(run.uuid)] = {{
        "status": run.status,
        "runflow_id": str(run.runflow_id) if run.runflow_id else None,
        "has_anomaly": run.has_anomaly,
        "reported_outputs": len((run.output or {{}}).get("outputs") or []),
        "outputs": [[o.index, o.archive_state, o.archive_error] for o in run.outputs.all()],
        "deliveries": [
            [d.source, d.request_id, d.outcome, d.reported_status, d.signature_verified]
            for d in run.deliveries.all()
        ],
    }}
print(json.dumps(out))
"""
    return dict(json.loads(site.shell(code).strip().splitlines()[-1]))


def settled(run: dict[str, Any]) -> bool:
    owed = [o for o in run["outputs"] if o[1] in ("pending", "failed")]
    return run["status"] in TERMINAL and not owed


def wait_until_settled(site: LiveSite, uuids: list[str], seconds: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    while True:
        state = local_state(site, uuids)
        if len(state) == len(uuids) and all(settled(run) for run in state.values()):
            return state
        if time.monotonic() > deadline:
            stuck = {k: (v["status"], v["outputs"]) for k, v in state.items() if not settled(v)}
            raise AssertionError(f"not settled after {seconds}s: {stuck}\n{site.log()[-3000:]}")
        time.sleep(1.0)


def sandbox_ledger(site: LiveSite, runflow_ids: set[str]) -> dict[str, Any]:
    ledger = httpx.get(f"{site.sandbox_url}/_sandbox/ledger", timeout=10).json()
    return {
        "runs": [r for r in ledger["runs"] if r["run_id"] in runflow_ids],
        "callbacks": [c for c in ledger["callbacks"] if c.get("run_id") in runflow_ids],
    }


def compare(site: LiveSite, state: dict[str, Any]) -> dict[str, int]:
    """The sandbox's ledger against ours; returns the figures and asserts nothing is lost."""
    by_runflow = {run["runflow_id"]: run for run in state.values()}
    assert None not in by_runflow, "every run was linked to its upstream run"
    theirs = sandbox_ledger(site, set(by_runflow))
    # One upstream run per launch (R1).
    assert sorted(r["run_id"] for r in theirs["runs"]) == sorted(by_runflow)
    # Every run ended as the sandbox says it did.
    final_event = {c["run_id"]: c["event"] for c in theirs["callbacks"] if c.get("event")}
    for runflow_id, run in by_runflow.items():
        assert run["status"] == EVENT_STATUS[final_event[runflow_id]], (runflow_id, run)
        assert not run["has_anomaly"]
        assert len(run["outputs"]) == run["reported_outputs"]
        assert all(o[1] == "archived" for o in run["outputs"]), run["outputs"]
    # Every callback the sandbox got a 2xx for is in our ledger, once per accepted copy.
    accepted = Counter(
        c["request_id"]
        for c in theirs["callbacks"]
        if c["status_code"] is not None and 200 <= c["status_code"] < 300
    )
    ours = Counter(d[1] for run in state.values() for d in run["deliveries"] if d[0] == "callback")
    lost = sum((accepted - ours).values())
    invented = sum((ours - accepted).values())
    assert lost == 0 and invented == 0, (accepted, ours)
    # Refused (bad signature) attempts left nothing behind.
    refused = {c["request_id"] for c in theirs["callbacks"] if c["status_code"] == 401}
    assert not refused & set(ours)
    # Each run moved to its end exactly once, whichever way the news came.
    for run in state.values():
        applied = [
            d for d in run["deliveries"] if d[2] == "applied" and d[3] in TERMINAL | {"cancelled"}
        ]
        assert len(applied) <= 1, run["deliveries"]
    figures = {
        "runs": len(state),
        "callbacks_accepted": sum(accepted.values()),
        "callbacks_in_our_ledger": sum(ours.values()),
        "callbacks_refused_401": sum(1 for c in theirs["callbacks"] if c["status_code"] == 401),
        "callbacks_dropped": sum(1 for c in theirs["callbacks"] if c["outcome"] == "dropped"),
        "lost": lost,
    }
    # Never a 5xx to Runflow (the access log of the real gunicorn).
    hook_lines = [line for line in site.log().splitlines() if "/hooks/runflow/" in line]
    assert not [line for line in hook_lines if '" 50' in line], hook_lines[-5:]
    print(f"ledger check: lost {lost} / {sum(accepted.values())} accepted callbacks, {figures}")
    return figures


def test_with_callbacks_dropped_every_run_finishes_by_polling(
    live_site: LiveSite, faults: Any
) -> None:
    faults(callbacks={"drop": True})
    uuids = launch(live_site, PROMPTS)
    started = time.monotonic()
    state = wait_until_settled(live_site, uuids)
    elapsed = time.monotonic() - started
    figures = compare(live_site, state)
    assert figures["callbacks_accepted"] == 0 and figures["callbacks_dropped"] >= len(uuids)
    for run in state.values():
        sources = {d[0] for d in run["deliveries"]}
        assert "callback" not in sources
        assert any(d[0] in ("poll", "submit") and d[3] in TERMINAL for d in run["deliveries"])
    print(f"converged by polling: {len(uuids)} runs in {elapsed:.1f} s with callbacks dropped")


def test_duplicate_out_of_order_early_and_badly_signed_callbacks_converge(
    live_site: LiveSite, faults: Any
) -> None:
    faults(
        callbacks={
            "duplicate": 3,
            "out_of_order": {"window": 3, "hold_seconds": 1.0},
            "bad_signature": {"next": 2},
            "early": {"next": 2},
        }
    )
    uuids = launch(live_site, PROMPTS)
    state = wait_until_settled(live_site, uuids)
    figures = compare(live_site, state)
    assert figures["callbacks_refused_401"] >= 2
    assert figures["callbacks_accepted"] >= 3  # the duplicates really arrived
    callbacks = [d for run in state.values() for d in run["deliveries"] if d[0] == "callback"]
    assert all(d[4] for d in callbacks)  # every stored callback was verified
    outcomes = Counter(d[2] for d in callbacks)
    assert outcomes["duplicate"] >= 2, outcomes


def test_legacy_output_shape_from_the_sandbox_is_archived(live_site: LiveSite, faults: Any) -> None:
    faults(legacy_output=True, extra_fields=True)
    uuids = launch(live_site, ["a legacy fox", "a legacy owl"])
    state = wait_until_settled(live_site, uuids)
    compare(live_site, state)
    for run in state.values():
        assert run["outputs"] and all(o[1] == "archived" for o in run["outputs"])


DETAILS = """
import json
from runs.models import Run
out = {}
for run in Run.objects.filter(uuid__in=UUIDS):
    out[str(run.uuid)] = {
        "status": run.status,
        "cost": str(run.cost) if run.cost is not None else None,
        "logs": [log.message for log in run.logs.all()],
        "steps": sorted({step.state for step in run.node_runs.all()}),
        "sources": [d.source for d in run.deliveries.order_by("pk")],
        "failure": run.failure_message,
    }
print(json.dumps(out))
"""


def test_runs_finished_by_callback_get_their_cost_logs_and_steps(
    live_site: LiveSite, faults: Any
) -> None:
    # A callback carries no cost, logs or steps; the worker reads the run once more after it.
    # Reads fail at first, so the callback is surely what ends the runs and the first
    # read after it fails too: the read is tried again once Runflow answers.
    faults(create_error={"status": 503, "routes": "read"})
    uuids = launch(live_site, ["a quiet harbour", "a lighthouse [fail]"])
    code = DETAILS.replace("UUIDS", repr(uuids))

    def wait(until: Any, seconds: float) -> dict[str, Any]:
        deadline = time.monotonic() + seconds
        while True:
            state: dict[str, Any] = json.loads(live_site.shell(code).strip().splitlines()[-1])
            if all(until(r) for r in state.values()) or time.monotonic() > deadline:
                return state
            time.sleep(1.0)

    state = wait(lambda run: run["status"] in TERMINAL, 60)
    assert all("callback" in run["sources"] for run in state.values()), state
    faults(create_error=None)
    state = wait(lambda run: run["cost"] is not None, 60)
    ok, failed = (state[uuid] for uuid in uuids)
    assert ok["status"] == "succeeded" and failed["status"] == "failed", state
    for run in (ok, failed):
        assert run["cost"] is not None, run
        assert run["logs"], run
        assert "running" not in run["steps"] and "queued" not in run["steps"], run
    assert failed["failure"], failed
