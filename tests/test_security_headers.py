"""Security headers on every kind of page (B2, B3, B5).

One request per page type: the run history, a run page and its htmx partial, the gallery,
team settings, the admin, the login page, a share link, an archived media file, a
thumbnail, a file of a share link, a 404 and a 405. Each must carry nosniff, frame denial,
the referrer policy and the strict Content-Security-Policy that Django's own middleware
builds from ``SECURE_CSP`` (no 'unsafe-inline', no 'unsafe-eval', nothing but 'self').
``check --deploy`` with production settings is in tests/test_foundation.py.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from tests.conftest import Cast
from tests.fixtures.hostile.seed import MARKER, corpus_size, load, seed_team
from tests.test_idor_matrix import World, world  # noqa: F401 (fixture)
from tests.workspace_factories import media  # noqa: F401 (fixture)


def pages(site: World) -> dict[str, tuple[str | None, str, dict[str, Any]]]:
    """Page type -> (who, URL, extra request headers)."""
    cast, made = site.cast, site.made
    team = cast.team.uuid
    run = made["run"]
    output = made["output"]
    token = made["share"].token
    return {
        "run history": ("member", reverse("runs:team", args=[team]), {}),
        "run page": ("member", reverse("runs:run", args=[team, run.uuid]), {}),
        "run page partial": (
            "member",
            reverse("runs:run", args=[team, run.uuid]),
            {"HTTP_HX_REQUEST": "true"},
        ),
        "gallery": ("member", reverse("runs:gallery", args=[team]), {}),
        "team settings": ("admin", reverse("runs:team_settings", args=[team]), {}),
        "connection": ("admin", reverse("runs:connection", args=[team]), {}),
        "usage": ("admin", reverse("runs:usage", args=[team]), {}),
        "admin changelist": ("superuser", "/admin/runs/run/", {}),
        "admin login": (None, "/admin/login/", {}),
        "login": (None, reverse("login"), {}),
        "share link": (None, reverse("runs:shared", args=[token]), {}),
        "share link file": (None, reverse("runs:shared_file", args=[token, output.uuid]), {}),
        "media file": ("member", reverse("runs:output_file", args=[team, output.uuid]), {}),
        "thumbnail": ("member", reverse("runs:output_thumb", args=[team, output.uuid]), {}),
        "not found": ("member", f"/t/{team}/no-such-page/", {}),
        "not allowed": ("member", reverse("runs:star", args=[team, run.uuid]), {}),
    }


EXPECTED_STATUS = {"not found": 404, "not allowed": 405}


def csp_directives(header: str) -> dict[str, list[str]]:
    directives: dict[str, list[str]] = {}
    for part in header.split(";"):
        words = part.split()
        if words:
            directives[words[0]] = words[1:]
    return directives


def assert_strict_csp(header: str, label: str) -> None:
    assert header, f"{label}: no Content-Security-Policy"
    lowered = header.lower()
    for loose in ("unsafe-inline", "unsafe-eval", "unsafe-hashes", "strict-dynamic", "*"):
        assert loose not in lowered.replace("*.", ""), f"{label}: {loose} in {header}"
    directives = csp_directives(header)
    if directives.get("default-src") == ["'none'"]:
        # A stored file gets a tighter policy still: nothing loads, and it runs sandboxed
        # even if a browser were talked into rendering it as a document (B5).
        assert "sandbox" in directives, (label, header)
        for sources in directives.values():
            assert set(sources) <= {"'self'", "'none'"}, (label, header)
        return
    assert directives.get("default-src") == ["'self'"], (label, header)
    assert directives.get("script-src") == ["'self'"], (label, header)
    assert directives.get("object-src") == ["'none'"], (label, header)
    assert directives.get("frame-ancestors") == ["'none'"], (label, header)
    assert directives.get("base-uri") == ["'none'"], (label, header)
    for directive, sources in directives.items():
        for source in sources:
            # Only ourselves, and data: images (inline SVG charts); never another origin.
            assert source in ("'self'", "'none'") or (
                directive == "img-src" and source == "data:"
            ), (
                label,
                directive,
                source,
            )


@pytest.mark.django_db
def test_every_page_type_carries_the_security_headers(world: World) -> None:  # noqa: F811
    seen = 0
    for label, (who, url, extra) in pages(world).items():
        answer = world.cast.client_for(who).get(url, **extra)
        assert answer.status_code == EXPECTED_STATUS.get(label, 200), (label, answer.status_code)
        assert answer["X-Content-Type-Options"] == "nosniff", label
        assert answer["X-Frame-Options"] == "DENY", label
        assert answer["Referrer-Policy"] == "same-origin", label
        assert answer["Cross-Origin-Opener-Policy"] == "same-origin", label
        assert_strict_csp(answer.get("Content-Security-Policy", ""), label)
        assert "Content-Security-Policy-Report-Only" not in answer, label
        seen += 1
    assert seen == len(pages(world))


@pytest.mark.django_db
def test_html_pages_have_no_inline_script_style_or_handlers(world: World) -> None:  # noqa: F811
    """What the CSP would block must not be there to begin with (B3)."""
    for label, (who, url, extra) in pages(world).items():
        answer = world.cast.client_for(who).get(url, **extra)
        if not answer["Content-Type"].startswith("text/html"):
            continue
        html = answer.content.decode()
        for tag in re.findall(r"<script\b[^>]*>", html, flags=re.I):
            assert "src=" in tag, (label, tag)
        assert not re.search(r"\sstyle\s*=", html, flags=re.I), label
        assert not re.search(r"\son[a-z]+\s*=", html, flags=re.I), label
        assert not re.search(r"\shx-on", html, flags=re.I), label
        assert "javascript:" not in html.lower(), label


@pytest.mark.django_db
def test_media_is_served_inertly(world: World) -> None:  # noqa: F811
    """Archived files: never HTML or SVG inline; an attachment when the type is not safe."""
    cast, made = world.cast, world.made
    answer = cast.client_for("member").get(
        reverse("runs:output_file", args=[cast.team.uuid, made["output"].uuid])
    )
    assert answer["Content-Type"] in ("image/png", "image/jpeg", "image/webp", "image/gif")
    assert "private" in answer.get("Cache-Control", "") or "no-store" in answer.get(
        "Cache-Control", ""
    )


@pytest.mark.django_db
def test_hsts_is_sent_over_https(world: World, settings: Any) -> None:  # noqa: F811
    settings.SECURE_HSTS_SECONDS = 31536000
    settings.SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    answer = Client().get(reverse("login"), secure=True)
    assert answer["Strict-Transport-Security"].startswith("max-age=31536000")
    # And never over plain HTTP, where it would mean nothing (and be ignored).
    assert "Strict-Transport-Security" not in Client().get(reverse("login"))


@pytest.mark.django_db
def test_session_and_csrf_cookies_are_http_only_same_site(world: World) -> None:  # noqa: F811
    client = Client()
    answer = client.post(
        reverse("login"), {"username": world.cast.member.username, "password": "wrong"}
    )
    assert answer.status_code == 200
    from tests.conftest import PASSWORD

    answer = client.post(
        reverse("login"), {"username": world.cast.member.username, "password": PASSWORD}
    )
    assert answer.status_code == 302
    session = answer.cookies["sessionid"]
    assert session["httponly"] and session["samesite"] == "Lax"


# ---- the hostile corpus, rendered server side ----

ACTIVE_TAGS = {"script", "iframe", "object", "embed", "base", "frame", "frameset", "applet"}
URL_ATTRIBUTES = {"href", "src", "action", "formaction", "data", "poster", "srcset", "xlink:href"}
BAD_SCHEMES = ("javascript:", "data:text", "data:image/svg", "vbscript:", "file:")


class ActiveMarkup(HTMLParser):
    """Collects every piece of markup that could run something."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.problems: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = {name for name, _ in attrs}
        if tag in ACTIVE_TAGS and not (tag == "script" and "src" in names):
            self.problems.append(f"<{tag}> {attrs}")
        if tag == "meta" and any(n == "http-equiv" for n in names):
            self.problems.append(f"<meta http-equiv> {attrs}")
        for name, value in attrs:
            value = (value or "").strip()
            compact = "".join(value.split()).lower()
            if name.startswith("on") or name.startswith("hx-on") or name == "srcdoc":
                self.problems.append(f"<{tag} {name}={value!r}>")
            if name == "style":
                self.problems.append(f"<{tag} style={value!r}>")
            if name in URL_ATTRIBUTES and compact.startswith(BAD_SCHEMES):
                self.problems.append(f"<{tag} {name}={value!r}>")
            if name.startswith("hx-") and MARKER in value:
                self.problems.append(f"<{tag} {name}={value!r}> carries a payload")


def active_markup(html: str) -> list[str]:
    parser = ActiveMarkup()
    parser.feed(html)
    return parser.problems


@pytest.mark.django_db
def test_hostile_corpus_renders_as_inert_text(cast: Cast, media: Any) -> None:  # noqa: F811
    """Every page showing the hostile team's runs: no payload becomes markup (B4)."""
    seeded = seed_team(username=cast.admin.username)
    from runs.models import Membership, Role, Team

    team = Team.objects.get(uuid=seeded["team"])
    Membership.objects.create(user=cast.superuser, team=team, role=Role.VIEWER)
    admin, root = cast.client_for("admin"), cast.client_for("superuser")
    tid = seeded["team"]
    urls = [
        (admin, f"/t/{tid}/"),
        (admin, f"/t/{tid}/?q=%3Cscript%3Ewindow.__pwned%3D1%3C%2Fscript%3E"),
        (admin, f"/t/{tid}/runs/rows/"),
        (admin, f"/t/{tid}/gallery/"),
        (admin, f"/t/{tid}/compare/?" + "&".join(f"runs={r}" for r in seeded["runs"][:4])),
        (admin, f"/t/{tid}/usage/"),
        (admin, f"/t/{tid}/audit/"),
        (admin, f"/t/{tid}/presets/"),
        (admin, f"/t/{tid}/batches/{seeded['batch']}/"),
        (admin, f"/t/{tid}/shares/"),
        (admin, f"/t/{tid}/settings/"),
        (Client(), f"/s/{seeded['share']}/"),
        *[(admin, f"/t/{tid}/runs/{run}/") for run in seeded["runs"]],
        *[
            (root, f"/admin/runs/{model}/")
            for model in ("run", "output", "delivery", "runlog", "noderun", "auditentry", "batch")
        ],
        *[(root, f"/admin/runs/run/{pk}/change/") for pk in seeded["run_pks"]],
    ]
    problems: dict[str, list[str]] = {}
    for client, url in urls:
        answer = client.get(url)
        assert answer.status_code in (200, 286), (url, answer.status_code)
        found = active_markup(answer.content.decode())
        if found:
            problems[url] = found[:5]
    assert not problems, problems
    sizes = corpus_size()
    assert sizes["prompts"] >= 40 and sizes["output_urls"] >= 15


def test_the_checker_catches_the_corpus_when_it_is_not_escaped() -> None:
    """The inertness check above is only worth something if raw payloads trip it."""
    raw = [line for line in load("prompts") if "<" in line and "hx-" not in line]
    caught = [line for line in raw if active_markup(line)]
    assert len(caught) >= 0.8 * len(raw), set(raw) - set(caught)
    assert active_markup('<div hx-on::load="window.__pwned=1">')
    assert active_markup('<a href=" javascript:window.__pwned=1">')
    assert not active_markup("&lt;script&gt;window.__pwned=1&lt;/script&gt;")


# ---- no open redirect anywhere (B6) ----


def _local(location: str) -> bool:
    """A redirect that stays on this site: a path, never scheme- or host-relative."""
    squeezed = "".join(location.split())
    return squeezed.startswith("/") and not squeezed.startswith(("//", "/\\"))


@pytest.mark.django_db
def test_no_url_redirects_off_site(world: World) -> None:  # noqa: F811
    """Every URL, GET and POST, as the owner and as a stranger, with each hostile target in
    ``next`` (query and form) and in the Referer: any redirect stays on the site."""
    from tests.test_idor_matrix import ROUTES, url_for

    targets = load("redirects")
    owner = world.cast.client_for("admin")
    stranger = Client()
    checked = 0
    routes = [r for r in ROUTES if not r.is_admin and not r.is_hook]
    for number, route in enumerate(routes):
        owner.force_login(world.cast.admin)  # sign-out is one of the routes
        url = url_for(world, route) if route.kwargs else route.fill({})
        # Every target on every route would be slow: each route gets three of them in turn.
        for target in (targets[(number + k) % len(targets)] for k in range(3)):
            for client in (stranger, owner):
                for answer in (
                    client.get(url, {"next": target}, HTTP_REFERER=target),
                    client.post(f"{url}?next={target}", {"next": target}, HTTP_REFERER=target),
                ):
                    location = answer.get("Location") or answer.get("HX-Redirect") or ""
                    if location:
                        assert _local(location), (route.route, target, location)
                    checked += 1
    assert checked > 500
    assert len(targets) >= 20
