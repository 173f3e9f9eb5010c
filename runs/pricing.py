"""Estimate what a launch will cost from the model's price label.

Runflow's catalog gives each model a human price label, not a machine price: "$0.04 per
image", "$0.10/second", "$0.02 per megapixel", "$0.15". We read the few shapes that carry a
number and a unit we can multiply out from the run's input, and answer ``None`` whenever we
cannot be sure: an honest "unknown" beats a wrong number next to a launch button.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from enum import StrEnum
from typing import Any, Protocol


class Unit(StrEnum):
    FLAT = "flat"  # per request / run / call
    ITEM = "item"  # per image / video / output: times the number asked for
    SECOND = "second"
    MINUTE = "minute"
    MEGAPIXEL = "megapixel"


@dataclass(frozen=True)
class Price:
    amount: Decimal
    unit: Unit


class PricedModel(Protocol):
    price_label: str
    inputs: Any


_UNITS: dict[str, Unit] = {
    "request": Unit.FLAT,
    "run": Unit.FLAT,
    "call": Unit.FLAT,
    "generation": Unit.FLAT,
    "prediction": Unit.FLAT,
    "image": Unit.ITEM,
    "img": Unit.ITEM,
    "output": Unit.ITEM,
    "video": Unit.ITEM,
    "clip": Unit.ITEM,
    "audio": Unit.ITEM,
    "second": Unit.SECOND,
    "sec": Unit.SECOND,
    "s": Unit.SECOND,
    "minute": Unit.MINUTE,
    "min": Unit.MINUTE,
    "megapixel": Unit.MEGAPIXEL,
    "mp": Unit.MEGAPIXEL,
}

# "$0.04", "$ 0.04", "US$0.04", "0.04 USD": one amount, then nothing, "each", or "per
# <unit>" / "/ <unit>" / "an <unit>", optionally "of <words>" ("per second of video").
# A label with two amounts (a range, a table) is refused below.
_LABEL = re.compile(
    r"^\s*(?:(?:us)?\$\s*(?P<a1>\d+(?:\.\d+)?)|(?P<a2>\d+(?:\.\d+)?)\s*usd)\s*(?P<rest>.*?)\.?\s*$",
    re.IGNORECASE,
)
_PER_UNIT = re.compile(r"^(?:per|/|an?)\s*(?:output\s+)?(?P<unit>[a-z]+)(?:\s+of\s+[a-z ]+)?$")
_MONEY_ANYWHERE = re.compile(r"\$\s*\d|\d\s*usd", re.IGNORECASE)

# Input names that say how many outputs one run makes, and how long a clip is, as seen in
# Runflow's model pages. The first one present in the input (or with a default) wins.
COUNT_INPUTS = ("num_images", "num_outputs", "number_of_images", "num_videos", "n", "batch_size")
DURATION_INPUTS = ("duration", "duration_seconds", "seconds", "length", "video_length")
_DURATION_VALUE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|secs|seconds?)?\s*$", re.IGNORECASE)
_SIZE_VALUE = re.compile(r"^\s*(\d{2,5})\s*[x\u00d7*]\s*(\d{2,5})\s*$")
_CENT = Decimal("0.000001")


def parse_price_label(label: str | None) -> Price | None:
    """The one amount and unit of a price label, or None when the label is not that simple."""
    if not label:
        return None
    text = label.strip()
    if text.lower() in {"free", "$0", "0"}:
        return Price(Decimal(0), Unit.FLAT)
    if len(_MONEY_ANYWHERE.findall(text)) != 1:
        return None  # no amount, or a range such as "$0.04 to $0.08"
    match = _LABEL.match(text)
    if match is None:
        return None
    try:
        amount = Decimal(match.group("a1") or match.group("a2"))
    except InvalidOperation:
        return None
    rest = " ".join(match.group("rest").lower().split())
    if not rest:
        return Price(amount, Unit.FLAT)
    if rest == "each":
        return Price(amount, Unit.ITEM)
    per = _PER_UNIT.match(rest)
    if per is None:
        return None
    word = per.group("unit")
    unit = _UNITS.get(word) or (_UNITS.get(word[:-1]) if word.endswith("s") else None)
    return Price(amount, unit) if unit else None


def estimate_cost(model: PricedModel | None, input: Mapping[str, Any]) -> Decimal | None:
    """What one run of ``model`` with ``input`` should cost in USD, or None if unknowable."""
    if model is None:
        return None
    price = parse_price_label(model.price_label)
    if price is None:
        return None
    values = _with_defaults(model.inputs, input)
    multiplier: Decimal | None
    if price.unit is Unit.FLAT:
        multiplier = Decimal(1)
    elif price.unit is Unit.ITEM:
        multiplier = _count(values)
    elif price.unit is Unit.SECOND:
        multiplier = _duration(values)
    elif price.unit is Unit.MINUTE:
        seconds = _duration(values)
        multiplier = seconds / 60 if seconds is not None else None
    else:
        pixels = _megapixels(values)
        count = _count(values)
        multiplier = pixels * count if pixels is not None and count is not None else None
    if multiplier is None:
        return None
    return (price.amount * multiplier).quantize(_CENT, rounding=ROUND_HALF_UP)


def _with_defaults(definitions: Any, input: Mapping[str, Any]) -> dict[str, Any]:
    """The input as the model will see it: the model's defaults under what was typed."""
    values: dict[str, Any] = {}
    if isinstance(definitions, list):
        for item in definitions:
            if (
                isinstance(item, Mapping)
                and item.get("name")
                and item.get("default_value") is not None
            ):
                values[str(item["name"])] = item["default_value"]
    values.update({k: v for k, v in input.items() if v not in (None, "")})
    return values


def _number(value: Any) -> Decimal | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float | Decimal):
        result = Decimal(str(value))
    elif isinstance(value, str):
        match = _DURATION_VALUE.match(value)
        if not match:
            return None
        result = Decimal(match.group(1))
    else:
        return None
    return result if result >= 0 else None


def _count(values: Mapping[str, Any]) -> Decimal | None:
    for name in COUNT_INPUTS:
        if name in values:
            number = _number(values[name])
            if number is None or number != number.to_integral_value() or number < 1:
                return None
            return number
    return Decimal(1)


def _duration(values: Mapping[str, Any]) -> Decimal | None:
    for name in DURATION_INPUTS:
        if name in values:
            return _number(values[name])
    return None


def _megapixels(values: Mapping[str, Any]) -> Decimal | None:
    width, height = _number(values.get("width")), _number(values.get("height"))
    if width is None or height is None:
        for name in ("image_size", "size", "resolution"):
            match = _SIZE_VALUE.match(str(values.get(name, "")))
            if match:
                width, height = Decimal(match.group(1)), Decimal(match.group(2))
                break
    if width is None or height is None:
        return None
    return width * height / Decimal(1_000_000)


def format_usd(amount: Decimal | None) -> str:
    """``$51.20``; sub-cent amounts keep their digits (``$0.004``) so they never read as $0."""
    if amount is None:
        return "unknown"
    if amount != 0 and abs(amount) < Decimal("0.01"):
        return f"${amount.normalize():f}"
    return f"${amount.quantize(Decimal('0.01'), rounding=ROUND_HALF_UP):,}"
