"""Upkeep run by the worker: each team's retention rule.

``retention_sweep`` applies every team's rule, then schedules itself again
``SWEEP_INTERVAL`` later. Exactly one chain should exist: ``ensure_sweep_scheduled`` starts
one only if the shared cache holds no live chain marker, and a sweep whose marker was
replaced (a duplicate chain) stops without rescheduling. Call ``ensure_sweep_scheduled``
at worker start; saving a retention rule calls it too.
"""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.tasks import task
from django.utils import timezone

from runs import retention
from runs.models import Team, record

logger = logging.getLogger(__name__)

SWEEP_INTERVAL = timedelta(hours=6)
CHAIN_KEY = "upkeep:retention-chain"


@task
def apply_retention(team_id: int, token: str = "", actor_id: int | None = None) -> dict[str, int]:
    """Apply one team's rule: the previewed plan when ``token`` is given, else plan now."""
    team = Team.objects.filter(pk=team_id).first()
    if team is None:
        return {"runs_deleted": 0, "files_deleted": 0}
    actor = get_user_model().objects.filter(pk=actor_id).first() if actor_id else None
    if token:
        try:
            chosen = retention.plan_from_token(team, token)
        except retention.PlanChanged as exc:
            # The page checked the plan when the button was pressed; if the worker finds it
            # changed since, it deletes nothing and says so in the audit log.
            record("retention.skipped", team=team, actor=actor, target=str(exc)[:300])
            return {"runs_deleted": 0, "files_deleted": 0}
    else:
        found = retention.plan(team)
        if found is None or found.is_empty:
            return {"runs_deleted": 0, "files_deleted": 0}
        chosen = found
    result = retention.apply(chosen, actor=actor, trigger="preview" if token else "schedule")
    return {"runs_deleted": result.runs_deleted, "files_deleted": result.files_deleted}


@task
def retention_sweep(chain: str = "") -> int:
    """Apply every due team's rule; one team's failure never stops the others."""
    if chain and cache.get(CHAIN_KEY) not in (None, chain):
        logger.info("Retention sweep %s superseded by another chain; stopping it", chain)
        return 0
    done = 0
    for team_id in retention.due_teams().values_list("pk", flat=True):
        try:
            apply_retention.call(team_id)
            done += 1
        except Exception:
            logger.exception("Retention failed for team %s", team_id)
    _schedule_next()
    return done


def _schedule_next() -> None:
    backend = retention_sweep.get_backend()
    if not backend.supports_defer:
        return  # the immediate backend (tests) would recurse instead of waiting
    chain = uuid.uuid4().hex
    cache.set(CHAIN_KEY, chain, timeout=int(SWEEP_INTERVAL.total_seconds() * 2))
    retention_sweep.using(run_after=timezone.now() + SWEEP_INTERVAL).enqueue(chain)


def ensure_sweep_scheduled() -> bool:
    """Start the sweep chain unless one is already live; True if one was started."""
    if not retention_sweep.get_backend().supports_defer:
        return False
    chain = uuid.uuid4().hex
    if not cache.add(CHAIN_KEY, chain, timeout=int(SWEEP_INTERVAL.total_seconds() * 2)):
        return False
    retention_sweep.using(run_after=timezone.now() + timedelta(minutes=1)).enqueue(chain)
    return True
