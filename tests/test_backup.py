"""``manage.py backup``: an online SQLite copy that restores, or the pg_dump command."""

from __future__ import annotations

import io
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.db import connection

from runs.management.commands.backup import Command
from runs.models import Membership, Role, Run, Team
from tests.conftest import make_user

ROOT = Path(settings.BASE_DIR)
sqlite_only = pytest.mark.skipif(
    connection.vendor != "sqlite", reason="the online backup API is SQLite's"
)


def fill() -> Team:
    team = Team.objects.create(name="Backed up")
    user = make_user("keeper")
    Membership.objects.create(team=team, user=user, role=Role.ADMIN)
    for n in range(25):
        Run.objects.create(
            team=team, api_url="https://api.runflow.io", model_id="a/b", input={"n": n}
        )
    return team


@sqlite_only
@pytest.mark.django_db(transaction=True)
def test_backup_is_a_whole_standalone_copy(tmp_path: Path) -> None:
    team = fill()
    target = tmp_path / "site.sqlite3"
    out = io.StringIO()
    call_command("backup", str(target), stdout=out)
    assert "Backed up" in out.getvalue() and "media files" in out.getvalue()
    copy = sqlite3.connect(target)
    try:
        assert copy.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert copy.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
        names = copy.execute("SELECT name FROM runs_team").fetchall()
        runs = copy.execute(
            "SELECT COUNT(*) FROM runs_run WHERE team_id = ?", (team.pk,)
        ).fetchone()[0]
    finally:
        copy.close()
    assert ("Backed up",) in names and runs == 25
    assert sorted(p.name for p in tmp_path.iterdir()) == ["site.sqlite3"]


@sqlite_only
@pytest.mark.django_db(transaction=True)
def test_backup_refuses_to_overwrite_unless_forced(tmp_path: Path) -> None:
    fill()
    target = tmp_path / "site.sqlite3"
    target.write_bytes(b"an older backup")
    with pytest.raises(CommandError, match="exists"):
        call_command("backup", str(target), stdout=io.StringIO())
    assert target.read_bytes() == b"an older backup"
    call_command("backup", str(target), "--force", stdout=io.StringIO())
    assert target.read_bytes().startswith(b"SQLite format 3")


@sqlite_only
@pytest.mark.django_db(transaction=True)
def test_backup_into_a_missing_folder_fails_clearly(tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="does not exist"):
        call_command("backup", str(tmp_path / "nope" / "x.sqlite3"), stdout=io.StringIO())


@sqlite_only
@pytest.mark.django_db(transaction=True)
def test_restored_backup_serves_the_site(tmp_path: Path) -> None:
    """The README's restore steps: the copy becomes the database and Django reads it."""
    team = fill()
    backup = tmp_path / "backup.sqlite3"
    call_command("backup", str(backup), stdout=io.StringIO())
    var = tmp_path / "var"
    var.mkdir()
    restored = var / "runflow.sqlite3"
    restored.write_bytes(backup.read_bytes())
    env = {
        **os.environ,
        "RUNFLOW_VAR_DIR": str(var),
        "DATABASE_URL": "",
        "SECRET_KEY": "restore-test",
    }
    code = (
        "from runs.models import Team, Run;"
        f"t = Team.objects.get(uuid='{team.uuid}');"
        "print(t.name, Run.objects.filter(team=t).count())"
    )
    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "--no-imports", "-c", code],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "Backed up 25"
    migrate = subprocess.run(
        [sys.executable, "manage.py", "migrate", "--check", "--skip-checks"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert migrate.returncode == 0, migrate.stdout + migrate.stderr


def test_postgres_gets_the_pg_dump_command_without_the_password(tmp_path: Path) -> None:
    out = io.StringIO()
    command = Command(stdout=out)
    command._postgres(
        {
            "NAME": "runflow",
            "HOST": "db.internal",
            "PORT": 5432,
            "USER": "site",
            "PASSWORD": "hunter2-never-printed",
        },
        tmp_path / "runflow.dump",
    )
    text = out.getvalue()
    assert (
        f"pg_dump --format=custom --no-owner --file={tmp_path / 'runflow.dump'} "
        "--host=db.internal --port=5432 --username=site runflow"
    ) in text
    assert "pg_restore" in text
    assert "hunter2" not in text


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL only")
@pytest.mark.django_db
def test_backup_on_postgres_prints_instead_of_copying(tmp_path: Path) -> None:
    out = io.StringIO()
    call_command("backup", str(tmp_path / "x.dump"), stdout=out)
    assert "pg_dump" in out.getvalue()
    assert not (tmp_path / "x.dump").exists()
