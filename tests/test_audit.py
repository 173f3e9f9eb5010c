"""The audit log: the team page, append-only entries, and an entry for every listed action."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from runs.models import AuditEntry, Invitation, Membership, ModelPolicy, Role, record
from tests.conftest import ADMIN_ONLY_EXPECTED, Cast, assert_access, make_user

pytestmark = pytest.mark.django_db


def audit_url(cast: Cast) -> str:
    return reverse("runs:audit", args=[cast.team.uuid])


def actions(cast: Cast) -> list[str]:
    return list(
        AuditEntry.objects.filter(team=cast.team).order_by("id").values_list("action", flat=True)
    )


# ---------- The page ----------


def test_audit_page_is_for_team_admins(cast: Cast) -> None:
    assert_access(cast, "get", audit_url(cast), ADMIN_ONLY_EXPECTED)


def test_audit_page_shows_only_this_team(cast: Cast) -> None:
    record("member.added", team=cast.team, actor=cast.admin, target="mo")
    record("key.connected", team=cast.other_team, actor=cast.outsider, target="other-team-key")
    body = cast.client_for("admin").get(audit_url(cast)).content.decode()
    assert "member.added" in body
    assert "other-team-key" not in body and "key.connected" not in body


def test_audit_filters(cast: Cast) -> None:
    record("budget.team_changed", team=cast.team, actor=cast.admin, target="Acme")
    record("budget.member_changed", team=cast.team, actor=cast.admin, target="mo")
    record("policy.changed", team=cast.team, actor=cast.member, target="acme/video")
    record("member.removed", team=cast.team, actor=cast.admin, target="long-gone")
    AuditEntry.objects.create(
        team=cast.team,
        actor=cast.admin,
        action="member.removed",
        target="ancient",
        created_at=timezone.now() - timedelta(days=40),
    )
    client = cast.client_for("admin")

    def targets(**params: str) -> list[str]:
        response = client.get(audit_url(cast), params)
        return [entry.target for entry in response.context["page"].object_list]

    assert targets(action="policy.changed") == ["acme/video"]
    assert sorted(targets(action="budget.*")) == ["Acme", "mo"]
    assert targets(actor="mo") == ["acme/video"]
    assert targets(q="GONE") == ["long-gone"]
    recent = (timezone.localdate() - timedelta(days=7)).isoformat()
    assert "ancient" not in targets(**{"from": recent})
    long_ago = (timezone.localdate() - timedelta(days=30)).isoformat()
    assert targets(to=long_ago) == ["ancient"]


def test_audit_details_are_escaped(cast: Cast) -> None:
    record("share.created", team=cast.team, actor=cast.admin, target="<b>x</b>", note="<i>y</i>")
    body = cast.client_for("admin").get(audit_url(cast)).content.decode()
    assert "<b>x</b>" not in body and "&lt;b&gt;x&lt;/b&gt;" in body
    assert "<i>y</i>" not in body


def test_audit_page_paginates(cast: Cast) -> None:
    for n in range(55):
        record("member.added", team=cast.team, target=f"person-{n}")
    client = cast.client_for("admin")
    first = client.get(audit_url(cast))
    second = client.get(audit_url(cast), {"page": 2})
    assert len(first.context["page"].object_list) == 50
    assert len(second.context["page"].object_list) == 5
    assert b'rel="next"' in first.content


# ---------- Append-only ----------


def test_entries_cannot_be_changed_or_deleted(cast: Cast) -> None:
    entry = record("member.added", team=cast.team, target="mo")
    entry.target = "someone else"
    with pytest.raises(ValueError, match="append-only"):
        entry.save()
    with pytest.raises(ValueError, match="append-only"):
        entry.delete()
    with pytest.raises(ValueError, match="append-only"):
        AuditEntry.objects.filter(team=cast.team).update(target="rewritten")
    with pytest.raises(ValueError, match="append-only"):
        AuditEntry.objects.filter(team=cast.team).delete()
    assert AuditEntry.objects.get(pk=entry.pk).target == "mo"


def test_deleting_a_team_keeps_its_history(cast: Cast) -> None:
    record("member.added", team=cast.other_team, actor=cast.outsider, target="x")
    cast.other_team.delete()
    assert AuditEntry.objects.filter(action="member.added", team__isnull=True).count() == 1


# ---------- Every listed action writes an entry ----------


def test_members_added_removed_and_role_changes_are_recorded(cast: Cast) -> None:
    admin = cast.client_for("admin")
    invitation = Invitation.objects.create(team=cast.team, role=Role.VIEWER)
    newcomer = make_user("newcomer")
    client = cast.client_for(None)
    client.force_login(newcomer)
    client.post(reverse("runs:invitation_accept", args=[invitation.token]))
    target = Membership.objects.get(user=newcomer)
    admin.post(
        reverse("runs:member_update", args=[cast.team.uuid, target.uuid]), {"role": "member"}
    )
    admin.post(reverse("runs:member_remove", args=[cast.team.uuid, target.uuid]))
    assert actions(cast)[-3:] == ["member.added", "member.role_changed", "member.removed"]
    added = AuditEntry.objects.get(action="member.added", team=cast.team)
    assert added.target == "newcomer" and added.detail["role"] == "viewer"


def test_budget_changes_are_recorded_with_old_and_new(cast: Cast) -> None:
    admin = cast.client_for("admin")
    admin.post(
        reverse("runs:team_budget_save", args=[cast.team.uuid]),
        {"monthly_budget": "50", "confirm_threshold": "2.5"},
    )
    mine = Membership.objects.get(user=cast.member, team=cast.team)
    admin.post(
        reverse("runs:member_budget_save", args=[cast.team.uuid, mine.uuid]),
        {"monthly_budget": "10"},
    )
    team_entry = AuditEntry.objects.get(action="budget.team_changed")
    assert team_entry.actor == cast.admin
    assert team_entry.detail == {
        "old_budget": None,
        "new_budget": "$50.00",
        "old_threshold": None,
        "new_threshold": "$2.50",
    }
    member_entry = AuditEntry.objects.get(action="budget.member_changed")
    assert member_entry.target == "mo" and member_entry.detail["new_budget"] == "$10.00"


def test_policy_changes_are_recorded(cast: Cast) -> None:
    admin = cast.client_for("admin")
    url = reverse("runs:policy_save", args=[cast.team.uuid])
    admin.post(url, {"model_id": "acme/video", "allowed": "1", "min_role": "admin"})
    admin.post(url, {"model_id": "acme/video", "allowed": "0", "min_role": "member"})
    admin.post(reverse("runs:policy_delete", args=[cast.team.uuid]), {"model_id": "acme/video"})
    assert actions(cast) == ["policy.changed", "policy.changed", "policy.removed"]
    second = AuditEntry.objects.filter(action="policy.changed").order_by("id").last()
    assert second is not None
    assert second.detail == {
        "allowed": False,
        "min_role": "member",
        "was": {"allowed": True, "min_role": "admin"},
    }


def test_retention_changes_are_recorded(cast: Cast) -> None:
    admin = cast.client_for("admin")
    admin.post(
        reverse("runs:retention_save", args=[cast.team.uuid]),
        {"retention_days": "30", "retention_delete_runs": "on"},
    )
    entry = AuditEntry.objects.get(action="retention.changed")
    assert entry.target == "30 days"
    assert entry.detail["new_delete_runs"] is True and entry.detail["old_days"] is None


def test_refused_changes_write_nothing(cast: Cast) -> None:
    cast.client_for("member").post(
        reverse("runs:team_budget_save", args=[cast.team.uuid]), {"monthly_budget": "1"}
    )
    cast.client_for("admin").post(
        reverse("runs:team_budget_save", args=[cast.team.uuid]), {"monthly_budget": "-5"}
    )
    assert actions(cast) == []
    cast.team.refresh_from_db()
    assert cast.team.monthly_budget is None
    assert not ModelPolicy.objects.exists()


def test_keys_connected_and_revoked_are_recorded(cast: Cast) -> None:
    connection = pytest.importorskip("runs.connection")
    key, _ = connection.connect_key(
        cast.team,
        label="Production",
        api_url="https://api.runflow.io",
        plain="rf_live_AuditKeyValue00001234",
        actor=cast.admin,
        check=False,
    )
    connection.revoke_key(key, actor=cast.admin)
    entries = AuditEntry.objects.filter(team=cast.team).order_by("id")
    assert [e.action for e in entries] == ["connection.key_connected", "connection.key_revoked"]
    assert all(e.actor == cast.admin and e.target == "Production" for e in entries)
    assert "AuditKeyValue" not in str([e.detail for e in entries])  # masked only


def test_callback_secrets_added_rotated_and_retired_are_recorded(cast: Cast) -> None:
    connection = pytest.importorskip("runs.connection")
    first = connection.paste_secret(cast.team, "whsec_FirstSecretValue0001", actor=cast.admin)
    connection.paste_secret(cast.team, "whsec_SecondSecretValue002", actor=cast.admin)
    connection.retire_secret(first, actor=cast.admin)
    assert actions(cast) == [
        "connection.secret_pasted",
        "connection.secret_rotated",
        "connection.secret_retired",
    ]
    details = str(list(AuditEntry.objects.values_list("target", "detail")))
    assert "FirstSecretValue" not in details and "SecondSecretValue" not in details


def test_share_links_created_and_revoked_are_recorded(cast: Cast) -> None:
    from runs.models import Run, ShareLink

    run = Run.objects.create(team=cast.team, api_url="https://api.runflow.io", model_id="a/b")
    client = cast.client_for("member")
    client.post(
        reverse("runs:share_create", args=[cast.team.uuid]),
        {"runs": [str(run.uuid)], "title": "For the client", "expires": "7"},
    )
    link = ShareLink.objects.get(team=cast.team)
    client.post(reverse("runs:share_revoke", args=[cast.team.uuid, link.token]))
    assert actions(cast) == ["share.created", "share.revoked"]
    created = AuditEntry.objects.get(action="share.created")
    assert created.actor == cast.member and created.target == "For the client"
    assert link.token not in str(created.detail)


def test_runs_and_batches_launched_are_recorded(cast: Cast) -> None:
    launching = pytest.importorskip("runs.launching")
    member = Membership.objects.select_related("team", "user").get(team=cast.team, user=cast.member)
    run = launching.launch_run(member, "acme/image", {"prompt": "a lighthouse"})
    batch = launching.launch_batch(
        member, "acme/image", [{"prompt": "one"}, {"prompt": "two"}], label="Lighthouses"
    )
    launched = AuditEntry.objects.get(action="run.launched")
    assert launched.actor == cast.member and launched.target == str(run.uuid)
    assert launched.detail["model"] == "acme/image"
    entry = AuditEntry.objects.get(action="batch.launched")
    assert entry.target == "Lighthouses" and entry.detail["runs"] == 2
    assert entry.detail["batch"] == str(batch.uuid)


def test_runs_deleted_from_the_console_are_recorded(cast: Cast) -> None:
    from runs.models import Run

    run = Run.objects.create(team=cast.team, api_url="https://api.runflow.io", model_id="a/b")
    cast.client_for("superuser").post(
        reverse("admin:runs_run_delete", args=[run.pk]), {"post": "yes"}
    )
    entry = AuditEntry.objects.get(action="run.deleted")
    assert entry.target == str(run.uuid) and entry.actor == cast.superuser
