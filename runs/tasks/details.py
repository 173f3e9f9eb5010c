"""One last read of a run that a callback finished: ``fetch_final_details``.

A callback says how a run ended (status, outputs, timings) but carries no cost, no logs and
no steps (RUNFLOW_API.md, Callbacks), and polling stops at a terminal status. Without one
more read, a run finished by callback would show an empty cost (and Usage and budgets would
undercount), logs stopping at "Running" and steps still "running". So when a run reaches a
terminal state and its details are missing, the worker fetches it once and merges what the
full Run object says: ``apply_report`` fills only blanks and merges logs and steps, so this
is idempotent and never changes the status.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.tasks import task
from django.utils import timezone

from runs.models import TERMINAL, Run

logger = logging.getLogger(__name__)

# A read that fails (Runflow down, the team over its budget) is tried again this many times.
RETRY_DELAYS: tuple[float, ...] = (15, 60, 300)


def details_missing(run: Run) -> bool:
    """A terminal run Runflow knows whose cost or logs never arrived."""
    if run.status not in TERMINAL or run.runflow_id is None:
        return False
    return run.cost is None or not run.logs.exists()


def fetch_details_when_missing(run: Run) -> None:
    """``transitions.on_transition`` hook (on commit): queue the last read if it is owed."""
    if details_missing(run):
        fetch_final_details.enqueue(run.pk, 0)


@task()
def fetch_final_details(run_id: int, attempt: int = 0) -> str:
    """Read a finished run once from Runflow and merge its cost, logs and steps."""
    from runs.tasks.polling import fetch_and_apply, take_upstream_budget

    run = Run.objects.select_related("team", "key").filter(pk=run_id).first()
    if run is None or not details_missing(run):
        return "nothing owed"
    if take_upstream_budget(run.team_id):
        result, retry_in = fetch_and_apply(run)
    else:
        result, retry_in = "team over its upstream budget", 1.0
    if retry_in and attempt < len(RETRY_DELAYS):
        _again(run_id, attempt)
    return result


def _again(run_id: int, attempt: int) -> None:
    backend = fetch_final_details.get_backend()
    if not backend.supports_defer:
        return  # the immediate backend (tests) would retry inline at once: pointless
    when = timezone.now() + timedelta(seconds=RETRY_DELAYS[attempt])
    fetch_final_details.using(run_after=when).enqueue(run_id, attempt + 1)
