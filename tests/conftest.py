"""The fixed cast every test uses, and the access-matrix helper.

The cast: one team ("Acme") with an admin, a member and a viewer; an outsider who is admin
of another team ("Other"); a superuser who belongs to no team.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractUser
from django.test import Client

from runs.models import Membership, Role, Team

User = get_user_model()
PASSWORD = "correct horse battery staple"


@dataclass
class Cast:
    team: Team
    other_team: Team
    admin: AbstractUser
    member: AbstractUser
    viewer: AbstractUser
    outsider: AbstractUser
    superuser: AbstractUser

    def client_for(self, who: str | None) -> Client:
        client = Client()
        if who is not None:
            client.force_login(getattr(self, who))
        return client


@pytest.fixture(autouse=True)
def _fresh_cache() -> Iterator[None]:
    """Every test starts with an empty cache: sign-in throttles, circuit breakers, budget
    counters and the reconcile marker live there, and one test's leftovers must not decide
    another's outcome (the order of tests is not part of what they prove)."""
    from django.core.cache import caches

    for cache in caches.all():
        cache.clear()
    yield


def make_user(username: str, **extra: object) -> AbstractUser:
    return User.objects.create_user(username, f"{username}@example.com", PASSWORD, **extra)


@pytest.fixture
def cast(db: None) -> Cast:
    team = Team.objects.create(name="Acme")
    other = Team.objects.create(name="Other")
    admin = make_user("ada")
    member = make_user("mo")
    viewer = make_user("vi")
    outsider = make_user("otto")
    superuser = User.objects.create_superuser("root", "root@example.com", PASSWORD)
    Membership.objects.create(user=admin, team=team, role=Role.ADMIN)
    Membership.objects.create(user=member, team=team, role=Role.MEMBER)
    Membership.objects.create(user=viewer, team=team, role=Role.VIEWER)
    Membership.objects.create(user=outsider, team=other, role=Role.ADMIN)
    return Cast(team, other, admin, member, viewer, outsider, superuser)


# The access matrix: who gets what for a read or a write of a team object (STYLE.md §10).
READ_EXPECTED = {None: 302, "outsider": 404, "viewer": 200, "member": 200, "admin": 200}
WRITE_EXPECTED = {None: 302, "outsider": 404, "viewer": 403, "member": None, "admin": None}
ADMIN_ONLY_EXPECTED = {None: 302, "outsider": 404, "viewer": 403, "member": 403, "admin": None}


def assert_access(
    cast: Cast,
    method: str,
    url: str | Callable[[], str],
    expected: dict[str | None, int | None],
    data: dict[str, object] | None = None,
    allowed: Iterable[int] = (200, 201, 204, 286, 302, 303),
) -> None:
    """Request ``url`` as each of the cast and check the status code.

    ``None`` as an expected status means "allowed": any success or redirect. Anonymous
    users must be redirected to the login page, not merely get some 302. ``url`` may be a
    callable, called before each request, for writes that consume their object.
    """
    for who, status in expected.items():
        client = cast.client_for(who)
        target = url() if callable(url) else url
        response = getattr(client, method.lower())(target, data or {})
        if status is None:
            assert response.status_code in allowed, (who, method, target, response.status_code)
        else:
            assert response.status_code == status, (who, method, target, response.status_code)
        if who is None and status == 302:
            assert "/accounts/login/" in response["Location"], response["Location"]
