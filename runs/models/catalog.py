"""The model catalog (synced from Runflow per endpoint), presets and per-model policy."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone

from runs.models.teams import Role, Team


class OutputKind(models.TextChoices):
    IMAGE = "image", "Image"
    VIDEO = "video", "Video"
    AUDIO = "audio", "Audio"
    OTHER = "other", "Other"


class RunflowModel(models.Model):
    """One model as listed by ``GET /v1/models`` on one API endpoint.

    ``inputs`` holds the ModelInput definitions exactly as Runflow sent them (validated by
    ``runs.runflow.schemas`` on the way in); launch forms are generated from it.
    """

    api_url = models.URLField(max_length=300)
    model_id = models.CharField(max_length=300, help_text="Slash path, e.g. google/nano-banana-pro")
    display_name = models.CharField(max_length=300, blank=True)
    description = models.TextField(blank=True)
    category = models.CharField(max_length=100, blank=True)
    output_kind = models.CharField(
        max_length=10, choices=OutputKind.choices, default=OutputKind.OTHER
    )
    price_label = models.CharField(max_length=200, blank=True)
    cover_url = models.URLField(max_length=2000, blank=True)
    # Our own re-encoded copy of the cover (``runs.catalog.copy_cover``): pages show only this.
    cover_file = models.FileField(upload_to="covers/", max_length=200, blank=True)
    inputs = models.JSONField(default=list, blank=True)
    outputs = models.JSONField(default=list, blank=True)
    examples = models.JSONField(default=list, blank=True)
    supports_batch = models.BooleanField(default=False)
    raw = models.JSONField(default=dict, blank=True)
    is_available = models.BooleanField(default=True)
    synced_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["api_url", "model_id"], name="one_model_per_endpoint")
        ]
        ordering = ["display_name", "model_id"]

    def __str__(self) -> str:
        return self.display_name or self.model_id


class Preset(models.Model):
    """A named, team-shared set of inputs for one model."""

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="presets")
    model_id = models.CharField(max_length=300)
    name = models.CharField(max_length=100)
    input = models.JSONField(default=dict)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["team", "model_id", "name"], name="preset_name_unique_per_model"
            )
        ]
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.model_id})"


class ModelPolicy(models.Model):
    """Whether a team may launch a model, and the lowest role that may (budgets issue)."""

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="model_policies")
    model_id = models.CharField(max_length=300)
    allowed = models.BooleanField(default=True)
    min_role = models.CharField(max_length=10, choices=Role.choices, default=Role.MEMBER)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["team", "model_id"], name="one_policy_per_model")
        ]
        verbose_name_plural = "model policies"

    def __str__(self) -> str:
        return f"{self.model_id} for {self.team}"
