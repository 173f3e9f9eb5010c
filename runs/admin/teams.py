"""Teams, members, invitations, connections (masked) and the audit log in the console."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import Model, QuerySet
from django.http import HttpRequest
from django.utils.html import format_html_join

from runs.admin.actions import retire_secrets, revoke_keys
from runs.admin.base import ConsoleAdmin, ReadOnlyAdmin, team_filter
from runs.models import (
    AuditEntry,
    CallbackSecret,
    Invitation,
    Membership,
    RunflowKey,
    ShareLink,
    Team,
    record,
)


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    fields = ("user", "role", "monthly_budget", "created_at")
    readonly_fields = ("created_at",)
    autocomplete_fields = ("user",)
    show_change_link = True

    def has_view_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return True  # the parent TeamAdmin has already decided who sees the team


@admin.register(Team)
class TeamAdmin(ConsoleAdmin):
    team_path = "pk"
    list_display = ("name", "uuid", "monthly_budget", "retention_days", "breaker", "created_at")
    search_fields = ("name", "=uuid")
    readonly_fields = (
        "uuid",
        "created_at",
        "breaker_failures",
        "breaker_open_until",
        "breaker_reason",
        "bad_signature_count",
        "last_bad_signature_at",
        "last_verified_callback_at",
    )
    fieldsets = (
        (None, {"fields": ("name", "uuid", "created_at")}),
        ("Budgets and policy", {"fields": ("monthly_budget", "confirm_threshold")}),
        ("Retention", {"fields": ("retention_days", "retention_delete_runs")}),
        (
            "Health",
            {
                "fields": (
                    "breaker_failures",
                    "breaker_open_until",
                    "breaker_reason",
                    "bad_signature_count",
                    "last_bad_signature_at",
                    "last_verified_callback_at",
                )
            },
        ),
    )
    inlines = (MembershipInline,)

    @admin.display(description="circuit breaker")
    def breaker(self, team: Team) -> str:
        return (
            f"open until {team.breaker_open_until:%Y-%m-%d %H:%M}"
            if team.breaker_open_until
            else "closed"
        )

    def save_model(self, request: HttpRequest, obj: Team, form: Any, change: bool) -> None:
        watched = ("monthly_budget", "confirm_threshold", "retention_days", "retention_delete_runs")
        changed = {name: str(getattr(obj, name)) for name in watched if name in form.changed_data}
        super().save_model(request, obj, form, change)
        if change and changed:
            action = "retention.changed" if "retention_days" in changed else "budget.team_changed"
            record(action, team=obj, actor=request.user, target=obj.name, via="admin", **changed)


@admin.register(Membership)
class MembershipAdmin(ConsoleAdmin):
    list_display = ("user", "team", "role", "monthly_budget", "created_at")
    list_filter = (team_filter("team"), "role")
    list_select_related = ("user", "team")
    search_fields = ("user__username", "user__email", "team__name")
    autocomplete_fields = ("user", "team")
    readonly_fields = ("uuid", "created_at")

    def save_model(self, request: HttpRequest, obj: Membership, form: Any, change: bool) -> None:
        old = Membership.objects.filter(pk=obj.pk).values("role", "monthly_budget").first()
        super().save_model(request, obj, form, change)
        who = obj.user.get_username()
        if old is None:
            record(
                "member.added",
                team=obj.team,
                actor=request.user,
                target=who,
                role=obj.role,
                via="admin",
            )
            return
        if old["role"] != obj.role:
            record(
                "member.role_changed", team=obj.team, actor=request.user, target=who,
                old=old["role"], new=obj.role, via="admin",
            )  # fmt: skip
        if old["monthly_budget"] != obj.monthly_budget:
            record(
                "budget.member_changed", team=obj.team, actor=request.user, target=who,
                old_budget=str(old["monthly_budget"]), new_budget=str(obj.monthly_budget),
                via="admin",
            )  # fmt: skip

    def delete_model(self, request: HttpRequest, obj: Membership) -> None:
        team, who = obj.team, obj.user.get_username()
        super().delete_model(request, obj)
        record("member.removed", team=team, actor=request.user, target=who, via="admin")

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Membership]) -> None:
        for membership in queryset.select_related("team", "user"):
            self.delete_model(request, membership)


@admin.register(Invitation)
class InvitationAdmin(ConsoleAdmin):
    # The token is a bearer credential (whoever holds the link joins): never shown here.
    list_display = ("team", "role", "note", "created_by", "created_at", "expires_at", "state")
    list_filter = (team_filter("team"), "role")
    list_select_related = ("team", "created_by", "used_by")
    search_fields = ("note", "team__name")
    fields = (
        "team",
        "role",
        "note",
        "created_by",
        "created_at",
        "expires_at",
        "used_at",
        "used_by",
        "revoked_at",
    )
    readonly_fields = ("created_by", "created_at", "used_at", "used_by")

    @admin.display(description="state")
    def state(self, invitation: Invitation) -> str:
        if invitation.used_at:
            return "used"
        if invitation.revoked_at:
            return "revoked"
        return "open" if invitation.is_usable else "expired"

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return False  # made on the team page, where the link can be copied


class WriteOnlySecretAdmin(ReadOnlyAdmin):
    """A team's write-only secret (S4): the ``secret`` field is in no list, form, search or
    export. Subclasses name the fields around it, all read-only (``readonly_fields = fields``)."""

    list_select_related = ("team",)

    def get_exclude(self, request: HttpRequest, obj: Model | None = None) -> tuple[str, ...]:
        return ("secret",)


@admin.register(RunflowKey)
class RunflowKeyAdmin(WriteOnlySecretAdmin):
    list_display = (
        "label",
        "team",
        "masked",
        "api_url",
        "is_default",
        "needs_reentry",
        "revoked_at",
    )
    list_filter = (team_filter("team"), "is_default", "needs_reentry")
    search_fields = ("label", "team__name", "org_name")
    fields = (
        "uuid",
        "team",
        "label",
        "api_url",
        "masked",
        "is_default",
        "needs_reentry",
        "org_id",
        "org_name",
        "scopes",
        "created_by",
        "created_at",
        "last_checked_at",
        "last_used_at",
        "revoked_at",
    )
    readonly_fields = fields
    actions = (revoke_keys,)


@admin.register(CallbackSecret)
class CallbackSecretAdmin(WriteOnlySecretAdmin):
    list_display = ("masked", "team", "runflow_id", "created_at", "last_verified_at", "retired_at")
    list_filter = (team_filter("team"),)
    search_fields = ("team__name", "runflow_id")
    fields = (
        "uuid",
        "team",
        "masked",
        "runflow_id",
        "key",
        "needs_reentry",
        "created_by",
        "created_at",
        "last_verified_at",
        "retired_at",
    )
    readonly_fields = fields
    actions = (retire_secrets,)


@admin.register(ShareLink)
class ShareLinkAdmin(ConsoleAdmin):
    # The token is the whole credential of a public link: not shown, not searchable.
    list_display = ("title", "team", "created_by", "created_at", "expires_at", "revoked_at")
    list_filter = (team_filter("team"),)
    list_select_related = ("team", "created_by")
    search_fields = ("title", "team__name")
    fields = ("team", "title", "created_by", "created_at", "expires_at", "revoked_at")
    readonly_fields = ("team", "created_by", "created_at")

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return False


@admin.register(AuditEntry)
class AuditEntryAdmin(ReadOnlyAdmin):
    """Append-only: nobody adds, changes or deletes entries, superusers included."""

    big_table = True
    date_hierarchy = None
    list_display = ("created_at", "team", "actor", "action", "target")
    list_filter = (team_filter("team"), "action")
    list_select_related = ("team", "actor")
    search_fields = ("action", "target", "actor__username")
    fields = ("created_at", "team", "actor", "action", "target", "details")
    readonly_fields = fields
    actions = None

    @admin.display(description="details")
    def details(self, entry: AuditEntry) -> str:
        if not entry.detail:
            return "—"
        return format_html_join("", "<div><b>{}</b>: {}</div>", entry.detail.items())

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False
