"""Budgets, per-model policy and the retention rule: team admins only, every change audited."""

from __future__ import annotations

from decimal import Decimal
from typing import Any
from uuid import UUID

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.db.models import DecimalField, Sum, Value
from django.db.models.functions import Coalesce
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from runs import retention
from runs.access import AuthedRequest, membership_for, team_object
from runs.forms.budgets import MemberBudgetForm, ModelPolicyForm, RetentionForm, TeamBudgetForm
from runs.models import Membership, ModelPolicy, Role, Run, RunflowModel, record
from runs.pricing import format_usd
from runs.tasks.upkeep import apply_retention, ensure_sweep_scheduled
from runs.usage import month_spend, month_start


def _money(value: Decimal | None) -> str | None:
    return format_usd(value) if value is not None else None


@login_required
@require_GET
def budgets_page(request: AuthedRequest, team: UUID) -> HttpResponse:
    membership = membership_for(request, team, role=Role.ADMIN)
    return render(request, "teams/budgets.html", _budgets_context(membership))


def _budgets_context(membership: Membership, **forms: Any) -> dict[str, Any]:
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
        "team_form": forms.get("team_form") or TeamBudgetForm(instance=team),
        "policy_form": forms.get("policy_form") or ModelPolicyForm(),
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
    old = (membership.team.monthly_budget, membership.team.confirm_threshold)
    form = TeamBudgetForm(request.POST, instance=membership.team)
    if not form.is_valid():
        context = _budgets_context(membership, team_form=form)
        return render(request, "teams/budgets.html", context, status=400)
    with transaction.atomic():
        saved = form.save()
        record(
            "budget.team_changed",
            team=saved,
            actor=request.user,
            target=saved.name,
            old_budget=_money(old[0]),
            new_budget=_money(saved.monthly_budget),
            old_threshold=_money(old[1]),
            new_threshold=_money(saved.confirm_threshold),
        )
    messages.success(request, "Team budget saved.")
    return redirect("runs:budgets", team)


@login_required
@require_POST
def member_budget_save(request: AuthedRequest, team: UUID, member: UUID) -> HttpResponse:
    admin, target = team_object(
        request, team, Membership.objects.select_related("user"), role=Role.ADMIN, uuid=member
    )
    old = target.monthly_budget
    form = MemberBudgetForm(request.POST, instance=target)
    if not form.is_valid():
        messages.error(request, "A budget is an amount of at least $0.00, or empty.")
        return redirect("runs:budgets", team)
    with transaction.atomic():
        saved = form.save()
        record(
            "budget.member_changed",
            team=admin.team,
            actor=request.user,
            target=saved.user.get_username(),
            old_budget=_money(old),
            new_budget=_money(saved.monthly_budget),
        )
    messages.success(request, f"Budget of {saved.user.get_username()} saved.")
    return redirect("runs:budgets", team)


@login_required
@require_POST
def policy_save(request: AuthedRequest, team: UUID) -> HttpResponse:
    membership = membership_for(request, team, role=Role.ADMIN)
    form = ModelPolicyForm(request.POST)
    if not form.is_valid():
        context = _budgets_context(membership, policy_form=form)
        return render(request, "teams/budgets.html", context, status=400)
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
    old = (membership.team.retention_days, membership.team.retention_delete_runs)
    form = RetentionForm(request.POST, instance=membership.team)
    if not form.is_valid():
        context = {"team": membership.team, "membership": membership, "form": form, "plan": None}
        return render(request, "teams/retention.html", context, status=400)
    with transaction.atomic():
        saved = form.save()
        record(
            "retention.changed",
            team=saved,
            actor=request.user,
            target=f"{saved.retention_days} days" if saved.retention_days else "off",
            old_days=old[0],
            new_days=saved.retention_days,
            old_delete_runs=old[1],
            new_delete_runs=saved.retention_delete_runs,
        )
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
