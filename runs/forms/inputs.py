"""Model input definitions, read defensively, and the pydantic model built from them.

A ModelInput comes from Runflow (or from whoever runs the endpoint a team points at), so
every field of it is foreign data: names may be missing or repeated, types unknown, enums
enormous, bounds absurd (min above max, infinities, strings). ``parse_inputs`` turns
whatever arrives into a list of ``InputSpec`` that is always safe to render, plus plain
sentences about what it had to leave out. ``InputSchema`` builds a pydantic model from the
specs; it is the one local validator for the launch form, batch rows, presets and the raw
JSON form, so all of them give the same per-field messages.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any

# Limits that keep a hostile definition from turning into a huge page or a slow request.
MAX_INPUTS = 200
MAX_NAME_LENGTH = 100
MAX_LABEL_LENGTH = 200
MAX_DESCRIPTION_LENGTH = 2_000
MAX_CHOICES_KEPT = 5_000  # more than this: the list is not enforced at all (and we say so)
MAX_CHOICES_IN_SELECT = 300  # more than this: a text box checked against the list
MAX_URL_LENGTH = 2_048
MAX_TEXT_LENGTH = 100_000
MAX_JSON_CHARS = 100_000
# Bounds past these are not bounds a person can mean; they are dropped, not enforced.
MAX_ABS_BOUND = Decimal(10) ** 15

NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")
# C0 and C1 control characters and DEL, except tab and line breaks (a prompt has lines).
# A NUL byte cannot even be stored in PostgreSQL text; the others are invisible in a form
# and only arrive by paste or from a script: nothing a model is meant to read.
CONTROL_CHARACTERS_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
CONTROL_CHARACTERS_MESSAGE = "Control characters are not allowed (remove them)."


class Kind(StrEnum):
    TEXT = "text"
    LONG_TEXT = "long_text"
    PROMPT = "prompt"
    INTEGER = "integer"
    NUMBER = "number"
    BOOLEAN = "boolean"
    CHOICE = "choice"
    MEDIA = "media"  # one URL, or a file uploaded through Runflow's asset upload
    MEDIA_LIST = "media_list"  # several URLs (e.g. image_urls)
    JSON = "json"


# Runflow's variable_type_code values and the spellings seen in the wild, to a base type.
_TYPE_ALIASES: dict[str, str] = {
    "string": "string",
    "str": "string",
    "text": "string",
    "integer": "integer",
    "int": "integer",
    "number": "number",
    "float": "number",
    "double": "number",
    "decimal": "number",
    "boolean": "boolean",
    "bool": "boolean",
    "image": "media",
    "image_url": "media",
    "video": "media",
    "video_url": "media",
    "audio": "media",
    "audio_url": "media",
    "file": "media",
    "media": "media",
    "url": "media",
    "uri": "media",
    "image_urls": "media_list",
    "image_list": "media_list",
    "images": "media_list",
    "video_urls": "media_list",
    "audio_urls": "media_list",
    "file_urls": "media_list",
    "url_list": "media_list",
    "json": "json",
    "object": "json",
    "dict": "json",
    "array": "json",
    "list": "json",
}
_MEDIA_ACCEPT = {"image": "image/*", "video": "video/*", "audio": "audio/*"}
_PROMPT_NAMES = {"prompt", "negative_prompt", "text_prompt", "system_prompt"}
_LONG_TEXT_NAMES = {"text", "lyrics", "script", "description", "caption"}
_TRUE = {"true", "1", "yes", "on", "y", "t"}
_FALSE = {"false", "0", "no", "off", "n", "f"}


@dataclass(frozen=True)
class InputSpec:
    """One input as the launch form shows it; every attribute is already safe to use."""

    name: str
    label: str
    kind: Kind
    type_code: str = "string"  # what Runflow called it, for display
    description: str = ""
    required: bool = False
    default: Any = None
    has_default: bool = False
    featured: bool = False
    sort_order: int = 0
    choices: tuple[Any, ...] = ()  # typed allowed values, in Runflow's order
    choice_labels: tuple[str, ...] = ()
    minimum: int | float | None = None
    maximum: int | float | None = None
    min_length: int | None = None
    max_length: int | None = None
    max_items: int | None = None
    media_type: str = ""  # image, video, audio or "" (any file)
    notes: tuple[str, ...] = ()

    @property
    def accept(self) -> str:
        """The file input's ``accept`` attribute."""
        return _MEDIA_ACCEPT.get(self.media_type, "")

    @property
    def is_media(self) -> bool:
        return self.kind in (Kind.MEDIA, Kind.MEDIA_LIST)

    @property
    def choice_map(self) -> dict[str, Any]:
        """Allowed values by their text form (how a form or a CSV cell carries them)."""
        return {choice_key(value): value for value in self.choices}

    @property
    def bounds_text(self) -> str:
        unit = " characters" if self.kind in (Kind.TEXT, Kind.LONG_TEXT, Kind.PROMPT) else ""
        low, high = (self.min_length, self.max_length) if unit else (self.minimum, self.maximum)
        if self.kind == Kind.MEDIA_LIST:
            return f"up to {self.max_items} URLs" if self.max_items else ""
        if low is not None and high is not None:
            return f"{low} to {high}{unit}"
        if low is not None:
            return f"at least {low}{unit}"
        if high is not None:
            return f"at most {high}{unit}"
        return ""


@dataclass(frozen=True)
class ParsedInputs:
    specs: tuple[InputSpec, ...]
    problems: tuple[str, ...] = ()

    @property
    def names(self) -> list[str]:
        return [spec.name for spec in self.specs]

    def get(self, name: str) -> InputSpec | None:
        return next((spec for spec in self.specs if spec.name == name), None)

    @property
    def featured(self) -> list[InputSpec]:
        if not any(spec.featured or spec.required for spec in self.specs):
            return list(self.specs)
        return [spec for spec in self.specs if spec.featured or spec.required]

    @property
    def advanced(self) -> list[InputSpec]:
        featured = {spec.name for spec in self.featured}
        return [spec for spec in self.specs if spec.name not in featured]

    @property
    def text_specs(self) -> list[InputSpec]:
        return [s for s in self.specs if s.kind in (Kind.PROMPT, Kind.TEXT, Kind.LONG_TEXT)]


def has_control_characters(text: str) -> bool:
    return CONTROL_CHARACTERS_RE.search(text) is not None


def is_blank(value: Any) -> bool:
    """A string with nothing but whitespace: for a required input, the same as missing."""
    return isinstance(value, str) and not value.strip()


def choice_key(value: Any) -> str:
    """The text form of an allowed value: ``True`` → ``true``, ``2`` → ``2``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def parse_inputs(raw: Any) -> ParsedInputs:
    """Read ModelInput definitions into specs, never raising, whatever ``raw`` is."""
    problems: list[str] = []
    if raw in (None, "", [], {}):
        return ParsedInputs(())
    if isinstance(raw, Mapping):
        raw = list(raw.values()) if all(isinstance(v, Mapping) for v in raw.values()) else [raw]
    if not isinstance(raw, list | tuple):
        return ParsedInputs((), ("The model's input definitions are not a list; use raw JSON.",))
    if len(raw) > MAX_INPUTS:
        problems.append(f"Only the first {MAX_INPUTS} of {len(raw)} inputs are shown.")
        raw = raw[:MAX_INPUTS]
    specs: list[tuple[int, InputSpec]] = []
    seen: set[str] = set()
    unnamed = 0
    for position, item in enumerate(raw):
        if not isinstance(item, Mapping):
            unnamed += 1
            continue
        name = item.get("name")
        if not isinstance(name, str) or not name or len(name) > MAX_NAME_LENGTH:
            unnamed += 1
            continue
        if not NAME_RE.match(name):
            problems.append(f"The input {name[:40]!r} has a name this form cannot carry.")
            continue
        if name in seen:
            problems.append(f"The input {name!r} is defined twice; the first one is used.")
            continue
        seen.add(name)
        try:
            spec = _spec_from(item, name)
        except Exception as exc:  # a definition must never take the page down
            problems.append(f"The input {name!r} could not be read ({type(exc).__name__}).")
            continue
        specs.append((position, spec))
    if unnamed:
        problems.append(
            f"{unnamed} input definition{'s' if unnamed != 1 else ''} without a usable name "
            "could not be shown."
        )
    specs.sort(key=lambda pair: (pair[1].sort_order, pair[0]))
    return ParsedInputs(tuple(spec for _, spec in specs), tuple(problems))


def _spec_from(item: Mapping[str, Any], name: str) -> InputSpec:
    notes: list[str] = []
    attrs = item.get("validator_attrs")
    attrs = attrs if isinstance(attrs, Mapping) else {}
    type_code = _short_text(item.get("variable_type_code"), 40).lower() or "string"
    base = _TYPE_ALIASES.get(type_code)
    if base is None:
        base = "string"
        if type_code.endswith("_urls") or type_code.endswith("_list"):
            base = "media_list"
        notes.append(f"Runflow calls this type “{type_code}”; it is sent as text.")
    if base == "json" and name.endswith("_urls"):
        base = "media_list"
    label = _short_text(item.get("display_name"), MAX_LABEL_LENGTH) or _humanize(name)
    description = _short_text(item.get("description"), MAX_DESCRIPTION_LENGTH)
    required = _truthy(item.get("is_required"))
    featured = _truthy(item.get("is_featured"))
    sort_order = _int_or(item.get("sort_order"), 0)

    choices, labels, choice_note = _choices(attrs, base)
    if choice_note:
        notes.append(choice_note)
    minimum = _bound(attrs, ("min", "minimum", "ge", "min_value"), base)
    maximum = _bound(attrs, ("max", "maximum", "le", "max_value"), base)
    if minimum is not None and maximum is not None and minimum > maximum:
        notes.append("Its bounds contradict each other (min above max); they are not enforced.")
        minimum = maximum = None
    min_length = _length(attrs.get("min_length"))
    max_length = _length(attrs.get("max_length"))
    if min_length is not None and max_length is not None and min_length > max_length:
        min_length = max_length = None
    max_items = _length(attrs.get("max_items")) or None

    kind = _kind(base, name, choices, max_length)
    media_type = ""
    if kind in (Kind.MEDIA, Kind.MEDIA_LIST):
        media_type = next((m for m in ("image", "video", "audio") if m in type_code), "")
        if not media_type:
            media_type = next((m for m in ("image", "video", "audio") if m in name.lower()), "")
    spec = InputSpec(
        name=name,
        label=label,
        kind=kind,
        type_code=type_code,
        description=description,
        required=required,
        featured=featured,
        sort_order=sort_order,
        choices=choices,
        choice_labels=labels,
        minimum=minimum if kind in (Kind.INTEGER, Kind.NUMBER) else None,
        maximum=maximum if kind in (Kind.INTEGER, Kind.NUMBER) else None,
        min_length=min_length if kind in (Kind.TEXT, Kind.LONG_TEXT, Kind.PROMPT) else None,
        max_length=max_length if kind in (Kind.TEXT, Kind.LONG_TEXT, Kind.PROMPT) else None,
        max_items=max_items if kind == Kind.MEDIA_LIST else None,
        media_type=media_type,
    )
    default, has_default = _default(spec, item)
    if "default_value" in item and item["default_value"] is not None and not has_default:
        notes.append("Its default value does not fit its own definition and is not used.")
    return InputSpec(
        **{**spec.__dict__, "default": default, "has_default": has_default, "notes": tuple(notes)}
    )


def _kind(base: str, name: str, choices: tuple[Any, ...], max_length: int | None) -> Kind:
    if choices and base in ("string", "integer", "number", "boolean"):
        return Kind.CHOICE
    if base == "string":
        lowered = name.lower()
        if lowered in _PROMPT_NAMES or lowered.endswith("prompt") or (max_length or 0) >= 2000:
            return Kind.PROMPT
        if lowered in _LONG_TEXT_NAMES or (max_length or 0) > 300:
            return Kind.LONG_TEXT
        return Kind.TEXT
    return Kind(base)


def _choices(attrs: Mapping[str, Any], base: str) -> tuple[tuple[Any, ...], tuple[str, ...], str]:
    raw = next(
        (
            attrs[key]
            for key in ("choices", "enum", "options", "allowed_values", "values")
            if isinstance(attrs.get(key), list | tuple)
        ),
        None,
    )
    if not raw:
        return (), (), ""
    if len(raw) > MAX_CHOICES_KEPT:
        return (), (), f"It lists {len(raw):,} allowed values, too many to check here."
    values: list[Any] = []
    labels: list[str] = []
    seen: set[str] = set()
    for entry in raw:
        label = None
        if isinstance(entry, Mapping):
            label = _short_text(entry.get("label") or entry.get("display_name"), 200) or None
            entry = entry.get("value")
        value = _typed_choice(entry, base)
        if value is None:
            continue
        key = choice_key(value)
        if key in seen or len(key) > 500:
            continue
        seen.add(key)
        values.append(value)
        labels.append(label or key)
    return tuple(values), tuple(labels), ""


def _typed_choice(entry: Any, base: str) -> Any:
    if isinstance(entry, bool):
        return entry if base in ("boolean", "string") else None
    if isinstance(entry, int | float) and not isinstance(entry, bool):
        if isinstance(entry, float) and not math.isfinite(entry):
            return None
        if base == "integer" and isinstance(entry, float):
            return int(entry) if entry.is_integer() else None
        return entry
    if isinstance(entry, str):
        if base == "integer":
            number = _decimal(entry)
            return int(number) if number is not None and number == number.to_integral() else None
        if base == "number":
            number = _decimal(entry)
            return _plain_number(number) if number is not None else None
        if base == "boolean":
            return True if entry.lower() in _TRUE else False if entry.lower() in _FALSE else None
        return entry
    return None


def _bound(attrs: Mapping[str, Any], keys: Iterable[str], base: str) -> int | float | None:
    for key in keys:
        if key not in attrs:
            continue
        value = attrs[key]
        if isinstance(value, bool):
            return None
        number = _decimal(value)
        if number is None or abs(number) > MAX_ABS_BOUND:
            return None
        if base == "integer":
            # A fractional bound on a whole number: the nearest whole number is close enough
            # and never crashes the page.
            return int(number.to_integral())
        return _plain_number(number)
    return None


def _length(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    number = _decimal(value)
    if number is None or number < 0 or number > MAX_TEXT_LENGTH * 10:
        return None
    return int(number)


def _default(spec: InputSpec, item: Mapping[str, Any]) -> tuple[Any, bool]:
    if "default_value" not in item or item["default_value"] is None:
        return None, False
    value = item["default_value"]
    if spec.kind == Kind.JSON:
        try:
            if len(json.dumps(value)) > MAX_JSON_CHARS:
                return None, False
        except (TypeError, ValueError):
            return None, False
        return value, True
    if isinstance(value, str) and spec.kind not in (Kind.TEXT, Kind.LONG_TEXT, Kind.PROMPT):
        try:
            value = from_text(spec, value)
        except ValueError:
            return None, False
    from runs.forms.schema import InputSchema  # the schema module builds on this one

    result = InputSchema((spec,)).validate({spec.name: value})
    if result.errors:
        return None, False
    return result.input.get(spec.name), True


# ---- text to typed values (CSV cells, batch lines, grid values, defaults) ----


def from_text(spec: InputSpec, text: str) -> Any:
    """A value typed as text, read the way the spec's type reads it; ValueError if not."""
    text = text.strip() if spec.kind not in (Kind.PROMPT, Kind.LONG_TEXT) else text
    if spec.kind == Kind.CHOICE:
        found = spec.choice_map.get(text.strip())
        if found is None and text.strip():
            # Choices written "1.0" for 1, "TRUE" for true: try the base type's reading.
            found = next(
                (v for k, v in spec.choice_map.items() if k.lower() == text.strip().lower()),
                None,
            )
        if found is None:
            raise ValueError(f"“{text[:40]}” is not one of the allowed values.")
        return found
    if spec.kind == Kind.INTEGER:
        number = _decimal(text)
        if number is None or number != number.to_integral():
            raise ValueError("Enter a whole number.")
        return int(number)
    if spec.kind == Kind.NUMBER:
        number = _decimal(text)
        if number is None:
            raise ValueError("Enter a number.")
        return _plain_number(number)
    if spec.kind == Kind.BOOLEAN:
        lowered = text.lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise ValueError("Enter yes or no.")
    if spec.kind == Kind.MEDIA_LIST:
        return split_urls(text)
    if spec.kind == Kind.JSON:
        return parse_json_text(text)
    return text


def split_urls(text: str) -> list[str]:
    stripped = text.strip()
    if stripped.startswith("["):
        value = parse_json_text(stripped)
        if not isinstance(value, list):
            raise ValueError("Enter one URL per line.")
        return [str(v) for v in value]
    return [part for part in re.split(r"[\s|]+", stripped) if part]


def parse_json_text(text: str) -> Any:
    if len(text) > MAX_JSON_CHARS:
        raise ValueError(f"At most {MAX_JSON_CHARS:,} characters of JSON.")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(
            f"This is not valid JSON (line {exc.lineno}, column {exc.colno})."
        ) from None
    except (ValueError, RecursionError):
        raise ValueError("This is not valid JSON.") from None


def to_text(spec: InputSpec | None, value: Any) -> str:
    """The inverse of ``from_text``: how a value is shown in a form field."""
    if value is None:
        return ""
    if spec is not None and spec.kind == Kind.MEDIA_LIST and isinstance(value, list):
        return "\n".join(str(v) for v in value)
    if spec is not None and spec.kind == Kind.CHOICE:
        return choice_key(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list) or (spec is not None and spec.kind == Kind.JSON):
        return json.dumps(value, indent=2, ensure_ascii=False)
    return str(value)


# ---- small lenient readers ----


def _short_text(value: Any, limit: int) -> str:
    if not isinstance(value, str):
        return ""
    return " ".join(value.split())[:limit] if limit <= MAX_LABEL_LENGTH else value.strip()[:limit]


def _humanize(name: str) -> str:
    words = re.sub(r"[_.\-]+", " ", name).strip()
    return (words[:1].upper() + words[1:])[:MAX_LABEL_LENGTH] or name


def _truthy(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return value == 1
    if isinstance(value, str):
        return value.strip().lower() in _TRUE
    return False


def _int_or(value: Any, fallback: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return fallback
    number = _decimal(value)
    if number is None or abs(number) > MAX_ABS_BOUND:
        return fallback
    return int(number)


def _decimal(value: Any) -> Decimal | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        text = str(value).strip()
        if len(text) > 60:
            return None
        number = Decimal(text)
    except (InvalidOperation, ValueError):
        return None
    return number if number.is_finite() else None


def _plain_number(number: Decimal) -> int | float:
    if number == number.to_integral() and abs(number) < 2**53:
        return int(number)
    return float(number)
