"""The console's operational actions: poll now, redeliver, re-archive, resync, mark failed.

Each action calls the same function the site itself uses (imported when the action runs, so
a part of the site that is not installed yet gives a clear message instead of breaking the
whole admin), works row by row so one failure never aborts the rest, and reports counts.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from runs.models import IN_FLIGHT, WITH_OUTPUTS, Run, RunflowModel, Source, record

logger = logging.getLogger(__name__)

# Redelivery calls Runflow once per run, inside the admin request: keep it bounded.
MAX_REDELIVERIES = 50


def _unavailable(modeladmin: admin.ModelAdmin[Any], request: HttpRequest, what: str) -> None:
    modeladmin.message_user(
        request,
        f"{what} is not available in this installation yet; nothing was done.",
        messages.ERROR,
    )


def _report(
    modeladmin: admin.ModelAdmin[Any],
    request: HttpRequest,
    done: str,
    skipped: int = 0,
    why: str = "",
    failed: list[str] | None = None,
) -> None:
    text = done + (f" Skipped {skipped}: {why}." if skipped else "")
    level = messages.SUCCESS
    if failed:
        text += " Failed: " + "; ".join(failed[:5]) + ("…" if len(failed) > 5 else "")
        level = messages.WARNING
    modeladmin.message_user(request, text, level)


def _reason(exc: Exception) -> str:
    # RunflowError and ConnectionUnavailable carry a sentence meant for people.
    return str(getattr(exc, "message", None) or exc or type(exc).__name__)


def _runs_of(queryset: QuerySet[Any]) -> QuerySet[Run]:
    """Accept a queryset of runs or of outputs (the Output admin shares some actions)."""
    if queryset.model is Run:
        return queryset
    return Run.objects.filter(pk__in=queryset.values("run_id"))


@admin.action(description="Poll now", permissions=["operate"])
def poll_now(
    modeladmin: admin.ModelAdmin[Any], request: HttpRequest, queryset: QuerySet[Run]
) -> None:
    try:
        from runs.tasks.polling import poll_soon
    except ImportError:
        return _unavailable(modeladmin, request, "Polling")
    runs = list(_runs_of(queryset).filter(status__in=IN_FLIGHT))
    skipped = _runs_of(queryset).count() - len(runs)
    for run in runs:
        # Arms the run's one poll chain for now (a duplicate chain would be refused anyway).
        poll_soon(run)
    _report(modeladmin, request, f"Asked for a poll of {len(runs)} run(s).", skipped, "finished")


@admin.action(description="Redeliver callback", permissions=["operate"])
def redeliver_callback(
    modeladmin: admin.ModelAdmin[Any], request: HttpRequest, queryset: QuerySet[Run]
) -> None:
    try:
        from runs.connection import client_for_team
    except ImportError:
        return _unavailable(modeladmin, request, "The Runflow connection")
    runs = list(
        _runs_of(queryset)
        .filter(runflow_id__isnull=False)
        .select_related("team")
        .order_by("team_id")[: MAX_REDELIVERIES + 1]
    )
    if len(runs) > MAX_REDELIVERIES:
        modeladmin.message_user(
            request, f"Select at most {MAX_REDELIVERIES} runs to redeliver.", messages.ERROR
        )
        return None
    skipped = _runs_of(queryset).filter(runflow_id__isnull=True).count()
    done, failed = 0, []
    for run in runs:
        try:
            with client_for_team(run.team) as client:
                client.redeliver_callback(str(run.runflow_id))
            done += 1
        except Exception as exc:  # RunflowError, ConnectionUnavailable: report and go on
            failed.append(f"{run.uuid}: {_reason(exc)}")
    _report(
        modeladmin,
        request,
        f"Runflow will send {done} callback(s) again.",
        skipped,
        "never accepted by Runflow",
        failed,
    )
    return None


@admin.action(description="Re-archive outputs", permissions=["operate"])
def rearchive_outputs(
    modeladmin: admin.ModelAdmin[Any], request: HttpRequest, queryset: QuerySet[Any]
) -> None:
    try:
        from runs.tasks.archive import archive_outputs
    except ImportError:
        return _unavailable(modeladmin, request, "Archiving")
    runs = list(_runs_of(queryset).filter(status__in=WITH_OUTPUTS).values_list("pk", flat=True))
    skipped = _runs_of(queryset).count() - len(runs)
    failed = []
    for run_id in runs:
        try:
            archive_outputs.enqueue(run_id)
        except Exception as exc:
            failed.append(f"run {run_id}: {type(exc).__name__}")
    _report(
        modeladmin,
        request,
        f"Queued the copy of outputs still owed for {len(runs) - len(failed)} run(s).",
        skipped,
        "no outputs",
        failed,
    )


@admin.action(description="Mark failed (stuck runs)", permissions=["operate"])
def mark_failed(
    modeladmin: admin.ModelAdmin[Any], request: HttpRequest, queryset: QuerySet[Run]
) -> None:
    try:
        from runs.transitions import Report, apply_report, record_delivery
    except ImportError:
        return _unavailable(modeladmin, request, "Run transitions")
    runs = list(_runs_of(queryset).filter(status__in=IN_FLIGHT).select_related("team"))
    skipped = _runs_of(queryset).count() - len(runs)
    who = request.user.get_username()
    report = Report(
        status="failed",
        failure_code="MARKED_FAILED",
        failure_stage_code="operator",
        failure_message=f"Marked failed by {who} in the admin: it stopped making progress.",
    )
    applied = 0
    for run in runs:
        delivery = record_delivery(
            run, team_id=run.team_id, source=Source.RECONCILE, report=report, note=f"admin: {who}"
        )
        if apply_report(run, report, source=Source.RECONCILE, delivery=delivery) == "applied":
            applied += 1
            record("run.marked_failed", team=run.team, actor=request.user, target=run.uuid)
    _report(
        modeladmin,
        request,
        f"Marked {applied} run(s) failed.",
        skipped + len(runs) - applied,
        "already finished",
    )


@admin.action(description="Resync catalog of these endpoints", permissions=["sync"])
def resync_catalog(
    modeladmin: admin.ModelAdmin[Any], request: HttpRequest, queryset: QuerySet[RunflowModel]
) -> None:
    try:
        from runs.tasks.catalog import sync_catalog
    except ImportError:
        return _unavailable(modeladmin, request, "Catalog sync")
    endpoints = sorted(set(queryset.values_list("api_url", flat=True)))
    failed = []
    for api_url in endpoints:
        try:
            sync_catalog.enqueue(api_url)
        except Exception as exc:
            failed.append(f"{api_url}: {_reason(exc)}")
    _report(
        modeladmin,
        request,
        f"Catalog sync queued for {len(endpoints) - len(failed)} endpoint(s).",
        failed=failed,
    )


def connection_action(
    name: str, description: str, function_name: str, skip: Callable[[Any], bool]
) -> Any:
    """Revoke keys / retire secrets through the connection area's own audited functions."""

    @admin.action(description=description, permissions=["operate"])
    def action(
        modeladmin: admin.ModelAdmin[Any], request: HttpRequest, queryset: QuerySet[Any]
    ) -> None:
        try:
            from runs import connection
        except ImportError:
            return _unavailable(modeladmin, request, "The Runflow connection")
        function = getattr(connection, function_name, None)
        if function is None:
            return _unavailable(modeladmin, request, description)
        done, failed = 0, []
        for obj in queryset.select_related("team"):
            if skip(obj):
                continue
            try:
                function(obj, actor=request.user)
                done += 1
            except Exception as exc:
                failed.append(f"{obj}: {_reason(exc)}")
        _report(modeladmin, request, f"{description}: {done} done.", failed=failed)
        return None

    action.__name__ = name
    return action


revoke_keys = connection_action(
    "revoke_keys", "Revoke selected keys", "revoke_key", lambda key: key.revoked_at is not None
)
retire_secrets = connection_action(
    "retire_secrets",
    "Retire selected callback secrets",
    "retire_secret",
    lambda secret: secret.retired_at is not None,
)
