"""``manage.py worker`` waits out a locked database where a plain ``db_worker`` dies.

Real processes on a scratch SQLite file: the worker runs as a subprocess, and a second
sqlite3 connection (another process's writer, as far as SQLite can tell) holds the write
lock with ``BEGIN IMMEDIATE`` for longer than the busy timeout. On PostgreSQL, the errors
the worker treats as passing are checked against a real server.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.db import DatabaseError, connection, connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper

from runs.management.commands.worker import is_transient
from tests.processes import child_env

ROOT = Path(__file__).resolve().parents[1]
BUSY_TIMEOUT = 1  # seconds; the lock below is held three times as long
LOCK_WARNING = "the database is busy or unreachable (database is locked)"

sqlite_only = pytest.mark.skipif(
    bool(os.environ.get("DATABASE_URL")), reason="the write lock is SQLite's"
)


@dataclass
class Site:
    var_dir: Path
    env: dict[str, str]

    @property
    def database(self) -> Path:
        return self.var_dir / "runflow.sqlite3"

    def manage(self, *args: str) -> str:
        result = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    def start(self, command: str, log: Path) -> subprocess.Popen[bytes]:
        with log.open("wb") as out:
            return subprocess.Popen(
                [sys.executable, "manage.py", command, "--interval", "0.1", "--no-startup-delay"],
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Site:
    var_dir = tmp_path_factory.mktemp("worker-var")
    env = child_env(
        RUNFLOW_VAR_DIR=str(var_dir),
        SQLITE_BUSY_TIMEOUT=str(BUSY_TIMEOUT),
        PYTHONUNBUFFERED="1",
        LOG_LEVEL="WARNING",
    )
    site = Site(var_dir, env)
    site.manage("migrate", "--noinput", "-v", "0")
    return site


@contextlib.contextmanager
def write_lock(database: Path) -> Iterator[None]:
    """Hold SQLite's write lock from a connection of our own until the block ends."""
    holder = sqlite3.connect(database, timeout=10, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        yield
        holder.execute("ROLLBACK")
    finally:
        holder.close()


def wait_for_text(log: Path, text: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while text not in log.read_text(errors="replace"):
        assert time.monotonic() < deadline, f"{text!r} not in:\n{log.read_text()}"
        time.sleep(0.1)


def stop(process: subprocess.Popen[bytes]) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        return process.wait()


# Enqueue a task that does nothing harmful (no run 0 to archive), then wait for its end.
RUN_ONE_TASK = """
import time
from runs.tasks.archive import archive_outputs
result = archive_outputs.enqueue(0)
deadline = time.monotonic() + 30
while time.monotonic() < deadline and not result.is_finished:
    time.sleep(0.1)
    result.refresh()
print(result.status)
"""


@sqlite_only
def test_worker_waits_out_a_write_lock_held_past_the_busy_timeout(
    site: Site, tmp_path: Path
) -> None:
    log = tmp_path / "worker.log"
    worker = site.start("worker", log)
    try:
        wait_for_text(log, "Starting worker")
        with write_lock(site.database):
            time.sleep(BUSY_TIMEOUT * 3.5)  # several claims meet the lock and fail
            assert worker.poll() is None, log.read_text()
        assert log.read_text().count(LOCK_WARNING) >= 2, log.read_text()
        # The lock is gone: the same process claims and runs new work.
        assert site.manage("shell", "--no-imports", "-c", RUN_ONE_TASK).strip() == "SUCCESSFUL"
        assert worker.poll() is None
    finally:
        code = stop(worker)
    assert code == 0, log.read_text()  # and it still stops cleanly on SIGTERM


@sqlite_only
def test_plain_db_worker_dies_of_the_same_lock(site: Site, tmp_path: Path) -> None:
    """Why ``manage.py worker`` exists; if this ever fails, django-tasks-db fixed it."""
    log = tmp_path / "db_worker.log"
    worker = site.start("db_worker", log)
    try:
        wait_for_text(log, "Starting worker")
        with write_lock(site.database):
            worker.wait(timeout=BUSY_TIMEOUT * 10)
    finally:
        stop(worker)
    assert worker.returncode != 0
    assert "database is locked" in log.read_text()


# ---- which errors count as passing, on a real PostgreSQL ----

postgres_only = pytest.mark.skipif(
    not os.environ.get("DATABASE_URL"), reason="needs the PostgreSQL pass (DATABASE_URL)"
)


def raised_by(sql: str, using: BaseDatabaseWrapper) -> DatabaseError:
    try:
        with using.cursor() as cursor:
            cursor.execute(sql)
    except DatabaseError as error:
        return error
    raise AssertionError(f"{sql!r} did not fail")


def raised_in_savepoint(sql: str) -> DatabaseError:
    """The error ``sql`` raises, rolled back to a savepoint so the test can go on."""
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(sql)
    except DatabaseError as error:
        return error
    raise AssertionError(f"{sql!r} did not fail")


@postgres_only
@pytest.mark.django_db
def test_serialization_failure_is_transient_and_a_bug_is_not() -> None:
    assert is_transient(
        raised_in_savepoint("DO $$ BEGIN RAISE EXCEPTION 'busy' USING ERRCODE = '40001'; END $$")
    )
    assert not is_transient(raised_in_savepoint("SELECT 1 / 0"))
    assert not is_transient(raised_in_savepoint("SELECT * FROM no_such_table"))


@postgres_only
@pytest.mark.django_db
def test_a_dropped_or_refused_connection_is_transient() -> None:
    dropped = connections.create_connection("default")
    try:
        assert is_transient(raised_by("SELECT pg_terminate_backend(pg_backend_pid())", dropped))
        assert is_transient(raised_by("SELECT 1", dropped))  # the connection is now closed
    finally:
        dropped.close()
    refused = connections.create_connection("default")
    refused.settings_dict = {**refused.settings_dict, "PORT": 1}
    assert is_transient(raised_by("SELECT 1", refused))
