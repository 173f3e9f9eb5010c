"""Teams: create, switch, settings, members and invitations."""

from __future__ import annotations

from uuid import UUID

from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from runs.access import AuthedRequest, current_membership, membership_for, team_object
from runs.forms.teams import ROLE_HELP, InvitationForm, MemberRoleForm, SignupForm, TeamForm
from runs.models import Invitation, Membership, Role, Team, record


@login_required
def home(request: AuthedRequest) -> HttpResponse:
    """Send the user to the team they last worked in, or help them make their first."""
    membership = current_membership(request)
    if membership is None:
        return render(request, "teams/welcome.html")
    return redirect(membership.team)


@login_required
def team_create(request: AuthedRequest) -> HttpResponse:
    form = TeamForm(request.POST or None, user=request.user)
    if request.method == "POST" and form.is_valid():
        with transaction.atomic():
            team = form.save()
            Membership.objects.create(user=request.user, team=team, role=Role.ADMIN)
            record("team.created", team=team, actor=request.user, target=team.name)
        messages.success(request, f"Team “{team.name}” created. Connect it to Runflow next.")
        return redirect("runs:team_settings", team.uuid)
    return render(request, "teams/create.html", {"form": form})


@login_required
def team_settings(request: AuthedRequest, team: UUID) -> HttpResponse:
    membership = membership_for(request, team)
    team_obj = membership.team
    members = team_obj.memberships.select_related("user").order_by("user__username")
    invitations = (
        team_obj.invitations.filter(used_at__isnull=True, revoked_at__isnull=True)
        if membership.is_admin
        else Invitation.objects.none()
    )
    return render(
        request,
        "teams/settings.html",
        {
            "team": team_obj,
            "membership": membership,
            "members": members,
            "invitations": invitations,
            "team_form": TeamForm(instance=team_obj, user=request.user),
            "invitation_form": InvitationForm(),
            "role_choices": Role.choices,
            "role_help": ROLE_HELP,
            "now": timezone.now(),
        },
    )


@login_required
@require_POST
def team_rename(request: AuthedRequest, team: UUID) -> HttpResponse:
    membership = membership_for(request, team, role=Role.ADMIN)
    form = TeamForm(request.POST, instance=membership.team, user=request.user)
    if form.is_valid():
        old = Team.objects.get(pk=membership.team.pk).name
        form.save()
        record(
            "team.renamed",
            team=membership.team,
            actor=request.user,
            target=old,
            new_name=membership.team.name,
        )
        messages.success(request, "Team renamed.")
    else:
        # The settings page has no room for field errors here: the reason goes in a message.
        reasons = form.errors.get("name") or ["A team needs a name."]
        messages.error(request, " ".join(str(reason) for reason in reasons))
    return redirect("runs:team_settings", team)


@login_required
@require_POST
def member_update(request: AuthedRequest, team: UUID, member: UUID) -> HttpResponse:
    admin, target = team_object(
        request, team, Membership.objects.select_related("user"), role=Role.ADMIN, uuid=member
    )
    form = MemberRoleForm(request.POST, instance=target)
    old_role = target.role
    if not form.is_valid():
        messages.error(request, "Choose admin, member or viewer.")
    elif old_role == Role.ADMIN and form.cleaned_data["role"] != Role.ADMIN and _last_admin(target):
        messages.error(request, "A team needs at least one admin: promote someone else first.")
    else:
        form.save()
        record(
            "member.role_changed",
            team=admin.team,
            actor=request.user,
            target=target.user.get_username(),
            old=old_role,
            new=target.role,
        )
        messages.success(
            request, f"{target.user.get_username()} is now {target.get_role_display().lower()}."
        )
    return redirect("runs:team_settings", team)


@login_required
@require_POST
def member_remove(request: AuthedRequest, team: UUID, member: UUID) -> HttpResponse:
    membership = membership_for(request, team)
    target = get_object_or_404(
        Membership.objects.select_related("user"), team=membership.team, uuid=member
    )
    leaving = target.pk == membership.pk
    if not leaving and not membership.is_admin:
        membership_for(request, team, role=Role.ADMIN)  # raises 403
    if target.role == Role.ADMIN and _last_admin(target):
        messages.error(request, "The last admin cannot leave or be removed.")
        return redirect("runs:team_settings", team)
    target.delete()
    record(
        "member.removed",
        team=membership.team,
        actor=request.user,
        target=target.user.get_username(),
    )
    if leaving:
        messages.success(request, f"You left {membership.team.name}.")
        return redirect("runs:home")
    messages.success(request, f"{target.user.get_username()} was removed from the team.")
    return redirect("runs:team_settings", team)


def _last_admin(target: Membership) -> bool:
    return (
        not Membership.objects.filter(team=target.team, role=Role.ADMIN)
        .exclude(pk=target.pk)
        .exists()
    )


@login_required
@require_POST
def invitation_create(request: AuthedRequest, team: UUID) -> HttpResponse:
    membership = membership_for(request, team, role=Role.ADMIN)
    form = InvitationForm(request.POST)
    if form.is_valid():
        invitation = form.save(commit=False)
        invitation.team = membership.team
        invitation.created_by = request.user
        invitation.save()
        record(
            "invitation.created",
            team=membership.team,
            actor=request.user,
            target=invitation.note or invitation.role,
            role=invitation.role,
        )
        messages.success(request, "Invitation link created: copy it from the list below.")
    else:
        messages.error(request, "Choose a role for the invitation.")
    return redirect("runs:team_settings", team)


@login_required
@require_POST
def invitation_revoke(request: AuthedRequest, team: UUID, invitation: UUID) -> HttpResponse:
    membership, target = team_object(
        request, team, Invitation.objects.all(), role=Role.ADMIN, uuid=invitation
    )
    target.revoked_at = timezone.now()
    target.save(update_fields=["revoked_at"])
    record(
        "invitation.revoked",
        team=membership.team,
        actor=request.user,
        target=target.note or target.role,
    )
    messages.success(request, "Invitation revoked.")
    return redirect("runs:team_settings", team)


def invitation_accept(request: AuthedRequest, token: str) -> HttpResponse:
    """Open an invitation: sign up (or sign in) and join the team in one step."""
    invitation = get_object_or_404(Invitation.objects.select_related("team"), token=token)
    if not invitation.is_usable:
        return render(
            request, "teams/invitation_invalid.html", {"invitation": invitation}, status=410
        )
    signup = SignupForm(request.POST or None) if not request.user.is_authenticated else None
    if request.method == "POST":
        if signup is not None:
            if not signup.is_valid():
                return render(
                    request, "teams/invitation.html", {"invitation": invitation, "form": signup}
                )
            user = signup.save()
            login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        _join(request, invitation)
        return redirect(invitation.team)
    return render(request, "teams/invitation.html", {"invitation": invitation, "form": signup})


def _join(request: AuthedRequest, invitation: Invitation) -> None:
    with transaction.atomic():
        # Compare-and-set: a link used twice at once still adds only one person.
        claimed = Invitation.objects.filter(pk=invitation.pk, used_at__isnull=True).update(
            used_at=timezone.now(), used_by=request.user
        )
        already = Membership.objects.filter(user=request.user, team=invitation.team).exists()
        if claimed and not already:
            Membership.objects.create(user=request.user, team=invitation.team, role=invitation.role)
            record(
                "member.added",
                team=invitation.team,
                actor=request.user,
                target=request.user.get_username(),
                role=invitation.role,
                via="invitation",
            )
    if already:
        messages.info(request, f"You are already in {invitation.team.name}.")
    elif claimed:
        messages.success(request, f"Welcome to {invitation.team.name}.")
    else:
        messages.error(request, "This invitation was just used by someone else.")
