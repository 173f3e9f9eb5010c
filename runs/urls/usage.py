"""Running a team: usage, exports, budgets and policies, retention, the audit log."""

from __future__ import annotations

from django.urls import path

from runs.views import audit, budgets, usage

urlpatterns = [
    path("t/<uuid:team>/usage/", usage.usage_page, name="usage"),
    path("t/<uuid:team>/runs/export.<str:fmt>", usage.export_runs, name="export_runs"),
    path("t/<uuid:team>/budgets/", budgets.budgets_page, name="budgets"),
    path("t/<uuid:team>/budgets/team/", budgets.team_budget_save, name="team_budget_save"),
    path(
        "t/<uuid:team>/budgets/members/<uuid:member>/",
        budgets.member_budget_save,
        name="member_budget_save",
    ),
    path("t/<uuid:team>/budgets/policies/", budgets.policy_save, name="policy_save"),
    path("t/<uuid:team>/budgets/policies/delete/", budgets.policy_delete, name="policy_delete"),
    path("t/<uuid:team>/retention/", budgets.retention_page, name="retention"),
    path("t/<uuid:team>/retention/rule/", budgets.retention_save, name="retention_save"),
    path("t/<uuid:team>/retention/apply/", budgets.retention_apply, name="retention_apply"),
    path("t/<uuid:team>/audit/", audit.audit_page, name="audit"),
]
