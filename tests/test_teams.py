"""Teams, members and invitations."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from runs.models import AuditEntry, Invitation, Membership, Role, Team
from tests.conftest import (
    ADMIN_ONLY_EXPECTED,
    PASSWORD,
    READ_EXPECTED,
    Cast,
    assert_access,
    make_user,
)

pytestmark = pytest.mark.django_db


def test_settings_page_access_matrix(cast: Cast) -> None:
    assert_access(cast, "get", reverse("runs:team_settings", args=[cast.team.uuid]), READ_EXPECTED)


def test_rename_is_admin_only(cast: Cast) -> None:
    url = reverse("runs:team_rename", args=[cast.team.uuid])
    assert_access(cast, "post", url, ADMIN_ONLY_EXPECTED, {"name": "Acme Studio"})
    cast.team.refresh_from_db()
    assert cast.team.name == "Acme Studio"


def test_rename_by_get_changes_nothing(cast: Cast) -> None:
    client = cast.client_for("admin")
    response = client.get(reverse("runs:team_rename", args=[cast.team.uuid]), {"name": "X"})
    assert response.status_code == 405
    cast.team.refresh_from_db()
    assert cast.team.name == "Acme"


def test_create_team_makes_creator_admin(cast: Cast) -> None:
    client = cast.client_for("viewer")
    response = client.post(reverse("runs:team_create"), {"name": "Night shift"})
    team = Team.objects.get(name="Night shift")
    assert response.status_code == 302
    assert Membership.objects.get(team=team, user=cast.viewer).role == Role.ADMIN
    assert AuditEntry.objects.filter(team=team, action="team.created").exists()


def test_home_redirects_to_a_team_or_welcomes(cast: Cast) -> None:
    response = cast.client_for("member").get(reverse("runs:home"))
    assert response.status_code == 302
    assert str(cast.team.uuid) in response["Location"]
    lonely = make_user("lonely")
    client = cast.client_for(None)
    client.force_login(lonely)
    response = client.get(reverse("runs:home"))
    assert response.status_code == 200
    assert b"Create a team" in response.content


def test_role_change_is_admin_only_and_audited(cast: Cast) -> None:
    target = Membership.objects.get(user=cast.viewer, team=cast.team)
    url = reverse("runs:member_update", args=[cast.team.uuid, target.uuid])
    assert_access(cast, "post", url, ADMIN_ONLY_EXPECTED, {"role": "member"})
    target.refresh_from_db()
    assert target.role == Role.MEMBER
    entry = AuditEntry.objects.get(action="member.role_changed")
    assert entry.detail == {"old": "viewer", "new": "member"}


def test_last_admin_cannot_be_demoted(cast: Cast) -> None:
    mine = Membership.objects.get(user=cast.admin, team=cast.team)
    client = cast.client_for("admin")
    client.post(reverse("runs:member_update", args=[cast.team.uuid, mine.uuid]), {"role": "viewer"})
    mine.refresh_from_db()
    assert mine.role == Role.ADMIN


def test_outsider_cannot_touch_another_teams_member(cast: Cast) -> None:
    target = Membership.objects.get(user=cast.member, team=cast.team)
    client = cast.client_for("outsider")
    # The outsider is admin of *their* team: using its uuid with our member must 404 too.
    url = reverse("runs:member_remove", args=[cast.other_team.uuid, target.uuid])
    assert client.post(url).status_code == 404
    assert Membership.objects.filter(pk=target.pk).exists()


def test_removed_member_loses_access_on_next_request(cast: Cast) -> None:
    client = cast.client_for("member")
    url = reverse("runs:team", args=[cast.team.uuid])
    assert client.get(url).status_code == 200
    target = Membership.objects.get(user=cast.member, team=cast.team)
    cast.client_for("admin").post(reverse("runs:member_remove", args=[cast.team.uuid, target.uuid]))
    assert client.get(url).status_code == 404


def test_member_can_leave_but_not_remove_others(cast: Cast) -> None:
    other = Membership.objects.get(user=cast.viewer, team=cast.team)
    client = cast.client_for("member")
    assert (
        client.post(reverse("runs:member_remove", args=[cast.team.uuid, other.uuid])).status_code
        == 403
    )
    mine = Membership.objects.get(user=cast.member, team=cast.team)
    assert (
        client.post(reverse("runs:member_remove", args=[cast.team.uuid, mine.uuid])).status_code
        == 302
    )
    assert not Membership.objects.filter(pk=mine.pk).exists()


def test_invitation_signup_joins_with_role_once(cast: Cast) -> None:
    cast.client_for("admin").post(
        reverse("runs:invitation_create", args=[cast.team.uuid]), {"role": "viewer", "note": "Sam"}
    )
    invitation = Invitation.objects.get(team=cast.team)
    url = invitation.get_absolute_url()
    client = cast.client_for(None)
    response = client.post(
        url,
        {
            "username": "sam",
            "email": "sam@example.com",
            "password1": PASSWORD,
            "password2": PASSWORD,
        },
    )
    assert response.status_code == 302
    assert Membership.objects.get(user__username="sam", team=cast.team).role == Role.VIEWER
    # A second person opening the same link is told it is gone.
    assert cast.client_for("outsider").get(url).status_code == 410
    assert not Membership.objects.filter(user=cast.outsider, team=cast.team).exists()


def test_expired_and_revoked_invitations_are_refused(cast: Cast) -> None:
    expired = Invitation.objects.create(
        team=cast.team, expires_at=timezone.now() - timedelta(seconds=1)
    )
    revoked = Invitation.objects.create(team=cast.team, revoked_at=timezone.now())
    client = cast.client_for("outsider")
    for invitation in (expired, revoked):
        assert client.post(invitation.get_absolute_url()).status_code == 410
    assert not Membership.objects.filter(user=cast.outsider, team=cast.team).exists()


def test_invitation_admin_actions_matrix(cast: Cast) -> None:
    assert_access(
        cast,
        "post",
        reverse("runs:invitation_create", args=[cast.team.uuid]),
        ADMIN_ONLY_EXPECTED,
        {"role": "member"},
    )

    def fresh() -> str:
        invitation = Invitation.objects.create(team=cast.team)
        return reverse("runs:invitation_revoke", args=[cast.team.uuid, invitation.uuid])

    assert_access(cast, "post", fresh, ADMIN_ONLY_EXPECTED)


def test_team_names_are_escaped(cast: Cast) -> None:
    cast.team.name = "<script>alert(1)</script>"
    cast.team.save()
    response = cast.client_for("member").get(reverse("runs:team_settings", args=[cast.team.uuid]))
    assert b"<script>alert(1)</script>" not in response.content
    assert b"&lt;script&gt;" in response.content


# ---------- names the team switcher can tell apart ----------


def test_creating_a_team_named_like_one_of_mine_is_refused(cast: Cast) -> None:
    client = cast.client_for("admin")
    for typed, shown in (("Acme", "Acme"), ("  acme ", "acme"), ("ACME", "ACME")):
        response = client.post(reverse("runs:team_create"), {"name": typed})
        assert response.status_code == 200, typed
        html = response.content.decode()
        assert f"You already have a team called “{shown}”" in html, typed
        assert "field--error" in html
    assert Team.objects.filter(name__iexact="acme").count() == 1


def test_the_same_name_is_fine_for_someone_without_such_a_team(cast: Cast) -> None:
    # The outsider is not in Acme: their own "Acme" is no clash in their switcher.
    response = cast.client_for("outsider").post(reverse("runs:team_create"), {"name": "Acme"})
    assert response.status_code == 302
    assert Team.objects.filter(name="Acme").count() == 2


def test_renaming_onto_another_of_my_teams_names_is_refused(cast: Cast) -> None:
    second = Team.objects.create(name="Night shift")
    Membership.objects.create(user=cast.admin, team=second, role=Role.ADMIN)
    client = cast.client_for("admin")
    url = reverse("runs:team_rename", args=[cast.team.uuid])
    response = client.post(url, {"name": "night shift"}, follow=True)
    assert "You already have a team called “night shift”" in response.content.decode()
    cast.team.refresh_from_db()
    assert cast.team.name == "Acme"
    # Keeping its own name (or changing its case) is not a clash with itself.
    assert client.post(url, {"name": "ACME"}).status_code == 302
    cast.team.refresh_from_db()
    assert cast.team.name == "ACME"


# ---------- sign-up from an invitation ----------


def test_invitation_signup_asks_for_an_email_and_refuses_a_taken_one(cast: Cast) -> None:
    invitation = Invitation.objects.create(team=cast.team, role=Role.MEMBER)
    url = invitation.get_absolute_url()
    page = cast.client_for(None).get(url).content.decode()
    assert 'type="email" name="email"' in page and 'for="id_email" class="required"' in page
    form = {"username": "sam", "password1": PASSWORD, "password2": PASSWORD}
    missing = cast.client_for(None).post(url, {**form, "email": ""})
    assert missing.status_code == 200 and missing.context["form"].errors["email"]
    # mo@example.com belongs to the member already: password resets would reach both.
    taken = cast.client_for(None).post(url, {**form, "email": "MO@example.com"})
    assert "Another account uses this address" in taken.content.decode()
    assert not Membership.objects.filter(user__username="sam").exists()
    joined = cast.client_for(None).post(url, {**form, "email": "sam@Example.COM"})
    assert joined.status_code == 302
    assert Membership.objects.get(user__username="sam").user.email == "sam@example.com"
