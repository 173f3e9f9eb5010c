"""Read-only share links to one run or a selection of runs."""

from __future__ import annotations

import secrets

from django.conf import settings
from django.db import models
from django.urls import reverse
from django.utils import timezone

from runs.models.runs import Run
from runs.models.teams import Team


def _share_token() -> str:
    return secrets.token_urlsafe(32)


class ShareLink(models.Model):
    token = models.CharField(max_length=64, unique=True, default=_share_token, editable=False)
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="share_links")
    runs = models.ManyToManyField(Run, related_name="share_links")
    title = models.CharField(max_length=200, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.title or f"Share link {self.pk}"

    def get_absolute_url(self) -> str:
        return reverse("runs:shared", args=[self.token])

    @property
    def is_live(self) -> bool:
        if self.revoked_at is not None:
            return False
        return self.expires_at is None or self.expires_at > timezone.now()
