"""Forms for teams, members and invitations."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.auth import get_user_model
from django.contrib.auth.forms import UserCreationForm
from django.contrib.auth.models import AbstractBaseUser

from runs.forms.accounts import clean_address
from runs.models import Invitation, Membership, Role, Team


class TeamForm(forms.ModelForm):
    """A team's name, which must differ from the names of the user's other teams: the team
    switcher shows names only, and two "Demo" entries cannot be told apart."""

    class Meta:
        model = Team
        fields = ["name"]
        labels = {"name": "Team name"}
        widgets = {"name": forms.TextInput(attrs={"autofocus": True, "placeholder": "Studio"})}

    def __init__(self, *args: Any, user: AbstractBaseUser, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.user = user

    def clean_name(self) -> str:
        name = " ".join(self.cleaned_data["name"].split())
        mine = Team.objects.for_user(self.user).filter(name__iexact=name)
        if self.instance.pk is not None:
            mine = mine.exclude(pk=self.instance.pk)
        if mine.exists():
            raise forms.ValidationError(
                f"You already have a team called “{name}”. Pick another name, so the team "
                "switcher can tell them apart."
            )
        return name


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
    """Account creation, offered only from a valid invitation link.

    The email is required: it is the only way back into the account after a forgotten
    password (the reset link goes there), and people joining from an invitation have no
    admin at hand who could reset it for them.
    """

    class Meta(UserCreationForm.Meta):
        model = get_user_model()
        fields = ("username", "email")
        help_texts = {"email": "Where password reset links are sent."}
        widgets = {"email": forms.EmailInput(attrs={"autocomplete": "email"})}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["email"].required = True

    def clean_email(self) -> str:
        return clean_address(self)


ROLE_HELP = {
    Role.ADMIN: "Connects Runflow, manages members, budgets and policies.",
    Role.MEMBER: "Launches runs and batches, stars and shares.",
    Role.VIEWER: "Sees the team's runs and galleries; cannot launch.",
}
