"""Compare two to four runs: inputs side by side with differences marked, outputs together."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from runs.models import Run, RunflowModel
from runs.templatetags.runs_extras import compare_inputs
from tests.conftest import READ_EXPECTED, Cast, assert_access
from tests.workspace_factories import add_output, make_run, media  # noqa: F401

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("media")]


def compare_url(cast: Cast, *runs: Run) -> str:
    url = reverse("runs:compare", args=[cast.team.uuid])
    return url + "?" + "&".join(f"runs={run.uuid}" for run in runs) if runs else url


def with_input(run: Run, value: dict) -> Run:
    run.input = value
    run.save()
    return run


def differing_rows(html: str) -> list[str]:
    return re.findall(
        r'<tr class="compare__input differs">\s*<th scope="row" class="mono">(\w+)', html
    )


def test_compare_access_matrix(cast: Cast) -> None:
    a, b = make_run(cast.team, cast.member), make_run(cast.team, cast.member)
    assert_access(cast, "get", compare_url(cast, a, b), READ_EXPECTED)


def test_two_runs_side_by_side_with_differences_marked(cast: Cast) -> None:
    a = with_input(make_run(cast.team, cast.member), {"prompt": "fox", "steps": 20, "seed": 1})
    b = with_input(make_run(cast.team, cast.admin), {"prompt": "fox", "steps": 30})
    add_output(a)
    add_output(b)
    html = cast.client_for("viewer").get(compare_url(cast, a, b)).content.decode()
    assert differing_rows(html) == ["seed", "steps"]  # no catalog entry: alphabetical
    assert "not set" in html  # b has no seed
    assert html.count('class="tile tile--image"') == 2
    assert "Model" in html and 'class="differs"' not in html.split("Model")[0][-60:]


def test_inputs_follow_the_models_form_order(cast: Cast) -> None:
    a = with_input(make_run(cast.team, cast.member), {"seed": 1, "steps": 2, "prompt": "x"})
    b = with_input(make_run(cast.team, cast.member), {"seed": 2, "steps": 3, "prompt": "y"})
    RunflowModel.objects.create(
        api_url=a.api_url,
        model_id=a.model_id,
        inputs=[
            {"name": "seed", "sort_order": 9},
            {"name": "steps", "sort_order": 2},
            {"name": "prompt", "sort_order": 5},
        ],
    )
    html = cast.client_for("member").get(compare_url(cast, a, b)).content.decode()
    assert differing_rows(html) == ["prompt", "steps", "seed"]  # the prompt always leads


def test_four_runs_and_different_models(cast: Cast) -> None:
    runs = [make_run(cast.team, cast.member, model_id=f"acme/m{i % 2}") for i in range(4)]
    html = cast.client_for("member").get(compare_url(cast, *runs)).content.decode()
    assert "compare--4" in html
    assert '<tr class="differs">' in html  # the model row
    for run in runs:
        assert reverse("runs:run", args=[cast.team.uuid, run.uuid]) in html


def test_more_than_four_shows_the_first_four_and_says_so(cast: Cast) -> None:
    runs = [make_run(cast.team, cast.member, prompt=f"p{i}") for i in range(5)]
    html = cast.client_for("member").get(compare_url(cast, *runs)).content.decode()
    assert "At most 4 runs fit side by side" in html
    assert "compare--4" in html
    assert reverse("runs:run", args=[cast.team.uuid, runs[4].uuid]) not in html


def test_fewer_than_two_offers_a_picker(cast: Cast) -> None:
    only = make_run(cast.team, cast.member, prompt="lonely")
    html = cast.client_for("member").get(compare_url(cast, only)).content.decode()
    assert "Pick at least one more" in html
    assert f'value="{only.uuid}" checked' in html
    empty = cast.client_for("member").get(compare_url(cast)).content.decode()
    assert "Recent runs" in empty


def test_runs_of_another_team_are_never_compared(cast: Cast) -> None:
    mine = make_run(cast.team, cast.member)
    theirs = make_run(cast.other_team, cast.outsider, prompt="their secret")
    html = cast.client_for("member").get(compare_url(cast, mine, theirs)).content.decode()
    assert "their secret" not in html
    assert "Pick at least one more" in html


def test_compare_inputs_rows() -> None:
    a, b, c = Run(input={"x": 1, "y": "same"}), Run(input={"x": 2, "y": "same"}), Run(input={})
    rows = {row.name: row for row in compare_inputs([a, b, c])}
    assert rows["x"].differs and rows["y"].differs  # c lacks both
    assert rows["x"].cells[2] is None
    same = {row.name: row for row in compare_inputs([a, Run(input={"x": 1, "y": "same"})])}
    assert not same["x"].differs and not same["y"].differs
