"""Template helpers of the launch area: ``{% load launch_tags %}``."""

from __future__ import annotations

import json
from typing import Any

from django import template

from runs.curl import curl_for_run

register = template.Library()


@register.filter
def curl_command(run: Any) -> str:
    """``{{ run|curl_command }}``: the run as a curl command with ``$RUNFLOW_API_KEY``.

    Autoescaped like any other text: put it in a ``<pre>`` or a textarea, never ``|safe``.
    """
    try:
        return curl_for_run(run)
    except (AttributeError, TypeError, ValueError):
        return ""


@register.filter
def cover_digest(model: Any) -> str:
    """The digest part of a model's stored cover (``covers/<digest>.jpg``), or ""."""
    name = getattr(getattr(model, "cover_file", None), "name", "") or ""
    if not name.startswith("covers/") or not name.endswith(".jpg"):
        return ""
    digest = name.removeprefix("covers/").removesuffix(".jpg")
    return digest if len(digest) == 64 and all(c in "0123456789abcdef" for c in digest) else ""


@register.filter
def pretty_json(value: Any) -> str:
    """Foreign JSON shown as indented text (autoescaped by the template, never ``|safe``)."""
    try:
        return json.dumps(value, indent=2, ensure_ascii=False, default=str)[:20_000]
    except (TypeError, ValueError):
        return ""


@register.filter
def input_pairs(value: Any) -> list[tuple[str, str]]:
    """A stored input as (name, short text) pairs; ``.items`` in a template would look up
    a key named "items" first."""
    if not isinstance(value, dict):
        return []
    return [(str(k), json.dumps(v, ensure_ascii=False)[:60]) for k, v in list(value.items())[:20]]
