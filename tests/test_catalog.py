"""The catalog: syncing every page and each model's detail, the Models page, a model's page."""

from __future__ import annotations

import io
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from PIL import Image

from runs import catalog
from runs.archive import Downloaded
from runs.mediainfo import Sniffed
from runs.models import Run, RunflowModel
from runs.runflow import RunflowClient
from runs.tasks.catalog import request_sync, sync_catalog
from tests.conftest import ADMIN_ONLY_EXPECTED, READ_EXPECTED, Cast, assert_access
from tests.launch_support import (
    TEXT_TO_IMAGE_INPUTS,
    FakeRunflow,
    api_url,
    connect,
    fake_runflow,
    make_model,
)

__all__ = ["fake_runflow"]

pytestmark = pytest.mark.django_db


def listed(model_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": model_id,
        "name": model_id.split("/")[-1].replace("-", " ").title(),
        "description": f"About {model_id}.",
        "category_code": "text-to-image",
        "price_label": "$0.04 per image",
        "outputs": [{"name": "images", "variable_type_code": "image_list"}],
        "inputs": TEXT_TO_IMAGE_INPUTS,
        **extra,
    }


@pytest.fixture
def catalog_fake(fake_runflow: FakeRunflow) -> FakeRunflow:
    fake_runflow.models = [
        listed("acme/text-to-image"),
        listed(
            "acme/sound", category_code="text-to-audio", outputs=[{"variable_type_code": "audio"}]
        ),
        listed(
            "bytedance/seedance/2.0/fast/text-to-video", outputs=[{"variable_type_code": "video"}]
        ),
        listed("acme/retired", status_code="inactive"),
        listed("evil/cover", cover_url="javascript:alert(1)"),
    ]
    return fake_runflow


def client_for_fake() -> RunflowClient:
    from runs.connection import keys

    return keys.RunflowClient(api_url(), "rf_live_LaunchTestKey0123456789")  # type: ignore[no-any-return]


# ---- sync ----


def test_sync_reads_every_page_and_every_detail(catalog_fake: FakeRunflow) -> None:
    result = catalog.sync_endpoint(client_for_fake(), api_url(), covers=False)
    assert result.ok and result.listed == 5 and result.created == 5
    assert catalog_fake.count("list models") == 2  # followed the cursor
    assert catalog_fake.count("get model") == 5
    video = RunflowModel.objects.get(model_id="bytedance/seedance/2.0/fast/text-to-video")
    assert video.output_kind == "video" and video.price_label == "$0.04 per image"
    assert [i["name"] for i in video.inputs][:2] == ["prompt", "aspect_ratio"]
    assert not RunflowModel.objects.get(model_id="acme/retired").is_available
    assert RunflowModel.objects.get(model_id="evil/cover").cover_url == ""


def test_a_model_gone_from_a_complete_listing_is_marked_unavailable(
    catalog_fake: FakeRunflow,
) -> None:
    catalog.sync_endpoint(client_for_fake(), api_url(), covers=False)
    catalog_fake.models = catalog_fake.models[:2]
    result = catalog.sync_endpoint(client_for_fake(), api_url(), covers=False)
    assert result.retired == 2
    available = set(
        RunflowModel.objects.filter(is_available=True).values_list("model_id", flat=True)
    )
    assert available == {"acme/text-to-image", "acme/sound"}


def test_a_listing_cut_short_retires_nothing(catalog_fake: FakeRunflow) -> None:
    catalog.sync_endpoint(client_for_fake(), api_url(), covers=False)
    catalog_fake.fail("list models", None, *[503] * 5)  # page 1 fine, page 2 down
    result = catalog.sync_endpoint(client_for_fake(), api_url(), covers=False)
    assert not result.ok and "unavailable" in result.error
    assert RunflowModel.objects.filter(is_available=True).count() == 4


def test_a_detail_that_fails_keeps_what_the_list_said(catalog_fake: FakeRunflow) -> None:
    catalog_fake.fail("get model", 500, 500, 500, 500, 500)
    result = catalog.sync_endpoint(client_for_fake(), api_url(), covers=False)
    assert result.ok and len(result.detail_errors) == 1
    assert RunflowModel.objects.count() == 5


def test_the_task_syncs_with_a_teams_key_and_remembers_the_outcome(
    cast: Cast, catalog_fake: FakeRunflow, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(catalog, "copy_cover", lambda model: None)
    connect(cast.team)
    summary = sync_catalog.enqueue(api_url()).return_value
    assert summary.startswith("Catalog synced: 5 models listed")
    assert catalog.last_sync(api_url())["ok"] is True  # type: ignore[index]
    assert RunflowModel.objects.count() == 5


def test_without_any_key_the_task_says_so(db: None) -> None:
    summary = sync_catalog.enqueue("https://nowhere.example").return_value
    assert "no team has a usable API key" in summary


def test_requests_are_deduplicated(cast: Cast, catalog_fake: FakeRunflow, settings: Any) -> None:
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    connect(cast.team)
    from django.core.cache import cache

    cache.add(catalog._status_key(api_url()) + ":queued", 1, 60)  # one is already queued
    assert request_sync(api_url()) is False
    assert catalog_fake.requests == []
    cache.clear()


# ---- covers ----


def png_bytes() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (1200, 800), (10, 120, 200)).save(out, format="PNG")
    return out.getvalue()


def test_covers_are_copied_reencoded_and_served_only_to_the_team(
    cast: Cast, monkeypatch: pytest.MonkeyPatch, settings: Any, tmp_path: Any
) -> None:
    settings.MEDIA_ROOT = tmp_path
    data = png_bytes()

    def fake_download(url: str, **kwargs: Any) -> Downloaded:
        assert url == "https://cdn.example/cover.png"
        return Downloaded(io.BytesIO(data), len(data), "x", Sniffed("image/png", "image", "png"))

    monkeypatch.setattr("runs.archive.download", fake_download)
    model = make_model(cover_url="https://cdn.example/cover.png")
    catalog.copy_cover(model)
    model.refresh_from_db()
    assert model.cover_file.name.startswith("covers/")
    digest = model.cover_file.name.removeprefix("covers/").removesuffix(".jpg")
    url = reverse("runs:model_cover", args=[cast.team.uuid, digest])
    assert_access(cast, "get", url, READ_EXPECTED)
    response = cast.client_for("viewer").get(url)
    assert response["Content-Type"] == "image/jpeg"
    image = Image.open(io.BytesIO(b"".join(response.streaming_content)))  # type: ignore[attr-defined]
    assert image.format == "JPEG" and max(image.size) <= 640
    page = cast.client_for("viewer").get(reverse("runs:models", args=[cast.team.uuid]))
    assert url in page.content.decode()
    assert "cdn.example" not in page.content.decode()  # never the foreign URL


def test_a_cover_that_is_not_an_image_is_not_kept(
    cast: Cast, monkeypatch: pytest.MonkeyPatch, settings: Any, tmp_path: Any
) -> None:
    settings.MEDIA_ROOT = tmp_path

    def fake_download(url: str, **kwargs: Any) -> Downloaded:
        return Downloaded(io.BytesIO(b"RIFF"), 4, "x", Sniffed("audio/wav", "audio", "wav"))

    monkeypatch.setattr("runs.archive.download", fake_download)
    model = make_model(cover_url="https://cdn.example/cover.png")
    catalog.copy_cover(model)
    model.refresh_from_db()
    assert not model.cover_file


def test_cover_urls_of_other_teams_endpoints_are_404(cast: Cast) -> None:
    url = reverse("runs:model_cover", args=[cast.team.uuid, "a" * 64])
    assert cast.client_for("member").get(url).status_code == 404


# ---- the Models page ----


@pytest.fixture
def models(cast: Cast) -> list[RunflowModel]:
    return [
        make_model("acme/text-to-image"),
        make_model("acme/sound", display_name="Acme Sound", output_kind="audio", category="audio"),
        make_model("acme/old", display_name="Old", is_available=False),
    ]


def test_models_page_access(cast: Cast, models: Any) -> None:
    assert_access(cast, "get", reverse("runs:models", args=[cast.team.uuid]), READ_EXPECTED)


def test_models_page_lists_filters_and_searches(cast: Cast, models: Any) -> None:
    client = cast.client_for("viewer")
    url = reverse("runs:models", args=[cast.team.uuid])
    html = client.get(url).content.decode()
    assert "Acme Text to Image" in html and "Acme Sound" in html and ">Old<" not in html
    assert "$0.04 per image" in html
    assert "Launch</a>" not in html  # viewers see no launch buttons
    assert "Acme Sound" not in client.get(url, {"type": "image"}).content.decode()
    assert "Acme Text" not in client.get(url, {"category": "audio"}).content.decode()
    found = client.get(url, {"q": "sound"}).content.decode()
    assert "Acme Sound" in found and "Acme Text" not in found
    partial = client.get(url, {"q": "sound"}, headers={"HX-Request": "true"})
    assert b"<html" not in partial.content and b"Acme Sound" in partial.content
    assert "Launch</a>" in cast.client_for("member").get(url).content.decode()


def test_models_page_queries_do_not_grow_with_the_catalog(cast: Cast) -> None:
    client = cast.client_for("member")
    url = reverse("runs:models", args=[cast.team.uuid])

    def queries() -> int:
        with CaptureQueriesContext(connection) as context:
            assert client.get(url).status_code == 200
        return len(context)

    make_model("a/one")
    queries()  # the first request also stores the session's current team
    few = queries()
    for number in range(20):
        make_model(f"a/m{number}")
    assert queries() == few


def test_sync_button_is_for_team_admins(
    cast: Cast, catalog_fake: FakeRunflow, monkeypatch: Any
) -> None:
    monkeypatch.setattr(catalog, "copy_cover", lambda model: None)
    connect(cast.team)
    url = reverse("runs:models_sync", args=[cast.team.uuid])
    assert_access(cast, "post", url, ADMIN_ONLY_EXPECTED)
    assert cast.client_for("admin").get(url).status_code == 405
    assert RunflowModel.objects.filter(api_url=api_url()).count() == 5
    page = cast.client_for("admin").get(reverse("runs:models", args=[cast.team.uuid]))
    assert "Sync catalog" in page.content.decode()
    assert (
        "Sync catalog"
        not in cast.client_for("member")
        .get(reverse("runs:models", args=[cast.team.uuid]))
        .content.decode()
    )


def test_sync_without_a_key_says_what_to_do(cast: Cast) -> None:
    response = cast.client_for("admin").post(
        reverse("runs:models_sync", args=[cast.team.uuid]), follow=True
    )
    assert "Connect the team to Runflow first" in response.content.decode()


# ---- a model's page ----


def test_model_page_shows_inputs_examples_and_the_teams_recent_runs(cast: Cast) -> None:
    model = make_model(
        "bytedance/seedance/2.0/fast/text-to-video",
        examples=[{"title": "Waves <script>", "input": {"prompt": "<img src=x onerror=alert(1)>"}}],
        description="<script>alert('x')</script> Makes video.",
    )
    Run.objects.create(
        team=cast.team,
        api_url=api_url(),
        model_id=model.model_id,
        input={"prompt": "ocean at dusk"},
    )
    Run.objects.create(
        team=cast.other_team, api_url=api_url(), model_id=model.model_id, input={"prompt": "secret"}
    )
    url = reverse("runs:model", args=[cast.team.uuid, model.model_id])
    assert_access(cast, "get", url, READ_EXPECTED)
    html = cast.client_for("viewer").get(url).content.decode()
    assert "ocean at dusk" in html and "secret" not in html
    assert "aspect_ratio" in html and "16:9" in html
    assert "<script>alert" not in html and "<img src=x" not in html
    assert "&lt;img src=x" in html


def test_unknown_model_page_sends_launchers_to_the_raw_form(cast: Cast) -> None:
    url = reverse("runs:model", args=[cast.team.uuid, "a/b"])
    assert cast.client_for("member").get(url)["Location"] == reverse(
        "runs:launch", args=[cast.team.uuid, "a/b"]
    )
    assert cast.client_for("viewer").get(url).status_code == 404
