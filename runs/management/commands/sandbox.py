"""``manage.py sandbox``: a local stand-in for Runflow (see ``runs/sandbox``).

Django only launches it: the server itself is plain Python and imports nothing of the site.
Callback secrets are kept in ``var/sandbox-secrets.json`` so a restarted sandbox keeps
signing with the secret the Demo team holds.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from runs.sandbox.config import Config
from runs.sandbox.server import serve


class Command(BaseCommand):
    help = "Run the Runflow sandbox: the API contract over real HTTP, offline."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8765)
        parser.add_argument(
            "--callback-base",
            action="append",
            default=[],
            help="Send callbacks only to URLs under this base (repeatable). "
            "Default: loopback addresses only.",
        )
        parser.add_argument("--public-url", default="", help="Base of the URLs it hands out.")
        parser.add_argument(
            "--secrets-file",
            default=None,
            help="Where callback secrets survive restarts (default var/sandbox-secrets.json; "
            "'none' to keep them in memory only).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        secrets_file = options["secrets_file"]
        config = Config.from_env(
            host=options["host"],
            port=options["port"],
            callback_bases=[base.rstrip("/") + "/" for base in options["callback_base"]],
            public_url=options["public_url"] or None,
            secrets_file=None
            if secrets_file == "none"
            else Path(secrets_file or settings.VAR_DIR / "sandbox-secrets.json"),
        )
        stop = threading.Event()

        def request_stop(signum: int, frame: object) -> None:
            stop.set()

        signal.signal(signal.SIGTERM, request_stop)
        signal.signal(signal.SIGINT, request_stop)

        def ready(url: str) -> None:
            targets = ", ".join(config.callback_bases) or "loopback addresses"
            self.stdout.write(f"Runflow sandbox listening on {url} (callbacks to {targets})")
            self.stdout.flush()

        serve(config, stop, ready)
        self.stdout.write("Runflow sandbox stopped.")
