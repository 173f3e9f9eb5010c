"""Memory: peak RSS of the web and worker processes under a mixed load.

One stack as ``serve`` runs it (gunicorn 2 processes x 4 threads, one ``db_worker``, the
sandbox) on SQLite, under, at the same time: 100 real runs launched (submitted, polled,
called back, their 1K outputs archived with thumbnails), 1,000 signed callbacks for other
runs, and history and run pages read by a signed-in browser-like client over 2,000 runs.
Peak resident memory (VmHWM) is read from /proc for every process of the stack.

    uv run python bench/memory.py
"""

from __future__ import annotations

import hashlib
import hmac
import re
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.callback_ingest import PREPARE, body_for, drive
from bench.common import figure, peak_rss_mb
from tests.plugins.faults import start_stack

LAUNCHES = 100
CALLBACKS = 1000
PAGE_VIEWS = 300


def read_pages(site: str, username: str, password: str, team: str, run_uuids: list[str]) -> int:
    with httpx.Client(base_url=site, timeout=30, follow_redirects=True) as client:
        login = client.get("/accounts/login/")
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', login.text)
        assert token
        client.post(
            "/accounts/login/",
            data={"username": username, "password": password, "csrfmiddlewaretoken": token[1]},
        )
        views = 0
        for n in range(PAGE_VIEWS):
            url = f"/t/{team}/" if n % 2 else f"/t/{team}/runs/{run_uuids[n % len(run_uuids)]}/"
            assert client.get(url).status_code == 200, url
            views += 1
        return views


def main() -> None:
    stack = start_stack(
        Path(tempfile.mkdtemp(prefix="bench-memory-")),
        workers=1,
        extra_env={"DJANGO_SETTINGS_MODULE": "bench.settings"},
    )
    try:
        team = stack.setup["team"]  # type: ignore[attr-defined]
        prepared = stack.run(PREPARE.replace("range(12000)", "range(2000)"), timeout=300)
        secret = prepared["secret"]
        hook = f"{stack.site_url}/hooks/runflow/{team}/"
        items = []
        for run_uuid, runflow_id in prepared["runs"][:CALLBACKS]:
            body = body_for(run_uuid, runflow_id, team, stack.sandbox_url)
            signature = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
            items.append(
                (hook, body, {"Content-Type": "application/json", "Runflow-Signature": signature})
            )
        password = stack.run(
            "from django.conf import settings\nimport json\n"
            "result = json.loads((settings.VAR_DIR / 'secrets.json').read_text())['DEMO_PASSWORD']"
        )
        started = time.monotonic()
        launched = stack.run(f"result = launch({[f'memory run {n}' for n in range(LAUNCHES)]!r})")
        views: list[int] = []
        reader = threading.Thread(
            target=lambda: views.append(
                read_pages(
                    stack.site_url, "admin", password, team, [u for u, _ in prepared["runs"][:50]]
                )
            )
        )
        reader.start()
        sent = drive(items, 120)
        reader.join()
        while time.monotonic() - started < 120:
            done = stack.run(
                f"result = Run.objects.filter(uuid__in={launched!r}, status='succeeded',"
                " outputs__archive_state='archived').distinct().count()"
            )
            if done == LAUNCHES:
                break
            time.sleep(1)
        seconds = time.monotonic() - started
        web = {pid: peak_rss_mb(pid) for pid in stack.pids("web-1")}
        worker = {pid: peak_rss_mb(pid) for pid in stack.pids("worker-1")}
        sandbox = max(peak_rss_mb(pid) for pid in stack.pids("sandbox"))
        master = stack.processes["web-1"].pid
        gunicorn_workers = [rss for pid, rss in web.items() if pid != master]
        figure(
            "memory",
            f"web {max(gunicorn_workers):.0f} MiB peak per gunicorn process "
            f"({len(gunicorn_workers)} processes, master {web[master]:.0f} MiB), worker "
            f"{max(worker.values()):.0f} MiB peak | load in {seconds:.0f} s: {LAUNCHES} runs "
            f"launched to archived ({done} done), {sent['count']} signed callbacks "
            f"({len(sent['errors'])} errors), {sum(views)} page views | sandbox {sandbox:.0f} MiB",
        )
    finally:
        stack.stop()


if __name__ == "__main__":
    main()
