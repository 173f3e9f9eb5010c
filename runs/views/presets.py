"""Presets: save the launch form's values under a name, list them, delete them."""

from __future__ import annotations

from uuid import UUID

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from runs.access import membership_for, team_object
from runs.forms.inputs import parse_inputs
from runs.forms.launch import LaunchForm, RawInputForm
from runs.forms.presets import PresetForm, preset_fit
from runs.launching import catalog_model
from runs.models import Preset, Role
from runs.views.launch import load_target, render_launch


@login_required
def preset_list(request: HttpRequest, team: UUID) -> HttpResponse:
    membership = membership_for(request, team)
    presets = Preset.objects.filter(team=membership.team).select_related("created_by")
    models: dict[str, object] = {}
    rows = []
    for preset in presets.order_by("model_id", "name"):
        if preset.model_id not in models:
            model = catalog_model(membership.team, preset.model_id)
            models[preset.model_id] = parse_inputs(model.inputs) if model else None
        rows.append((preset, preset_fit(preset.input, models[preset.model_id])))  # type: ignore[arg-type]
    return render(
        request,
        "runs/presets.html",
        {"team": membership.team, "membership": membership, "rows": rows},
    )


@login_required
@require_POST
def preset_create(request: HttpRequest, team: UUID, model_id: str) -> HttpResponse:
    """Save (or update, by name) the launch form's current values as a team preset."""
    membership = membership_for(request, team, role=Role.MEMBER)
    target = load_target(membership, model_id)
    name_form = PresetForm(request.POST, prefix="preset")
    form = (
        LaunchForm(target.parsed, request.POST, partial=True)
        if target.parsed is not None
        else RawInputForm(request.POST)
    )
    launch = reverse("runs:launch", args=[membership.team.uuid, target.model_id])
    if not name_form.is_valid():
        messages.error(request, "Give the preset a name.")
        return redirect(launch)
    if not form.is_valid():
        # Shown again with the person's values and the messages, not thrown away.
        messages.error(request, "The preset was not saved: correct the values marked below.")
        return render_launch(request, membership, target, form, None, None, {})
    saved = form.input if isinstance(form, LaunchForm) else form.parsed_input
    preset, created = Preset.objects.update_or_create(
        team=membership.team,
        model_id=target.model_id,
        name=name_form.cleaned_data["name"],
        defaults={"input": saved, "created_by": membership.user},
    )
    verb = "saved" if created else "updated"
    messages.success(request, f"Preset “{preset.name}” {verb}; the whole team can use it.")
    return redirect(f"{launch}?preset={preset.uuid}")


@login_required
@require_POST
def preset_delete(request: HttpRequest, team: UUID, preset: UUID) -> HttpResponse:
    membership, found = team_object(
        request, team, Preset.objects.all(), role=Role.MEMBER, uuid=preset
    )
    if found.created_by_id != request.user.pk and not membership.is_admin:
        raise PermissionDenied("Only its author or a team admin can delete a preset.")
    found.delete()
    messages.success(request, f"Preset “{found.name}” deleted.")
    return redirect("runs:presets", membership.team.uuid)
