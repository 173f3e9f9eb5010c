"""The team's run history and the run page."""

from __future__ import annotations

from uuid import UUID

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from runs.access import membership_for, run_for


@login_required
def run_list(request: HttpRequest, team: UUID) -> HttpResponse:
    membership = membership_for(request, team)
    runs = (
        membership.team.runs.filter(deleted_at__isnull=True)
        .select_related("created_by")
        .order_by("-created_at", "-id")[:50]
    )
    return render(
        request,
        "runs/run_list.html",
        {"team": membership.team, "membership": membership, "runs": runs},
    )


@login_required
def run_detail(request: HttpRequest, team: UUID, run: UUID) -> HttpResponse:
    membership, run_obj = run_for(request, team, run)
    return render(
        request,
        "runs/run_detail.html",
        {"team": membership.team, "membership": membership, "run": run_obj},
    )
