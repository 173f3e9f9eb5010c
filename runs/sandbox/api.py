"""The /v1 endpoints other than runs: health, account, catalog, assets, callback secrets;
and the sandbox's own /_sandbox/ switches and ledger."""

from __future__ import annotations

import secrets
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from runs.sandbox.catalog import MODELS, find
from runs.sandbox.faults import FaultError
from runs.sandbox.serialize import asset_json, secret_json
from runs.sandbox.state import Asset, Org, Secret
from runs.sandbox.util import ApiError, iso_z, money, now
from runs.sandbox.validation import error
from runs.sandbox.web import Answer, Request, paginate

if TYPE_CHECKING:
    from runs.sandbox.server import App

UPLOAD_TYPES = (
    "image/png",
    "image/jpeg",
    "image/webp",
    "image/gif",
    "video/mp4",
    "video/webm",
    "audio/wav",
    "audio/mpeg",
    "application/zip",
)
MAX_SECRETS = 10


def _org(request: Request) -> Org:
    assert request.org is not None
    return request.org


def health(app: App, request: Request) -> Answer:
    return Answer.json(200, {"status": "ok", "service": "runflow-sandbox", "time": iso_z(now())})


def me(app: App, request: Request) -> Answer:
    org = _org(request)
    scopes = ["runs:create", "runs:read", "assets:create", "assets:read", "credit_balance:read"]
    return Answer.json(
        200,
        {
            "id": str(uuid.uuid5(uuid.UUID(org.id), "user")),
            "email": f"sandbox-{org.suffix.lower()}@example.com",
            "first_name": "Sandbox",
            "last_name": "User",
            "avatar_url": None,
            "timezone": "UTC",
            "locale_code": "en",
            "email_verified_at": "2026-01-01T00:00:00Z",
            "memberships": [
                {
                    "org": {
                        "id": org.id,
                        "name": org.name,
                        "slug": f"sandbox-{org.suffix.lower()}",
                        "plan_code": "sandbox",
                    },
                    "role_code": "admin" if org.is_admin else "developer",
                    "scopes": [*scopes, "runs:cancel"] if org.is_admin else scopes,
                }
            ],
        },
    )


def balance(app: App, request: Request) -> Answer:
    org = _org(request)
    return Answer.json(
        200,
        {
            "id": str(uuid.uuid5(uuid.UUID(org.id), "balance")),
            "org_id": org.id,
            "balance": money(org.balance),
            "low_balance_threshold": "5.00",
            "low_balance_notified_at": None,
            "currency": "USD",
            "created_at": "2026-01-01T00:00:00Z",
            "updated_at": iso_z(now()),
        },
    )


def list_models(app: App, request: Request) -> Answer:
    models = list(enumerate(MODELS))
    return Answer.json(
        200,
        paginate(request, models, lambda p: p[0], lambda p: p[1].to_json(app.config.public_url)),
    )


def get_model(app: App, request: Request, model_id: str) -> Answer:
    spec = find(model_id)
    if spec is None:
        raise ApiError(404, "MODEL_UNAVAILABLE", f"No model named {model_id!r}.")
    return Answer.json(200, spec.to_json(app.config.public_url))


def model_examples(app: App, request: Request, model_id: str) -> Answer:
    spec = find(model_id)
    if spec is None:
        raise ApiError(404, "MODEL_UNAVAILABLE", f"No model named {model_id!r}.")
    examples = list(enumerate(spec.to_json(app.config.public_url)["examples"]))
    return Answer.json(200, paginate(request, examples, lambda p: p[0], lambda p: p[1]))


# ---- assets: create a session, PUT the bytes, confirm ----


def create_upload(app: App, request: Request) -> Answer:
    org = _org(request)
    body = request.json()
    errors = []
    if not isinstance(body, dict):
        body = {}
        errors.append(error([], "Input should be a valid dictionary", "dict_type"))
    filename, mime, size = body.get("filename"), body.get("mime_type"), body.get("size_bytes")
    if not isinstance(filename, str) or not 1 <= len(filename) <= 500:
        errors.append(
            error(["filename"], "String should have 1 to 500 characters", "string_length")
        )
    if mime not in UPLOAD_TYPES:
        errors.append(error(["mime_type"], f"Supported types: {', '.join(UPLOAD_TYPES)}", "enum"))
    limit = app.config.max_upload_bytes
    if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= limit:
        errors.append(error(["size_bytes"], f"Input should be between 1 and {limit}", "range"))
    if errors:
        raise ApiError(422, "VALIDATION_ERROR", "The upload request is not valid.", errors)
    asset_id = str(uuid.uuid4())
    asset = Asset(
        id=asset_id,
        org_id=org.id,
        filename=str(filename),
        mime_type=str(mime),
        size_bytes=int(str(size)),
        path=Path(app.store.root / f"asset-{asset_id}"),
        created_at=now(),
        upload_expires=0,
    )
    app.store.add_asset(asset)
    return Answer.json(
        201,
        {
            "asset_id": asset.id,
            "upload_url": app.links.upload_url(asset),
            "method": "PUT",
            "headers": {"Content-Type": asset.mime_type},
            "expires_in": 3600,
        },
    )


def _asset(app: App, request: Request, asset_id: str) -> Asset:
    asset = app.store.assets.get(asset_id)
    if asset is None or asset.org_id != _org(request).id:
        raise ApiError(404, "ASSET_NOT_FOUND", "No asset with this id in your organization.")
    return asset


def confirm_upload(app: App, request: Request, asset_id: str) -> Answer:
    asset = _asset(app, request, asset_id)
    request.json(required=False)
    if not asset.uploaded:
        raise ApiError(
            422, "VALIDATION_ERROR", "Nothing was uploaded yet: PUT the file to upload_url first."
        )
    asset.confirmed = True
    return Answer.json(201, asset_json(asset, app.links.asset_url(asset)))


def get_asset(app: App, request: Request, asset_id: str) -> Answer:
    asset = _asset(app, request, asset_id)
    if not asset.confirmed:
        raise ApiError(404, "ASSET_NOT_FOUND", "This upload was never confirmed.")
    return Answer.json(200, asset_json(asset, app.links.asset_url(asset)))


# ---- callback secrets ----


def create_secret(app: App, request: Request) -> Answer:
    org = _org(request)
    body = request.json(required=False) or {}
    label = body.get("label") if isinstance(body, dict) else None
    if label is not None and (not isinstance(label, str) or len(label) > 255):
        raise ApiError(
            422,
            "VALIDATION_ERROR",
            "label is at most 255 characters.",
            [error(["label"], "String should have at most 255 characters", "string_too_long")],
        )
    with app.store.lock:
        if len(org.secrets) >= MAX_SECRETS:
            raise ApiError(
                409, "CONFLICT", f"An organization holds at most {MAX_SECRETS} callback secrets."
            )
        moment = now()
        secret = Secret(
            id=str(uuid.uuid4()),
            org_id=org.id,
            label=label or "",
            plain="whsec_" + secrets.token_urlsafe(32),
            is_current=org.current_secret() is None,
            created_at=moment,
            updated_at=moment,
        )
        org.secrets.append(secret)
    app.store.save_secrets()
    return Answer.json(201, secret_json(secret, plain=True))


def _secret(request: Request, secret_id: str) -> Secret:
    found = next((s for s in _org(request).secrets if s.id == secret_id), None)
    if found is None:
        raise ApiError(404, "NOT_FOUND", "No callback secret with this id in your organization.")
    return found


def list_secrets(app: App, request: Request) -> Answer:
    items = list(enumerate(_org(request).secrets))
    return Answer.json(200, paginate(request, items, lambda p: p[0], lambda p: secret_json(p[1])))


def get_secret(app: App, request: Request, secret_id: str) -> Answer:
    return Answer.json(200, secret_json(_secret(request, secret_id)))


def update_secret(app: App, request: Request, secret_id: str) -> Answer:
    secret = _secret(request, secret_id)
    body = request.json()
    if not isinstance(body, dict):
        raise ApiError(422, "VALIDATION_ERROR", 'Send {"label": ..., "is_current": ...}.')
    label, current = body.get("label"), body.get("is_current")
    if label is not None and (not isinstance(label, str) or len(label) > 255):
        raise ApiError(
            422,
            "VALIDATION_ERROR",
            "label is at most 255 characters.",
            [error(["label"], "String should have at most 255 characters", "string_too_long")],
        )
    if current is not None and not isinstance(current, bool):
        raise ApiError(
            422,
            "VALIDATION_ERROR",
            "is_current must be a boolean.",
            [error(["is_current"], "Input should be a valid boolean", "bool_type")],
        )
    with app.store.lock:
        if label is not None:
            secret.label = label
        if current is True:
            for other in _org(request).secrets:
                other.is_current = other is secret
        elif current is False:
            secret.is_current = False
        secret.updated_at = now()
    app.store.save_secrets()
    return Answer.json(200, secret_json(secret))


def delete_secret(app: App, request: Request, secret_id: str) -> Answer:
    secret = _secret(request, secret_id)
    with app.store.lock:
        _org(request).secrets.remove(secret)
    app.store.save_secrets()
    return Answer(204)


# ---- /_sandbox/: switches and the ledger (no auth; loopback by default) ----


def get_faults(app: App, request: Request) -> Answer:
    return Answer.json(200, app.faults.to_json())


def set_faults(app: App, request: Request) -> Answer:
    try:
        app.faults.update(request.json())
    except FaultError as problem:
        raise ApiError(400, "INVALID_FAULTS", str(problem)) from None
    app.store.event("faults_set", faults=app.faults.to_json())
    return Answer.json(200, app.faults.to_json())


def reset(app: App, request: Request) -> Answer:
    app.faults.reset()
    app.store.event("faults_reset")
    return Answer.json(200, app.faults.to_json())


def ledger(app: App, request: Request) -> Answer:
    with app.store.lock:
        return Answer.json(200, app.store.ledger(request.param("org_id")))
