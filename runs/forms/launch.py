"""The launch form, generated from a model's inputs, and the raw JSON form for any model id.

``LaunchForm`` turns HTML fields into JSON-native values, then hands the whole input to the
``InputSchema`` (a pydantic model built from the same definitions) so that every rule lives
in one place and errors come back per field. Files chosen for image (or other media) inputs
are not sent anywhere by the form: ``uploads`` lists them and the view sends them through
Runflow's asset upload, then puts the returned URL in the input.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from django import forms
from django.core.files.uploadedfile import UploadedFile
from django.core.validators import ProhibitNullCharactersValidator

from runs.forms.inputs import (
    CONTROL_CHARACTERS_MESSAGE,
    MAX_CHOICES_IN_SELECT,
    MAX_JSON_CHARS,
    MAX_URL_LENGTH,
    InputSpec,
    Kind,
    ParsedInputs,
    choice_key,
    from_text,
    has_control_characters,
    parse_json_text,
    split_urls,
    to_text,
)
from runs.forms.schema import InputSchema
from runs.runflow.schemas import is_model_id

# Runflow's asset upload takes files up to 50 MiB (RUNFLOW_API.md).
MAX_UPLOAD_BYTES = 50 * 1024 * 1024
MAX_FILES_PER_INPUT = 20
FILE_SUFFIX = "__file"
# Model ids are slash paths of any depth: google/nano-banana-pro, bytedance/seedance/2.0/fast/…
MODEL_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-]*(?:/[A-Za-z0-9][A-Za-z0-9._\-]*)*$")


def clean_model_id(value: str) -> str:
    value = value.strip().strip("/")
    ok = MODEL_ID_RE.match(value) and is_model_id(value) and ".." not in value
    if not value or len(value) > 300 or not ok:
        raise forms.ValidationError(
            "A model id is a slash path such as google/nano-banana-pro "
            "(letters, digits, dots, dashes and underscores)."
        )
    return value


REQUIRED_MESSAGE = "This input is required."  # the schema's word for "missing", too


def no_control_characters(value: str) -> None:
    if has_control_characters(value):
        raise forms.ValidationError(CONTROL_CHARACTERS_MESSAGE, code="control_characters")


def drop_null_character_check(field: forms.Field) -> None:
    """Remove Django's NUL-only check from a field whose own check refuses NUL too, so the
    person reads one message for every bad character instead of Django's narrower one."""
    field.validators = [
        v for v in field.validators if not isinstance(v, ProhibitNullCharactersValidator)
    ]


def refuse_control_characters(field: forms.Field) -> None:
    """Say "control characters" where Django would say "null characters" of a NUL only.

    A pasted escape sequence is as wrong in a prompt as a NUL; one message for all of them,
    on the field, instead of Django's narrower one.
    """
    if isinstance(field, forms.CharField):
        drop_null_character_check(field)
        field.validators.append(no_control_characters)


class NumberField(forms.FloatField):
    """A float field that keeps whole numbers whole (``4`` is sent as 4, not 4.0)."""

    def to_python(self, value: Any) -> int | float | None:  # type: ignore[override]
        number = super().to_python(value)
        if isinstance(number, float) and number.is_integer() and abs(number) < 2**53:
            return int(number)
        return number


class MultipleFileInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class MultipleFileField(forms.FileField):
    def clean(self, data: Any, initial: Any = None) -> list[UploadedFile]:
        items = data if isinstance(data, list | tuple) else [data] if data else []
        return [super(MultipleFileField, self).clean(item, initial) for item in items]


@dataclass(frozen=True)
class FieldView:
    """One input as the template renders it: the spec, its field and its file field."""

    spec: InputSpec
    field: forms.BoundField
    file_field: forms.BoundField | None
    upstream: tuple[str, ...] = ()  # what Runflow said about this input on the earlier run

    @property
    def errors(self) -> list[str]:
        found = [str(error) for error in self.field.errors]
        if self.file_field is not None:
            found += [str(error) for error in self.file_field.errors]
        return found

    @property
    def is_checkbox(self) -> bool:
        return isinstance(self.field.field.widget, forms.CheckboxInput)


def initial_values(parsed: ParsedInputs, *sources: Mapping[str, Any] | None) -> dict[str, Any]:
    """Defaults first, then each source in turn (a run's input, a preset) on top."""
    values = {spec.name: spec.default for spec in parsed.specs if spec.has_default}
    for source in sources:
        if isinstance(source, Mapping):
            values.update(source)
    return values


class LaunchForm(forms.Form):
    """Fields generated from ``parsed``; ``input`` is the validated JSON input after is_valid.

    ``vary`` names inputs a batch supplies per item: they are not required here and are
    left out of the base input. ``partial`` (presets) requires nothing but checks the rest.
    """

    prefix = "input"

    def __init__(
        self,
        parsed: ParsedInputs,
        data: Mapping[str, Any] | None = None,
        files: Mapping[str, Any] | None = None,
        *,
        values: Mapping[str, Any] | None = None,
        vary: Sequence[str] = (),
        partial: bool = False,
        upstream_errors: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(data, files)  # type: ignore[arg-type]  # a QueryDict, or a dict in tests
        self.parsed = parsed
        self.upstream_errors = _messages_by_field(upstream_errors)
        self.vary = set(vary)
        self.partial = partial
        # The base of a batch or a preset may leave required inputs out: the items (or the
        # launch that applies the preset) supply them, and are checked in full then.
        self.schema = InputSchema(
            [
                dataclasses.replace(spec, required=False)
                if partial or spec.name in self.vary
                else spec
                for spec in parsed.specs
            ]
        )
        self.input: dict[str, Any] = {}
        self.uploads: dict[str, list[UploadedFile]] = {}
        values = values or {}
        # Prefilled keys the model does not (or no longer) define are kept and sent as they
        # were, but the page says so: it may be why Runflow refuses the run.
        self.extra_values = {k: v for k, v in values.items() if parsed.get(k) is None}
        for spec in parsed.specs:
            self.fields[spec.name] = self._field(spec, values.get(spec.name))
            if spec.is_media and spec.name + FILE_SUFFIX not in self.fields:
                self.fields[spec.name + FILE_SUFFIX] = self._file_field(spec)

    # ---- building fields ----

    def _field(self, spec: InputSpec, value: Any) -> forms.Field:
        required = self._required(spec) and not spec.is_media
        common: dict[str, Any] = {
            "label": spec.label,
            "required": required,
            "help_text": spec.description,
            "error_messages": {"required": REQUIRED_MESSAGE},
        }
        attrs: dict[str, Any] = {}
        if spec.kind in (Kind.PROMPT, Kind.LONG_TEXT):
            attrs = {"rows": 5 if spec.kind == Kind.PROMPT else 3}
            if spec.kind == Kind.PROMPT:
                attrs["class"] = "prompt"
            if spec.max_length:
                attrs["maxlength"] = spec.max_length
            field: forms.Field = forms.CharField(
                widget=forms.Textarea(attrs=attrs), strip=False, **common
            )
            field.initial = to_text(spec, value)
        elif spec.kind == Kind.TEXT:
            if spec.max_length:
                attrs["maxlength"] = spec.max_length
            field = forms.CharField(widget=forms.TextInput(attrs=attrs), **common)
            field.initial = to_text(spec, value)
        elif spec.kind in (Kind.INTEGER, Kind.NUMBER):
            attrs["step"] = "1" if spec.kind == Kind.INTEGER else "any"
            if spec.minimum is not None:
                attrs["min"] = spec.minimum
            if spec.maximum is not None:
                attrs["max"] = spec.maximum
            field_class = forms.IntegerField if spec.kind == Kind.INTEGER else NumberField
            field = field_class(widget=forms.NumberInput(attrs=attrs), **common)
            field.initial = value if isinstance(value, int | float) else None
        elif spec.kind == Kind.BOOLEAN:
            if spec.has_default or (isinstance(value, bool) and not spec.required):
                field = forms.BooleanField(**{**common, "required": False})
                field.initial = bool(value)
            else:
                widget = forms.NullBooleanSelect()
                widget.choices = [("unknown", "Model default"), ("true", "Yes"), ("false", "No")]
                field = forms.NullBooleanField(widget=widget, **common)
                field.initial = value if isinstance(value, bool) else None
        elif spec.kind == Kind.CHOICE:
            field = self._choice_field(spec, value, common)
        elif spec.kind == Kind.MEDIA:
            attrs = {"placeholder": "https://…", "inputmode": "url", "class": "media-url"}
            field = forms.CharField(
                widget=forms.TextInput(attrs=attrs), max_length=MAX_URL_LENGTH, **common
            )
            field.initial = to_text(spec, value)
        elif spec.kind == Kind.MEDIA_LIST:
            attrs = {"rows": 3, "placeholder": "One URL per line", "class": "media-url"}
            field = forms.CharField(widget=forms.Textarea(attrs=attrs), **common)
            field.initial = to_text(spec, value)
        else:
            attrs = {"rows": 4, "class": "mono", "spellcheck": "false"}
            field = forms.CharField(
                widget=forms.Textarea(attrs=attrs), max_length=MAX_JSON_CHARS, **common
            )
            field.initial = to_text(spec, value) if value is not None else ""
        refuse_control_characters(field)
        if self._required(spec):
            field.widget.attrs["aria-required"] = "true"
        field.widget.attrs["aria-describedby"] = f"help-{spec.name}"
        return field

    def _required(self, spec: InputSpec) -> bool:
        return spec.required and spec.name not in self.vary and not self.partial

    def _choice_field(self, spec: InputSpec, value: Any, common: dict[str, Any]) -> forms.Field:
        if len(spec.choices) > MAX_CHOICES_IN_SELECT:
            field: forms.Field = forms.CharField(
                widget=forms.TextInput(attrs={"autocomplete": "off"}), **common
            )
            field.help_text = " ".join(
                part
                for part in (spec.description, f"One of {len(spec.choices):,} allowed values.")
                if part
            )
        else:
            options = list(zip(map(choice_key, spec.choices), spec.choice_labels, strict=True))
            if not (spec.required and spec.has_default):
                blank = "Choose…" if spec.required else "Model default"
                options.insert(0, ("", blank))
            field = forms.ChoiceField(choices=options, **common)
        field.initial = to_text(spec, value) if value is not None else ""
        return field

    def _file_field(self, spec: InputSpec) -> forms.Field:
        attrs = {"accept": spec.accept} if spec.accept else {}
        attrs["class"] = "media-file"
        if spec.kind == Kind.MEDIA_LIST:
            return MultipleFileField(
                widget=MultipleFileInput(attrs=attrs), required=False, label="Or upload files"
            )
        return forms.FileField(
            widget=forms.ClearableFileInput(attrs=attrs), required=False, label="Or upload a file"
        )

    # ---- views of the fields for the template ----

    def views(self, specs: Sequence[InputSpec]) -> list[FieldView]:
        result = []
        for spec in specs:
            file_key = spec.name + FILE_SUFFIX
            result.append(
                FieldView(
                    spec,
                    self[spec.name],
                    self[file_key] if spec.is_media else None,
                    tuple(self.upstream_errors.get(spec.name, ())),
                )
            )
        return result

    @property
    def upstream_unplaced(self) -> list[tuple[str, str]]:
        """Runflow's messages about names that are not a field here (or about the whole)."""
        return [
            (name, message)
            for name, messages in self.upstream_errors.items()
            if name not in self.parsed.names
            for message in messages
        ]

    @property
    def main_views(self) -> list[FieldView]:
        return self.views(self.parsed.featured)

    @property
    def advanced_views(self) -> list[FieldView]:
        return self.views(self.parsed.advanced)

    @property
    def advanced_has_errors(self) -> bool:
        return self.is_bound and any(view.errors for view in self.advanced_views)

    # ---- cleaning ----

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        values: dict[str, Any] = {}
        for spec in self.parsed.specs:
            if spec.name in self.errors or spec.name in self.vary:
                continue
            try:
                value = self._value(spec, cleaned.get(spec.name))
            except ValueError as exc:
                self.add_error(spec.name, str(exc))
                continue
            files = self._files(spec, cleaned.get(spec.name + FILE_SUFFIX))
            if files:
                self.uploads[spec.name] = files
                # A stand-in URL so the schema can check "required" and list sizes now; the
                # view replaces it with the asset URL once the upload has been sent.
                stand_ins = [f"https://upload.invalid/{index}" for index in range(len(files))]
                if spec.kind == Kind.MEDIA:
                    value = value or stand_ins[0]
                else:
                    value = [*(value or []), *stand_ins]
            if spec.is_media and self._required(spec) and not value and not self._file_errors(spec):
                self.add_error(spec.name, "Give a URL or upload a file.")
                continue
            if value is not None and value != "" and value != []:
                values[spec.name] = value
        for key, value in self.extra_values.items():
            values.setdefault(key, value)
        result = self.schema.validate(values)
        for name, messages in result.errors.items():
            if name in self.errors:
                # The field's own message already says what is wrong with it; the schema
                # only sees the value as missing, and "required" would mislead.
                continue
            target = name if name in self.fields else None
            for message in messages:
                self.add_error(target, message if target else f"{name}: {message}")
        self.input = result.input
        return cleaned

    def _file_errors(self, spec: InputSpec) -> bool:
        return spec.name + FILE_SUFFIX in self.errors

    def _value(self, spec: InputSpec, value: Any) -> Any:
        if value is None or value == "":
            return None
        if spec.kind == Kind.CHOICE and isinstance(value, str):
            return from_text(spec, value)
        if spec.kind == Kind.MEDIA_LIST:
            return split_urls(value)
        if spec.kind == Kind.JSON:
            return parse_json_text(value)
        if spec.kind == Kind.MEDIA:
            return value.strip()
        return value

    def _files(self, spec: InputSpec, files: Any) -> list[UploadedFile]:
        if not spec.is_media or not files:
            return []
        items = files if isinstance(files, list) else [files]
        if len(items) > MAX_FILES_PER_INPUT:
            self.add_error(spec.name + FILE_SUFFIX, f"At most {MAX_FILES_PER_INPUT} files.")
            return []
        for item in items:
            if item.size > MAX_UPLOAD_BYTES:
                self.add_error(spec.name + FILE_SUFFIX, f"{item.name} is larger than 50 MB.")
                return []
            kind = (item.content_type or "").split("/", 1)[0]
            if spec.media_type and kind != spec.media_type:
                self.add_error(
                    spec.name + FILE_SUFFIX, f"{item.name} is not {_article(spec.media_type)}."
                )
                return []
        return list(items)

    def set_uploaded(self, name: str, urls: list[str]) -> None:
        """Put the asset URLs of the uploaded files in place of the stand-ins."""
        spec = self.parsed.get(name)
        if spec is None:
            return
        if spec.kind == Kind.MEDIA:
            self.input[name] = urls[0]
        else:
            kept = [
                u for u in self.input.get(name, []) if not u.startswith("https://upload.invalid/")
            ]
            self.input[name] = [*kept, *urls]


def _messages_by_field(errors: Mapping[str, Any] | None) -> dict[str, list[str]]:
    """Stored field errors (a run's ``field_errors``, foreign JSON) as lists of strings."""
    found: dict[str, list[str]] = {}
    if not isinstance(errors, Mapping):
        return found
    for name, messages in list(errors.items())[:100]:
        items = messages if isinstance(messages, list) else [messages]
        found[str(name)[:100]] = [str(m)[:500] for m in items[:10] if m is not None]
    return found


def _article(media_type: str) -> str:
    return f"an {media_type}" if media_type[:1] in "aeiou" else f"a {media_type}"


class RawInputForm(forms.Form):
    """For a model the catalog does not know (or does not describe): the input as JSON."""

    input = forms.CharField(
        label="Input (JSON object)",
        widget=forms.Textarea(attrs={"rows": 12, "class": "mono", "spellcheck": "false"}),
        help_text="Sent as the run's input exactly as written, after a check that it is JSON.",
        max_length=MAX_JSON_CHARS,
        initial="{\n  \n}",
    )

    def __init__(self, *args: Any, values: Mapping[str, Any] | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        refuse_control_characters(self.fields["input"])
        if values:
            self.fields["input"].initial = json.dumps(dict(values), indent=2, ensure_ascii=False)
        self.parsed_input: dict[str, Any] = {}

    def clean_input(self) -> str:
        text = self.cleaned_data["input"]
        try:
            value = parse_json_text(text)
        except ValueError as exc:
            raise forms.ValidationError(str(exc)) from None
        if not isinstance(value, dict):
            raise forms.ValidationError('The input must be a JSON object: { "name": value, … }.')
        self.parsed_input = value
        return text


class ModelIdForm(forms.Form):
    """ "Launch a model by id": any slash path, including ones the catalog does not list."""

    model_id = forms.CharField(
        label="Model id",
        max_length=300,
        widget=forms.TextInput(attrs={"placeholder": "owner/model or owner/family/variant"}),
    )

    def clean_model_id(self) -> str:
        return clean_model_id(self.cleaned_data["model_id"])
