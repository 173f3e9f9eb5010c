"""``manage.py backup <path>``: a consistent copy of the database while the site runs.

On SQLite it uses SQLite's online backup API in one step: the copy is a snapshot of one
moment (WAL mode lets the site keep writing meanwhile), written beside the target, checked
with ``PRAGMA integrity_check`` and renamed into place, so a backup file is either whole or
absent. On PostgreSQL it prints the ``pg_dump`` command to run instead (pg_dump is the
consistent online backup there). Media files and the encryption keys are not in the
database: the command reminds you where they are (README, "Backup and restore").
"""

from __future__ import annotations

import shlex
import sqlite3
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connections


class Command(BaseCommand):
    help = "Back up the database online (SQLite), or print the pg_dump command (PostgreSQL)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path", help="Where to write the backup file.")
        parser.add_argument("--database", default="default")
        parser.add_argument("--force", action="store_true", help="Replace an existing file.")

    def handle(self, *args: Any, **options: Any) -> None:
        connection = connections[options["database"]]
        target = Path(options["path"]).expanduser()
        if connection.vendor == "postgresql":
            self._postgres(connection.settings_dict, target)
            return
        if connection.vendor != "sqlite":
            raise CommandError(f"No backup method for {connection.vendor}: use its own tools.")
        if target.exists() and not options["force"]:
            raise CommandError(f"{target} exists: choose another name or pass --force.")
        if not target.parent.is_dir():
            raise CommandError(f"The folder {target.parent} does not exist.")
        pages = self._sqlite(str(connection.settings_dict["NAME"]), target)
        self.stdout.write(self.style.SUCCESS(f"Backed up {pages} pages to {target}"))
        self._reminders()

    def _sqlite(self, name: str, target: Path) -> int:
        partial = target.with_name(target.name + ".partial")
        partial.unlink(missing_ok=True)
        # A connection of our own, outside any transaction Django may hold open.
        source = sqlite3.connect(name, uri=name.startswith("file:"), timeout=30)
        copy = sqlite3.connect(partial)
        try:
            # pages=-1: the whole database in one step, i.e. one consistent snapshot.
            source.backup(copy, pages=-1)
            # The copy must stand alone: no -wal file to carry around with it.
            copy.execute("PRAGMA journal_mode=DELETE")
            check = copy.execute("PRAGMA integrity_check").fetchone()[0]
            pages = copy.execute("PRAGMA page_count").fetchone()[0]
        finally:
            copy.close()
            source.close()
        if check != "ok":
            partial.unlink(missing_ok=True)
            raise CommandError(f"The copy failed its integrity check ({check}); nothing written.")
        partial.replace(target)
        return int(pages)

    def _postgres(self, db: dict[str, Any], target: Path) -> None:
        parts = ["pg_dump", "--format=custom", "--no-owner", f"--file={target}"]
        for flag, key in (("--host", "HOST"), ("--port", "PORT"), ("--username", "USER")):
            if db.get(key):
                parts.append(f"{flag}={db[key]}")
        parts.append(str(db["NAME"]))
        self.stdout.write("This site runs on PostgreSQL: back it up with pg_dump, online:\n")
        self.stdout.write("  " + shlex.join(parts))
        self.stdout.write(
            "\n(The password comes from PGPASSWORD or ~/.pgpass; it is never printed.)"
            "\nRestore into an empty database with:\n"
            "  "
            + shlex.join(["pg_restore", "--no-owner", "--dbname", str(db["NAME"]), str(target)])
        )
        self._reminders()

    def _reminders(self) -> None:
        self.stdout.write(
            "\nNot in the database, back these up too:"
            f"\n  media files: {settings.MEDIA_ROOT} (or your S3 bucket)"
            "\n  encryption keys: FIELD_ENCRYPTION_KEYS, or var/secrets.json in the embedded"
            " default (without them the stored API keys cannot be decrypted)"
        )
