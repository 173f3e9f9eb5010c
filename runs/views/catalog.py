"""The model catalog: the Models page, a model's page, and the admin's sync button."""

from __future__ import annotations

from uuid import UUID

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.files.storage import default_storage
from django.core.paginator import Paginator
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST
from django_htmx.middleware import HtmxDetails

from runs import catalog
from runs.access import AuthedRequest, membership_for
from runs.forms.inputs import parse_inputs
from runs.forms.launch import ModelIdForm
from runs.forms.presets import preset_fit
from runs.launching import team_api_url
from runs.models import OutputKind, Preset, Role, RunflowModel
from runs.policy import restrictions
from runs.tasks.catalog import request_sync, sync_if_empty
from runs.views.launch import launch_notices, load_target

PAGE_SIZE = 48


class HtmxRequest(AuthedRequest):
    """A request through django-htmx's middleware (``request.htmx``)."""

    htmx: HtmxDetails


@login_required
def model_list(request: HtmxRequest, team: UUID) -> HttpResponse:
    membership = membership_for(request, team)
    api_url = team_api_url(membership.team)
    q = request.GET.get("q", "").strip()[:100]
    category = request.GET.get("category", "")[:100]
    kind = request.GET.get("type", "")
    kind = kind if kind in OutputKind.values else ""
    found = catalog.search(api_url, q=q, category=category, kind=kind)
    page = Paginator(found, PAGE_SIZE).get_page(request.GET.get("page"))
    models = list(page.object_list)
    # Each card says what would stop this person launching its model (one query per page).
    limits = restrictions(membership, [model.model_id for model in models])
    cards = [(model, limits.get(model.model_id)) for model in models]
    total = catalog.models_for(api_url).filter(is_available=True).count()
    last = catalog.last_sync(api_url)
    failed = bool(last and not last["ok"])
    syncing = not total and not failed and sync_if_empty(api_url, membership.team.default_key())
    context = {
        "team": membership.team,
        "membership": membership,
        "page": page,
        "models": models,
        "cards": cards,
        "q": q,
        "category": category,
        "kind": kind,
        "categories": catalog.categories(api_url),
        "kinds": OutputKind.choices,
        "api_url": api_url,
        "total": total,
        "syncing": syncing,
        "last_sync": last,
        "id_form": ModelIdForm(),
    }
    if request.htmx:
        return render(request, "runs/models.html#results", context)
    return render(request, "runs/models.html", context)


@login_required
@require_POST
def model_sync(request: HttpRequest, team: UUID) -> HttpResponse:
    """A team admin asks for a fresh catalog; the worker does it."""
    membership = membership_for(request, team, role=Role.ADMIN)
    key = membership.team.default_key()
    if key is None:
        messages.error(request, "Connect the team to Runflow first: the catalog needs its key.")
    elif request_sync(team_api_url(membership.team), key):
        last = catalog.last_sync(team_api_url(membership.team))
        messages.success(request, last["summary"] if last else "Catalog sync started.")
    else:
        messages.info(request, "A sync of this catalog is already under way.")
    return redirect("runs:models", membership.team.uuid)


@login_required
def model_detail(request: HttpRequest, team: UUID, model_id: str) -> HttpResponse:
    membership = membership_for(request, team)
    target = load_target(membership, model_id)
    if target.model is None:
        if membership.can_launch:
            return redirect("runs:launch", membership.team.uuid, target.model_id)
        raise Http404("This model is not in the catalog.")
    model: RunflowModel = target.model
    parsed = target.parsed or parse_inputs(model.inputs)
    recent = (
        membership.team.runs.filter(model_id=model.model_id, deleted_at__isnull=True)
        .select_related("created_by")
        .prefetch_related("outputs")
        .order_by("-created_at", "-id")[:12]
    )
    presets = Preset.objects.filter(team=membership.team, model_id=model.model_id)
    return render(
        request,
        "runs/model_detail.html",
        {
            "team": membership.team,
            "membership": membership,
            "model": model,
            "parsed": parsed,
            "examples": [e for e in model.examples if isinstance(e, dict)][:6],
            "recent": recent,
            "presets": [(p, preset_fit(p.input, parsed)) for p in presets],
            **launch_notices(membership, target),
        },
    )


@login_required
def model_cover(request: HttpRequest, team: UUID, digest: str) -> FileResponse:
    """A catalog cover from our own storage (re-encoded JPEG), for members of a team."""
    membership = membership_for(request, team)
    name = f"covers/{digest}.jpg"
    exists = RunflowModel.objects.filter(
        api_url=team_api_url(membership.team), cover_file=name
    ).exists()
    if not exists or not default_storage.exists(name):
        raise Http404
    response = FileResponse(default_storage.open(name, "rb"), content_type="image/jpeg")
    response["Cache-Control"] = "private, max-age=86400"
    response["X-Content-Type-Options"] = "nosniff"
    return response
