"""Hypothesis drives callbacks, polls, duplicates and reorderings at one run (W8, W9, R6).

Whatever the interleaving, after every step:
- the status never moves back (rank only grows);
- the first terminal status is the last one (terminal is absorbing);
- outputs exist exactly once, and only for a status that has them;
- a different terminal report after the end is recorded as an anomaly, and nothing else is;
- each report's outcome is the one the transition contract promises.
"""

from __future__ import annotations

import json
import os
import uuid
from typing import Any

import pytest
from django.test import Client
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from runs.callbacks import process_delivery, store_callback
from runs.models import (
    STATUS_RANK,
    TERMINAL,
    WITH_OUTPUTS,
    Delivery,
    Outcome,
    Output,
    Run,
    Source,
    Status,
    Team,
    normalize_status,
)
from runs.transitions import Report, apply_report
from tests.conftest import Cast
from tests.hooks_support import SECRET, add_secret, make_run, post_callback

pytestmark = pytest.mark.django_db

IN_FLIGHT_REPORTS = ["queued", "dispatching", "running"]
TERMINAL_REPORTS = ["succeeded", "failed", "canceled", "cancelled", "partial_succeeded"]
EVENTS = {
    "succeeded": "run.completed",
    "failed": "run.failed",
    "canceled": "run.cancelled",
    "cancelled": "run.cancelled",
    "partial_succeeded": "run.partial_succeeded",
}


def outputs(count: int) -> dict[str, Any]:
    return {
        "outputs": [{"type": "image", "url": f"https://cdn.test/{i}.png"} for i in range(count)]
    }


class RunLifecycle(RuleBasedStateMachine):
    team: Team  # set by the test before the machine runs
    # One client for every example: each new Client loads the middleware (and WhiteNoise
    # scans the static files) again.
    client = Client()

    def __init__(self) -> None:
        super().__init__()
        self.runflow_id = uuid.uuid4()
        self.run = make_run(self.team, status=Status.PENDING)
        self.rank = 0
        self.first_terminal: str | None = None
        self.expected_outputs: int | None = None
        self.conflicts = 0
        self.applied_terminal = 0
        self.bodies: list[bytes] = []

    # ---- what the transition contract promises for one report ----

    def expect(self, reported: str, outcome: str, output: dict[str, Any] | None) -> None:
        new = normalize_status(reported)
        current = Status(Run.objects.values_list("status", flat=True).get(pk=self.run.pk))
        if new is None:
            assert outcome == Outcome.IGNORED
            return
        if outcome == Outcome.APPLIED:
            assert STATUS_RANK[new] > self.rank or (
                self.first_terminal is None and new in TERMINAL and STATUS_RANK[new] >= self.rank
            )
            if new in TERMINAL:
                self.applied_terminal += 1
        if self.first_terminal is None and new in TERMINAL:
            assert outcome == Outcome.APPLIED
            self.first_terminal = new
        elif self.first_terminal is not None and new in TERMINAL and new != self.first_terminal:
            assert outcome == Outcome.CONFLICT
            self.conflicts += 1
        elif self.first_terminal is not None and new in TERMINAL:
            assert outcome == Outcome.DUPLICATE
        first_with_outputs = new == self.first_terminal and new in WITH_OUTPUTS
        if first_with_outputs and output is not None and self.expected_outputs is None:
            self.expected_outputs = len(output.get("outputs", []))
        assert current == (self.first_terminal or current)

    # ---- rules ----

    @rule(
        status=st.sampled_from([*IN_FLIGHT_REPORTS, *TERMINAL_REPORTS, "weird"]),
        count=st.integers(0, 3),
        with_output=st.booleans(),
    )
    def poll(self, status: str, count: int, with_output: bool) -> None:
        output = (
            outputs(count) if with_output and normalize_status(status) in WITH_OUTPUTS else None
        )
        report = Report(
            status=status,
            runflow_id=str(self.runflow_id),
            output=output,
            logs=({"id": f"log-{status}", "message": status},),
        )
        outcome = apply_report(self.run, report, source=Source.POLL)
        self.expect(status, outcome, output)

    @rule(
        status=st.sampled_from(TERMINAL_REPORTS),
        count=st.integers(0, 3),
        by_metadata=st.booleans(),
        via_view=st.booleans(),
    )
    def callback(self, status: str, count: int, by_metadata: bool, via_view: bool) -> None:
        output = outputs(count) if normalize_status(status) in WITH_OUTPUTS else None
        body = json.dumps(
            {
                "event": EVENTS[status],
                "run_id": str(self.runflow_id),
                "status": status,
                "output": output,
                "metadata": {"run": str(self.run.uuid)} if by_metadata else None,
            }
        ).encode()
        outcome = self.deliver(body, via_view)
        if outcome == Outcome.UNMATCHED:
            # No metadata and Runflow's id not known yet: kept for the reconcile sweep.
            assert not by_metadata and self.run_id_unknown()
            return
        self.bodies.append(body)
        self.expect(status, outcome, output)

    @precondition(lambda self: bool(self.bodies))
    @rule(data=st.data())
    def replay(self, data: st.DataObject) -> None:
        body = data.draw(st.sampled_from(self.bodies))
        outcome = self.deliver(body, via_view=False)
        status = json.loads(body)["status"]
        self.expect(status, outcome, json.loads(body)["output"])

    def deliver(self, body: bytes, via_view: bool) -> str:
        if via_view:
            response = post_callback(self.client, self.team, body)
            assert response.status_code == 200
            return str(response.json()["outcome"])
        return process_delivery(store_callback(self.team, body, {}, ""))

    def run_id_unknown(self) -> bool:
        return Run.objects.filter(pk=self.run.pk, runflow_id__isnull=True).exists()

    # ---- invariants ----

    @invariant()
    def status_only_moves_forward_and_terminal_is_absorbing(self) -> None:
        run = Run.objects.get(pk=self.run.pk)
        rank = STATUS_RANK[run.status]
        assert rank >= self.rank
        self.rank = rank
        if self.first_terminal is not None:
            assert run.status == self.first_terminal
        assert self.applied_terminal <= 1

    @invariant()
    def outputs_exist_exactly_once(self) -> None:
        count = Output.objects.filter(run=self.run).count()
        if self.first_terminal in WITH_OUTPUTS:
            assert count == (self.expected_outputs or 0)
        else:
            assert count == 0
        indexes = list(Output.objects.filter(run=self.run).values_list("index", flat=True))
        assert len(indexes) == len(set(indexes))

    @invariant()
    def conflicts_and_only_conflicts_are_anomalies(self) -> None:
        run = Run.objects.get(pk=self.run.pk)
        assert run.has_anomaly == (self.conflicts > 0)
        recorded = Delivery.objects.filter(run=self.run, outcome=Outcome.CONFLICT).count()
        assert recorded <= self.conflicts


def test_any_interleaving_keeps_the_invariants(cast: Cast) -> None:
    add_secret(cast.team, SECRET)
    RunLifecycle.team = cast.team
    run_state_machine_as_test(
        RunLifecycle,
        settings=settings(
            max_examples=int(os.environ.get("STATE_MACHINE_EXAMPLES", "20")),
            stateful_step_count=20,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
        ),
    )
