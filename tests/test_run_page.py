"""The run page: access, what it shows, its live regions and the actions on it."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from runs.models import (
    Delivery,
    NodeRun,
    Outcome,
    Output,
    Run,
    RunflowKey,
    RunLog,
    Source,
    Status,
)
from runs.tasks.workspace import send_feedback
from runs.templatetags.runs_extras import duration_ms, failure_help, money, timeline
from tests.conftest import ADMIN_ONLY_EXPECTED, READ_EXPECTED, WRITE_EXPECTED, Cast, assert_access
from tests.workspace_factories import add_output, make_run, media  # noqa: F401

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("media")]

HTMX = {"HTTP_HX_REQUEST": "true"}


def run_url(run: Run, **query: str) -> str:
    url = reverse("runs:run", args=[run.team.uuid, run.uuid])
    return url + ("?" + "&".join(f"{k}={v}" for k, v in query.items()) if query else "")


def poll_url(html: str) -> str:
    found = re.search(r'id="run-poller"[^>]*hx-get="([^"]+)"', html)
    assert found is not None, "no poller"
    return found.group(1).replace("&amp;", "&")


def log(run: Run, n: int, level: str = "info", message: str = "") -> RunLog:
    return RunLog.objects.create(
        run=run,
        runflow_id=f"log-{n}",
        level=level,
        message=message or f"line {n}",
        timestamp=timezone.now(),
    )


# ---------------------------------------------------------------- access


def test_run_page_access_matrix(cast: Cast) -> None:
    run = make_run(cast.team, cast.member)
    assert_access(cast, "get", run_url(run), READ_EXPECTED)


def test_run_of_another_team_is_404_even_through_own_team_url(cast: Cast) -> None:
    foreign = make_run(cast.other_team, cast.outsider)
    client = cast.client_for("admin")
    assert client.get(reverse("runs:run", args=[cast.team.uuid, foreign.uuid])).status_code == 404
    assert client.get(run_url(foreign)).status_code == 404


def test_deleted_run_is_404(cast: Cast) -> None:
    run = make_run(cast.team, cast.member, deleted_at=timezone.now())
    assert cast.client_for("member").get(run_url(run)).status_code == 404


# ---------------------------------------------------------------- content


def test_page_shows_timeline_cost_inputs_logs_steps_and_ledger(cast: Cast) -> None:
    run = make_run(cast.team, cast.member, cost=Decimal("0.1234"), runflow_id=None)
    add_output(run)
    log(run, 1, "info", "loading weights")
    log(run, 2, "warning", "slow disk")
    log(run, 3, "error", "retrying node")
    NodeRun.objects.create(
        run=run, runflow_id="n1", node_id="upscale", state="succeeded", duration_ms=1500
    )
    Delivery.objects.create(
        team=cast.team,
        run=run,
        source=Source.CALLBACK,
        event="run.completed",
        signature_verified=True,
        outcome=Outcome.APPLIED,
    )
    html = cast.client_for("viewer").get(run_url(run)).content.decode()
    for label in ("Saved", "Queued", "Running", "Succeeded"):
        assert f'timeline__label">{label}' in html
    assert "$0.1234" in html
    assert "a lighthouse at dusk" in html and ">seed<" in html
    assert "log-line--info" in html and "log-line--warning" in html
    assert "log-line--error" in html and "retrying node" in html
    assert "upscale" in html and "1.5 s" in html
    assert "run.completed" in html and "signed ✓" in html and "Applied" in html
    assert 'class="tile tile--image"' in html
    assert "files.runflow.example" not in html  # never Runflow's expiring URL


def test_rerun_shows_the_diff_against_its_parent(cast: Cast) -> None:
    parent = make_run(cast.team, cast.member)
    parent.input = {"prompt": "a red fox", "steps": 20, "style": "ink"}
    parent.save()
    child = make_run(cast.team, cast.member, parent=parent)
    child.input = {"prompt": "a blue fox", "steps": 20, "seed": 3}
    child.save()
    html = cast.client_for("member").get(run_url(child)).content.decode()
    changed = re.findall(r'inputs__row inputs__row--changed">\s*<dt>(\w+)', html)
    assert sorted(changed) == ["prompt", "seed", "style"]
    assert "<del>a red fox</del>" in html
    assert ">removed<" in html and ">added<" in html and ">changed<" in html
    compare = reverse("runs:compare", args=[cast.team.uuid])
    assert f"{compare}?runs={parent.uuid}&amp;runs={child.uuid}" in html


@pytest.mark.parametrize(
    ("fields", "title", "hint"),
    [
        (
            {"failure_code": "INPUT_VALIDATION_FAILED", "failure_stage_code": "preprocess"},
            "The model could not use these inputs",
            "while the inputs were being prepared",
        ),
        (
            {"failure_code": "INSUFFICIENT_CREDIT", "failure_stage_code": "submission"},
            "out of credit",
            "Top up the account",
        ),
        ({"failure_code": "OUT_OF_CREDIT"}, "out of credit", "Nothing was charged"),
        (
            {"failure_code": "VALIDATION", "field_errors": {"steps": ["must be at most 50"]}},
            "Runflow refused some inputs",
            "must be at most 50",
        ),
        (
            {"failure_code": "GPU_OOM", "failure_stage_code": "inference"},
            "The run failed",
            "Run it again",
        ),
        ({"failure_stage_code": "submission"}, "Runflow refused the run", "never started"),
    ],
)
def test_failure_panel_explains_in_plain_words(
    cast: Cast, fields: dict, title: str, hint: str
) -> None:
    run = make_run(
        cast.team, cast.member, status=Status.FAILED, failure_message="boom at step 3", **fields
    )
    html = cast.client_for("member").get(run_url(run)).content.decode()
    panel = html[html.index('id="region-failure"') : html.index('id="region-outputs"')]
    assert title in panel
    assert hint in panel
    assert "boom at step 3" in panel
    assert "What to try" in panel


def test_canceled_and_partial_runs_say_so(cast: Cast) -> None:
    canceled = make_run(cast.team, cast.member, status=Status.CANCELED)
    partial = make_run(cast.team, cast.member, status=Status.PARTIAL_SUCCEEDED)
    assert (
        "This run was canceled" in cast.client_for("member").get(run_url(canceled)).content.decode()
    )
    assert (
        "Only some outputs arrived"
        in cast.client_for("member").get(run_url(partial)).content.decode()
    )


def test_successful_run_has_no_failure_panel(cast: Cast) -> None:
    run = make_run(cast.team, cast.member)
    assert failure_help(run) is None


def test_outputs_waiting_for_archive_show_a_placeholder_and_failures_their_reason(
    cast: Cast,
) -> None:
    run = make_run(cast.team, cast.member)
    add_output(run, 0, archived=False)
    add_output(run, 1, archived=False, archive_state="refused", archive_error="private address")
    html = cast.client_for("member").get(run_url(run)).content.decode()
    assert "Waiting to be copied" in html
    assert "Refused (unsafe address or content)" in html and "private address" in html
    assert "files.runflow.example" not in html


# ---------------------------------------------------------------- live regions


def test_in_flight_page_polls_and_terminal_page_does_not(cast: Cast) -> None:
    flying = make_run(cast.team, cast.member, status=Status.RUNNING)
    done = make_run(cast.team, cast.member)
    client = cast.client_for("member")
    flying_html = client.get(run_url(flying)).content.decode()
    assert flying_html.count('hx-trigger="every 1500ms"') == 1
    assert "live=1" in poll_url(flying_html)
    assert 'hx-trigger="every' not in client.get(run_url(done)).content.decode()


def test_a_quiet_poll_is_tiny_and_a_status_change_swaps_only_its_regions(cast: Cast) -> None:
    run = make_run(cast.team, cast.member, status=Status.RUNNING)
    client = cast.client_for("member")
    full = client.get(run_url(run)).content
    url = poll_url(full.decode())
    quiet = client.get(url, **HTMX)
    assert quiet.status_code == 200
    assert b"hx-swap-oob" not in quiet.content
    assert len(quiet.content) < 0.05 * len(full)
    Run.objects.filter(pk=run.pk).update(
        status=Status.SUCCEEDED, completed_at=timezone.now(), updated_at=timezone.now()
    )
    changed = client.get(url, **HTMX)
    html = changed.content.decode()
    assert changed.status_code == 286  # terminal and nothing left to copy: stop polling
    assert 'id="region-head"' in html and 'id="region-summary"' in html
    assert 'id="region-steps"' not in html and 'id="region-deliveries"' not in html
    assert 'badge--succeeded">Succeeded' in html
    assert len(changed.content) < 0.6 * len(full)


def test_new_log_lines_are_appended_once(cast: Cast) -> None:
    run = make_run(cast.team, cast.member, status=Status.RUNNING)
    log(run, 1)
    client = cast.client_for("member")
    url = poll_url(client.get(run_url(run)).content.decode())
    assert "logs=1" in url
    log(run, 2, message="second line")
    log(run, 3, message="third line")
    html = client.get(url, **HTMX).content.decode()
    assert 'hx-swap-oob="beforeend:#log-lines"' in html
    assert "second line" in html and "third line" in html and "line 1" not in html
    next_url = poll_url(html)
    assert "logs=3" in next_url
    again = client.get(next_url, **HTMX).content.decode()
    assert "beforeend" not in again


def test_a_quiet_poll_loads_no_log_lines_nor_ledger_bodies(cast: Cast) -> None:
    run = make_run(cast.team, cast.member, status=Status.RUNNING)
    for n in range(30):
        log(run, n)
    NodeRun.objects.create(run=run, runflow_id="n1", node_id="upscale", state="running")
    Delivery.objects.create(
        team=cast.team, run=run, source=Source.POLL, outcome=Outcome.APPLIED, raw_body=b"{}"
    )
    client = cast.client_for("member")
    url = poll_url(client.get(run_url(run)).content.decode())
    with CaptureQueriesContext(connection) as queries:
        quiet = client.get(url, **HTMX)
    assert quiet.status_code == 200 and poll_url(quiet.content.decode()) == url
    assert b"hx-swap-oob" not in quiet.content
    sql = " ".join(q["sql"] for q in queries.captured_queries)
    assert '"runs_runlog"."message"' not in sql and '"raw_body"' not in sql


def test_the_quiet_check_misses_no_change_of_any_region(cast: Cast) -> None:
    run = make_run(cast.team, cast.member, status=Status.RUNNING)
    step = NodeRun.objects.create(run=run, runflow_id="n1", node_id="upscale", state="running")
    client = cast.client_for("member")
    url = poll_url(client.get(run_url(run)).content.decode())

    def regions_swapped() -> str:
        nonlocal url
        html = client.get(url, **HTMX).content.decode()
        url = poll_url(html)
        return " ".join(re.findall(r'id="(region-[a-z]+)"', html))

    assert regions_swapped() == ""
    NodeRun.objects.filter(pk=step.pk).update(state="succeeded", duration_ms=900)
    assert regions_swapped() == "region-steps"
    Delivery.objects.create(team=cast.team, run=run, source=Source.POLL, outcome=Outcome.LATE)
    assert regions_swapped() == "region-deliveries"
    output = add_output(run, archived=False)
    assert regions_swapped() == "region-outputs"
    Output.objects.filter(pk=output.pk).update(width=640)
    assert regions_swapped() == "region-outputs"
    assert regions_swapped() == ""


def test_a_quiet_poll_still_stops_once_the_archive_watch_is_over(
    cast: Cast, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = make_run(cast.team, cast.member, completed_at=timezone.now())
    add_output(run, archived=False)
    client = cast.client_for("member")
    url = poll_url(client.get(run_url(run)).content.decode())
    assert client.get(url, **HTMX).status_code == 200
    monkeypatch.setattr("runs.history.ARCHIVE_WATCH", timedelta(0))  # time passed, nothing else
    stopped = client.get(url, **HTMX)
    assert stopped.status_code == 286 and b"hx-get" not in stopped.content


def test_polling_continues_after_success_until_outputs_are_copied(cast: Cast) -> None:
    run = make_run(cast.team, cast.member, completed_at=timezone.now())
    pending = add_output(run, archived=False)
    client = cast.client_for("member")
    url = poll_url(client.get(run_url(run)).content.decode())
    assert client.get(url, **HTMX).status_code == 200
    pending.delete()
    add_output(run)
    response = client.get(url, **HTMX)
    assert response.status_code == 286
    assert 'id="region-outputs"' in response.content.decode()
    assert "<img" in response.content.decode()


def test_an_archive_that_never_finishes_does_not_poll_forever(cast: Cast) -> None:
    run = make_run(cast.team, cast.member, completed_at=timezone.now() - timedelta(hours=1))
    add_output(run, archived=False)
    html = cast.client_for("member").get(run_url(run)).content.decode()
    assert 'hx-trigger="every' not in html


# ---------------------------------------------------------------- actions


def test_members_get_actions_viewers_do_not(cast: Cast) -> None:
    run = make_run(cast.team, cast.member)
    member_html = cast.client_for("member").get(run_url(run)).content.decode()
    viewer_html = cast.client_for("viewer").get(run_url(run)).content.decode()
    rerun = reverse("runs:rerun", args=[cast.team.uuid, run.uuid])
    assert f'action="{rerun}"' in member_html
    assert f"?from={run.uuid}" in member_html
    assert "Share" in member_html and 'value="up"' in member_html
    assert rerun not in viewer_html and "?from=" not in viewer_html
    assert 'value="up"' not in viewer_html and "shares/new" not in viewer_html


def test_cancel_is_offered_to_admins_of_in_flight_runs_only(cast: Cast) -> None:
    import uuid

    from tests.connection_support import store_key

    run = make_run(cast.team, cast.member, status=Status.RUNNING, runflow_id=uuid.uuid4())
    cancel = reverse("runs:cancel", args=[cast.team.uuid, run.uuid])
    # Without a service key, admins are told what cancelling needs instead of a button.
    html = cast.client_for("admin").get(run_url(run)).content.decode()
    assert cancel not in html and 'id="cancel-hint"' in html
    store_key(cast.team, "rf_svc_abcdefgh12345678", api_url=run.api_url)
    assert cancel in cast.client_for("admin").get(run_url(run)).content.decode()
    assert cancel not in cast.client_for("member").get(run_url(run)).content.decode()
    done = make_run(cast.team, cast.member, runflow_id=uuid.uuid4())
    assert "Cancel run" not in cast.client_for("admin").get(run_url(done)).content.decode()


def test_cancel_access_matrix_and_clear_message_without_a_key(cast: Cast) -> None:
    import uuid

    run = make_run(cast.team, cast.member, status=Status.RUNNING, runflow_id=uuid.uuid4())
    url = reverse("runs:cancel", args=[cast.team.uuid, run.uuid])
    assert_access(cast, "post", url, ADMIN_ONLY_EXPECTED)
    response = cast.client_for("admin").post(url, follow=True)
    assert "Runflow cancels runs only with a service key" in response.content.decode()
    run.refresh_from_db()
    assert run.status == Status.RUNNING


def test_feedback_is_stored_and_explained(cast: Cast) -> None:
    run = make_run(cast.team, cast.member)
    url = reverse("runs:feedback", args=[cast.team.uuid, run.uuid])
    assert_access(cast, "post", url, WRITE_EXPECTED, {"value": "up"})
    run.refresh_from_db()
    assert run.feedback is True
    response = cast.client_for("member").post(url, {"value": "down"}, **HTMX)
    html = response.content.decode()
    assert 'id="region-feedback"' in html and "<html" not in html
    assert "never reached Runflow" in html
    run.refresh_from_db()
    assert run.feedback is False
    cast.client_for("member").post(url, {"value": "clear"})
    run.refresh_from_db()
    assert run.feedback is None


def test_feedback_without_a_key_says_it_was_not_sent(cast: Cast) -> None:
    import uuid

    run = make_run(cast.team, cast.member, runflow_id=uuid.uuid4())
    url = reverse("runs:feedback", args=[cast.team.uuid, run.uuid])
    html = cast.client_for("member").post(url, {"value": "up"}, **HTMX).content.decode()
    assert "not sent" in html and "no Runflow key" in html


def test_feedback_task_tolerates_an_unreachable_runflow(cast: Cast) -> None:
    import uuid

    key = RunflowKey(team=cast.team, label="gone", api_url="http://127.0.0.1:9")
    key.set_secret("rf_live_" + "x" * 24)
    key.revoked_at = timezone.now()
    key.save()
    run = make_run(cast.team, cast.member, runflow_id=uuid.uuid4(), feedback=True, key=key)
    result = send_feedback.call(run.pk)
    assert result.startswith("not sent")


# ---------------------------------------------------------------- formatting helpers


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, "—"),
        (850, "850 ms"),
        (12_345, "12.3 s"),
        (125_000, "2 min 05 s"),
        (3_725_000, "1 h 02 min"),
    ],
)
def test_durations(value: int | None, text: str) -> None:
    assert duration_ms(value) == text


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, "—"),
        (Decimal("0.15"), "$0.15"),
        (Decimal("0.0042"), "$0.0042"),
        (Decimal("0.040000"), "$0.04"),
        (Decimal("1234.5"), "$1,234.50"),
        (Decimal("0"), "$0.00"),
        ("NaN", "—"),
    ],
)
def test_money(value: object, text: str) -> None:
    assert money(value) == text


def test_timeline_marks_skipped_stages_and_the_current_one(cast: Cast) -> None:
    now = timezone.now()
    run = make_run(cast.team, cast.member, status=Status.RUNNING, created_at=now, running_at=now)
    steps = {step.key: step for step in timeline(run)}
    assert steps["running"].current and steps["running"].reached
    assert not steps["dispatching"].reached
    assert not steps["terminal"].reached
    assert steps["queued"].took_ms == 0  # queued one second in, running from the start
