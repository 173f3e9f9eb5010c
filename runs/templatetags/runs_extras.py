"""Template helpers for the workspace: durations, money, status, timelines and input diffs.

Everything here formats foreign data (Runflow's answers, users' inputs) for display. None of
it marks anything safe: templates autoescape every value, and URLs only reach an ``href`` or
``src`` through ``safe_href``, which admits plain http(s) links and nothing else (B4).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlsplit

from django import template
from django.urls import NoReverseMatch, reverse
from django.utils import timezone

from runs.models import IN_FLIGHT, TERMINAL, ArchiveState, Output, Run, Status

register = template.Library()

# ---------------------------------------------------------------- durations and money


@register.filter
def duration_ms(value: object) -> str:
    """``850 ms``, ``12.3 s``, ``2 min 05 s``, ``1 h 02 min``; ``—`` when unknown."""
    if value is None or value == "" or isinstance(value, bool):
        return "—"
    try:
        ms = int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return "—"
    if ms < 0:
        return "—"
    if ms < 1000:
        return f"{ms} ms"
    seconds = ms / 1000
    if seconds < 60:
        return f"{seconds:.1f} s"
    whole = int(seconds)
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def elapsed_ms(start: datetime | None, end: datetime | None) -> int | None:
    if start is None or end is None:
        return None
    return max(0, int((end - start).total_seconds() * 1000))


@register.filter
def run_duration(run: Run) -> str:
    """Runflow's own duration when it reported one, else what our timestamps say."""
    if run.duration_ms is not None:
        return duration_ms(run.duration_ms)
    start = run.running_at or run.queued_at or run.submitted_at
    if run.status in TERMINAL:
        return duration_ms(elapsed_ms(start, run.completed_at))
    return "—"


@register.filter
def money(value: object) -> str:
    """USD as people read it: ``$0.15``, ``$0.0042``, ``$1,234.50``; ``—`` when unknown."""
    if value is None or value == "":
        return "—"
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        return "—"
    if not amount.is_finite():
        return "—"
    # Small generation costs need more than two decimals to mean anything; never more than 4.
    places = 2 if abs(amount) >= 1 or amount == 0 else 4
    text = f"{amount:,.{places}f}"
    if places == 4:
        text = text.rstrip("0")
        if len(text.split(".")[1]) < 2:
            text = f"{amount:,.2f}"
    return f"-${text[1:]}" if text.startswith("-") else f"${text}"


@register.filter
def filesize(value: object) -> str:
    if not isinstance(value, int) or value < 0:
        return "—"
    size = float(value)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return "—"


# ---------------------------------------------------------------- status


@register.filter
def in_flight(status: str) -> bool:
    return status in IN_FLIGHT


@register.filter
def log_level(level: object) -> str:
    """A CSS modifier for a log level; unknown levels read as info."""
    text = str(level or "").lower()
    if text in {"error", "critical", "fatal"}:
        return "error"
    if text in {"warn", "warning"}:
        return "warning"
    if text in {"debug", "trace"}:
        return "debug"
    return "info"


@register.filter
def step_state(state: object) -> str:
    """Node run ``state_code`` folded into our badge vocabulary."""
    text = str(state or "").lower()
    if text in {"succeeded", "success", "completed", "done"}:
        return "succeeded"
    if text in {"failed", "error", "errored"}:
        return "failed"
    if text in {"running", "in_progress", "started"}:
        return "running"
    if text in {"canceled", "cancelled", "skipped"}:
        return "canceled"
    return "queued"


@dataclass(frozen=True)
class TimelineStep:
    key: str
    label: str
    at: datetime | None
    reached: bool
    current: bool
    took_ms: int | None  # time spent in this step (until the next one was reached)


_TIMELINE = [
    (Status.PENDING, "Saved", "created_at"),
    (Status.QUEUED, "Queued", "queued_at"),
    (Status.DISPATCHING, "Dispatching", "dispatching_at"),
    (Status.RUNNING, "Running", "running_at"),
]


@register.simple_tag
def timeline(run: Run) -> list[TimelineStep]:
    """Each stage a run went through, when it got there and how long it stayed.

    Runs may skip stages (a callback can jump from queued straight to succeeded); a skipped
    stage shows as not reached rather than inventing a time for it.
    """
    now = timezone.now()
    terminal_label = run.get_status_display() if run.status in TERMINAL else "Finished"
    points: list[tuple[str, str, datetime | None]] = [
        (status.value, label, getattr(run, attr)) for status, label, attr in _TIMELINE
    ]
    if points[1][2] is None and run.submitted_at and run.status != Status.PENDING:
        points[1] = (points[1][0], points[1][1], run.submitted_at)
    points.append(("terminal", terminal_label, run.completed_at))
    current_key = "terminal" if run.status in TERMINAL else run.status
    steps = []
    for index, (key, label, at) in enumerate(points):
        later = next((p[2] for p in points[index + 1 :] if p[2] is not None), None)
        is_current = key == current_key
        end = later if later is not None else (now if is_current and key != "terminal" else None)
        steps.append(
            TimelineStep(
                key=key,
                label=label,
                at=at,
                reached=at is not None,
                current=is_current,
                took_ms=elapsed_ms(at, end) if key != "terminal" else None,
            )
        )
    return steps


# ---------------------------------------------------------------- failures in plain words


@dataclass(frozen=True)
class FailureHelp:
    title: str
    explanation: str
    tries: list[str] = field(default_factory=list)
    field_errors: list[tuple[str, str]] = field(default_factory=list)


_CREDIT_CODES = {"INSUFFICIENT_CREDIT", "INSUFFICIENT_CREDITS", "OUT_OF_CREDIT"}
_KNOWN_CODES: dict[str, tuple[str, str, list[str]]] = {
    "UNAUTHORIZED": (
        "Runflow did not accept the team's API key",
        "The key may have been revoked or mistyped.",
        ["Ask a team admin to check the key on the connection page, then run again."],
    ),
    "PERMISSION_DENIED": (
        "The team's key may not run this model",
        "Runflow refused the request for this key's organization.",
        ["Ask a team admin whether the key has access to this model."],
    ),
    "MODEL_UNAVAILABLE": (
        "This model is not available",
        "Runflow does not offer this model now: it may have been retired or renamed.",
        ["Pick another model from the catalog, or try again later."],
    ),
    "RATE_LIMITED": (
        "Runflow asked us to slow down",
        "Too many requests reached Runflow at once.",
        ["Wait a minute, then run again."],
    ),
    "INPUT_VALIDATION_FAILED": (
        "The model could not use these inputs",
        "The model checked the inputs before starting and refused them.",
        ["Use “Edit and run” to change the inputs named in the message."],
    ),
}
_STAGES = {
    "submission": "before Runflow accepted it",
    "dispatch": "while Runflow was handing it to a worker",
    "preprocess": "while the inputs were being prepared",
    "inference": "while the model was generating",
    "running": "while the model was generating",
    "postprocess": "while the outputs were being saved",
    "upload": "while the outputs were being saved",
}


@register.simple_tag
def failure_help(run: Run) -> FailureHelp | None:
    """What went wrong, in words a person can act on; None when nothing did."""
    errors = _field_errors(run.field_errors)
    code = (run.failure_code or "").strip().upper()
    if run.status == Status.CANCELED:
        return FailureHelp(
            "This run was canceled",
            "It stopped before finishing; nothing more will arrive.",
            ["Run it again if you still need its outputs."],
        )
    if run.status != Status.FAILED and not errors:
        return None
    stage = (run.failure_stage_code or "").strip().lower()
    where = _STAGES.get(stage, f"at the “{stage}” stage" if stage else "")
    if code in _CREDIT_CODES:
        return FailureHelp(
            "The Runflow account is out of credit",
            "Runflow refused to start the run because the balance is too low. Nothing was charged.",
            ["Top up the account at Runflow (or ask whoever pays for it).", "Then run again."],
        )
    if errors:
        return FailureHelp(
            "Runflow refused some inputs",
            "The run never started: the inputs below did not pass Runflow's checks.",
            ["Use “Edit and run” to fix the fields listed, then launch again."],
            errors,
        )
    if code in _KNOWN_CODES:
        title, explanation, tries = _KNOWN_CODES[code]
        return FailureHelp(title, _then_stage(explanation, stage, where), list(tries))
    if stage == "submission":
        return FailureHelp(
            "Runflow refused the run",
            "The run never started, so nothing was charged.",
            ["Read the message below; fix the inputs or the connection, then run again."],
        )
    return FailureHelp(
        "The run failed",
        _with_stage("The model stopped with an error", where),
        [
            "Run it again: many failures are temporary.",
            "If it fails the same way, change the inputs or try another model.",
        ],
    )


def _with_stage(text: str, where: str) -> str:
    return f"{text.rstrip('.')} {where}." if where else text


def _then_stage(text: str, stage: str, where: str) -> str:
    """A full sentence, then where it happened as a sentence of its own.

    Glued onto the end of an explanation, the stage made "… (it may be retired or renamed)
    before Runflow accepted it". At submission, what matters is that nothing started.
    """
    if stage == "submission":
        return f"{text} The run never started, so nothing was charged."
    return f"{text} It stopped {where}." if where else text


def _field_errors(raw: object) -> list[tuple[str, str]]:
    if not isinstance(raw, dict):
        return []
    rows: list[tuple[str, str]] = []
    for name, messages in raw.items():
        items = messages if isinstance(messages, list) else [messages]
        rows.extend((str(name), str(message)) for message in items)
    return rows[:50]


# ---------------------------------------------------------------- inputs and URLs


@register.filter
def safe_href(value: object) -> str:
    """The value if it is a plain http(s) URL, else an empty string (B4).

    Foreign data never reaches an ``href``/``src`` unchecked: ``javascript:``, ``data:``,
    ``vbscript:`` and anything with control characters or no host are refused.
    """
    if not isinstance(value, str) or len(value) > 4000:
        return ""
    text = value.strip()
    if any(ord(ch) < 0x21 or ord(ch) == 0x7F for ch in text):
        return ""
    try:
        parts = urlsplit(text)
    except ValueError:
        return ""
    if parts.scheme.lower() not in {"http", "https"} or not parts.netloc:
        return ""
    return text


@dataclass(frozen=True)
class InputRow:
    name: str
    text: str
    href: str
    is_long: bool
    changed: bool = False
    previous: str | None = None
    removed: bool = False


def display_value(value: object) -> str:
    """An input value as text: strings as they are, data URIs summarised, the rest as JSON."""
    if isinstance(value, str):
        if value.startswith("data:"):
            head = value.split(",", 1)[0]
            return f"{head},… ({len(value):,} characters, not shown)"
        return value
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    try:
        return json.dumps(value, ensure_ascii=False, indent=None, default=str)
    except (TypeError, ValueError):
        return str(value)


def _row(name: str, value: object, **extra: Any) -> InputRow:
    text = display_value(value)
    href = safe_href(value) if isinstance(value, str) else ""
    return InputRow(name=name, text=text, href=href, is_long=len(text) > 120, **extra)


_FIRST = ("prompt", "negative_prompt")


def sort_names(names: list[str], order: list[str] | tuple[str, ...] = ()) -> list[str]:
    """Input names in a stable, readable order: the prompt first, then the model's own form
    order when known, then alphabetical. (PostgreSQL's jsonb does not keep key order.)"""
    rank = {name: index for index, name in enumerate(order)}

    def key(name: str) -> tuple[int, int, str]:
        if name in _FIRST:
            return (0, _FIRST.index(name), "")
        return (1, rank.get(name, len(rank)), name)

    return sorted(names, key=key)


def model_input_order(inputs: object) -> list[str]:
    """Input names of a catalog model (``RunflowModel.inputs``) by their ``sort_order``."""
    if not isinstance(inputs, list):
        return []
    entries = [item for item in inputs if isinstance(item, dict) and item.get("name")]
    entries.sort(key=lambda item: (_number(item.get("sort_order")), str(item["name"])))
    return [str(item["name"]) for item in entries]


def _number(value: object) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 1e9


@register.simple_tag
def input_rows(
    run_input: object, parent_input: object = None, order: list[str] | None = None
) -> list[InputRow]:
    """The run's inputs, each marked changed against the parent run's when there is one."""
    current = run_input if isinstance(run_input, dict) else {}
    parent = parent_input if isinstance(parent_input, dict) else None
    rows = []
    for name in sort_names(list(current), order or ()):
        value = current[name]
        if parent is None:
            rows.append(_row(str(name), value))
            continue
        changed = name not in parent or parent[name] != value
        previous = display_value(parent[name]) if changed and name in parent else None
        rows.append(_row(str(name), value, changed=changed, previous=previous))
    if parent is not None:
        for name in sort_names([n for n in parent if n not in current], order or ()):
            rows.append(_row(str(name), parent[name], changed=True, removed=True))
    return rows


@dataclass(frozen=True)
class CompareRow:
    name: str
    cells: list[InputRow | None]
    differs: bool


def compare_inputs(runs: list[Run], order: list[str] | None = None) -> list[CompareRow]:
    """One row per input name across the runs; ``differs`` when any two runs disagree."""
    names: set[str] = set()
    for run in runs:
        names.update(run.input if isinstance(run.input, dict) else {})
    missing = object()
    rows = []
    for name in sort_names(sorted(names), order or ()):
        values = [
            run.input.get(name, missing) if isinstance(run.input, dict) else missing for run in runs
        ]
        cells = [None if v is missing else _row(name, v) for v in values]
        first = values[0]
        differs = any(v != first for v in values[1:])
        rows.append(CompareRow(name, cells, differs))
    return rows


# ---------------------------------------------------------------- outputs


@register.filter
def is_archived(output: Output) -> bool:
    return output.archive_state == ArchiveState.ARCHIVED and bool(output.file)


@register.filter
def archive_problem(output: Output) -> bool:
    """True when the file will never arrive (the placeholder then says why)."""
    return output.archive_state in {
        ArchiveState.EXPIRED,
        ArchiveState.REFUSED,
        ArchiveState.PURGED,
    }


@register.simple_tag
def output_urls(output: Output, team_uuid: object = None, share_token: str = "") -> dict[str, str]:
    """Where a page fetches an output: the team's media view or the share link's."""
    if share_token:
        args: list[object] = [share_token, output.uuid]
        file_name, thumb_name = "runs:shared_file", "runs:shared_thumb"
    else:
        args = [team_uuid, output.uuid]
        file_name, thumb_name = "runs:output_file", "runs:output_thumb"
    file_url = reverse(file_name, args=args)
    thumb_url = reverse(thumb_name, args=args) if output.thumbnail else file_url
    return {"file": file_url, "thumb": thumb_url, "download": f"{file_url}?download=1"}


# ---------------------------------------------------------------- links to other areas


@register.simple_tag
def optional_url(name: str, *args: object) -> str:
    """``reverse`` that answers "" while another area's view does not exist yet."""
    try:
        return reverse(name, args=args)
    except NoReverseMatch:
        return ""


@register.simple_tag
def launch_urls(run: Run, team_uuid: object) -> dict[str, str]:
    """ "Run again" (POST) and "Edit and run" (GET with ``?from=``), when launching exists."""
    rerun = optional_url("runs:rerun", team_uuid, run.uuid)
    # Straight to the model's form when launching offers one; else its "pick a model" page.
    edit = optional_url("runs:launch", team_uuid, run.model_id) or optional_url(
        "runs:launch", team_uuid
    )
    return {"rerun": rerun, "edit": f"{edit}?from={run.uuid}" if edit else ""}
