"""The launch form's live preview: "Copy as curl" and the cost estimate follow the values.

The page asks ``runs:launch_preview`` with the form's current values as the person types;
the answer is the curl command and the estimate for exactly those values, built by the same
form and pricing code the launch itself uses. The team's key is never in it.
"""

from __future__ import annotations

import json
import shlex
import subprocess
from typing import Any

import pytest
from django.urls import reverse

from runs import catalog
from runs.connection import connect_key
from runs.models import Preset
from runs.runflow import RunflowClient
from tests.conftest import Cast, assert_access
from tests.launch_support import KEY, ready
from tests.plugins.sandbox import Sandbox

__all__ = ["ready"]

pytestmark = pytest.mark.django_db

MODEL = "acme/text-to-image"
PREVIEW_ACCESS = {None: 302, "outsider": 404, "viewer": 403, "member": 200, "admin": 200}


def preview_url(cast: Cast, model_id: str = MODEL) -> str:
    return reverse("runs:launch_preview", args=[cast.team.uuid, model_id])


def preview(cast: Cast, who: str = "member", **fields: str) -> dict[str, Any]:
    data = {f"input-{name}": value for name, value in fields.items()}
    answer = cast.client_for(who).post(preview_url(cast), data)
    assert answer.status_code == 200, answer.content
    assert answer["Content-Type"] == "application/json"
    return dict(answer.json())


def body_of(curl: str) -> dict[str, Any]:
    """The JSON the curl command sends (its --data-raw argument, as the shell reads it)."""
    words = shlex.split(curl.replace("\\\n", " "))
    return dict(json.loads(words[words.index("--data-raw") + 1]))


def test_preview_access(ready: Cast) -> None:
    assert_access(ready, "post", preview_url(ready), PREVIEW_ACCESS, {"input-prompt": "a fox"})
    assert ready.client_for("member").get(preview_url(ready)).status_code == 405


def test_the_curl_carries_what_was_typed_typed_as_the_launch_would_send_it(ready: Cast) -> None:
    answer = preview(ready, prompt="a red fox", num_images="2", aspect_ratio="16:9")
    sent = body_of(answer["curl"])["input"]
    assert sent["prompt"] == "a red fox"
    assert sent["num_images"] == 2 and sent["aspect_ratio"] == "16:9"
    assert "$RUNFLOW_API_KEY" in answer["curl"] and KEY not in json.dumps(answer)


def test_the_curl_carries_an_applied_presets_values(ready: Cast) -> None:
    preset = Preset.objects.create(
        team=ready.team, model_id=MODEL, name="Wide", input={"aspect_ratio": "16:9"}
    )
    page = ready.client_for("member").get(
        reverse("runs:launch", args=[ready.team.uuid, MODEL]), {"preset": str(preset.uuid)}
    )
    assert "&quot;aspect_ratio&quot;: &quot;16:9&quot;" in page.content.decode()
    # The page then sends the form as it stands: the preset's values plus what was typed.
    sent = body_of(preview(ready, prompt="a fox", aspect_ratio="16:9")["curl"])["input"]
    assert sent["aspect_ratio"] == "16:9" and sent["prompt"] == "a fox"


def test_the_estimate_follows_the_number_of_images(ready: Cast) -> None:
    assert preview(ready, prompt="a fox", num_images="1")["estimate"] == "$0.04"
    assert preview(ready, prompt="a fox", num_images="3")["estimate"] == "$0.12"
    # The model's default (one image) when the field is empty.
    assert preview(ready, prompt="a fox")["estimate"] == "$0.04"


def test_a_value_that_is_not_valid_yet_is_left_out_and_said(ready: Cast) -> None:
    answer = preview(ready, prompt="a fox", num_images="forty")
    assert "num_images" not in body_of(answer["curl"])["input"]
    assert answer["note"]


def test_a_raw_json_model_previews_its_json(ready: Cast) -> None:
    url = preview_url(ready, "acme/not-listed")
    answer = ready.client_for("member").post(url, {"input": '{"prompt": "a fox", "n": 2}'})
    assert body_of(answer.json()["curl"])["input"] == {"prompt": "a fox", "n": 2}
    broken = ready.client_for("member").post(url, {"input": "{not json"}).json()
    assert broken["note"] and body_of(broken["curl"])["input"] == {}


@pytest.mark.sandbox
def test_the_copied_curl_is_accepted_by_the_sandbox(cast: Cast, on_sandbox: Sandbox) -> None:
    """The command as copied, run by a shell with only $RUNFLOW_API_KEY set: Runflow takes it."""
    key, api = on_sandbox.new_key(), on_sandbox.url
    connect_key(cast.team, label="Sandbox", api_url=api, plain=key, make_default=True, check=False)
    with RunflowClient(api, key) as client:  # just this model's catalog entry
        info = client.get_model("google/nano-banana-pro")
    catalog._upsert(api.rstrip("/"), info, covers=False)
    url = reverse("runs:launch_preview", args=[cast.team.uuid, "google/nano-banana-pro"])
    answer = cast.client_for("member").post(
        url, {"input-prompt": "A lighthouse at dawn", "input-num_images": "2"}
    )
    curl = answer.json()["curl"]
    assert key not in curl
    done = subprocess.run(
        ["bash", "-c", curl + " -sS -o /dev/null -w '%{http_code}'"],
        env={"RUNFLOW_API_KEY": key, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.stdout == "201", (done.stdout, done.stderr)
