"""Keeping the model catalog fresh: ``sync_catalog`` on demand and on a schedule.

django-tasks-db has no cron, so the schedule is a chain: every sync enqueues the next one
``CATALOG_SYNC_SECONDS`` later. A cache key taken with ``add`` (atomic in every cache
backend, shared between processes with the database cache) lets only one chain live per
endpoint, however many syncs people start by hand.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.core.cache import cache
from django.tasks import task
from django.utils import timezone

from runs.catalog import (
    SyncResult,
    claim_sync,
    key_for,
    normalize_api_url,
    release_sync,
    remember,
    sync_endpoint,
    sync_interval,
    sync_queued,
)
from runs.models import RunflowKey, RunflowModel

logger = logging.getLogger(__name__)

# A sync someone asked for is not queued again for this long (double clicks, many tabs).
REQUEST_DEDUP_SECONDS = 120


@task()
def sync_catalog(api_url: str, key_uuid: str | None = None) -> str:
    """Sync the catalog of ``api_url`` with a usable key (``key_uuid`` when given)."""
    api_url = normalize_api_url(api_url)
    result = SyncResult(api_url, error="the sync stopped unexpectedly")
    try:
        result = _sync(api_url, key_uuid)
    finally:
        # A failed sync keeps its claim until it lapses: pages that wait for a catalog
        # must not make a failing endpoint be asked again every few seconds.
        if result.ok:
            release_sync(api_url)
        schedule_next(api_url)
    logger.info("%s (%s)", result.summary, api_url)
    return result.summary


def _sync(api_url: str, key_uuid: str | None) -> SyncResult:
    key = key_for(api_url, key_uuid)
    if key is None:
        result = SyncResult(api_url, error="no team has a usable API key for this endpoint")
        remember(result)
        return result
    from runs.connection import ConnectionUnavailable, client_for_team

    try:
        client = client_for_team(key.team, key=key)
    except ConnectionUnavailable as exc:
        result = SyncResult(api_url, error=str(getattr(exc, "message", exc)))
        remember(result)
        return result
    with client:
        return sync_endpoint(client, api_url)


def schedule_next(api_url: str) -> bool:
    """Enqueue the next periodic sync, unless one is already waiting (or cannot wait)."""
    if not sync_catalog.get_backend().supports_defer:
        return False
    interval = sync_interval()
    if not cache.add(f"catalog-next:{normalize_api_url(api_url)}", 1, interval):
        return False
    sync_catalog.using(run_after=timezone.now() + timedelta(seconds=interval)).enqueue(api_url)
    return True


def sync_if_empty(api_url: str, key: RunflowKey | None) -> bool:
    """A connected team looking at an empty catalog: fetch it in the background.

    Only with a real worker (a deferring backend): a page view never waits on Runflow.
    True while a sync is queued or running.
    """
    if key is None or not sync_catalog.get_backend().supports_defer:
        return False
    return request_sync(api_url, key) or sync_queued(api_url)


def ensure_catalogs() -> int:
    """At worker start: queue a sync for every endpoint a usable key points at whose catalog
    is empty or older than the sync interval. Returns how many were queued."""
    if not sync_catalog.get_backend().supports_defer:
        return 0
    stale_before = timezone.now() - timedelta(seconds=sync_interval())
    keys = RunflowKey.objects.filter(revoked_at__isnull=True, needs_reentry=False)
    queued = 0
    for url in sorted({normalize_api_url(k.api_url) for k in keys}):
        models = RunflowModel.objects.filter(api_url=url)
        if not models.exists() or models.filter(synced_at__lt=stale_before).exists():
            queued += int(request_sync(url))
    return queued


def request_sync(api_url: str, key: RunflowKey | None = None) -> bool:
    """Queue a sync now (a team admin's button, a newly connected team); False if queued."""
    api_url = normalize_api_url(api_url)
    if not claim_sync(api_url, REQUEST_DEDUP_SECONDS):
        return False
    sync_catalog.enqueue(api_url, str(key.uuid) if key else None)
    return True
