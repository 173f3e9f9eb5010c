"""Worker: in-flight runs polled per second against the sandbox, against a bare httpx loop.

A stack (sandbox, one ``db_worker``) on SQLite with 200 runs in flight upstream (the sandbox
is slowed so none ends during the measurement). With the worker stopped, one ``poll_run``
task per run is queued, then the worker is started and timed until it has made 200 polls:
each claims its task, claims the run (compare-and-set), calls ``GET /v1/runs/<id>`` through
the site's client, applies the report and queues the next poll. The comparison is the
same 200 ``GET /v1/runs/<id>`` calls made by a bare sequential ``httpx`` loop (one worker
does one task at a time). The per-team upstream budget (120 calls a minute by default) is
lifted for this measurement (``bench/settings.py``).

    uv run python bench/worker_polling.py
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import figure, peak_rss_mb
from runs.runflow.client import RunflowClient
from tests.plugins.faults import start_stack

RUNS = 200

PREPARE = """
from runs.connection.keys import decrypt
from django_tasks_db.models import DBTaskResult
def submitted(uuids):
    return Run.objects.filter(uuid__in=uuids, runflow_id__isnull=False).count()
def arm(uuids):
    DBTaskResult.objects.filter(task_path__endswith="poll_run").delete()
    Run.objects.filter(uuid__in=uuids).update(next_poll_at=None)
    from runs.tasks.polling import poll_run
    for pk in Run.objects.filter(uuid__in=uuids).values_list("pk", flat=True):
        poll_run.enqueue(pk)
def span(since):
    from django.utils.dateparse import parse_datetime
    done = DBTaskResult.objects.filter(
        task_path__endswith="poll_run", status="SUCCESSFUL", finished_at__gte=parse_datetime(since)
    ).order_by("finished_at").values_list("finished_at", flat=True)
    times = list(done)
    return (times[-1] - times[0]).total_seconds(), len(times)
def profile(uuid):
    import time
    from django.db import connection
    from runs.tasks.polling import poll_run
    counts = {"queries": 0, "writes": 0}
    def count(execute, sql, params, many, context):
        counts["queries"] += 1
        if sql.lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE")):
            counts["writes"] += 1
        return execute(sql, params, many, context)
    run = Run.objects.get(uuid=uuid)
    Run.objects.filter(pk=run.pk).update(next_poll_at=None)
    with connection.execute_wrapper(count):
        started = time.perf_counter()
        poll_run.call(run.pk)
        counts["ms"] = (time.perf_counter() - started) * 1000
    return counts
def polled(since):
    from django.utils.dateparse import parse_datetime
    return DBTaskResult.objects.filter(
        task_path__endswith="poll_run", status="SUCCESSFUL", finished_at__gte=parse_datetime(since)
    ).count()
result = decrypt(key)
"""

SAVE = """
import uuid
from django.utils import timezone
now = timezone.now()
rows = [Run(team=team, created_by=membership.user, key=key, api_url=key.api_url,
            model_id="google/nano-banana-pro", input={{"prompt": "poll bench"}}, status="queued",
            runflow_id=uuid.UUID(i), created_at=now, submitted_at=now, queued_at=now)
        for i in {ids!r}]
Run.objects.bulk_create(rows)
result = [str(r.uuid) for r in rows]
"""


def per_client_ms(make_and_close: Callable[[], None], count: int = 20) -> float:
    make_and_close()  # the first one pays for imports and the shared context
    started = time.perf_counter()
    for _ in range(count):
        make_and_close()
    return (time.perf_counter() - started) * 1000 / count


def main() -> None:
    stack = start_stack(
        Path(tempfile.mkdtemp(prefix="bench-worker-")),
        workers=1,
        extra_env={"DJANGO_SETTINGS_MODULE": "bench.settings"},
        sandbox_env={"SANDBOX_STEP_SECONDS": "600"},
    )
    try:
        plain_key = stack.run(PREPARE)
        stack.kill("worker-1")
        headers = {"Authorization": f"Bearer {plain_key}"}
        # The runs are created upstream directly (no submit tasks to wait for), then saved
        # on the site as the submit task would have left them: accepted, in flight.
        ids = []
        with httpx.Client(base_url=stack.sandbox_url, headers=headers, timeout=30) as client:
            for n in range(RUNS):
                answer = client.post(
                    "/v1/models/google/nano-banana-pro/runs",
                    json={"input": {"prompt": f"poll bench {n}"}, "client_ref": f"bench-{n}"},
                )
                answer.raise_for_status()
                ids.append(answer.json()["id"])
        uuids = stack.run(SAVE.format(ids=ids))
        stack.run(f"arm({uuids!r})")
        since = stack.run("from django.utils import timezone\nresult = timezone.now().isoformat()")
        before = len(stack.ledger()["requests"])
        started = time.monotonic()
        stack.start_worker(1)
        while stack.run(f"result = polled({since!r})") < RUNS:
            assert time.monotonic() - started < 90, "the worker did not make its polls"
            time.sleep(0.05)
        wall_seconds = time.monotonic() - started
        busy_seconds, counted = stack.run(f"result = span({since!r})")
        worker_seconds = busy_seconds * RUNS / max(counted - 1, 1)
        gets = [
            r
            for r in stack.ledger()["requests"][before:]
            if r["method"] == "GET" and r["path"].startswith("/v1/runs/")
        ]
        rss = max(peak_rss_mb(pid) for pid in stack.pids("worker-1"))
        stack.kill("worker-1")
        profile = stack.run(f"result = profile({uuids[0]!r})")

        started = time.monotonic()
        with httpx.Client(base_url=stack.sandbox_url, headers=headers, timeout=30) as client:
            for runflow_id in ids:
                client.get(f"/v1/runs/{runflow_id}").raise_for_status()
        bare_seconds = time.monotonic() - started

        worker_rate, bare_rate = RUNS / worker_seconds, RUNS / bare_seconds
        figure(
            "worker_polling",
            f"{worker_rate / bare_rate:.2f}x of a bare httpx loop | worker {worker_rate:.0f} "
            f"polls/s ({counted} polls, first to last task {busy_seconds:.1f} s; "
            f"{wall_seconds:.1f} s with start-up; {len(gets)} upstream GETs) "
            f"| bare loop {bare_rate:.0f} GETs/s | {RUNS} runs in flight, one worker, "
            f"SQLite | worker peak RSS {rss:.0f} MiB | at the default cadence (2.5 s) one worker "
            f"keeps up with ~{worker_rate * 2.5:.0f} runs in flight",
        )
        client_ms = per_client_ms(lambda: RunflowClient(stack.sandbox_url, plain_key).close())
        bare_client_ms = per_client_ms(lambda: httpx.Client().close())
        figure(
            "worker_poll_profile",
            f"one poll_run = {profile['queries']} queries, {profile['writes']} writes, "
            f"{profile['ms']:.1f} ms in-process (the queue's claim and result rows come on top); "
            f"the RunflowClient made per poll costs {client_ms:.2f} ms (it shares the "
            f"process's SSL context; a bare httpx.Client, which loads the CA bundle, "
            f"{bare_client_ms:.1f} ms)",
        )
    finally:
        stack.stop()


if __name__ == "__main__":
    main()
