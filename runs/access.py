"""Team-scoped loaders: the first line of every view (T1, T4).

Each loader finds the object *inside a team the signed-in user belongs to* or raises 404,
so an outsider never learns whether a team, run or file exists. A member whose role may
read but not write gets 403. Membership is read from the database on every request, so
removing someone takes effect on their very next click (T4).
"""

from __future__ import annotations

from uuid import UUID

from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.db import models
from django.http import Http404, HttpRequest

from runs.models import Membership, Role, Run, Team

SESSION_TEAM_KEY = "current_team"


def membership_for(request: HttpRequest, team_uuid: UUID, *, role: str = Role.VIEWER) -> Membership:
    """The user's membership of ``team_uuid``; 404 if none, 403 if below ``role``."""
    if not request.user.is_authenticated:
        raise Http404
    membership = (
        Membership.objects.select_related("team")
        .filter(user=request.user, team__uuid=team_uuid)
        .first()
    )
    if membership is None:
        raise Http404("No such team.")
    if not membership.has_role(role):
        raise PermissionDenied(f"This needs the {Role(role).label.lower()} role in this team.")
    request.membership = membership  # type: ignore[attr-defined]
    if request.session.get(SESSION_TEAM_KEY) != str(team_uuid):
        request.session[SESSION_TEAM_KEY] = str(team_uuid)
    return membership


def team_for(request: HttpRequest, team_uuid: UUID, *, role: str = Role.VIEWER) -> Team:
    return membership_for(request, team_uuid, role=role).team


def team_object[M: models.Model](
    request: HttpRequest,
    team_uuid: UUID,
    queryset: models.QuerySet[M],
    *,
    role: str = Role.VIEWER,
    **lookup: object,
) -> tuple[Membership, M]:
    """Load one object of ``queryset`` that belongs to the team, after checking membership.

    The role check comes first on purpose: a viewer asking to change an object gets 403
    without learning anything; an outsider gets 404 whether or not the object exists.
    """
    membership = membership_for(request, team_uuid, role=role)
    obj = queryset.filter(team=membership.team, **lookup).first()
    if obj is None:
        raise Http404
    return membership, obj


def run_for(
    request: HttpRequest, team_uuid: UUID, run_uuid: UUID, *, role: str = Role.VIEWER
) -> tuple[Membership, Run]:
    return team_object(
        request,
        team_uuid,
        Run.objects.select_related("team", "created_by", "parent").filter(deleted_at__isnull=True),
        role=role,
        uuid=run_uuid,
    )


def current_membership(request: HttpRequest) -> Membership | None:
    """The team the user last worked in (for pages outside any team, like the home page)."""
    if not request.user.is_authenticated:
        return None
    memberships = Membership.objects.select_related("team").filter(user=request.user)
    wanted = request.session.get(SESSION_TEAM_KEY)
    if wanted:
        found = memberships.filter(team__uuid=wanted).first()
        if found:
            return found
    return memberships.order_by("created_at").first()


class AuthedRequest(HttpRequest):
    """The request type of views behind ``login_required``: ``user`` is a real user."""

    user: User
