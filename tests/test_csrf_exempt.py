"""CSRF and "no state change on GET" over every view of the URLconf (W4, B7).

- The set of CSRF-exempt views is exactly the callback hook: its callers are not browsers
  and its HMAC signature authenticates them. Any other exempt view fails here.
- Every write is refused without a CSRF token (a real browser form carries one).
- A GET on any URL, by the owner team's admin, changes nothing in the database.
"""

from __future__ import annotations

import hashlib

import pytest
from django.apps import apps
from django.conf import settings
from django.test import Client

from tests.test_idor_matrix import (  # noqa: F401 (world is a fixture)
    ADMIN_ROUTES,
    ROUTES,
    TEAM_ROUTES,
    World,
    url_for,
    world,
)
from tests.workspace_factories import media  # noqa: F401 (fixture)

# Tables that a GET may touch without changing the site's state: sign-in sessions and the
# cache (the database cache in production; throttling and cycle markers live there).
NOT_STATE = {"sessions.session"}


def test_the_csrf_middleware_is_on() -> None:
    assert "django.middleware.csrf.CsrfViewMiddleware" in settings.MIDDLEWARE


def test_only_the_callback_hook_is_csrf_exempt() -> None:
    exempt = {route.route for route in ROUTES if getattr(route.callback, "csrf_exempt", False)}
    hooks = {route.route for route in ROUTES if route.is_hook}
    assert hooks and exempt == hooks


def fingerprint() -> dict[str, str]:
    """A digest of every row of every table the site owns, per model."""
    digests: dict[str, str] = {}
    for model in apps.get_models():
        label = model._meta.label_lower
        if label in NOT_STATE or not model._meta.managed:
            continue
        rows = model._base_manager.order_by("pk").values_list()
        digests[label] = hashlib.sha256(repr(list(rows)).encode()).hexdigest()
    return digests


def changed(before: dict[str, str], after: dict[str, str]) -> list[str]:
    return sorted(label for label in after if before.get(label) != after[label])


@pytest.mark.django_db
def test_a_get_on_any_url_changes_nothing(world: World) -> None:  # noqa: F811
    owner = Client()
    owner.force_login(world.cast.admin)
    anonymous = Client()
    public = [r for r in ROUTES if not r.is_team and not r.is_admin and not r.kwargs]
    before = fingerprint()
    touched: dict[str, list[str]] = {}
    for route in [*TEAM_ROUTES, *public]:
        url = url_for(world, route) if route.kwargs else route.fill({})
        for client in (owner, anonymous):
            client.get(url)
            after = fingerprint()
            if changed(before, after):
                touched[f"GET {url}"] = changed(before, after)
                before = after
    # The share link and the invitation, opened by someone who is not signed in.
    for name in ("runs:shared", "runs:invitation_accept"):
        route = next(r for r in ROUTES if r.name == name)
        anonymous.get(url_for(world, route))
    assert not changed(before, fingerprint()) and not touched, touched


@pytest.mark.django_db
def test_every_write_needs_a_csrf_token(world: World) -> None:  # noqa: F811
    """A POST without the token is refused with 403 on every URL (the hook excepted), and
    changes nothing: a cross-site form cannot act on a signed-in person's behalf."""
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(world.cast.admin)
    before = fingerprint()
    accepted: list[str] = []
    routes = [r for r in ROUTES if not r.is_hook and not r.is_admin]
    for route in routes:
        url = url_for(world, route) if route.kwargs else route.fill({})
        answer = strict.post(url, {"name": "changed"})
        # 405: the view takes no POST at all, which is as good.
        if answer.status_code not in (403, 405):
            accepted.append(f"POST {url}: {answer.status_code}")
    assert not accepted, accepted
    assert not changed(before, fingerprint())


@pytest.mark.django_db
def test_admin_writes_need_a_csrf_token(world: World) -> None:  # noqa: F811
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(world.cast.superuser)
    run = world.made["run"]
    before = fingerprint()
    for route in ADMIN_ROUTES:
        if not route.route.endswith(("/change/", "/delete/", "/add/")):
            continue
        url = route.fill({name: str(run.pk) for name in route.kwargs})
        answer = strict.post(url, {"action": "delete_selected", "post": "yes"})
        assert answer.status_code == 403, (url, answer.status_code)
    assert not changed(before, fingerprint())
