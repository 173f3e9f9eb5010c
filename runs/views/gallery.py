"""The team gallery across runs, and ZIP downloads of a selection built in the background."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.files.storage import default_storage
from django.db.models import Q
from django.http import FileResponse, Http404, HttpResponse, QueryDict
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import urlencode
from django.utils.text import slugify
from django.views.decorators.http import require_GET, require_http_methods
from django_htmx.http import HTMX_STOP_POLLING

from runs.access import membership_for
from runs.history import (
    KIND_CHOICES,
    HistoryFilters,
    model_choices,
    page_outputs,
    parse_uuids,
    team_outputs,
)
from runs.models import ArchiveState, Output, Team
from runs.tasks.workspace import ZIP_MAX_FILES, read_manifest, start_zip, zip_is_expired, zip_path
from runs.views.runs import WorkspaceRequest, render_region


@login_required
@require_GET
def gallery(request: WorkspaceRequest, team: UUID) -> HttpResponse:
    membership = membership_for(request, team)
    filters = HistoryFilters.from_query(request.GET)
    outputs = filters.apply_to_outputs(team_outputs(membership.team), request.user)
    page = page_outputs(
        membership.team, outputs, after=request.GET.get("after"), before=request.GET.get("before")
    )
    context = {
        "team": membership.team,
        "membership": membership,
        "filters": filters,
        "page": page,
        "outputs": page.items,
        "kind_choices": KIND_CHOICES,
        "model_choices": model_choices(membership.team),
        "members": membership.team.memberships.select_related("user").order_by("user__username"),
    }
    return render_region(request, "runs/gallery.html", "grid", context)


def selected_outputs(team: Team, query: QueryDict) -> list[Output]:
    """Archived outputs of the team named by ``outputs=`` or belonging to ``runs=``."""
    output_ids = parse_uuids(query.getlist("outputs"), ZIP_MAX_FILES)
    run_ids = parse_uuids(query.getlist("runs"), 100)
    if not output_ids and not run_ids:
        return []
    chosen = (
        team_outputs(team)
        .filter(archive_state=ArchiveState.ARCHIVED)
        .exclude(file="")
        .filter(Q(uuid__in=output_ids) | Q(run__uuid__in=run_ids))
        .order_by("-run__created_at", "-run_id", "index")
    )
    return list(chosen[:ZIP_MAX_FILES])


@dataclass(frozen=True)
class BackLink:
    """Where the ZIP pages lead back to: the page the files were picked on."""

    origin: str  # "run:<uuid>", "runs" or "gallery", carried through the form and redirect
    url: str
    label: str


def zip_origin(query: QueryDict) -> str:
    """The page a ZIP was asked from. The run page says so (``from=run:<uuid>``); otherwise
    ticked runs come from the run list and ticked files from the gallery."""
    given = query.get("from", "")
    if given:
        return given
    return "runs" if query.getlist("runs") else "gallery"


def back_link(team: Team, origin: str) -> BackLink:
    """The link for ``origin``; anything unknown goes back to the gallery (never an open
    redirect: only these three pages of the team can come out)."""
    kind, _, value = origin.partition(":")
    if kind == "run":
        run = parse_uuids([value], 1)
        if run:
            url = reverse("runs:run", args=[team.uuid, run[0]])
            return BackLink(f"run:{run[0]}", url, "Back to the run")
    if kind == "runs":
        return BackLink("runs", reverse("runs:team", args=[team.uuid]), "Back to the runs")
    return BackLink("gallery", reverse("runs:gallery", args=[team.uuid]), "Back to the gallery")


@login_required
@require_http_methods(["GET", "POST"])
def zip_create(request: WorkspaceRequest, team: UUID) -> HttpResponse:
    """GET: confirm what goes into the ZIP. POST: start building it, then show its progress.

    Reading the team's files is what viewers may do, so viewers may download a ZIP too.
    """
    membership = membership_for(request, team)
    query = request.POST if request.method == "POST" else request.GET
    chosen = selected_outputs(membership.team, query)
    back = back_link(membership.team, zip_origin(query))
    if request.method == "POST":
        if not chosen:
            messages.error(request, "None of the selected files has been copied here yet.")
            return redirect(back.url)
        job = start_zip(membership.team, request.user.pk, chosen)
        status = reverse("runs:zip_status", args=[membership.team.uuid, job])
        # The gallery is where a ZIP page leads back to when nothing else is said.
        if back.origin != "gallery":
            status += "?" + urlencode({"from": back.origin})
        return redirect(status)
    context = {
        "team": membership.team,
        "membership": membership,
        "back": back,
        "chosen": chosen,
        "total_bytes": sum(output.size_bytes or 0 for output in chosen),
        "limit": ZIP_MAX_FILES,
    }
    return render(request, "runs/zip.html", context)


def _manifest(team: Team, job: UUID) -> dict[str, object]:
    manifest = read_manifest(str(team.uuid), str(job))
    if manifest is None or zip_is_expired(manifest):
        raise Http404("This download has expired; build it again from the gallery.")
    return manifest


@login_required
@require_GET
def zip_status(request: WorkspaceRequest, team: UUID, job: UUID) -> HttpResponse:
    membership = membership_for(request, team)
    manifest = _manifest(membership.team, job)
    context = {
        "team": membership.team,
        "membership": membership,
        "job": job,
        "zip": manifest,
        "back": back_link(membership.team, zip_origin(request.GET)),
    }
    if request.htmx:
        building = manifest.get("state") == "building"
        status = 200 if building else HTMX_STOP_POLLING
        return render(request, "runs/zip.html#zip_status", context, status=status)
    return render(request, "runs/zip.html", context)


@login_required
@require_GET
def zip_download(request: WorkspaceRequest, team: UUID, job: UUID) -> FileResponse:
    membership = membership_for(request, team)
    manifest = _manifest(membership.team, job)
    path = zip_path(str(membership.team.uuid), str(job))
    if manifest.get("state") != "ready" or not default_storage.exists(path):
        raise Http404("This download is not ready.")
    name = f"{slugify(membership.team.name) or 'team'}-outputs-{timezone.now():%Y%m%d-%H%M}.zip"
    response = FileResponse(
        default_storage.open(path, "rb"),
        as_attachment=True,
        filename=name,
        content_type="application/zip",
    )
    response["X-Content-Type-Options"] = "nosniff"
    response["Cache-Control"] = "private, no-store"
    return response
