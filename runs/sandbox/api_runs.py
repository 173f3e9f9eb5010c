"""The /v1 endpoints about runs and batches."""

from __future__ import annotations

import hashlib
import threading
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from runs.sandbox.catalog import find
from runs.sandbox.serialize import (
    batch_callback,
    batch_json,
    delivery_json,
    item_json,
    run_callback,
    run_json,
)
from runs.sandbox.spec import Spec
from runs.sandbox.state import IN_FLIGHT, TERMINAL, Batch, Org, Run
from runs.sandbox.util import ApiError, canonical, now, uuid7
from runs.sandbox.validation import error, validate_input
from runs.sandbox.web import Answer, Request, paginate, parse_filter

if TYPE_CHECKING:
    from runs.sandbox.server import App

MAX_BATCH = 100
_create_lock = threading.Lock()


def _org(request: Request) -> Org:
    assert request.org is not None
    return request.org


def _spec(model_id: str) -> Spec:
    spec = find(model_id)
    if spec is None:
        raise ApiError(404, "MODEL_UNAVAILABLE", f"No model named {model_id!r} is available.")
    if not spec.available:
        raise ApiError(404, "MODEL_UNAVAILABLE", f"{spec.name} is retired and accepts no new runs.")
    return spec


def _run(app: App, request: Request, run_id: str) -> Run:
    run = app.store.runs.get(run_id)
    if run is None or run.org_id != _org(request).id:
        # Another organization's run is indistinguishable from one that does not exist.
        raise ApiError(404, "RUN_NOT_FOUND", "No run with this id in your organization.")
    return run


def _batch(app: App, request: Request, batch_id: str) -> Batch:
    batch = app.store.batches.get(batch_id)
    if batch is None or batch.org_id != _org(request).id:
        raise ApiError(404, "BATCH_NOT_FOUND", "No batch with this id in your organization.")
    return batch


def _common_fields(body: Any) -> tuple[dict[str, Any] | None, str | None, list[dict[str, Any]]]:
    errors = []
    metadata, callback_url = body.get("metadata"), body.get("callback_url")
    if metadata is not None and not isinstance(metadata, dict):
        errors.append(error(["metadata"], "Input should be a valid dictionary", "dict_type"))
    if callback_url is not None:
        parts = urlsplit(callback_url) if isinstance(callback_url, str) else None
        if (
            parts is None
            or parts.scheme not in ("http", "https")
            or not parts.hostname
            or len(callback_url) > 2048
        ):
            errors.append(
                error(
                    ["callback_url"],
                    "Input should be an http(s) URL of at most 2048 characters",
                    "url_parsing",
                )
            )
    return metadata, callback_url, errors


def _client_ref(value: Any, loc: list[str | int]) -> list[dict[str, Any]]:
    if value is None or (isinstance(value, str) and len(value) <= 255):
        return []
    return [error(loc, "String should have at most 255 characters", "string_too_long")]


def _idempotent(
    app: App, request: Request, kind: str, model_id: str, body: Any
) -> tuple[tuple[str, str, str] | None, bytes, Answer | None]:
    """(cache key, body digest, replayed answer or None). 409 when the body differs."""
    key = request.headers.get("Idempotency-Key")
    digest = hashlib.sha256(canonical({"model": model_id, "body": body})).digest()
    if not key:
        return None, digest, None
    if len(key) > 255:
        raise ApiError(422, "VALIDATION_ERROR", "Idempotency-Key is limited to 255 characters.")
    cache_key = (_org(request).id, kind, key)
    cached = app.store.idempotency.get(cache_key)
    if cached is None:
        return cache_key, digest, None
    first_digest, status, answer, _ = cached
    if first_digest != digest:
        raise ApiError(
            409, "CONFLICT", "This Idempotency-Key was already used with a different request body."
        )
    return cache_key, digest, Answer(status, answer, headers={"Idempotent-Replayed": "true"})


def create_run(app: App, request: Request, model_id: str) -> Answer:
    spec = _spec(model_id)
    org = _org(request)
    body = request.json()
    if not isinstance(body, dict) or "input" not in body:
        raise ApiError(
            422,
            "VALIDATION_ERROR",
            'Send {"input": {...}}.',
            [error(["input"], "Field required", "missing")],
        )
    with _create_lock:
        cache_key, digest, replay = _idempotent(app, request, "run", spec.model_id, body)
        if replay is not None:
            return replay
        if org.no_credit:
            raise ApiError(
                402,
                "INSUFFICIENT_CREDIT",
                "Your balance is too low to start this run. Add credit and try again.",
            )
        metadata, callback_url, errors = _common_fields(body)
        errors += _client_ref(body.get("client_ref"), ["client_ref"])
        errors += validate_input(
            spec, body["input"], lambda url: app.links.image_problem(url, org.id)
        )
        if errors:
            raise ApiError(
                422, "VALIDATION_ERROR", f"The input is not valid for {spec.model_id}.", errors
            )
        run = _new_run(
            app, request, org, spec, body["input"], metadata, body.get("client_ref"), callback_url
        )
        answer = Answer.json(201, run_json(run, extra=app.faults.extra_fields))
        if cache_key is not None:
            app.store.idempotency[cache_key] = (digest, 201, answer.body, run.id)
    if app.faults.send_early() and callback_url:
        # The callback reaches the site before the create answer does (W11).
        app.engine.finish_now(run)
        app.sender.deliver(
            org,
            "run",
            run.id,
            callback_url,
            run_callback(run, extra=app.faults.extra_fields),
            early=True,
        )
    else:
        app.engine.start(run)
    return answer


def _new_run(
    app: App,
    request: Request,
    org: Org,
    spec: Spec,
    data: dict[str, Any],
    metadata: Any,
    client_ref: Any,
    callback_url: Any,
    batch: Batch | None = None,
    index: int | None = None,
) -> Run:
    from runs.sandbox.lifecycle import scenario_of

    run = Run(
        id=str(uuid7()),
        seq=app.store.next_seq(),
        org_id=org.id,
        model_id=spec.model_id,
        input=data,
        metadata=metadata,
        client_ref=client_ref,
        callback_url=callback_url,
        idempotency_key=request.headers.get("Idempotency-Key"),
        scenario=scenario_of(request.headers.get("X-Sandbox-Scenario"), data),
        created_at=now(),
        batch_id=batch.id if batch else None,
        sequence_index=index,
    )
    app.engine.prepare(run, spec)
    app.store.add_run(run)
    return run


def create_batch(app: App, request: Request, model_id: str) -> Answer:
    spec = _spec(model_id)
    org = _org(request)
    body = request.json()
    if not isinstance(body, dict):
        raise ApiError(422, "VALIDATION_ERROR", 'Send {"input": [{...}, ...]}.')
    with _create_lock:
        cache_key, digest, replay = _idempotent(app, request, "batch", spec.model_id, body)
        if replay is not None:
            return replay
        if not spec.supports_batch:
            raise ApiError(
                422,
                "VALIDATION_ERROR",
                f"{spec.name} does not accept batches.",
                [error(["input"], "This model is not batch-capable", "value_error")],
            )
        items = body.get("input")
        if not isinstance(items, list) or not 1 <= len(items) <= MAX_BATCH:
            raise ApiError(
                422,
                "VALIDATION_ERROR",
                f"A batch holds 1 to {MAX_BATCH} inputs.",
                [error(["input"], f"List should have 1 to {MAX_BATCH} items", "too_long")],
            )
        if org.no_credit:
            raise ApiError(
                402,
                "INSUFFICIENT_CREDITS",
                "Your balance cannot cover this batch; nothing was created.",
            )
        metadata, callback_url, errors = _common_fields(body)
        cleaned = []
        for index, item in enumerate(items):
            if not isinstance(item, dict):
                errors.append(
                    error(["input", index], "Input should be a valid dictionary", "dict_type")
                )
                continue
            item = dict(item)
            ref = item.pop("client_ref", None)
            errors += _client_ref(ref, ["input", index, "client_ref"])
            for entry in validate_input(
                spec, item, lambda url: app.links.image_problem(url, org.id)
            ):
                entry["loc"] = ["body", "input", index, *entry["loc"][2:]]
                errors.append(entry)
            cleaned.append((item, ref))
        if errors:
            raise ApiError(422, "VALIDATION_ERROR", "Some batch inputs are not valid.", errors)
        batch = Batch(
            id=str(uuid7()),
            seq=app.store.next_seq(),
            org_id=org.id,
            model_id=spec.model_id,
            run_ids=[],
            metadata=metadata,
            callback_url=callback_url,
            idempotency_key=request.headers.get("Idempotency-Key"),
            created_at=now(),
        )
        app.store.add_batch(batch)
        runs = [
            _new_run(app, request, org, spec, data, metadata, ref, None, batch, index)
            for index, (data, ref) in enumerate(cleaned)
        ]
        batch.run_ids = [run.id for run in runs]
        answer = Answer.json(201, batch_json(batch, app.store, extra=app.faults.extra_fields))
        if cache_key is not None:
            app.store.idempotency[cache_key] = (digest, 201, answer.body, batch.id)
    for run in runs:
        app.engine.start(run)
    return answer


def get_run(app: App, request: Request, run_id: str) -> Answer:
    run = _run(app, request, run_id)
    with app.store.lock:
        return Answer.json(200, run_json(run, extra=app.faults.extra_fields))


def list_runs(app: App, request: Request) -> Answer:
    terms = parse_filter(
        request.param("q"), ("client_ref", "status_code", "model_id", "batch_id", "id")
    )
    order = request.param("sort_by") or "created_at:desc"
    if order not in ("created_at:desc", "created_at:asc"):
        raise ApiError(
            422, "VALIDATION_ERROR", "sort_by supports created_at:desc and created_at:asc."
        )
    org = _org(request)
    with app.store.lock:
        runs = [
            r
            for r in app.store.runs.values()
            if r.org_id == org.id
            and all(
                str(getattr(r, "status" if f == "status_code" else f)) == v
                for f, v in terms.items()
            )
        ]
        sign = -1 if order.endswith("desc") else 1
        runs.sort(key=lambda r: sign * r.seq)
        page = paginate(
            request,
            runs,
            lambda r: sign * r.seq,
            lambda r: run_json(r, embed=False, extra=app.faults.extra_fields),
        )
    return Answer.json(200, page)


def statuses(app: App, request: Request) -> Answer:
    names = {
        "queued": "Queued",
        "dispatching": "Dispatching",
        "running": "Running",
        "succeeded": "Succeeded",
        "failed": "Failed",
        "canceled": "Canceled",
        "partial_succeeded": "Partially succeeded",
    }
    items = [
        {"code": code, "name": names[code], "is_terminal": code in TERMINAL, "sort_order": i}
        for i, code in enumerate((*IN_FLIGHT, *TERMINAL))
    ]
    return Answer.json(200, {"items": items, "first": None, "next": None, "previous": None})


def _runs_for(app: App, request: Request, run_id: str) -> list[Run]:
    if run_id == "any":
        org = _org(request)
        return [r for r in app.store.runs.values() if r.org_id == org.id]
    return [_run(app, request, run_id)]


def _entries(
    app: App, request: Request, run_id: str, attribute: str, entry_id: str | None
) -> Answer:
    """A run's log lines or node runs (``run_id`` may be ``any``), as a list or one entry."""
    with app.store.lock:
        runs = _runs_for(app, request, run_id)
        entries = [dict(entry) for run in runs for entry in getattr(run, attribute)]
    if entry_id is None:
        numbered = list(enumerate(entries))
        return Answer.json(200, paginate(request, numbered, lambda p: p[0], lambda p: p[1]))
    found = next((e for e in entries if e["id"] == entry_id), None)
    if found is None:
        raise ApiError(404, "NOT_FOUND", f"No entry with this id in the run's {attribute}.")
    return Answer.json(200, found)


def logs(app: App, request: Request, run_id: str, log_id: str | None = None) -> Answer:
    return _entries(app, request, run_id, "logs", log_id)


def node_runs(app: App, request: Request, run_id: str, node_run_id: str | None = None) -> Answer:
    return _entries(app, request, run_id, "node_runs", node_run_id)


def _history(app: App, delivery_ids: list[str]) -> Answer:
    """Callback delivery history: a plain JSON array, not the list envelope."""
    with app.store.lock:
        deliveries = [app.store.deliveries.get(d) for d in delivery_ids]
        return Answer.json(200, [delivery_json(d) for d in deliveries if d is not None])


def callback_history(app: App, request: Request, run_id: str) -> Answer:
    return _history(app, _run(app, request, run_id).deliveries)


def redeliver(app: App, request: Request, run_id: str) -> Answer:
    run = _run(app, request, run_id)
    if not run.terminal:
        raise ApiError(
            409, "CONFLICT", "The run has not finished yet: there is nothing to deliver."
        )
    if not run.callback_url:
        raise ApiError(422, "VALIDATION_ERROR", "The run has no callback_url.")
    with app.store.lock:
        payload = run_callback(run, extra=app.faults.extra_fields)
    delivery = app.sender.deliver(
        _org(request), "run", run.id, run.callback_url, payload, automatic=False
    )
    with app.store.lock:
        return Answer.json(201, delivery_json(delivery))


def feedback(app: App, request: Request, run_id: str) -> Answer:
    run = _run(app, request, run_id)
    body = request.json()
    if not isinstance(body, dict):
        raise ApiError(
            422, "VALIDATION_ERROR", 'Send {"is_positive": true|false|null, "reason": ...}.'
        )
    positive, reason = body.get("is_positive"), body.get("reason")
    errors = []
    if positive is not None and not isinstance(positive, bool):
        errors.append(error(["is_positive"], "Input should be a valid boolean", "bool_type"))
    if reason is not None and (not isinstance(reason, str) or len(reason) > 1000):
        errors.append(
            error(["reason"], "String should have at most 1000 characters", "string_too_long")
        )
    if errors:
        raise ApiError(422, "VALIDATION_ERROR", "The feedback is not valid.", errors)
    with app.store.lock:
        run.feedback_is_positive, run.feedback_reason = positive, reason
        return Answer.json(200, run_json(run, extra=app.faults.extra_fields))


def admin_cancel(app: App, request: Request, run_id: str) -> Answer:
    if not _org(request).is_admin:
        raise ApiError(403, "PERMISSION_DENIED", "Cancelling a run needs an admin (rf_svc_) key.")
    # An admin key acts for the platform: it may cancel any organization's run.
    run = app.store.runs.get(run_id)
    if run is None:
        raise ApiError(404, "RUN_NOT_FOUND", "No run with this id.")
    body = request.json(required=False) or {}
    reason = body.get("reason") if isinstance(body, dict) else None
    if reason is not None and (not isinstance(reason, str) or not 3 <= len(reason) <= 500):
        raise ApiError(
            422,
            "VALIDATION_ERROR",
            "reason must be 3 to 500 characters.",
            [error(["reason"], "String should have 3 to 500 characters", "string_length")],
        )
    changed = app.engine.cancel(run, reason or "no reason given", by="admin")
    with app.store.lock:
        return Answer.json(201 if changed else 200, run_json(run, extra=app.faults.extra_fields))


def get_batch(app: App, request: Request, batch_id: str) -> Answer:
    batch = _batch(app, request, batch_id)
    with app.store.lock:
        return Answer.json(200, batch_json(batch, app.store, extra=app.faults.extra_fields))


def batch_items(app: App, request: Request, batch_id: str, item_id: str | None = None) -> Answer:
    batch = _batch(app, request, batch_id)
    with app.store.lock:
        runs = [app.store.runs[r] for r in batch.run_ids if r in app.store.runs]
        if item_id is not None:
            for run in runs:
                item = item_json(run, extra=app.faults.extra_fields)
                if item_id in (item["id"], run.id):
                    return Answer.json(200, item)
            raise ApiError(404, "NOT_FOUND", "No batch item with this id.")
        page = paginate(
            request,
            runs,
            lambda r: r.sequence_index or 0,
            lambda r: item_json(r, extra=app.faults.extra_fields),
        )
    return Answer.json(200, page)


def batch_callback_history(app: App, request: Request, batch_id: str) -> Answer:
    return _history(app, _batch(app, request, batch_id).deliveries)


def batch_redeliver(app: App, request: Request, batch_id: str) -> Answer:
    batch = _batch(app, request, batch_id)
    if not batch.terminal or not batch.callback_url:
        raise ApiError(
            422, "VALIDATION_ERROR", "Only a finished batch with a callback_url can be redelivered."
        )
    with app.store.lock:
        payload = batch_callback(batch, app.store, extra=app.faults.extra_fields)
    delivery = app.sender.deliver(
        _org(request), "batch", batch.id, batch.callback_url, payload, automatic=False
    )
    with app.store.lock:
        return Answer.json(201, delivery_json(delivery))
