"""A live Runflow sandbox for tests: ``manage.py sandbox`` as a real subprocess.

Fixtures:
- ``sandbox`` (session): a running sandbox with fast timings; yields a ``Sandbox`` helper with
  ``.url``, ``.new_key()``, ``.api(key)``, ``.set_faults(**)``, ``.reset_faults()``,
  ``.ledger(key=None)``, ``.wait_for(key, run_id)``.
- ``on_sandbox`` (function): the same sandbox, set in the site's settings as its sandbox
  (``SANDBOX_ENABLED``, ``SANDBOX_URL``) for the test.
- ``sandbox_faults`` (function): the same sandbox, with every fault switch cleared after
  the test, for tests that turn faults on.
- ``callback_receiver`` (function): a tiny local HTTP server that records each callback's
  headers and raw body bytes, and answers with the statuses you queue.
- ``start_sandbox`` (function): a factory for an extra sandbox with its own options and
  environment (e.g. a short output TTL), stopped after the test.

Loaded with ``-p tests.plugins.sandbox`` (pyproject.toml); it must not import Django models.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.processes import free_port

ROOT = Path(__file__).resolve().parents[2]
TERMINAL = ("succeeded", "failed", "canceled", "partial_succeeded")

# Fast timings for tests: a run ends in about half a second ([slow] ones take seconds per
# step), a failed callback is retried after 0.1 s, 0.2 s, ...
FAST_ENV = {
    "SANDBOX_STEP_SECONDS": "0.1",
    "SANDBOX_SLOW_FACTOR": "30",
    "SANDBOX_CALLBACK_BACKOFF": "0.1",
    "SANDBOX_CALLBACK_TIMEOUT": "1",
    "SANDBOX_CALLBACK_ATTEMPTS": "4",
}


@dataclass
class Sandbox:
    url: str
    process: subprocess.Popen[bytes] = field(repr=False)
    log_path: Path = field(repr=False)

    def new_key(self, marker: str = "", *, admin: bool = False) -> str:
        """A fresh key, hence a fresh organization (``marker="nocredit"``: one that gets 402)."""
        return f"rf_{'svc' if admin else 'live'}_{marker}{secrets.token_hex(12)}"

    def api(self, key: str | None = None, **options: Any) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(
            base_url=self.url, headers=headers, timeout=options.pop("timeout", 10), **options
        )

    def set_faults(self, **faults: Any) -> dict[str, Any]:
        response = httpx.post(f"{self.url}/_sandbox/faults", json=faults, timeout=5)
        assert response.status_code == 200, response.text
        return response.json()

    def reset_faults(self) -> None:
        httpx.post(f"{self.url}/_sandbox/reset", timeout=5).raise_for_status()

    def ledger(self, key: str | None = None) -> dict[str, Any]:
        params = {}
        if key is not None:
            with self.api(key) as client:
                params["org_id"] = client.get("/v1/auth/me").json()["memberships"][0]["org"]["id"]
        response = httpx.get(f"{self.url}/_sandbox/ledger", params=params, timeout=10)
        response.raise_for_status()
        return response.json()

    def wait_for(
        self, key: str, run_id: str, *, timeout: float = 15, until: tuple[str, ...] = TERMINAL
    ) -> dict[str, Any]:
        """Poll the run until its status is in ``until``; return the run."""
        deadline = time.monotonic() + timeout
        with self.api(key) as client:
            while True:
                response = client.get(f"/v1/runs/{run_id}")
                assert response.status_code == 200, response.text
                run = response.json()
                if run["status_code"] in until:
                    return run
                if time.monotonic() > deadline:
                    raise AssertionError(
                        f"run {run_id} still {run['status_code']} after {timeout}s"
                    )
                time.sleep(0.05)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def launch_sandbox(log_dir: Path, *args: str, env: dict[str, str] | None = None) -> Sandbox:
    port = free_port()
    environment = {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}
    environment.update(FAST_ENV)
    environment.update(env or {})
    environment["PYTHONUNBUFFERED"] = "1"
    log_path = log_dir / f"sandbox-{port}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "manage.py",
                "sandbox",
                "--port",
                str(port),
                "--secrets-file",
                "none",
                *args,
            ],
            cwd=ROOT,
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    sandbox = Sandbox(f"http://127.0.0.1:{port}", process, log_path)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the sandbox exited with {process.returncode}:\n{sandbox.log()}")
        try:
            if httpx.get(f"{sandbox.url}/v1/health", timeout=1).status_code == 200:
                return sandbox
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    stop_sandbox(sandbox)
    raise RuntimeError(f"the sandbox did not come up:\n{sandbox.log()}")


def stop_sandbox(sandbox: Sandbox) -> int | None:
    if sandbox.process.poll() is None:
        sandbox.process.send_signal(signal.SIGTERM)
        try:
            sandbox.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(sandbox.process.pid, signal.SIGKILL)
            sandbox.process.wait()
    return sandbox.process.returncode


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    instance = launch_sandbox(tmp_path_factory.mktemp("sandbox"))
    try:
        yield instance
    finally:
        stop_sandbox(instance)


@pytest.fixture
def on_sandbox(sandbox: Sandbox, settings: Any) -> Sandbox:
    """The same sandbox, set as the site's own (SANDBOX_ENABLED, SANDBOX_URL) for the test."""
    settings.SANDBOX_ENABLED = True
    settings.SANDBOX_URL = sandbox.url
    return sandbox


@pytest.fixture
def sandbox_faults(sandbox: Sandbox) -> Iterator[Sandbox]:
    sandbox.reset_faults()
    try:
        yield sandbox
    finally:
        sandbox.reset_faults()


@pytest.fixture
def start_sandbox(tmp_path: Path) -> Iterator[Callable[..., Sandbox]]:
    started: list[Sandbox] = []

    def start(*args: str, **env: str) -> Sandbox:
        instance = launch_sandbox(tmp_path, *args, env=env)
        started.append(instance)
        return instance

    yield start
    for instance in started:
        stop_sandbox(instance)


# ---- a callback receiver ----


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    def json(self) -> Any:
        return json.loads(self.body)


class CallbackReceiver:
    """Records every POST; answers with queued statuses (then ``default_status``)."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.statuses: list[int] = []
        self.default_status = 200
        self.delay = 0.0
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # no 40 ms delayed-ACK stall per answer

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if receiver.delay:
                    time.sleep(receiver.delay)
                with receiver._lock:
                    receiver.received.append(
                        Received(self.path, dict(self.headers.items()), body, time.monotonic())
                    )
                    status = (
                        receiver.statuses.pop(0) if receiver.statuses else receiver.default_status
                    )
                    receiver._arrived.notify_all()
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/runflow/"

    def wait(self, count: int = 1, timeout: float = 15) -> list[Received]:
        """Block until at least ``count`` callbacks arrived; return them all."""
        deadline = time.monotonic() + timeout
        with self._arrived:
            while len(self.received) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(
                        f"{len(self.received)} callbacks arrived, expected {count}"
                    )
                self._arrived.wait(remaining)
            return list(self.received)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def callback_receiver() -> Iterator[CallbackReceiver]:
    receiver = CallbackReceiver()
    try:
        yield receiver
    finally:
        receiver.close()
