"""Presets: saved from the launch form, shared in the team, applied, flagged when stale."""

from __future__ import annotations

import pytest
from django.urls import reverse

from runs.forms.inputs import parse_inputs
from runs.forms.presets import preset_fit
from runs.models import Preset
from tests.conftest import READ_EXPECTED, WRITE_EXPECTED, Cast, assert_access
from tests.launch_support import TEXT_TO_IMAGE_INPUTS, make_model

pytestmark = pytest.mark.django_db

MODEL = "acme/text-to-image"


def create_url(cast: Cast, model_id: str = MODEL) -> str:
    return reverse("runs:preset_create", args=[cast.team.uuid, model_id])


@pytest.fixture
def model(cast: Cast) -> None:
    make_model(MODEL)


def test_presets_page_access(cast: Cast) -> None:
    assert_access(cast, "get", reverse("runs:presets", args=[cast.team.uuid]), READ_EXPECTED)


def test_saving_a_preset_needs_a_launcher(cast: Cast, model: None) -> None:
    data = {"preset-name": "Square", "input-aspect_ratio": "1:1"}
    assert_access(cast, "post", create_url(cast), WRITE_EXPECTED, data)
    # Member then admin, one name: the admin is asked before replacing the member's preset.
    assert Preset.objects.count() == 1
    assert cast.client_for("member").get(create_url(cast)).status_code == 405


def test_a_preset_keeps_the_values_and_needs_no_required_input(cast: Cast, model: None) -> None:
    response = cast.client_for("member").post(
        create_url(cast),
        {"preset-name": "  Wide   shot ", "input-aspect_ratio": "16:9", "input-num_images": "3"},
    )
    preset = Preset.objects.get()
    assert preset.name == "Wide shot" and preset.team == cast.team
    assert preset.input["aspect_ratio"] == "16:9" and preset.input["num_images"] == 3
    assert "prompt" not in preset.input
    launch = reverse("runs:launch", args=[cast.team.uuid, MODEL])
    assert response["Location"] == f"{launch}?preset={preset.uuid}"


def test_invalid_values_are_not_saved_and_come_back(cast: Cast, model: None) -> None:
    response = cast.client_for("member").post(
        create_url(cast), {"preset-name": "Too many", "input-num_images": "40"}
    )
    assert response.status_code == 200
    assert "Must be at most 4." in response.content.decode()
    assert not Preset.objects.exists()


def test_applying_a_preset_prefills_the_form(cast: Cast, model: None) -> None:
    preset = Preset.objects.create(
        team=cast.team,
        model_id=MODEL,
        name="Wide",
        input={"aspect_ratio": "16:9", "prompt": "dunes"},
    )
    launch = reverse("runs:launch", args=[cast.team.uuid, MODEL])
    html = cast.client_for("admin").get(launch, {"preset": str(preset.uuid)}).content.decode()
    assert "dunes" in html and '<option value="16:9" selected>' in html
    assert "Preset “Wide” applied" in html
    # Another team's preset is not applied.
    foreign = Preset.objects.create(
        team=cast.other_team, model_id=MODEL, name="X", input={"prompt": "leak"}
    )
    html = cast.client_for("admin").get(launch, {"preset": str(foreign.uuid)}).content.decode()
    assert "leak" not in html


def test_a_preset_that_no_longer_matches_is_flagged(cast: Cast, model: None) -> None:
    Preset.objects.create(
        team=cast.team,
        model_id=MODEL,
        name="Old",
        input={"aspect_ratio": "4:3", "steps": 30, "prompt": "x"},
    )
    fit = preset_fit(Preset.objects.get().input, parse_inputs(TEXT_TO_IMAGE_INPUTS))
    assert fit.stale and fit.unknown == ("steps",) and "aspect_ratio" in fit.invalid
    html = (
        cast.client_for("viewer")
        .get(reverse("runs:presets", args=[cast.team.uuid]))
        .content.decode()
    )
    assert "no longer matches" in html and "steps" in html
    launch = cast.client_for("member").get(reverse("runs:launch", args=[cast.team.uuid, MODEL]))
    assert "no longer matches" in launch.content.decode()


def test_a_matching_preset_is_not_flagged() -> None:
    fit = preset_fit({"aspect_ratio": "1:1", "num_images": 2}, parse_inputs(TEXT_TO_IMAGE_INPUTS))
    assert not fit.stale
    assert preset_fit("nonsense", parse_inputs(TEXT_TO_IMAGE_INPUTS)).stale
    assert not preset_fit({"anything": 1}, None).stale  # raw-JSON models have no rules


def test_only_the_author_or_an_admin_deletes(cast: Cast, model: None) -> None:
    def fresh() -> str:
        preset = Preset.objects.create(
            team=cast.team,
            model_id=MODEL,
            name=f"p{Preset.objects.count()}",
            created_by=cast.member,
        )
        return reverse("runs:preset_delete", args=[cast.team.uuid, preset.uuid])

    assert_access(cast, "post", fresh, WRITE_EXPECTED)
    other = Preset.objects.create(
        team=cast.team, model_id=MODEL, name="admins", created_by=cast.admin
    )
    url = reverse("runs:preset_delete", args=[cast.team.uuid, other.uuid])
    assert cast.client_for("member").post(url).status_code == 403
    assert cast.client_for("admin").post(url).status_code == 302
    assert not Preset.objects.filter(pk=other.pk).exists()


def test_presets_of_raw_json_models(cast: Cast) -> None:
    url = create_url(cast, "some/unlisted/model")
    cast.client_for("member").post(url, {"preset-name": "Raw", "input": '{"seed": 5}'})
    assert Preset.objects.get().input == {"seed": 5}
