"""Nothing from Runflow or a user executes (B4): every workspace page renders hostile data inert."""

from __future__ import annotations

import re
import uuid
from html.parser import HTMLParser

import pytest
from django.test import Client
from django.urls import reverse
from hypothesis import given
from hypothesis import strategies as st

from runs.models import Delivery, NodeRun, Output, Run, RunLog, ShareLink, Source, Status
from runs.templatetags.runs_extras import display_value, safe_href
from tests.conftest import Cast
from tests.workspace_factories import add_output, make_run, media  # noqa: F401

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("media")]

SCRIPT = '<script>alert("x")</script>'
BREAKOUT = '"><img src=x onerror=alert(1)>'
BAD_URLS = [
    "javascript:alert(1)",
    "JaVaScRiPt:alert(1)",
    " javascript:alert(1)",
    "java\tscript:alert(1)",
    "data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==",
    "vbscript:msgbox(1)",
    "//evil.example/x",
]
URL_ATTRS = {"href", "src", "poster", "action", "formaction", "hx-get", "hx-post", "data"}
DANGEROUS = re.compile(r"^(?:javascript|data|vbscript):", re.IGNORECASE)


class Tags(HTMLParser):
    """Every start tag with its attributes, as a browser would parse them."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, attrs))


def assert_inert(html: str) -> None:
    parser = Tags()
    parser.feed(html)
    for tag, attrs in parser.tags:
        names = {name for name, _ in attrs}
        # No event handlers, no inline style, ever (CSP would block them; we never emit them).
        assert not any(name.startswith("on") for name in names), (tag, attrs)
        assert "style" not in names, (tag, attrs)
        if tag == "script":
            assert (dict(attrs).get("src") or "").startswith("/static/"), attrs
        for name, value in attrs:
            if name in URL_ATTRS and value is not None:
                # Browsers strip ASCII whitespace and control characters inside the scheme.
                squeezed = re.sub(r"[\x00-\x20]", "", value)
                assert not DANGEROUS.match(squeezed), (tag, name, value)
    assert SCRIPT not in html and BREAKOUT not in html


@pytest.fixture
def hostile(cast: Cast) -> Run:
    parent = make_run(cast.team, cast.member, prompt=f"parent {SCRIPT}")
    run = make_run(
        cast.team,
        cast.member,
        prompt=f"{SCRIPT}{BREAKOUT}",
        model_id=f"acme/{SCRIPT}",
        status=Status.FAILED,
        failure_code=f"<b>{SCRIPT}</b>",
        failure_stage_code=BREAKOUT,
        failure_message=f"failed: {SCRIPT} {BREAKOUT}",
        field_errors={SCRIPT: [BREAKOUT, "javascript:alert(1)"]},
        parent=parent,
        runflow_id=uuid.uuid4(),
    )
    run.input = {
        "prompt": f"{SCRIPT}{BREAKOUT}",
        **{f"url_{i}": url for i, url in enumerate(BAD_URLS)},
        "image_urls": ["javascript:alert(2)", "data:image/svg+xml,<svg onload=alert(1)>"],
        SCRIPT: BREAKOUT,
        "ok": "https://example.com/a?b=1&c=<2>",
    }
    run.save()
    RunLog.objects.create(run=run, runflow_id="l1", level="<i><script>", message=SCRIPT)
    RunLog.objects.create(run=run, runflow_id="l2", level="error", message=BREAKOUT)
    NodeRun.objects.create(
        run=run, runflow_id="n1", node_id=SCRIPT, state=BREAKOUT, error_message=SCRIPT
    )
    Delivery.objects.create(
        team=cast.team, run=run, source=Source.CALLBACK, event=SCRIPT, reported_status=BREAKOUT
    )
    out = add_output(run, 0)
    Output.objects.filter(pk=out.pk).update(source_url="javascript:alert(3)")
    add_output(run, 1, archived=False, archive_state="refused", archive_error=SCRIPT)
    Output.objects.filter(run=run, index=1).update(source_url="data:text/html,<script>x</script>")
    return run


def test_history_and_rows_poll(cast: Cast, hostile: Run) -> None:
    client = cast.client_for("member")
    assert_inert(client.get(reverse("runs:team", args=[cast.team.uuid])).content.decode())
    assert_inert(
        client.get(reverse("runs:team", args=[cast.team.uuid]), {"q": SCRIPT}).content.decode()
    )
    rows = reverse("runs:run_rows", args=[cast.team.uuid]) + f"?ids={hostile.uuid}"
    assert_inert(client.get(rows, HTTP_HX_REQUEST="true").content.decode())


def test_run_page_and_its_live_partial(cast: Cast, hostile: Run) -> None:
    client = cast.client_for("admin")
    url = reverse("runs:run", args=[cast.team.uuid, hostile.uuid])
    html = client.get(url).content.decode()
    assert_inert(html)
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in html  # shown, as text
    assert "https://example.com/a?b=1&amp;c=&lt;2&gt;" in html  # a fine URL stays a link
    live = client.get(url + "?live=1&logs=0&v=x.x.x.x", HTTP_HX_REQUEST="true").content.decode()
    assert_inert(live)
    assert "hx-swap-oob" in live


def test_gallery_compare_and_share_pages(cast: Cast, hostile: Run) -> None:
    client = cast.client_for("member")
    assert_inert(client.get(reverse("runs:gallery", args=[cast.team.uuid])).content.decode())
    other = make_run(cast.team, cast.member, prompt=BREAKOUT)
    compare = reverse("runs:compare", args=[cast.team.uuid])
    assert_inert(
        client.get(compare, {"runs": [str(hostile.uuid), str(other.uuid)]}).content.decode()
    )
    link = ShareLink.objects.create(team=cast.team, title=SCRIPT)
    link.runs.set([hostile])
    assert_inert(Client().get(link.get_absolute_url()).content.decode())
    assert_inert(client.get(reverse("runs:shares", args=[cast.team.uuid])).content.decode())
    share_new = reverse("runs:share_create", args=[cast.team.uuid])
    assert_inert(client.get(share_new, {"runs": str(hostile.uuid)}).content.decode())
    zip_new = reverse("runs:zip_create", args=[cast.team.uuid])
    assert_inert(client.get(zip_new, {"runs": str(hostile.uuid)}).content.decode())


def test_upstream_urls_never_reach_a_page(cast: Cast, hostile: Run) -> None:
    html = (
        cast.client_for("member")
        .get(reverse("runs:run", args=[cast.team.uuid, hostile.uuid]))
        .content.decode()
    )
    assert "alert(3)" not in html
    assert "data:text/html,&lt;script" not in html
    assert "files.runflow.example" not in html


@pytest.mark.parametrize("url", BAD_URLS)
def test_safe_href_refuses_dangerous_urls(url: str) -> None:
    assert safe_href(url) == ""


@pytest.mark.parametrize("url", ["https://a.example/x.png", "http://127.0.0.1:8765/f?sig=1"])
def test_safe_href_keeps_plain_links(url: str) -> None:
    assert safe_href(url) == url


@given(st.text(max_size=80))
def test_safe_href_only_ever_returns_http_links(text: str) -> None:
    result = safe_href(text)
    assert result == "" or result.lower().startswith(("http://", "https://"))
    assert not any(ord(ch) < 0x21 for ch in result)


def test_data_uris_are_summarised_not_shown() -> None:
    text = display_value("data:image/png;base64," + "A" * 5000)
    assert text.startswith("data:image/png;base64,…")
    assert "AAAA" not in text
