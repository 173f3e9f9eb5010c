"""``manage.py rotate_keys``: re-encrypt every API key and secret under the first key (S3)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from runs.connection.rotation import rotate_all
from runs.fields import fernet


class Command(BaseCommand):
    help = (
        "Re-encrypt every encrypted value under the first FIELD_ENCRYPTION_KEYS entry. "
        "Rotation: set FIELD_ENCRYPTION_KEYS=new,old; run this; then set it to new alone."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--batch-size", type=int, default=200)
        parser.add_argument(
            "--dry-run", action="store_true", help="Count what would change; write nothing."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["batch_size"] < 1:
            raise CommandError("--batch-size must be at least 1.")
        fernet()  # fail early, with the settings' own message, on missing or malformed keys
        report = rotate_all(batch_size=options["batch_size"], dry_run=options["dry_run"])
        verb = "would be re-encrypted" if options["dry_run"] else "re-encrypted"
        self.stdout.write(
            f"{report.total} encrypted values: {report.rotated} {verb}, "
            f"{report.current} already under the first key, "
            f"{len(report.unreadable)} unreadable."
        )
        for row in report.unreadable:
            self.stderr.write(f"  cannot decrypt {row.description}: it must be entered again")
        if report.marked:
            self.stdout.write(f"{report.marked} marked “needs re-entry” on the connection page.")
        if report.unreadable:
            # Not an error exit: the readable rows were rotated, and running again is safe.
            self.stdout.write(
                self.style.WARNING(
                    "Some values could not be decrypted with any configured key; a team admin "
                    "must enter them again (or restore the old key and run this again)."
                )
            )
        else:
            self.stdout.write(self.style.SUCCESS("Done."))
