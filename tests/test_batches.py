"""Batches: lines, CSV and grid forms, chunked sending, the live page, retrying failures."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from runs.launching import MAX_BATCH_ITEMS, latest_runs, launch_batch, progress
from runs.models import Batch, Membership, Run, RunflowModel, Status
from runs.transitions import Report, apply_report
from tests.conftest import READ_EXPECTED, WRITE_EXPECTED, Cast, assert_access
from tests.launch_support import FakeRunflow, connect, fake_runflow, make_model
from tests.workspace_factories import add_output, media

__all__ = ["fake_runflow", "media"]

pytestmark = pytest.mark.django_db

MODEL = "acme/text-to-image"


@pytest.fixture
def ready(cast: Cast) -> Cast:
    connect(cast.team)
    make_model(MODEL, supports_batch=True)
    return cast


def new_url(cast: Cast) -> str:
    return reverse("runs:batch_new", args=[cast.team.uuid, MODEL])


def post_batch(cast: Cast, capture: Any, token: uuid.UUID | None = None, **data: Any) -> Any:
    body = {"launch_token": str(token or uuid.uuid4()), **data}
    with capture(execute=True):
        return cast.client_for("member").post(new_url(cast), body)


def test_batch_form_access(ready: Cast) -> None:
    assert_access(ready, "get", new_url(ready), {**READ_EXPECTED, "viewer": 403})


def test_one_prompt_per_line_makes_one_run_each_sent_as_one_batch(
    ready: Cast, fake_runflow: FakeRunflow, django_capture_on_commit_callbacks: Any
) -> None:
    response = post_batch(
        ready,
        django_capture_on_commit_callbacks,
        mode="lines",
        lines_input="prompt",
        lines="a red fox\n\n  a blue owl \na green frog",
        **{"input-aspect_ratio": "16:9", "input-num_images": "2"},
    )
    batch = Batch.objects.get()
    assert response["Location"] == batch.get_absolute_url()
    runs = list(batch.runs.order_by("batch_index"))
    assert [r.input["prompt"] for r in runs] == ["a red fox", "a blue owl", "a green frog"]
    assert [r.batch_index for r in runs] == [0, 1, 2]
    assert all(r.input["aspect_ratio"] == "16:9" and r.input["num_images"] == 2 for r in runs)
    assert batch.source == "lines" and batch.created_by == ready.member
    assert fake_runflow.count("create batch") == 1
    assert all(r.status == Status.QUEUED for r in batch.runs.all())


def test_csv_columns_map_to_inputs(
    ready: Cast, fake_runflow: FakeRunflow, django_capture_on_commit_callbacks: Any
) -> None:
    csv = SimpleUploadedFile(
        "items.csv", b'prompt,num_images\na fox,1\n"a fox, at night",3\n', "text/csv"
    )
    post_batch(ready, django_capture_on_commit_callbacks, mode="csv", csv_file=csv)
    inputs = [r.input for r in Batch.objects.get().runs.order_by("batch_index")]
    assert [(i["prompt"], i["num_images"]) for i in inputs] == [
        ("a fox", 1),
        ("a fox, at night", 3),
    ]


def test_csv_with_unknown_columns_is_refused_with_the_names(
    ready: Cast, django_capture_on_commit_callbacks: Any
) -> None:
    csv = SimpleUploadedFile("items.csv", b"prompt,colour\na,b\n", "text/csv")
    response = post_batch(ready, django_capture_on_commit_callbacks, mode="csv", csv_file=csv)
    assert "not inputs of the model: colour" in response.content.decode()
    assert not Batch.objects.exists()


def test_a_grid_makes_every_combination(
    ready: Cast, fake_runflow: FakeRunflow, django_capture_on_commit_callbacks: Any
) -> None:
    post_batch(
        ready,
        django_capture_on_commit_callbacks,
        mode="grid",
        grid_a="aspect_ratio",
        grid_a_values="1:1\n16:9",
        grid_b="num_images",
        grid_b_values="1\n2\n3",
        **{"input-prompt": "a fox"},
    )
    inputs = [r.input for r in Batch.objects.get().runs.order_by("batch_index")]
    assert len(inputs) == 6
    assert {(i["aspect_ratio"], i["num_images"]) for i in inputs} == {
        (a, n) for a in ("1:1", "16:9") for n in (1, 2, 3)
    }
    assert all(i["prompt"] == "a fox" for i in inputs)


def test_grid_beyond_the_limit_is_refused(
    ready: Cast, django_capture_on_commit_callbacks: Any
) -> None:
    values = "\n".join(str(i) for i in range(40))
    response = post_batch(
        ready,
        django_capture_on_commit_callbacks,
        mode="grid",
        grid_a="prompt",
        grid_a_values=values,
        grid_b="num_images",
        grid_b_values=values,
    )
    assert f"at most {MAX_BATCH_ITEMS:,}" in response.content.decode()
    assert not Run.objects.exists()


def test_any_invalid_item_stops_the_whole_batch_with_line_numbers(
    ready: Cast, fake_runflow: FakeRunflow, django_capture_on_commit_callbacks: Any
) -> None:
    response = post_batch(
        ready,
        django_capture_on_commit_callbacks,
        mode="lines",
        lines_input="num_images",
        lines="1\n9\nx",
        **{"input-prompt": "a fox"},
    )
    html = response.content.decode()
    assert "Line 2: num_images: Must be at most 4." in html
    assert "Line 3: num_images: Enter a whole number." in html
    assert not Run.objects.exists() and fake_runflow.requests == []


def test_required_inputs_missing_from_every_item_are_reported(
    ready: Cast, django_capture_on_commit_callbacks: Any
) -> None:
    response = post_batch(
        ready, django_capture_on_commit_callbacks, mode="lines", lines_input="num_images", lines="1"
    )
    assert "Line 1: prompt: This input is required." in response.content.decode()


def test_the_same_batch_form_twice_makes_one_batch(
    ready: Cast, fake_runflow: FakeRunflow, django_capture_on_commit_callbacks: Any
) -> None:
    token = uuid.uuid4()
    data = {"mode": "lines", "lines_input": "prompt", "lines": "a fox\nb c d"}
    first = post_batch(ready, django_capture_on_commit_callbacks, token, **data)
    second = post_batch(ready, django_capture_on_commit_callbacks, token, **data)
    assert first["Location"] == second["Location"]
    assert Batch.objects.count() == 1 and Run.objects.count() == 2
    assert len(fake_runflow.runs) == 2


# ---- the batch page ----


@pytest.fixture
def batch(ready: Cast, fake_runflow: FakeRunflow) -> Batch:
    member = Membership.objects.get(user=ready.member, team=ready.team)
    model = RunflowModel.objects.get(model_id=MODEL)
    prompts = [{"prompt": p} for p in ("a fox", "an owl", "a frog")]
    return launch_batch(member, MODEL, prompts, model=model, source="lines")


def finish(run: Run, status: str) -> None:
    apply_report(
        run,
        Report(status=status, failure_message="boom" if status == "failed" else ""),
        source="poll",
    )


def test_batch_page_access(ready: Cast, batch: Batch) -> None:
    url = reverse("runs:batch", args=[ready.team.uuid, batch.uuid])
    assert_access(ready, "get", url, READ_EXPECTED)
    retry = reverse("runs:batch_retry", args=[ready.team.uuid, batch.uuid])
    assert_access(ready, "post", retry, WRITE_EXPECTED)


def test_progress_counts_refresh_and_stop_when_done(ready: Cast, batch: Batch) -> None:
    url = reverse("runs:batch", args=[ready.team.uuid, batch.uuid])
    client = ready.client_for("viewer")
    runs = list(batch.runs.order_by("batch_index"))
    finish(runs[0], "succeeded")
    partial = client.get(url, headers={"HX-Request": "true"})
    assert partial.status_code == 200 and b"<html" not in partial.content
    html = partial.content.decode()
    assert 'data-count="succeeded">1<' in html and 'data-count="pending">2<' in html
    assert 'hx-trigger="every 2s"' in html
    finish(runs[1], "failed")
    finish(runs[2], "succeeded")
    done = client.get(url, headers={"HX-Request": "true"})
    assert done.status_code == 286  # htmx stops polling
    assert 'hx-trigger="every 2s"' not in done.content.decode()
    batch.refresh_from_db()
    assert batch.completed_at is not None
    page = client.get(url).content.decode()
    assert "Retry failed items only" not in page  # viewers cannot launch


def test_retry_failed_items_only(
    ready: Cast, batch: Batch, fake_runflow: FakeRunflow, django_capture_on_commit_callbacks: Any
) -> None:
    runs = list(batch.runs.order_by("batch_index"))
    finish(runs[0], "succeeded")
    finish(runs[1], "failed")
    finish(runs[2], "failed")
    url = reverse("runs:batch", args=[ready.team.uuid, batch.uuid])
    assert "Retry failed items only" in ready.client_for("member").get(url).content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        ready.client_for("member").post(
            reverse("runs:batch_retry", args=[ready.team.uuid, batch.uuid])
        )
    latest = latest_runs(batch)
    assert [r.batch_index for r in latest] == [0, 1, 2]
    assert latest[0].pk == runs[0].pk  # the success is kept
    assert latest[1].parent == runs[1] and latest[2].parent == runs[2]
    assert latest[1].input == runs[1].input
    counts = progress(latest)
    assert counts.failed == 0 and counts.succeeded == 1 and counts.queued == 2
    assert batch.chunks.count() == 2  # the retry went out as its own chunk


def test_contact_sheet_shows_each_item(ready: Cast, batch: Batch) -> None:
    url = reverse("runs:batch", args=[ready.team.uuid, batch.uuid])
    html = ready.client_for("viewer").get(url).content.decode()
    assert html.count("contact-sheet__item ") == 3
    for run in batch.runs.all():
        assert run.get_absolute_url() in html


def test_other_teams_batches_are_404(ready: Cast, batch: Batch) -> None:
    url = reverse("runs:batch", args=[ready.other_team.uuid, batch.uuid])
    assert ready.client_for("outsider").get(url).status_code == 404


def test_a_finished_batch_keeps_refreshing_while_outputs_are_copied(
    ready: Cast, batch: Batch
) -> None:
    from runs.models import ArchiveState, Output

    url = reverse("runs:batch", args=[ready.team.uuid, batch.uuid])
    image = {"outputs": [{"type": "image", "url": "https://cdn.example/a.png"}]}
    for run in batch.runs.all():
        apply_report(run, Report(status="succeeded", output=image), source="poll")
    client = ready.client_for("viewer")
    assert client.get(url, headers={"HX-Request": "true"}).status_code == 200
    Output.objects.update(archive_state=ArchiveState.ARCHIVED)
    assert client.get(url, headers={"HX-Request": "true"}).status_code == 286


def test_partly_succeeded_items_are_counted_on_their_own(ready: Cast, batch: Batch) -> None:
    runs = list(batch.runs.order_by("batch_index"))
    finish(runs[0], "succeeded")
    finish(runs[1], "partial_succeeded")
    finish(runs[2], "failed")
    counts = progress(latest_runs(batch))
    assert (counts.succeeded, counts.partial, counts.failed) == (1, 1, 1)
    assert counts.is_finished and counts.done == 3
    url = reverse("runs:batch", args=[ready.team.uuid, batch.uuid])
    html = ready.client_for("viewer").get(url).content.decode()
    for name in ("succeeded", "partial", "failed"):
        assert f'data-count="{name}">1<' in html


def test_retry_button_comes_with_the_refreshed_region(ready: Cast, batch: Batch) -> None:
    """The region the page refreshes carries the button, so it shows without a reload."""
    runs = list(batch.runs.order_by("batch_index"))
    url = reverse("runs:batch", args=[ready.team.uuid, batch.uuid])
    member = ready.client_for("member")
    before = member.get(url, headers={"HX-Request": "true"}).content.decode()
    assert "Retry failed items only" not in before
    finish(runs[0], "failed")  # the other two are still on their way: the page still polls
    after = member.get(url, headers={"HX-Request": "true"})
    assert after.status_code == 200 and 'hx-trigger="every 2s"' in after.content.decode()
    assert 'id="batch-retry"' in after.content.decode()
    viewer = ready.client_for("viewer").get(url, headers={"HX-Request": "true"})
    assert "Retry failed items only" not in viewer.content.decode()


@pytest.mark.usefixtures("media")
def test_contact_sheet_pictures_load_and_are_never_a_video(ready: Cast, batch: Batch) -> None:
    runs = list(batch.runs.order_by("batch_index"))
    plain = add_output(runs[0], 0)  # an image copied without a thumbnail
    video = add_output(runs[1], 0, kind="video", content_type="video/mp4", name="a.mp4")
    thumbed = add_output(runs[2], 0, thumbnail=True)
    url = reverse("runs:batch", args=[ready.team.uuid, batch.uuid])
    client = ready.client_for("viewer")
    html = client.get(url).content.decode()
    sources = re.findall(r'<img src="([^"]+)"', html)
    assert sources == [
        reverse("runs:output_file", args=[ready.team.uuid, plain.uuid]),
        reverse("runs:output_thumb", args=[ready.team.uuid, thumbed.uuid]),
    ]
    assert str(video.uuid) not in html
    assert all(client.get(source).status_code == 200 for source in sources)
