"""Live refresh cost: the htmx partials a page polls, against the full page.

In-process (Django's test client through all middleware) on a scratch SQLite database: a
team with 200 runs, 10 of them in flight; one running run with 60 log lines and 4 steps.
Measured, for the run page: the full page, and the poll the page makes every few seconds
when nothing changed (the common case) and when a new log line arrived; for the history:
the full page and its one poll for the in-flight rows.

    uv run python bench/live_refresh.py
"""

from __future__ import annotations

import html
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import figure, median, scratch_django, timed

REPEAT = 30


def seed() -> tuple[object, object, object]:
    from datetime import timedelta

    from django.contrib.auth import get_user_model
    from django.utils import timezone

    from runs.models import Membership, NodeRun, Role, Run, RunLog, Team

    user = get_user_model().objects.create_user("bench", password="x")
    team = Team.objects.create(name="Bench")
    Membership.objects.create(user=user, team=team, role=Role.ADMIN)
    now = timezone.now()
    runs = []
    for n in range(200):
        status = "running" if n < 10 else "succeeded"
        runs.append(
            Run(
                team=team,
                created_by=user,
                api_url="http://127.0.0.1:8765",
                model_id=f"vendor/model-{n % 5}",
                input={"prompt": f"a lighthouse at dusk {n}"},
                status=status,
                created_at=now - timedelta(minutes=n),
                submitted_at=now - timedelta(minutes=n),
                running_at=now - timedelta(minutes=n),
                nodes_total=4,
                nodes_completed=2,
            )
        )
    Run.objects.bulk_create(runs)
    live = Run.objects.filter(team=team, status="running").order_by("-created_at").first()
    assert live is not None
    for n in range(60):
        RunLog.objects.create(
            run=live,
            runflow_id=f"log-{n}",
            level="info",
            message=f"Step progress {n}: denoising at 50 steps",
            timestamp=now + timedelta(seconds=n),
        )
    for n in range(4):
        NodeRun.objects.create(
            run=live,
            runflow_id=f"node-{n}",
            node_id=f"step-{n}",
            state="succeeded" if n < 2 else "running",
        )
    return user, team, live


def measure(client: object, url: str, **headers: str) -> tuple[float, int]:
    answer = client.get(url, **headers)  # type: ignore[attr-defined]
    assert answer.status_code in (200, 286), (url, answer.status_code)
    ms = median(timed(lambda: client.get(url, **headers), REPEAT))  # type: ignore[attr-defined]
    return ms, len(answer.content)


def main() -> None:
    scratch_django("live")
    from django.test import Client

    from runs.models import RunLog

    user, team, live = seed()
    client = Client()
    client.force_login(user)  # type: ignore[arg-type]
    run_url = f"/t/{team.uuid}/runs/{live.uuid}/"  # type: ignore[attr-defined]
    page = client.get(run_url).content.decode()
    poll = re.search(r'id="run-poller"[^>]*hx-get="([^"]+)"', page)
    assert poll, "the run page of a running run has no poller"
    poll_url = html.unescape(poll.group(1))
    hx = {"HTTP_HX_REQUEST": "true"}
    full_ms, full_bytes = measure(client, run_url)
    idle_ms, idle_bytes = measure(client, poll_url, **hx)
    RunLog.objects.create(run=live, runflow_id="log-new", level="info", message="A new line")
    news_ms, news_bytes = measure(client, poll_url, **hx)
    figure(
        "live_refresh_run_page",
        f"poll with nothing new = {idle_bytes / full_bytes:.1%} of the bytes and "
        f"{idle_ms / full_ms:.0%} of the server time of the full page | poll with a new log "
        f"line {news_bytes / full_bytes:.1%} bytes, {news_ms / full_ms:.0%} time | full page "
        f"{full_bytes / 1024:.1f} KiB in {full_ms:.1f} ms; idle poll {idle_bytes} B in "
        f"{idle_ms:.1f} ms; new-line poll {news_bytes} B in {news_ms:.1f} ms "
        "| 60 log lines, 4 steps",
    )
    history_url = f"/t/{team.uuid}/"  # type: ignore[attr-defined]
    listing = client.get(history_url).content.decode()
    rows = re.search(r'hx-get="([^"]*/runs/rows/[^"]*)"', listing)
    assert rows, "the history has no poll for its in-flight rows"
    rows_url = html.unescape(rows.group(1))
    page_ms, page_bytes = measure(client, history_url)
    rows_ms, rows_bytes = measure(client, rows_url, **hx)
    figure(
        "live_refresh_history",
        f"rows poll = {rows_bytes / page_bytes:.1%} of the bytes and {rows_ms / page_ms:.0%} of "
        f"the server time of the full page | full history page {page_bytes / 1024:.1f} KiB in "
        f"{page_ms:.1f} ms; poll of the 10 in-flight rows {rows_bytes / 1024:.1f} KiB in "
        f"{rows_ms:.1f} ms | median of {REPEAT}",
    )


if __name__ == "__main__":
    main()
