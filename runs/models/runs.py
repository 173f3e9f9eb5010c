"""Runs, their outputs, logs and steps, and batches of runs."""

from __future__ import annotations

import uuid
from typing import Any

from django.conf import settings
from django.db import models
from django.urls import reverse
from django.utils import timezone

from runs.models.catalog import OutputKind
from runs.models.teams import RunflowKey, Team


class Status(models.TextChoices):
    """Runflow's ``status_code`` values plus our own ``pending`` (saved, not yet accepted)."""

    PENDING = "pending", "Pending"
    QUEUED = "queued", "Queued"
    DISPATCHING = "dispatching", "Dispatching"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    PARTIAL_SUCCEEDED = "partial_succeeded", "Partly succeeded"
    FAILED = "failed", "Failed"
    CANCELED = "canceled", "Canceled"


# Status only moves forward along this rank (W9); every terminal status shares the top rank
# so one terminal state can never replace another.
STATUS_RANK: dict[str, int] = {
    Status.PENDING: 0,
    Status.QUEUED: 1,
    Status.DISPATCHING: 2,
    Status.RUNNING: 3,
    Status.SUCCEEDED: 4,
    Status.PARTIAL_SUCCEEDED: 4,
    Status.FAILED: 4,
    Status.CANCELED: 4,
}
TERMINAL = frozenset({Status.SUCCEEDED, Status.PARTIAL_SUCCEEDED, Status.FAILED, Status.CANCELED})
IN_FLIGHT = frozenset({Status.PENDING, Status.QUEUED, Status.DISPATCHING, Status.RUNNING})
WITH_OUTPUTS = frozenset({Status.SUCCEEDED, Status.PARTIAL_SUCCEEDED})

# Older Runflow docs and callback event names spell it with two l's (RUNFLOW_API.md).
_STATUS_SYNONYMS = {"cancelled": Status.CANCELED}


def normalize_status(value: str | None) -> Status | None:
    """Runflow's status string as our enum, or None when it is not one we know (R9)."""
    if not value:
        return None
    value = value.strip().lower()
    if value in _STATUS_SYNONYMS:
        return _STATUS_SYNONYMS[value]
    try:
        return Status(value)
    except ValueError:
        return None


class Batch(models.Model):
    """Many runs launched from one form; sent to Runflow in chunks of at most 100."""

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="batches")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    key = models.ForeignKey(RunflowKey, null=True, on_delete=models.SET_NULL, related_name="+")
    api_url = models.URLField(max_length=300)
    model_id = models.CharField(max_length=300)
    label = models.CharField(max_length=200, blank=True)
    source = models.CharField(max_length=20, blank=True, help_text="lines, csv or grid")
    created_at = models.DateTimeField(default=timezone.now)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "batches"

    def __str__(self) -> str:
        return f"Batch {self.uuid} of {self.model_id}"

    def get_absolute_url(self) -> str:
        return reverse("runs:batch", args=[self.team.uuid, self.uuid])


class BatchChunk(models.Model):
    """One ``POST /v1/models/<id>/batches`` call: at most 100 items, its own Idempotency-Key."""

    batch = models.ForeignKey(Batch, on_delete=models.CASCADE, related_name="chunks")
    index = models.PositiveIntegerField()
    idempotency_key = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    runflow_batch_id = models.CharField(max_length=100, blank=True, db_index=True)
    state = models.CharField(max_length=20, default="pending")
    error = models.TextField(blank=True)
    submitted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["batch", "index"], name="one_chunk_per_index")
        ]
        ordering = ["index"]

    def __str__(self) -> str:
        return f"Chunk {self.index} of {self.batch_id}"


class RunQuerySet(models.QuerySet["Run"]):
    def in_flight(self) -> RunQuerySet:
        return self.filter(status__in=IN_FLIGHT)

    def terminal(self) -> RunQuerySet:
        return self.filter(status__in=TERMINAL)


class Run(models.Model):
    """One launch of one model. Saved before anything is sent upstream (W11, R1).

    ``uuid`` is our id, and also the ``client_ref`` and ``Idempotency-Key`` sent to Runflow,
    so a run can always be found again upstream whatever happened to the create answer.
    """

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="runs")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        on_delete=models.SET_NULL,
        related_name="runs",
    )
    key = models.ForeignKey(RunflowKey, null=True, on_delete=models.SET_NULL, related_name="+")
    api_url = models.URLField(max_length=300)
    model_id = models.CharField(max_length=300, db_index=True)
    input = models.JSONField(default=dict)
    # Lower-cased text of the input's string values, for the history's free-text search.
    search_text = models.TextField(blank=True, editable=False)
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="children"
    )
    batch = models.ForeignKey(
        Batch, null=True, blank=True, on_delete=models.SET_NULL, related_name="runs"
    )
    batch_index = models.PositiveIntegerField(null=True, blank=True)
    batch_chunk = models.ForeignKey(
        BatchChunk, null=True, blank=True, on_delete=models.SET_NULL, related_name="runs"
    )

    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING)
    runflow_id = models.UUIDField(null=True, blank=True, unique=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    updated_at = models.DateTimeField(default=timezone.now)
    submitted_at = models.DateTimeField(null=True, blank=True)
    queued_at = models.DateTimeField(null=True, blank=True)
    dispatching_at = models.DateTimeField(null=True, blank=True)
    running_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    cost = models.DecimalField(max_digits=12, decimal_places=6, null=True, blank=True)
    duration_ms = models.PositiveBigIntegerField(null=True, blank=True)
    output = models.JSONField(null=True, blank=True)
    failure_code = models.CharField(max_length=100, blank=True)
    failure_stage_code = models.CharField(max_length=100, blank=True)
    failure_message = models.TextField(blank=True)
    # Field errors from a 422 at submission, kept so "edit and relaunch" can show them.
    field_errors = models.JSONField(default=dict, blank=True)
    nodes_total = models.PositiveIntegerField(null=True, blank=True)
    nodes_completed = models.PositiveIntegerField(null=True, blank=True)

    # Worker bookkeeping.
    submit_attempts = models.PositiveIntegerField(default=0)
    # The submit lease: while a worker sends the run, or waits to retry, this is when it
    # should have moved on. Past it, a pending run nobody sent is stranded (its worker died
    # or its task was lost) and the reconcile sweep enqueues it again (D4).
    submit_due_at = models.DateTimeField(null=True, blank=True)
    poll_count = models.PositiveIntegerField(default=0)
    last_polled_at = models.DateTimeField(null=True, blank=True)
    next_poll_at = models.DateTimeField(null=True, blank=True, db_index=True)
    stuck_since = models.DateTimeField(null=True, blank=True)
    has_anomaly = models.BooleanField(default=False)
    feedback = models.BooleanField(null=True, blank=True)
    deleted_at = models.DateTimeField(null=True, blank=True)

    objects = RunQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            # The history: newest first inside a team, keyset-paginated on (created_at, id).
            models.Index(fields=["team", "-created_at", "-id"], name="run_team_recent"),
            models.Index(fields=["team", "status", "-created_at"], name="run_team_status"),
            models.Index(fields=["team", "model_id", "-created_at"], name="run_team_model"),
            models.Index(fields=["status", "next_poll_at"], name="run_inflight_poll"),
        ]

    def __str__(self) -> str:
        return f"{self.model_id} · {self.uuid}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        self.search_text = build_search_text(self.input)
        super().save(*args, **kwargs)

    def get_absolute_url(self) -> str:
        return reverse("runs:run", args=[self.team.uuid, self.uuid])

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL

    @property
    def is_in_flight(self) -> bool:
        return self.status in IN_FLIGHT

    def cancel_key(self) -> RunflowKey | None:
        """The team's key that may cancel this run upstream, or None.

        Runflow cancels only through its admin route, so it takes a service (``rf_svc_``)
        key of the same organisation as the run: the run's own key when it is one, else
        another active key of the team for the same endpoint and organisation.
        """
        own = self.key
        if own is not None and own.is_active and own.is_admin_key:
            return own
        others = RunflowKey.objects.filter(
            team_id=self.team_id, api_url=self.api_url, revoked_at__isnull=True
        ).order_by("-is_default", "created_at")
        if own is not None:
            others = others.filter(org_id=own.org_id)
        return next((key for key in others if key.is_admin_key), None)

    @property
    def prompt(self) -> str:
        """The text a person would call this run's prompt, for titles and lists."""
        value = self.input.get("prompt") if isinstance(self.input, dict) else None
        return value if isinstance(value, str) else ""


def build_search_text(value: object) -> str:
    parts: list[str] = []

    def walk(item: object) -> None:
        if isinstance(item, str):
            parts.append(item)
        elif isinstance(item, dict):
            for child in item.values():
                walk(child)
        elif isinstance(item, list):
            for child in item:
                walk(child)

    walk(value)
    return " ".join(parts).lower()[:10_000]


class ArchiveState(models.TextChoices):
    PENDING = "pending", "Waiting to be copied"
    ARCHIVED = "archived", "Copied"
    FAILED = "failed", "Copy failed, retrying"
    EXPIRED = "expired", "Link expired before it could be copied"
    REFUSED = "refused", "Refused (unsafe address or content)"
    PURGED = "purged", "Deleted by the team's retention rule"


def output_upload_to(instance: Output, filename: str) -> str:
    return f"outputs/{instance.run.team.uuid}/{instance.run.uuid}/{filename}"


class Output(models.Model):
    """One output file of a run; ``file`` is our own copy once archived (R7)."""

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="outputs")
    index = models.PositiveIntegerField()
    kind = models.CharField(max_length=10, choices=OutputKind.choices, default=OutputKind.OTHER)
    source_url = models.TextField(help_text="Runflow's presigned URL; expires.")
    content_type = models.CharField(max_length=100, blank=True)
    width = models.PositiveIntegerField(null=True, blank=True)
    height = models.PositiveIntegerField(null=True, blank=True)
    duration = models.FloatField(null=True, blank=True)
    size_bytes = models.PositiveBigIntegerField(null=True, blank=True)
    sha256 = models.CharField(max_length=64, blank=True)
    file = models.FileField(upload_to=output_upload_to, max_length=500, blank=True)
    thumbnail = models.FileField(upload_to=output_upload_to, max_length=500, blank=True)
    archive_state = models.CharField(
        max_length=10, choices=ArchiveState.choices, default=ArchiveState.PENDING
    )
    archive_error = models.TextField(blank=True)
    archive_attempts = models.PositiveIntegerField(default=0)
    archived_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["run", "index"], name="one_output_per_index")
        ]
        ordering = ["run", "index"]
        indexes = [models.Index(fields=["archive_state"], name="output_archive_state")]

    def __str__(self) -> str:
        return f"{self.kind} #{self.index} of {self.run_id}"


class RunLog(models.Model):
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="logs")
    runflow_id = models.CharField(max_length=100)
    level = models.CharField(max_length=20, default="info")
    message = models.TextField()
    timestamp = models.DateTimeField(null=True, blank=True)
    meta = models.JSONField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["run", "runflow_id"], name="one_log_per_upstream_id")
        ]
        ordering = ["timestamp", "id"]

    def __str__(self) -> str:
        return f"[{self.level}] {self.message[:60]}"


class NodeRun(models.Model):
    """One step of a multi-step model; updated in place as polls report progress."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="node_runs")
    runflow_id = models.CharField(max_length=100)
    node_id = models.CharField(max_length=200, blank=True)
    state = models.CharField(max_length=30, blank=True)
    input = models.JSONField(null=True, blank=True)
    output = models.JSONField(null=True, blank=True)
    duration_ms = models.PositiveBigIntegerField(null=True, blank=True)
    cost = models.DecimalField(max_digits=12, decimal_places=6, null=True, blank=True)
    retry_count = models.PositiveIntegerField(default=0)
    error_message = models.TextField(blank=True)
    created_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["run", "runflow_id"], name="one_node_per_upstream_id")
        ]
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"{self.node_id} ({self.state})"


class Star(models.Model):
    """A person's bookmark on a run; the history and gallery can filter by it."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="stars")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "run"], name="one_star_per_run")]

    def __str__(self) -> str:
        return f"Star on {self.run_id}"
