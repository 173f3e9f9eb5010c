"""The form builder: every input type and bound, and definitions that try to break it."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.template.loader import render_to_string
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runs.forms.inputs import (
    MAX_CHOICES_IN_SELECT,
    MAX_INPUTS,
    Kind,
    from_text,
    parse_inputs,
)
from runs.forms.launch import LaunchForm, RawInputForm, clean_model_id, initial_values
from runs.forms.schema import InputSchema
from tests.launch_support import TEXT_TO_IMAGE_INPUTS


def form_for(inputs: Any, data: dict[str, Any] | None = None, **kwargs: Any) -> LaunchForm:
    parsed = parse_inputs(inputs)
    post = None if data is None else {f"input-{k}": v for k, v in data.items()}
    files = kwargs.pop("files", None)
    return LaunchForm(parsed, post, files, values=initial_values(parsed), **kwargs)


def spec(name: str = "x", **fields: Any) -> dict[str, Any]:
    return {"name": name, **fields}


# ---- types ----


def test_each_type_becomes_its_own_kind_of_field() -> None:
    parsed = parse_inputs(TEXT_TO_IMAGE_INPUTS)
    kinds = {s.name: s.kind for s in parsed.specs}
    assert kinds == {
        "prompt": Kind.PROMPT,
        "aspect_ratio": Kind.CHOICE,
        "num_images": Kind.INTEGER,
        "guidance": Kind.NUMBER,
        "enable_safety": Kind.BOOLEAN,
        "image_url": Kind.MEDIA,
        "image_urls": Kind.MEDIA_LIST,
        "config": Kind.JSON,
    }
    html = form_for(TEXT_TO_IMAGE_INPUTS).as_p()
    assert 'class="prompt"' in html and "<textarea" in html
    assert 'type="number"' in html and 'min="1"' in html and 'max="4"' in html
    assert 'step="any"' in html  # numbers take decimals
    assert 'type="checkbox"' in html
    assert '<option value="16:9">' in html
    assert 'type="file"' in html and 'accept="image/*"' in html and "multiple" in html


def test_defaults_are_filled_and_a_valid_form_gives_json_native_values() -> None:
    form = form_for(
        TEXT_TO_IMAGE_INPUTS,
        {
            "prompt": "a red fox",
            "aspect_ratio": "16:9",
            "num_images": "2",
            "guidance": "7",
            "enable_safety": "on",
            "image_url": "https://example.com/a.png",
            "image_urls": "https://example.com/1.png\nhttps://example.com/2.png",
            "config": '{"seed": 4, "tags": ["a"]}',
        },
    )
    assert form.is_valid(), form.errors
    assert form.input == {
        "prompt": "a red fox",
        "aspect_ratio": "16:9",
        "num_images": 2,
        "guidance": 7,
        "enable_safety": True,
        "image_url": "https://example.com/a.png",
        "image_urls": ["https://example.com/1.png", "https://example.com/2.png"],
        "config": {"seed": 4, "tags": ["a"]},
    }
    unbound = form_for(TEXT_TO_IMAGE_INPUTS)
    assert unbound["aspect_ratio"].value() == "1:1"
    assert unbound["num_images"].value() == 1
    assert unbound["guidance"].value() == 3.5


def test_required_is_marked_and_enforced() -> None:
    form = form_for(TEXT_TO_IMAGE_INPUTS, {"prompt": ""})
    assert not form.is_valid()
    assert form.errors["prompt"] == ["This input is required."]
    html = render_to_string("runs/_launch_field.html", {"view": form.main_views[0], "form": form})
    assert 'class="required"' in html and 'aria-required="true"' in html


@pytest.mark.parametrize(
    ("value", "message"),
    [("0", "Must be at least 1."), ("5", "Must be at most 4."), ("2.5", "Enter a whole number.")],
)
def test_integer_bounds_give_per_field_messages(value: str, message: str) -> None:
    form = form_for(TEXT_TO_IMAGE_INPUTS, {"prompt": "a fox", "num_images": value})
    assert not form.is_valid()
    assert message in form.errors["num_images"][0]


@pytest.mark.parametrize("value", ["-0.1", "20.5", "nan", "inf", "1e400"])
def test_number_bounds_and_non_finite_numbers_are_refused(value: str) -> None:
    form = form_for(TEXT_TO_IMAGE_INPUTS, {"prompt": "a fox", "guidance": value})
    assert not form.is_valid()
    assert "guidance" in form.errors


def test_text_length_bounds() -> None:
    form = form_for(TEXT_TO_IMAGE_INPUTS, {"prompt": "ab"})
    assert form.errors["prompt"] == ["Must be at least 3 characters."]
    form = form_for(TEXT_TO_IMAGE_INPUTS, {"prompt": "x" * 2001})
    assert "prompt" in form.errors


def test_choices_refuse_anything_else_and_keep_their_type() -> None:
    inputs = [spec("steps", variable_type_code="integer", validator_attrs={"choices": [10, 20]})]
    form = form_for(inputs, {"steps": "20"})
    assert form.is_valid(), form.errors
    assert form.input == {"steps": 20}
    assert not form_for(inputs, {"steps": "30"}).is_valid()


@pytest.mark.parametrize(
    "url", ["javascript:alert(1)", "data:image/png;base64,AAAA", "file:///etc/passwd", "ftp://x/y"]
)
def test_image_urls_must_be_http(url: str) -> None:
    form = form_for(TEXT_TO_IMAGE_INPUTS, {"prompt": "a fox", "image_url": url})
    assert form.errors["image_url"] == ["Enter an http:// or https:// address."]
    form = form_for(TEXT_TO_IMAGE_INPUTS, {"prompt": "a fox", "image_urls": f"https://a/b\n{url}"})
    assert "image_urls" in form.errors


def test_url_lists_respect_max_items() -> None:
    urls = "\n".join(f"https://example.com/{i}.png" for i in range(4))
    form = form_for(TEXT_TO_IMAGE_INPUTS, {"prompt": "a fox", "image_urls": urls})
    assert form.errors["image_urls"] == ["Give at most 3 items."]


def test_json_must_parse() -> None:
    form = form_for(TEXT_TO_IMAGE_INPUTS, {"prompt": "a fox", "config": "{nope"})
    assert "not valid JSON" in form.errors["config"][0]


def test_an_uploaded_file_stands_in_for_a_required_image_url() -> None:
    inputs = [spec("image_url", variable_type_code="image", is_required=True)]
    assert form_for(inputs, {"image_url": ""}).errors["image_url"] == [
        "Give a URL or upload a file."
    ]
    png = SimpleUploadedFile("fox.png", b"\x89PNG....", content_type="image/png")
    form = form_for(inputs, {"image_url": ""}, files={"input-image_url__file": png})
    assert form.is_valid(), form.errors
    assert list(form.uploads) == ["image_url"]
    form.set_uploaded("image_url", ["https://assets.example/fox.png"])
    assert form.input == {"image_url": "https://assets.example/fox.png"}


def test_an_upload_of_the_wrong_kind_is_refused() -> None:
    inputs = [spec("image_url", variable_type_code="image")]
    text = SimpleUploadedFile("notes.txt", b"hello", content_type="text/plain")
    form = form_for(inputs, {"image_url": ""}, files={"input-image_url__file": text})
    assert form.errors["image_url__file"] == ["notes.txt is not an image."]


def test_featured_inputs_come_first_and_the_rest_is_advanced() -> None:
    form = form_for(TEXT_TO_IMAGE_INPUTS)
    assert [v.spec.name for v in form.main_views] == ["prompt", "aspect_ratio"]
    assert "num_images" in [v.spec.name for v in form.advanced_views]
    # With nothing featured at all, everything is shown up front.
    plain = form_for([spec("a"), spec("b")])
    assert len(plain.main_views) == 2 and plain.advanced_views == []


def test_optional_boolean_without_default_can_stay_unset() -> None:
    form = form_for([spec("flag", variable_type_code="boolean")], {"flag": "unknown"})
    assert form.is_valid(), form.errors
    assert form.input == {}
    form = form_for([spec("flag", variable_type_code="boolean")], {"flag": "false"})
    assert form.is_valid() and form.input == {"flag": False}


def test_runflow_field_errors_sit_on_their_fields() -> None:
    parsed = parse_inputs(TEXT_TO_IMAGE_INPUTS)
    form = LaunchForm(
        parsed, upstream_errors={"prompt": ["too dull"], "seed": ["unknown input"], "x": 5}
    )
    prompt = next(v for v in form.main_views if v.spec.name == "prompt")
    assert prompt.upstream == ("too dull",)
    assert ("seed", "unknown input") in form.upstream_unplaced


def test_values_the_model_no_longer_lists_are_kept_and_flagged() -> None:
    parsed = parse_inputs(TEXT_TO_IMAGE_INPUTS)
    values = initial_values(parsed, {"prompt": "a fox", "old_input": 3})
    form = LaunchForm(parsed, {"input-prompt": "a fox"}, values=values)
    assert form.extra_values == {"old_input": 3}
    assert form.is_valid(), form.errors
    assert form.input["old_input"] == 3


# ---- hostile definitions ----

HOSTILE: list[Any] = [
    None,
    "not a list",
    42,
    {"prompt": {"name": "prompt"}},
    [None, 1, "x", [], {}],
    [{"name": None}, {"name": ""}, {"name": "x" * 500}, {"name": 12}],
    [{"name": "<script>alert(1)</script>"}, {"name": "a b"}, {"name": "../etc"}],
    [{"name": "dup"}, {"name": "dup", "variable_type_code": "integer"}],
    [{"name": "t", "variable_type_code": "quantum-tensor"}],
    [{"name": "t", "variable_type_code": ["string"]}],
    [{"name": "n", "variable_type_code": "integer", "validator_attrs": {"min": 10, "max": -10}}],
    [{"name": "n", "variable_type_code": "integer", "validator_attrs": {"min": "1e999"}}],
    [{"name": "n", "variable_type_code": "number", "validator_attrs": {"max": float("inf")}}],
    [{"name": "n", "variable_type_code": "number", "validator_attrs": {"min": True}}],
    [{"name": "n", "variable_type_code": "integer", "validator_attrs": {"min": -(10**40)}}],
    [{"name": "n", "variable_type_code": "integer", "validator_attrs": "min=1"}],
    [{"name": "s", "validator_attrs": {"min_length": -5, "max_length": 10**12}}],
    [{"name": "s", "validator_attrs": {"min_length": 50, "max_length": 5}}],
    [{"name": "c", "validator_attrs": {"choices": [{"x": 1}, [1], None, "ok", "ok"]}}],
    [{"name": "c", "validator_attrs": {"choices": [str(i) for i in range(100_000)]}}],
    [{"name": "c", "validator_attrs": {"choices": [str(i) for i in range(2_000)]}}],
    [{"name": "c", "variable_type_code": "integer", "validator_attrs": {"choices": ["a", 1.5]}}],
    [{"name": "d", "variable_type_code": "integer", "default_value": "many"}],
    [{"name": "d", "variable_type_code": "json", "default_value": {"deep": [[[[1]]]]}}],
    [{"name": "d", "variable_type_code": "boolean", "default_value": "maybe"}],
    [{"name": "m", "sort_order": "first", "is_required": "yes", "is_featured": [1]}],
    [{"name": "model_config"}, {"name": "schema"}, {"name": "__class__"}, {"name": "validate"}],
    [{"name": "x", "display_name": "<img src=x onerror=alert(1)>", "description": "<b>hi</b>"}],
    [{"name": f"i{i}"} for i in range(MAX_INPUTS + 50)],
]


@pytest.mark.parametrize("inputs", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_definitions_never_crash_the_form(inputs: Any) -> None:
    parsed = parse_inputs(inputs)
    form = LaunchForm(parsed, values=initial_values(parsed))
    html = "".join(
        render_to_string("runs/_launch_field.html", {"view": view, "form": form})
        for view in form.main_views + form.advanced_views
    )
    assert "<script>" not in html and "<img src=x" not in html and "<b>hi" not in html
    bound = LaunchForm(parsed, {f"input-{n}": "1" for n in parsed.names})
    bound.is_valid()  # either way, never an exception


def test_hostile_definitions_are_explained() -> None:
    assert "used" in parse_inputs([{"name": "dup"}, {"name": "dup"}]).problems[0]
    assert "without a usable name" in parse_inputs([{"name": None}]).problems[0]
    huge = parse_inputs([{"name": "c", "validator_attrs": {"choices": list(range(100_000))}}])
    assert huge.specs[0].kind != Kind.CHOICE and "too many" in huge.specs[0].notes[0]
    many = parse_inputs(
        [{"name": "c", "validator_attrs": {"choices": [str(i) for i in range(2000)]}}]
    )
    field = LaunchForm(many)["c"]
    assert field.widget_type == "text"  # a 2,000-option select is no form
    assert MAX_CHOICES_IN_SELECT < 2000
    assert not LaunchForm(many, {"input-c": "2001"}).is_valid()
    assert LaunchForm(many, {"input-c": "1999"}).is_valid()
    bounds = parse_inputs(
        [{"name": "n", "variable_type_code": "integer", "validator_attrs": {"min": 9, "max": 1}}]
    )
    assert bounds.specs[0].minimum is None and "contradict" in bounds.specs[0].notes[0]
    assert "first 200" in parse_inputs([{"name": f"i{i}"} for i in range(250)]).problems[0]


def test_input_names_that_are_pydantic_attributes_still_validate() -> None:
    parsed = parse_inputs([{"name": "model_config", "is_required": True}, {"name": "schema"}])
    result = InputSchema(parsed.specs).validate({"model_config": "a", "schema": "b"})
    assert result.ok and result.input == {"model_config": "a", "schema": "b"}


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
definition = st.dictionaries(
    st.sampled_from(
        [
            "name",
            "display_name",
            "description",
            "variable_type_code",
            "is_required",
            "default_value",
            "validator_attrs",
            "sort_order",
            "is_featured",
        ]
    ),
    json_values | st.sampled_from(["prompt", "integer", "number", "image", "json", "boolean"]),
    max_size=9,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(definition, max_size=6), st.dictionaries(st.text(max_size=10), st.text(max_size=30))
)
def test_any_json_definition_and_any_post_never_raise(
    definitions: list[Any], post: dict[str, str]
) -> None:
    parsed = parse_inputs(definitions)
    LaunchForm(parsed, values=initial_values(parsed)).as_p()
    form = LaunchForm(parsed, {f"input-{k}": v for k, v in post.items()})
    form.is_valid()
    json.dumps(form.input)  # whatever got through is JSON


# ---- text values (batch lines, CSV cells) ----


def test_values_typed_as_text_follow_their_type() -> None:
    parsed = parse_inputs(TEXT_TO_IMAGE_INPUTS)
    get = parsed.get
    assert from_text(get("num_images"), " 3 ") == 3  # type: ignore[arg-type]
    assert from_text(get("guidance"), "2.5") == 2.5  # type: ignore[arg-type]
    assert from_text(get("enable_safety"), "no") is False  # type: ignore[arg-type]
    assert from_text(get("aspect_ratio"), "16:9") == "16:9"  # type: ignore[arg-type]
    assert from_text(get("image_urls"), "https://a/1 https://a/2") == ["https://a/1", "https://a/2"]  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="allowed"):
        from_text(get("aspect_ratio"), "2:1")  # type: ignore[arg-type]


# ---- the raw JSON form and model ids ----


@pytest.mark.parametrize("text", ["[1, 2]", '"text"', "{bad", ""])
def test_raw_input_must_be_a_json_object(text: str) -> None:
    assert not RawInputForm({"input": text}).is_valid()


def test_raw_input_keeps_the_object() -> None:
    form = RawInputForm({"input": '{"prompt": "a fox", "n": 2}'})
    assert form.is_valid() and form.parsed_input == {"prompt": "a fox", "n": 2}


@pytest.mark.parametrize(
    "model_id", ["google/nano-banana-pro", "bytedance/seedance/2.0/fast/text-to-video", "solo"]
)
def test_model_ids_of_any_depth(model_id: str) -> None:
    assert clean_model_id(f" {model_id}/ ") == model_id


@pytest.mark.parametrize("model_id", ["", "../x", "a/../b", "a//b", "a b", "a/%2e%2e", "/"])
def test_bad_model_ids(model_id: str) -> None:
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError):
        clean_model_id(model_id)
