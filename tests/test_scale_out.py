"""Scale-out proof: two web servers and two task workers on one PostgreSQL, under load.

A scratch database is created (and dropped after) on the local PostgreSQL. The stack runs
two gunicorn servers and two task ``worker`` processes; each worker names a different web
server in the callback URLs of the runs it submits, so callbacks land on both. Forty runs
are launched at once while the sandbox duplicates every callback three times, answers some
creates with a 500 *after* creating the run, and fails some polls. Then the ledgers must
show that nothing was processed twice:

- every launch made exactly one upstream run (sandbox ledger, by ``client_ref``);
- every run's terminal report was applied exactly once, and at most one callback applied;
- every task ran on exactly one worker, and both workers and both web servers took part;
- every callback the sandbox saw acknowledged is in the site's ledger (lost 0 / N).

Skipped, saying so, when PostgreSQL is not reachable at 127.0.0.1:5432.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.plugins.faults import Stack, start_stack

PG = "postgres://postgres@127.0.0.1:5432"
RUNS = 40

pytestmark = pytest.mark.sandbox


def _admin_connection() -> object:
    try:
        import psycopg

        return psycopg.connect(f"{PG}/postgres", autocommit=True, connect_timeout=2)
    except Exception as error:  # any failure to connect means "not here"
        pytest.skip(f"PostgreSQL is not reachable at 127.0.0.1:5432 ({error})")


@pytest.fixture(scope="module")
def pg_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    admin = _admin_connection()
    name = f"scaleout_{uuid.uuid4().hex[:10]}"
    admin.execute(f'CREATE DATABASE "{name}"')  # type: ignore[attr-defined]
    stack = None
    try:
        stack = start_stack(
            Path(tmp_path_factory.mktemp("scale-out")),
            database_url=f"{PG}/{name}",
            webs=2,
            workers=0,
            web_processes=2,
        )
        stack.start_worker(1, site_url=stack.site_urls[0])
        stack.start_worker(2, site_url=stack.site_urls[1])
        yield stack
    finally:
        if stack is not None:
            stack.stop()
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # type: ignore[attr-defined]
        admin.close()  # type: ignore[attr-defined]


TASKS = """
from django_tasks_db.models import DBTaskResult
def task_workers():
    rows = DBTaskResult.objects.values_list("id", "task_path", "status", "worker_ids")
    return [[str(i), path, status, list(workers or [])] for i, path, status, workers in rows]
"""


def test_two_webs_two_workers_process_nothing_twice(pg_stack: Stack) -> None:
    stack = pg_stack
    stack.run(TASKS)
    stack.set_faults(
        callbacks={"duplicate": 3},
        create_error={"status": 500, "after_create": True, "rate": 0.2},
    )
    prompts = [f"scale-out run {n}" + (" [fail]" if n % 10 == 0 else "") for n in range(RUNS)]
    started = time.monotonic()
    uuids: list[str] = stack.run(f"result = launch({prompts!r})")
    expected = {u: ("failed" if "[fail]" in p else "succeeded") for u, p in zip(uuids, prompts)}
    report: dict = {}
    while time.monotonic() - started < 90:
        report = stack.run(f"result = report({uuids!r})")
        if all(report["runs"][u]["status"] == s for u, s in expected.items()):
            break
        time.sleep(0.5)
    converged = time.monotonic() - started
    stack.set_faults()
    runs = report["runs"]
    wrong = {u: runs[u]["status"] for u, s in expected.items() if runs[u]["status"] != s}
    assert not wrong, f"{len(wrong)} runs not in their terminal state after {converged:.0f}s"

    ledger = stack.ledger(stack.setup["org_id"])  # type: ignore[attr-defined]
    per_launch = Counter(e["client_ref"] for e in ledger["runs"] if e.get("client_ref") in runs)
    assert sorted(per_launch.values()) == [1] * RUNS, per_launch.most_common(3)

    twice = [u for u, row in runs.items() if row["terminal_applications"] != 1]
    assert not twice, f"terminal report applied other than once: {twice[:3]}"
    assert all(row["applied_callbacks"] <= 1 for row in runs.values())

    mine = {row["runflow_id"] for row in runs.values()}
    acknowledged = {
        e["request_id"]
        for e in ledger["callbacks"]
        if e.get("run_id") in mine and (e.get("status_code") or 0) // 100 == 2
    }
    # The site's ledger is read after the sandbox's: a callback acknowledged after the report
    # above (a late duplicate) was stored before the site answered 2xx, so it is in this read.
    stored = stack.run(f"result = report({uuids!r})")["request_ids"]
    lost = acknowledged - set(stored)
    assert not lost, f"lost {len(lost)} / {len(acknowledged)} acknowledged callbacks"
    ports = Counter(e["url"].split("/")[2] for e in ledger["callbacks"] if e.get("run_id") in mine)
    assert len(ports) == 2, f"callbacks reached only {list(ports)}"

    tasks = stack.run("result = task_workers()")
    assert all(len(workers) <= 1 for _, _, _, workers in tasks), "a task ran on two workers"
    by_worker = Counter(workers[0].rsplit("-", 1)[0] for _, _, _, workers in tasks if workers)
    assert set(by_worker) == {"worker-1", "worker-2"}, by_worker
    submits = Counter(path for (path,) in ((t[1],) for t in tasks) if path.endswith("submit_run"))
    print(
        f"\nscale-out: {RUNS} runs on 2 web + 2 workers (PostgreSQL) converged in "
        f"{converged:.1f} s; upstream runs per launch 1; terminal applied once {RUNS}/{RUNS}; "
        f"callbacks acknowledged {len(acknowledged)}, lost 0; callbacks per web {dict(ports)}; "
        f"tasks per worker {dict(by_worker)}; submit tasks {sum(submits.values())}"
    )
