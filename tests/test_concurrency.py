"""The same callback ten times at once gives exactly one transition (W8, D2).

Real threads, each with its own database connection, against a database that really runs
transactions side by side: PostgreSQL, or SQLite in a *file* (the in-memory test database
shares one cache between connections and answers "table is locked" instead of waiting).

On in-memory SQLite this module runs itself again in a subprocess with
``SQLITE_TEST_FILE=1`` (the settings then put the test database in a file), so the plain
``uv run pytest`` still proves it on SQLite; on PostgreSQL it runs directly.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.db import connection
from django.test import Client

from runs import transitions
from runs.callbacks import process_delivery, store_callback
from runs.models import Delivery, Outcome, Output, Run, Source, Status, Team
from runs.transitions import Report, apply_report
from tests.hooks_support import SECRET, add_secret, fixture, make_run, post_callback

ROOT = Path(__file__).resolve().parents[1]
THREADS = 10


def _in_memory_sqlite() -> bool:
    """Whether the *test* database is SQLite in memory (decided before it is created)."""
    database = settings.DATABASES["default"]
    return database["ENGINE"].endswith("sqlite3") and not database.get("TEST", {}).get("NAME")


def test_runs_on_file_backed_sqlite(tmp_path: Path) -> None:
    if not _in_memory_sqlite():
        pytest.skip("this database already runs the concurrency tests directly")
    env = {
        **os.environ,
        "SQLITE_TEST_FILE": "1",
        "RUNFLOW_VAR_DIR": str(tmp_path),
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("DATABASE_URL", None)
    (tmp_path / "static").mkdir()
    result = subprocess.run(
        [sys.executable, "-m", "pytest", __file__, "-q", "-p", "no:randomly", "-x"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    summary = result.stdout.strip().splitlines()[-1]
    # Everything ran in the subprocess except this test itself (skipped there).
    assert "5 passed, 1 skipped" in summary, summary


@pytest.fixture
def outputs_hook(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Record the ``on_outputs`` effect instead of copying files (one call per transition)."""
    calls: list[int] = []
    lock = threading.Lock()

    def record(run_id: int) -> None:
        with lock:
            calls.append(run_id)

    monkeypatch.setattr(transitions, "on_outputs", [record])
    return calls


@pytest.fixture
def team(transactional_db: None) -> Iterator[Team]:
    if _in_memory_sqlite():
        pytest.skip("needs a database shared by real connections: see the subprocess test")
    team = Team.objects.create(name="Concurrent")
    add_secret(team, SECRET)
    yield team


def together(jobs: list[Callable[[], Any]]) -> list[Any]:
    """Run ``jobs`` in threads released at the same instant; each uses its own connection."""
    barrier = threading.Barrier(len(jobs))
    results: list[Any] = [None] * len(jobs)
    errors: list[BaseException] = []

    def work(index: int) -> None:
        try:
            barrier.wait(timeout=10)
            results[index] = jobs[index]()
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(jobs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    return results


@pytest.mark.parametrize("round_", range(3))
def test_same_callback_ten_times_at_once_applies_once(
    team: Team, outputs_hook: list[int], round_: int
) -> None:
    runflow_id = uuid.uuid4()
    run = make_run(team, runflow_id=runflow_id, status=Status.RUNNING)
    body = fixture("run_completed").replace(
        b"0190f3c2-7a1b-7c3d-9e4f-0123456789ab", str(runflow_id).encode()
    )
    client = Client()  # one handler, shared: each request still opens its thread's connection
    responses = together([lambda: post_callback(client, team, body)] * THREADS)
    assert sorted(r.status_code for r in responses) == [200] * THREADS
    outcomes = sorted(r.json()["outcome"] for r in responses)
    assert outcomes == sorted([Outcome.APPLIED] + [Outcome.DUPLICATE] * (THREADS - 1))
    run.refresh_from_db()
    assert run.status == Status.SUCCEEDED
    assert Output.objects.filter(run=run).count() == 2
    assert outputs_hook == [run.pk]  # the archiving effect fired once
    assert Delivery.objects.filter(run=run, outcome=Outcome.APPLIED).count() == 1
    assert Delivery.objects.filter(run=run).count() == THREADS  # every one is in the ledger


def test_callbacks_and_polls_racing_give_one_transition(
    team: Team, outputs_hook: list[int]
) -> None:
    runflow_id = uuid.uuid4()
    run = make_run(team, runflow_id=runflow_id, status=Status.RUNNING)
    body = fixture("run_completed").replace(
        b"0190f3c2-7a1b-7c3d-9e4f-0123456789ab", str(runflow_id).encode()
    )
    output = {"outputs": [{"type": "image", "url": "https://cdn.test/a.png"}]}

    def callback() -> str:
        return process_delivery(store_callback(team, body, {}, ""))

    def poll() -> str:
        fresh = Run.objects.get(pk=run.pk)
        return apply_report(fresh, Report(status="succeeded", output=output), source=Source.POLL)

    outcomes = together([callback, poll] * (THREADS // 2))
    assert outcomes.count(Outcome.APPLIED) == 1
    assert set(outcomes) <= {Outcome.APPLIED, Outcome.DUPLICATE}
    assert outputs_hook == [run.pk]
    run.refresh_from_db()
    assert run.status == Status.SUCCEEDED
    assert Output.objects.filter(run=run).count() in (1, 2)  # whichever report won


def test_conflicting_terminal_reports_at_once_keep_one_and_flag_it(
    team: Team, outputs_hook: list[int]
) -> None:
    run = make_run(team, runflow_id=uuid.uuid4(), status=Status.RUNNING)

    def report(status: str) -> Callable[[], str]:
        def apply() -> str:
            return apply_report(
                Run.objects.get(pk=run.pk), Report(status=status), source=Source.POLL
            )

        return apply

    outcomes = together([report("failed"), report("canceled")] * (THREADS // 2))
    assert outcomes.count(Outcome.APPLIED) == 1
    run.refresh_from_db()
    assert run.status in (Status.FAILED, Status.CANCELED)
    assert run.has_anomaly
    assert outcomes.count(Outcome.CONFLICT) == THREADS // 2
