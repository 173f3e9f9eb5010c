"""Retention: preview, apply exactly what was previewed, worker sweep, files removed."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.urls import reverse
from django.utils import timezone

from runs import retention
from runs.models import ArchiveState, AuditEntry, Output, Run, Status, Team
from runs.tasks.upkeep import apply_retention, ensure_sweep_scheduled, retention_sweep
from tests.conftest import ADMIN_ONLY_EXPECTED, Cast, assert_access

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def media(settings: Any, tmp_path: Path) -> Path:
    settings.MEDIA_ROOT = tmp_path
    return tmp_path


def make_run(team: Team, days_old: int, *, status: str = Status.SUCCEEDED, files: int = 1) -> Run:
    run = Run.objects.create(
        team=team,
        api_url="https://api.runflow.io",
        model_id="acme/image",
        status=status,
        input={"prompt": f"{days_old} days old"},
        created_at=timezone.now() - timedelta(days=days_old, minutes=1),
    )
    for index in range(files):
        output = Output.objects.create(
            run=run,
            index=index,
            source_url="https://cdn.example/x.png",
            size_bytes=1000,
            archive_state=ArchiveState.ARCHIVED,
        )
        output.file.save(f"out-{index}.png", ContentFile(b"\x89PNG image"), save=False)
        output.thumbnail.save(f"thumb-{index}.webp", ContentFile(b"thumb"), save=False)
        output.save()
    return run


def stored(run: Run) -> list[str]:
    return [
        name
        for output in Output.objects.filter(run=run)
        for name in (output.file.name, output.thumbnail.name)
        if name
    ]


def with_rule(team: Team, days: int, *, delete_runs: bool = False) -> Team:
    team.retention_days = days
    team.retention_delete_runs = delete_runs
    team.save()
    return team


# ---------- Access ----------


def test_retention_pages_are_for_team_admins(cast: Cast) -> None:
    with_rule(cast.team, 30)
    assert_access(
        cast, "get", reverse("runs:retention", args=[cast.team.uuid]), ADMIN_ONLY_EXPECTED
    )
    assert_access(
        cast,
        "post",
        reverse("runs:retention_save", args=[cast.team.uuid]),
        ADMIN_ONLY_EXPECTED,
        {"retention_days": "30"},
    )


def test_apply_refuses_a_token_of_another_team(cast: Cast) -> None:
    make_run(cast.other_team, 90)
    preview = retention.plan(with_rule(cast.other_team, 30))
    assert preview is not None and not preview.is_empty
    response = cast.client_for("admin").post(
        reverse("runs:retention_apply", args=[cast.team.uuid]), {"plan": preview.token()}
    )
    assert response.status_code == 302
    assert Output.objects.filter(archive_state=ArchiveState.ARCHIVED).count() == 1


def test_apply_is_post_only(cast: Cast) -> None:
    response = cast.client_for("admin").get(reverse("runs:retention_apply", args=[cast.team.uuid]))
    assert response.status_code == 405


# ---------- Plan and preview ----------


def test_plan_selects_old_finished_runs_of_this_team_only(cast: Cast) -> None:
    with_rule(cast.team, 30)
    old = make_run(cast.team, 31)
    make_run(cast.team, 29)  # too recent
    make_run(cast.team, 60, status=Status.RUNNING)  # still in flight: never touched
    make_run(cast.other_team, 90)  # another team
    preview = retention.plan(cast.team)
    assert preview is not None
    assert preview.output_ids == tuple(Output.objects.filter(run=old).values_list("pk", flat=True))
    assert preview.run_ids == ()  # media only
    assert preview.media_bytes == 1000


def test_no_rule_no_plan(cast: Cast) -> None:
    make_run(cast.team, 400)
    assert retention.plan(cast.team) is None


def test_preview_page_lists_what_would_go(cast: Cast) -> None:
    with_rule(cast.team, 30, delete_runs=True)
    make_run(cast.team, 45)
    make_run(cast.team, 7)
    response = cast.client_for("admin").get(reverse("runs:retention", args=[cast.team.uuid]))
    body = response.content.decode()
    assert ">45 days old<" in body and ">7 days old<" not in body
    assert 'name="plan"' in body
    assert response.context["plan"].run_ids  # one run to delete


# ---------- Apply: exactly what was previewed ----------


def test_media_only_rule_deletes_files_and_keeps_runs(cast: Cast) -> None:
    with_rule(cast.team, 30)
    old, recent = make_run(cast.team, 31, files=2), make_run(cast.team, 3)
    old_files, recent_files = stored(old), stored(recent)
    preview = retention.plan(cast.team)
    assert preview is not None
    response = cast.client_for("admin").post(
        reverse("runs:retention_apply", args=[cast.team.uuid]), {"plan": preview.token()}
    )
    assert response.status_code == 302
    assert all(not default_storage.exists(name) for name in old_files)
    assert all(default_storage.exists(name) for name in recent_files)
    assert Run.objects.filter(pk=old.pk).exists()
    purged = Output.objects.filter(run=old)
    assert {o.archive_state for o in purged} == {ArchiveState.PURGED}
    assert all(not o.file and not o.thumbnail for o in purged)
    entry = AuditEntry.objects.get(action="retention.applied")
    assert entry.actor == cast.admin
    assert entry.detail["outputs_purged"] == 2 and entry.detail["files_deleted"] == 4
    assert entry.detail["runs_deleted"] == 0 and entry.detail["trigger"] == "preview"


def test_delete_runs_rule_deletes_exactly_the_previewed_runs(cast: Cast) -> None:
    with_rule(cast.team, 30, delete_runs=True)
    doomed = [make_run(cast.team, 40), make_run(cast.team, 100, files=0)]
    kept = [make_run(cast.team, 10), make_run(cast.team, 50, status=Status.QUEUED)]
    files = [name for run in doomed for name in stored(run)]
    preview = retention.plan(cast.team)
    assert preview is not None
    assert set(preview.run_ids) == {run.pk for run in doomed}
    # Created after the preview, already old (an import, a clock skew): not previewed, kept.
    latecomer = make_run(cast.team, 90)
    result = retention.apply(retention.plan_from_token(cast.team, preview.token()))
    assert result.runs_deleted == 2
    assert set(Run.objects.filter(team=cast.team).values_list("pk", flat=True)) == {
        *(run.pk for run in kept),
        latecomer.pk,
    }
    assert all(not default_storage.exists(name) for name in files)
    assert all(default_storage.exists(name) for name in stored(latecomer))


def test_apply_refuses_when_the_selection_changed_since_the_preview(cast: Cast) -> None:
    with_rule(cast.team, 30)
    make_run(cast.team, 40)
    finishing = make_run(cast.team, 45, status=Status.RUNNING)
    preview = retention.plan(cast.team)
    assert preview is not None and len(preview.output_ids) == 1
    Run.objects.filter(pk=finishing.pk).update(status=Status.SUCCEEDED)  # it finished meanwhile
    response = cast.client_for("admin").post(
        reverse("runs:retention_apply", args=[cast.team.uuid]),
        {"plan": preview.token()},
        follow=True,
    )
    assert "changed since the preview" in response.content.decode()
    assert not Output.objects.filter(archive_state=ArchiveState.PURGED).exists()
    assert not AuditEntry.objects.filter(action="retention.applied").exists()


def test_tampered_or_stale_tokens_are_refused(cast: Cast, monkeypatch: pytest.MonkeyPatch) -> None:
    with_rule(cast.team, 30)
    make_run(cast.team, 40)
    preview = retention.plan(cast.team)
    assert preview is not None
    with pytest.raises(retention.PlanChanged, match="not valid"):
        retention.plan_from_token(cast.team, preview.token() + "x")
    monkeypatch.setattr(retention, "TOKEN_MAX_AGE", -1)
    with pytest.raises(retention.PlanChanged, match="more than an hour"):
        retention.plan_from_token(cast.team, preview.token())


def test_worker_skips_and_records_a_plan_that_changed(cast: Cast) -> None:
    with_rule(cast.team, 30)
    make_run(cast.team, 40)
    make_run(cast.team, 60, status=Status.RUNNING)
    preview = retention.plan(cast.team)
    assert preview is not None
    Run.objects.filter(status=Status.RUNNING).update(status=Status.FAILED)
    result = apply_retention.enqueue(cast.team.pk, preview.token(), cast.admin.pk)
    assert result.return_value == {"runs_deleted": 0, "files_deleted": 0}
    assert AuditEntry.objects.filter(action="retention.skipped", actor=cast.admin).exists()


# ---------- The worker's sweep ----------


def test_sweep_applies_every_due_team(cast: Cast) -> None:
    with_rule(cast.team, 30, delete_runs=True)
    mine = make_run(cast.team, 31)
    theirs = make_run(cast.other_team, 365)  # no rule in that team
    result = retention_sweep.enqueue()
    assert result.return_value == 1
    assert not Run.objects.filter(pk=mine.pk).exists()
    assert Run.objects.filter(pk=theirs.pk).exists()
    entry = AuditEntry.objects.get(action="retention.applied")
    assert entry.actor is None and entry.detail["trigger"] == "schedule"
    # Nothing left to do: a second pass deletes nothing and writes nothing.
    retention_sweep.enqueue()
    assert AuditEntry.objects.filter(action="retention.applied").count() == 1


def test_sweep_scheduling_is_a_no_op_without_deferred_tasks() -> None:
    # The immediate backend used by tests cannot wait: no chain, no recursion.
    assert ensure_sweep_scheduled() is False
