"""Presets: named, team-shared inputs for one model, and how well they still fit it."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from django import forms

from runs.forms.inputs import ParsedInputs
from runs.forms.launch import refuse_control_characters
from runs.forms.schema import InputSchema

MAX_NAME_LENGTH = 100  # Preset.name


class PresetForm(forms.Form):
    name = forms.CharField(
        label="Preset name",
        max_length=MAX_NAME_LENGTH,
        error_messages={
            "required": "Give the preset a name.",
            "max_length": "A preset name has at most %(limit_value)d characters "
            "(this one has %(show_value)d).",
        },
        widget=forms.TextInput(
            # Enter here saves the preset (static/js/launch.js), never launches a run.
            attrs={"placeholder": "e.g. Square product shot", "data-enter-presses": "#preset-save"}
        ),
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        refuse_control_characters(self.fields["name"])

    def clean_name(self) -> str:
        name = " ".join(self.cleaned_data["name"].split())
        if not name:
            raise forms.ValidationError("Give the preset a name.")
        return name


@dataclass(frozen=True)
class PresetFit:
    """Whether a preset's saved input still matches the model's current inputs."""

    unknown: tuple[str, ...] = ()  # saved names the model no longer has
    invalid: dict[str, list[str]] = field(default_factory=dict)  # values its rules refuse

    @property
    def stale(self) -> bool:
        return bool(self.unknown or self.invalid)

    @property
    def summary(self) -> str:
        parts = []
        if self.unknown:
            parts.append("no longer an input: " + ", ".join(self.unknown))
        for name, messages in self.invalid.items():
            parts.append(f"{name}: {' '.join(messages)}")
        return "; ".join(parts)


def preset_fit(saved: Any, parsed: ParsedInputs | None) -> PresetFit:
    """Compare a preset with the model. Without known inputs (raw JSON models) all fits."""
    if not isinstance(saved, Mapping):
        return PresetFit(invalid={"preset": ["The saved input is not an object."]})
    if parsed is None or not parsed.specs:
        return PresetFit()
    known = set(parsed.names)
    unknown = tuple(sorted(name for name in saved if name not in known))
    # Required inputs a preset leaves out are fine: it is a starting point, not a launch.
    optional = [dataclasses.replace(spec, required=False) for spec in parsed.specs]
    result = InputSchema(optional).validate({k: v for k, v in saved.items() if k in known})
    return PresetFit(unknown=unknown, invalid=result.errors)
