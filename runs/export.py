"""Exports: the runs of a filtered view as CSV or JSON, and a whole team as JSON.

Both stream: rows are read with ``iterator(chunk_size=...)`` (outputs prefetched per chunk)
and written out one by one, so exporting a hundred thousand runs holds one chunk in memory,
not the whole history. Nothing secret is ever exported: no API key, no callback secret, no
invitation or share token.
"""

from __future__ import annotations

import csv
import json
import re
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from datetime import date, datetime, timedelta
from decimal import Decimal
from itertools import islice
from typing import Any
from uuid import UUID

from django.db.models import F, QuerySet
from django.http import QueryDict
from django.urls import NoReverseMatch, reverse
from django.utils import timezone

from runs.models import Output, Run, Status, Team

FORMATS = {"csv": "text/csv; charset=utf-8", "json": "application/json"}
CHUNK = 500
EXPORT_VERSION = 1

CSV_COLUMNS = [
    "id",
    "runflow_id",
    "created_at",
    "completed_at",
    "status",
    "model_id",
    "created_by",
    "cost",
    "duration_ms",
    "failure_code",
    "failure_message",
    "batch",
    "parent",
    "prompt",
    "input",
    "output_links",
    "url",
]
# Spreadsheets run a cell that starts with one of these as a formula (CSV injection). The
# CSV prefixes such cells with an apostrophe; the JSON export is the lossless one.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40] or "team"


def filter_runs(team: Team, params: QueryDict, user: Any = None) -> QuerySet[Run]:
    """The team's runs exactly as the run history shows them for the same querystring.

    The history's own filters (``runs.history.HistoryFilters``) are used so that "export
    this view" always means this view; the fallback below reads the same parameter names
    (``q``, ``model``, ``status``, ``member``, ``since``, ``until``) for installations
    where the history module is not present.
    """
    runs = Run.objects.filter(team=team, deleted_at__isnull=True)
    try:
        from runs.history import HistoryFilters
    except ImportError:
        return _fallback_filters(runs, params).order_by("-created_at", "-id")
    filters = HistoryFilters.from_query(params)
    return filters.apply_to_runs(runs, user).order_by("-created_at", "-id")


def _fallback_filters(runs: QuerySet[Run], params: Mapping[str, str]) -> QuerySet[Run]:
    if params.get("status") in Status.values:
        runs = runs.filter(status=params["status"])
    if params.get("model"):
        runs = runs.filter(model_id=params["model"])
    if params.get("member"):
        runs = runs.filter(created_by__username=params["member"])
    for term in params.get("q", "").lower().split()[:6]:
        runs = runs.filter(search_text__contains=term)
    if start := _date(params.get("since")):
        runs = runs.filter(created_at__gte=_midnight(start))
    if end := _date(params.get("until")):
        runs = runs.filter(created_at__lt=_midnight(end + timedelta(days=1)))
    return runs


def _date(value: str | None) -> date | None:
    try:
        return date.fromisoformat(value) if value else None
    except ValueError:
        return None


def _midnight(day: date) -> datetime:
    return timezone.make_aware(datetime.combine(day, datetime.min.time()))


RUN_FIELDS = (
    "pk", "uuid", "runflow_id", "created_at", "completed_at", "deleted_at", "status",
    "model_id", "api_url", "cost", "duration_ms", "failure_code", "failure_message", "input",
)  # fmt: skip
OUTPUT_FIELDS = (
    "run_id", "uuid", "index", "kind", "source_url", "file", "content_type", "width",
    "height", "duration", "size_bytes", "sha256", "archive_state",
)  # fmt: skip
_PLACEHOLDER = UUID(int=0)


def _rows(runs: QuerySet[Run]) -> Iterator[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """(run, outputs) as plain dicts, a chunk at a time.

    Plain rows (``values()``), with one outputs query per chunk, because building model
    instances (and their related objects) was most of an export's time.
    """
    rows = runs.values(
        *RUN_FIELDS,
        creator=F("created_by__username"),
        batch_uuid=F("batch__uuid"),
        parent_uuid=F("parent__uuid"),
    ).iterator(chunk_size=CHUNK)
    while chunk := list(islice(rows, CHUNK)):
        outputs: dict[int, list[dict[str, Any]]] = defaultdict(list)
        found = (
            Output.objects.filter(run_id__in=[row["pk"] for row in chunk])
            .order_by("run_id", "index")
            .values(*OUTPUT_FIELDS)
        )
        for output in found:
            outputs[output["run_id"]].append(output)
        for row in chunk:
            yield row, outputs.get(row["pk"], [])


class _Links:
    """Absolute links to our pages and archived files: each URL pattern reversed once."""

    def __init__(self, team: Team, base_url: str) -> None:
        base = base_url.rstrip("/")
        self._run = base + reverse("runs:run", args=[team.uuid, _PLACEHOLDER])
        try:
            self._file: str | None = base + reverse(
                "runs:output_file", args=[team.uuid, _PLACEHOLDER]
            )
        except NoReverseMatch:
            self._file = None

    def run(self, uuid: UUID) -> str:
        return self._run.replace(str(_PLACEHOLDER), str(uuid))

    def output(self, output: dict[str, Any]) -> str:
        # Our archived copy outlives Runflow's presigned link, so prefer it (R7).
        if output["file"] and self._file:
            return self._file.replace(str(_PLACEHOLDER), str(output["uuid"]))
        return str(output["source_url"])


def output_record(output: dict[str, Any], link: str) -> dict[str, Any]:
    return {
        "id": str(output["uuid"]),
        "index": output["index"],
        "kind": output["kind"],
        "url": link,
        "content_type": output["content_type"],
        "width": output["width"],
        "height": output["height"],
        "duration": output["duration"],
        "size_bytes": output["size_bytes"],
        "sha256": output["sha256"],
        "archive_state": output["archive_state"],
    }


def run_record(run: dict[str, Any], outputs: list[dict[str, Any]], links: _Links) -> dict[str, Any]:
    return {
        "id": str(run["uuid"]),
        "runflow_id": str(run["runflow_id"]) if run["runflow_id"] else None,
        "created_at": _iso(run["created_at"]),
        "completed_at": _iso(run["completed_at"]),
        "status": run["status"],
        "model_id": run["model_id"],
        "api_url": run["api_url"],
        "created_by": run["creator"],
        "cost": str(run["cost"]) if run["cost"] is not None else None,
        "duration_ms": run["duration_ms"],
        "failure_code": run["failure_code"],
        "failure_message": run["failure_message"],
        "batch": str(run["batch_uuid"]) if run["batch_uuid"] else None,
        "parent": str(run["parent_uuid"]) if run["parent_uuid"] else None,
        "input": run["input"],
        "outputs": [output_record(o, links.output(o)) for o in outputs],
        "deleted_at": _iso(run["deleted_at"]),
        "url": links.run(run["uuid"]),
    }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def stream(runs: QuerySet[Run], fmt: str, *, team: Team, base_url: str) -> Iterator[str]:
    links = _Links(team, base_url)
    records = (run_record(run, outputs, links) for run, outputs in _rows(runs))
    return _csv(records) if fmt == "csv" else _json_array(records)


class _Line:
    """A file-like that hands back what csv.writer writes, one row at a time."""

    def write(self, value: str) -> str:
        return value


def _csv(records: Iterable[dict[str, Any]]) -> Iterator[str]:
    writer = csv.writer(_Line())
    yield "\ufeff"  # so spreadsheet programs read the file as UTF-8
    yield writer.writerow(CSV_COLUMNS)
    for record in records:
        prompt = record["input"].get("prompt") if isinstance(record["input"], dict) else None
        row = {
            **record,
            "prompt": prompt if isinstance(prompt, str) else "",
            "input": json.dumps(record["input"], ensure_ascii=False, sort_keys=True),
            "output_links": " ".join(o["url"] for o in record["outputs"]),
        }
        yield writer.writerow([_cell(row[column]) for column in CSV_COLUMNS])


def _cell(value: Any) -> str:
    if value is None:
        return ""
    text = str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def unescape_cell(text: str) -> str:
    """Undo ``_cell``'s formula guard (for readers of our CSV, and the round-trip tests)."""
    return text[1:] if text.startswith("'") and text[1:].startswith(_FORMULA_START) else text


def _json_array(records: Iterable[dict[str, Any]]) -> Iterator[str]:
    yield "["
    first = True
    for record in records:
        yield ("\n" if first else ",\n") + json.dumps(record, ensure_ascii=False, default=_json)
        first = False
    yield "\n]\n"


def _json(value: object) -> object:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    raise TypeError(f"Cannot export {type(value).__name__}")


# ---------- Whole-team export (manage.py export_team) ----------


def team_export(team: Team, *, base_url: str) -> Iterator[str]:
    """The team as one JSON document, written piece by piece (runs stream at the end)."""
    header = {
        "format": "runflow-site team export",
        "version": EXPORT_VERSION,
        "exported_at": timezone.now().isoformat(),
        "team": {
            "id": str(team.uuid),
            "name": team.name,
            "created_at": team.created_at.isoformat(),
            "monthly_budget": _money(team.monthly_budget),
            "confirm_threshold": _money(team.confirm_threshold),
            "retention_days": team.retention_days,
            "retention_delete_runs": team.retention_delete_runs,
        },
        "members": [
            {
                "username": m.user.get_username(),
                "email": m.user.email,
                "role": m.role,
                "monthly_budget": _money(m.monthly_budget),
                "joined_at": m.created_at.isoformat(),
            }
            for m in team.memberships.select_related("user").order_by("user__username")
        ],
        # Which connections existed, so a restore knows which keys to enter again. The key
        # itself never leaves the database; ``masked`` is the last four characters only.
        "connections": [
            {
                "label": k.label,
                "api_url": k.api_url,
                "masked": k.masked,
                "is_default": k.is_default,
                "revoked": k.revoked_at is not None,
            }
            for k in team.runflow_keys.order_by("id")
        ],
        "presets": [
            {
                "id": str(p.uuid),
                "model_id": p.model_id,
                "name": p.name,
                "input": p.input,
                "created_by": p.created_by.get_username() if p.created_by else None,
                "created_at": p.created_at.isoformat(),
            }
            for p in team.presets.select_related("created_by").order_by("model_id", "name")
        ],
        "model_policies": [
            {"model_id": p.model_id, "allowed": p.allowed, "min_role": p.min_role}
            for p in team.model_policies.order_by("model_id")
        ],
    }
    opening = json.dumps(header, ensure_ascii=False, indent=1, default=_json)
    yield opening[: opening.rindex("}")].rstrip() + ',\n "runs": '
    runs = Run.objects.filter(team=team).order_by("created_at", "id")
    links = _Links(team, base_url)
    records = (run_record(run, outputs, links) for run, outputs in _rows(runs))
    for piece in _json_array(records):
        yield piece.replace("\n]\n", "\n]")
    yield "\n}\n"


def _money(value: Decimal | None) -> str | None:
    return str(value) if value is not None else None
