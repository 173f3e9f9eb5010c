"""What a person sees before launching a model they cannot launch: an admin-only or refused
model (team policy), a model Runflow no longer offers; and which ids a policy may name."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest
from django.urls import reverse

from runs.connection import connect_key
from runs.models import ModelPolicy, Role, Run, Status
from runs.tasks.submit import submit_run
from tests.conftest import Cast
from tests.launch_support import connect, make_model
from tests.plugins.sandbox import Sandbox

pytestmark = pytest.mark.django_db

MODEL = "acme/text-to-image"
OTHER = "acme/sketch"
RETIRED = "acme/old-image"
ADMINS_ONLY = "Only team admins can launch this model."
FORMS = ["runs:launch", "runs:batch_new"]  # both say why before Launch is pressed


@pytest.fixture
def ready(cast: Cast) -> Cast:
    connect(cast.team)
    make_model(MODEL)
    make_model(OTHER, display_name="Acme Sketch")
    make_model(RETIRED, display_name="Acme Old Image", is_available=False)
    return cast


def page(cast: Cast, who: str, name: str, *args: Any, **query: str) -> str:
    answer = cast.client_for(who).get(reverse(name, args=[cast.team.uuid, *args]), query)
    assert answer.status_code == 200, answer.status_code
    return str(answer.content.decode())


def card(html: str, model_id: str) -> str:
    """The catalog card of ``model_id`` in the Models page."""
    cards = re.findall(r'<li class="model-card card.*?</li>', html, flags=re.S)
    found = [c for c in cards if f'model-card__id mono small">{model_id}<' in c]
    assert len(found) == 1, (model_id, len(found))
    return found[0]


def launch_button(html: str) -> str:
    found = re.search(r"<button[^>]*data-submit-once[^>]*>", html)
    assert found, "no Launch button"
    return found.group(0)


def admin_only(cast: Cast, model_id: str = MODEL) -> None:
    ModelPolicy.objects.create(team=cast.team, model_id=model_id, min_role=Role.ADMIN)


# ---- admin-only and refused models ----


def test_the_catalog_card_says_admins_only_and_offers_members_no_launch(ready: Cast) -> None:
    admin_only(ready)
    member = page(ready, "member", "runs:models")
    assert ADMINS_ONLY in card(member, MODEL)
    assert "Launch</a>" not in card(member, MODEL)
    assert "Launch</a>" in card(member, OTHER) and ADMINS_ONLY not in card(member, OTHER)
    admin = page(ready, "admin", "runs:models")
    assert "Admins only" in card(admin, MODEL) and "Launch</a>" in card(admin, MODEL)


@pytest.mark.parametrize("form", FORMS)
def test_the_forms_say_admins_only_and_disable_launch_for_members(ready: Cast, form: str) -> None:
    admin_only(ready)
    member = page(ready, "member", form, MODEL)
    assert ADMINS_ONLY in member
    assert "disabled" in launch_button(member)
    admin = page(ready, "admin", form, MODEL)
    assert ADMINS_ONLY in admin and "You are one." in admin
    assert "disabled" not in launch_button(admin)
    other = page(ready, "member", form, OTHER)
    assert ADMINS_ONLY not in other and "disabled" not in launch_button(other)


def test_the_model_page_says_admins_only_to_members(ready: Cast) -> None:
    admin_only(ready)
    member = page(ready, "member", "runs:model", MODEL)
    assert ADMINS_ONLY in member and "Launch</a>" not in member and "Batch…</a>" not in member
    assert "Launch</a>" in page(ready, "admin", "runs:model", MODEL)


def test_a_model_the_team_does_not_allow_is_said_to_everyone(ready: Cast) -> None:
    ModelPolicy.objects.create(team=ready.team, model_id=MODEL, allowed=False)
    for who in ("member", "admin"):
        for form in FORMS:
            html = page(ready, who, form, MODEL)
            assert "This model is not allowed in Acme." in html, (who, form)
            assert "disabled" in launch_button(html), (who, form)
        assert "Launch</a>" not in card(page(ready, who, "runs:models"), MODEL)


def test_one_query_for_the_policies_of_a_whole_catalog_page(ready: Cast) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client = ready.client_for("member")
    url = reverse("runs:models", args=[ready.team.uuid])
    client.get(url)
    with CaptureQueriesContext(connection) as few:
        client.get(url)
    for number in range(10):
        make_model(f"acme/extra-{number}")
        admin_only(ready, f"acme/extra-{number}")
    with CaptureQueriesContext(connection) as many:
        html = client.get(url).content.decode()
    assert html.count(ADMINS_ONLY) == 10
    assert len(many) == len(few)


# ---- models Runflow no longer offers ----


def test_the_launch_page_of_a_retired_model_says_so_and_offers_no_launch(ready: Cast) -> None:
    html = page(ready, "member", "runs:launch", RETIRED)
    assert "Runflow no longer offers this model" in html
    assert "disabled" in launch_button(html)
    assert "Batch…</a>" not in html


def test_the_model_page_of_a_retired_model_offers_no_launch(ready: Cast) -> None:
    html = page(ready, "member", "runs:model", RETIRED)
    assert "Runflow no longer offers this model" in html
    assert "Launch</a>" not in html and "Batch…</a>" not in html


def test_a_search_finds_a_retired_model_with_a_notice_and_no_launch(ready: Cast) -> None:
    assert RETIRED not in page(ready, "member", "runs:models")  # the catalog lists what is offered
    found = card(page(ready, "member", "runs:models", q="old"), RETIRED)
    assert "Runflow no longer offers this model" in found and "Launch</a>" not in found


def test_launching_a_retired_model_is_refused_before_anything_is_saved(ready: Cast) -> None:
    answer = ready.client_for("member").post(
        reverse("runs:launch", args=[ready.team.uuid, RETIRED]),
        {"launch_token": str(uuid.uuid4()), "input-prompt": "a fox"},
    )
    assert answer.status_code == 200
    assert "Runflow no longer offers this model" in answer.content.decode()
    assert not Run.objects.exists()


def test_run_again_of_a_retired_model_is_refused(ready: Cast) -> None:
    run = Run.objects.create(
        team=ready.team, created_by=ready.member, api_url="x", model_id=RETIRED, input={"p": 1}
    )
    answer = ready.client_for("member").post(
        reverse("runs:rerun", args=[ready.team.uuid, run.uuid]), follow=True
    )
    assert "Runflow no longer offers this model" in answer.content.decode()
    assert Run.objects.count() == 1


# ---- the failure of a run of a retired model, in words ----


@pytest.mark.sandbox
def test_a_run_of_a_retired_sandbox_model_fails_in_plain_words(
    cast: Cast, on_sandbox: Sandbox
) -> None:
    key, _ = connect_key(
        cast.team,
        label="Sandbox",
        api_url=on_sandbox.url,
        plain=on_sandbox.new_key(),
        make_default=True,
        check=False,
    )
    # Saved before the catalog knew the model was retired.
    run = Run.objects.create(
        team=cast.team,
        created_by=cast.member,
        key=key,
        api_url=on_sandbox.url.rstrip("/"),
        model_id="black-forest-labs/flux-1.1-pro",
        input={"prompt": "a cat"},
    )
    submit_run.call(run.pk)
    run.refresh_from_db()
    assert run.status == Status.FAILED and run.failure_code == "MODEL_UNAVAILABLE"
    html = page(cast, "member", "runs:run", run.uuid)
    failure = re.search(r'<section class="card failure".*?</section>', html, flags=re.S)
    assert failure
    text = " ".join(re.sub(r"<[^>]+>", " ", failure.group(0)).split())
    assert "This model is not available" in text
    assert "renamed) before" not in text and "renamed)." not in text
    assert text.count("Runflow said") <= 1, text
    assert "retired and accepts no new runs" in text  # Runflow's own words, quoted once


# ---- model ids in a team's policies ----


@pytest.mark.parametrize(
    "bad", ["<script>alert(1)</script>", "../../etc/passwd", "acme/../x", "acme video", "a\x00b"]
)
def test_a_policy_names_a_model_id(cast: Cast, bad: str) -> None:
    answer = cast.client_for("admin").post(
        reverse("runs:policy_save", args=[cast.team.uuid]),
        {"model_id": bad, "allowed": "1", "min_role": "admin"},
    )
    assert answer.status_code == 400
    assert "is not a model id" in answer.content.decode()
    assert not ModelPolicy.objects.exists()


def test_a_policy_may_name_any_well_formed_id_listed_or_not(cast: Cast) -> None:
    for model_id in ("acme/video", "bytedance/seedance/2.0/fast/text-to-video"):
        answer = cast.client_for("admin").post(
            reverse("runs:policy_save", args=[cast.team.uuid]),
            {"model_id": f" {model_id}/ ", "allowed": "1", "min_role": "admin"},
        )
        assert answer.status_code == 302
    assert sorted(ModelPolicy.objects.values_list("model_id", flat=True)) == [
        "acme/video",
        "bytedance/seedance/2.0/fast/text-to-video",
    ]
