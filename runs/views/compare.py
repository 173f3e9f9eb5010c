"""Two to four runs side by side: inputs with the differences marked, outputs together."""

from __future__ import annotations

from uuid import UUID

from django.contrib.auth.decorators import login_required
from django.db.models import Prefetch
from django.http import HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from runs.access import membership_for
from runs.history import input_order, parse_uuids, team_runs
from runs.models import Output
from runs.templatetags.runs_extras import compare_inputs
from runs.views.runs import WorkspaceRequest

MIN_RUNS, MAX_RUNS = 2, 4


@login_required
@require_GET
def compare(request: WorkspaceRequest, team: UUID) -> HttpResponse:
    membership = membership_for(request, team)
    wanted = parse_uuids(request.GET.getlist("runs"), MAX_RUNS + 1)
    too_many = len(wanted) > MAX_RUNS
    outputs = Prefetch("outputs", queryset=Output.objects.order_by("index"))
    found = {
        run.uuid: run
        for run in team_runs(membership.team)
        .filter(uuid__in=wanted[:MAX_RUNS])
        .select_related("created_by")
        .prefetch_related(outputs)
    }
    runs = [found[uuid] for uuid in wanted[:MAX_RUNS] if uuid in found]
    context = {
        "team": membership.team,
        "membership": membership,
        "runs": runs,
        "too_many": too_many,
        "enough": len(runs) >= MIN_RUNS,
        "max_runs": MAX_RUNS,
    }
    if len(runs) >= MIN_RUNS:
        context["input_rows"] = compare_inputs(runs, input_order(runs))
        context["models_differ"] = len({run.model_id for run in runs}) > 1
    else:
        # Not enough runs named: offer the latest ones to pick from, right here.
        context["recent"] = list(team_runs(membership.team).order_by("-created_at", "-id")[:20])
    return render(request, "runs/compare.html", context)
