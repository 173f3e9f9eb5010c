"""Sign-in pages: throttling (B8), session hygiene (B9), no open redirects (B6)."""

from __future__ import annotations

import pytest
from django.core.cache import cache
from django.test import Client

from tests.conftest import PASSWORD, Cast

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_cache() -> None:
    cache.clear()


@pytest.mark.parametrize("path", ["/accounts/login/", "/admin/login/"])
def test_repeated_failures_lock_sign_in_even_with_the_right_password(
    cast: Cast, path: str, settings: object
) -> None:
    settings.LOGIN_ATTEMPTS_PER_WINDOW = 3  # type: ignore[attr-defined]
    client = Client()
    username = "root" if path.startswith("/admin") else "mo"
    for _ in range(3):
        response = client.post(path, {"username": username, "password": "wrong"})
        assert response.status_code == 200
    response = client.post(path, {"username": username, "password": PASSWORD})
    assert response.status_code == 429
    assert "_auth_user_id" not in client.session


def test_lockout_follows_the_username_across_addresses(cast: Cast, settings: object) -> None:
    settings.LOGIN_ATTEMPTS_PER_WINDOW = 2  # type: ignore[attr-defined]
    for address in ("10.0.0.1", "10.0.0.2"):
        Client(REMOTE_ADDR=address).post("/accounts/login/", {"username": "mo", "password": "x"})
    response = Client(REMOTE_ADDR="10.0.0.3").post(
        "/accounts/login/", {"username": "mo", "password": PASSWORD}
    )
    assert response.status_code == 429


def test_sign_in_rotates_the_session_key(cast: Cast) -> None:
    client = Client()
    client.get("/accounts/login/")
    client.session.save()
    before = client.session.session_key
    response = client.post("/accounts/login/", {"username": "mo", "password": PASSWORD})
    assert response.status_code == 302
    assert client.session.session_key != before


def test_sign_out_needs_post_and_ends_the_session(cast: Cast) -> None:
    client = cast.client_for("member")
    assert client.get("/accounts/logout/").status_code == 405
    client.post("/accounts/logout/")
    assert "_auth_user_id" not in client.session


@pytest.mark.parametrize(
    "target",
    [
        "https://evil.example/",
        "//evil.example/",
        "/\\evil.example/",
        "https:evil.example",
        "javascript:alert(1)",
        "\\\\evil.example",
        "/%09/evil.example",
        "http://testserver@evil.example/",
    ],
)
def test_sign_in_never_redirects_off_site(cast: Cast, target: str) -> None:
    response = Client().post(
        "/accounts/login/", {"username": "mo", "password": PASSWORD, "next": target}
    )
    assert response.status_code == 302
    location = response["Location"]
    assert location.startswith("/") and not location.startswith(("//", "/\\")), location
