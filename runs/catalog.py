"""The model catalog: what each Runflow endpoint offers, kept in ``RunflowModel`` rows.

``sync_endpoint`` walks ``GET /v1/models`` (every page), fetches each model's detail for its
inputs, and upserts one row per (endpoint, model id). A model whose detail cannot be read
keeps what the list said; one bad model never stops the others. Only a complete listing
marks the models it no longer contains unavailable: a sync cut short by an error must not
make half the catalog disappear.

Cover images are copied into our own storage (through the same guarded downloader that
archives outputs, R8) and re-encoded, because the site's CSP only shows images from itself
and because a URL Runflow gives is never put in a page as is.
"""

from __future__ import annotations

import hashlib
import io
import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db.models import Q, QuerySet
from django.utils import timezone

from runs.models import OutputKind, RunflowKey, RunflowModel
from runs.runflow.client import RunflowClient
from runs.runflow.errors import RunflowError

logger = logging.getLogger(__name__)

MAX_COVER_BYTES = 3 * 1024 * 1024
MAX_COVER_PIXELS = 40_000_000
COVER_SIZE = (640, 640)
# Statuses that say a model cannot be launched now; anything else (or nothing) is available.
_UNAVAILABLE = {"inactive", "disabled", "deprecated", "retired", "unavailable", "offline", "down"}
STATUS_CACHE_SECONDS = 30 * 24 * 3600


def normalize_api_url(api_url: str) -> str:
    return api_url.strip().rstrip("/")


def sync_interval() -> int:
    """Seconds between the worker's own catalog syncs (``CATALOG_SYNC_SECONDS``)."""
    return int(getattr(settings, "CATALOG_SYNC_SECONDS", 6 * 3600))


@dataclass
class SyncResult:
    api_url: str
    listed: int = 0
    created: int = 0
    updated: int = 0
    retired: int = 0
    detail_errors: list[str] = field(default_factory=list)
    error: str = ""
    finished_at: datetime | None = None

    @property
    def ok(self) -> bool:
        return not self.error

    @property
    def summary(self) -> str:
        if self.error:
            return f"The catalog could not be synced: {self.error}"
        parts = [f"{self.listed} models listed", f"{self.created} new"]
        if self.retired:
            parts.append(f"{self.retired} no longer offered")
        if self.detail_errors:
            parts.append(f"{len(self.detail_errors)} without details")
        return "Catalog synced: " + ", ".join(parts) + "."


def sync_endpoint(client: RunflowClient, api_url: str, *, covers: bool = True) -> SyncResult:
    """Upsert every model ``client`` lists into the catalog of ``api_url``."""
    api_url = normalize_api_url(api_url)
    result = SyncResult(api_url)
    seen: set[str] = set()
    try:
        for listed in client.iter_models():
            if listed.id in seen:
                continue
            seen.add(listed.id)
            info = listed
            try:
                info = client.get_model(listed.id)
            except RunflowError as error:
                result.detail_errors.append(f"{listed.id}: {error.message}")
            created = _upsert(api_url, info, covers=covers)
            result.created += int(created)
            result.updated += int(not created)
    except RunflowError as error:
        result.error = error.message
    result.listed = len(seen)
    if result.ok:
        result.retired = (
            RunflowModel.objects.filter(api_url=api_url, is_available=True)
            .exclude(model_id__in=seen)
            .update(is_available=False)
        )
    result.finished_at = timezone.now()
    remember(result)
    return result


def _upsert(api_url: str, info: Any, *, covers: bool) -> bool:
    status = " ".join(
        str(value or "").lower() for value in (info.status_code, info.availability_status)
    )
    dumped = info.model_dump(mode="json")
    kind = info.output_kind if info.output_kind in OutputKind.values else OutputKind.OTHER
    defaults: dict[str, Any] = {
        "display_name": (info.name or "")[:300],
        "description": info.description or "",
        "category": (info.category_code or "")[:100],
        "output_kind": kind,
        "price_label": (info.price_label or info.pricing_note or "")[:200],
        "cover_url": (info.cover_url or info.icon_url or "")[:2000],
        "inputs": dumped.get("inputs") or [],
        "outputs": dumped.get("outputs") or [],
        "examples": dumped.get("examples") or [],
        "supports_batch": bool(info.supports_batch),
        "raw": {k: v for k, v in dumped.items() if k not in ("inputs", "outputs", "examples")},
        "is_available": not (set(status.split()) & _UNAVAILABLE),
        "synced_at": timezone.now(),
    }
    model, created = RunflowModel.objects.update_or_create(
        api_url=api_url, model_id=info.id, defaults=defaults
    )
    if covers:
        copy_cover(model)
    return created


# ---- cover images ----


def copy_cover(model: RunflowModel) -> None:
    """Copy the model's cover into storage once per source URL; never raises."""
    source = model.cover_url
    if not source:
        if model.cover_file:
            RunflowModel.objects.filter(pk=model.pk).update(cover_file="")
        return
    digest = hashlib.sha256(source.encode()).hexdigest()
    name = f"covers/{digest}.jpg"
    if model.cover_file.name == name and default_storage.exists(name):
        return
    try:
        if not default_storage.exists(name):
            default_storage.save(name, ContentFile(_fetch_cover(source)))
    except Exception as exc:  # a cover is decoration: no failure of it may stop a sync
        logger.info("Cover of %s not copied: %s", model.model_id, exc)
        return
    RunflowModel.objects.filter(pk=model.pk).update(cover_file=name)


def _fetch_cover(url: str) -> bytes:
    from PIL import Image

    from runs.archive import download

    fetched = download(url, max_bytes=MAX_COVER_BYTES, timeout=15)
    try:
        if fetched.sniffed.kind != "image":
            raise ValueError("the cover is not an image")
        with Image.open(fetched.file) as image:
            if image.width * image.height > MAX_COVER_PIXELS:
                raise ValueError("the cover is too large")
            image.thumbnail(COVER_SIZE)
            # Re-encoded as a plain JPEG: whatever else the file carried stays behind.
            out = io.BytesIO()
            image.convert("RGB").save(out, format="JPEG", quality=85)
            return out.getvalue()
    finally:
        fetched.close()


# ---- what the pages read ----


def models_for(api_url: str) -> QuerySet[RunflowModel]:
    return RunflowModel.objects.filter(api_url=normalize_api_url(api_url))


def search(
    api_url: str, *, q: str = "", category: str = "", kind: str = ""
) -> QuerySet[RunflowModel]:
    """The models to list. Browsing shows only what Runflow offers; a search by words also
    finds retired models, after the offered ones, so someone looking for a model they used
    learns it is gone (the card says so) instead of "no model matches"."""
    models = models_for(api_url)
    if q:
        models = models.filter(
            Q(display_name__icontains=q) | Q(model_id__icontains=q) | Q(description__icontains=q)
        ).order_by("-is_available", "display_name", "model_id")
    else:
        models = models.filter(is_available=True)
    if category:
        models = models.filter(category=category)
    if kind:
        models = models.filter(output_kind=kind)
    return models.defer("raw", "outputs", "examples", "inputs")


def categories(api_url: str) -> list[str]:
    found = models_for(api_url).exclude(category="").values_list("category", flat=True)
    return sorted(set(found))


# ---- sync status, shared between web and worker processes through the cache ----


def _status_key(api_url: str) -> str:
    return "catalog-sync:" + hashlib.sha256(normalize_api_url(api_url).encode()).hexdigest()[:32]


def remember(result: SyncResult) -> None:
    cache.set(
        _status_key(result.api_url),
        {
            "ok": result.ok,
            "summary": result.summary,
            "at": result.finished_at.isoformat() if result.finished_at else "",
        },
        STATUS_CACHE_SECONDS,
    )


def last_sync(api_url: str) -> dict[str, Any] | None:
    found = cache.get(_status_key(api_url))
    return found if isinstance(found, dict) else None


def claim_sync(api_url: str, seconds: int) -> bool:
    """True once per ``seconds`` per endpoint: de-duplicates queued syncs across processes."""
    return bool(cache.add(_status_key(api_url) + ":queued", 1, seconds))


def sync_queued(api_url: str) -> bool:
    return cache.get(_status_key(api_url) + ":queued") is not None


def release_sync(api_url: str) -> None:
    cache.delete(_status_key(api_url) + ":queued")


def key_for(api_url: str, key_uuid: str | None = None) -> RunflowKey | None:
    """A usable key on ``api_url`` to read the catalog with (the catalog is the same for all)."""
    keys = RunflowKey.objects.select_related("team").filter(
        revoked_at__isnull=True, needs_reentry=False
    )
    if key_uuid:
        return keys.filter(uuid=key_uuid).first()
    url = normalize_api_url(api_url)
    return (
        keys.filter(Q(api_url=url) | Q(api_url=url + "/"))
        .order_by("-is_default", "-last_used_at", "id")
        .first()
    )
