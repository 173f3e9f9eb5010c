"""Runs and everything that hangs off them, plus the catalog, in the console."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any
from uuid import UUID

from django.contrib import admin
from django.db.models import Model, Q, QuerySet
from django.http import HttpRequest
from django.utils import timezone
from django.utils.html import format_html

from runs.admin.actions import (
    mark_failed,
    poll_now,
    rearchive_outputs,
    redeliver_callback,
    resync_catalog,
)
from runs.admin.base import (
    ConsoleAdmin,
    ReadOnlyAdmin,
    ReadOnlyInline,
    is_operator,
    team_filter,
)
from runs.models import (
    IN_FLIGHT,
    Batch,
    BatchChunk,
    Delivery,
    ModelPolicy,
    NodeRun,
    Output,
    Preset,
    Run,
    RunflowModel,
    RunLog,
    record,
)

# How far back the model and failure-code filters look for their choices: a DISTINCT over
# recent rows (indexed on created_at) instead of over the whole history.
FILTER_CHOICES_DAYS = 30
STUCK_AFTER = timedelta(hours=1)


def _pretty(value: Any) -> str:
    return format_html(
        "<pre>{}</pre>", json.dumps(value, indent=2, ensure_ascii=False, default=str)
    )


class _RecentValuesFilter(admin.SimpleListFilter):
    field = ""

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        since = timezone.now() - timedelta(days=FILTER_CHOICES_DAYS)
        values = (
            model_admin.get_queryset(request)
            .filter(created_at__gte=since)
            .exclude(**{self.field: ""})
            .order_by(self.field)
            .values_list(self.field, flat=True)
            .distinct()[:100]
        )
        return [(value, value) for value in values]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Run]) -> QuerySet[Run]:
        value = self.value()
        return queryset.filter(**{self.field: value}) if value else queryset


class ModelFilter(_RecentValuesFilter):
    title = "model"
    parameter_name = "model"
    field = "model_id"


class FailureFilter(_RecentValuesFilter):
    title = "failure code"
    parameter_name = "failure"
    field = "failure_code"


class StuckFilter(admin.SimpleListFilter):
    title = "stuck"
    parameter_name = "stuck"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("flagged", "Flagged stuck"), ("old", "In flight for over an hour")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Run]) -> QuerySet[Run]:
        if self.value() == "flagged":
            return queryset.filter(stuck_since__isnull=False, status__in=IN_FLIGHT)
        if self.value() == "old":
            cutoff = timezone.now() - STUCK_AFTER
            return queryset.filter(status__in=IN_FLIGHT, created_at__lt=cutoff)
        return queryset


class OutputInline(ReadOnlyInline):
    model = Output
    fields = ("index", "kind", "archive_state", "content_type", "width", "height", "size_bytes")
    readonly_fields = fields


@admin.register(Run)
class RunAdmin(ReadOnlyAdmin):
    big_table = True
    staff_may_operate = True
    list_display = (
        "uuid",
        "team",
        "model_id",
        "status",
        "created_by",
        "created_at",
        "cost",
        "stuck",
    )
    list_filter = (team_filter("team"), "status", ModelFilter, FailureFilter, StuckFilter)
    list_select_related = ("team", "created_by")
    # Searched by get_search_results below; listed so the admin shows its search box.
    search_fields = ("search_text",)
    search_help_text = "Our id (also the client_ref), Runflow id, or words of the prompt."
    ordering = ("-created_at", "-id")
    actions = (poll_now, redeliver_callback, rearchive_outputs, mark_failed)
    inlines = (OutputInline,)
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "uuid",
                    "team",
                    "created_by",
                    "model_id",
                    "api_url",
                    "status",
                    "runflow_id",
                )
            },
        ),
        ("Input", {"fields": ("input_pretty", "parent", "batch", "batch_index")}),
        (
            "Result",
            {
                "fields": (
                    "cost",
                    "duration_ms",
                    "output_pretty",
                    "failure_code",
                    "failure_stage_code",
                    "failure_message",
                    "field_errors",
                )
            },
        ),
        (
            "Timeline",
            {
                "fields": (
                    "created_at",
                    "submitted_at",
                    "queued_at",
                    "dispatching_at",
                    "running_at",
                    "completed_at",
                    "updated_at",
                )
            },
        ),
        (
            "Worker",
            {
                "fields": (
                    "submit_attempts",
                    "poll_count",
                    "last_polled_at",
                    "next_poll_at",
                    "stuck_since",
                    "has_anomaly",
                    "deleted_at",
                )
            },
        ),
    )

    def get_readonly_fields(self, request: HttpRequest, obj: Model | None = None) -> list[str]:
        names: list[str] = []
        for _, options in self.fieldsets:
            names.extend(str(name) for name in options["fields"])
        return names

    @admin.display(description="input")
    def input_pretty(self, run: Run) -> str:
        return _pretty(run.input)

    @admin.display(description="output")
    def output_pretty(self, run: Run) -> str:
        return _pretty(run.output)

    @admin.display(boolean=True)
    def stuck(self, run: Run) -> bool:
        return run.stuck_since is not None and run.status in IN_FLIGHT

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Run], search_term: str
    ) -> tuple[QuerySet[Run], bool]:
        term = search_term.strip()
        if not term:
            return queryset, False
        try:
            wanted = UUID(term)
        except ValueError:
            # search_text is stored lower-cased: a plain LIKE, no UPPER() over the table.
            words = term.lower().split()[:6]
            for word in words:
                queryset = queryset.filter(search_text__contains=word)
            return queryset, False
        return queryset.filter(Q(uuid=wanted) | Q(runflow_id=wanted)), False

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return is_operator(request)

    def delete_model(self, request: HttpRequest, obj: Run) -> None:
        team, uuid = obj.team, obj.uuid
        super().delete_model(request, obj)
        record("run.deleted", team=team, actor=request.user, target=uuid, via="admin")

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Run]) -> None:
        for run in queryset.select_related("team"):
            self.delete_model(request, run)


@admin.register(Output)
class OutputAdmin(ReadOnlyAdmin):
    team_path = "run__team"
    big_table = True
    staff_may_operate = True
    list_display = (
        "uuid",
        "run_link",
        "index",
        "kind",
        "archive_state",
        "size_bytes",
        "created_at",
    )
    list_filter = (team_filter("run__team"), "archive_state", "kind")
    list_select_related = ("run", "run__team")
    search_fields = ("=uuid", "=run__uuid")
    ordering = ("-created_at", "-id")
    actions = (rearchive_outputs,)
    exclude = ("source_url",)
    readonly_fields = (
        "uuid", "run", "index", "kind", "content_type", "width", "height", "duration",
        "size_bytes", "sha256", "file", "thumbnail", "archive_state", "archive_error",
        "archive_attempts", "archived_at", "created_at", "source_host",
    )  # fmt: skip

    @admin.display(description="run")
    def run_link(self, output: Output) -> str:
        return str(output.run.uuid)

    @admin.display(description="source")
    def source_host(self, output: Output) -> str:
        # Presigned links are bearer URLs for a day or so: show where, not the signature.
        return output.source_url.split("?", 1)[0]


@admin.register(Delivery)
class DeliveryAdmin(ReadOnlyAdmin):
    big_table = True
    staff_may_operate = False
    list_display = ("received_at", "team", "source", "event", "reported_status", "outcome", "run")
    list_filter = (team_filter("team"), "source", "outcome", "signature_verified")
    list_select_related = ("team", "run")
    search_fields = ("=runflow_run_id", "=request_id", "=run__uuid")
    ordering = ("-received_at", "-id")
    readonly_fields = (
        "uuid", "team", "run", "batch", "source", "event", "reported_status", "runflow_run_id",
        "request_id", "signature_verified", "body", "headers", "received_at", "outcome", "note",
    )  # fmt: skip
    exclude = ("raw_body",)

    @admin.display(description="body")
    def body(self, delivery: Delivery) -> str:
        raw = bytes(delivery.raw_body or b"")
        return format_html("<pre>{}</pre>", raw[:20_000].decode("utf-8", "replace"))


class ChunkInline(ReadOnlyInline):
    model = BatchChunk
    fields = ("index", "state", "runflow_batch_id", "submitted_at", "error")
    readonly_fields = fields
    show_change_link = False


@admin.register(Batch)
class BatchAdmin(ReadOnlyAdmin):
    list_display = ("uuid", "team", "model_id", "label", "created_by", "created_at", "completed_at")
    list_filter = (team_filter("team"),)
    list_select_related = ("team", "created_by")
    search_fields = ("=uuid", "label", "model_id")
    inlines = (ChunkInline,)
    exclude = ("key",)
    readonly_fields = (
        "uuid", "team", "created_by", "api_url", "model_id", "label", "source", "created_at",
        "completed_at",
    )  # fmt: skip


@admin.register(RunLog)
class RunLogAdmin(ReadOnlyAdmin):
    team_path = "run__team"
    big_table = True
    list_display = ("timestamp", "run", "level", "message")
    list_filter = (team_filter("run__team"), "level")
    list_select_related = ("run",)
    search_fields = ("=run__uuid",)
    ordering = ("-id",)
    readonly_fields = ("run", "runflow_id", "level", "message", "timestamp", "meta")


@admin.register(NodeRun)
class NodeRunAdmin(ReadOnlyAdmin):
    team_path = "run__team"
    big_table = True
    list_display = ("run", "node_id", "state", "duration_ms", "cost", "retry_count")
    list_filter = (team_filter("run__team"), "state")
    list_select_related = ("run",)
    search_fields = ("=run__uuid",)
    ordering = ("-id",)
    readonly_fields = (
        "run", "runflow_id", "node_id", "state", "input", "output", "duration_ms", "cost",
        "retry_count", "error_message", "created_at", "started_at", "completed_at",
    )  # fmt: skip


# ---------- catalog ----------


@admin.register(RunflowModel)
class RunflowModelAdmin(ReadOnlyAdmin):
    """Synced from Runflow, so read-only; "resync" fetches it again."""

    team_path = None
    list_display = (
        "model_id",
        "display_name",
        "api_url",
        "output_kind",
        "price_label",
        "is_available",
        "synced_at",
    )
    list_filter = ("api_url", "output_kind", "is_available")
    search_fields = ("model_id", "display_name", "category")
    actions = (resync_catalog,)
    exclude = ("raw",)

    def get_readonly_fields(self, request: HttpRequest, obj: Model | None = None) -> list[str]:
        return [f.name for f in self.model._meta.fields if f.name != "raw"]

    def has_sync_permission(self, request: HttpRequest) -> bool:
        return is_operator(request)


@admin.register(Preset)
class PresetAdmin(ConsoleAdmin):
    list_display = ("name", "team", "model_id", "created_by", "created_at")
    list_filter = (team_filter("team"),)
    list_select_related = ("team", "created_by")
    search_fields = ("name", "model_id")
    readonly_fields = ("uuid", "created_by", "created_at")


@admin.register(ModelPolicy)
class ModelPolicyAdmin(ConsoleAdmin):
    list_display = ("model_id", "team", "allowed", "min_role", "updated_at")
    list_filter = (team_filter("team"), "allowed", "min_role")
    list_select_related = ("team",)
    search_fields = ("model_id",)

    def save_model(self, request: HttpRequest, obj: ModelPolicy, form: Any, change: bool) -> None:
        obj.updated_at = timezone.now()
        super().save_model(request, obj, form, change)
        record(
            "policy.changed", team=obj.team, actor=request.user, target=obj.model_id,
            allowed=obj.allowed, min_role=obj.min_role, via="admin",
        )  # fmt: skip

    def delete_model(self, request: HttpRequest, obj: ModelPolicy) -> None:
        team, model_id = obj.team, obj.model_id
        super().delete_model(request, obj)
        record("policy.removed", team=team, actor=request.user, target=model_id, via="admin")

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[ModelPolicy]) -> None:
        for policy in queryset.select_related("team"):
            self.delete_model(request, policy)
