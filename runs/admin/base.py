"""What every ModelAdmin of the operations console shares: who may see what, and how.

Access (T2): superusers operate the whole site. A *staff* user who is an admin of some
teams sees those teams' objects and nothing else: every queryset, list filter, search,
autocomplete and object page goes through ``get_queryset``, which is scoped to those teams,
so another team's object is "not found" even by primary key. Everyone else sees nothing of
this app, whatever Django model permissions they were given: the console is deliberately
not governed by per-model permissions, which are too easy to grant by accident.

Scale: the big tables (runs, outputs, deliveries, logs, audit entries) never COUNT(*): the
paginator looks one row past the current page instead, and facet counts are off.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

from django.contrib import admin
from django.contrib.admin.options import ShowFacets
from django.core.paginator import Paginator
from django.db.models import Model, QuerySet
from django.http import HttpRequest

from runs.models import Membership, Role, Team


def admin_team_ids(request: HttpRequest) -> list[int]:
    """Teams whose objects a staff (not super) user may see: those they administer."""
    cached = getattr(request, "_console_team_ids", None)
    if cached is None:
        user = request.user
        cached = (
            list(
                Membership.objects.filter(user_id=user.pk, role=Role.ADMIN).values_list(
                    "team_id", flat=True
                )
            )
            if user.is_active and user.is_staff
            else []
        )
        request._console_team_ids = cached  # type: ignore[attr-defined]
    return cached


def is_operator(request: HttpRequest) -> bool:
    return bool(request.user.is_active and request.user.is_superuser)


def may_view(request: HttpRequest) -> bool:
    return is_operator(request) or bool(admin_team_ids(request))


class LookaheadPaginator(Paginator):
    """Pages without COUNT(*): it only learns whether one more row exists after this page.

    The admin shows "page N of N+1" until the last page is reached; on a table of millions
    of runs a page costs two indexed LIMIT queries instead of a full count.
    """

    def __init__(self, queryset: QuerySet[Any], per_page: int, *, page_number: int = 1) -> None:
        super().__init__(queryset, per_page)
        self._queryset = queryset
        self._page_number = max(page_number, 1)

    @cached_property
    def count(self) -> int:  # type: ignore[override]
        offset = (self._page_number - 1) * self.per_page
        window = self._queryset.values_list("pk", flat=True)[offset : offset + self.per_page + 1]
        return offset + len(list(window))


class TeamFilter(admin.SimpleListFilter):
    """Filter by team, offering (and honouring) only the teams the user may see."""

    title = "team"
    parameter_name = "team"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        teams = Team.objects.order_by("name")
        if not is_operator(request):
            teams = teams.filter(pk__in=admin_team_ids(request))
        return [(str(team.uuid), team.name) for team in teams[:200]]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        if not value:
            return queryset
        allowed = {key for key, _ in self.lookup_choices}
        if value not in allowed:
            return queryset.none()
        path = getattr(self, "team_path", "team")
        return queryset.filter(**{f"{path}__uuid": value})


def team_filter(path: str) -> type[TeamFilter]:
    """A TeamFilter for a model that reaches its team through ``path`` (e.g. run__team)."""
    return type(f"TeamFilter_{path}", (TeamFilter,), {"team_path": path})


class ConsoleAdmin(admin.ModelAdmin):
    """Base of every ModelAdmin here. ``team_path`` is how a row reaches its team; None
    means the model is site-wide (the catalog) and only superusers may change it."""

    team_path: str | None = "team"
    # Staff team admins may run these operational actions on their own teams' objects.
    staff_may_operate = False
    big_table = False
    show_facets = ShowFacets.NEVER

    # ---- scoping ----

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        queryset = super().get_queryset(request)
        if is_operator(request):
            return queryset
        teams = admin_team_ids(request)
        if not teams:
            return queryset.none()
        if self.team_path is None:
            return queryset
        return queryset.filter(**{f"{self.team_path}__in": teams})

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.related_model is Team and not is_operator(request):
            kwargs["queryset"] = Team.objects.filter(pk__in=admin_team_ids(request))
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    # ---- permissions: superusers operate, team-admin staff read their teams ----

    def has_module_permission(self, request: HttpRequest) -> bool:
        return may_view(request)

    def has_view_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return may_view(request)

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return is_operator(request)

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return is_operator(request)

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return is_operator(request)

    def has_operate_permission(self, request: HttpRequest) -> bool:
        """For the console's actions (poll now, redeliver...): ``allowed_permissions``."""
        return is_operator(request) or (self.staff_may_operate and bool(admin_team_ids(request)))

    # ---- scale ----

    def get_paginator(
        self,
        request: HttpRequest,
        queryset: QuerySet[Any],
        per_page: int,
        orphans: int = 0,
        allow_empty_first_page: bool = True,
    ) -> Paginator:
        if not self.big_table:
            return super().get_paginator(
                request, queryset, per_page, orphans, allow_empty_first_page
            )
        try:
            page = int(request.GET.get("p", 1))
        except ValueError:
            page = 1
        return LookaheadPaginator(queryset, per_page, page_number=page)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.big_table:
            # No second COUNT(*) for "N total", and no "Show all" (it would load the table).
            cls.show_full_result_count = False
            cls.list_max_show_all = cls.list_per_page


class ReadOnlyAdmin(ConsoleAdmin):
    """Records written by the site itself (runs, deliveries...): nobody edits them here."""

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_view_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return may_view(request)
