"""Helpers for the launch-area tests: a connected team, catalog models, a fake Runflow.

``FakeRunflow`` is an ``httpx.MockTransport`` handler that behaves like Runflow where the
launch path depends on it: it honours Idempotency-Key (same key, same run), finds runs by
``client_ref``, creates batches, uploads assets and lists models over two pages. Each
route can be scripted to fail the next N times, or to *lose its answer after doing the
work* (a read timeout after the run was created), which is how "exactly one upstream run"
is put to the test. ``runs`` is its ledger of every run it created.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from django.conf import settings

from runs.connection import connect_key, paste_secret
from runs.connection import keys as connection_keys
from runs.models import RunflowKey, RunflowModel, Team
from runs.runflow import RunflowClient
from tests.conftest import Cast

KEY = "rf_live_LaunchTestKey0123456789"
SECRET = "whsec_LaunchTestSecret0123456789"
LOSE_ANSWER = "lose-answer"  # do the work, then time out before answering

TEXT_TO_IMAGE_INPUTS: list[dict[str, Any]] = [
    {
        "name": "prompt",
        "display_name": "Prompt",
        "description": "What to draw.",
        "variable_type_code": "string",
        "is_required": True,
        "validator_attrs": {"min_length": 3, "max_length": 2000},
        "sort_order": 1,
        "is_featured": True,
    },
    {
        "name": "aspect_ratio",
        "variable_type_code": "string",
        "default_value": "1:1",
        "validator_attrs": {"choices": ["1:1", "16:9", "9:16"]},
        "sort_order": 2,
        "is_featured": True,
    },
    {
        "name": "num_images",
        "variable_type_code": "integer",
        "default_value": 1,
        "validator_attrs": {"min": 1, "max": 4},
        "sort_order": 3,
    },
    {
        "name": "guidance",
        "variable_type_code": "number",
        "default_value": 3.5,
        "validator_attrs": {"min": 0, "max": 20},
        "sort_order": 4,
    },
    {"name": "enable_safety", "variable_type_code": "boolean", "default_value": True},
    {"name": "image_url", "variable_type_code": "image", "sort_order": 6},
    {"name": "image_urls", "variable_type_code": "image_urls", "validator_attrs": {"max_items": 3}},
    {"name": "config", "variable_type_code": "json", "sort_order": 8},
]


def api_url() -> str:
    return settings.RUNFLOW_API_URL.rstrip("/")


def connect(team: Team) -> RunflowKey:
    """Give ``team`` a default key and a callback secret, with no network call."""
    key, _ = connect_key(
        team, label="Test key", api_url=api_url(), plain=KEY, make_default=True, check=False
    )
    paste_secret(team, SECRET)
    return key


def make_model(
    model_id: str = "acme/text-to-image",
    inputs: Any = None,
    **fields: Any,
) -> RunflowModel:
    defaults: dict[str, Any] = {
        "display_name": "Acme Text to Image",
        "description": "Draws what you write.",
        "category": "text-to-image",
        "output_kind": "image",
        "price_label": "$0.04 per image",
        "inputs": TEXT_TO_IMAGE_INPUTS if inputs is None else inputs,
    }
    defaults.update(fields)
    return RunflowModel.objects.create(api_url=api_url(), model_id=model_id, **defaults)


@pytest.fixture
def ready(cast: Cast) -> Cast:
    """The cast's team connected, with the text-to-image model (``make_model()``) listed."""
    connect(cast.team)
    make_model()
    return cast


@dataclass
class FakeRunflow:
    runs: list[dict[str, Any]] = field(default_factory=list)
    batches: list[dict[str, Any]] = field(default_factory=list)
    requests: list[httpx.Request] = field(default_factory=list)
    script: dict[str, list[Any]] = field(default_factory=dict)
    models: list[dict[str, Any]] = field(default_factory=list)
    uploads: list[bytes] = field(default_factory=list)
    _by_key: dict[str, dict[str, Any]] = field(default_factory=dict)

    def fail(self, route: str, *answers: Any) -> None:
        """Script the next answers of ``route``: a status code, an exception or LOSE_ANSWER."""
        self.script.setdefault(route, []).extend(answers)

    def count(self, route: str) -> int:
        return sum(1 for request in self.requests if _route(request) == route)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        route = _route(request)
        scripted = self.script.get(route) or []
        answer = scripted.pop(0) if scripted else None
        if isinstance(answer, Exception):
            raise answer
        if isinstance(answer, int):
            return _error(answer)
        if isinstance(answer, httpx.Response):
            return answer
        response = getattr(self, "_" + route.replace(" ", "_"))(request)
        if answer == LOSE_ANSWER:
            raise httpx.ReadTimeout("lost answer", request=request)
        return response

    # ---- runs ----

    def _create_run(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        key = request.headers.get("idempotency-key", "")
        if key in self._by_key:
            return httpx.Response(201, json=self._by_key[key])
        model_id = request.url.path.removeprefix("/v1/models/").removesuffix("/runs")
        run = self._new_run(model_id, body["input"], body.get("client_ref"), body.get("metadata"))
        self._by_key[key] = run
        return httpx.Response(201, json=run)

    def _new_run(
        self, model_id: str, input: Any, client_ref: Any, metadata: Any, batch_id: Any = None
    ) -> dict[str, Any]:
        run = {
            "id": str(uuid.uuid4()),
            "status_code": "queued",
            "model_id": model_id,
            "input": input,
            "client_ref": client_ref,
            "metadata": metadata,
            "batch_id": batch_id,
            "created_at": "2026-05-06T10:00:00.000+00:00",
        }
        self.runs.append(run)
        return run

    def _find_runs(self, request: httpx.Request) -> httpx.Response:
        match = re.search(r"client_ref\.EQ:'([^']*)'", request.url.params.get("q", ""))
        ref = match.group(1) if match else None
        items = [run for run in self.runs if run["client_ref"] == ref]
        return httpx.Response(200, json={"items": items[::-1], "next": None})

    # ---- batches ----

    def _create_batch(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        key = request.headers.get("idempotency-key", "")
        if key in self._by_key:
            return httpx.Response(201, json=self._by_key[key])
        model_id = request.url.path.removeprefix("/v1/models/").removesuffix("/batches")
        batch_id = str(uuid.uuid4())
        items = []
        for index, raw in enumerate(body["input"]):
            item = dict(raw)
            ref = item.pop("client_ref", None)
            run = self._new_run(model_id, item, ref, body.get("metadata"), batch_id)
            items.append(
                {
                    "id": str(uuid.uuid4()),
                    "sequence_index": index,
                    "run_id": run["id"],
                    "status_code": "queued",
                    "client_ref": ref,
                }
            )
        batch = {"id": batch_id, "status_code": "queued", "items_total": len(items), "items": items}
        self.batches.append(batch)
        self._by_key[key] = batch
        return httpx.Response(201, json=batch)

    def _get_batch(self, request: httpx.Request) -> httpx.Response:
        wanted = request.url.path.rsplit("/", 1)[-1]
        for batch in self.batches:
            if batch["id"] == wanted:
                return httpx.Response(200, json=batch)
        return _error(404)

    # ---- assets ----

    def _create_upload(self, request: httpx.Request) -> httpx.Response:
        asset_id = str(uuid.uuid4())
        url = f"https://storage.runflow.test/put/{asset_id}"
        return httpx.Response(201, json={"asset_id": asset_id, "upload_url": url})

    def _put_upload(self, request: httpx.Request) -> httpx.Response:
        assert "authorization" not in request.headers  # our key never goes to storage
        self.uploads.append(request.content)
        return httpx.Response(200)

    def _confirm_upload(self, request: httpx.Request) -> httpx.Response:
        asset_id = request.url.path.split("/")[3]
        url = f"https://assets.runflow.test/{asset_id}.png"
        return httpx.Response(201, json={"id": asset_id, "url": url, "mime_type": "image/png"})

    # ---- catalog ----

    def _list_models(self, request: httpx.Request) -> httpx.Response:
        # Two pages, to prove the sync follows the cursor.
        half = (len(self.models) + 1) // 2
        if request.url.params.get("pq") == "page2":
            return httpx.Response(200, json={"items": self.models[half:], "next": None})
        return httpx.Response(200, json={"items": self.models[:half], "next": "page2"})

    def _get_model(self, request: httpx.Request) -> httpx.Response:
        wanted = request.url.path.removeprefix("/v1/models/")
        for model in self.models:
            if model["id"] == wanted:
                return httpx.Response(200, json=model)
        return _error(404, "MODEL_UNAVAILABLE")


def _route(request: httpx.Request) -> str:
    path, method = request.url.path, request.method
    if request.url.host == "storage.runflow.test":
        return "put upload"
    if method == "POST" and path.endswith("/runs") and path.startswith("/v1/models/"):
        return "create run"
    if method == "POST" and path.endswith("/batches") and path.startswith("/v1/models/"):
        return "create batch"
    if method == "GET" and path == "/v1/runs":
        return "find runs"
    if method == "GET" and path.startswith("/v1/batches/"):
        return "get batch"
    if method == "POST" and path == "/v1/asset-uploads":
        return "create upload"
    if method == "POST" and path.endswith("/confirmations"):
        return "confirm upload"
    if method == "GET" and path == "/v1/models":
        return "list models"
    if method == "GET" and path.startswith("/v1/models/"):
        return "get model"
    raise AssertionError(f"unexpected request {method} {path}")


def _error(status: int, code: str = "") -> httpx.Response:
    codes = {
        402: "INSUFFICIENT_CREDIT",
        404: "RUN_NOT_FOUND",
        422: "VALIDATION_ERROR",
        429: "RATE_LIMITED",
    }
    body: dict[str, Any] = {"code": code or codes.get(status, "ERROR"), "message": "scripted"}
    if status == 422:
        body["message"] = "Input validation failed"
        body["errors"] = [{"loc": ["body", "input", "prompt"], "msg": "prompt is too dull"}]
    return httpx.Response(status, json=body, headers={"Retry-After": "0"} if status == 429 else {})


@pytest.fixture
def fake_runflow(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeRunflow]:
    """Every client the site builds for a team talks to a fresh ``FakeRunflow``."""
    fake = FakeRunflow()
    transport = httpx.MockTransport(fake)

    def client(base_url: str, api_key: str, **options: Any) -> RunflowClient:
        options.setdefault("transport", transport)
        options.setdefault("sleep", lambda seconds: None)
        return RunflowClient(base_url, api_key, **options)

    monkeypatch.setattr(connection_keys, "RunflowClient", client)
    monkeypatch.setattr("runs.tasks.submit.sleep", lambda seconds: None)
    yield fake


def no_sleep() -> Callable[[float], None]:
    return lambda seconds: None
