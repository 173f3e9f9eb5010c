"""The audit log: who did what, when. Append-only."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models
from django.utils import timezone

from runs.models.teams import Team


class AuditQuerySet(models.QuerySet["AuditEntry"]):
    """Bulk edits would bypass ``save``/``delete``: refuse them too. (Deleting a team or a
    user still works: Django's collector nulls the foreign keys through the base manager.)"""

    def update(self, **kwargs: Any) -> int:
        raise ValueError("Audit entries are append-only.")

    def delete(self) -> tuple[int, dict[str, int]]:
        raise ValueError("Audit entries are append-only.")


class AuditEntry(models.Model):
    team = models.ForeignKey(
        Team, null=True, blank=True, on_delete=models.SET_NULL, related_name="audit_entries"
    )
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    action = models.CharField(max_length=60, db_index=True)
    target = models.CharField(max_length=300, blank=True)
    detail = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    objects = AuditQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "audit entries"

    def __str__(self) -> str:
        return f"{self.action} {self.target}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.pk is not None:
            raise ValueError("Audit entries are append-only.")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        raise ValueError("Audit entries are append-only.")


def record(
    action: str,
    *,
    team: Team | None = None,
    actor: Any = None,
    target: object = "",
    **detail: Any,
) -> AuditEntry:
    """Write one audit entry. ``detail`` must never carry a secret."""
    user = actor if getattr(actor, "is_authenticated", False) else None
    return AuditEntry.objects.create(
        team=team, actor=user, action=action, target=str(target)[:300], detail=detail
    )
