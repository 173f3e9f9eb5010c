"""Exports: CSV and JSON of a filtered view (streamed, round-trip exact) and export_team."""

from __future__ import annotations

import csv
import io
import json
import uuid
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.http import StreamingHttpResponse
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from runs import export
from runs.models import (
    ArchiveState,
    CallbackSecret,
    Invitation,
    ModelPolicy,
    Output,
    Preset,
    Run,
    RunflowKey,
    ShareLink,
    Status,
    Team,
)
from tests.conftest import READ_EXPECTED, Cast, assert_access

pytestmark = pytest.mark.django_db

API = "https://api.runflow.io"
TRICKY_PROMPTS = [
    'a "quoted", comma, separated\nmulti-line prompt',
    "émoji 🎨 and ünïcode — ok",
    '=HYPERLINK("http://evil")',
    "-2+3 starts like a formula",
    "",
]


def make_run(team: Team, prompt: str, **fields: Any) -> Run:
    values: dict[str, Any] = {
        "team": team,
        "api_url": API,
        "model_id": "acme/image",
        "input": {"prompt": prompt, "seed": 7, "nested": {"list": [1, "two"]}},
        "status": Status.SUCCEEDED,
        "cost": Decimal("0.040000"),
        "duration_ms": 1234,
        "runflow_id": uuid.uuid4(),
        "completed_at": timezone.now(),
    }
    values.update(fields)
    return Run.objects.create(**values)


def body_of(response: StreamingHttpResponse) -> str:
    assert isinstance(response, StreamingHttpResponse)
    return b"".join(response.streaming_content).decode("utf-8")  # type: ignore[arg-type]


def export_url(cast: Cast, fmt: str) -> str:
    return reverse("runs:export_runs", args=[cast.team.uuid, fmt])


@pytest.fixture
def history(cast: Cast) -> list[Run]:
    runs = []
    for n, prompt in enumerate(TRICKY_PROMPTS):
        run = make_run(cast.team, prompt, created_by=cast.member)
        Output.objects.create(
            run=run,
            index=0,
            kind="image",
            source_url=f"https://cdn.example/{n}.png?sig=abc",
            width=512,
            height=512,
            content_type="image/png",
            archive_state=ArchiveState.PENDING,
        )
        runs.append(run)
    failed = make_run(
        cast.team,
        "broken",
        status=Status.FAILED,
        cost=None,
        failure_code="MODEL_ERROR",
        failure_message="It broke, badly",
        created_by=cast.admin,
    )
    runs.append(failed)
    make_run(cast.team, "hidden", deleted_at=timezone.now())
    make_run(cast.other_team, "not ours")
    return runs


# ---------- Access ----------


def test_export_access_matrix(cast: Cast) -> None:
    assert_access(cast, "get", export_url(cast, "csv"), READ_EXPECTED)
    assert_access(cast, "get", export_url(cast, "json"), READ_EXPECTED)


def test_unknown_format_is_404(cast: Cast) -> None:
    assert cast.client_for("admin").get(export_url(cast, "xml")).status_code == 404


# ---------- Round trips ----------


def test_json_export_round_trips_every_field(cast: Cast, history: list[Run]) -> None:
    response = cast.client_for("viewer").get(export_url(cast, "json"))
    assert response["Content-Type"] == "application/json"
    assert response["Content-Disposition"].startswith('attachment; filename="runs-acme-')
    rows = json.loads(body_of(response))
    assert {row["id"] for row in rows} == {str(run.uuid) for run in history}
    by_id = {row["id"]: row for row in rows}
    for run in history:
        row = by_id[str(run.uuid)]
        run.refresh_from_db()
        assert row["input"] == run.input
        assert row["status"] == run.status
        assert row["model_id"] == run.model_id
        assert (Decimal(row["cost"]) if row["cost"] else None) == run.cost
        assert row["duration_ms"] == run.duration_ms
        assert row["runflow_id"] == str(run.runflow_id)
        assert row["created_at"] == run.created_at.isoformat()
        assert row["failure_message"] == run.failure_message
        assert row["created_by"] == run.created_by.get_username()
        assert row["url"].endswith(reverse("runs:run", args=[cast.team.uuid, run.uuid]))
        assert [o["url"] for o in row["outputs"]] == [o.source_url for o in run.outputs.all()]


def test_csv_export_round_trips_tricky_text(cast: Cast, history: list[Run]) -> None:
    response = cast.client_for("member").get(export_url(cast, "csv"))
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    text = body_of(response)
    assert text.startswith("\ufeff")
    rows = list(csv.DictReader(io.StringIO(text.lstrip("\ufeff"))))
    assert list(rows[0].keys()) == export.CSV_COLUMNS
    by_id = {row["id"]: {k: export.unescape_cell(v) for k, v in row.items()} for row in rows}
    assert len(by_id) == len(history)
    for run in history:
        row = by_id[str(run.uuid)]
        assert row["prompt"] == run.input["prompt"]
        assert json.loads(row["input"]) == run.input
        assert row["status"] == run.status
        assert (Decimal(row["cost"]) if row["cost"] else None) == run.cost
        assert row["failure_message"] == run.failure_message
        assert row["output_links"].split() == [o.source_url for o in run.outputs.all()]


def test_csv_cells_never_start_a_formula(cast: Cast, history: list[Run]) -> None:
    text = body_of(cast.client_for("member").get(export_url(cast, "csv")))
    rows = list(csv.reader(io.StringIO(text.lstrip("\ufeff"))))
    for row in rows:
        for cell in row:
            assert not cell.startswith(("=", "+", "-", "@")), cell
    assert any(cell == '\'=HYPERLINK("http://evil")' for row in rows for cell in row)


def test_archived_outputs_link_to_our_copy(cast: Cast) -> None:
    run = make_run(cast.team, "kept")
    output = Output.objects.create(
        run=run, index=0, source_url="https://cdn.example/expiring.png", file="outputs/x.png"
    )
    rows = json.loads(body_of(cast.client_for("member").get(export_url(cast, "json"))))
    link = rows[0]["outputs"][0]["url"]
    try:
        ours = reverse("runs:output_file", args=[cast.team.uuid, output.uuid])
    except Exception:
        pytest.skip("the output_file view is not installed")
    assert link.endswith(ours) and "expiring" not in link


# ---------- Filters: the export is the filtered view ----------


def test_export_follows_the_history_filters(cast: Cast, history: list[Run]) -> None:
    client = cast.client_for("member")

    def ids(**params: str) -> set[str]:
        response = client.get(export_url(cast, "json"), params)
        return {row["id"] for row in json.loads(body_of(response))}

    assert ids(status="failed") == {str(history[-1].uuid)}
    assert ids(member="ada") == {str(history[-1].uuid)}
    assert ids(q="émoji") == {str(history[1].uuid)}
    assert ids(model="nothing/like-this") == set()
    tomorrow = (timezone.localdate() + timedelta(days=1)).isoformat()
    assert ids(since=tomorrow) == set()
    assert len(ids(status="bogus")) == len(history)  # a bad value is dropped, not a 500


def test_export_streams_with_a_constant_number_of_queries(cast: Cast) -> None:
    client = cast.client_for("member")

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            body_of(client.get(export_url(cast, "json")))
        return len(captured)

    for n in range(3):
        Output.objects.create(run=make_run(cast.team, f"p{n}"), index=0, source_url="https://x/1")
    queries()
    few = queries()
    for n in range(30):
        Output.objects.create(run=make_run(cast.team, f"q{n}"), index=0, source_url="https://x/2")
    assert queries() == few


# ---------- export_team ----------


@pytest.fixture
def team_with_secrets(cast: Cast, history: list[Run]) -> Cast:
    key = RunflowKey(team=cast.team, label="Production", api_url=API, is_default=True)
    key.set_secret("rf_live_TOPSECRETKEYVALUE9876")
    key.save()
    secret = CallbackSecret(team=cast.team)
    secret.set_secret("whsec_SIGNINGSECRETVALUE5432")
    secret.save()
    Invitation.objects.create(team=cast.team, note="for sam")
    ShareLink.objects.create(team=cast.team, title="Look")
    Preset.objects.create(
        team=cast.team, model_id="acme/image", name="Square", input={"aspect": "1:1"}
    )
    ModelPolicy.objects.create(team=cast.team, model_id="acme/video", allowed=False)
    cast.team.monthly_budget = Decimal("50")
    cast.team.save()
    return cast


def test_export_team_round_trips_and_holds_no_secret(team_with_secrets: Cast) -> None:
    cast = team_with_secrets
    out = io.StringIO()
    call_command("export_team", str(cast.team.uuid), stdout=out)
    text = out.getvalue()
    for secret in (
        "TOPSECRETKEYVALUE",
        "SIGNINGSECRETVALUE",
        Invitation.objects.get().token,
        ShareLink.objects.get().token,
    ):
        assert secret not in text
    data = json.loads(text)
    assert data["version"] == export.EXPORT_VERSION
    assert data["team"]["id"] == str(cast.team.uuid) and data["team"]["monthly_budget"] == "50.0000"
    assert [m["username"] for m in data["members"]] == ["ada", "mo", "vi"]
    assert data["connections"] == [
        {
            "label": "Production",
            "api_url": API,
            "masked": "rf_live_…9876",
            "is_default": True,
            "revoked": False,
        }
    ]
    assert data["presets"][0]["input"] == {"aspect": "1:1"}
    assert data["model_policies"] == [
        {"model_id": "acme/video", "allowed": False, "min_role": "member"}
    ]
    # Backups keep everything of the team, deleted runs included, nothing of other teams.
    in_db = Run.objects.filter(team=cast.team)
    assert {r["id"] for r in data["runs"]} == {str(u) for u in in_db.values_list("uuid", flat=True)}
    assert any(r["deleted_at"] for r in data["runs"])
    first = next(r for r in data["runs"] if r["input"]["prompt"] == TRICKY_PROMPTS[0])
    assert first["outputs"][0]["width"] == 512


def test_export_team_to_a_file(team_with_secrets: Cast, tmp_path: Path) -> None:
    target = tmp_path / "acme.json"
    call_command("export_team", str(team_with_secrets.team.uuid), output=str(target))
    assert json.loads(target.read_text())["team"]["name"] == "Acme"
    assert list(tmp_path.iterdir()) == [target]  # no partial file left behind


def test_export_team_of_an_empty_team(cast: Cast) -> None:
    out = io.StringIO()
    call_command("export_team", str(cast.other_team.uuid), stdout=out)
    assert json.loads(out.getvalue())["runs"] == []


def test_export_team_unknown_team(db: None) -> None:
    with pytest.raises(CommandError, match="No team"):
        call_command("export_team", str(uuid.uuid4()))
    with pytest.raises(CommandError, match="No team"):
        call_command("export_team", "not-a-uuid")
