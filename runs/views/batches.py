"""Batches: the batch form, the live batch page (contact sheet) and "retry failed items"."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from runs.access import membership_for, team_object
from runs.forms.batches import BatchForm, build_items
from runs.forms.launch import LaunchForm, initial_values
from runs.launching import (
    LaunchError,
    catalog_model,
    decide,
    latest_runs,
    launch_batch,
    launch_blocker,
    mark_finished,
    progress,
    retry_failed,
)
from runs.models import ArchiveState, Batch, Membership, OutputKind, Role, Run
from runs.pricing import format_usd
from runs.uploads import UploadFailed, send_uploads
from runs.views.catalog import HtmxRequest
from runs.views.launch import Target, launch_notices, load_target

# How long a finished batch's page keeps refreshing while outputs are still being copied.
COPY_WAIT = timedelta(minutes=2)


def _token(request: HttpRequest) -> UUID | None:
    try:
        return uuid.UUID(request.POST.get("launch_token", ""))
    except ValueError:
        return None


@login_required
def batch_new(request: HttpRequest, team: UUID, model_id: str) -> HttpResponse:
    membership = membership_for(request, team, role=Role.MEMBER)
    target = load_target(membership, model_id)
    if target.parsed is None or not target.parsed.specs:
        messages.error(request, "Batches need the model's inputs from the catalog; sync it first.")
        return redirect("runs:launch", membership.team.uuid, target.model_id)
    post = request.method == "POST"
    batch_form = BatchForm(target.parsed, request.POST or None, request.FILES or None)
    # The shared values require nothing themselves: every item is checked in full below.
    base = LaunchForm(
        target.parsed,
        request.POST if post else None,
        request.FILES if post else None,
        values=initial_values(target.parsed),
        partial=True,
    )
    page: dict[str, Any] = {}
    if post:
        outcome = _try_batch(request, membership, target, batch_form, base)
        if isinstance(outcome, HttpResponse):
            return outcome
        page = outcome
    return render(
        request,
        "runs/batch_new.html",
        {
            "team": membership.team,
            "membership": membership,
            "target": target,
            "batch_form": batch_form,
            "form": base,
            "launch_token": _token(request) or uuid.uuid4(),
            "blocker": launch_blocker(membership.team),
            **launch_notices(membership, target),
            **page,
        },
    )


def _try_batch(
    request: HttpRequest,
    membership: Membership,
    target: Target,
    batch_form: BatchForm,
    base: LaunchForm,
) -> HttpResponse | dict[str, Any]:
    if not (batch_form.is_valid() and base.is_valid()):
        return {}
    token = _token(request)
    already = (
        Batch.objects.filter(uuid=token, team=membership.team, created_by=membership.user).first()
        if token is not None
        else None
    )
    if already is not None:
        messages.info(request, "This form was already sent: here is the batch it started.")
        return redirect(already)
    blocker = launch_blocker(membership.team)
    if blocker:
        return {"blocked": blocker}
    assert target.parsed is not None
    if base.uploads:
        try:
            send_uploads(membership.team, base)
        except UploadFailed as failed:
            base.add_error(failed.field, failed.message)
            return {}
    items, errors = build_items(target.parsed, batch_form.rows, base.input)
    if errors:
        return {"item_errors": errors}
    decision = decide(membership, target.model_id, target.model, items)
    if decision.blocked:
        return {"blocked": decision.message}
    if decision.needs_confirmation and request.POST.get("confirmed") != "1":
        return {"confirm": decision.message, "count": len(items)}
    try:
        batch = launch_batch(
            membership,
            target.model_id,
            items,
            model=target.model,
            source=batch_form.cleaned_data["mode"],
            label=batch_form.cleaned_data.get("label") or "",
            batch_uuid=token,
        )
    except LaunchError as error:
        return {"blocked": error.message}
    messages.success(request, f"{len(items)} runs saved; they are being sent to Runflow.")
    return redirect(batch)


@dataclass(frozen=True)
class Item:
    run: Run
    thumb: str  # our archived thumbnail's URL, or ""


def _thumb(team_uuid: UUID, run: Run) -> str:
    """The first picture of the run's outputs: a thumbnail, or an image file without one.

    A video or audio file has no thumbnail and is no picture, so it never goes in an <img>.
    """
    for output in run.outputs.all():
        if output.archive_state != ArchiveState.ARCHIVED:
            continue
        if output.thumbnail:
            return reverse("runs:output_thumb", args=[team_uuid, output.uuid])
        if output.kind == OutputKind.IMAGE and output.file:
            return reverse("runs:output_file", args=[team_uuid, output.uuid])
    return ""


@login_required
def batch_detail(request: HtmxRequest, team: UUID, batch: UUID) -> HttpResponse:
    membership, found = team_object(
        request, team, Batch.objects.select_related("created_by"), uuid=batch
    )
    runs = latest_runs(found)
    counts = progress(runs)
    mark_finished(found, runs)
    costs = [run.cost for run in runs if run.cost is not None]
    # Finished runs may still be copying their outputs: keep refreshing the contact sheet
    # until their thumbnails are in (bounded, so a copy that keeps failing cannot poll forever).
    copying = any(
        output.archive_state == ArchiveState.PENDING for run in runs for output in run.outputs.all()
    )
    recent = found.completed_at is None or timezone.now() - found.completed_at < COPY_WAIT
    settled = counts.is_finished and not (copying and recent)
    context = {
        "team": membership.team,
        "membership": membership,
        "batch": found,
        "progress": counts,
        "settled": settled,
        "items": [Item(run, _thumb(membership.team.uuid, run)) for run in runs],
        "spent": format_usd(sum(costs, Decimal(0))) if costs else "",
        "model": catalog_model(membership.team, found.model_id),
    }
    if request.htmx:
        response = render(request, "runs/batch.html#live", context)
        if settled:
            response.status_code = 286  # htmx stops polling
        return response
    return render(request, "runs/batch.html", context)


@login_required
@require_POST
def batch_retry(request: HttpRequest, team: UUID, batch: UUID) -> HttpResponse:
    """Launch again only the items whose latest run failed."""
    membership, found = team_object(
        request, team, Batch.objects.all(), role=Role.MEMBER, uuid=batch
    )
    blocker = launch_blocker(membership.team)
    if blocker:
        messages.error(request, blocker)
        return redirect(found)
    model = catalog_model(membership.team, found.model_id)
    failed = [run for run in latest_runs(found) if run.status == "failed"]
    decision = decide(membership, found.model_id, model, [run.input for run in failed] or [{}])
    if decision.blocked:
        messages.error(request, decision.message)
        return redirect(found)
    count = retry_failed(membership, found, model)
    if count:
        messages.success(request, f"{count} failed item{'s' if count != 1 else ''} sent again.")
    else:
        messages.info(request, "No item of this batch has failed.")
    return redirect(found)
