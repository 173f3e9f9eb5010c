"""What the launch form and the preset form say when a value is refused, and presets that
already exist under the name being saved."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from django.urls import reverse

from runs.forms.inputs import parse_inputs
from runs.forms.schema import InputSchema
from runs.models import Preset, Run
from tests.conftest import Cast
from tests.launch_support import TEXT_TO_IMAGE_INPUTS, ready
from tests.test_launch_form import form_for

__all__ = ["ready"]

pytestmark = pytest.mark.django_db

MODEL = "acme/text-to-image"


def launch(cast: Cast, who: str = "member", **fields: str) -> Any:
    data = {"launch_token": str(uuid.uuid4())}
    data.update({f"input-{name}": value for name, value in fields.items()})
    return cast.client_for(who).post(reverse("runs:launch", args=[cast.team.uuid, MODEL]), data)


def save_preset(cast: Cast, who: str, name: str, **extra: str) -> Any:
    data = {"preset-name": name, "input-aspect_ratio": "16:9", **extra}
    return cast.client_for(who).post(
        reverse("runs:preset_create", args=[cast.team.uuid, MODEL]), data
    )


# ---- blank and control characters ----


@pytest.mark.parametrize("blank", ["   ", "\n\t  \n"])
def test_a_required_prompt_of_only_spaces_is_missing(blank: str) -> None:
    form = form_for(TEXT_TO_IMAGE_INPUTS, {"prompt": blank})
    assert not form.is_valid()
    assert form.errors["prompt"] == ["This input is required."]


def test_a_blank_required_text_is_missing_in_batch_rows_too() -> None:
    """Batches and presets validate with the same schema as the form."""
    result = InputSchema(parse_inputs(TEXT_TO_IMAGE_INPUTS).specs).validate({"prompt": "    "})
    assert result.errors == {"prompt": ["This input is required."]}


def test_a_prompt_with_spaces_around_words_is_kept_as_typed() -> None:
    form = form_for(TEXT_TO_IMAGE_INPUTS, {"prompt": "  a red fox  "})
    assert form.is_valid(), form.errors
    assert form.input["prompt"] == "  a red fox  "


def test_a_blank_prompt_is_refused_by_the_page_not_sent(ready: Cast) -> None:
    answer = launch(ready, prompt="     ")
    assert answer.status_code == 200
    assert "This input is required." in answer.content.decode()
    assert not Run.objects.exists()


@pytest.mark.parametrize("bad", ["a\x00fox", "a\x1bfox", "a\x7ffox"])
def test_control_characters_are_named_on_their_field(bad: str) -> None:
    form = form_for(TEXT_TO_IMAGE_INPUTS, {"prompt": bad})
    assert not form.is_valid()
    assert form.errors["prompt"] == ["Control characters are not allowed (remove them)."]
    assert not form.non_field_errors()  # no "required" banner for the same field


def test_newlines_and_tabs_are_not_control_characters_here() -> None:
    form = form_for(TEXT_TO_IMAGE_INPUTS, {"prompt": "line one\r\n\tline two"})
    assert form.is_valid(), form.errors


def test_a_nul_byte_on_the_page_says_what_is_wrong(ready: Cast) -> None:
    html = launch(ready, prompt="a red\x00 fox").content.decode()
    assert "Control characters are not allowed" in html
    assert "This input is required" not in html
    assert not Run.objects.exists()


def test_control_characters_in_batch_rows_are_refused_by_the_schema() -> None:
    result = InputSchema(parse_inputs(TEXT_TO_IMAGE_INPUTS).specs).validate({"prompt": "a\x00b"})
    assert result.errors == {"prompt": ["Control characters are not allowed (remove them)."]}


# ---- preset names ----


def test_a_preset_name_over_the_limit_says_the_limit(ready: Cast) -> None:
    answer = save_preset(ready, "member", "n" * 101, **{"input-prompt": "a fox at dusk"})
    html = answer.content.decode()
    assert answer.status_code == 200
    assert "A preset name has at most 100 characters (this one has 101)." in html
    assert "Give the preset a name." not in html
    assert "a fox at dusk" in html  # the values typed are still there
    assert not Preset.objects.exists()


def test_an_empty_preset_name_asks_for_one(ready: Cast) -> None:
    html = save_preset(ready, "member", "   ").content.decode()
    assert "Give the preset a name." in html
    assert not Preset.objects.exists()


def test_a_control_character_in_a_preset_name_is_named(ready: Cast) -> None:
    html = save_preset(ready, "member", "Wide\x00").content.decode()
    assert "Control characters are not allowed" in html
    assert not Preset.objects.exists()


# ---- saving under a name that exists ----


def test_saving_your_own_preset_again_updates_it(ready: Cast) -> None:
    save_preset(ready, "member", "Wide")
    answer = save_preset(ready, "member", "Wide", **{"input-num_images": "3"})
    assert answer.status_code == 302
    preset = Preset.objects.get()
    assert preset.input["num_images"] == 3 and preset.created_by == ready.member


def test_a_teammates_preset_is_not_overwritten_by_a_member(ready: Cast) -> None:
    """Overwriting is deleting the old values: the same people as for deleting may do it."""
    save_preset(ready, "admin", "Wide")
    answer = save_preset(ready, "member", "Wide", **{"input-num_images": "3"})
    html = answer.content.decode()
    assert answer.status_code == 200
    assert "A preset named “Wide” by ada already exists." in html
    assert "only ada or a team admin can replace it" in html
    assert 'name="preset-overwrite"' not in html
    preset = Preset.objects.get()
    assert "num_images" not in preset.input and preset.created_by == ready.admin
    # Even with a made-up confirmation.
    save_preset(ready, "member", "Wide", **{"preset-overwrite": str(preset.uuid)})
    assert Preset.objects.get().created_by == ready.admin


def test_an_admin_is_asked_before_overwriting_a_teammates_preset(ready: Cast) -> None:
    save_preset(ready, "member", "Wide")
    preset = Preset.objects.get()
    answer = save_preset(ready, "admin", "Wide", **{"input-num_images": "3"})
    html = answer.content.decode()
    assert answer.status_code == 200
    assert "A preset named “Wide” by mo already exists." in html
    # The page offers the overwrite, pinned to the preset it showed.
    assert f'name="preset-overwrite" value="{preset.uuid}"' in html
    preset.refresh_from_db()
    assert "num_images" not in preset.input and preset.created_by == ready.member

    answer = save_preset(
        ready, "admin", "Wide", **{"input-num_images": "3", "preset-overwrite": str(preset.uuid)}
    )
    assert answer.status_code == 302
    preset.refresh_from_db()
    assert preset.input["num_images"] == 3 and preset.created_by == ready.admin


def test_a_confirmation_for_another_preset_does_not_overwrite(ready: Cast) -> None:
    """The preset confirmed was deleted and made again meanwhile: ask again."""
    save_preset(ready, "member", "Wide")
    answer = save_preset(
        ready, "admin", "Wide", **{"input-num_images": "3", "preset-overwrite": str(uuid.uuid4())}
    )
    assert answer.status_code == 200
    assert Preset.objects.get().created_by == ready.member
