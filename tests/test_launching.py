"""The launch page, "Run again", "Edit and run" and uploads, end to end on a fake Runflow."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.tasks.signals import task_enqueued
from django.test import Client
from django.urls import reverse

from runs.models import ModelPolicy, Run, Status
from runs.tasks.submit import submit_run
from tests.conftest import READ_EXPECTED, WRITE_EXPECTED, Cast, assert_access
from tests.launch_support import FakeRunflow, connect, fake_runflow, make_model, ready

__all__ = ["fake_runflow", "ready"]

pytestmark = pytest.mark.django_db

MODEL = "acme/text-to-image"
LAUNCHERS_ONLY = {**READ_EXPECTED, "viewer": 403}


def connected(cast: Cast) -> None:
    connect(cast.team)
    make_model(MODEL)


def launch_url(cast: Cast, model_id: str = MODEL) -> str:
    return reverse("runs:launch", args=[cast.team.uuid, model_id])


def post_launch(
    client: Client, url: str, capture: Any, token: uuid.UUID | None = None, **fields: Any
) -> Any:
    data = {"launch_token": str(token or uuid.uuid4()), "input-prompt": "a red fox"}
    data.update(
        {
            f"input-{k}" if not k.startswith(("input-", "launch", "confirmed", "parent")) else k: v
            for k, v in fields.items()
        }
    )
    with capture(execute=True):
        return client.post(url, data)


# ---- access ----


def test_launch_page_access(ready: Cast) -> None:
    assert_access(ready, "get", launch_url(ready), LAUNCHERS_ONLY)
    assert_access(ready, "get", reverse("runs:launch", args=[ready.team.uuid]), LAUNCHERS_ONLY)


def test_launch_post_access(ready: Cast, fake_runflow: FakeRunflow) -> None:
    data = {"input-prompt": "a red fox", "launch_token": ""}
    assert_access(ready, "post", launch_url(ready), WRITE_EXPECTED, data)
    assert Run.objects.filter(created_by=ready.viewer).count() == 0


def test_rerun_and_upload_access(ready: Cast, fake_runflow: FakeRunflow) -> None:
    run = Run.objects.create(
        team=ready.team, created_by=ready.member, api_url="x", model_id=MODEL, input={"prompt": "p"}
    )
    url = reverse("runs:rerun", args=[ready.team.uuid, run.uuid])
    assert_access(ready, "post", url, WRITE_EXPECTED)
    assert_access(ready, "get", url, {"member": 405})
    other = Run.objects.create(team=ready.other_team, api_url="x", model_id=MODEL, input={})
    assert (
        ready.client_for("member")
        .post(reverse("runs:rerun", args=[ready.team.uuid, other.uuid]))
        .status_code
        == 404
    )
    upload = reverse("runs:launch_upload", args=[ready.team.uuid])
    assert_access(ready, "post", upload, {None: 302, "outsider": 404, "viewer": 403}, {})


# ---- launching ----


def test_the_form_shows_the_models_inputs_curl_and_no_key(ready: Cast) -> None:
    response = ready.client_for("member").get(launch_url(ready))
    html = response.content.decode()
    assert response.status_code == 200
    assert 'name="input-prompt"' in html and 'name="input-aspect_ratio"' in html
    assert "$RUNFLOW_API_KEY" in html and "LaunchTestKey" not in html
    assert "about <strong data-estimate-value>$0.04</strong>" in html  # label times one image
    assert 'name="launch_token"' in html


def test_launch_saves_the_run_first_then_submits_and_redirects(
    ready: Cast, fake_runflow: FakeRunflow, django_capture_on_commit_callbacks: Any
) -> None:
    client = ready.client_for("member")
    response = post_launch(
        client, launch_url(ready), django_capture_on_commit_callbacks, num_images="2"
    )
    run = Run.objects.get()
    assert response.status_code == 302 and response["Location"] == run.get_absolute_url()
    assert run.created_by == ready.member and run.team == ready.team
    assert run.input["prompt"] == "a red fox" and run.input["num_images"] == 2
    assert run.api_url == "https://api.runflow.io" or run.api_url
    assert run.status == Status.QUEUED
    assert [r["client_ref"] for r in fake_runflow.runs] == [str(run.uuid)]


def test_double_submit_of_one_form_makes_one_run_and_one_upstream_run(
    ready: Cast, fake_runflow: FakeRunflow, django_capture_on_commit_callbacks: Any
) -> None:
    client = ready.client_for("member")
    token = uuid.uuid4()
    first = post_launch(client, launch_url(ready), django_capture_on_commit_callbacks, token)
    second = post_launch(client, launch_url(ready), django_capture_on_commit_callbacks, token)
    assert first["Location"] == second["Location"]
    assert Run.objects.count() == 1
    assert Run.objects.get().uuid == token
    assert len(fake_runflow.runs) == 1
    assert fake_runflow.count("create run") == 1


def test_a_token_from_another_person_is_not_their_run(
    ready: Cast, fake_runflow: FakeRunflow, django_capture_on_commit_callbacks: Any
) -> None:
    token = uuid.uuid4()
    post_launch(
        ready.client_for("member"), launch_url(ready), django_capture_on_commit_callbacks, token
    )
    response = post_launch(
        ready.client_for("admin"), launch_url(ready), django_capture_on_commit_callbacks, token
    )
    mine = Run.objects.get(created_by=ready.admin)
    assert response["Location"] == mine.get_absolute_url()  # their own run, not mo's
    assert mine.uuid != token and Run.objects.get(created_by=ready.member).uuid == token


def model_forbidden(cast: Cast) -> None:
    connected(cast)
    ModelPolicy.objects.create(team=cast.team, model_id=MODEL, allowed=False)


def not_connected(cast: Cast) -> None:
    make_model(MODEL)


@pytest.mark.parametrize(
    ("setup", "fields", "reason"),
    [
        pytest.param(connected, {"num_images": "9"}, "Must be at most 4.", id="invalid-input"),
        pytest.param(model_forbidden, {}, "is not allowed in Acme", id="policy"),
        pytest.param(not_connected, {}, "not connected to Runflow", id="not-connected"),
    ],
)
def test_a_refused_launch_says_why_keeps_the_input_and_saves_nothing(
    cast: Cast,
    fake_runflow: FakeRunflow,
    django_capture_on_commit_callbacks: Any,
    setup: Callable[[Cast], None],
    fields: dict[str, str],
    reason: str,
) -> None:
    setup(cast)
    response = post_launch(
        cast.client_for("member"),
        launch_url(cast),
        django_capture_on_commit_callbacks,
        prompt="a refused fox",
        **fields,
    )
    html = response.content.decode()
    assert response.status_code == 200
    assert reason in html
    assert "a refused fox" in html  # what was typed is still there
    assert not Run.objects.exists() and fake_runflow.requests == []


def test_costly_launch_asks_for_confirmation_first(
    ready: Cast, fake_runflow: FakeRunflow, django_capture_on_commit_callbacks: Any
) -> None:
    ready.team.confirm_threshold = Decimal("0.05")
    ready.team.save()
    client = ready.client_for("member")
    token = uuid.uuid4()
    response = post_launch(
        client, launch_url(ready), django_capture_on_commit_callbacks, token, num_images="4"
    )
    assert response.status_code == 200
    assert "Launch anyway" in response.content.decode()
    assert not Run.objects.exists()
    response = post_launch(
        client,
        launch_url(ready),
        django_capture_on_commit_callbacks,
        token,
        num_images="4",
        confirmed="1",
    )
    assert response.status_code == 302 and Run.objects.count() == 1


def test_a_model_not_in_the_catalog_takes_raw_json(
    ready: Cast, fake_runflow: FakeRunflow, django_capture_on_commit_callbacks: Any
) -> None:
    url = launch_url(ready, "bytedance/seedance/2.0/fast/text-to-video")
    page = ready.client_for("member").get(url).content.decode()
    assert 'name="input"' in page and "Not in the catalog" in page
    with django_capture_on_commit_callbacks(execute=True):
        response = ready.client_for("member").post(
            url,
            {"input": '{"prompt": "waves", "duration": "5"}', "launch_token": str(uuid.uuid4())},
        )
    run = Run.objects.get()
    assert response.status_code == 302
    assert run.model_id == "bytedance/seedance/2.0/fast/text-to-video"
    assert run.input == {"prompt": "waves", "duration": "5"}
    assert fake_runflow.requests[0].url.path == (
        "/v1/models/bytedance/seedance/2.0/fast/text-to-video/runs"
    )


def test_typing_a_model_id_opens_its_form(ready: Cast) -> None:
    client = ready.client_for("member")
    response = client.get(reverse("runs:launch", args=[ready.team.uuid]), {"model_id": "a/b/c"})
    assert response["Location"] == launch_url(ready, "a/b/c")
    response = client.get(reverse("runs:launch", args=[ready.team.uuid]), {"model_id": "../x"})
    assert response.status_code == 200 and "slash path" in response.content.decode()
    assert client.get(launch_url(ready, "a/../b")).status_code == 404


# ---- upstream refusals, shown plainly with the input intact ----


@pytest.mark.parametrize(
    ("status", "expected"),
    [(422, "prompt is too dull"), (402, "out of credit")],
)
def test_upstream_refusal_is_shown_plainly_with_the_input_prefilled(
    ready: Cast,
    fake_runflow: FakeRunflow,
    django_capture_on_commit_callbacks: Any,
    status: int,
    expected: str,
) -> None:
    fake_runflow.fail("create run", status)
    client = ready.client_for("member")
    post_launch(client, launch_url(ready), django_capture_on_commit_callbacks, prompt="a dull fox")
    run = Run.objects.get()
    assert run.status == Status.FAILED
    assert run.input["prompt"] == "a dull fox"
    run_page = client.get(run.get_absolute_url()).content.decode()
    assert expected in run_page
    # "Edit and relaunch": the form comes back prefilled, Runflow's words on the field.
    edit = client.get(f"{launch_url(ready)}?from={run.uuid}").content.decode()
    assert "a dull fox" in edit and expected in edit
    assert f'name="parent" value="{run.uuid}"' in edit


# ---- rerun and edit-and-run ----


def test_run_again_makes_a_child_with_the_same_input_once(
    ready: Cast, fake_runflow: FakeRunflow, django_capture_on_commit_callbacks: Any
) -> None:
    client = ready.client_for("member")
    post_launch(client, launch_url(ready), django_capture_on_commit_callbacks, num_images="3")
    parent = Run.objects.get()
    url = reverse("runs:rerun", args=[ready.team.uuid, parent.uuid])
    with django_capture_on_commit_callbacks(execute=True):
        first = client.post(url)
        second = client.post(url)  # a double click
    child = Run.objects.exclude(pk=parent.pk).get()
    assert first["Location"] == second["Location"] == child.get_absolute_url()
    assert child.parent == parent and child.input == parent.input
    assert len(fake_runflow.runs) == 2


def test_edit_and_run_links_the_new_run_to_its_parent(
    ready: Cast, fake_runflow: FakeRunflow, django_capture_on_commit_callbacks: Any
) -> None:
    client = ready.client_for("member")
    post_launch(client, launch_url(ready), django_capture_on_commit_callbacks)
    parent = Run.objects.get()
    # The workspace's "Edit and run" link goes through /launch/?from=…
    hop = client.get(reverse("runs:launch", args=[ready.team.uuid]), {"from": str(parent.uuid)})
    assert hop["Location"] == f"{launch_url(ready)}?from={parent.uuid}"
    post_launch(
        client,
        launch_url(ready),
        django_capture_on_commit_callbacks,
        prompt="a blue fox",
        parent=str(parent.uuid),
    )
    child = Run.objects.exclude(pk=parent.pk).get()
    assert child.parent == parent and child.input["prompt"] == "a blue fox"


def test_a_parent_from_another_team_is_ignored(
    ready: Cast, fake_runflow: FakeRunflow, django_capture_on_commit_callbacks: Any
) -> None:
    foreign = Run.objects.create(team=ready.other_team, api_url="x", model_id=MODEL, input={})
    post_launch(
        ready.client_for("member"),
        launch_url(ready),
        django_capture_on_commit_callbacks,
        parent=str(foreign.uuid),
    )
    assert Run.objects.get(team=ready.team).parent is None


# ---- uploads ----


def test_an_uploaded_image_goes_through_runflows_asset_upload(
    ready: Cast, fake_runflow: FakeRunflow, django_capture_on_commit_callbacks: Any
) -> None:
    png = SimpleUploadedFile("fox.png", b"\x89PNG fake bytes", content_type="image/png")
    with django_capture_on_commit_callbacks(execute=True):
        response = ready.client_for("member").post(
            launch_url(ready),
            {
                "input-prompt": "a fox",
                "launch_token": str(uuid.uuid4()),
                "input-image_url__file": png,
            },
        )
    assert response.status_code == 302
    run = Run.objects.get()
    assert run.input["image_url"].startswith("https://assets.runflow.test/")
    assert fake_runflow.uploads == [b"\x89PNG fake bytes"]


def test_the_upload_endpoint_answers_json(ready: Cast, fake_runflow: FakeRunflow) -> None:
    url = reverse("runs:launch_upload", args=[ready.team.uuid])
    client = ready.client_for("member")
    png = SimpleUploadedFile("fox.png", b"\x89PNG", content_type="image/png")
    answer = client.post(url, {"file": png, "kind": "image"}).json()
    assert answer["url"].startswith("https://assets.runflow.test/")
    text = SimpleUploadedFile("a.txt", b"hi", content_type="text/plain")
    assert client.post(url, {"file": text, "kind": "image"}).status_code == 400
    fake_runflow.fail("create upload", 403)
    png = SimpleUploadedFile("fox.png", b"\x89PNG", content_type="image/png")
    failed = client.post(url, {"file": png, "kind": "image"})
    assert failed.status_code == 502 and "could not be uploaded" in failed.json()["error"]


def test_submit_task_is_what_the_launch_enqueues_after_commit(
    ready: Cast, fake_runflow: FakeRunflow, django_capture_on_commit_callbacks: Any
) -> None:
    seen: list[tuple[str, tuple[Any, ...]]] = []

    def record(sender: Any, task_result: Any, **kwargs: Any) -> None:
        seen.append((task_result.task.name, tuple(task_result.args)))

    task_enqueued.connect(record)
    try:
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            ready.client_for("member").post(
                launch_url(ready), {"input-prompt": "a fox", "launch_token": str(uuid.uuid4())}
            )
        assert seen == []  # nothing is sent before the run is committed
        assert Run.objects.get().status == Status.PENDING
        for callback in callbacks:
            callback()
    finally:
        task_enqueued.disconnect(record)
    assert (submit_run.name, (Run.objects.get().pk,)) in seen


# ---- against the live sandbox: the ledger proves one launch, one upstream run ----


@pytest.fixture
def on_sandbox(cast: Cast, sandbox_faults: Any, settings: Any, monkeypatch: Any) -> Any:
    """The cast's team connected to the live sandbox, with a short read timeout so a hang
    on create turns into a lost answer (OutcomeUnknown) in about a second."""
    import httpx

    from runs.connection import keys as connection_keys
    from runs.runflow import RunflowClient

    settings.SANDBOX_URL = sandbox_faults.url
    settings.SANDBOX_ENABLED = True
    short = httpx.Timeout(connect=2.0, read=1.0, write=2.0, pool=2.0)

    def client(base_url: str, api_key: str, **options: Any) -> RunflowClient:
        options.setdefault("timeout", short)
        options.setdefault("sleep", lambda seconds: None)
        return RunflowClient(base_url, api_key, **options)

    monkeypatch.setattr(connection_keys, "RunflowClient", client)
    monkeypatch.setattr("runs.tasks.submit.sleep", lambda seconds: None)

    def connect_new_key(marker: str = "") -> str:
        """Connect the team with a fresh sandbox key (a fresh organization) and return it."""
        from runs.connection import connect_key, paste_secret

        key = sandbox_faults.new_key(marker)
        connect_key(
            cast.team,
            label="Sandbox",
            api_url=sandbox_faults.url,
            plain=key,
            make_default=True,
            check=False,
        )
        paste_secret(cast.team, "whsec_SandboxTestSecret0123456789")
        return key

    return sandbox_faults, connect_new_key


SANDBOX_MODEL = "google/nano-banana-pro"
ACCEPTED = {Status.QUEUED, Status.DISPATCHING, Status.RUNNING, Status.SUCCEEDED}


def sandbox_launch(cast: Cast, capture: Any, token: uuid.UUID, **fields: Any) -> Any:
    from runs.models import RunflowModel

    if not RunflowModel.objects.filter(model_id=SANDBOX_MODEL).exists():
        from runs import catalog
        from runs.connection import client_for_team

        with client_for_team(cast.team) as client:  # just this model's entry, not a full sync
            catalog._upsert(client.base_url, client.get_model(SANDBOX_MODEL), covers=False)
    return post_launch(
        cast.client_for("member"), launch_url(cast, SANDBOX_MODEL), capture, token, **fields
    )


@pytest.mark.sandbox
def test_sandbox_double_submit_makes_one_upstream_run(
    cast: Cast, on_sandbox: Any, django_capture_on_commit_callbacks: Any
) -> None:
    sandbox, connect_new_key = on_sandbox
    key = connect_new_key()
    token = uuid.uuid4()
    first = sandbox_launch(cast, django_capture_on_commit_callbacks, token)
    second = sandbox_launch(cast, django_capture_on_commit_callbacks, token)
    assert first.status_code == second.status_code == 302
    assert first["Location"] == second["Location"]
    run = Run.objects.get()
    assert run.status in ACCEPTED
    created = sandbox.ledger(key)["runs"]
    assert [entry["client_ref"] for entry in created] == [str(run.uuid)]
    assert created[0]["idempotency_key"] == str(run.uuid)


@pytest.mark.sandbox
def test_sandbox_timeout_on_create_is_reconciled_not_duplicated(
    cast: Cast, on_sandbox: Any, django_capture_on_commit_callbacks: Any
) -> None:
    sandbox, connect_new_key = on_sandbox
    key = connect_new_key()
    sandbox_launch(cast, django_capture_on_commit_callbacks, uuid.uuid4(), prompt="warm up")
    sandbox.set_faults(hang={"seconds": 2, "next": 1})  # the run is made, the answer is late
    sandbox_launch(cast, django_capture_on_commit_callbacks, uuid.uuid4(), prompt="a slow fox")
    run = Run.objects.get(input__prompt="a slow fox")
    # Accepted (by the time it is found the sandbox may even have finished it).
    assert run.status in ACCEPTED and run.runflow_id is not None
    mine = [e for e in sandbox.ledger(key)["runs"] if e["client_ref"] == str(run.uuid)]
    assert len(mine) == 1  # found by client_ref after the timeout, never created twice
    assert str(run.runflow_id) == mine[0]["run_id"]
    # The first news of it is the lookup (a later read may follow if it has already ended).
    assert run.deliveries.order_by("pk").first().source == "reconcile"  # type: ignore[union-attr]


@pytest.mark.sandbox
def test_sandbox_out_of_credit_is_shown_plainly(
    cast: Cast, on_sandbox: Any, django_capture_on_commit_callbacks: Any
) -> None:
    sandbox, connect_new_key = on_sandbox
    key = connect_new_key("nocredit")
    sandbox_launch(cast, django_capture_on_commit_callbacks, uuid.uuid4(), prompt="a poor fox")
    run = Run.objects.get()
    assert run.status == Status.FAILED and run.failure_code.startswith("INSUFFICIENT_CREDIT")
    assert run.input["prompt"] == "a poor fox"
    page = cast.client_for("member").get(run.get_absolute_url()).content.decode()
    assert "out of credit" in page
    assert sandbox.ledger(key)["runs"] == []


@pytest.mark.sandbox
def test_sandbox_422_maps_back_to_the_field(
    cast: Cast, on_sandbox: Any, django_capture_on_commit_callbacks: Any
) -> None:
    from runs.models import RunflowModel

    _, connect_new_key = on_sandbox
    connect_new_key()
    sandbox_launch(cast, django_capture_on_commit_callbacks, uuid.uuid4(), prompt="warm up")
    # Our catalog is older than the model: it still lets a retired aspect ratio through.
    model = RunflowModel.objects.get(model_id=SANDBOX_MODEL)
    for item in model.inputs:
        if item["name"] == "aspect_ratio":
            item["validator_attrs"]["choices"].append("7:3")
    model.save()
    sandbox_launch(
        cast,
        django_capture_on_commit_callbacks,
        uuid.uuid4(),
        prompt="a wide fox",
        aspect_ratio="7:3",
    )
    run = Run.objects.get(input__prompt="a wide fox")
    assert run.status == Status.FAILED
    assert "aspect_ratio" in run.field_errors
    edit = cast.client_for("member").get(f"{launch_url(cast, SANDBOX_MODEL)}?from={run.uuid}")
    html = edit.content.decode()
    assert "a wide fox" in html and "Runflow said:" in html


def test_a_form_brought_back_edited_and_sent_again_is_a_new_launch(
    ready: Cast, fake_runflow: FakeRunflow, django_capture_on_commit_callbacks: Any
) -> None:
    client = ready.client_for("member")
    token = uuid.uuid4()
    post_launch(client, launch_url(ready), django_capture_on_commit_callbacks, token)
    post_launch(
        client, launch_url(ready), django_capture_on_commit_callbacks, token, prompt="a grey fox"
    )
    prompts = sorted(run.input["prompt"] for run in Run.objects.all())
    assert prompts == ["a grey fox", "a red fox"]
    assert len(fake_runflow.runs) == 2


def test_a_model_whose_definitions_are_unusable_falls_back_to_raw_json(cast: Cast) -> None:
    connect(cast.team)
    make_model("odd/model", inputs=[{"name": None}, "junk", {"no": "name"}])
    html = cast.client_for("member").get(launch_url(cast, "odd/model")).content.decode()
    assert 'name="input"' in html and "without a usable name" in html


def test_batch_post_access(cast: Cast) -> None:
    make_model(MODEL)
    url = reverse("runs:batch_new", args=[cast.team.uuid, MODEL])
    assert_access(cast, "post", url, WRITE_EXPECTED, {"mode": "lines"})
    assert not Run.objects.exists()
