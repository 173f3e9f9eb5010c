"""``manage.py worker``: django-tasks-db's ``db_worker``, patient with a busy database.

``db_worker`` claims each task inside ``exclusive_transaction`` (``BEGIN EXCLUSIVE`` on
SQLite), and opening that transaction sits outside the ``try`` that tolerates "database is
locked" (``Worker.run`` in django_tasks_db/management/commands/db_worker.py). So when
another process holds the SQLite write lock longer than the busy timeout
(``SQLITE_BUSY_TIMEOUT``), the ``OperationalError`` ends the worker process, although
waiting a moment would have been enough. A PostgreSQL serialization failure, deadlock or
dropped connection ends it the same way.

This command takes every ``db_worker`` option and runs the same ``Worker``; it only wraps
the loop. A transient database error is logged as a warning, the connections are closed
(the next query opens a fresh one) and the loop starts again after a short backoff. Any
other error still ends the process, for its supervisor (``serve``, systemd, ...) to restart.
``db_worker`` keeps working; it is only less patient.

One case the wrapper cannot mend: if the error comes while the worker records the result of
a task it has already run, that task stays claimed, exactly as if the process had been
killed at that moment.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from django.core.management.base import CommandError
from django.db import DatabaseError, InterfaceError, OperationalError, connections
from django.utils.autoreload import DJANGO_AUTORELOAD_ENV, run_with_reloader
from django_tasks_db.management.commands import db_worker
from django_tasks_db.utils import is_locked_database_exception

logger = logging.getLogger(__name__)

BACKOFF_FIRST = 0.5  # seconds before the first retry; each busy spell in a row doubles it
BACKOFF_MAX = 5.0
CALM_AFTER = 30.0  # a loop that ran this long before failing starts from BACKOFF_FIRST again

# PostgreSQL SQLSTATEs worth waiting out: serialization failure, deadlock, and the
# connection-exception (08) and operator-intervention (57P: server restarting) classes.
TRANSIENT_SQLSTATES = {"40001", "40P01"}
TRANSIENT_SQLSTATE_CLASSES = ("08", "57P")


def is_transient(error: DatabaseError) -> bool:
    """True for a database error that waiting and reconnecting can cure."""
    if isinstance(error, InterfaceError):
        return True  # the connection is closed or broken; a new one may work
    if not isinstance(error, OperationalError):
        return False
    if error.args and is_locked_database_exception(error):
        return True  # SQLite's "database is locked" (and MySQL's lock wait timeout)
    cause = error.__cause__
    if not hasattr(cause, "sqlstate"):
        return False  # not psycopg: nothing else we know to be transient
    sqlstate = getattr(cause, "sqlstate", None)
    if sqlstate is None:
        return True  # psycopg reports a lost or refused connection without a SQLSTATE
    return sqlstate in TRANSIENT_SQLSTATES or sqlstate.startswith(TRANSIENT_SQLSTATE_CLASSES)


class PatientWorker(db_worker.Worker):
    """``db_worker.Worker`` whose loop survives transient database errors."""

    def run(self) -> None:
        backoff = BACKOFF_FIRST
        while True:
            started = time.monotonic()
            try:
                super().run()
                return  # --batch or --max-tasks: the loop ended on its own
            except DatabaseError as error:
                if not is_transient(error):
                    raise
                if time.monotonic() - started > CALM_AFTER:
                    backoff = BACKOFF_FIRST
                logger.warning(
                    "Worker %s: the database is busy or unreachable (%s); retrying in %.1f s",
                    self.worker_id,
                    error,
                    backoff,
                )
            # A failed BEGIN or a dropped server can leave the connection unusable; closing
            # it makes the next loop open a fresh one.
            connections.close_all()
            if not self.running:
                return  # asked to stop while the error was on its way up
            self.startup_delay = False  # the random start delay is for the first start only
            time.sleep(backoff)
            backoff = min(backoff * 2, BACKOFF_MAX)


class Command(db_worker.Command):
    help = "Run the task worker (db_worker that waits out a locked or lost database)."

    def handle(self, *args: Any, **options: Any) -> None:
        # Same options and checks as db_worker's own handle, which builds its Worker class
        # by name and so cannot be handed ours.
        self.configure_logging(options["verbosity"])
        queue_names = options["queue_name"].split(",")
        excluded = options["exclude_queues"].split(",") if options["exclude_queues"] else []
        if excluded and "*" not in queue_names:
            raise CommandError("--exclude-queues can only be used with --queue-name=*")
        worker = PatientWorker(
            queue_names=queue_names,
            interval=options["interval"],
            batch=options["batch"],
            backend_name=options["backend_name"],
            startup_delay=options["startup_delay"],
            max_tasks=options["max_tasks"],
            worker_id=options["worker_id"],
            excluded_queue_names=excluded,
        )
        if options["reload"] and not options["batch"]:
            # Under the reloader, only the child process (the one that runs tasks) takes
            # over the signals.
            if os.environ.get(DJANGO_AUTORELOAD_ENV) == "true":
                worker.configure_signals()
            run_with_reloader(worker.run)
        else:
            worker.configure_signals()
            worker.run()
