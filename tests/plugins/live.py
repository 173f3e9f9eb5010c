"""A live site for browser tests: the real ``manage.py serve`` in a scratch var/ folder.

The site runs as a user would run it (gunicorn, the task worker, the sandbox), on its own
SQLite file and free ports, so browser tests exercise the real path end to end. Tests reach
it only over HTTP and through ``manage()``, which runs a management command against the
same database.

Loaded with ``-p tests.plugins.live`` (pyproject.toml), so it must not import Django models.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.processes import child_env, free_port

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = ROOT / "artifacts" / "screenshots"


@dataclass
class LiveSite:
    url: str
    var_dir: Path
    env: dict[str, str]
    sandbox_url: str
    process: subprocess.Popen[bytes] = field(repr=False)
    log_path: Path = field(repr=False)

    @property
    def admin_login(self) -> tuple[str, str]:
        secrets = json.loads((self.var_dir / "secrets.json").read_text())
        return "admin", secrets["DEMO_PASSWORD"]

    def manage(self, *args: str, input: str | None = None) -> str:
        """Run a management command against the live site's database."""
        result = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=self.env,
            input=input,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if result.returncode != 0:
            raise AssertionError(f"manage.py {' '.join(args)} failed:\n{result.stderr}")
        return result.stdout

    def shell(self, code: str) -> str:
        """Run Python in the live site's Django (e.g. to create a viewer)."""
        return self.manage("shell", "--no-imports", "-c", code)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def _wait_until_up(url: str, process: subprocess.Popen[bytes], log: Path, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"serve exited with {process.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(f"{url}/accounts/login/", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"serve did not come up in {seconds}s:\n{log.read_text()}")


@pytest.fixture(scope="session")
def live_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveSite]:
    var_dir = tmp_path_factory.mktemp("live-var")
    port, sandbox_port = free_port(), free_port()
    env = child_env(
        RUNFLOW_VAR_DIR=str(var_dir),
        SITE_URL=f"http://127.0.0.1:{port}",
        SANDBOX_URL=f"http://127.0.0.1:{sandbox_port}",
        PYTHONUNBUFFERED="1",
        **_sandbox_speed_env(),
    )
    log_path = var_dir / "serve.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "manage.py",
                "serve",
                "--port",
                str(port),
                "--sandbox-port",
                str(sandbox_port),
                "--workers",
                "2",
                "--task-workers",
                "2",
            ],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    site = LiveSite(
        f"http://127.0.0.1:{port}",
        var_dir,
        env,
        f"http://127.0.0.1:{sandbox_port}",
        process,
        log_path,
    )
    try:
        _wait_until_up(site.url, process, log_path, seconds=90)
        yield site
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


def _sandbox_speed_env() -> dict[str, str]:
    # Browser tests want runs to finish in a couple of seconds, not a realistic minute.
    return {"SANDBOX_STEP_SECONDS": os.environ.get("SANDBOX_STEP_SECONDS", "0.5")}


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium not found at {CHROMIUM}: apt-get install -y chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-background-networking",
                "--disable-gpu",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        yield instance
        instance.close()


@pytest.fixture
def new_context(browser: object) -> Iterator[object]:
    """A factory of fresh browser contexts (separate cookies), closed after the test."""
    contexts = []

    def make(**options: object) -> object:
        context = browser.new_context(**options)  # type: ignore[attr-defined]
        contexts.append(context)
        return context

    yield make
    for context in contexts:
        context.close()


@pytest.fixture
def page(new_context: object) -> object:
    context = new_context(viewport={"width": 1280, "height": 900})  # type: ignore[operator]
    return context.new_page()


def sign_in(
    page: object, site: LiveSite, username: str | None = None, password: str | None = None
) -> None:
    if username is None:
        username, password = site.admin_login
    page.goto(f"{site.url}/accounts/login/")  # type: ignore[attr-defined]
    page.fill("#id_username", username)  # type: ignore[attr-defined]
    page.fill("#id_password", password or "")  # type: ignore[attr-defined]
    page.click("button[type=submit]")  # type: ignore[attr-defined]
    page.wait_for_url(lambda url: "/accounts/login/" not in url)  # type: ignore[attr-defined]


def signed_in_page(new_context: Any, site: LiveSite, width: int, height: int = 900) -> Any:
    """A page of a fresh context with that viewport, signed in as the Demo admin."""
    page = new_context(viewport={"width": width, "height": height}).new_page()
    sign_in(page, site)
    return page


def screenshot(page: object, name: str) -> Path:
    """Save a screenshot as a CI artifact under artifacts/screenshots/ (named in README)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)  # type: ignore[attr-defined]
    return path


def clean_artifacts() -> None:
    shutil.rmtree(ARTIFACTS, ignore_errors=True)
