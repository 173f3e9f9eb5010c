"""The account page (name, email) and the password reset it makes possible."""

from __future__ import annotations

import io
import re
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from tests.conftest import PASSWORD, Cast

pytestmark = pytest.mark.django_db

CONSOLE = "django.core.mail.backends.console.EmailBackend"


def account_url() -> str:
    return reverse("account")


# ---------- the page ----------


def test_account_page_is_in_the_user_menu_and_needs_sign_in(cast: Cast) -> None:
    page = cast.client_for("viewer").get(reverse("runs:team", args=[cast.team.uuid]))
    assert f'href="{account_url()}">Account</a>' in page.content.decode()
    anonymous = cast.client_for(None).get(account_url())
    assert anonymous.status_code == 302 and anonymous["Location"].startswith("/accounts/login/")


def test_name_changes_without_the_password(cast: Cast) -> None:
    client = cast.client_for("viewer")
    page = client.get(account_url()).content.decode()
    assert 'name="first_name"' in page and 'name="email"' in page
    assert reverse("password_change") in page
    response = client.post(
        account_url(), {"first_name": "Vi", "last_name": "Ewer", "email": "vi@example.com"}
    )
    assert response.status_code == 302
    cast.viewer.refresh_from_db()
    assert (cast.viewer.first_name, cast.viewer.last_name) == ("Vi", "Ewer")


def test_changing_the_email_needs_the_current_password(cast: Cast) -> None:
    client = cast.client_for("viewer")
    fields = {"first_name": "", "last_name": "", "email": "new@example.com"}
    refused = client.post(account_url(), {**fields, "current_password": "wrong"})
    assert refused.status_code == 200
    assert refused.context["form"].errors["current_password"]
    cast.viewer.refresh_from_db()
    assert cast.viewer.email == "vi@example.com"
    saved = client.post(account_url(), {**fields, "current_password": PASSWORD})
    assert saved.status_code == 302
    cast.viewer.refresh_from_db()
    assert cast.viewer.email == "new@example.com"


def test_an_address_of_another_account_is_refused(cast: Cast) -> None:
    response = cast.client_for("viewer").post(
        account_url(),
        {
            "first_name": "",
            "last_name": "",
            "email": "Mo@Example.com",
            "current_password": PASSWORD,
        },
    )
    assert "Another account uses this address" in response.content.decode()
    cast.viewer.refresh_from_db()
    assert cast.viewer.email == "vi@example.com"


def test_an_account_without_email_is_told_why_it_matters(cast: Cast) -> None:
    get_user_model().objects.filter(pk=cast.viewer.pk).update(email="")
    page = cast.client_for("viewer").get(account_url()).content.decode()
    assert "nowhere to send a reset link" in page


# ---------- the reset mail, as the console prints it ----------


@pytest.fixture
def console(settings: Any) -> io.StringIO:
    """Mail goes to the console backend (the embedded default), written into a buffer."""
    stream = io.StringIO()
    settings.MAILERS = {"default": {"BACKEND": CONSOLE, "OPTIONS": {"stream": stream}}}
    return stream


@pytest.mark.parametrize("username", ["dora", "zoë"])
def test_the_printed_reset_link_works_as_printed(
    cast: Cast, console: io.StringIO, username: str
) -> None:
    """No quoted-printable "=" breaks: the link is copied straight from the console."""
    user = get_user_model().objects.create_user(username, "dora@example.com", PASSWORD)
    client = cast.client_for(None)
    client.post(reverse("password_reset"), {"email": user.email})
    printed = console.getvalue()
    assert "Content-Transfer-Encoding: quoted-printable" not in printed
    expected = "7bit" if username.isascii() else "8bit"
    assert f"Content-Transfer-Encoding: {expected}" in printed
    assert f"Your username: {username}" in printed
    link = re.search(r"^http://testserver(/accounts/password/reset/\S+)$", printed, re.M)
    assert link is not None, printed
    form = client.get(link.group(1), follow=True)
    assert form.status_code == 200 and b"new_password1" in form.content
    done = client.post(
        form.redirect_chain[-1][0],
        {"new_password1": "a new long passphrase", "new_password2": "a new long passphrase"},
    )
    assert done.status_code == 302
    user.refresh_from_db()
    assert user.check_password("a new long passphrase")
