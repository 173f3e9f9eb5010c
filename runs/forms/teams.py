"""Forms for teams, members and invitations."""

from __future__ import annotations

from django import forms
from django.contrib.auth import get_user_model
from django.contrib.auth.forms import UserCreationForm

from runs.models import Invitation, Membership, Role, Team


class TeamForm(forms.ModelForm):
    class Meta:
        model = Team
        fields = ["name"]
        labels = {"name": "Team name"}
        widgets = {"name": forms.TextInput(attrs={"autofocus": True, "placeholder": "Studio"})}


class MemberRoleForm(forms.ModelForm):
    class Meta:
        model = Membership
        fields = ["role"]


class InvitationForm(forms.ModelForm):
    class Meta:
        model = Invitation
        fields = ["role", "note"]
        labels = {"note": "For (optional)"}
        widgets = {"note": forms.TextInput(attrs={"placeholder": "e.g. Sam, art director"})}


class SignupForm(UserCreationForm):
    """Account creation, offered only from a valid invitation link."""

    class Meta(UserCreationForm.Meta):
        model = get_user_model()
        fields = ("username", "email")


ROLE_HELP = {
    Role.ADMIN: "Connects Runflow, manages members, budgets and policies.",
    Role.MEMBER: "Launches runs and batches, stars and shares.",
    Role.VIEWER: "Sees the team's runs and galleries; cannot launch.",
}
