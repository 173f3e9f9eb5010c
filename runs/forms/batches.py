"""The batch form: one form, many runs.

Three ways to say what varies between the runs, all on top of the same generated launch
form (which gives the values that stay the same):
- lines: one value per line for one input (usually the prompt);
- csv: an uploaded CSV whose column headers are input names, one run per row;
- grid: every combination of the values given for two inputs.

Each item is read with the input's own type (``from_text``) and then checked by the same
pydantic model as a single launch, so a batch item can never carry what a launch would not.
"""

from __future__ import annotations

import csv
import io
import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django import forms

from runs.forms.inputs import Kind, ParsedInputs, from_text
from runs.forms.schema import InputSchema
from runs.launching import MAX_BATCH_ITEMS

MAX_CSV_BYTES = 2 * 1024 * 1024
MAX_ERRORS_SHOWN = 20


class Mode:
    LINES = "lines"
    CSV = "csv"
    GRID = "grid"
    CHOICES = [
        (LINES, "One value per line"),
        (CSV, "A CSV file, one run per row"),
        (GRID, "A grid: every combination of two inputs"),
    ]


@dataclass(frozen=True)
class Row:
    """One item as typed: where it came from, and a text value per varying input."""

    where: str
    values: Mapping[str, str]


def _values(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


class BatchForm(forms.Form):
    mode = forms.ChoiceField(
        choices=Mode.CHOICES, widget=forms.RadioSelect, initial=Mode.LINES, label="Vary"
    )
    label = forms.CharField(
        label="Batch name", required=False, max_length=200, help_text="Optional, for the list."
    )
    lines_input = forms.ChoiceField(label="Input each line fills", required=False)
    lines = forms.CharField(
        label="Values, one per line",
        required=False,
        max_length=500_000,
        widget=forms.Textarea(attrs={"rows": 8, "class": "prompt"}),
    )
    csv_file = forms.FileField(
        label="CSV file",
        required=False,
        help_text="The first row names the inputs (e.g. prompt,seed); each other row is a run.",
        widget=forms.ClearableFileInput(attrs={"accept": ".csv,text/csv"}),
    )
    grid_a = forms.ChoiceField(label="First input", required=False)
    grid_a_values = forms.CharField(
        label="Its values, one per line",
        required=False,
        max_length=100_000,
        widget=forms.Textarea(attrs={"rows": 4}),
    )
    grid_b = forms.ChoiceField(label="Second input", required=False)
    grid_b_values = forms.CharField(
        label="Its values, one per line",
        required=False,
        max_length=100_000,
        widget=forms.Textarea(attrs={"rows": 4}),
    )

    def __init__(self, parsed: ParsedInputs, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.parsed = parsed
        # Text inputs first: "one prompt per line" is what most batches are.
        ordered = sorted(
            (s for s in parsed.specs if s.kind not in (Kind.JSON,)),
            key=lambda s: (s.kind not in (Kind.PROMPT, Kind.TEXT, Kind.LONG_TEXT), 0),
        )
        choices = [(spec.name, spec.label) for spec in ordered]
        for name in ("lines_input", "grid_a", "grid_b"):
            self.fields[name].choices = choices  # type: ignore[attr-defined]
        if choices:
            self.fields["lines_input"].initial = choices[0][0]
            self.fields["grid_a"].initial = choices[0][0]
            self.fields["grid_b"].initial = choices[min(1, len(choices) - 1)][0]
        self.rows: list[Row] = []
        self.vary: list[str] = []

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        mode = cleaned.get("mode")
        if mode == Mode.LINES:
            self._clean_lines(cleaned)
        elif mode == Mode.CSV:
            self._clean_csv(cleaned)
        elif mode == Mode.GRID:
            self._clean_grid(cleaned)
        if self.rows and len(self.rows) > MAX_BATCH_ITEMS:
            raise forms.ValidationError(
                f"That makes {len(self.rows):,} runs; a batch holds at most {MAX_BATCH_ITEMS:,}."
            )
        return cleaned

    def _clean_lines(self, cleaned: dict[str, Any]) -> None:
        name = cleaned.get("lines_input")
        values = _values(cleaned.get("lines") or "")
        if not name:
            self.add_error("lines_input", "Choose the input each line fills.")
            return
        if not values:
            self.add_error("lines", "Write at least one line.")
            return
        self.vary = [name]
        self.rows = [Row(f"Line {n}", {name: v}) for n, v in enumerate(values, start=1)]

    def _clean_grid(self, cleaned: dict[str, Any]) -> None:
        a, b = cleaned.get("grid_a"), cleaned.get("grid_b")
        a_values = _values(cleaned.get("grid_a_values") or "")
        b_values = _values(cleaned.get("grid_b_values") or "")
        if not a or not b:
            self.add_error("grid_a", "Choose two inputs.")
            return
        if a == b:
            self.add_error("grid_b", "Choose two different inputs.")
            return
        if not a_values:
            self.add_error("grid_a_values", "Give at least one value.")
        if not b_values:
            self.add_error("grid_b_values", "Give at least one value.")
        if not a_values or not b_values:
            return
        combinations = len(a_values) * len(b_values)
        if combinations > MAX_BATCH_ITEMS:
            self.add_error(
                None,
                f"{len(a_values)} by {len(b_values)} values make {combinations:,} runs; "
                f"a batch holds at most {MAX_BATCH_ITEMS:,}.",
            )
            return
        self.vary = [a, b]
        self.rows = [
            Row(f"{a}={x}, {b}={y}", {a: x, b: y}) for x, y in itertools.product(a_values, b_values)
        ]

    def _clean_csv(self, cleaned: dict[str, Any]) -> None:
        upload = cleaned.get("csv_file")
        if upload is None:
            self.add_error("csv_file", "Choose a CSV file.")
            return
        if upload.size > MAX_CSV_BYTES:
            self.add_error("csv_file", "The CSV file is larger than 2 MB.")
            return
        try:
            text = upload.read().decode("utf-8-sig")
        except UnicodeDecodeError:
            self.add_error("csv_file", "Save the CSV as UTF-8 and upload it again.")
            return
        try:
            dialect: Any = csv.Sniffer().sniff(text[:4096], delimiters=",;\t")
        except csv.Error:
            dialect = csv.excel
        reader = csv.reader(io.StringIO(text), dialect)
        try:
            header = [cell.strip() for cell in next(reader, [])]
            body = list(itertools.islice(reader, MAX_BATCH_ITEMS + 1))
        except csv.Error as exc:
            self.add_error("csv_file", f"The CSV file cannot be read: {exc}.")
            return
        problem = self._header_problem(header)
        if problem:
            self.add_error("csv_file", problem)
            return
        rows = []
        for number, cells in enumerate(body, start=2):
            values = {name: cell for name, cell in zip(header, cells, strict=False) if cell.strip()}
            if values:
                rows.append(Row(f"Row {number}", values))
        if not rows:
            self.add_error("csv_file", "The CSV file has a header but no rows.")
            return
        self.vary = header
        self.rows = rows

    def _header_problem(self, header: list[str]) -> str:
        if not header or not any(header):
            return "The first row must name the inputs, e.g. prompt,seed."
        if "" in header:
            return "Every column needs a name in the first row."
        if len(set(header)) != len(header):
            return "A column name appears twice in the first row."
        unknown = [name for name in header if self.parsed.get(name) is None]
        if unknown:
            known = ", ".join(self.parsed.names[:12])
            return (
                f"These columns are not inputs of the model: {', '.join(unknown)}. "
                f"Its inputs are: {known}."
            )
        return ""


def build_items(
    parsed: ParsedInputs, rows: list[Row], base: Mapping[str, Any]
) -> tuple[list[dict[str, Any]], list[str]]:
    """Each row on top of ``base``, typed and validated; ``(items, errors)``."""
    schema = InputSchema(parsed.specs)
    items: list[dict[str, Any]] = []
    errors: list[str] = []
    for row in rows:
        item = dict(base)
        problems: list[str] = []
        for name, text in row.values.items():
            spec = parsed.get(name)
            if spec is None:
                continue
            try:
                item[name] = from_text(spec, text)
            except ValueError as exc:
                problems.append(f"{name}: {exc}")
        result = schema.validate(item)
        problems += [f"{name}: {' '.join(msgs)}" for name, msgs in result.errors.items()]
        if problems:
            errors.append(f"{row.where}: " + "; ".join(problems))
        else:
            items.append(result.input)
    if len(errors) > MAX_ERRORS_SHOWN:
        more = len(errors) - MAX_ERRORS_SHOWN
        errors = [*errors[:MAX_ERRORS_SHOWN], f"… and {more} more."]
    return items, errors
