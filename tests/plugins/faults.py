"""A real stack, process by process, for fault, scale-out and benchmark runs.

``manage.py serve`` supervises its children and restarts one that dies, which is right for
a user and wrong for a test that kills processes on purpose and decides itself when they come
back. ``Stack`` starts the same parts itself, each in its own process group so each can be
killed and restarted alone:

- the Runflow sandbox (fast timings, its callbacks allowed only to this site);
- ``web-N``: gunicorn processes serving ``runflow_site.wsgi`` (the production server);
- ``worker-N``: ``manage.py worker`` task workers (as ``serve`` runs them);
- ``control``: one long-lived ``manage.py shell`` that runs Python sent over stdin against
  the same database, so a test can launch runs and read state in milliseconds instead of
  starting Django for every question.

Each stack lives in a scratch var dir with its own SQLite file, or on a PostgreSQL database
given by ``database_url``. Loaded with ``-p tests.plugins.faults`` (pyproject.toml); it must
not import Django models (the benchmarks import it too, outside pytest).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.processes import child_env, free_port

ROOT = Path(__file__).resolve().parents[2]
RESULT = "@@control@@"

# Fast sandbox: a run ends about a second after it is created; a failed callback is tried
# four times within a second (so a site that is down is left to its poller quickly).
SANDBOX_ENV = {
    "SANDBOX_STEP_SECONDS": "0.2",
    "SANDBOX_SLOW_FACTOR": "10",
    "SANDBOX_CALLBACK_BACKOFF": "0.1",
    "SANDBOX_CALLBACK_TIMEOUT": "5",
    "SANDBOX_CALLBACK_ATTEMPTS": "4",
}

CONTROL_LOOP = f"""
import json, sys, traceback
import django.db
namespace = {{}}
for line in sys.stdin:
    request = json.loads(line)
    try:
        namespace["result"] = None
        exec(request["code"], namespace)
        answer = {{"ok": True, "result": namespace.get("result")}}
    except BaseException:
        answer = {{"ok": False, "error": traceback.format_exc()}}
    finally:
        django.db.close_old_connections()
    sys.stdout.write("{RESULT}" + json.dumps(answer, default=str) + "\\n")
    sys.stdout.flush()
"""


class ControlError(AssertionError):
    pass


@dataclass
class Control:
    """Python run inside the stack's Django, one snippet at a time."""

    process: subprocess.Popen[str]
    lock: threading.Lock = field(default_factory=threading.Lock)

    def run(self, code: str, timeout: float = 60) -> Any:
        """Execute ``code``; whatever it assigns to ``result`` comes back (JSON)."""
        assert self.process.stdin is not None and self.process.stdout is not None
        with self.lock:
            self.process.stdin.write(json.dumps({"code": code}) + "\n")
            self.process.stdin.flush()
            deadline = time.monotonic() + timeout
            while True:
                if time.monotonic() > deadline:
                    raise ControlError(f"control did not answer within {timeout}s")
                line = self.process.stdout.readline()
                if not line:
                    raise ControlError(f"control exited ({self.process.poll()})")
                if line.startswith(RESULT):
                    answer = json.loads(line[len(RESULT) :])
                    break
        if not answer["ok"]:
            raise ControlError(answer["error"])
        return answer["result"]

    def close(self) -> None:
        if self.process.poll() is None:
            assert self.process.stdin is not None
            self.process.stdin.close()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()


@dataclass
class Stack:
    var_dir: Path
    env: dict[str, str]
    site_url: str
    sandbox_url: str
    web_ports: list[int]
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    control: Control | None = None
    web_args: list[str] = field(default_factory=list)

    # ---- processes ----

    def _spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        log = (self.var_dir / f"{name}.log").open("ab")
        self.processes[name] = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=env or self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()

    def start_sandbox(self, **extra_env: str) -> None:
        port = int(self.sandbox_url.rsplit(":", 1)[1])
        argv = [
            sys.executable, "manage.py", "sandbox", "--port", str(port),
            "--secrets-file", str(self.var_dir / "sandbox-secrets.json"),
        ]  # fmt: skip
        for url in self.site_urls:
            argv += ["--callback-base", url]
        self._spawn("sandbox", argv, {**self.env, **SANDBOX_ENV, **extra_env})
        wait_for(f"{self.sandbox_url}/v1/health", self.processes["sandbox"], self.log("sandbox"))

    @property
    def site_urls(self) -> list[str]:
        return [f"http://127.0.0.1:{port}" for port in self.web_ports]

    def start_web(self, number: int = 1, *, workers: int = 2, threads: int = 4) -> None:
        port = self.web_ports[number - 1]
        argv = [
            sys.executable, "-m", "gunicorn", "runflow_site.wsgi:application",
            "--bind", f"127.0.0.1:{port}", "--workers", str(workers),
            "--worker-class", "gthread", "--threads", str(threads),
            "--timeout", "60", "--graceful-timeout", "5", "--log-level", "warning",
            *self.web_args,
        ]  # fmt: skip
        name = f"web-{number}"
        self._spawn(name, argv)
        wait_for(f"http://127.0.0.1:{port}/accounts/login/", self.processes[name], self.log(name))

    def start_worker(
        self, number: int = 1, *, interval: float = 0.2, site_url: str | None = None
    ) -> None:
        """A task worker; ``site_url`` is the callback base of the runs it submits."""
        name = f"worker-{number}"
        argv = [
            sys.executable, "manage.py", "worker", "--interval", str(interval),
            "--worker-id", f"{name}-{time.monotonic_ns()}",
        ]  # fmt: skip
        self._spawn(name, argv, {**self.env, "SITE_URL": site_url} if site_url else None)

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Signal a whole process group (gunicorn's master and workers together)."""
        process = self.processes[name]
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, sig)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    def alive(self, name: str) -> bool:
        return self.processes[name].poll() is None

    def pids(self, name: str) -> list[int]:
        """The process and its children (gunicorn workers), for memory readings."""
        root = self.processes[name].pid
        found = [root]
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                if int(stat[1]) in found:
                    found.append(int(entry.name))
        return found

    def log(self, name: str) -> Path:
        return self.var_dir / f"{name}.log"

    def logs(self, name: str) -> str:
        path = self.log(name)
        return path.read_text(errors="replace") if path.exists() else ""

    # ---- the sandbox ----

    def set_faults(self, **faults: Any) -> None:
        httpx.post(f"{self.sandbox_url}/_sandbox/reset", timeout=5).raise_for_status()
        if faults:
            answer = httpx.post(f"{self.sandbox_url}/_sandbox/faults", json=faults, timeout=5)
            assert answer.status_code == 200, answer.text

    def ledger(self, org_id: str | None = None) -> dict[str, Any]:
        params = {"org_id": org_id} if org_id else {}
        answer = httpx.get(f"{self.sandbox_url}/_sandbox/ledger", params=params, timeout=30)
        answer.raise_for_status()
        return answer.json()

    # ---- Django, through the control process ----

    def manage(self, *args: str) -> str:
        result = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        if result.returncode != 0:
            raise AssertionError(f"manage.py {' '.join(args)} failed:\n{result.stderr}")
        return result.stdout

    def start_control(self) -> Control:
        process = subprocess.Popen(
            [sys.executable, "manage.py", "shell", "--no-imports", "-c", CONTROL_LOOP],
            cwd=ROOT,
            env=self.env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=(self.var_dir / "control.log").open("ab"),
            text=True,
            start_new_session=True,
        )
        self.control = Control(process)
        return self.control

    def run(self, code: str, timeout: float = 60) -> Any:
        assert self.control is not None
        return self.control.run(code, timeout)

    def stop(self) -> None:
        if self.control is not None:
            self.control.close()
        for name in list(self.processes):
            self.kill(name, signal.SIGTERM)


def wait_for(url: str, process: subprocess.Popen[bytes], log: Path, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url}: process exited {process.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up in {seconds}s:\n{log.read_text()}")


# Run inside the control process once the database is ready: the Demo team, wired to the
# sandbox (a key and a callback secret made there), and helpers the tests call.
SETUP = """
from runs.demo import ensure_demo
from runs.models import Membership, Team
ensure_demo(sandbox=True)
team = Team.objects.get(name="Demo")
membership = Membership.objects.select_related("team", "user").get(
    team=team, user__username="admin"
)
key = team.default_key()
result = {"team": str(team.uuid), "org_id": key.org_id, "secrets": team.active_secrets().count()}
"""

HELPERS = """
import uuid as _uuid
from runs.launching import launch_run as _launch_run
from runs.models import Delivery, Output, Run, Source, Outcome, TERMINAL

def launch(prompts, model="google/nano-banana-pro"):
    runs = [_launch_run(membership, model, {"prompt": p}) for p in prompts]
    return [str(r.uuid) for r in runs]

def states(uuids):
    rows = Run.objects.filter(uuid__in=uuids).values_list("uuid", "status", "completed_at")
    return {str(u): s for u, s, _ in rows}

def report(uuids):
    runs = {}
    for run in Run.objects.filter(uuid__in=uuids).prefetch_related("deliveries", "outputs"):
        deliveries = list(run.deliveries.all())
        runs[str(run.uuid)] = {
            "status": run.status,
            "runflow_id": str(run.runflow_id or ""),
            "applied_callbacks": sum(
                1 for d in deliveries
                if d.source == Source.CALLBACK and d.outcome == Outcome.APPLIED
            ),
            "terminal_applications": sum(
                1 for d in deliveries
                if d.outcome == Outcome.APPLIED and d.reported_status in TERMINAL
            ),
            "callbacks": sum(1 for d in deliveries if d.source == Source.CALLBACK),
            "outputs": [o.archive_state for o in run.outputs.all()],
        }
    request_ids = list(
        Delivery.objects.filter(source=Source.CALLBACK).exclude(request_id="")
        .values_list("request_id", flat=True)
    )
    return {"runs": runs, "request_ids": request_ids}
"""


def start_stack(
    var_dir: Path,
    *,
    database_url: str | None = None,
    webs: int = 1,
    workers: int = 1,
    web_processes: int = 2,
    extra_env: dict[str, str] | None = None,
    sandbox_env: dict[str, str] | None = None,
) -> Stack:
    """Sandbox, database, Demo team, web and workers; the caller calls ``stop()``."""
    web_ports = [free_port() for _ in range(webs)]
    sandbox_url = f"http://127.0.0.1:{free_port()}"
    env = child_env(
        RUNFLOW_VAR_DIR=str(var_dir),
        SITE_URL=f"http://127.0.0.1:{web_ports[0]}",
        SANDBOX_URL=sandbox_url,
        SANDBOX_ENABLED="1",
        PYTHONUNBUFFERED="1",
        LOG_LEVEL="WARNING",
    )
    if database_url:
        env["DATABASE_URL"] = database_url
    env.update(extra_env or {})
    stack = Stack(var_dir, env, env["SITE_URL"], sandbox_url, web_ports)
    try:
        stack.start_sandbox(**(sandbox_env or {}))
        stack.manage("migrate", "--noinput", "-v", "0")
        stack.manage("createcachetable")
        stack.manage("collectstatic", "--noinput", "-v", "0")
        stack.start_control()
        setup = stack.run(SETUP)
        assert setup["secrets"] >= 1, "the Demo team got no callback secret"
        stack.run(HELPERS)
        # As ``serve`` does before its workers start: one reconcile sweep, then the cycle.
        stack.run("from runs.worker import on_worker_start\nresult = on_worker_start()")
        stack.setup = setup  # type: ignore[attr-defined]
        for number in range(1, webs + 1):
            stack.start_web(number, workers=web_processes)
        for number in range(1, workers + 1):
            stack.start_worker(number)
    except BaseException:
        stack.stop()
        raise
    return stack


@pytest.fixture(scope="module")
def fault_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One SQLite stack for a test module: sandbox, one gunicorn, one worker."""
    stack = start_stack(
        tmp_path_factory.mktemp("fault-stack"),
        extra_env={"SQLITE_BUSY_TIMEOUT": "3"},
    )
    try:
        yield stack
    finally:
        stack.stop()
