"""The JSON shapes the sandbox answers with and sends, as the contract describes them."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from runs.sandbox.state import Asset, Attempt, Batch, Delivery, Run, Secret, Store
from runs.sandbox.util import iso_offset, iso_z, money

EVENTS = {
    "succeeded": "run.completed",
    "failed": "run.failed",
    # The status is spelled the US way, the event name the UK way: both literals are stable.
    "canceled": "run.cancelled",
    "partial_succeeded": "run.partial_succeeded",
}
BATCH_EVENTS = {
    "succeeded": "batch.succeeded",
    "failed": "batch.failed",
    "canceled": "batch.cancelled",
    "partial_succeeded": "batch.partial_succeeded",
}

# Added to answers when the "extra_fields" fault is on: a lenient client must ignore them.
EXTRA_FIELDS: dict[str, Any] = {
    "x_sandbox_unknown": {"nested": [1, "two", None]},
    "links": {"self": "https://api.runflow.io/v1/unknown"},
    "jurisdiction_code": "eu",
}


def run_json(run: Run, *, embed: bool = True, extra: bool = False) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": run.id,
        "flow_id": None,
        "model_id": run.model_id,
        "target_type": "model",
        "org_id": run.org_id,
        "status_code": run.status,
        "source_code": "api",
        "input": run.input,
        "output": run.output if run.output is not None else ({} if not run.terminal else None),
        "metadata": run.metadata,
        "client_ref": run.client_ref,
        "callback_url": run.callback_url,
        "batch_id": run.batch_id,
        "cost": money(run.cost),
        "duration_ms": run.duration_ms(),
        "created_at": iso_z(run.created_at),
        "started_at": iso_z(run.started_at),
        "completed_at": iso_z(run.completed_at),
        "failure_code": run.failure_code,
        "failure_stage_code": run.failure_stage_code,
        "failure_message": run.failure_message,
        "nodes_total": run.nodes_total,
        "nodes_completed": run.nodes_completed,
        "has_logs": bool(run.logs),
        "has_node_runs": bool(run.node_runs),
        "feedback_is_positive": run.feedback_is_positive,
        "feedback_reason": run.feedback_reason,
    }
    if embed:
        data["logs"] = [dict(entry) for entry in run.logs]
        data["node_runs"] = [dict(entry) for entry in run.node_runs]
    if extra:
        data.update(EXTRA_FIELDS)
    return data


def batch_json(batch: Batch, store: Store, *, extra: bool = False) -> dict[str, Any]:
    runs = [store.runs[rid] for rid in batch.run_ids if rid in store.runs]
    counts = _counts(runs)
    cost = sum((r.cost for r in runs if r.cost is not None), Decimal(0))
    data: dict[str, Any] = {
        "id": batch.id,
        "org_id": batch.org_id,
        "target_type_code": "model",
        "target_type": "model",
        "target_id": batch.model_id,
        "status_code": batch.status,
        "source_code": "api",
        "items_total": len(batch.run_ids),
        "items_succeeded": counts["succeeded"],
        "items_failed": counts["failed"],
        "items_cancelled": counts["cancelled"],
        "input": [r.input for r in runs],
        "cost": money(cost) if batch.terminal else None,
        "output": batch_output(batch, store) if batch.terminal else None,
        "metadata": batch.metadata,
        "callback_url": batch.callback_url,
        "duration_ms": batch.duration_ms(),
        "failure_code": None,
        "failure_message": None,
        "failure_stage_code": None,
        "created_at": iso_z(batch.created_at),
        "started_at": iso_z(batch.started_at),
        "completed_at": iso_z(batch.completed_at),
        "items": [
            {
                "id": _item_id(r),
                "sequence_index": r.sequence_index,
                "run_id": r.id,
                "status_code": r.status,
                "client_ref": r.client_ref,
            }
            for r in runs
        ],
    }
    if extra:
        data.update(EXTRA_FIELDS)
    return data


def item_json(run: Run, *, extra: bool = False) -> dict[str, Any]:
    failed = run.status == "failed"
    return {
        "id": _item_id(run),
        "batch_id": run.batch_id,
        "sequence_index": run.sequence_index,
        "run_id": run.id,
        "created_at": iso_z(run.created_at),
        "client_ref": run.client_ref,
        "status_code": run.status,
        "input": run.input,
        "cost": money(run.cost),
        "output": run.output,
        "error": {"code": run.failure_code, "message": run.failure_message} if failed else None,
        "started_at": iso_z(run.started_at),
        "completed_at": iso_z(run.completed_at),
        "run": run_json(run, embed=False, extra=extra),
    }


def _item_id(run: Run) -> str:
    # Stable and distinct from the run id, without keeping a second table.
    return run.id[:-12] + format(int(run.id[-12:], 16) ^ 0xA5A5A5A5A5A5, "012x")


def _counts(runs: list[Run]) -> dict[str, int]:
    return {
        "succeeded": sum(r.status in ("succeeded", "partial_succeeded") for r in runs),
        "failed": sum(r.status == "failed" for r in runs),
        "cancelled": sum(r.status == "canceled" for r in runs),
    }


def batch_output(batch: Batch, store: Store) -> dict[str, Any]:
    runs = [store.runs[rid] for rid in batch.run_ids if rid in store.runs]
    return {
        "items": [
            {
                "id": _item_id(r),
                "sequence_index": r.sequence_index,
                "run_id": r.id,
                "status": r.status,
                "client_ref": r.client_ref,
                "output": r.output,
            }
            for r in runs
        ],
        **_counts(runs),
        "total": len(batch.run_ids),
    }


def run_callback(run: Run, *, extra: bool = False) -> dict[str, Any]:
    """The callback body for a terminal run, built from its current state."""
    if run.status == "failed":
        output: Any = {
            "error": {
                "code": run.failure_code,
                "message": run.failure_message,
                "stage_code": run.failure_stage_code,
            }
        }
    elif run.status == "canceled":
        output = None
    else:
        output = run.output
    data = {
        "event": EVENTS[run.status],
        "run_id": run.id,
        "status": run.status,
        "output": output,
        "duration_ms": run.duration_ms(),
        "created_at": iso_offset(run.created_at),
        "completed_at": iso_offset(run.completed_at),
        "metadata": run.metadata,
    }
    if extra:
        data.update(EXTRA_FIELDS)
    return data


def batch_callback(batch: Batch, store: Store, *, extra: bool = False) -> dict[str, Any]:
    data: dict[str, Any] = {
        "event": BATCH_EVENTS[batch.status],
        "batch_id": batch.id,
        "status": batch.status,
        "output": batch_output(batch, store),
        "duration_ms": batch.duration_ms(),
        "created_at": iso_offset(batch.created_at),
        "completed_at": iso_offset(batch.completed_at),
        "metadata": batch.metadata,
    }
    if extra:
        data.update(EXTRA_FIELDS)
    return data


def attempt_json(delivery: Delivery, attempt: Attempt) -> dict[str, Any]:
    return {
        "id": attempt.id,
        "delivery_id": delivery.id,
        "attempt_number": attempt.attempt_number,
        "copy": attempt.copy,
        "status_code": attempt.status_code,
        "response_body": attempt.response_body,
        "response_time_ms": attempt.response_time_ms,
        "error_message": attempt.error_message,
        "created_at": iso_z(attempt.created_at),
    }


def delivery_json(delivery: Delivery) -> dict[str, Any]:
    return {
        "id": delivery.id,
        f"{delivery.subject}_id": delivery.subject_id,
        "callback_url": delivery.callback_url,
        "payload_bytes": delivery.payload_bytes.decode(),
        "payload": delivery.payload,
        "signing_secret_id": delivery.signing_secret_id,
        "is_automatic": delivery.is_automatic,
        "status_code": delivery.status,
        "failure_reason_code": delivery.failure_reason_code,
        "failure_detail": delivery.failure_detail,
        "attempt_count": delivery.attempt_count,
        "max_attempts": delivery.max_attempts,
        "next_attempt_at": iso_z(delivery.next_attempt_at),
        "created_at": iso_z(delivery.created_at),
        "updated_at": iso_z(delivery.updated_at or delivery.created_at),
        "completed_at": iso_z(delivery.completed_at),
        "attempts": [attempt_json(delivery, a) for a in list(delivery.attempts)],
    }


def secret_json(secret: Secret, *, plain: bool = False) -> dict[str, Any]:
    data = {
        "id": secret.id,
        "org_id": secret.org_id,
        "key_prefix": secret.plain[:10],
        "label": secret.label,
        "is_current": secret.is_current,
        "disabled_at": iso_z(secret.disabled_at),
        "last_used_at": iso_z(secret.last_used_at),
        "created_at": iso_z(secret.created_at),
        "updated_at": iso_z(secret.updated_at),
    }
    if plain:
        data["plain_secret"] = secret.plain
    return data


def asset_json(asset: Asset, url: str | None) -> dict[str, Any]:
    return {
        "id": asset.id,
        "org_id": asset.org_id,
        "folder_id": None,
        "name": asset.filename,
        "url": url,
        "thumbnail_url": url if asset.mime_type.startswith("image/") else None,
        "mime_type": asset.mime_type,
        "size_bytes": asset.size_bytes,
        "asset_type": asset.mime_type.split("/", 1)[0],
        "source_type": "upload",
        "created_at": iso_z(asset.created_at),
        "updated_at": iso_z(asset.created_at),
    }
