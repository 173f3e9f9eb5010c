"""Budgets, per-model policy and the retention rule: team admins only, every change audited."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any
from uuid import UUID

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.db.models import DecimalField, Model, Sum, Value
from django.db.models.functions import Coalesce
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from runs import retention
from runs.access import AuthedRequest, membership_for, team_object
from runs.forms.budgets import MemberBudgetForm, ModelPolicyForm, RetentionForm, TeamBudgetForm
from runs.models import Membership, ModelPolicy, Role, Run, RunflowModel, Team, record
from runs.pricing import format_usd
from runs.tasks.upkeep import apply_retention, ensure_sweep_scheduled
from runs.usage import month_spend, month_start


def _money(value: Decimal | None) -> str | None:
    return format_usd(value) if value is not None else None


def _as_is(value: Any) -> Any:
    return value


# The settings each form changes, as its audit entry names them (``old_<name>`` and
# ``new_<name>``): name -> (model field, how the value is written in the log).
AuditedFields = dict[str, tuple[str, Callable[[Any], Any]]]
TEAM_BUDGET: AuditedFields = {
    "budget": ("monthly_budget", _money),
    "threshold": ("confirm_threshold", _money),
}
MEMBER_BUDGET: AuditedFields = {"budget": ("monthly_budget", _money)}
RETENTION: AuditedFields = {
    "days": ("retention_days", _as_is),
    "delete_runs": ("retention_delete_runs", _as_is),
}


def _shown(instance: Model, fields: AuditedFields) -> dict[str, Any]:
    return {name: show(getattr(instance, attr)) for name, (attr, show) in fields.items()}


def _save_audited(
    request: AuthedRequest,
    form: forms.ModelForm[Any],
    *,
    action: str,
    team: Team,
    fields: AuditedFields,
    target: Callable[[Any], str],
) -> Any | None:
    """Validate and save a settings form with its audit entry (every field's old and new
    value) in one transaction, so no change is ever without its record. None if invalid."""
    # Taken first: validating already writes the new values onto the instance.
    before = _shown(form.instance, fields)
    if not form.is_valid():
        return None
    with transaction.atomic():
        saved = form.save()
        after = _shown(saved, fields)
        changes = {}
        for name in fields:
            changes[f"old_{name}"], changes[f"new_{name}"] = before[name], after[name]
        record(action, team=team, actor=request.user, target=target(saved), **changes)
    return saved


@login_required
@require_GET
def budgets_page(request: AuthedRequest, team: UUID) -> HttpResponse:
    membership = membership_for(request, team, role=Role.ADMIN)
    return _budgets_page(request, membership)


def _budgets_page(
    request: AuthedRequest, membership: Membership, *, status: int = 200, **bound: Any
) -> HttpResponse:
    """The page; ``bound`` holds a form sent back with its errors (team_form, policy_form)."""
    context = _budgets_context(membership, **bound)
    return render(request, "teams/budgets.html", context, status=status)


def _budgets_context(membership: Membership, **bound: Any) -> dict[str, Any]:
    team = membership.team
    spent_by_user = dict(
        Run.objects.filter(team=team, created_at__gte=month_start())
        .values("created_by")
        .annotate(
            spent=Coalesce(Sum("cost"), Value(Decimal(0)), output_field=DecimalField(max_digits=18))
        )
        .values_list("created_by", "spent")
    )
    members = list(team.memberships.select_related("user").order_by("user__username"))
    for member in members:
        member.month_spent = spent_by_user.get(member.user_id, Decimal(0))  # type: ignore[attr-defined]
    return {
        "team": team,
        "membership": membership,
        "team_form": bound.get("team_form") or TeamBudgetForm(instance=team),
        "policy_form": bound.get("policy_form") or ModelPolicyForm(),
        "members": members,
        "policies": team.model_policies.order_by("model_id"),
        "catalog_ids": RunflowModel.objects.order_by("model_id")
        .values_list("model_id", flat=True)
        .distinct()[:500],
        "month_spent": month_spend(team),
        "month_label": timezone.localtime().strftime("%B %Y"),
    }


@login_required
@require_POST
def team_budget_save(request: AuthedRequest, team: UUID) -> HttpResponse:
    membership = membership_for(request, team, role=Role.ADMIN)
    form = TeamBudgetForm(request.POST, instance=membership.team)
    saved = _save_audited(
        request,
        form,
        action="budget.team_changed",
        team=membership.team,
        fields=TEAM_BUDGET,
        target=lambda saved: saved.name,
    )
    if saved is None:
        return _budgets_page(request, membership, status=400, team_form=form)
    messages.success(request, "Team budget saved.")
    return redirect("runs:budgets", team)


@login_required
@require_POST
def member_budget_save(request: AuthedRequest, team: UUID, member: UUID) -> HttpResponse:
    admin, target = team_object(
        request, team, Membership.objects.select_related("user"), role=Role.ADMIN, uuid=member
    )
    saved = _save_audited(
        request,
        MemberBudgetForm(request.POST, instance=target),
        action="budget.member_changed",
        team=admin.team,
        fields=MEMBER_BUDGET,
        target=lambda saved: saved.user.get_username(),
    )
    if saved is None:
        messages.error(request, "A budget is an amount of at least $0.00, or empty.")
    else:
        messages.success(request, f"Budget of {saved.user.get_username()} saved.")
    return redirect("runs:budgets", team)


@login_required
@require_POST
def policy_save(request: AuthedRequest, team: UUID) -> HttpResponse:
    membership = membership_for(request, team, role=Role.ADMIN)
    form = ModelPolicyForm(request.POST)
    if not form.is_valid():
        return _budgets_page(request, membership, status=400, policy_form=form)
    data = form.cleaned_data
    with transaction.atomic():
        before = ModelPolicy.objects.filter(team=membership.team, model_id=data["model_id"]).first()
        policy, _ = ModelPolicy.objects.update_or_create(
            team=membership.team,
            model_id=data["model_id"],
            defaults={
                "allowed": data["allowed"],
                "min_role": data["min_role"],
                "updated_at": timezone.now(),
            },
        )
        record(
            "policy.changed",
            team=membership.team,
            actor=request.user,
            target=policy.model_id,
            allowed=policy.allowed,
            min_role=policy.min_role,
            was=({"allowed": before.allowed, "min_role": before.min_role} if before else None),
        )
    messages.success(request, f"Policy for {policy.model_id} saved.")
    return redirect("runs:budgets", team)


@login_required
@require_POST
def policy_delete(request: AuthedRequest, team: UUID) -> HttpResponse:
    membership = membership_for(request, team, role=Role.ADMIN)
    model_id = request.POST.get("model_id", "")
    with transaction.atomic():
        deleted, _ = ModelPolicy.objects.filter(team=membership.team, model_id=model_id).delete()
        if deleted:
            record("policy.removed", team=membership.team, actor=request.user, target=model_id)
    if deleted:
        messages.success(request, f"{model_id} follows the default again: members may launch it.")
    else:
        messages.info(request, "There was no policy for that model.")
    return redirect("runs:budgets", team)


# ---------- Retention ----------


@login_required
@require_GET
def retention_page(request: AuthedRequest, team: UUID) -> HttpResponse:
    membership = membership_for(request, team, role=Role.ADMIN)
    preview = retention.plan(membership.team, with_sample=True)
    return render(
        request,
        "teams/retention.html",
        {
            "team": membership.team,
            "membership": membership,
            "form": RetentionForm(instance=membership.team),
            "plan": preview,
        },
    )


@login_required
@require_POST
def retention_save(request: AuthedRequest, team: UUID) -> HttpResponse:
    membership = membership_for(request, team, role=Role.ADMIN)
    form = RetentionForm(request.POST, instance=membership.team)
    saved = _save_audited(
        request,
        form,
        action="retention.changed",
        team=membership.team,
        fields=RETENTION,
        target=lambda saved: f"{saved.retention_days} days" if saved.retention_days else "off",
    )
    if saved is None:
        context = {"team": membership.team, "membership": membership, "form": form, "plan": None}
        return render(request, "teams/retention.html", context, status=400)
    if saved.retention_days:
        ensure_sweep_scheduled()
        messages.success(request, "Retention rule saved. Check the preview below.")
    else:
        messages.success(request, "Retention is off: nothing will be deleted automatically.")
    return redirect("runs:retention", team)


@login_required
@require_POST
def retention_apply(request: AuthedRequest, team: UUID) -> HttpResponse:
    """Delete now exactly what the preview showed; the worker does the deleting."""
    membership = membership_for(request, team, role=Role.ADMIN)
    token = request.POST.get("plan", "")
    try:
        chosen = retention.plan_from_token(membership.team, token)
    except retention.PlanChanged as exc:
        messages.error(request, str(exc))
        return redirect("runs:retention", team)
    if chosen.is_empty:
        messages.info(request, "Nothing to delete.")
        return redirect("runs:retention", team)
    apply_retention.enqueue(membership.team.pk, token, request.user.pk)
    messages.success(
        request,
        f"Deleting {len(chosen.output_ids)} stored outputs"
        + (f" and {len(chosen.run_ids)} runs" if chosen.delete_runs else "")
        + ". The audit log records the result.",
    )
    return redirect("runs:retention", team)
