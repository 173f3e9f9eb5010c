"""Callback ingest through the production server, against a bare view doing one write.

One gunicorn (2 processes x 4 threads, as ``serve`` runs it) on SQLite. The load is signed
``run.completed`` callbacks, each for a different run in flight, so every one is verified,
stored, parsed, matched and applied (outputs recorded, archiving queued). The comparison is
``bench/urls.py``'s bare view on the same server: one ``Delivery`` row written per request.
Both get the same client (8 keep-alive connections), in alternating rounds.

    uv run python bench/callback_ingest.py
"""

from __future__ import annotations

import hashlib
import hmac
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import figure, peak_rss_mb, percentile
from tests.plugins.faults import start_stack

CONNECTIONS = 8
ROUND_SECONDS = 8.0
ROUNDS = 2
RUNS = 12_000

PREPARE = f"""
import uuid
from django.utils import timezone
from runs.connection import active_secret_values
from runs.models import Run
now = timezone.now()
rows = [
    Run(team=team, created_by=membership.user, api_url=key.api_url, model_id="bench/model",
        input={{"prompt": f"bench {{n}}"}}, status="running", runflow_id=uuid.uuid4(),
        created_at=now, submitted_at=now, running_at=now)
    for n in range({RUNS})
]
Run.objects.bulk_create(rows, batch_size=2000)
result = {{
    "secret": active_secret_values(team)[0],
    "runs": [[str(u), str(r)] for u, r in Run.objects.filter(model_id="bench/model")
             .values_list("uuid", "runflow_id")],
}}
"""

PROFILE = """
import re
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
import time
client = Client()
def post(body, signature):
    return client.post("{url}".replace("http://", "").split("/", 1)[1].join(["/", ""]),
                       body, content_type="application/json", HTTP_RUNFLOW_SIGNATURE=signature)
post({warm_body!r}, "{warm_signature}")  # imports and first-request work, not counted
with CaptureQueriesContext(connection) as queries:
    started = time.perf_counter()
    post({body!r}, "{signature}")
    ms = (time.perf_counter() - started) * 1000
sql = [q["sql"] for q in queries.captured_queries]
writes = [s for s in sql if s.lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE"))]
tables = sorted({{re.findall(r'(?:INTO|UPDATE|FROM) "([a-z_]+)"', s)[0] for s in writes}})
result = {{"queries": len(sql), "writes": len(writes), "ms": ms, "tables": ", ".join(tables)}}
"""


def body_for(run_uuid: str, runflow_id: str, team: str, sandbox: str) -> bytes:
    return json.dumps(
        {
            "event": "run.completed",
            "run_id": runflow_id,
            "status": "succeeded",
            "output": {"outputs": [{"type": "image", "url": f"{sandbox}/files/{runflow_id}.png"}]},
            "duration_ms": 1200,
            "created_at": "2026-05-06T10:00:00.000+00:00",
            "completed_at": "2026-05-06T10:00:01.200+00:00",
            "metadata": {"run": run_uuid, "team": team},
        }
    ).encode()


class Load:
    def __init__(self, url_for: object, bodies: list[tuple[str, bytes, dict[str, str]]]) -> None:
        self.bodies = bodies
        self.lock = threading.Lock()
        self.position = 0

    def take(self) -> tuple[str, bytes, dict[str, str]] | None:
        with self.lock:
            if self.position >= len(self.bodies):
                return None
            item = self.bodies[self.position]
            self.position += 1
            return item


def drive(items: list[tuple[str, bytes, dict[str, str]]], seconds: float) -> dict[str, object]:
    """Send ``items`` over CONNECTIONS threads for at most ``seconds``."""
    load = Load(None, items)
    latencies: list[float] = []
    errors: list[str] = []
    stop_at = time.monotonic() + seconds

    def worker() -> None:
        with httpx.Client(timeout=30) as client:
            while time.monotonic() < stop_at:
                item = load.take()
                if item is None:
                    return
                url, body, headers = item
                started = time.perf_counter()
                try:
                    answer = client.post(url, content=body, headers=headers)
                    if answer.status_code // 100 != 2:
                        errors.append(str(answer.status_code))
                except httpx.HTTPError as error:
                    errors.append(type(error).__name__)
                latencies.append((time.perf_counter() - started) * 1000)

    started = time.monotonic()
    threads = [threading.Thread(target=worker) for _ in range(CONNECTIONS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    return {"count": len(latencies), "seconds": elapsed, "latencies": latencies, "errors": errors}


def main() -> None:
    stack = start_stack(
        Path(tempfile.mkdtemp(prefix="bench-ingest-")),
        workers=0,
        extra_env={
            "DJANGO_SETTINGS_MODULE": "bench.settings",
            "ALLOWED_HOSTS": "127.0.0.1,localhost,testserver",
        },
    )
    try:
        team = stack.setup["team"]  # type: ignore[attr-defined]
        prepared = stack.run(PREPARE, timeout=300)
        secret = prepared["secret"]
        hook = f"{stack.site_url}/hooks/runflow/{team}/"
        bare = f"{stack.site_url}/bench/bare/{team}/"
        signed: list[tuple[str, bytes, dict[str, str]]] = []
        plain: list[tuple[str, bytes, dict[str, str]]] = []
        for run_uuid, runflow_id in prepared["runs"]:
            body = body_for(run_uuid, runflow_id, team, stack.sandbox_url)
            signature = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
            headers = {"Content-Type": "application/json", "Runflow-Signature": signature}
            signed.append((hook, body, headers))
            plain.append((bare, body, {"Content-Type": "application/json"}))
        totals = {"hook": [], "bare": []}  # type: dict[str, list[dict[str, object]]]
        for _ in range(ROUNDS):
            totals["bare"].append(drive(plain, ROUND_SECONDS))
            plain = plain[totals["bare"][-1]["count"] :]  # type: ignore[misc]
            totals["hook"].append(drive(signed, ROUND_SECONDS))
            signed = signed[totals["hook"][-1]["count"] :]  # type: ignore[misc]
        summary = {}
        for name, rounds in totals.items():
            count = sum(r["count"] for r in rounds)  # type: ignore[misc]
            seconds = sum(r["seconds"] for r in rounds)  # type: ignore[misc]
            latencies = [x for r in rounds for x in r["latencies"]]  # type: ignore[attr-defined]
            errors = [x for r in rounds for x in r["errors"]]  # type: ignore[attr-defined]
            summary[name] = (
                count / seconds,
                percentile(latencies, 0.5),
                percentile(latencies, 0.99),
                len(errors),
                count,
            )
        applied = stack.run(
            "from runs.models import Run\n"
            "result = Run.objects.filter(model_id='bench/model', status='succeeded').count()"
        )
        profile = stack.run(
            PROFILE.format(
                url=hook,
                warm_body=signed[0][1].decode(),
                warm_signature=signed[0][2]["Runflow-Signature"],
                body=signed[1][1].decode(),
                signature=signed[1][2]["Runflow-Signature"],
            )
        )
        hook_rate, hook_p50, hook_p99, hook_errors, hook_count = summary["hook"]
        bare_rate, bare_p50, bare_p99, bare_errors, _ = summary["bare"]
        rss = max(peak_rss_mb(pid) for pid in stack.pids("web-1"))
        figure(
            "callback_ingest",
            f"{hook_rate / bare_rate:.2f}x of the bare one-write view | signed callbacks "
            f"{hook_rate:.0f}/s p50 {hook_p50:.1f} ms p99 {hook_p99:.1f} ms, "
            f"{hook_errors} errors of {hook_count}, {applied} runs applied | bare view "
            f"{bare_rate:.0f}/s p50 {bare_p50:.1f} ms p99 {bare_p99:.1f} ms, {bare_errors} errors "
            f"| gunicorn 2x4 threads, {CONNECTIONS} connections, SQLite "
            f"| web peak RSS {rss:.0f} MiB",
        )
        figure(
            "callback_ingest_profile",
            f"one callback = {profile['queries']} queries, {profile['writes']} writes, "
            f"{profile['ms']:.1f} ms in-process with no load "
            f"(the bare view: 2 queries, 1 write) | writes: {profile['tables']}",
        )
    finally:
        stack.stop()


if __name__ == "__main__":
    main()
