"""Error pages (400, 403, 404, 500, CSRF) in the site's look; quiet 403 logs; the favicon."""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings
from django.test import Client, RequestFactory
from django.urls import reverse
from django.utils import timezone
from django.views.defaults import server_error

from runs.models import ShareLink
from tests.conftest import Cast
from tests.test_security_headers import active_markup, assert_strict_csp
from tests.workspace_factories import make_run

pytestmark = pytest.mark.django_db


def assert_site_page(response: Any, status: int, *, csp_header: bool = True) -> str:
    """The page has the status, the site's stylesheet, and nothing the CSP would block."""
    assert response.status_code == status
    html = response.content.decode()
    assert "/static/css/site.css" in html, html[:300]
    assert not active_markup(html)
    assert not re.search(r"<style\b|\sstyle\s*=", html, flags=re.I)
    if csp_header:
        assert_strict_csp(response.get("Content-Security-Policy", ""), str(status))
    return html


def test_a_revoked_share_link_explains_itself_to_an_outside_visitor(cast: Cast) -> None:
    link = ShareLink.objects.create(team=cast.team, title="look")
    link.runs.add(make_run(cast.team, cast.member))
    url = reverse("runs:shared", args=[link.token])
    assert Client().get(url).status_code == 200
    ShareLink.objects.filter(pk=link.pk).update(revoked_at=timezone.now())
    html = assert_site_page(Client().get(url), 404)
    assert "a share link stops working when it expires or when its team takes it back" in html
    assert f'href="{reverse("login")}">Sign in</a>' in html
    assert "Not Found" not in html


def test_a_signed_in_person_is_offered_the_way_home(cast: Cast) -> None:
    html = assert_site_page(cast.client_for("member").get("/no-such-page/"), 404)
    assert f'href="{reverse("runs:home")}">Go to your team</a>' in html
    assert "Sign out" in html  # the normal top bar, with the user menu


def test_403_says_why_in_the_site_look(cast: Cast) -> None:
    url = reverse("runs:team_rename", args=[cast.team.uuid])
    html = assert_site_page(cast.client_for("viewer").post(url, {"name": "X"}), 403)
    assert "This needs the admin role in this team." in html
    assert f'href="{reverse("runs:home")}">Go to your team</a>' in html


def test_400_for_a_form_with_too_many_fields(cast: Cast) -> None:
    fields = {f"f{n}": "x" for n in range(settings.DATA_UPLOAD_MAX_NUMBER_FIELDS + 1)}
    answer = cast.client_for("member").post(reverse("runs:team_create"), fields)
    html = assert_site_page(answer, 400)
    assert "could not be understood" in html


def test_400_for_a_host_the_site_does_not_serve() -> None:
    # Refused by CommonMiddleware, before the CSP middleware has a say: no header, but a
    # page with nothing in it the policy would have to block anyway.
    answer = Client(HTTP_HOST="evil.example").get(reverse("login"))
    assert "could not be understood" in assert_site_page(answer, 400, csp_header=False)


def test_a_form_without_its_csrf_token_gets_the_site_page() -> None:
    client = Client(enforce_csrf_checks=True)
    html = assert_site_page(client.post(reverse("login"), {"username": "x"}), 403)
    assert "Reload the page and send the form again" in html


def test_500_renders_without_context_processors_or_the_database(
    django_assert_num_queries: Any,
) -> None:
    # Exactly what Django does on an unhandled error: the template, an empty context.
    with django_assert_num_queries(0):
        response = server_error(RequestFactory().get("/t/whatever/"))
    html = assert_site_page(response, 500, csp_header=False)  # no middleware ran
    assert "Something went wrong on our side" in html
    assert 'href="/">Go to the home page</a>' in html


# ---------- logs ----------


@pytest.fixture
def console_log() -> Iterator[io.StringIO]:
    """What the site's own console handler (settings.LOGGING) writes, filters included."""
    handler = next(h for h in logging.getLogger().handlers if h.get_name() == "console")
    assert isinstance(handler, logging.StreamHandler)
    buffer = io.StringIO()
    previous = handler.setStream(buffer)
    try:
        yield buffer
    finally:
        handler.setStream(previous)


def test_a_403_logs_one_line_without_a_traceback(cast: Cast, console_log: io.StringIO) -> None:
    url = reverse("runs:team_rename", args=[cast.team.uuid])
    assert cast.client_for("viewer").post(url, {"name": "X"}).status_code == 403
    lines = console_log.getvalue().splitlines()
    assert [line for line in lines if "Forbidden (Permission denied)" in line], lines
    assert "Traceback" not in console_log.getvalue()
    assert len(lines) == 1, lines


def test_other_errors_keep_their_traceback(console_log: io.StringIO) -> None:
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logging.getLogger("django.request").exception("Internal Server Error: /x/")
    assert "Traceback" in console_log.getvalue() and "RuntimeError: boom" in console_log.getvalue()


# ---------- favicon ----------


def test_favicon_ico_is_served_for_the_admin_and_old_browsers() -> None:
    client = Client()
    answer = client.get("/favicon.ico")
    assert answer.status_code == 302
    icon = client.get(answer["Location"])
    assert icon.status_code == 200
    data = icon.getvalue()
    assert data[:4] == b"\x00\x00\x01\x00"  # an ICO header
    assert int.from_bytes(data[4:6], "little") >= 2  # several sizes (16 and 32 at least)


def test_pages_name_the_svg_icon_and_it_is_served(cast: Cast) -> None:
    page = Client().get(reverse("login")).content.decode()
    link = re.search(r'<link rel="icon" href="([^"]+)" type="image/svg\+xml">', page)
    assert link is not None
    icon = Client().get(link.group(1))
    assert icon.status_code == 200
    data = icon.getvalue()
    assert data.startswith(b"<svg")
