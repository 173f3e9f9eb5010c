"""The sandbox's idempotency, batches, asset uploads and callback secrets, over real HTTP."""

from __future__ import annotations

import uuid

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


# ---- idempotency ----


def test_idempotency_key_replays_the_first_answer(sandbox: Sandbox) -> None:
    key = sandbox.new_key()
    body = {"input": {"prompt": "same"}, "client_ref": "idem"}
    with sandbox.api(key) as client:
        first = client.post(
            f"/v1/models/{IMAGE}/runs", json=body, headers={"Idempotency-Key": "k-1"}
        )
        reordered = {"client_ref": "idem", "input": {"prompt": "same"}}
        second = client.post(
            f"/v1/models/{IMAGE}/runs", json=reordered, headers={"Idempotency-Key": "k-1"}
        )
        other = client.post(
            f"/v1/models/{IMAGE}/runs",
            json={"input": {"prompt": "different"}},
            headers={"Idempotency-Key": "k-1"},
        )
        fresh = client.post(
            f"/v1/models/{IMAGE}/runs", json=body, headers={"Idempotency-Key": "k-2"}
        )
        found = client.get("/v1/runs", params={"q": "client_ref.EQ:'idem'"}).json()["items"]
    assert first.status_code == second.status_code == 201
    assert second.content == first.content and second.headers["Idempotent-Replayed"] == "true"
    assert other.status_code == 409 and other.json()["code"] == "CONFLICT"
    assert fresh.json()["id"] != first.json()["id"]
    assert len(found) == 2
    runs = sandbox.ledger(key)["runs"]
    assert sorted(r["idempotency_key"] for r in runs) == ["k-1", "k-2"]


def test_idempotency_keys_are_per_organization(sandbox: Sandbox) -> None:
    body = {"input": {"prompt": "same"}}
    headers = {"Idempotency-Key": "shared-key"}
    with sandbox.api(sandbox.new_key()) as one, sandbox.api(sandbox.new_key()) as two:
        a = one.post(f"/v1/models/{IMAGE}/runs", json=body, headers=headers).json()
        b = two.post(f"/v1/models/{IMAGE}/runs", json=body, headers=headers).json()
    assert a["id"] != b["id"]


# ---- batches ----


def test_batch_create_get_and_items(sandbox: Sandbox) -> None:
    key = sandbox.new_key()
    inputs = [{"prompt": f"shoe {n}", "client_ref": f"sku-{n}"} for n in range(3)]
    inputs[1]["prompt"] += " [fail]"
    with sandbox.api(key) as client:
        created = client.post(
            f"/v1/models/{IMAGE}/batches",
            json={"input": inputs, "metadata": {"b": 1}},
            headers={"Idempotency-Key": "batch-1"},
        )
        replay = client.post(
            f"/v1/models/{IMAGE}/batches",
            json={"input": inputs, "metadata": {"b": 1}},
            headers={"Idempotency-Key": "batch-1"},
        )
        conflict = client.post(
            f"/v1/models/{IMAGE}/batches",
            json={"input": inputs[:1]},
            headers={"Idempotency-Key": "batch-1"},
        )
        batch = created.json()
        for item in batch["items"]:
            sandbox.wait_for(key, item["run_id"])
        detail = client.get(f"/v1/batches/{batch['id']}").json()
        items = client.get(f"/v1/batches/{batch['id']}/items", params={"limit": 2}).json()
        rest = client.get(
            f"/v1/batches/{batch['id']}/items", params={"limit": 2, "pq": items["next"]}
        ).json()
        one = client.get(f"/v1/batches/{batch['id']}/items/{items['items'][0]['id']}").json()
        child = client.get(f"/v1/runs/{batch['items'][0]['run_id']}").json()
    assert (
        created.status_code == 201
        and batch["items_total"] == 3
        and batch["status_code"] == "queued"
    )
    assert replay.content == created.content and conflict.status_code == 409
    assert [i["client_ref"] for i in batch["items"]] == ["sku-0", "sku-1", "sku-2"]
    assert detail["status_code"] == "partial_succeeded"
    assert (detail["items_succeeded"], detail["items_failed"], detail["items_cancelled"]) == (
        2,
        1,
        0,
    )
    assert detail["output"]["total"] == 3
    assert [i["sequence_index"] for i in items["items"] + rest["items"]] == [0, 1, 2]
    assert items["items"][1]["error"]["code"] == "MODEL_ERROR"
    assert one["run"]["id"] == one["run_id"]
    assert child["batch_id"] == batch["id"] and child["client_ref"] == "sku-0"
    assert "client_ref" not in child["input"]


def test_batch_limits_and_non_batch_models(sandbox: Sandbox) -> None:
    with sandbox.api(sandbox.new_key()) as client:
        empty = client.post(f"/v1/models/{IMAGE}/batches", json={"input": []})
        too_many = client.post(
            f"/v1/models/{IMAGE}/batches", json={"input": [{"prompt": "abc"}] * 101}
        )
        bad_item = client.post(
            f"/v1/models/{IMAGE}/batches", json={"input": [{"prompt": "abc"}, {"prompt": 5}]}
        )
        not_batch = client.post(f"/v1/models/{VIDEO}/batches", json={"input": [{"prompt": "abc"}]})
        other_org = client.get(f"/v1/batches/{uuid.uuid4()}")
    assert empty.status_code == too_many.status_code == 422
    assert bad_item.status_code == 422 and bad_item.json()["errors"][0]["loc"] == [
        "body",
        "input",
        1,
        "prompt",
    ]
    assert not_batch.status_code == 422
    assert other_org.status_code == 404


# ---- assets ----


def _png_bytes() -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (320, 200), (10, 200, 30)).save(buffer, "PNG")
    return buffer.getvalue()


def test_three_step_upload_then_use_the_asset_as_an_input(sandbox: Sandbox) -> None:
    key = sandbox.new_key()
    data = _png_bytes()
    with sandbox.api(key) as client:
        session = client.post(
            "/v1/asset-uploads",
            json={"filename": "shoe.png", "mime_type": "image/png", "size_bytes": len(data)},
        )
        assert session.status_code == 201
        upload = session.json()
        early = client.post(f"/v1/asset-uploads/{upload['asset_id']}/confirmations", json={})
        wrong_type = httpx.put(
            upload["upload_url"], content=data, headers={"Content-Type": "image/jpeg"}
        )
        put = httpx.put(upload["upload_url"], content=data, headers={"Content-Type": "image/png"})
        confirmed = client.post(f"/v1/asset-uploads/{upload['asset_id']}/confirmations", json={})
        asset = confirmed.json()
        fetched = httpx.get(asset["url"])
        again = client.get(f"/v1/assets/{asset['id']}").json()
        run = create(
            client, "topaz/upscale/image", {"image_url": asset["url"], "upscale_factor": 2}
        )
        by_ref = create(
            client, "runflow/background-removal", {"image_url": f"runflow://assets/{asset['id']}"}
        )
        done = sandbox.wait_for(key, run["id"])
        cut = sandbox.wait_for(key, by_ref["id"])
    assert early.status_code == 422
    assert wrong_type.status_code == 403
    assert put.status_code == 200
    assert (
        confirmed.status_code == 201
        and asset["size_bytes"] == len(data)
        and asset["mime_type"] == "image/png"
    )
    assert fetched.status_code == 200 and fetched.content == data
    assert again["id"] == asset["id"]
    # The upscaler saw the uploaded picture: the output is twice its size.
    output = done["output"]["outputs"][0]
    assert (output["width"], output["height"]) == (640, 400)
    assert cut["status_code"] == "succeeded"


def test_upload_requests_are_validated_and_assets_are_per_org(sandbox: Sandbox) -> None:
    with sandbox.api(sandbox.new_key()) as client:
        bad = client.post(
            "/v1/asset-uploads", json={"filename": "", "mime_type": "text/html", "size_bytes": 0}
        )
        big = client.post(
            "/v1/asset-uploads",
            json={
                "filename": "a.png",
                "mime_type": "image/png",
                "size_bytes": 50 * 1024 * 1024 + 1,
            },
        )
        upload = client.post(
            "/v1/asset-uploads",
            json={"filename": "a.png", "mime_type": "image/png", "size_bytes": 10},
        ).json()
        forged = httpx.put(
            upload["upload_url"].replace("signature=", "signature=0"),
            content=b"0123456789",
            headers={"Content-Type": "image/png"},
        )
        too_long = httpx.put(
            upload["upload_url"], content=b"x" * 11, headers={"Content-Type": "image/png"}
        )
    with sandbox.api(sandbox.new_key()) as other:
        stolen = other.post(f"/v1/asset-uploads/{upload['asset_id']}/confirmations", json={})
        ref = other.post(
            "/v1/models/runflow/background-removal/runs",
            json={"input": {"image_url": f"runflow://assets/{upload['asset_id']}"}},
        )
    assert {e["loc"][-1] for e in bad.json()["errors"]} == {"filename", "mime_type", "size_bytes"}
    assert big.status_code == 422
    assert forged.status_code == 403 and too_long.status_code == 400
    assert stolen.status_code == 404 and ref.status_code == 422


# ---- callback secrets ----


def test_callback_secrets_create_get_patch_list_delete(sandbox: Sandbox) -> None:
    with sandbox.api(sandbox.new_key()) as client:
        first = client.post("/v1/callback-secrets", json={"label": "site"})
        second = client.post("/v1/callback-secrets", json={"label": "next"}).json()
        shown = client.get(f"/v1/callback-secrets/{first.json()['id']}").json()
        promoted = client.patch(
            f"/v1/callback-secrets/{second['id']}", json={"is_current": True, "label": "now"}
        ).json()
        listed = client.get("/v1/callback-secrets").json()["items"]
        deleted = client.delete(f"/v1/callback-secrets/{first.json()['id']}")
        gone = client.get(f"/v1/callback-secrets/{first.json()['id']}")
        bad = client.patch(f"/v1/callback-secrets/{second['id']}", json={"is_current": "yes"})
    with sandbox.api(sandbox.new_key()) as other:
        hidden = other.get(f"/v1/callback-secrets/{second['id']}")
    created = first.json()
    assert first.status_code == 201
    assert created["plain_secret"].startswith("whsec_") and len(created["plain_secret"]) > 30
    assert created["is_current"] is True and second["is_current"] is False
    assert "plain_secret" not in shown and shown["label"] == "site"
    assert promoted["is_current"] is True and promoted["label"] == "now"
    assert {s["id"]: s["is_current"] for s in listed} == {created["id"]: False, second["id"]: True}
    assert all("plain_secret" not in s for s in listed)
    assert deleted.status_code == 204 and gone.status_code == 404
    assert bad.status_code == 422 and hidden.status_code == 404
