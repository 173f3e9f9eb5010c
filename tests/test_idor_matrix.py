"""The IDOR matrix, generated from the URLconf (T1, T5, B7).

Every URL pattern of the site is found by walking ``get_resolver()``. Each one must be
covered here, or this file fails (``test_every_pattern_has_a_case``):

- a **team pattern** (its first argument is the team uuid) gets the full matrix: for GET and
  for POST, the owner team's admin is not answered 404 (nor 500); the admin of another team
  gets 404 both with the owner's team uuid and with their own team's uuid in front of the
  owner's object (never a 200 or a 403 that would reveal it exists); an anonymous visitor
  is sent to the login page. A view that does not accept the method at all may answer 405
  to everyone alike: that says nothing about the object;
- every other argument of a team pattern must have a factory in ``FACTORIES`` (a run uuid,
  an output uuid, a share token...), so a new kind of object id cannot slip through;
- **public patterns** (sign-in and password pages, share links, the callback hook,
  invitations) are listed by name in ``PUBLIC`` with their own explicit expectations;
- the admin's patterns are checked as a group: nobody but staff gets past the admin login
  (the scoping of staff to their own teams is ``tests/test_admin.py``'s).
"""

from __future__ import annotations

import io
import json
import re
import uuid
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from django.contrib.auth.tokens import default_token_generator
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode

from runs.models import (
    Batch,
    Invitation,
    Membership,
    Preset,
    RunflowModel,
    ShareLink,
    Team,
)
from tests.conftest import Cast
from tests.workspace_factories import add_output, make_run, media  # noqa: F401 (fixture)

MODEL = "acme/text-to-image"
# Connection-refused at once: owner POSTs that reach "Runflow" (key checks, catalog sync)
# fail fast instead of waiting on a network this machine does not have.
DEAD_API = "http://127.0.0.1:9"


# ---- the URLconf, walked ----


@dataclass(frozen=True)
class Route:
    name: str  # namespaced, e.g. "runs:run"
    route: str  # the full pattern, e.g. "t/<uuid:team>/runs/<uuid:run>/"
    kwargs: tuple[str, ...]  # converter names in order
    callback: Any = field(default=None, compare=False, hash=False, repr=False)

    @property
    def is_admin(self) -> bool:
        return self.route.startswith("admin/")

    @property
    def is_hook(self) -> bool:
        """Runflow's callback URL (with and without its trailing slash)."""
        from runs.views.hooks import runflow_callback

        return self.callback is runflow_callback

    @property
    def is_team(self) -> bool:
        return bool(self.kwargs) and self.kwargs[0] == "team" and not self.is_hook

    def fill(self, values: dict[str, str]) -> str:
        """The URL with ``values`` in place of each ``<converter:name>``."""

        def replace(match: re.Match[str]) -> str:
            return values[match.group("name")]

        return "/" + re.sub(r"<(?:(?P<conv>[^>:]+):)?(?P<name>[^>]+)>", replace, self.route)


def walk(patterns: list[Any], prefix: str = "", namespace: str = "") -> Iterator[Route]:
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            space = namespace
            if pattern.namespace:
                space = f"{namespace}:{pattern.namespace}" if namespace else pattern.namespace
            yield from walk(pattern.url_patterns, prefix + str(pattern.pattern), space)
        elif isinstance(pattern, URLPattern):
            name = pattern.name or ""
            full = f"{namespace}:{name}" if namespace and name else name
            route = prefix + str(pattern.pattern)
            names = tuple(re.findall(r"<(?:[^>:]+:)?([^>]+)>", route))
            yield Route(full, route, names, pattern.callback)


ROUTES = sorted(set(walk(get_resolver().url_patterns)), key=lambda r: r.route)
TEAM_ROUTES = [r for r in ROUTES if r.is_team]
ADMIN_ROUTES = [r for r in ROUTES if r.is_admin]

# Patterns that need no object id and only a signed-in user (or nothing at all).
SIGNED_IN_NO_ID = {
    "runs:home",
    "runs:team_create",
    "account",
    "password_change",
    "password_change_done",
}
# Patterns anyone may open; each has its own test below.
PUBLIC = {
    "login": "sign in",
    "logout": "sign out (POST)",
    "password_reset": "ask for a reset mail",
    "password_reset_done": "reset mail sent",
    "password_reset_confirm": "the link in the reset mail",
    "password_reset_complete": "reset done",
    "runs:hook": "Runflow's callbacks, authenticated by signature",
    "runs:invitation_accept": "an invitation link, usable before signing up",
    "runs:shared": "a share link",
    "runs:shared_file": "a file of a share link",
    "runs:shared_thumb": "a thumbnail of a share link",
    "favicon": "the site icon, asked for by browsers on every page",
}


# ---- factories: one per URL argument name ----


@dataclass
class World:
    """The owner team's objects, and the other team's, built once per test."""

    cast: Cast
    made: dict[str, Any]  # one object of each kind, all in cast.team
    # Arguments whose value is an object owned by a team (as opposed to catalog data).
    team_owned: frozenset[str]


def _zip_job(team: Team) -> str:
    job = str(uuid.uuid4())
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("a.txt", "hello")
    base = f"zips/{team.uuid}/{job}"
    default_storage.save(f"{base}.zip", ContentFile(buffer.getvalue()))
    manifest = {"state": "ready", "created_at": "2099-01-01T00:00:00+00:00", "outputs": []}
    default_storage.save(f"{base}.json", ContentFile(json.dumps(manifest).encode()))
    return job


def _cover(cast: Cast) -> str:
    digest = "0123456789abcdef"
    default_storage.save(f"covers/{digest}.jpg", ContentFile(b"\xff\xd8\xff\xe0 not really"))
    RunflowModel.objects.filter(model_id=MODEL).update(cover_file=f"covers/{digest}.jpg")
    return digest


# Each factory returns the value for one URL argument, naming an object of ``cast.team``.
# ``route_name`` disambiguates the one argument name two kinds of object share: ``token``.
Factory = Callable[[Cast, dict[str, Any], str], str]
FACTORIES: dict[str, tuple[Factory, bool]] = {
    # name: (factory, owned by a team)
    "team": (lambda cast, made, name: str(cast.team.uuid), True),
    "run": (lambda cast, made, name: str(made["run"].uuid), True),
    "output": (lambda cast, made, name: str(made["output"].uuid), True),
    "member": (lambda cast, made, name: str(made["membership"].uuid), True),
    "invitation": (lambda cast, made, name: str(made["invitation"].uuid), True),
    "key": (lambda cast, made, name: str(made["key"].uuid), True),
    "secret": (lambda cast, made, name: str(made["secret"].uuid), True),
    "preset": (lambda cast, made, name: str(made["preset"].uuid), True),
    "batch": (lambda cast, made, name: str(made["batch"].uuid), True),
    "job": (lambda cast, made, name: made["job"], True),
    "token": (
        lambda cast, made, name: (
            made["invitation"].token if name == "runs:invitation_accept" else made["share"].token
        ),
        True,
    ),
    # Catalog data is per Runflow endpoint, not per team: only the team in front matters.
    "model_id": (lambda cast, made, name: MODEL, False),
    "digest": (lambda cast, made, name: made["digest"], False),
    "fmt": (lambda cast, made, name: "csv", False),
    # Password reset links (public).
    "uidb64": (lambda cast, made, name: urlsafe_base64_encode(force_bytes(cast.admin.pk)), False),
}


def build(cast: Cast) -> dict[str, Any]:
    """One object of every kind, all in ``cast.team``."""
    from runs.connection import connect_key, paste_secret

    RunflowModel.objects.create(
        api_url=DEAD_API,
        model_id=MODEL,
        display_name="Acme Text to Image",
        output_kind="image",
        inputs=[{"name": "prompt", "variable_type_code": "string", "is_required": True}],
    )
    key, _ = connect_key(
        cast.team,
        label="Main",
        api_url=DEAD_API,
        plain="rf_live_" + "k" * 24,
        check=False,
        make_default=True,
    )
    run = make_run(cast.team, cast.member, prompt="a lighthouse")
    output = add_output(run, thumbnail=True)
    share = ShareLink.objects.create(team=cast.team, title="look")
    share.runs.add(run)
    return {
        "run": run,
        "output": output,
        "membership": Membership.objects.get(team=cast.team, user=cast.member),
        "invitation": Invitation.objects.create(team=cast.team, note="for someone"),
        "key": key,
        "secret": paste_secret(cast.team, "whsec_" + "s" * 32),
        "preset": Preset.objects.create(
            team=cast.team, model_id=MODEL, name="Fav", input={"prompt": "x"}
        ),
        "batch": Batch.objects.create(team=cast.team, api_url=DEAD_API, model_id=MODEL),
        "job": _zip_job(cast.team),
        "share": share,
        "digest": _cover(cast),
    }


@pytest.fixture
def world(
    cast: Cast,
    media: Any,  # noqa: F811
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> World:
    from runs.runflow.client import RunflowClient

    settings.RUNFLOW_API_URL = DEAD_API
    # No backoff between the client's retries against the dead endpoint.
    defaults = dict(RunflowClient.__init__.__kwdefaults__ or {})
    monkeypatch.setattr(RunflowClient.__init__, "__kwdefaults__", {**defaults, "sleep": _no_sleep})
    settings.SANDBOX_ENABLED = False
    owned = frozenset(name for name, (_, is_owned) in FACTORIES.items() if is_owned)
    return World(cast, build(cast), owned)


def _no_sleep(seconds: float) -> None:
    pass


def url_for(world: World, route: Route, **override: str) -> str:
    values = {name: FACTORIES[name][0](world.cast, world.made, route.name) for name in route.kwargs}
    values.update(override)
    return route.fill(values)


def request(client: Client, method: str, url: str) -> Any:
    return client.get(url) if method == "GET" else client.post(url, {})


# ---- the registry is complete ----


def test_every_pattern_has_a_case() -> None:
    """A new URL pattern fails here until it is given a factory or a public expectation."""
    missing: list[str] = []
    for route in ROUTES:
        if route.is_admin:
            continue
        if route.is_team:
            unknown = [name for name in route.kwargs if name not in FACTORIES]
            if unknown:
                missing.append(f"{route.route} ({route.name}): no factory for {unknown}")
        elif route.name in PUBLIC or route.is_hook or route.name in SIGNED_IN_NO_ID:
            assert not route.kwargs or route.name not in SIGNED_IN_NO_ID, route.route
        else:
            missing.append(f"{route.route} ({route.name or 'unnamed'}): no case")
    assert not missing, "Patterns with no IDOR case:\n" + "\n".join(missing)
    assert len(TEAM_ROUTES) > 40  # the walk really found the app's routes


def test_public_names_all_exist() -> None:
    """An entry for a pattern that is gone is a stale expectation."""
    names = {route.name for route in ROUTES}
    assert set(PUBLIC) <= names
    assert names >= SIGNED_IN_NO_ID


# ---- team patterns: owner, other team, anonymous, by GET and POST ----


def _ids(route: Route) -> str:
    return route.route


@pytest.mark.django_db
@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize("route", TEAM_ROUTES, ids=_ids)
def test_team_pattern(world: World, route: Route, method: str) -> None:
    cast = world.cast
    url = url_for(world, route)
    owner, outsider, anonymous = Client(), Client(), Client()
    owner.force_login(cast.admin)
    outsider.force_login(cast.outsider)
    owned = [name for name in route.kwargs[1:] if name in world.team_owned]

    # Strangers first: the owner's POST may consume the object.
    as_anonymous = request(anonymous, method, url)
    as_outsider = request(outsider, method, url)
    # The outsider's own team in front of the owner's object.
    as_outsider_own_team = (
        request(outsider, method, url_for(world, route, team=str(cast.other_team.uuid)))
        if owned
        else None
    )
    as_owner = request(owner, method, url)

    assert as_owner.status_code not in (404, 500), (
        f"{method} {route.route}: the owner team's admin got {as_owner.status_code}"
    )
    # A view that refuses the method refuses it to everyone, before looking anything up:
    # that 405 says nothing about the object.
    method_refused = as_owner.status_code == 405
    if method_refused:
        assert as_anonymous.status_code in (302, 405), (route.route, method)
    else:
        assert as_anonymous.status_code == 302, (route.route, method, as_anonymous.status_code)
    if as_anonymous.status_code == 302:
        assert as_anonymous["Location"].startswith("/accounts/login/"), as_anonymous["Location"]
    expected = 405 if method_refused else 404
    assert as_outsider.status_code == expected, (
        f"{method} {route.route}: another team's admin got {as_outsider.status_code}"
    )
    if as_outsider_own_team is not None:
        assert as_outsider_own_team.status_code == expected, (
            f"{method} {route.route} with the outsider's own team in front: "
            f"{as_outsider_own_team.status_code}"
        )


# ---- public patterns ----


@pytest.mark.django_db
def test_sign_in_and_reset_pages_are_open_to_anyone(world: World) -> None:
    anonymous = Client()
    for name in ("login", "password_reset", "password_reset_done", "password_reset_complete"):
        route = next(r for r in ROUTES if r.name == name)
        assert anonymous.get(route.fill({})).status_code == 200, name
    # A reset link with a valid token asks for the new password; a forged one says so.
    route = next(r for r in ROUTES if r.name == "password_reset_confirm")
    uid = urlsafe_base64_encode(force_bytes(world.cast.admin.pk))
    good = default_token_generator.make_token(world.cast.admin)
    answer = anonymous.get(route.fill({"uidb64": uid, "token": good}), follow=True)
    assert answer.status_code == 200 and b"new_password1" in answer.content
    answer = anonymous.get(route.fill({"uidb64": uid, "token": "forged-token"}))
    assert answer.status_code == 200 and b"new_password1" not in answer.content
    # Sign out is POST only, and a GET signs nobody out.
    logout = next(r for r in ROUTES if r.name == "logout")
    member = Client()
    member.force_login(world.cast.member)
    assert member.get(logout.fill({})).status_code == 405
    assert member.get("/")["Location"].startswith("/t/")  # still signed in


@pytest.mark.django_db
def test_signed_in_pages_without_ids_send_anonymous_to_login(world: World) -> None:
    for name in SIGNED_IN_NO_ID:
        route = next(r for r in ROUTES if r.name == name)
        answer = Client().get(route.fill({}))
        assert answer.status_code == 302, name
        assert answer["Location"].startswith("/accounts/login/"), name


@pytest.mark.django_db
def test_callback_hook_is_post_only_and_refuses_the_unsigned(world: World) -> None:
    hooks = [r for r in ROUTES if r.is_hook]
    assert hooks
    for route in hooks:
        url = route.fill({"team": str(world.cast.team.uuid)})
        for who in (None, "outsider", "admin"):
            client = world.cast.client_for(who)
            assert client.get(url).status_code == 405
            answer = client.post(url, b"{}", content_type="application/json")
            assert answer.status_code == 401, (who, url)
        missing = route.fill({"team": str(uuid.uuid4())})
        assert Client().post(missing, b"{}", content_type="application/json").status_code == 404
    assert world.cast.team.deliveries.count() == 0


@pytest.mark.django_db
def test_share_links_show_only_what_was_shared(world: World) -> None:
    made = world.made
    cast = world.cast
    by_name = {r.name: r for r in ROUTES}
    token = made["share"].token
    shared_output = str(made["output"].uuid)
    assert Client().get(by_name["runs:shared"].fill({"token": token})).status_code == 200
    assert Client().post(by_name["runs:shared"].fill({"token": token})).status_code == 405
    assert Client().get(by_name["runs:shared"].fill({"token": "x" * 43})).status_code == 404
    for name in ("runs:shared_file", "runs:shared_thumb"):
        url = by_name[name].fill({"token": token, "output": shared_output})
        assert Client().get(url).status_code == 200, name
    # An output of the same team that was not shared, and one of another team: 404 both.
    unshared = add_output(make_run(cast.team, cast.member, prompt="private"))
    other = add_output(make_run(cast.other_team, cast.outsider, prompt="theirs"))
    for output in (unshared, other):
        for name in ("runs:shared_file", "runs:shared_thumb"):
            url = by_name[name].fill({"token": token, "output": str(output.uuid)})
            assert Client().get(url).status_code == 404, (name, output.run.prompt)
    # A revoked link shows nothing any more.
    from django.utils import timezone

    ShareLink.objects.filter(pk=made["share"].pk).update(revoked_at=timezone.now())
    assert Client().get(by_name["runs:shared"].fill({"token": token})).status_code == 404
    url = by_name["runs:shared_file"].fill({"token": token, "output": shared_output})
    assert Client().get(url).status_code == 404


@pytest.mark.django_db
def test_invitation_links_work_before_sign_up_and_only_with_the_token(world: World) -> None:
    made = world.made
    route = next(r for r in ROUTES if r.name == "runs:invitation_accept")
    good = route.fill({"token": made["invitation"].token})
    assert Client().get(good).status_code == 200
    assert Client().get(route.fill({"token": "no-such-invitation"})).status_code == 404
    # An empty sign-up form joins nobody.
    assert Client().post(good, {}).status_code == 200
    assert not Membership.objects.filter(team=world.cast.team, user__username="").exists()


@pytest.mark.django_db
def test_favicon_is_open_to_anyone_and_reveals_nothing(world: World) -> None:
    route = next(r for r in ROUTES if r.name == "favicon")
    for who in (None, "outsider", "admin"):
        answer = world.cast.client_for(who).get(route.fill({}))
        assert answer.status_code == 302 and answer["Location"].endswith("/favicon.ico"), who
        assert answer["Location"].startswith("/static/"), answer["Location"]


# ---- the admin ----


ADMIN_OPEN = {"admin:login", "admin:logout"}
# Wrapped by ``admin_view`` directly, which leaves no marker on the view: checked by request.
ADMIN_WRAPPED_DIRECTLY = {"admin:auth_user_password_change"}
ADMIN_CATCH_ALL = "admin/(?P<url>.*)$"


def test_every_admin_pattern_goes_through_the_admin_gate() -> None:
    """Every admin route is wrapped by ``AdminSite.admin_view`` (which sends anyone but
    active staff to the admin login), so sampling a few routes per model below covers all."""
    for route in ADMIN_ROUTES:
        view = route.callback
        gated = hasattr(view, "admin_site") or hasattr(view, "model_admin")
        known = route.name in ADMIN_OPEN | ADMIN_WRAPPED_DIRECTLY or route.route == ADMIN_CATCH_ALL
        assert gated or known, f"{route.route} ({route.name}) is not behind the admin gate"


@pytest.mark.django_db
def test_admin_patterns_send_non_staff_to_the_admin_login(world: World) -> None:
    run = world.made["run"]
    # Per model: the list, and one team object's change page, GET and POST.
    sampled = [
        r
        for r in ADMIN_ROUTES
        if r.route.endswith("/<path:object_id>/change/")
        or (r.name.endswith("_changelist") and r.route.startswith("admin/runs/"))
        or r.name in ADMIN_WRAPPED_DIRECTLY
    ]
    for route in sampled:
        url = route.fill({name: str(run.pk) for name in route.kwargs})
        for who, method in ((None, "GET"), ("outsider", "GET"), ("outsider", "POST")):
            answer = request(world.cast.client_for(who), method, url)
            assert answer.status_code == 302, (who, method, url, answer.status_code)
            assert "/admin/login/" in answer["Location"], (who, url, answer["Location"])
    assert len(sampled) > 20
