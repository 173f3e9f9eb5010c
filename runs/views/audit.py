"""The team's audit log, for its admins: who did what, when. Read-only."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from uuid import UUID

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.http import HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from runs.access import AuthedRequest, membership_for
from runs.dates import EARLIEST, LATEST, BadDay, day_end, day_start, parse_day
from runs.models import AuditEntry, Role, Team

PER_PAGE = 50


@login_required
@require_GET
def audit_page(request: AuthedRequest, team: UUID) -> HttpResponse:
    membership = membership_for(request, team, role=Role.ADMIN)
    entries, filters, errors = _filtered(membership.team, request.GET)
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
            "errors": errors,
            "earliest_day": EARLIEST,
            "latest_day": LATEST,
            "query": query.urlencode(),
            "actions": AuditEntry.objects.filter(team=membership.team)
            .order_by("action")
            .values_list("action", flat=True)
            .distinct(),
            "actors": membership.team.memberships.select_related("user").order_by("user__username"),
        },
    )


def _filtered(
    team: Team, params: Mapping[str, str]
) -> tuple[QuerySet[AuditEntry], dict[str, str], dict[str, str]]:
    """The team's entries under the filters, the filters, and a sentence per unusable date.

    An unusable date is left out of the filtering (the rest still applies) and its reason
    is shown beside its field.
    """
    entries = AuditEntry.objects.filter(team=team).select_related("actor")
    filters = {key: params.get(key, "").strip() for key in ("action", "actor", "q", "from", "to")}
    errors: dict[str, str] = {}
    if filters["action"]:
        if filters["action"].endswith(".*"):
            entries = entries.filter(action__startswith=filters["action"][:-1])
        else:
            entries = entries.filter(action=filters["action"])
    if filters["actor"]:
        entries = entries.filter(actor__username=filters["actor"])
    if filters["q"]:
        entries = entries.filter(target__icontains=filters["q"])
    if start := _day(filters, "from", errors):
        entries = entries.filter(created_at__gte=day_start(start))
    if end := _day(filters, "to", errors):
        entries = entries.filter(created_at__lt=day_end(end))
    return entries.order_by("-created_at", "-id"), filters, errors


def _day(filters: dict[str, str], name: str, errors: dict[str, str]) -> date | None:
    try:
        return parse_day(filters[name])
    except BadDay as bad:
        errors[name] = str(bad)
        return None
