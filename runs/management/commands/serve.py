"""``manage.py serve``: the whole site in one command.

Migrates, then runs the production WSGI server (gunicorn), the task worker
(``manage.py worker``) and, unless ``--no-sandbox``, the local Runflow sandbox, each as its
own process. Ctrl-C stops them all. A child that dies is started again after a short
backoff, with a line on the console; only a child that keeps dying (``RESTART_LIMIT`` deaths
within ``RESTART_WINDOW`` seconds, say a port already taken) makes the command stop them
all, saying which one and why.
"""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.core.management import call_command, get_commands
from django.core.management.base import BaseCommand, CommandParser

from runs.demo import ensure_demo

RESTART_LIMIT = 5  # deaths of one child within RESTART_WINDOW before serve gives up
RESTART_WINDOW = 60.0  # seconds
RESTART_BACKOFF_FIRST = 0.5  # seconds before the first restart; doubles with each recent death
RESTART_BACKOFF_MAX = 10.0
# How long serve waits for the sandbox to listen before starting the rest. Until then the
# Demo team's setup and the worker's first catalog sync would only meet a refused
# connection (a ConnectError line per retry); a sandbox that takes longer is waited for by
# those callers themselves, as before.
SANDBOX_BOOT_WAIT = 30.0  # seconds


@dataclass
class Child:
    name: str
    argv: list[str]
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    deaths: list[float] = field(default_factory=list)  # monotonic times, last window only
    restart_at: float | None = None  # set while the child waits out its backoff

    def recent_deaths(self, now: float) -> int:
        self.deaths = [t for t in self.deaths if now - t < RESTART_WINDOW]
        return len(self.deaths)


def describe_exit(code: int) -> str:
    if code < 0:
        return f"killed by {signal.Signals(-code).name}"
    return f"exit code {code}"


class Command(BaseCommand):
    help = "Run the site: web server, task worker and (by default) the Runflow sandbox."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--workers", type=int, default=2, help="Web server processes.")
        parser.add_argument("--task-workers", type=int, default=1, help="Task worker processes.")
        parser.add_argument("--no-sandbox", action="store_true", help="Do not start the sandbox.")
        parser.add_argument("--sandbox-port", type=int, default=8765)
        parser.add_argument("--no-demo", action="store_true", help="Do not create the Demo team.")

    def handle(self, *args: Any, **options: Any) -> None:
        host, port = options["host"], options["port"]
        env = os.environ.copy()
        env.setdefault("SITE_URL", f"http://{host}:{port}")
        env.setdefault("PYTHONUNBUFFERED", "1")
        sandbox = not options["no_sandbox"] and "sandbox" in get_commands()
        if sandbox:
            sandbox_url = f"http://127.0.0.1:{options['sandbox_port']}"
            env["SANDBOX_URL"] = sandbox_url
            settings.SANDBOX_URL = sandbox_url
        env["SANDBOX_ENABLED"] = "1" if sandbox else "0"

        self.stdout.write("Preparing the database…")
        call_command("migrate", interactive=False, verbosity=0)
        call_command("createcachetable", verbosity=0)
        call_command("collectstatic", interactive=False, verbosity=0)

        children = self._children(options, sandbox, env)
        if sandbox:
            # The sandbox first, and the rest once it listens (see SANDBOX_BOOT_WAIT).
            self._launch(children[0], env)
            self._wait_until_listening(children[0], options["sandbox_port"])
        for child in children:
            if child.process is None:
                self._launch(child, env)
        login = None if options["no_demo"] else ensure_demo(sandbox=sandbox)
        # Worker start: one reconcile sweep now, then its periodic cycle (runs/worker.py).
        call_command("reconcile", stdout=io.StringIO())
        self._banner(env["SITE_URL"], login, sandbox)
        sys.exit(self._supervise(children, env))

    def _children(self, options: dict[str, Any], sandbox: bool, env: dict[str, str]) -> list[Child]:
        python = sys.executable
        manage = str(settings.BASE_DIR / "manage.py")
        children = []
        if sandbox:
            children.append(
                Child(
                    "sandbox",
                    [
                        python,
                        manage,
                        "sandbox",
                        "--host",
                        "127.0.0.1",
                        "--port",
                        str(options["sandbox_port"]),
                        "--callback-base",
                        env["SITE_URL"],
                    ],
                )
            )
        children.append(
            Child(
                "web",
                [
                    python,
                    "-m",
                    "gunicorn",
                    "runflow_site.wsgi:application",
                    "--bind",
                    f"{options['host']}:{options['port']}",
                    "--workers",
                    str(options["workers"]),
                    "--worker-class",
                    "gthread",
                    "--threads",
                    "4",
                    "--timeout",
                    "60",
                    "--graceful-timeout",
                    "10",
                    "--access-logfile",
                    "-",
                    "--log-level",
                    "warning",
                ],
            )
        )
        for number in range(1, options["task_workers"] + 1):
            children.append(
                Child(
                    f"worker-{number}",
                    [
                        python,
                        manage,
                        "worker",
                        "--interval",
                        "0.5",
                        "--worker-id",
                        f"serve-{os.getpid()}-{number}",
                    ],
                )
            )
        return children

    def _launch(self, child: Child, env: dict[str, str]) -> None:
        # Each child in its own process group, so Ctrl-C reaches us first and we stop
        # the children in order instead of letting them race.
        child.process = subprocess.Popen(  # noqa: S603 (our own fixed argv)
            child.argv, env=env, cwd=settings.BASE_DIR, start_new_session=True
        )
        child.restart_at = None

    def _wait_until_listening(self, child: Child, port: int) -> bool:
        """True once ``child`` accepts connections on ``port``; False (said on the console)
        if it stopped or did not listen within ``SANDBOX_BOOT_WAIT`` seconds."""
        assert child.process is not None
        deadline = time.monotonic() + SANDBOX_BOOT_WAIT
        while child.process.poll() is None and time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    return True
            except OSError:
                time.sleep(0.1)
        self.stderr.write(
            self.style.WARNING(
                f"The {child.name} is not listening on port {port} yet; starting the site anyway."
            )
        )
        return False

    def _banner(self, url: str, login: tuple[str, str | None] | None, sandbox: bool) -> None:
        self.stdout.write(self.style.SUCCESS(f"\n  runflow-site is up at {url}/\n"))
        if login:
            username, password = login
            if password:
                self.stdout.write(f"  Sign in as {username} / {password}")
                hint = "add your email (password resets go there) and change the password"
                self.stdout.write(f"  (under your name → Account: {hint})")
            else:
                self.stdout.write(f"  Sign in as {username} (password already changed)")
        if sandbox:
            self.stdout.write(f"  Runflow sandbox: {settings.SANDBOX_URL} (the Demo team uses it)")
        self.stdout.write("  Press Ctrl-C to stop.\n")

    def _supervise(self, children: list[Child], env: dict[str, str]) -> int:
        stopping = False

        def stop(signum: int, frame: object) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        exit_code = 0
        while not stopping:
            for child in children:
                if not self._tend(child, env):
                    exit_code = 1
                    stopping = True
                    break
            time.sleep(0.3)
        self._stop_all(children)
        return exit_code

    def _tend(self, child: Child, env: dict[str, str]) -> bool:
        """Restart ``child`` if it died and its backoff is over; False to give up."""
        now = time.monotonic()
        if child.restart_at is not None:
            if now >= child.restart_at:
                self._launch(child, env)
                assert child.process is not None
                self.stdout.write(f"Restarted the {child.name} process (pid {child.process.pid}).")
            return True
        assert child.process is not None
        code = child.process.poll()
        if code is None:
            return True
        child.deaths.append(now)
        deaths = child.recent_deaths(now)
        if deaths >= RESTART_LIMIT:
            self.stderr.write(
                self.style.ERROR(
                    f"The {child.name} process stopped ({describe_exit(code)}), {deaths} times "
                    f"within {RESTART_WINDOW:g} s; giving up and stopping the site."
                )
            )
            return False
        # A child that dies again soon waits longer each time, so a crash loop does not
        # spin; one that ran quietly for a minute starts again from the short delay.
        delay = min(RESTART_BACKOFF_FIRST * 2 ** (deaths - 1), RESTART_BACKOFF_MAX)
        child.restart_at = now + delay
        self.stderr.write(
            self.style.WARNING(
                f"The {child.name} process stopped ({describe_exit(code)}); "
                f"restarting it in {delay:g} s."
            )
        )
        return True

    def _stop_all(self, children: list[Child]) -> None:
        self.stdout.write("Stopping…")
        for child in reversed(children):
            if child.process and child.process.poll() is None:
                child.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for child in children:
            if child.process is None:
                continue
            try:
                child.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.process.kill()
        self.stdout.write("Stopped.")
