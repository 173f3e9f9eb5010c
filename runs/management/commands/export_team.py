"""``manage.py export_team <team uuid>``: one team as JSON, for backups and hand-over.

Members, presets, model policies, budgets and every run with its outputs' metadata (links
to our archived copies). No secret: API keys and callback secrets never leave the database;
only their labels and masked last four characters are listed so a restore knows which keys
to enter again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from uuid import UUID

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from runs.export import team_export
from runs.models import Team


class Command(BaseCommand):
    help = "Export one team (runs, outputs metadata, presets, members; no secrets) as JSON."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("team", help="The team's uuid (shown in its URLs).")
        parser.add_argument("-o", "--output", help="Write to this file instead of standard output.")
        parser.add_argument(
            "--base-url",
            default=settings.SITE_URL,
            help="Base of the links written for runs and files (default: SITE_URL).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            team = Team.objects.get(uuid=UUID(options["team"]))
        except (ValueError, Team.DoesNotExist) as exc:
            raise CommandError(f"No team with uuid {options['team']!r}.") from exc
        chunks = team_export(team, base_url=options["base_url"])
        if options["output"]:
            path = Path(options["output"])
            partial = path.with_name(path.name + ".partial")
            # Written beside the target then renamed, so a failed export never leaves a
            # truncated file where a good backup is expected.
            with partial.open("w", encoding="utf-8") as handle:
                for chunk in chunks:
                    handle.write(chunk)
            partial.replace(path)
            self.stderr.write(f"Exported {team.name} to {path}")
        else:
            for chunk in chunks:
                self.stdout.write(chunk, ending="")
