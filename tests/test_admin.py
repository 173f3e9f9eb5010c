"""The operations console: scoping (team A's staff sees nothing of team B), masked secrets,
read-only records, no COUNT(*) on big tables, and the operational actions."""

from __future__ import annotations

import re
import sys
import types
import uuid
from typing import Any

import httpx
import pytest
from django.contrib import admin
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from runs.models import (
    ArchiveState,
    AuditEntry,
    Batch,
    CallbackSecret,
    Delivery,
    Invitation,
    Membership,
    ModelPolicy,
    NodeRun,
    Output,
    Preset,
    Run,
    RunflowKey,
    RunflowModel,
    RunLog,
    ShareLink,
    Source,
    Status,
    Team,
    record,
)
from tests.conftest import Cast, make_user

pytestmark = pytest.mark.django_db

API = "https://api.runflow.io"
KEY_SECRET = "rf_live_TOPSECRETADMINKEY4321"
HOOK_SECRET = "whsec_TOPSECRETSIGNING8765"


def make_run(team: Team, **fields: Any) -> Run:
    values: dict[str, Any] = {
        "team": team,
        "api_url": API,
        "model_id": f"{team.name.lower()}/model",
        "input": {"prompt": f"secret plans of {team.name}"},
        "runflow_id": uuid.uuid4(),
    }
    values.update(fields)
    return Run.objects.create(**values)


def populate(team: Team, user: Any) -> dict[str, Any]:
    """One object of every model, in ``team``."""
    run = make_run(team, status=Status.SUCCEEDED, created_by=user, failure_code="")
    key = RunflowKey(team=team, label=f"{team.name} key", api_url=API)
    key.set_secret(KEY_SECRET)
    key.save()
    secret = CallbackSecret(team=team)
    secret.set_secret(HOOK_SECRET)
    secret.save()
    batch = Batch.objects.create(team=team, api_url=API, model_id="a/b", label=f"{team.name} batch")
    return {
        "run": run,
        "output": Output.objects.create(run=run, index=0, source_url="https://x/1.png?sig=zzz"),
        "delivery": Delivery.objects.create(team=team, run=run, source=Source.POLL),
        "log": RunLog.objects.create(run=run, runflow_id="l1", message=f"log of {team.name}"),
        "node": NodeRun.objects.create(run=run, runflow_id="n1", node_id=f"{team.name}-node"),
        "batch": batch,
        "key": key,
        "secret": secret,
        "invitation": Invitation.objects.create(team=team, note=f"for {team.name}"),
        "share": ShareLink.objects.create(team=team, title=f"{team.name} share"),
        "preset": Preset.objects.create(team=team, model_id="a/b", name=f"{team.name} preset"),
        "policy": ModelPolicy.objects.create(team=team, model_id=f"{team.name}/policy"),
        "audit": record("member.added", team=team, target=f"{team.name} person"),
        "membership": Membership.objects.filter(team=team).first(),
        "team": team,
    }


@pytest.fixture
def world(cast: Cast) -> dict[str, Any]:
    """Team A (Acme) and team B (Other), each with one of everything."""
    RunflowModel.objects.create(api_url=API, model_id="acme/catalog", price_label="$0.04")
    return {"a": populate(cast.team, cast.member), "b": populate(cast.other_team, cast.outsider)}


@pytest.fixture
def staff_a(cast: Cast) -> Client:
    """Ada, admin of team A, made staff: the scoped console user."""
    cast.admin.is_staff = True
    cast.admin.save()
    return cast.client_for("admin")


def url(obj: Any, view: str = "change") -> str:
    opts = obj._meta
    if view == "changelist":
        return reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")
    return reverse(f"admin:{opts.app_label}_{opts.model_name}_{view}", args=[obj.pk])


def changelist(obj: Any) -> str:
    return url(obj, "changelist")


def our_models() -> list[type]:
    return [model for model in admin.site._registry if model._meta.app_label == "runs"]


# ---------- Who may enter ----------


def test_every_model_of_the_app_is_in_the_console() -> None:
    registered = {model.__name__ for model in our_models()}
    assert registered >= {
        "Team", "Membership", "Invitation", "RunflowKey", "CallbackSecret", "RunflowModel",
        "Preset", "ModelPolicy", "Run", "Output", "Delivery", "Batch", "AuditEntry",
        "RunLog", "NodeRun", "ShareLink",
    }  # fmt: skip


def test_superuser_can_open_every_list_and_object(cast: Cast, world: dict[str, Any]) -> None:
    client = cast.client_for("superuser")
    for name, obj in world["a"].items():
        assert client.get(changelist(obj)).status_code == 200, name
        assert client.get(url(obj)).status_code == 200, name


def test_people_who_are_not_staff_are_sent_to_the_login(cast: Cast, world: dict[str, Any]) -> None:
    response = cast.client_for("admin").get(changelist(world["a"]["run"]))
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_staff_who_administer_no_team_see_nothing(cast: Cast, world: dict[str, Any]) -> None:
    cast.member.is_staff = True  # a member, not an admin, of team A
    cast.member.save()
    client = cast.client_for("member")
    index = client.get(reverse("admin:index"))
    assert index.status_code == 200 and b"Runs" not in index.content
    for obj in world["a"].values():
        assert client.get(changelist(obj)).status_code == 403


# ---------- Scoping: a staff user of team A sees nothing of team B ----------


def test_scoped_lists_show_only_team_a(staff_a: Client, world: dict[str, Any]) -> None:
    for name in ("run", "output", "delivery", "batch", "key", "invitation", "preset", "policy",
                 "audit", "membership", "team", "share", "log", "node", "secret"):  # fmt: skip
        response = staff_a.get(changelist(world["a"][name]))
        assert response.status_code == 200, name
        shown = {row.pk for row in response.context["cl"].result_list}
        assert world["a"][name].pk in shown, name
        assert world["b"][name].pk not in shown, name
    body = staff_a.get(changelist(world["a"]["run"])).content.decode()
    assert "other/model" not in body and str(world["b"]["run"].uuid) not in body


def test_scoped_object_pages_of_team_b_are_not_found(
    staff_a: Client, world: dict[str, Any]
) -> None:
    for name, obj in world["b"].items():
        response = staff_a.get(url(obj))
        assert response.status_code == 302, name  # "doesn't exist", back to the index
        assert response["Location"] == reverse("admin:index"), name
        history = staff_a.get(url(obj, "history"))
        assert history.status_code == 302, name
    assert staff_a.get(url(world["a"]["run"])).status_code == 200


def test_scoped_search_finds_nothing_of_team_b(staff_a: Client, world: dict[str, Any]) -> None:
    other = world["b"]["run"]
    for term in (str(other.uuid), str(other.runflow_id), "plans of other"):
        response = staff_a.get(changelist(other), {"q": term})
        assert list(response.context["cl"].result_list) == [], term
    mine = world["a"]["run"]
    found = staff_a.get(changelist(mine), {"q": str(mine.uuid)}).context["cl"].result_list
    assert [run.pk for run in found] == [mine.pk]
    teams = staff_a.get(changelist(world["a"]["team"]), {"q": "Other"}).context["cl"]
    assert list(teams.result_list) == []


def test_scoped_filters_offer_and_honour_only_team_a(
    staff_a: Client, cast: Cast, world: dict[str, Any]
) -> None:
    response = staff_a.get(changelist(world["a"]["run"]))
    filters = response.context["cl"].filter_specs
    choices = {str(c) for spec in filters for c in getattr(spec, "lookup_choices", [])}
    assert "Other" not in str(choices) and "other/model" not in str(choices)
    forced = staff_a.get(changelist(world["a"]["run"]), {"team": str(cast.other_team.uuid)})
    assert list(forced.context["cl"].result_list) == []
    by_model = staff_a.get(changelist(world["a"]["run"]), {"model": "other/model"})
    assert list(by_model.context["cl"].result_list) == []


def test_scoped_autocomplete_lists_only_team_a(
    staff_a: Client, cast: Cast, world: dict[str, Any]
) -> None:
    response = staff_a.get(
        reverse("admin:autocomplete"),
        {"app_label": "runs", "model_name": "membership", "field_name": "team", "term": ""},
    )
    assert response.status_code == 200
    names = {item["text"] for item in response.json()["results"]}
    assert names == {"Acme"}


def test_scoped_staff_cannot_change_or_delete(staff_a: Client, world: dict[str, Any]) -> None:
    team = world["a"]["team"]
    response = staff_a.post(url(team), {"name": "Renamed"})
    assert response.status_code == 403
    assert staff_a.get(url(team, "delete")).status_code == 403
    team.refresh_from_db()
    assert team.name == "Acme"


def test_scoped_actions_never_touch_team_b(staff_a: Client, world: dict[str, Any]) -> None:
    mine = make_run(world["a"]["team"], status=Status.RUNNING)
    theirs = make_run(world["b"]["team"], status=Status.RUNNING)
    staff_a.post(
        changelist(mine),
        {"action": "mark_failed", "_selected_action": [mine.pk, theirs.pk]},
    )
    mine.refresh_from_db()
    theirs.refresh_from_db()
    assert mine.status == Status.FAILED
    assert theirs.status == Status.RUNNING


# ---------- Secrets never shown ----------


def test_secrets_appear_nowhere(cast: Cast, world: dict[str, Any]) -> None:
    client = cast.client_for("superuser")
    key, secret = world["a"]["key"], world["a"]["secret"]
    pages = [
        client.get(changelist(key)),
        client.get(url(key)),
        client.get(changelist(secret)),
        client.get(url(secret)),
        client.get(changelist(key), {"q": "ADMINKEY"}),
    ]
    for page in pages:
        body = page.content.decode()
        assert KEY_SECRET not in body and HOOK_SECRET not in body
        assert "TOPSECRET" not in body  # not even a prefix
        assert 'name="secret"' not in body
    assert "rf_live_…4321" in pages[0].content.decode()
    assert list(pages[4].context["cl"].result_list) == []
    assert client.get(reverse("admin:runs_runflowkey_add")).status_code == 403
    # Bearer links are credentials too: invitation and share tokens are not shown.
    for name in ("invitation", "share"):
        obj = world["a"][name]
        assert obj.token not in client.get(url(obj)).content.decode()
        assert obj.token not in client.get(changelist(obj)).content.decode()


def test_posting_a_secret_to_the_key_form_changes_nothing(
    cast: Cast, world: dict[str, Any]
) -> None:
    key = world["a"]["key"]
    response = cast.client_for("superuser").post(url(key), {"secret": "rf_live_replaced0000"})
    assert response.status_code == 403
    key.refresh_from_db()
    assert key.secret.reveal() == KEY_SECRET


# ---------- Audit entries: read-only, append-only ----------


def test_audit_entries_cannot_be_added_changed_or_deleted(
    cast: Cast, world: dict[str, Any]
) -> None:
    client = cast.client_for("superuser")
    entry = world["a"]["audit"]
    assert client.get(reverse("admin:runs_auditentry_add")).status_code == 403
    assert client.get(url(entry, "delete")).status_code == 403
    assert client.post(url(entry), {"target": "rewritten"}).status_code == 403
    page = client.get(url(entry))
    assert page.status_code == 200 and b'name="_save"' not in page.content
    assert (
        client.get(changelist(entry)).context["cl"].model_admin.get_actions(page.wsgi_request) == {}
    )


def test_admin_edits_are_audited(cast: Cast, world: dict[str, Any]) -> None:
    client = cast.client_for("superuser")
    membership = Membership.objects.get(team=cast.team, user=cast.viewer)
    client.post(
        url(membership),
        {"user": cast.viewer.pk, "team": cast.team.pk, "role": "member", "monthly_budget": ""},
    )
    entry = AuditEntry.objects.filter(action="member.role_changed").get()
    assert entry.actor == cast.superuser and entry.detail["via"] == "admin"
    run = world["a"]["run"]
    client.post(url(run, "delete"), {"post": "yes"})
    assert not Run.objects.filter(pk=run.pk).exists()
    assert AuditEntry.objects.filter(action="run.deleted", target=str(run.uuid)).exists()


# ---------- Scale: no COUNT(*) on the big tables ----------


def test_run_list_never_counts_the_table(cast: Cast, world: dict[str, Any]) -> None:
    client = cast.client_for("superuser")
    for n in range(105):
        make_run(cast.team, input={"prompt": f"bulk {n}"})
    with CaptureQueriesContext(connection) as captured:
        first = client.get(changelist(world["a"]["run"]))
    counts = [
        q["sql"] for q in captured if re.search(r"COUNT\(", q["sql"]) and "runs_run" in q["sql"]
    ]
    assert counts == []
    assert len(first.context["cl"].result_list) == 100
    second = client.get(changelist(world["a"]["run"]), {"p": 2})
    assert len(second.context["cl"].result_list) == 107 - 100  # 105 + one per team
    assert first.context["cl"].paginator.num_pages == 2


def test_run_list_queries_do_not_grow_with_rows(cast: Cast) -> None:
    client = cast.client_for("superuser")
    target = reverse("admin:runs_run_changelist")

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            client.get(target)
        return len(captured)

    make_run(cast.team, created_by=cast.member)
    queries()
    few = queries()
    for n in range(30):
        make_run(cast.team if n % 2 else cast.other_team, created_by=cast.admin)
    assert queries() == few


# ---------- Operational actions ----------


def act(client: Client, obj: Any, action: str, *objs: Any) -> list[str]:
    response = client.post(
        changelist(obj), {"action": action, "_selected_action": [o.pk for o in objs]}, follow=True
    )
    return [str(m) for m in response.context["messages"]]


def test_mark_failed_goes_through_the_one_transition(cast: Cast) -> None:
    stuck = make_run(cast.team, status=Status.RUNNING)
    done = make_run(cast.team, status=Status.SUCCEEDED)
    said = act(cast.client_for("superuser"), stuck, "mark_failed", stuck, done)
    stuck.refresh_from_db()
    done.refresh_from_db()
    assert stuck.status == Status.FAILED and stuck.failure_code == "MARKED_FAILED"
    assert "root" in stuck.failure_message
    assert done.status == Status.SUCCEEDED
    assert Delivery.objects.filter(run=stuck, outcome="applied", note="admin: root").exists()
    assert AuditEntry.objects.filter(action="run.marked_failed", target=str(stuck.uuid)).exists()
    assert "Marked 1 run(s) failed." in said[0] and "Skipped 1" in said[0]


def test_poll_now_arms_the_poll_of_runs_in_flight(cast: Cast) -> None:
    pytest.importorskip("runs.tasks.polling")
    running = make_run(cast.team, status=Status.RUNNING)
    done = make_run(cast.team, status=Status.SUCCEEDED)
    said = act(cast.client_for("superuser"), running, "poll_now", running, done)
    running.refresh_from_db()
    assert running.next_poll_at is not None
    assert "Asked for a poll of 1 run(s)." in said[0]


def test_rearchive_queues_the_archiver_per_run(cast: Cast, monkeypatch: pytest.MonkeyPatch) -> None:
    archive = pytest.importorskip("runs.tasks.archive")
    queued: list[int] = []
    spy = types.SimpleNamespace(enqueue=queued.append)
    monkeypatch.setattr(archive, "archive_outputs", spy)
    done = make_run(cast.team, status=Status.SUCCEEDED)
    output = Output.objects.create(
        run=done, index=0, source_url="https://x/y.png", archive_state=ArchiveState.FAILED
    )
    failed = make_run(cast.team, status=Status.FAILED)
    said = act(cast.client_for("superuser"), done, "rearchive_outputs", done, failed)
    assert queued == [done.pk]
    assert "for 1 run(s)" in said[0]
    # The same action from the outputs list.
    queued.clear()
    act(cast.client_for("superuser"), output, "rearchive_outputs", output)
    assert queued == [done.pk]


def test_redeliver_asks_runflow_and_reports_failures(
    cast: Cast, monkeypatch: pytest.MonkeyPatch
) -> None:
    from runs.runflow.client import RunflowClient

    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        return httpx.Response(201, json={"status": "queued"})

    def client_for_team(team: Team, *, key: Any = None) -> RunflowClient:
        if team.name == "Other":
            raise RuntimeError("Other has no Runflow key yet.")
        return RunflowClient(API, "rf_live_testkey1234", transport=httpx.MockTransport(handler))

    module = sys.modules.get("runs.connection") or types.ModuleType("runs.connection")
    monkeypatch.setitem(sys.modules, "runs.connection", module)
    monkeypatch.setattr(module, "client_for_team", client_for_team, raising=False)
    mine = make_run(cast.team, status=Status.SUCCEEDED)
    theirs = make_run(cast.other_team, status=Status.SUCCEEDED)
    said = act(cast.client_for("superuser"), mine, "redeliver_callback", mine, theirs)
    assert seen == [f"/v1/runs/{mine.runflow_id}/callback-redeliveries"]
    assert "send 1 callback(s) again" in said[0]
    assert "Other has no Runflow key yet." in said[0]


def test_resync_catalog_queues_each_endpoint_once(
    cast: Cast, world: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    catalog = pytest.importorskip("runs.tasks.catalog")
    queued: list[str] = []
    monkeypatch.setattr(catalog, "sync_catalog", types.SimpleNamespace(enqueue=queued.append))
    second = RunflowModel.objects.create(api_url=API, model_id="acme/other")
    first = RunflowModel.objects.get(model_id="acme/catalog")
    act(cast.client_for("superuser"), first, "resync_catalog", first, second)
    assert queued == [API]


def test_resync_is_for_superusers_only(staff_a: Client, world: dict[str, Any]) -> None:
    response = staff_a.get(reverse("admin:runs_runflowmodel_changelist"))
    assert response.status_code == 200
    assert "resync_catalog" not in response.context["cl"].model_admin.get_actions(
        response.wsgi_request
    )


def test_missing_parts_give_a_clear_message(cast: Cast, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "runs.tasks.polling", None)  # import now fails
    running = make_run(cast.team, status=Status.RUNNING)
    said = act(cast.client_for("superuser"), running, "poll_now", running)
    assert said == ["Polling is not available in this installation yet; nothing was done."]


def test_revoke_key_action_uses_the_audited_connection_function(
    cast: Cast, world: dict[str, Any]
) -> None:
    pytest.importorskip("runs.connection")
    key = world["a"]["key"]
    act(cast.client_for("superuser"), key, "revoke_keys", key)
    key.refresh_from_db()
    assert key.revoked_at is not None
    assert AuditEntry.objects.filter(team=cast.team, action__contains="revoked").exists()


def test_a_staff_user_of_both_teams_sees_both(cast: Cast, world: dict[str, Any]) -> None:
    both = make_user("both", is_staff=True)
    Membership.objects.create(user=both, team=cast.team, role="admin")
    Membership.objects.create(user=both, team=cast.other_team, role="admin")
    client = Client()
    client.force_login(both)
    shown = {r.pk for r in client.get(changelist(world["a"]["run"])).context["cl"].result_list}
    assert {world["a"]["run"].pk, world["b"]["run"].pk} <= shown
