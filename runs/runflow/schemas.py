"""Pydantic models of everything the site reads from or sends to Runflow (RUNFLOW_API.md).

Two rules, because Runflow's public material disagrees with itself:
- lenient where Runflow is inconsistent: unknown fields are ignored, missing optional fields
  are None, odd scalars (a cost that is not a number, a bad timestamp) become None instead of
  failing a whole run, older field names are accepted as aliases, and an unknown status is
  kept as a plain string for the site to judge (``runs.models.normalize_status``);
- strict where it matters: object ids are UUIDs, model ids are safe slash paths, and every
  URL the site may later fetch or put in a page is http(s) only, kept byte for byte (a
  presigned URL breaks if it is re-encoded).

``normalize_output`` (in ``outputs.py``, re-exported here) is the one place where legacy
output shapes (``image_urls`` ...) become the normalized ``outputs[]``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Annotated, Any
from uuid import UUID

from pydantic import (
    AliasChoices,
    BeforeValidator,
    Field,
    field_validator,
    model_validator,
)

from runs.runflow.outputs import NormalizedOutput, OutputField, OutputItem, normalize_output
from runs.runflow.scalars import (
    OUTPUT_TYPES,
    Count,
    HttpURL,
    JSONObject,
    Lenient,
    Money,
    OptionalURL,
    Text,
    When,
    cursor_of,
    is_model_id,
    to_count,
    to_flag,
    to_list,
    to_money,
    to_number,
    to_object,
    to_objects,
    to_text,
)

logger = logging.getLogger(__name__)

__all__ = [
    "AssetInfo",
    "AssetUploadSession",
    "Balance",
    "BatchCallbackOutput",
    "BatchInfo",
    "BatchItemInfo",
    "CallbackAttemptInfo",
    "CallbackDeliveryInfo",
    "CallbackEnvelope",
    "CallbackSecretInfo",
    "ErrorEnvelope",
    "Health",
    "Me",
    "MembershipInfo",
    "ModelInfo",
    "ModelInputInfo",
    "ModelOutputInfo",
    "NodeRunInfo",
    "NormalizedOutput",
    "OrganizationInfo",
    "OutputItem",
    "Page",
    "RunInfo",
    "RunLogInfo",
    "cursor_of",
    "is_model_id",
    "normalize_output",
]

# ---- runs ----


class RunLogInfo(Lenient):
    id: Text = None
    run_id: UUID | None = None
    level_code: Text = Field(None, validation_alias=AliasChoices("level_code", "level"))
    message: Text = None
    timestamp: When = Field(None, validation_alias=AliasChoices("timestamp", "created_at"))
    meta: JSONObject = None


class NodeRunInfo(Lenient):
    id: Text = None
    run_id: UUID | None = None
    node_id: Text = None
    state_code: Text = Field(None, validation_alias=AliasChoices("state_code", "state"))
    input: Any = None
    output: Any = None
    duration_ms: Count = None
    cost: Money = None
    retry_count: Count = None
    error_message: Text = None
    created_at: When = None
    started_at: When = None
    completed_at: When = None


class RunInfo(Lenient):
    """A run as Runflow reports it (create answer, ``GET /v1/runs/{id}``, search results)."""

    id: UUID = Field(validation_alias=AliasChoices("id", "run_id"))
    # A plain string on purpose: the site maps it (``normalize_status``), and a status we do
    # not know yet keeps the run in flight instead of failing to parse (R9).
    status_code: str = Field(validation_alias=AliasChoices("status_code", "status"))
    model_id: Text = None
    input: JSONObject = None
    output: OutputField = None
    metadata: JSONObject = None
    client_ref: Text = None
    callback_url: Text = None
    batch_id: UUID | None = None
    cost: Money = None
    duration_ms: Count = None
    created_at: When = None
    started_at: When = None
    completed_at: When = None
    failure_code: Text = None
    failure_stage_code: Text = Field(
        None, validation_alias=AliasChoices("failure_stage_code", "failure_stage")
    )
    failure_message: Text = None
    nodes_total: Count = None
    nodes_completed: Count = None
    has_logs: bool | None = None
    has_node_runs: bool | None = None
    feedback_is_positive: bool | None = None
    feedback_reason: Text = None
    logs: Annotated[list[RunLogInfo], BeforeValidator(to_list)] = []
    node_runs: Annotated[list[NodeRunInfo], BeforeValidator(to_list)] = []

    @field_validator("status_code", mode="before")
    @classmethod
    def _status_text(cls, value: Any) -> Any:
        return value.strip() if isinstance(value, str) else value


# ---- models (the catalog) ----


class ModelInputInfo(Lenient):
    """One input of a model; launch forms are generated from these."""

    name: str
    display_name: Text = Field(None, validation_alias=AliasChoices("display_name", "label"))
    description: Text = None
    variable_type_code: Text = Field(
        None, validation_alias=AliasChoices("variable_type_code", "type")
    )
    is_required: Annotated[bool, BeforeValidator(to_flag)] = False
    default_value: Any = None
    default_behavior_code: Text = None
    validator_code: Text = None
    validator_attrs: Annotated[dict[str, Any], BeforeValidator(lambda v: to_object(v) or {})] = {}
    sort_order: Annotated[int, BeforeValidator(lambda v: to_count(v) or 0)] = 0
    is_featured: Annotated[bool, BeforeValidator(to_flag)] = False

    # validator_attrs is undocumented; RUNFLOW_API.md decides which keys we read.
    @property
    def choices(self) -> list[Any] | None:
        values = self.validator_attrs.get("choices")
        return list(values) if isinstance(values, list) and values else None

    def limit(self, name: str) -> float | None:
        """``min``, ``max``, ``min_length``, ``max_length`` or ``max_items``, when numeric."""
        return to_number(self.validator_attrs.get(name))


class ModelOutputInfo(Lenient):
    name: Text = None
    display_name: Text = None
    description: Text = None
    variable_type_code: Text = Field(
        None, validation_alias=AliasChoices("variable_type_code", "type")
    )


class ModelInfo(Lenient):
    """A model of the catalog. ``id`` is the slash path used in URLs and ``create_run``.

    Runflow's Model object has a UUID ``id`` plus owner and slug; catalog answers use the
    path. Whichever arrives, ``id`` ends up the path and ``uuid`` keeps Runflow's UUID.
    """

    id: str
    uuid: UUID | None = None
    name: Text = Field(None, validation_alias=AliasChoices("name", "display_name", "title"))
    description: Text = None
    category_code: Text = Field(None, validation_alias=AliasChoices("category_code", "category"))
    status_code: Text = None
    availability_status: Text = None
    price_label: Text = Field(None, validation_alias=AliasChoices("price_label", "price"))
    pricing_note: Text = None
    cover_url: OptionalURL = None
    icon_url: OptionalURL = None
    supports_batch: bool | None = None
    inputs: Annotated[list[ModelInputInfo], BeforeValidator(to_list)] = []
    outputs: Annotated[list[ModelOutputInfo], BeforeValidator(to_list)] = []
    examples: Annotated[list[dict[str, Any]], BeforeValidator(to_objects)] = []

    @model_validator(mode="before")
    @classmethod
    def _path_as_id(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        data = dict(data)
        raw_id = data.get("id")
        path = _model_path(data)
        if _is_uuid(raw_id):
            data.setdefault("uuid", raw_id)
            data.pop("id")  # a UUID is not a path: without owner and slug there is no id
        if path is not None:
            data["id"] = path
        return data

    @field_validator("id")
    @classmethod
    def _safe_path(cls, value: str) -> str:
        if not is_model_id(value):
            raise ValueError("a model id must be a slash path like owner/name")
        return value

    @property
    def output_kind(self) -> str:
        """image, video, audio or other, from the first declared output."""
        for output in self.outputs:
            kind = (output.variable_type_code or "").lower().removesuffix("_list")
            if kind in OUTPUT_TYPES:
                return kind
        return "other"


def _model_path(data: Mapping[str, Any]) -> str | None:
    for key in ("model_id", "path"):
        if isinstance(data.get(key), str) and "/" in data[key]:
            return data[key]
    raw_id, slug = data.get("id"), data.get("slug")
    if isinstance(raw_id, str) and "/" in raw_id:
        return raw_id
    creator = data.get("model_creator")
    owner = data.get("owner") or (creator.get("slug") if isinstance(creator, Mapping) else None)
    if not isinstance(slug, str) or not slug:
        return None
    if isinstance(owner, str) and owner and not slug.startswith(f"{owner}/"):
        return f"{owner}/{slug}"
    return slug


def _is_uuid(value: Any) -> bool:
    try:
        UUID(str(value))
    except ValueError:
        return False
    return True


# ---- lists and errors ----


class Page[T](Lenient):
    """The list envelope ``{"items": [...], "first", "next", "previous"}``."""

    items: list[T] = []
    first: Text = None
    next: Text = Field(None, validation_alias=AliasChoices("next", "next_pq"))
    previous: Text = Field(None, validation_alias=AliasChoices("previous", "prev_pq"))

    @property
    def next_cursor(self) -> str | None:
        return cursor_of(self.next)


class ErrorEnvelope(Lenient):
    """``{"code", "message", "errors"}``; also the SDK's ``{"error": {...}}`` and ``detail``."""

    code: str = ""
    message: str = ""
    errors: list[Any] | None = None

    @model_validator(mode="before")
    @classmethod
    def _other_shapes(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return {"message": to_text(data) or ""}
        data = dict(data)
        if isinstance(data.get("error"), Mapping):
            data = {**data["error"], **{k: v for k, v in data.items() if k != "error"}}
        detail = data.pop("detail", None)
        if isinstance(detail, list) and not data.get("errors"):
            data["errors"] = detail
        elif isinstance(detail, str) and not data.get("message"):
            data["message"] = detail
        data["code"] = to_text(data.get("code")) or ""
        data["message"] = to_text(data.get("message")) or ""
        if not isinstance(data.get("errors"), list):
            data["errors"] = None
        return data

    def field_errors(self) -> dict[str, list[str]]:
        """Per-field messages, keyed by the input field name (``__all__`` when none)."""
        fields: dict[str, list[str]] = {}
        for entry in self.errors or []:
            if isinstance(entry, Mapping):
                name = _field_name(entry.get("loc") or entry.get("field") or entry.get("name"))
                text = to_text(entry.get("msg") or entry.get("message")) or "is not valid"
            else:
                name, text = "__all__", to_text(entry) or "is not valid"
            fields.setdefault(name, []).append(text)
        return fields


def _field_name(loc: Any) -> str:
    if isinstance(loc, str):
        return loc or "__all__"
    if not isinstance(loc, list | tuple):
        return "__all__"
    parts = [str(part) for part in loc]
    # FastAPI-style locations: ["body", "input", "prompt"] names the input field "prompt".
    if parts[:1] == ["body"]:
        parts = parts[1:]
    if parts[:1] == ["input"] and len(parts) > 1:
        parts = parts[1:]
    return ".".join(parts) or "__all__"


# ---- batches ----


class BatchItemInfo(Lenient):
    """One item of a batch: the lean handle of ``GET /v1/batches/{id}`` or the full record."""

    id: UUID | None = None
    batch_id: UUID | None = None
    sequence_index: Count = None
    run_id: UUID | None = None
    status_code: Text = None
    client_ref: Text = None
    input: JSONObject = None
    cost: Money = None
    output: OutputField = None
    error: Any = None
    created_at: When = None
    started_at: When = None
    completed_at: When = None
    run: RunInfo | None = None


class BatchInfo(Lenient):
    id: UUID
    status_code: Text = None
    target_id: Text = None
    items_total: Count = None
    items_succeeded: Count = None
    items_failed: Count = None
    items_cancelled: Count = Field(
        None, validation_alias=AliasChoices("items_cancelled", "items_canceled")
    )
    items: Annotated[list[BatchItemInfo], BeforeValidator(to_list)] = []
    cost: Money = None
    metadata: JSONObject = None
    callback_url: Text = None
    output: JSONObject = None
    duration_ms: Count = None
    failure_code: Text = None
    failure_stage_code: Text = None
    failure_message: Text = None
    created_at: When = None
    started_at: When = None
    completed_at: When = None


# ---- callbacks ----


class BatchCallbackOutput(Lenient):
    """A batch callback's ``output``: ``{items, succeeded, failed, cancelled, total}``."""

    items: Annotated[list[Any], BeforeValidator(to_list)] = []
    succeeded: Count = None
    failed: Count = None
    cancelled: Count = Field(None, validation_alias=AliasChoices("cancelled", "canceled"))
    total: Count = None


class CallbackEnvelope(Lenient):
    """The body Runflow POSTs to a ``callback_url`` when a run or a batch ends."""

    event: str
    run_id: UUID | None = None
    batch_id: UUID | None = None
    status: Text = None
    output: NormalizedOutput | BatchCallbackOutput | None = None
    duration_ms: Count = None
    created_at: When = None
    completed_at: When = None
    metadata: JSONObject = None

    @field_validator("output", mode="before")
    @classmethod
    def _output_by_kind(cls, value: Any, info: Any) -> Any:
        is_batch = info.data.get("batch_id") is not None or str(
            info.data.get("event", "")
        ).startswith("batch.")
        if is_batch:
            return BatchCallbackOutput.model_validate(value) if isinstance(value, Mapping) else None
        return normalize_output(value)

    @model_validator(mode="after")
    def _names_its_object(self) -> CallbackEnvelope:
        if self.run_id is None and self.batch_id is None:
            raise ValueError("a callback must carry run_id or batch_id")
        return self

    @property
    def is_batch(self) -> bool:
        return self.batch_id is not None or self.event.startswith("batch.")


class CallbackAttemptInfo(Lenient):
    attempt_number: Count = None
    status_code: Count = None  # the HTTP status our endpoint answered
    response_time_ms: Count = None
    error_message: Text = None
    created_at: When = None


class CallbackDeliveryInfo(Lenient):
    """One entry of a run's callback history, or the answer to a redelivery."""

    id: Text = None
    run_id: UUID | None = None
    batch_id: UUID | None = None
    callback_url: Text = None
    status_code: Text = None
    failure_reason_code: Text = None
    failure_detail: Text = None
    is_automatic: bool | None = None
    attempt_count: Count = None
    max_attempts: Count = None
    next_attempt_at: When = None
    created_at: When = None
    completed_at: When = None
    payload: JSONObject = None
    attempts: Annotated[list[CallbackAttemptInfo], BeforeValidator(to_list)] = []


class CallbackSecretInfo(Lenient):
    """The organization's callback signing secret. ``plain_secret`` comes only on creation."""

    id: UUID
    label: Text = None
    key_prefix: Text = None
    is_current: bool | None = None
    # Kept out of repr() so it never lands in a log line or an error report.
    plain_secret: str | None = Field(None, repr=False)
    disabled_at: When = None
    last_used_at: When = None
    created_at: When = None
    updated_at: When = None


# ---- account, billing, assets, health ----


class OrganizationInfo(Lenient):
    id: Text = None
    name: Text = None
    slug: Text = None
    plan_code: Text = None


class MembershipInfo(Lenient):
    org: OrganizationInfo | None = Field(None, validation_alias=AliasChoices("org", "organization"))
    role_code: Text = None
    scopes: Annotated[list[str], BeforeValidator(lambda v: [str(s) for s in to_list(v)])] = []


class Me(Lenient):
    id: Text = None
    email: Text = None
    first_name: Text = None
    last_name: Text = None
    memberships: Annotated[list[MembershipInfo], BeforeValidator(to_list)] = []

    @property
    def organization_name(self) -> str:
        for membership in self.memberships:
            if membership.org is not None and membership.org.name:
                return membership.org.name
        return ""


class Balance(Lenient):
    balance: Money = None
    low_balance_threshold: Money = None
    currency: str = "USD"

    @model_validator(mode="before")
    @classmethod
    def _from_cents(cls, data: Any) -> Any:
        # The pricing page shows {"balance_cents": 12450, "currency": "USD"}.
        if isinstance(data, Mapping) and data.get("balance") is None:
            cents = to_money(data.get("balance_cents"))
            if cents is not None:
                return {**data, "balance": cents / 100}
        return data


class AssetUploadSession(Lenient):
    asset_id: UUID = Field(validation_alias=AliasChoices("asset_id", "id"))
    upload_url: HttpURL


class AssetInfo(Lenient):
    id: UUID
    name: Text = None
    url: OptionalURL = None
    thumbnail_url: OptionalURL = None
    mime_type: Text = None
    size_bytes: Count = None
    created_at: When = None

    @property
    def ref(self) -> str:
        """The stable reference Runflow resolves at dispatch."""
        return f"runflow://assets/{self.id}"


class Health(Lenient):
    status: Text = None
    ok: bool | None = None

    @property
    def is_ok(self) -> bool:
        # Observed {"status": "ok"}; the JS SDK types it {ok: true}.
        return self.ok is True or (self.status or "").lower() in ("ok", "healthy", "pass")
