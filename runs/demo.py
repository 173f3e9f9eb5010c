"""The first-start experience: an admin account and a Demo team wired to the sandbox."""

from __future__ import annotations

import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction

from runflow_site.env import GeneratedSecrets
from runs.connection import connect_sandbox
from runs.models import Membership, Role, Team

DEMO_USERNAME = "admin"
DEMO_TEAM = "Demo"


def ensure_demo(*, sandbox: bool) -> tuple[str, str | None]:
    """Create the admin and the Demo team once; return the login to print.

    The password is generated once and kept beside the other generated secrets in ``var/``;
    it is only printed while it still works (once changed, it is not shown again).
    """
    store = GeneratedSecrets(settings.VAR_DIR / "secrets.json")
    password = store.get("DEMO_PASSWORD", secrets.token_urlsafe(12))
    User = get_user_model()
    with transaction.atomic():
        user = User.objects.filter(username=DEMO_USERNAME).first()
        if user is None:
            user = User.objects.create_superuser(DEMO_USERNAME, "", password)
        team = Team.objects.filter(name=DEMO_TEAM, memberships__user=user).first()
        if team is None:
            team = Team.objects.create(name=DEMO_TEAM)
            Membership.objects.create(user=user, team=team, role=Role.ADMIN)
    if sandbox:
        connect_to_sandbox(team)
    return DEMO_USERNAME, password if user.check_password(password) else None


def connect_to_sandbox(team: Team) -> None:
    """Give the Demo team a key and callback secret on the local sandbox (idempotent)."""
    connect_sandbox(team)
