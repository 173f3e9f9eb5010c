"""Budgets and retention: a second change records the first one's values as "old", and a
refused form records nothing and keeps the stored values."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.urls import reverse

from runs.models import AuditEntry, Membership, Team
from tests.conftest import Cast

pytestmark = pytest.mark.django_db


def last(action: str) -> AuditEntry:
    entry = AuditEntry.objects.filter(action=action).order_by("id").last()
    assert entry is not None, action
    return entry


def test_team_budget_second_change_records_old_and_new(cast: Cast) -> None:
    admin = cast.client_for("admin")
    url = reverse("runs:team_budget_save", args=[cast.team.uuid])
    admin.post(url, {"monthly_budget": "50", "confirm_threshold": "2.5"})
    answer = admin.post(url, {"monthly_budget": "75.5", "confirm_threshold": ""})
    assert answer.status_code == 302
    entry = last("budget.team_changed")
    assert entry.target == "Acme" and entry.actor == cast.admin
    assert entry.detail == {
        "old_budget": "$50.00",
        "new_budget": "$75.50",
        "old_threshold": "$2.50",
        "new_threshold": None,
    }


def test_member_budget_second_change_records_old_and_new(cast: Cast) -> None:
    admin = cast.client_for("admin")
    mine = Membership.objects.get(user=cast.member, team=cast.team)
    url = reverse("runs:member_budget_save", args=[cast.team.uuid, mine.uuid])
    admin.post(url, {"monthly_budget": "10"})
    admin.post(url, {"monthly_budget": ""})
    entry = last("budget.member_changed")
    assert entry.target == "mo"
    assert entry.detail == {"old_budget": "$10.00", "new_budget": None}


def test_retention_second_change_records_old_and_new(cast: Cast) -> None:
    admin = cast.client_for("admin")
    url = reverse("runs:retention_save", args=[cast.team.uuid])
    admin.post(url, {"retention_days": "30", "retention_delete_runs": "on"})
    admin.post(url, {"retention_days": ""})
    entry = last("retention.changed")
    assert entry.target == "off"
    assert entry.detail == {
        "old_days": 30,
        "new_days": None,
        "old_delete_runs": True,
        "new_delete_runs": False,
    }


def test_refused_forms_record_nothing_and_keep_the_values(cast: Cast) -> None:
    admin = cast.client_for("admin")
    admin.post(
        reverse("runs:team_budget_save", args=[cast.team.uuid]),
        {"monthly_budget": "50", "confirm_threshold": ""},
    )
    before = AuditEntry.objects.count()
    bad = admin.post(
        reverse("runs:team_budget_save", args=[cast.team.uuid]),
        {"monthly_budget": "-3", "confirm_threshold": ""},
    )
    assert bad.status_code == 400 and "Team monthly budget" in bad.content.decode()
    mine = Membership.objects.get(user=cast.member, team=cast.team)
    back = admin.post(
        reverse("runs:member_budget_save", args=[cast.team.uuid, mine.uuid]),
        {"monthly_budget": "lots"},
        follow=True,
    )
    assert "A budget is an amount of at least $0.00" in back.content.decode()
    retention = admin.post(
        reverse("runs:retention_save", args=[cast.team.uuid]), {"retention_days": "-1"}
    )
    assert retention.status_code == 400
    assert AuditEntry.objects.count() == before
    assert Team.objects.get(pk=cast.team.pk).monthly_budget == Decimal("50")
