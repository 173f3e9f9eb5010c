"""``manage.py serve`` keeps the site up: a child that dies is restarted, a crash loop is not.

The real command runs as a subprocess on a scratch SQLite folder (gunicorn and one task
worker, no sandbox, no Demo team, to start fast). Tests find its children in /proc and kill
them for real; Ctrl-C is SIGINT sent to serve alone, as a terminal sends it to the
foreground process group (the children have their own sessions).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from runs.management.commands.serve import RESTART_LIMIT
from tests.processes import child_env, free_port

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(
    bool(os.environ.get("DATABASE_URL")), reason="serve's embedded default runs on SQLite"
)


@dataclass
class Serve:
    process: subprocess.Popen[bytes]
    url: str
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def children(self) -> dict[int, str]:
        """pid -> command line of serve's direct children."""
        found = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                argv = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except (OSError, IndexError):
                continue
            if ppid == self.process.pid:
                found[int(entry.name)] = argv
        return found

    def worker_pid(self, other_than: int = 0, seconds: float = 30) -> int:
        """The task worker's pid, once there is one other than ``other_than``."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for pid, argv in self.children().items():
                if " worker --interval" in argv and pid != other_than:
                    return pid
            time.sleep(0.1)
        raise AssertionError(f"no task worker under serve:\n{self.log()}")

    def answers(self, seconds: float = 60) -> bool:
        """True once the web server serves the sign-in page (gunicorn boots after the banner)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/accounts/login/", timeout=10).status_code == 200:
                    return True
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        return False

    def wait_for_log(self, text: str, seconds: float = 30) -> None:
        deadline = time.monotonic() + seconds
        while text not in self.log():
            assert time.monotonic() < deadline, f"{text!r} not in:\n{self.log()}"
            time.sleep(0.1)


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie, dead but not yet reaped, counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.fixture(scope="module")
def var_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Shared by the tests in turn: the second serve finds the database already migrated.
    return tmp_path_factory.mktemp("serve-var")


@pytest.fixture
def serve(var_dir: Path, tmp_path: Path) -> Iterator[Serve]:
    yield from run_serve(var_dir, tmp_path, ["--no-sandbox", "--no-demo"], log_level="WARNING")


def run_serve(var_dir: Path, tmp_path: Path, options: list[str], log_level: str) -> Iterator[Serve]:
    """``manage.py serve`` with ``options``, until the test is done with it."""
    port = free_port()
    env = child_env(RUNFLOW_VAR_DIR=str(var_dir), PYTHONUNBUFFERED="1", LOG_LEVEL=log_level)
    log_path = tmp_path / "serve.log"
    argv = [
        sys.executable, "manage.py", "serve", "--port", str(port), "--workers", "1",
        "--task-workers", "1", *options,
    ]  # fmt: skip
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    site = Serve(process, f"http://127.0.0.1:{port}", log_path)
    try:
        site.wait_for_log("Press Ctrl-C to stop.", seconds=120)
        assert site.answers(), site.log()
        yield site
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def test_a_killed_worker_is_restarted_and_ctrl_c_still_stops_everything(serve: Serve) -> None:
    first = serve.worker_pid()
    os.kill(first, signal.SIGKILL)
    serve.wait_for_log("The worker-1 process stopped (killed by SIGKILL); restarting it in 0.5 s.")
    second = serve.worker_pid(other_than=first)
    serve.wait_for_log(f"Restarted the worker-1 process (pid {second}).")
    assert alive(second)
    assert serve.process.poll() is None, serve.log()
    assert serve.answers(), serve.log()

    children = list(serve.children())
    serve.process.send_signal(signal.SIGINT)
    assert serve.process.wait(timeout=30) == 0, serve.log()
    assert "Stopped." in serve.log()
    assert not [pid for pid in children if alive(pid)], "a child outlived serve"


def test_a_worker_that_keeps_dying_makes_serve_give_up(serve: Serve) -> None:
    web = [pid for pid, argv in serve.children().items() if "gunicorn" in argv]
    pid = 0
    for _ in range(RESTART_LIMIT):
        pid = serve.worker_pid(other_than=pid)
        os.kill(pid, signal.SIGKILL)
    assert serve.process.wait(timeout=60) == 1, serve.log()
    assert (
        f"The worker-1 process stopped (killed by SIGKILL), {RESTART_LIMIT} times within 60 s; "
        "giving up and stopping the site."
    ) in serve.log()
    # Each earlier death was followed by a restart, each after a longer wait.
    assert "restarting it in 0.5 s." in serve.log() and "restarting it in 4 s." in serve.log()
    assert web and not alive(web[0]), "the web server outlived serve"


@pytest.fixture
def serve_with_sandbox(var_dir: Path, tmp_path: Path) -> Iterator[Serve]:
    options = ["--sandbox-port", str(free_port())]  # with the Demo team, as out of the box
    yield from run_serve(var_dir, tmp_path, options, log_level="INFO")


def test_the_sandbox_answers_before_anything_calls_it(serve_with_sandbox: Serve) -> None:
    """QA: ~23 "ConnectError" lines while the sandbox booted (the Demo setup and the
    worker's catalog sync raced it). serve now waits for the sandbox to listen first."""
    serve = serve_with_sandbox
    serve.wait_for_log("Catalog synced", seconds=60)  # the worker's first call, answered
    log = serve.log()
    assert "Runflow GET /v1/health → 200 (attempt 1)" in log  # the Demo team's first call
    assert "ConnectError" not in log and "did not answer" not in log, log
    assert log.index("Runflow sandbox listening") < log.index("Runflow GET /v1/health")
