"""``manage.py reconcile``: one reconcile sweep now, then keep the periodic cycle going.

Run it when workers start (``serve`` does; in production run it beside ``db_worker``), or by
hand after an outage. ``--once`` only sweeps, without touching the schedule.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from runs import worker


class Command(BaseCommand):
    help = "Re-arm polls, re-match early callbacks, flag stuck runs, retry owed output copies."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--once", action="store_true", help="Sweep once; do not schedule the cycle."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["once"]:
            from runs.tasks.polling import reconcile

            counts = reconcile.call()
        else:
            counts = worker.on_worker_start()
        summary = ", ".join(f"{name} {value}" for name, value in counts.items())
        self.stdout.write(f"Reconciled: {summary}")
