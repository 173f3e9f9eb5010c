"""A fake Runflow for the connection tests (httpx.MockTransport) and helpers to store keys.

Only the routes the connection page uses; each can be told to fail in a given way. Every
request is recorded with its Authorization header, so tests can prove what was (not) sent.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from runs.connection import keys as connection_keys
from runs.models import CallbackSecret, RunflowKey, Team
from runs.runflow import RunflowClient

API = "https://api.runflow.test"
GOOD_KEY = "rf_live_GoodKey0123456789wxyz"
# A sentinel that must never appear anywhere but inside the running process.
SENTINEL_KEY = "rf_live_SENTINELplaintext7Qx9Zk42"
SENTINEL_SECRET = "whsec_SENTINELsecret5Yb8Lm31"

ME = {
    "id": "a0000000-0000-4000-8000-000000000001",
    "email": "ops@example.test",
    "memberships": [
        {
            "org": {"id": "org-acme", "name": "Acme Studio", "slug": "acme"},
            "role_code": "admin",
            "scopes": ["runs:create", "runs:read", "credit_balance:read"],
        }
    ],
}
BALANCE = {"balance": "12.4500", "low_balance_threshold": "5.00"}
Answer = httpx.Response | Exception | Callable[[httpx.Request], httpx.Response]


def error(status: int, code: str, message: str = "") -> httpx.Response:
    return httpx.Response(status, json={"code": code, "message": message or code, "errors": None})


@dataclass
class FakeRunflow:
    """Routes by "METHOD /path"; ``answers`` overrides a route with a response or exception."""

    answers: dict[str, Answer] = field(default_factory=dict)
    requests: list[httpx.Request] = field(default_factory=list)
    secrets: list[str] = field(default_factory=list)
    me: dict[str, Any] = field(default_factory=lambda: ME)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        route = f"{request.method} {request.url.path}"
        answer = self.answers.get(route)
        if isinstance(answer, Exception):
            raise answer
        if isinstance(answer, httpx.Response):
            return answer
        if answer is not None:
            return answer(request)
        return self.default(request, route)

    def default(self, request: httpx.Request, route: str) -> httpx.Response:
        if route == "GET /v1/health":
            return httpx.Response(200, json={"status": "ok"})
        if route == "GET /v1/auth/me":
            return httpx.Response(200, json=self.me)
        if route == "GET /v1/billing/balance":
            return httpx.Response(200, json=BALANCE)
        if route == "POST /v1/callback-secrets":
            plain = f"whsec_fake{uuid.uuid4().hex}"
            self.secrets.append(plain)
            return httpx.Response(
                201,
                json={"id": str(uuid.uuid4()), "is_current": True, "plain_secret": plain},
            )
        if route.startswith("GET /v1/callback-secrets/"):
            return httpx.Response(200, json={"id": route.rsplit("/", 1)[1], "is_current": True})
        return error(404, "NOT_FOUND")

    @property
    def routes(self) -> list[str]:
        return [f"{r.method} {r.url.path}" for r in self.requests]

    @property
    def keys_sent(self) -> set[str]:
        return {r.headers.get("authorization", "").removeprefix("Bearer ") for r in self.requests}


@pytest.fixture
def fake_runflow(monkeypatch: pytest.MonkeyPatch, settings: Any) -> Iterator[FakeRunflow]:
    """Every client the connection package builds talks to this fake (no network)."""
    settings.RUNFLOW_API_URL = API
    settings.RUNFLOW_API_URLS = ["https://eu.runflow.test"]
    fake = FakeRunflow()
    client = functools.partial(
        RunflowClient, transport=httpx.MockTransport(fake), sleep=lambda seconds: None
    )
    monkeypatch.setattr(connection_keys, "RunflowClient", client)
    yield fake


def store_key(
    team: Team,
    plain: str = GOOD_KEY,
    *,
    label: str = "Main",
    api_url: str = API,
    default: bool = True,
) -> RunflowKey:
    key = RunflowKey(team=team, label=label, api_url=api_url, is_default=default)
    key.set_secret(plain)
    key.save()
    return key


def store_secret(team: Team, plain: str = "whsec_stored0123456789abcdef") -> CallbackSecret:
    secret = CallbackSecret(team=team)
    secret.set_secret(plain)
    secret.save()
    return secret
