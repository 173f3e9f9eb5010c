"""What the task worker needs besides the tasks themselves: the periodic reconcile cycle.

``reconcile`` (``runs.tasks.polling``) must run when a worker starts and every few minutes
after. It keeps itself going: each sweep enqueues the next one ``RECONCILE_EVERY`` later on
the database queue, so any worker on any host may run it and nothing else has to stay up.
Exactly one cycle should exist; a marker in the shared cache (the database cache in
production) makes ``ensure_reconcile_cycle`` start one only when no live cycle is known, and
a second cycle started anyway only makes a sweep run twice, which is harmless.

Start it with ``manage.py reconcile`` (one sweep now, then the cycle): ``serve`` does so
before it starts its workers, and a production deployment runs it once beside
``manage.py worker`` (at deploy, or from the process manager before the workers).
"""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.utils import timezone

logger = logging.getLogger(__name__)

CYCLE_KEY = "worker:reconcile-cycle"


def reconcile_every() -> timedelta:
    return timedelta(seconds=float(getattr(settings, "RECONCILE_EVERY", 180)))


def _marker_timeout() -> int:
    # The marker outlives a few intervals, so while the cycle is healthy nobody starts
    # another; if the cycle dies, the marker lapses and the next ensure call restarts it.
    return int(reconcile_every().total_seconds() * 3)


def continue_cycle(chain: str) -> bool:
    """Called by a cycle's sweep: enqueue its successor unless another cycle took over."""
    from runs.tasks.polling import reconcile

    if not chain or not reconcile.get_backend().supports_defer:
        return False
    current = cache.get(CYCLE_KEY)
    if current not in (None, chain):
        logger.info("Reconcile cycle %s superseded by %s; stopping it", chain, current)
        return False
    cache.set(CYCLE_KEY, chain, timeout=_marker_timeout())
    reconcile.using(run_after=timezone.now() + reconcile_every()).enqueue(chain=chain)
    return True


def ensure_reconcile_cycle() -> bool:
    """Start the cycle unless a live one is known; True if one was started."""
    from runs.tasks.polling import reconcile

    if not reconcile.get_backend().supports_defer:
        return False  # the immediate backend (tests) would recurse instead of waiting
    chain = uuid.uuid4().hex
    if not cache.add(CYCLE_KEY, chain, timeout=_marker_timeout()):
        return False
    reconcile.using(run_after=timezone.now() + reconcile_every()).enqueue(chain=chain)
    return True


def on_worker_start() -> dict[str, Any]:
    """One sweep now, then make sure the periodic work is scheduled."""
    from runs.tasks.polling import reconcile

    # The sweep also re-sends runs saved but never sent (their worker died, or their task
    # was lost) and re-arms lost polls.
    counts = dict(reconcile.call())
    counts["cycle_started"] = ensure_reconcile_cycle()
    try:
        from runs.tasks.upkeep import ensure_sweep_scheduled
    except ImportError:
        pass
    else:
        counts["retention_cycle_started"] = ensure_sweep_scheduled()
    # The model catalog of every connected endpoint: fetched now if empty or stale; each
    # sync then schedules the next one (runs/tasks/catalog.py).
    from runs.tasks.catalog import ensure_catalogs

    counts["catalog_syncs_queued"] = ensure_catalogs()
    return counts
