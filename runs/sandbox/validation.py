"""Check a run's input against the model's ModelInput definitions (→ 422 per field).

Strict on purpose: the site builds its launch forms from the same definitions, so anything
this refuses is a bug in the site's form or client, and the contract tests should see it.
Errors use the FastAPI-style shape ``{"loc": ["body", "input", name], "msg", "type"}``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from runs.sandbox.spec import Spec

MAX_URL = 8192
MAX_DATA_URI = 1024 * 1024
MAX_JSON_INPUT = 16 * 1024

# Given a URL, None when it may be used as an image input, else the reason it may not.
ImageCheck = Callable[[str], str | None]


def error(loc: list[str | int], msg: str, kind: str) -> dict[str, Any]:
    return {"loc": ["body", *loc], "msg": msg, "type": kind}


def validate_input(spec: Spec, data: Any, check_image: ImageCheck) -> list[dict[str, Any]]:
    if not isinstance(data, dict):
        return [error(["input"], "Input should be a valid dictionary", "dict_type")]
    errors: list[dict[str, Any]] = []
    known = {item["name"] for item in spec.inputs}
    for name in data:
        if name not in known:
            errors.append(
                error(["input", name], "Extra inputs are not permitted", "extra_forbidden")
            )
    for item in spec.inputs:
        name = item["name"]
        value = data.get(name)
        if value is None:
            if item["is_required"]:
                errors.append(error(["input", name], "Field required", "missing"))
            continue
        problem = _check(item, value, check_image)
        if problem:
            errors.append(error(["input", name], *problem))
    return errors


def _check(item: dict[str, Any], value: Any, check_image: ImageCheck) -> tuple[str, str] | None:
    kind = item["variable_type_code"]
    attrs = item.get("validator_attrs") or {}
    checker = _CHECKS.get(kind)
    if checker is None:
        return None
    problem = checker(value, attrs, check_image)
    if problem:
        return problem
    choices = attrs.get("choices")
    if choices and value not in choices:
        allowed = ", ".join(repr(choice) for choice in choices)
        return f"Input should be {allowed}", "enum"
    return None


def _string(value: Any, attrs: dict[str, Any], _: ImageCheck) -> tuple[str, str] | None:
    if not isinstance(value, str):
        return "Input should be a valid string", "string_type"
    if "min_length" in attrs and len(value.strip()) < attrs["min_length"]:
        return f"String should have at least {attrs['min_length']} characters", "string_too_short"
    if "max_length" in attrs and len(value) > attrs["max_length"]:
        return f"String should have at most {attrs['max_length']} characters", "string_too_long"
    return None


def _integer(value: Any, attrs: dict[str, Any], _: ImageCheck) -> tuple[str, str] | None:
    if isinstance(value, bool) or not (
        isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    ):
        return "Input should be a valid integer", "int_type"
    return _bounds(value, attrs)


def _number(value: Any, attrs: dict[str, Any], _: ImageCheck) -> tuple[str, str] | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return "Input should be a valid number", "float_type"
    return _bounds(value, attrs)


def _bounds(value: float, attrs: dict[str, Any]) -> tuple[str, str] | None:
    if "min" in attrs and value < attrs["min"]:
        return f"Input should be greater than or equal to {attrs['min']}", "greater_than_equal"
    if "max" in attrs and value > attrs["max"]:
        return f"Input should be less than or equal to {attrs['max']}", "less_than_equal"
    return None


def _boolean(value: Any, attrs: dict[str, Any], _: ImageCheck) -> tuple[str, str] | None:
    return None if isinstance(value, bool) else ("Input should be a valid boolean", "bool_type")


def _image(value: Any, attrs: dict[str, Any], check_image: ImageCheck) -> tuple[str, str] | None:
    problem = image_problem(value, check_image)
    return (problem, "url_parsing") if problem else None


def _images(value: Any, attrs: dict[str, Any], check_image: ImageCheck) -> tuple[str, str] | None:
    if not isinstance(value, list):
        return "Input should be a valid list", "list_type"
    if not value:
        return "List should have at least 1 item", "too_short"
    if "max_items" in attrs and len(value) > attrs["max_items"]:
        return f"List should have at most {attrs['max_items']} items", "too_long"
    for index, entry in enumerate(value):
        problem = image_problem(entry, check_image)
        if problem:
            return f"Item {index + 1}: {problem}", "url_parsing"
    return None


def _json(value: Any, attrs: dict[str, Any], _: ImageCheck) -> tuple[str, str] | None:
    if not isinstance(value, dict | list):
        return "Input should be a JSON object or array", "json_type"
    if len(json.dumps(value)) > MAX_JSON_INPUT:
        return f"JSON should be at most {MAX_JSON_INPUT} bytes", "too_long"
    if isinstance(value, list) and "max_items" in attrs and len(value) > attrs["max_items"]:
        return f"List should have at most {attrs['max_items']} items", "too_long"
    return None


def image_problem(value: Any, check_image: ImageCheck) -> str | None:
    """Runflow takes public http(s) URLs, small data: URIs and runflow://assets/ refs."""
    if not isinstance(value, str) or not value:
        return "Input should be a URL string"
    if value.startswith("data:"):
        if len(value) > MAX_DATA_URI:
            return "data: URIs are limited to 1 MiB; upload the file instead"
        return None if value.startswith("data:image/") else "data: URI must hold an image"
    if value.startswith("runflow://assets/"):
        return check_image(value)
    if len(value) > MAX_URL or any(ord(ch) <= 32 for ch in value):
        return "URL is too long or contains spaces"
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"media URL must use HTTP(S) or data URI, got {parts.scheme or 'nothing'!r}"
    return check_image(value)


_CHECKS: dict[str, Callable[[Any, dict[str, Any], ImageCheck], tuple[str, str] | None]] = {
    "string": _string,
    "integer": _integer,
    "number": _number,
    "boolean": _boolean,
    "image": _image,
    "image_list": _images,
    "json": _json,
}
