"""Presets: save the launch form's values under a name, list them, delete them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db import IntegrityError, transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from runs.access import membership_for, team_object
from runs.forms.inputs import parse_inputs
from runs.forms.launch import LaunchForm, RawInputForm
from runs.forms.presets import PresetForm, preset_fit
from runs.launching import catalog_model
from runs.models import Membership, Preset, Role
from runs.views.launch import Target, load_target, render_launch


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


@dataclass(frozen=True)
class NameTaken:
    """A preset of someone else already has the name being saved (shown by the form)."""

    message: str
    overwrite: Preset | None  # the preset to offer replacing, if this person may


@login_required
@require_POST
def preset_create(request: HttpRequest, team: UUID, model_id: str) -> HttpResponse:
    """Save the launch form's current values as a team preset under a name.

    Saving under the name of one's own preset updates it. Someone else's preset is only
    replaced by those who could delete it (its author, a team admin), and only once they
    confirm it: a teammate's preset never changes under their feet.
    """
    membership = membership_for(request, team, role=Role.MEMBER)
    target = load_target(membership, model_id)
    name_form = PresetForm(request.POST, prefix="preset")
    form = (
        LaunchForm(target.parsed, request.POST, partial=True)
        if target.parsed is not None
        else RawInputForm(request.POST)
    )
    named, valid = name_form.is_valid(), form.is_valid()
    if not (named and valid):
        if not valid:
            messages.error(request, "The preset was not saved: correct the values marked below.")
        # Shown again with the person's values and the messages, not thrown away.
        return _again(request, membership, target, form, name_form)
    name = name_form.cleaned_data["name"]
    saved = form.input if isinstance(form, LaunchForm) else form.parsed_input
    existing = (
        Preset.objects.filter(team=membership.team, model_id=target.model_id, name=name)
        .select_related("created_by")
        .first()
    )
    if existing is not None and existing.created_by_id != membership.user.pk:
        taken = _name_taken(membership, existing)
        confirmed = request.POST.get("preset-overwrite") == str(existing.uuid)
        if taken.overwrite is None or not confirmed:
            return _again(request, membership, target, form, name_form, preset_taken=taken)
    preset = _save(membership, target.model_id, name, saved, existing)
    if preset is None:
        messages.error(request, f"Someone saved a preset named “{name}” a moment ago; save again.")
        return _again(request, membership, target, form, name_form)
    verb = "updated" if existing is not None else "saved"
    messages.success(request, f"Preset “{preset.name}” {verb}; the whole team can use it.")
    launch = reverse("runs:launch", args=[membership.team.uuid, target.model_id])
    return redirect(f"{launch}?preset={preset.uuid}")


def _again(
    request: HttpRequest,
    membership: Membership,
    target: Target,
    form: Any,
    name_form: PresetForm,
    **extra: Any,
) -> HttpResponse:
    return render_launch(
        request, membership, target, form, None, None, {}, preset_form=name_form, **extra
    )


def _name_taken(membership: Membership, existing: Preset) -> NameTaken:
    author = existing.created_by.get_username() if existing.created_by else None
    said = f"A preset named “{existing.name}” by {author or 'someone who left'} already exists."
    if membership.is_admin:
        return NameTaken(f"{said} Overwrite it with the values of this form?", existing)
    who = f"{author} or a team admin" if author else "a team admin"
    return NameTaken(f"{said} Choose another name: only {who} can replace it.", None)


def _save(
    membership: Membership,
    model_id: str,
    name: str,
    input: dict[str, Any],
    existing: Preset | None,
) -> Preset | None:
    """Write the preset; None if the name was taken by someone else meanwhile."""
    if existing is not None:
        updated = Preset.objects.filter(pk=existing.pk).update(
            input=input, created_by=membership.user
        )
        if updated:
            existing.refresh_from_db()
            return existing
    try:
        with transaction.atomic():
            return Preset.objects.create(
                team=membership.team,
                model_id=model_id,
                name=name,
                input=input,
                created_by=membership.user,
            )
    except IntegrityError:
        return None


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
