"""Launching: the form generated from a model's inputs, "Run again", and file uploads.

The launch view validates locally, asks the team's policy, saves the run and redirects to
the run page; the worker sends it. Whatever goes wrong before the run is saved (a rule, a
budget, a failed upload), the page comes back with everything the person typed still in it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from uuid import UUID

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from runs.access import membership_for, run_for
from runs.curl import curl_command
from runs.forms.inputs import ParsedInputs, parse_inputs
from runs.forms.launch import (
    MAX_UPLOAD_BYTES,
    LaunchForm,
    ModelIdForm,
    RawInputForm,
    clean_model_id,
    initial_values,
)
from runs.forms.presets import PresetForm, preset_fit
from runs.launching import (
    LaunchError,
    catalog_model,
    decide,
    existing_launch,
    launch_blocker,
    launch_run,
    rerun,
    unavailable_message,
)
from runs.models import Membership, Preset, Role, Run, RunflowModel
from runs.policy import restriction_for
from runs.pricing import estimate_cost, format_usd
from runs.uploads import UploadFailed, send_uploads, upload_one

# A second "Run again" of the same run by the same person this soon is a double click.
RERUN_DEDUP = timedelta(seconds=10)


@dataclass
class Target:
    """The model a page launches: from the catalog, or just an id (raw JSON input)."""

    model_id: str
    model: RunflowModel | None
    parsed: ParsedInputs | None
    problems: tuple[str, ...] = ()  # what could not be read of the model's definitions

    @property
    def title(self) -> str:
        return str(self.model) if self.model else self.model_id


def load_target(membership: Membership, model_id: str) -> Target:
    try:
        model_id = clean_model_id(model_id)
    except ValidationError:
        raise Http404("No such model id.") from None
    model = catalog_model(membership.team, model_id)
    parsed = parse_inputs(model.inputs) if model is not None else None
    problems = parsed.problems if parsed is not None else ()
    if parsed is not None and not parsed.specs:
        parsed = None  # no usable input definitions: the raw JSON form
    return Target(model_id, model, parsed, problems)


def _uuid(value: str | None) -> UUID | None:
    try:
        return uuid.UUID(str(value)) if value else None
    except ValueError:
        return None


def _source_run(membership: Membership, value: str | None, model_id: str) -> Run | None:
    """The run an "Edit and run" starts from, inside the team and of the same model."""
    run_uuid = _uuid(value)
    if run_uuid is None:
        return None
    return Run.objects.filter(
        team=membership.team, uuid=run_uuid, model_id=model_id, deleted_at__isnull=True
    ).first()


def _preset(membership: Membership, value: str | None, model_id: str) -> Preset | None:
    preset_uuid = _uuid(value)
    if preset_uuid is None:
        return None
    return Preset.objects.filter(team=membership.team, uuid=preset_uuid, model_id=model_id).first()


def _form(target: Target, request: HttpRequest, values: dict[str, Any], source: Run | None) -> Any:
    data = request.POST if request.method == "POST" else None
    files = request.FILES if request.method == "POST" else None
    if target.parsed is None:
        return RawInputForm(data, values=values)
    # "Edit and relaunch" after Runflow refused the input: its messages sit on the fields.
    upstream = source.field_errors if source is not None and data is None else None
    return LaunchForm(target.parsed, data, files, values=values, upstream_errors=upstream)


@login_required
def launch(request: HttpRequest, team: UUID, model_id: str) -> HttpResponse:
    membership = membership_for(request, team, role=Role.MEMBER)
    target = load_target(membership, model_id)
    source = _source_run(
        membership, request.POST.get("parent") or request.GET.get("from"), target.model_id
    )
    preset = _preset(membership, request.GET.get("preset"), target.model_id)
    values = initial_values(
        target.parsed or ParsedInputs(()),
        source.input if source else None,
        preset.input if preset else None,
    )
    form = _form(target, request, values, source)
    page: dict[str, Any] = {}
    if request.method == "POST":
        outcome = _try_launch(request, membership, target, form, source)
        if isinstance(outcome, HttpResponse):
            return outcome
        page = outcome
    return render_launch(request, membership, target, form, source, preset, values, **page)


def _try_launch(
    request: HttpRequest,
    membership: Membership,
    target: Target,
    form: Any,
    source: Run | None,
) -> HttpResponse | dict[str, Any]:
    """Launch, or say why not: the page context for the re-rendered form."""
    if not form.is_valid():
        return {}
    token = _uuid(request.POST.get("launch_token"))
    input = form.input if isinstance(form, LaunchForm) else form.parsed_input
    uploads = list(form.uploads) if isinstance(form, LaunchForm) else []
    already = existing_launch(membership, token, target.model_id, input, ignore=uploads)
    if already is not None:
        messages.info(request, "This form was already sent: here is the run it started.")
        return redirect(already)
    if token is not None and Run.objects.filter(uuid=token).exists():
        token = None  # the same form sent again with other values: a launch of its own
    blocker = launch_blocker(membership.team)
    if blocker:
        return {"blocked": blocker}
    if isinstance(form, LaunchForm) and form.uploads:
        try:
            send_uploads(membership.team, form)
        except UploadFailed as failed:
            form.add_error(failed.field, failed.message)
            return {}
        input = form.input
    decision = decide(membership, target.model_id, target.model, [input])
    if decision.blocked:
        return {"blocked": decision.message, "decision": decision}
    if decision.needs_confirmation and request.POST.get("confirmed") != "1":
        return {"confirm": decision.message, "decision": decision}
    try:
        run = launch_run(membership, target.model_id, input, parent=source, run_uuid=token)
    except LaunchError as error:
        return {"blocked": error.message}
    return redirect(run)


def render_launch(
    request: HttpRequest,
    membership: Membership,
    target: Target,
    form: Any,
    source: Run | None,
    preset: Preset | None,
    values: dict[str, Any],
    **extra: Any,
) -> HttpResponse:
    # "Copy as curl" shows what would be sent: the checked input once there is one.
    shown = getattr(form, "input", None) or getattr(form, "parsed_input", None) or values
    presets = list(
        Preset.objects.filter(team=membership.team, model_id=target.model_id).select_related(
            "created_by"
        )
    )
    token = _uuid(request.POST.get("launch_token")) if request.method == "POST" else None
    context = {
        "team": membership.team,
        "membership": membership,
        "target": target,
        "form": form,
        "is_raw": not isinstance(form, LaunchForm),
        "source": source,
        "preset": preset,
        "presets": [(p, preset_fit(p.input, target.parsed)) for p in presets],
        "preset_form": PresetForm(prefix="preset"),
        "launch_token": token or uuid.uuid4(),
        "curl": curl_command(target.model_id, shown, api_url=_api_url(membership)),
        "expected": _expected_duration(membership, target.model_id),
        "estimate": _estimate_text(target, shown),
        "blocker": launch_blocker(membership.team),
        **launch_notices(membership, target),
        **extra,
    }
    return render(request, "runs/launch.html", context)


def launch_notices(membership: Membership, target: Target) -> dict[str, Any]:
    """What the launch form, the batch form and the model page say before anyone presses
    Launch: a model Runflow no longer offers (``unavailable``), a team policy on it
    (``restriction``), and whether either turns the Launch button off (``launch_off``).

    The launch itself checks both again (``decide``); this only says so early.
    """
    unavailable = unavailable_message(target.model)
    restriction = restriction_for(membership, target.model_id)
    return {
        "unavailable": unavailable,
        "restriction": restriction,
        "launch_off": bool(unavailable or (restriction and restriction.blocks)),
    }


@login_required
@require_POST
def launch_preview(request: HttpRequest, team: UUID, model_id: str) -> JsonResponse:
    """What the launch form would send right now: its curl command and cost estimate.

    The launch page asks as the person types (static/js/launch.js), so "Copy as curl" and
    the estimate follow the form. Nothing is saved, checked against the policy or sent. The
    values are read by the same form classes as a launch, so they are typed exactly as the
    launch will send them; values that are not valid yet are left out, and ``note`` says so.
    """
    membership = membership_for(request, team, role=Role.MEMBER)
    target = load_target(membership, model_id)
    input, complete = _preview_input(membership, target, request)
    return JsonResponse(
        {
            "curl": curl_command(target.model_id, input, api_url=_api_url(membership)),
            "estimate": _estimate_text(target, input),
            "note": "" if complete else "Some values are not valid yet; they are left out.",
        }
    )


def _preview_input(
    membership: Membership, target: Target, request: HttpRequest
) -> tuple[dict[str, Any], bool]:
    """The input a launch of these POSTed values would send, and whether all were valid."""
    if target.parsed is None:
        raw = RawInputForm(request.POST)
        return (raw.parsed_input, True) if raw.is_valid() else ({}, False)
    source = _source_run(membership, request.POST.get("parent"), target.model_id)
    values = initial_values(target.parsed, source.input if source else None)
    # Partial: a required input not typed yet is no reason to leave out the others.
    form = LaunchForm(target.parsed, request.POST, values=values, partial=True)
    complete = form.is_valid()
    input = {name: value for name, value in form.input.items() if name not in form.errors}
    return input, complete


def _api_url(membership: Membership) -> str:
    from runs.launching import team_api_url

    return team_api_url(membership.team)


def _expected_duration(membership: Membership, model_id: str) -> str:
    try:
        from runs.usage import expected_duration
    except ImportError:
        return ""
    found = expected_duration(membership.team, model_id)
    return found.summary if found is not None else ""


def _estimate_text(target: Target, values: dict[str, Any]) -> str:
    if target.model is None:
        return ""
    try:
        cost = estimate_cost(target.model, values)
    except (TypeError, ValueError, ArithmeticError):
        return ""
    return format_usd(cost) if cost is not None else ""


@login_required
def launch_pick(request: HttpRequest, team: UUID) -> HttpResponse:
    """Launch any model by typing its id, listed in the catalog or not."""
    membership = membership_for(request, team, role=Role.MEMBER)
    from_uuid = _uuid(request.GET.get("from"))
    if from_uuid is not None:
        run = Run.objects.filter(team=membership.team, uuid=from_uuid).first()
        if run is not None:
            url = reverse("runs:launch", args=[membership.team.uuid, run.model_id])
            return redirect(f"{url}?from={run.uuid}")
    form = ModelIdForm(request.GET or None)
    if form.is_valid():
        return redirect("runs:launch", membership.team.uuid, form.cleaned_data["model_id"])
    return render(
        request,
        "runs/launch_pick.html",
        {"team": membership.team, "membership": membership, "form": form},
    )


@login_required
@require_POST
def rerun_view(request: HttpRequest, team: UUID, run: UUID) -> HttpResponse:
    """ "Run again": the same input, as a new run whose parent is this one."""
    membership, parent = run_for(request, team, run, role=Role.MEMBER)
    recent = Run.objects.filter(
        parent=parent,
        created_by=membership.user,
        input=parent.input,
        created_at__gte=timezone.now() - RERUN_DEDUP,
    ).first()
    if recent is not None:
        return redirect(recent)
    blocker = launch_blocker(membership.team)
    model = catalog_model(membership.team, parent.model_id)
    decision = decide(membership, parent.model_id, model, [parent.input])
    if blocker or decision.blocked:
        messages.error(request, blocker or decision.message)
        return redirect(parent)
    if decision.needs_confirmation:
        # The launch form shows the confirmation step, prefilled with this run's input.
        url = reverse("runs:launch", args=[membership.team.uuid, parent.model_id])
        return redirect(f"{url}?from={parent.uuid}")
    return redirect(rerun(membership, parent))


@login_required
@require_POST
def upload(request: HttpRequest, team: UUID) -> HttpResponse:
    """Send one file through Runflow's asset upload for the launch form (JavaScript path)."""
    membership = membership_for(request, team, role=Role.MEMBER)
    file = request.FILES.get("file")
    kind = request.POST.get("kind", "")
    if file is None:
        return JsonResponse({"error": "Choose a file."}, status=400)
    if (file.size or 0) > MAX_UPLOAD_BYTES:
        return JsonResponse({"error": f"{file.name} is larger than 50 MB."}, status=400)
    if kind in ("image", "video", "audio") and not (file.content_type or "").startswith(kind):
        return JsonResponse({"error": f"{file.name} is not a file of type {kind}."}, status=400)
    try:
        url = upload_one(membership.team, file)
    except UploadFailed as failed:
        return JsonResponse({"error": failed.message}, status=502)
    return JsonResponse({"url": url, "name": file.name})
