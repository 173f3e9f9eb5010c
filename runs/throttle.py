"""Login throttling (B8) for the site's sign-in page and the admin's.

Failed sign-ins are counted per client address and per username in the cache (shared by
every web process in production: the database cache). Past the limit, further sign-in POSTs
get 429 until the window passes, whatever the password: a guesser learns nothing, and a
correct password typed during the lockout is refused too (that is the point).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.contrib.auth.signals import user_logged_in, user_login_failed
from django.core.cache import cache
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse
from django.template.loader import render_to_string

WINDOW_SECONDS = 15 * 60
LOGIN_PATHS = ("/accounts/login/", "/admin/login/")


def _keys(request: HttpRequest | None, username: str | None) -> list[str]:
    keys = []
    if request is not None:
        keys.append("login-fail:ip:" + request.META.get("REMOTE_ADDR", "?"))
    if username:
        # Hashed so the cache never holds a list of usernames people tried.
        digest = hashlib.sha256(username.strip().lower().encode()).hexdigest()[:32]
        keys.append("login-fail:user:" + digest)
    return keys


def _limit() -> int:
    return int(settings.LOGIN_ATTEMPTS_PER_WINDOW)


def is_locked(request: HttpRequest, username: str | None) -> bool:
    return any((cache.get(key) or 0) >= _limit() for key in _keys(request, username))


@receiver(user_login_failed)
def _count_failure(
    sender: Any, credentials: dict[str, Any], request: HttpRequest | None = None, **kwargs: Any
) -> None:
    for key in _keys(request, credentials.get("username")):
        cache.add(key, 0, WINDOW_SECONDS)
        try:
            cache.incr(key)
        except ValueError:  # expired between add and incr
            cache.set(key, 1, WINDOW_SECONDS)


@receiver(user_logged_in)
def _forget_failures(sender: Any, request: HttpRequest | None, user: Any, **kwargs: Any) -> None:
    # A success clears the username's counter, not the address's: an attacker who owns one
    # account must not be able to reset the budget for guessing others from the same address.
    cache.delete_many(_keys(None, user.get_username()))


class LoginThrottleMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if (
            request.method == "POST"
            and request.path in LOGIN_PATHS
            and is_locked(request, request.POST.get("username"))
        ):
            body = render_to_string("registration/throttled.html", request=request)
            response = HttpResponse(body, status=429)
            response["Retry-After"] = str(WINDOW_SECONDS)
            return response
        return self.get_response(request)
