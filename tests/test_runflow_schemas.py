"""The pydantic shapes of Runflow's answers and callbacks, on recorded bodies.

Lenient where Runflow is inconsistent, strict where it matters (RUNFLOW_API.md).
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from runs.models import Status, normalize_status
from runs.runflow.schemas import (
    AssetInfo,
    Balance,
    BatchCallbackOutput,
    BatchInfo,
    BatchItemInfo,
    CallbackDeliveryInfo,
    CallbackEnvelope,
    CallbackSecretInfo,
    ErrorEnvelope,
    Health,
    Me,
    ModelInfo,
    NormalizedOutput,
    Page,
    RunInfo,
    cursor_of,
    normalize_output,
)
from runs.transitions import Report

FIXTURES = Path(__file__).parent / "fixtures" / "runflow"
RUN_ID = UUID("0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b")
PRESIGNED = (
    "https://bucket.s3.dualstack.eu-central-1.amazonaws.com/outputs/0190a1b2/result.webp"
    "?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Signature=3f9a%2Bb&X-Amz-Expires=86400"
)


def recorded(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


# ---- runs ----


def test_succeeded_run_reads_every_field_the_site_uses() -> None:
    run = RunInfo.model_validate(recorded("run_succeeded.json"))
    assert run.id == RUN_ID
    assert run.status_code == "succeeded"
    assert run.cost == Decimal("0.15")
    assert run.duration_ms == 35120
    assert run.completed_at == datetime(2026, 5, 6, 10, 0, 35, 120000, tzinfo=UTC)
    assert run.client_ref == "8d2f6c1e-2b7a-4c57-9a43-0d7e3c1b9f10"
    assert run.metadata == {
        "run": "8d2f6c1e-2b7a-4c57-9a43-0d7e3c1b9f10",
        "team": "2b4c6d8e-0000-4000-8000-000000000001",
    }
    assert (run.nodes_total, run.nodes_completed) == (2, 2)
    assert [log.level_code for log in run.logs] == ["INFO", "warning"]
    assert run.logs[0].run_id == RUN_ID
    assert [node.node_id for node in run.node_runs] == ["generate", "upscale"]
    assert run.node_runs[1].retry_count == 1
    assert run.node_runs[0].cost == Decimal("0.12")


def test_output_entries_are_normalized_and_urls_kept_byte_for_byte() -> None:
    run = RunInfo.model_validate(recorded("run_succeeded.json"))
    assert run.output is not None
    image, video = run.output.outputs
    # A presigned URL breaks if re-encoded: "%2B" and the query order must survive.
    assert image.url == PRESIGNED
    assert (image.type, image.width, image.height) == ("image", 1024, 1024)
    assert (image.content_type, image.size_bytes) == ("image/webp", 183422)
    assert (video.type, video.duration, video.width) == ("video", 5.04, None)


def test_unknown_fields_are_ignored() -> None:
    run = RunInfo.model_validate(recorded("run_succeeded.json"))
    assert not hasattr(run, "brand_new_field")
    assert "brand_new_field" not in run.model_dump()


def test_output_is_none_while_in_flight_and_on_failure() -> None:
    assert RunInfo.model_validate(recorded("run_created.json")).output is None
    failed = RunInfo.model_validate(recorded("run_failed.json"))
    assert failed.output is None
    assert (failed.failure_code, failed.failure_stage_code) == (
        "INPUT_VALIDATION_FAILED",
        "preprocess",
    )
    assert failed.failure_message == "image dimensions exceed 4096x4096"


def test_legacy_field_names_from_the_errors_page_are_accepted() -> None:
    run = RunInfo.model_validate(recorded("run_failed_legacy_fields.json"))
    assert run.status_code == "failed"
    assert run.failure_stage_code == "preprocess"
    assert run.logs == [] and run.node_runs == []


def test_both_cancel_spellings_parse_and_the_site_maps_them_to_canceled() -> None:
    uk = RunInfo.model_validate(recorded("run_cancelled_uk.json"))
    us = RunInfo.model_validate(recorded("run_admin_cancelled.json"))
    assert (uk.status_code, us.status_code) == ("cancelled", "canceled")
    assert normalize_status(uk.status_code) == normalize_status(us.status_code) == Status.CANCELED


def test_unknown_status_and_odd_scalars_do_not_fail_the_run() -> None:
    run = RunInfo.model_validate(recorded("run_unknown_status.json"))
    assert run.status_code == "errored"
    assert normalize_status(run.status_code) is None  # the site keeps it in flight (R9)
    assert run.cost is None  # "not-a-number"
    assert run.created_at is None  # "yesterday-ish"
    assert run.duration_ms == 12  # "12"


def test_partial_succeeded_keeps_the_outputs_present() -> None:
    run = RunInfo.model_validate(recorded("run_partial_succeeded.json"))
    assert run.status_code == "partial_succeeded"
    assert run.output is not None
    assert [o.url for o in run.output.outputs] == ["https://cdn.example.test/p/1.png"]


@pytest.mark.parametrize("bad_id", ["01J0ABCDEF", "", "0190a1b2-c3d4", 42, None])
def test_run_ids_must_be_uuids(bad_id: object) -> None:
    with pytest.raises(ValidationError):
        RunInfo.model_validate({**recorded("run_created.json"), "id": bad_id})


def test_a_run_without_a_status_is_refused() -> None:
    body = recorded("run_created.json")
    del body["status_code"]
    with pytest.raises(ValidationError):
        RunInfo.model_validate(body)


def test_report_from_run_info_reads_these_objects() -> None:
    """The lead's transition code consumes RunInfo through Report.from_run_info."""
    report = Report.from_run_info(RunInfo.model_validate(recorded("run_succeeded.json")))
    assert report.status == "succeeded"
    assert report.runflow_id == str(RUN_ID)
    assert report.cost == Decimal("0.15")
    assert report.output is not None
    assert report.output["outputs"][0]["url"] == PRESIGNED
    assert [log["id"] for log in report.logs] == [
        "7a000000-0000-4000-8000-000000000001",
        "7a000000-0000-4000-8000-000000000002",
    ]
    assert report.node_runs[0]["cost"] == "0.12"
    assert report.completed_at == datetime(2026, 5, 6, 10, 0, 35, 120000, tzinfo=UTC)


# ---- output normalization ----


def test_legacy_image_urls_become_outputs_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="runs.runflow"):
        run = RunInfo.model_validate(recorded("run_succeeded_legacy_image_urls.json"))
    assert run.output is not None
    assert [(o.type, o.url) for o in run.output.outputs] == [
        ("image", "https://cdn.example.test/legacy/a.png"),
        ("image", "https://cdn.example.test/legacy/b.jpg"),
    ]
    assert "image_urls" not in run.output.model_dump()
    assert any("legacy output shape" in r.getMessage() for r in caplog.records)


def test_unsafe_or_broken_output_entries_are_dropped_and_logged_without_the_url(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="runs.runflow"):
        run = RunInfo.model_validate(recorded("run_succeeded_unsafe_outputs.json"))
    assert run.output is not None
    [kept] = run.output.outputs
    assert kept.url == "https://cdn.example.test/ok.png"
    assert (kept.width, kept.height) == (None, None)  # "wide" and -3
    dropped = [r for r in caplog.records if "Dropped an output entry" in r.getMessage()]
    assert len(dropped) == 4
    assert not any("javascript:" in r.getMessage() or "base64" in r.getMessage() for r in dropped)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"image": ["https://c.test/x.png"]}, [("image", "https://c.test/x.png")]),
        ({"url": "https://c.test/x.mp4"}, [("video", "https://c.test/x.mp4")]),
        ({"output_url": "https://c.test/x.bin"}, [("other", "https://c.test/x.bin")]),
        ({"image": {"url": "https://c.test/y.png"}}, [("image", "https://c.test/y.png")]),
        (
            {"outputs": [{"url": "https://c.test/a", "content_type": "audio/mpeg"}]},
            [("audio", "https://c.test/a")],
        ),
        (
            {"outputs": [{"type": "3d-mesh", "url": "https://c.test/m"}]},
            [("other", "https://c.test/m")],
        ),
    ],
)
def test_other_documented_output_shapes(
    raw: dict[str, Any], expected: list[tuple[str, str]]
) -> None:
    output = normalize_output(raw)
    assert output is not None
    assert [(o.type, o.url) for o in output.outputs] == expected


def test_outputs_win_over_legacy_keys_without_duplicates() -> None:
    output = normalize_output(
        {"outputs": [{"type": "image", "url": "https://c.test/new.png"}], "image_urls": ["x"]}
    )
    assert output is not None
    assert [o.url for o in output.outputs] == ["https://c.test/new.png"]


@pytest.mark.parametrize("raw", [None, {}, [], "https://c.test/a.png", 3])
def test_no_output_yet_or_unreadable_output_is_none(raw: object) -> None:
    assert normalize_output(raw) is None


def test_extra_output_keys_such_as_a_failure_envelope_are_kept() -> None:
    output = normalize_output({"code": "PROVIDER_ERROR", "message": "no", "seed": 7})
    assert output is not None
    assert output.outputs == []
    assert output.model_dump() == {
        "outputs": [],
        "code": "PROVIDER_ERROR",
        "message": "no",
        "seed": 7,
    }


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=30),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=20,
)
url_like = st.sampled_from(
    ["https://c.test/a.png", "http://c.test/b", "javascript:alert(1)", "data:,x", "ftp://c/x", " "]
)
entries = st.fixed_dictionaries(
    {"url": url_like | json_values},
    optional={"type": json_values, "width": json_values, "duration": json_values},
)
output_bodies = st.one_of(
    json_values,
    st.fixed_dictionaries({"outputs": st.lists(entries | json_values, max_size=5)}),
    st.fixed_dictionaries({"image_urls": st.lists(url_like | json_values, max_size=5)}),
)


@settings(max_examples=300)
@given(raw=output_bodies)
def test_normalize_output_never_raises_and_keeps_only_http_urls(raw: object) -> None:
    output = normalize_output(raw)
    if output is not None:
        assert isinstance(output, NormalizedOutput)
        for item in output.outputs:
            assert item.url.startswith(("http://", "https://"))
            assert item.type in ("image", "video", "audio", "other")
            assert item.width is None or item.width >= 0


# ---- callbacks ----


def test_run_completed_callback() -> None:
    envelope = CallbackEnvelope.model_validate(recorded("callback_run_completed.json"))
    assert (envelope.event, envelope.run_id, envelope.status) == (
        "run.completed",
        RUN_ID,
        "succeeded",
    )
    assert not envelope.is_batch
    assert isinstance(envelope.output, NormalizedOutput)
    assert envelope.output.outputs[0].url == "https://cdn.example.test/cb/1.png"
    assert envelope.created_at == datetime(2026, 5, 6, 10, 0, tzinfo=UTC)


def test_legacy_callback_output_is_normalized_too() -> None:
    envelope = CallbackEnvelope.model_validate(recorded("callback_run_completed_legacy.json"))
    assert isinstance(envelope.output, NormalizedOutput)
    assert [o.url for o in envelope.output.outputs] == ["https://cdn.example.test/cb/legacy.png"]
    assert envelope.metadata is None


def test_failed_callback_keeps_its_failure_envelope_for_the_report() -> None:
    envelope = CallbackEnvelope.model_validate(recorded("callback_run_failed.json"))
    report = Report.from_callback(envelope)
    assert report.status == "failed"
    assert report.failure_code == "PROVIDER_ERROR"
    assert report.failure_message == "The provider timed out"
    assert report.output is None


def test_cancelled_event_carries_the_us_status() -> None:
    envelope = CallbackEnvelope.model_validate(recorded("callback_run_cancelled.json"))
    assert (envelope.event, envelope.status, envelope.output) == ("run.cancelled", "canceled", None)


def test_batch_callback() -> None:
    envelope = CallbackEnvelope.model_validate(recorded("callback_batch_succeeded.json"))
    assert envelope.is_batch
    assert envelope.run_id is None
    assert isinstance(envelope.output, BatchCallbackOutput)
    assert (envelope.output.succeeded, envelope.output.cancelled, envelope.output.total) == (
        3,
        0,
        3,
    )


@pytest.mark.parametrize(
    "change",
    [
        {"run_id": None},
        {"run_id": "not-a-uuid"},
        {"event": None},
    ],
)
def test_callbacks_must_name_their_run_by_uuid(change: dict[str, object]) -> None:
    body = {**recorded("callback_run_completed.json"), **change}
    with pytest.raises(ValidationError):
        CallbackEnvelope.model_validate(body)


def test_unknown_callback_event_still_parses() -> None:
    body = {**recorded("callback_run_completed.json"), "event": "run.exploded", "status": "??"}
    envelope = CallbackEnvelope.model_validate(body)
    assert envelope.event == "run.exploded"


def test_callback_delivery_history_entry() -> None:
    [delivery] = [CallbackDeliveryInfo.model_validate(d) for d in recorded("callback_history.json")]
    assert delivery.run_id == RUN_ID
    assert [a.status_code for a in delivery.attempts] == [503, 200]
    assert delivery.attempt_count == 2


# ---- catalog ----


def test_model_path_is_built_from_owner_and_slug_and_uuid_kept() -> None:
    page = recorded("models_page1.json")
    model = ModelInfo.model_validate(page["items"][0])
    assert model.id == "google/nano-banana-pro"
    assert model.uuid == UUID("11111111-0000-4000-8000-000000000001")
    assert model.name == "Nano Banana Pro"
    assert model.price_label == "$0.15 per image"
    assert model.cover_url == "https://cdn.example.test/covers/nbp.webp"
    assert model.icon_url is None  # javascript: is never a picture
    assert model.output_kind == "image"


def test_model_inputs_with_their_defaults_and_validator_attrs() -> None:
    model = ModelInfo.model_validate(recorded("models_page1.json")["items"][0])
    prompt, resolution, count = model.inputs
    assert (prompt.name, prompt.is_required, prompt.is_featured) == ("prompt", True, True)
    assert prompt.limit("max_length") == 50000 and prompt.limit("max") is None
    assert resolution.choices == ["1K", "2K", "4K"]
    assert resolution.default_value == "1K"
    assert (count.is_required, count.sort_order, count.validator_attrs) == (False, 0, {})
    assert count.choices is None


def test_odd_flags_and_examples_do_not_lose_the_model() -> None:
    model = ModelInfo.model_validate(
        {
            "id": "acme/thing",
            "inputs": [{"name": "a", "is_required": "false"}, {"name": "b", "is_required": "true"}],
            "examples": [{"title": "ok"}, "not an object", None],
        }
    )
    assert [i.is_required for i in model.inputs] == [False, True]
    assert model.examples == [{"title": "ok"}]


def test_multi_segment_model_id() -> None:
    model = ModelInfo.model_validate(recorded("model_seedance.json"))
    assert model.id == "bytedance/seedance/2.0/fast/text-to-video"
    assert model.uuid is None
    assert model.output_kind == "video"


@pytest.mark.parametrize(
    "body",
    [
        {"id": "11111111-0000-4000-8000-0000000000ff", "name": "no path"},
        {"id": "../../admin"},
        {"id": "owner/../admin"},
        {"id": "owner/%2e%2e/admin"},
        {"owner": "x", "slug": "a b"},
    ],
)
def test_models_without_a_safe_path_are_refused(body: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        ModelInfo.model_validate(body)


def test_owner_and_slug_paths() -> None:
    assert ModelInfo.model_validate({"owner": "bytedance", "slug": "seedance/2.0/t2v"}).id == (
        "bytedance/seedance/2.0/t2v"
    )
    assert ModelInfo.model_validate({"owner": "google", "slug": "google/x"}).id == "google/x"
    creator = {"model_creator": {"slug": "bria"}, "slug": "background/remove"}
    assert ModelInfo.model_validate(creator).id == "bria/background/remove"


# ---- lists, errors, batches, account ----


def test_page_envelope_and_older_cursor_names() -> None:
    page = Page[RunInfo].model_validate(recorded("runs_search.json"))
    assert len(page.items) == 2 and page.next is None
    older = Page[dict[str, Any]].model_validate({"items": [], "next_pq": "abc", "prev_pq": "xyz"})
    assert (older.next_cursor, older.previous) == ("abc", "xyz")


@pytest.mark.parametrize(
    ("link", "cursor"),
    [
        (None, None),
        ("", None),
        ("cursor-2", "cursor-2"),
        ("https://api.runflow.io/v1/models?limit=500&pq=c%2F2", "c/2"),
        ("https://evil.test/steal?pq=c3", "c3"),
        ("/v1/runs?pq=c4", "c4"),
        ("?pq=c5&limit=1", "c5"),
        ("https://api.runflow.io/v1/models?limit=5", None),
    ],
)
def test_cursor_of_takes_only_the_cursor(link: str | None, cursor: str | None) -> None:
    assert cursor_of(link) == cursor


def test_validation_errors_become_per_field_messages() -> None:
    envelope = ErrorEnvelope.model_validate(recorded("error_422.json"))
    assert envelope.field_errors() == {
        "prompt": ["Field required"],
        "image_urls.0": ["media URL must use HTTP(S) or data URI, got 'runflow'"],
        "callback_url": ["URL too long"],
        "resolution": ["must be one of 1K, 2K, 4K"],
    }


def test_other_error_shapes() -> None:
    fastapi = ErrorEnvelope.model_validate(recorded("error_422_fastapi_detail.json"))
    assert fastapi.field_errors() == {"prompt": ["String should have at least 3 characters"]}
    nested = ErrorEnvelope.model_validate(recorded("error_sdk_nested.json"))
    assert (nested.code, nested.message) == ("PERMISSION_DENIED", "Missing scope runs:create")
    assert ErrorEnvelope.model_validate(["odd"]).code == ""
    assert ErrorEnvelope.model_validate({"detail": "Not Found"}).message == "Not Found"


def test_batch_and_its_items() -> None:
    batch = BatchInfo.model_validate(recorded("batch.json"))
    assert batch.status_code == "partial_succeeded"
    assert (batch.items_total, batch.items_succeeded, batch.items_failed) == (2, 1, 1)
    assert [item.client_ref for item in batch.items] == ["row-1", "row-2"]
    full = BatchItemInfo.model_validate(recorded("batch_items_page1.json")["items"][0])
    assert full.output is not None and full.output.outputs[0].type == "image"
    assert full.run is not None and full.run.status_code == "succeeded"
    failed = BatchItemInfo.model_validate(recorded("batch_items_page2.json")["items"][0])
    assert failed.error == {"code": "PROVIDER_ERROR", "message": "upstream said no"}


def test_balance_in_both_documented_shapes() -> None:
    assert Balance.model_validate(recorded("balance.json")).balance == Decimal("12.4500")
    legacy = Balance.model_validate(recorded("balance_legacy_cents.json"))
    assert legacy.balance == Decimal("124.50")


def test_me_and_health() -> None:
    me = Me.model_validate(recorded("me.json"))
    assert me.organization_name == "Acme Studio"
    assert me.memberships[0].scopes == ["runs:create", "runs:read", "credit_balance:read"]
    assert Health.model_validate(recorded("health.json")).is_ok
    assert Health.model_validate(recorded("health_sdk_shape.json")).is_ok
    assert not Health.model_validate({"status": "degraded"}).is_ok


def test_callback_secret_plain_value_stays_out_of_repr() -> None:
    info = CallbackSecretInfo.model_validate(recorded("callback_secret_created.json"))
    assert info.plain_secret == "whsec_3kTq9mYx2bP7vR1cW8dZ0fLh"
    assert "whsec_3kTq9" not in repr(info)
    assert CallbackSecretInfo.model_validate(recorded("callback_secret.json")).plain_secret is None


def test_asset_reference() -> None:
    asset = AssetInfo.model_validate(recorded("asset.json"))
    assert asset.ref == "runflow://assets/a55e7000-0000-4000-8000-00000000d001"
    assert asset.url == "https://assets.example-r2.test/in.png?sig=1"
