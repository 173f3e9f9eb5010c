"""The sandbox's /v1 endpoints, driven over real HTTP against the live subprocess."""

from __future__ import annotations

import re
import uuid
from decimal import Decimal

import httpx
import pytest

from tests.plugins.sandbox import Sandbox

pytestmark = pytest.mark.sandbox

IMAGE = "google/nano-banana-pro"
VIDEO = "bytedance/seedance/2.0/fast/text-to-video"
SOLUTION = "runflow/object-removal/prompt"


def create(client: httpx.Client, model: str, input: dict, **extra: object) -> dict:
    response = client.post(f"/v1/models/{model}/runs", json={"input": input, **extra})
    assert response.status_code == 201, response.text
    return response.json()


# ---- basics ----


def test_health_needs_no_key(sandbox: Sandbox) -> None:
    response = httpx.get(f"{sandbox.url}/v1/health")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


@pytest.mark.parametrize(
    "header",
    [
        None,
        "Bearer nope",
        "Bearer rf_live_short",
        "Basic rf_live_abcdefgh12",
        "Bearer rf_test_abcdefgh12",
    ],
)
def test_missing_or_malformed_key_gets_401_envelope(sandbox: Sandbox, header: str | None) -> None:
    headers = {"Authorization": header} if header else {}
    response = httpx.get(f"{sandbox.url}/v1/auth/me", headers=headers)
    assert response.status_code == 401
    assert response.json() == {
        "code": "UNAUTHORIZED",
        "message": response.json()["message"],
        "errors": None,
    }


def test_each_key_is_its_own_org(sandbox: Sandbox) -> None:
    key = sandbox.new_key()
    with sandbox.api(key) as client:
        me = client.get("/v1/auth/me").json()
    org = me["memberships"][0]["org"]
    assert org["name"] == f"Sandbox org {key[-4:]}"
    with sandbox.api(sandbox.new_key()) as other:
        assert other.get("/v1/auth/me").json()["memberships"][0]["org"]["id"] != org["id"]


def test_a_wrong_organization_header_is_refused(sandbox: Sandbox) -> None:
    with sandbox.api(sandbox.new_key()) as client:
        response = client.get("/v1/auth/me", headers={"X-Organization-Id": str(uuid.uuid4())})
    assert response.status_code == 403


def test_balance_is_decimal_strings_and_goes_down_with_spending(sandbox: Sandbox) -> None:
    key = sandbox.new_key()
    with sandbox.api(key) as client:
        before = client.get("/v1/billing/balance").json()
        assert re.fullmatch(r"\d+\.\d{2,4}", before["balance"])
        assert re.fullmatch(r"\d+\.\d{2,4}", before["low_balance_threshold"])
        run = create(
            client, "black-forest-labs/flux-2-pro", {"prompt": "a cat", "width": 256, "height": 256}
        )
        done = sandbox.wait_for(key, run["id"])
        after = client.get("/v1/billing/balance").json()
    assert done["cost"] == "0.04"
    assert Decimal(before["balance"]) - Decimal(after["balance"]) == Decimal("0.04")


def test_a_nocredit_key_gets_402_on_runs_and_batches(sandbox: Sandbox) -> None:
    with sandbox.api(sandbox.new_key("nocredit")) as client:
        assert client.get("/v1/billing/balance").json()["balance"] == "0.00"
        run = client.post(f"/v1/models/{IMAGE}/runs", json={"input": {"prompt": "a cat"}})
        batch = client.post(f"/v1/models/{IMAGE}/batches", json={"input": [{"prompt": "a cat"}]})
    assert run.status_code == 402 and run.json()["code"] == "INSUFFICIENT_CREDIT"
    assert batch.status_code == 402 and batch.json()["code"] == "INSUFFICIENT_CREDITS"


def test_oversized_bodies_are_refused(sandbox: Sandbox) -> None:
    with sandbox.api(sandbox.new_key()) as client:
        huge = {"input": {"prompt": "x" * (2 * 1024 * 1024)}}
        response = client.post(f"/v1/models/{IMAGE}/runs", json=huge)
        after = client.get("/v1/auth/me")
    assert response.status_code == 413 and response.json()["code"] == "PAYLOAD_TOO_LARGE"
    assert after.status_code == 200


def test_unknown_endpoint_and_wrong_method(sandbox: Sandbox) -> None:
    with sandbox.api(sandbox.new_key()) as client:
        assert client.get("/v1/nothing-here").status_code == 404
        response = client.delete("/v1/auth/me")
    assert response.status_code == 405


# ---- catalog ----


def test_models_list_pages_with_limit_and_cursor(sandbox: Sandbox) -> None:
    with sandbox.api(sandbox.new_key()) as client:
        everything = client.get("/v1/models", params={"limit": 500}).json()
        ids = [m["id"] for m in everything["items"]]
        seen: list[str] = []
        page = client.get("/v1/models", params={"limit": 4}).json()
        while True:
            seen += [m["id"] for m in page["items"]]
            if not page["next"]:
                break
            page = client.get("/v1/models", params={"limit": 4, "pq": page["next"]}).json()
        back = client.get("/v1/models", params={"limit": 4, "pq": page["previous"]}).json()
        assert client.get("/v1/models", params={"limit": 0}).status_code == 422
        assert client.get("/v1/models", params={"limit": 501}).status_code == 422
        assert client.get("/v1/models", params={"pq": "garbage!"}).status_code == 422
    assert seen == ids and len(ids) >= 10
    assert set(everything) == {"items", "first", "next", "previous"}
    assert [m["id"] for m in back["items"]] == ids[
        len(ids) - len(page["items"]) - 4 : len(ids) - len(page["items"])
    ]
    for required in (
        IMAGE,
        "black-forest-labs/flux-2-pro",
        VIDEO,
        SOLUTION,
        "google/nano-banana-pro/edit",
    ):
        assert required in ids


def test_model_has_realistic_inputs_price_cover_and_examples(sandbox: Sandbox) -> None:
    with sandbox.api(sandbox.new_key()) as client:
        model = client.get(f"/v1/models/{IMAGE}").json()
        cover = httpx.get(model["cover_url"])
    inputs = {i["name"]: i for i in model["inputs"]}
    assert model["price_label"] == "$0.15 per image"
    assert inputs["prompt"]["is_required"] and inputs["prompt"]["variable_type_code"] == "string"
    assert inputs["resolution"]["validator_attrs"]["choices"] == ["1K", "2K", "4K"]
    assert "16:9" in inputs["aspect_ratio"]["validator_attrs"]["choices"]
    assert inputs["num_images"]["validator_attrs"] == {"min": 1, "max": 4}
    assert inputs["enable_web_search"]["variable_type_code"] == "boolean"
    assert [i["sort_order"] for i in model["inputs"]] == list(range(len(model["inputs"])))
    for name in (
        "name",
        "display_name",
        "description",
        "default_value",
        "validator_code",
        "is_featured",
    ):
        assert name in inputs["resolution"]
    assert model["examples"] and model["examples"][0]["input"]["prompt"]
    assert cover.status_code == 200 and cover.headers["content-type"] == "image/png"


def test_catalog_covers_every_kind_of_input(sandbox: Sandbox) -> None:
    with sandbox.api(sandbox.new_key()) as client:
        models = client.get("/v1/models", params={"limit": 100}).json()["items"]
    types = {i["variable_type_code"] for m in models for i in m["inputs"]}
    kinds = {o["variable_type_code"] for m in models for o in m["outputs"]}
    assert {"string", "integer", "number", "boolean", "image", "image_list", "json"} <= types
    assert {"image_list", "video", "audio"} <= kinds
    assert any(m["supports_batch"] for m in models)
    assert any(m["availability_status"] == "unavailable" for m in models)
    assert {"$0.10 per second", "$0.04 per image"} <= {m["price_label"] for m in models}


def test_deep_model_ids_resolve_and_unknown_ones_are_404(sandbox: Sandbox) -> None:
    with sandbox.api(sandbox.new_key()) as client:
        assert client.get(f"/v1/models/{VIDEO}").json()["id"] == VIDEO
        missing = client.get("/v1/models/acme/nothing/v9")
        create_missing = client.post("/v1/models/acme/nothing/v9/runs", json={"input": {}})
        retired = client.post(
            "/v1/models/black-forest-labs/flux-1.1-pro/runs", json={"input": {"prompt": "a cat"}}
        )
    assert missing.status_code == 404 and missing.json()["code"] == "MODEL_UNAVAILABLE"
    assert (
        create_missing.status_code == 404 and create_missing.json()["code"] == "MODEL_UNAVAILABLE"
    )
    assert retired.status_code == 404 and retired.json()["code"] == "MODEL_UNAVAILABLE"


# ---- creating runs ----


def test_invalid_input_gets_422_with_one_error_per_field(sandbox: Sandbox) -> None:
    bad = {
        "resolution": "8K",
        "num_images": 9,
        "enable_web_search": "yes",
        "aspect_ratio": 16,
        "surprise": 1,
    }
    with sandbox.api(sandbox.new_key()) as client:
        response = client.post(
            f"/v1/models/{IMAGE}/runs", json={"input": bad, "client_ref": "x" * 300}
        )
        no_input = client.post(f"/v1/models/{IMAGE}/runs", json={"metadata": {}})
        not_json = client.post(
            f"/v1/models/{IMAGE}/runs",
            content=b"{nope",
            headers={"Content-Type": "application/json"},
        )
    assert response.status_code == 422
    body = response.json()
    assert body["code"] == "VALIDATION_ERROR" and body["message"]
    fields = {e["loc"][-1]: e["msg"] for e in body["errors"]}
    assert set(fields) == {
        "prompt",
        "resolution",
        "num_images",
        "enable_web_search",
        "aspect_ratio",
        "surprise",
        "client_ref",
    }
    assert fields["prompt"] == "Field required"
    assert "4" in fields["num_images"]
    assert all(
        e["loc"][:2] == ["body", "input"] for e in body["errors"] if e["loc"][-1] != "client_ref"
    )
    assert no_input.status_code == 422 and not_json.status_code == 400


def test_number_bounds_json_and_image_inputs_are_checked(sandbox: Sandbox) -> None:
    with sandbox.api(sandbox.new_key()) as client:
        flux = client.post(
            "/v1/models/black-forest-labs/flux-2-pro/runs",
            json={"input": {"prompt": "a cat", "width": 4096, "guidance": 0.5}},
        )
        recraft = client.post(
            "/v1/models/recraft/v3/runs", json={"input": {"prompt": "a cat", "colors": "red"}}
        )
        edit = client.post(
            "/v1/models/google/nano-banana-pro/edit/runs",
            json={"input": {"prompt": "fix it", "image_urls": ["ftp://x/y.png"]}},
        )
        empty = client.post(
            "/v1/models/google/nano-banana-pro/edit/runs",
            json={"input": {"prompt": "fix it", "image_urls": []}},
        )
    assert {e["loc"][-1] for e in flux.json()["errors"]} == {"width", "guidance"}
    assert recraft.json()["errors"][0]["loc"][-1] == "colors"
    assert "HTTP(S)" in edit.json()["errors"][0]["msg"]
    assert empty.status_code == 422


def test_run_moves_through_the_lifecycle_with_logs(sandbox: Sandbox) -> None:
    key = sandbox.new_key()
    with sandbox.api(key) as client:
        run = create(
            client, IMAGE, {"prompt": "a lighthouse"}, metadata={"run": "ours"}, client_ref="ref-1"
        )
        assert run["status_code"] == "queued"
        assert uuid.UUID(run["id"]).version == 7
        seen = {run["status_code"]}
        while run["status_code"] not in ("succeeded", "failed"):
            run = client.get(f"/v1/runs/{run['id']}").json()
            seen.add(run["status_code"])
        logs = client.get(f"/v1/runs/{run['id']}/logs").json()
        one = client.get(f"/v1/runs/{run['id']}/logs/{logs['items'][0]['id']}").json()
    assert {"queued", "dispatching", "running", "succeeded"} <= seen
    assert run["metadata"] == {"run": "ours"} and run["client_ref"] == "ref-1"
    assert run["started_at"] and run["completed_at"] and run["duration_ms"] > 0
    assert run["has_logs"] and run["logs"] and run["node_runs"] == []
    assert run["output"]["outputs"][0]["type"] == "image"
    assert [e["message"] for e in logs["items"]] == [e["message"] for e in run["logs"]]
    assert one == logs["items"][0]
    assert set(run["logs"][0]) >= {"id", "run_id", "level_code", "message", "timestamp", "meta"}


def test_statuses_list_every_status(sandbox: Sandbox) -> None:
    with sandbox.api(sandbox.new_key()) as client:
        items = client.get("/v1/runs/statuses").json()["items"]
    assert [i["code"] for i in items] == [
        "queued",
        "dispatching",
        "running",
        "succeeded",
        "failed",
        "canceled",
        "partial_succeeded",
    ]


def test_multi_step_model_reports_node_runs(sandbox: Sandbox) -> None:
    key = sandbox.new_key()
    with sandbox.api(key) as client:
        run = create(
            client,
            SOLUTION,
            {
                "image_url": "https://example.com/a.png",
                "prompt": "the tag",
                "config": {"mask_dilation": 8},
            },
        )
        assert (
            run["nodes_total"] == 4
            and [n["state_code"] for n in run["node_runs"]] == ["queued"] * 4
        )
        mid = sandbox.wait_for(key, run["id"], until=("running",))
        done = sandbox.wait_for(key, run["id"])
        nodes = client.get(f"/v1/runs/{run['id']}/node-runs").json()
        one = client.get(f"/v1/runs/{run['id']}/node-runs/{nodes['items'][2]['id']}").json()
        anywhere = client.get("/v1/runs/any/node-runs").json()
    assert mid["node_runs"][0]["state_code"] == "running"
    assert done["status_code"] == "succeeded" and done["nodes_completed"] == 4
    assert [n["node_id"] for n in nodes["items"]] == ["detect", "mask", "inpaint", "upscale"]
    assert all(n["state_code"] == "succeeded" for n in nodes["items"])
    assert one["node_id"] == "inpaint"
    assert len(done["output"]["outputs"]) == 2
    assert {n["id"] for n in nodes["items"]} <= {n["id"] for n in anywhere["items"]}


def test_search_runs_by_client_ref_sorted_and_paged(sandbox: Sandbox) -> None:
    key = sandbox.new_key()
    with sandbox.api(key) as client:
        first = create(client, IMAGE, {"prompt": "one"}, client_ref="alpha")
        second = create(client, IMAGE, {"prompt": "two"}, client_ref="beta")
        third = create(client, IMAGE, {"prompt": "three"}, client_ref="alpha")
        found = client.get("/v1/runs", params={"q": "client_ref.EQ:'alpha'"}).json()
        colon = client.get("/v1/runs", params={"q": "client_ref:beta"}).json()
        oldest = client.get("/v1/runs", params={"sort_by": "created_at:asc", "limit": 1}).json()
        following = client.get(
            "/v1/runs", params={"sort_by": "created_at:asc", "limit": 1, "pq": oldest["next"]}
        ).json()
        projected = client.get("/v1/runs", params={"fields": "id,status_code"}).json()
        bad = client.get("/v1/runs", params={"q": "prompt.EQ:'x'"})
    assert [r["id"] for r in found["items"]] == [third["id"], first["id"]]
    assert [r["id"] for r in colon["items"]] == [second["id"]]
    assert oldest["items"][0]["id"] == first["id"] and following["items"][0]["id"] == second["id"]
    assert set(projected["items"][0]) == {"id", "status_code"}
    assert bad.status_code == 422


def test_another_orgs_run_is_404(sandbox: Sandbox) -> None:
    with sandbox.api(sandbox.new_key()) as owner:
        run = create(owner, IMAGE, {"prompt": "mine"})
    with sandbox.api(sandbox.new_key()) as stranger:
        responses = [
            stranger.get(f"/v1/runs/{run['id']}"),
            stranger.get(f"/v1/runs/{run['id']}/logs"),
            stranger.get(f"/v1/runs/{run['id']}/callback"),
            stranger.patch(f"/v1/runs/{run['id']}/feedback", json={"is_positive": True}),
        ]
        listed = stranger.get("/v1/runs").json()["items"]
    assert [r.status_code for r in responses] == [404] * 4
    assert responses[0].json()["code"] == "RUN_NOT_FOUND"
    assert listed == []


def test_feedback_is_set_and_cleared(sandbox: Sandbox) -> None:
    with sandbox.api(sandbox.new_key()) as client:
        run = create(client, IMAGE, {"prompt": "x y z"})
        set_ = client.patch(
            f"/v1/runs/{run['id']}/feedback", json={"is_positive": False, "reason": "blurry"}
        ).json()
        cleared = client.patch(
            f"/v1/runs/{run['id']}/feedback", json={"is_positive": None, "reason": None}
        ).json()
        bad = client.patch(f"/v1/runs/{run['id']}/feedback", json={"is_positive": "no"})
    assert (set_["feedback_is_positive"], set_["feedback_reason"]) == (False, "blurry")
    assert (cleared["feedback_is_positive"], cleared["feedback_reason"]) == (None, None)
    assert bad.status_code == 422


def test_admin_cancellation(sandbox: Sandbox) -> None:
    key = sandbox.new_key()
    with sandbox.api(key) as client, sandbox.api(sandbox.new_key(admin=True)) as admin:
        run = create(client, VIDEO, {"prompt": "slow waves [slow]"})
        refused = client.post(
            f"/v1/admin/runs/{run['id']}/cancellation", json={"reason": "stop it"}
        )
        short = admin.post(f"/v1/admin/runs/{run['id']}/cancellation", json={"reason": "no"})
        cancelled = admin.post(
            f"/v1/admin/runs/{run['id']}/cancellation", json={"reason": "stop it"}
        )
        again = admin.post(f"/v1/admin/runs/{run['id']}/cancellation", json={"reason": "stop it"})
        missing = admin.post(f"/v1/admin/runs/{uuid.uuid4()}/cancellation", json={})
        seen_by_owner = client.get(f"/v1/runs/{run['id']}").json()
    assert refused.status_code == 403 and refused.json()["code"] == "PERMISSION_DENIED"
    assert short.status_code == 422
    assert cancelled.status_code == 201 and cancelled.json()["status_code"] == "canceled"
    assert (
        again.status_code == 200
        and again.json()["completed_at"] == cancelled.json()["completed_at"]
    )
    assert missing.status_code == 404
    assert seen_by_owner["status_code"] == "canceled" and seen_by_owner["output"] is None
    assert any("stop it" in log["message"] for log in seen_by_owner["logs"])
