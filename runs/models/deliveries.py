"""The delivery ledger: every report about a run, however it arrived (W6, W13, D4)."""

from __future__ import annotations

import uuid

from django.db import models
from django.utils import timezone

from runs.models.runs import Batch, Run
from runs.models.teams import Team


class Source(models.TextChoices):
    CALLBACK = "callback", "Callback"
    POLL = "poll", "Poll"
    SUBMIT = "submit", "Submit answer"
    RECONCILE = "reconcile", "Reconcile"


class Outcome(models.TextChoices):
    RECEIVED = "received", "Received, not yet applied"
    APPLIED = "applied", "Applied"
    DUPLICATE = "duplicate", "Duplicate (already applied)"
    LATE = "late", "Late (run already further on)"
    CONFLICT = "conflict", "Conflicting terminal report"
    UNMATCHED = "unmatched", "No matching run"
    IGNORED = "ignored", "Ignored (unknown event or status)"
    INVALID = "invalid", "Invalid body"


class Delivery(models.Model):
    """One report: a verified callback body, a poll answer or a submit answer.

    Callbacks are stored with their raw bytes *before* they are parsed or applied, so an
    acknowledged callback can always be replayed (W6, D4).
    """

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="deliveries")
    run = models.ForeignKey(
        Run, null=True, blank=True, on_delete=models.SET_NULL, related_name="deliveries"
    )
    batch = models.ForeignKey(
        Batch, null=True, blank=True, on_delete=models.SET_NULL, related_name="deliveries"
    )
    source = models.CharField(max_length=10, choices=Source.choices)
    event = models.CharField(max_length=100, blank=True)
    reported_status = models.CharField(max_length=30, blank=True)
    runflow_run_id = models.CharField(max_length=100, blank=True, db_index=True)
    request_id = models.CharField(max_length=200, blank=True)
    signature_verified = models.BooleanField(default=False)
    raw_body = models.BinaryField(blank=True, default=b"")
    headers = models.JSONField(default=dict, blank=True)
    received_at = models.DateTimeField(default=timezone.now, db_index=True)
    outcome = models.CharField(max_length=10, choices=Outcome.choices, default=Outcome.RECEIVED)
    note = models.TextField(blank=True)

    class Meta:
        ordering = ["-received_at", "-id"]
        verbose_name_plural = "deliveries"
        indexes = [models.Index(fields=["team", "outcome"], name="delivery_team_outcome")]

    def __str__(self) -> str:
        return f"{self.source} {self.event or self.reported_status} ({self.outcome})"
