"""Formatting for money and durations on the usage, budgets and retention pages."""

from __future__ import annotations

from decimal import Decimal

from django import template

from runs.pricing import format_usd
from runs.usage import format_duration

register = template.Library()


@register.filter
def usd(value: Decimal | int | float | str | None) -> str:
    if value is None or value == "":
        return "—"
    return format_usd(Decimal(str(value)))


@register.filter
def duration_ms(value: int | None) -> str:
    return format_duration(value)


@register.filter
def filesize_or_dash(value: int | None) -> str:
    from django.template.defaultfilters import filesizeformat

    return filesizeformat(value) if value else "—"
