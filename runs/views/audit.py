"""The team's audit log, for its admins: who did what, when. Read-only."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from uuid import UUID

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.http import HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from runs.access import AuthedRequest, membership_for
from runs.models import AuditEntry, Role, Team

PER_PAGE = 50


@login_required
@require_GET
def audit_page(request: AuthedRequest, team: UUID) -> HttpResponse:
    membership = membership_for(request, team, role=Role.ADMIN)
    entries, filters = _filtered(membership.team, request.GET)
    page = Paginator(entries, PER_PAGE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    return render(
        request,
        "teams/audit.html",
        {
            "team": membership.team,
            "membership": membership,
            "page": page,
            "filters": filters,
            "query": query.urlencode(),
            "actions": AuditEntry.objects.filter(team=membership.team)
            .order_by("action")
            .values_list("action", flat=True)
            .distinct(),
            "actors": membership.team.memberships.select_related("user").order_by("user__username"),
        },
    )


def _filtered(team: Team, params: dict[str, str]) -> tuple[QuerySet[AuditEntry], dict[str, str]]:
    entries = AuditEntry.objects.filter(team=team).select_related("actor")
    filters = {key: params.get(key, "").strip() for key in ("action", "actor", "q", "from", "to")}
    if filters["action"]:
        if filters["action"].endswith(".*"):
            entries = entries.filter(action__startswith=filters["action"][:-1])
        else:
            entries = entries.filter(action=filters["action"])
    if filters["actor"]:
        entries = entries.filter(actor__username=filters["actor"])
    if filters["q"]:
        entries = entries.filter(target__icontains=filters["q"])
    if start := _day(filters["from"]):
        entries = entries.filter(created_at__gte=_midnight(start))
    if end := _day(filters["to"]):
        entries = entries.filter(created_at__lt=_midnight(end + timedelta(days=1)))
    return entries.order_by("-created_at", "-id"), filters


def _day(value: str) -> date | None:
    try:
        return date.fromisoformat(value) if value else None
    except ValueError:
        return None


def _midnight(day: date) -> datetime:
    return timezone.make_aware(datetime.combine(day, datetime.min.time()))
