"""The workspace in a real browser: history, run page, gallery lightbox, compare, share links,
roles, and a real launch against the sandbox watched to the end without a reload.

Seeded runs live in their own team ("Workspace E2E") so other browser tests that use the
Demo team are not disturbed; the launch test uses the Demo team, which `serve` wires to the
sandbox.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.plugins.live import LiveSite, screenshot, sign_in

VIEWER = ("vera", "viewer password 1234")

SEED = r"""
import io, json
from datetime import timedelta
from decimal import Decimal
from PIL import Image, ImageDraw
from django.contrib.auth import get_user_model
from django.core.files.base import ContentFile
from django.utils import timezone
from runs.models import Membership, Output, Role, Run, RunLog, NodeRun, Status, Team

User = get_user_model()
admin = User.objects.get(username="admin")
viewer, _ = User.objects.get_or_create(username="vera")
viewer.set_password("viewer password 1234")
viewer.save()
team = Team.objects.create(name="Workspace E2E")
Membership.objects.create(user=admin, team=team, role=Role.ADMIN)
Membership.objects.create(user=viewer, team=team, role=Role.VIEWER)
now = timezone.now()

def png(color, size, label):
    image = Image.new("RGB", size, color)
    ImageDraw.Draw(image).text((10, 10), label, fill=(255, 255, 255))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()

def run(prompt, minutes, status=Status.SUCCEEDED, model="google/nano-banana-pro", **extra):
    fields = dict(team=team, created_by=admin, api_url="http://127.0.0.1:8765", model_id=model,
                  input={"prompt": prompt, "aspect_ratio": "16:9", "seed": 7}, status=status,
                  created_at=now - timedelta(minutes=minutes),
                  queued_at=now - timedelta(minutes=minutes, seconds=-1))
    if status not in (Status.RUNNING, Status.QUEUED):
        fields.update(running_at=now - timedelta(minutes=minutes, seconds=-3),
                      completed_at=now - timedelta(minutes=minutes, seconds=-14),
                      duration_ms=11000)
    fields.update(extra)
    return Run.objects.create(**fields)

def outputs(r, *specs):
    for index, (color, size) in enumerate(specs):
        o = Output(run=r, index=index, kind="image", source_url="https://files.example/x.png",
                   content_type="image/png", width=size[0], height=size[1],
                   archive_state="archived", archived_at=timezone.now())
        data = png(color, size, f"{r.input['prompt'][:20]} #{index + 1}")
        o.file.save(f"{index}.png", ContentFile(data), save=False)
        o.size_bytes = len(data)
        o.save()

first = run("a lighthouse at dusk, oil painting", 9, cost=Decimal("0.30"))
outputs(first, ((180, 40, 40), (320, 200)), ((40, 60, 180), (320, 200)))
for n, (level, text) in enumerate([("info", "loading weights"), ("warning", "queue busy"),
                                   ("info", "sampling 30 steps"), ("error", "retrying node 2")]):
    RunLog.objects.create(run=first, runflow_id=f"l{n}", level=level, message=text,
                          timestamp=now - timedelta(minutes=9, seconds=-n))
NodeRun.objects.create(run=first, runflow_id="n1", node_id="generate", state="succeeded",
                       duration_ms=8200)
second = run("a lighthouse at dawn, watercolor", 7, parent=first, cost=Decimal("0.15"))
second.input = {"prompt": "a lighthouse at dawn, watercolor", "aspect_ratio": "1:1", "seed": 7}
second.save()
outputs(second, ((40, 160, 90), (240, 240)))
failed = run("an impossible request", 5, status=Status.FAILED,
             failure_code="INPUT_VALIDATION_FAILED", failure_stage_code="preprocess",
             failure_message="image dimensions exceed 4096x4096")
third = run("a red fox in the snow", 3, model="black-forest-labs/flux-2-pro",
            cost=Decimal("0.05"))
outputs(third, ((220, 120, 20), (200, 300)))
flying = run("still running", 1, status=Status.RUNNING)
print(json.dumps({"team": str(team.uuid), "first": str(first.uuid), "second": str(second.uuid),
                  "failed": str(failed.uuid), "third": str(third.uuid),
                  "flying": str(flying.uuid)}))
"""

FINISH_FLYING = r"""
from django.utils import timezone
from runs.models import Run, Status
Run.objects.filter(uuid="{uuid}").update(status=Status.SUCCEEDED, completed_at=timezone.now(),
                                          updated_at=timezone.now(), duration_ms=4200)
"""


@pytest.fixture(scope="module")
def seeded(live_site: LiveSite) -> Iterator[dict[str, str]]:
    yield json.loads(live_site.shell(SEED).strip().splitlines()[-1])


def wait_until(page: Any, script: str, timeout: float = 10.0) -> None:
    """Poll a JavaScript expression from outside the page: ``wait_for_function`` compiles
    its predicate with eval, which the site's CSP (rightly) refuses."""
    deadline = time.monotonic() + timeout
    while not page.evaluate(script):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for: {script}")
        page.wait_for_timeout(100)


def team_url(site: LiveSite, seeded: dict[str, str], path: str = "") -> str:
    return f"{site.url}/t/{seeded['team']}/{path}"


def test_history_filters_and_live_row(live_site: LiveSite, seeded: dict, page: Any) -> None:
    sign_in(page, live_site)
    page.goto(team_url(live_site, seeded))
    rows = page.locator("tr.run-row")
    assert rows.count() == 5
    assert rows.first.get_attribute("id") == f"run-{seeded['flying']}"
    assert page.title().startswith("(1 running)")
    assert page.locator(f"#run-{seeded['first']} img.thumb").count() == 2
    screenshot(page, "10-runs-history")

    # The one poll refreshes the in-flight row in place once it finishes; then it only
    # waits, slowly, for new runs (tests/e2e/test_history_live.py).
    live_site.shell(FINISH_FLYING.replace("{uuid}", seeded["flying"]))
    page.wait_for_selector(f"#run-{seeded['flying']} .badge--succeeded", timeout=10_000)
    wait_until(page, "!document.title.startsWith('(')")
    wait_until(page, "!document.querySelector('#history-poller[hx-get*=\"ids=\"]')")
    assert page.locator("#history-poller[hx-trigger='every 5s']").count() == 1

    # Filters swap the list in place and live in the URL.
    page.select_option("#f-status", "failed")
    wait_until(page, "document.querySelectorAll('tr.run-row').length === 1")
    assert "status=failed" in page.url
    assert page.locator("tr.run-row .badge--failed").count() == 1
    page.fill("#f-q", "fox")
    page.select_option("#f-status", "")
    wait_until(page, "location.search.includes('q=fox') && !location.search.includes('status')")
    wait_until(page, "document.querySelectorAll('tr.run-row').length === 1")
    assert "fox" in page.locator("tr.run-row .run-link").inner_text()
    assert "model=" not in page.url  # empty filters stay out of the address
    page.reload()
    assert page.locator("#f-q").input_value() == "fox"
    assert page.locator("tr.run-row").count() == 1


def test_run_page_shows_diff_logs_and_failure(live_site: LiveSite, seeded: dict, page: Any) -> None:
    sign_in(page, live_site)
    page.goto(team_url(live_site, seeded, f"runs/{seeded['second']}/"))
    changed = page.locator(".inputs__row--changed dt").all_inner_texts()
    assert [text.split()[0] for text in changed] == ["prompt", "aspect_ratio"]
    assert page.locator(".timeline__step--reached").count() >= 3
    assert page.locator("#region-outputs img").count() == 1
    screenshot(page, "11-run-page")

    page.goto(team_url(live_site, seeded, f"runs/{seeded['first']}/"))
    assert page.locator(".log-line--error").inner_text().endswith("retrying node 2")
    assert page.locator("#region-steps").is_visible()
    page.goto(team_url(live_site, seeded, f"runs/{seeded['failed']}/"))
    panel = page.locator(".failure")
    assert "could not use these inputs" in panel.inner_text()
    assert "image dimensions exceed 4096x4096" in panel.inner_text()
    screenshot(page, "12-run-failed")


def test_gallery_lightbox_with_the_keyboard(live_site: LiveSite, seeded: dict, page: Any) -> None:
    sign_in(page, live_site)
    page.goto(team_url(live_site, seeded, "gallery/"))
    links = page.locator("a[data-lightbox]")
    assert links.count() == 4
    screenshot(page, "13-gallery")
    links.first.click()
    box = page.locator("dialog.lightbox")
    box.wait_for(state="visible")
    assert page.locator(".lightbox__position").inner_text() == "1 of 4"
    assert page.locator(".lightbox__dims").inner_text() == "200×300"
    wait_until(page, "document.querySelector('.lightbox__image').naturalWidth === 200")
    screenshot(page, "14-gallery-lightbox")
    page.keyboard.press("ArrowRight")
    assert page.locator(".lightbox__position").inner_text() == "2 of 4"
    assert page.locator(".lightbox__dims").inner_text() == "240×240"
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowRight")  # stays on the last one
    assert page.locator(".lightbox__position").inner_text() == "4 of 4"
    page.keyboard.press("ArrowLeft")
    assert page.locator(".lightbox__position").inner_text() == "3 of 4"
    run_link = page.locator(".lightbox__run").get_attribute("href")
    assert run_link == f"/t/{seeded['team']}/runs/{seeded['first']}/"
    page.keyboard.press("Escape")
    box.wait_for(state="hidden")
    assert page.evaluate("document.activeElement.matches('a[data-lightbox]')")


def test_compare_two_runs(live_site: LiveSite, seeded: dict, page: Any) -> None:
    sign_in(page, live_site)
    page.goto(team_url(live_site, seeded))
    compare = page.locator("button:has-text('Compare')")
    assert compare.is_disabled()
    page.check(f"#run-{seeded['first']} input[name=runs]")
    page.check(f"#run-{seeded['second']} input[name=runs]")
    assert page.locator("[data-selection-count]").inner_text() == "2 selected"
    compare.click()
    page.wait_for_selector("table.compare")
    differing = page.locator("tr.compare__input.differs th").all_inner_texts()
    assert [text.split()[0] for text in differing] == ["prompt", "aspect_ratio"]
    assert page.locator("tr.compare__outputs img").count() == 3
    screenshot(page, "15-compare")


def test_share_link_opens_without_login(
    live_site: LiveSite, seeded: dict, page: Any, new_context: Any
) -> None:
    sign_in(page, live_site)
    page.goto(team_url(live_site, seeded, f"runs/{seeded['first']}/"))
    page.click("a:has-text('Share')")
    page.fill("#id_title", "Lighthouse study")
    page.select_option("#id_expires", "7")
    page.click("button:has-text('Create link')")
    page.wait_for_selector(".share-table__fresh")
    address = page.locator(".share-table__fresh input[readonly]").input_value()
    screenshot(page, "16-share-links")

    stranger = new_context(viewport={"width": 390, "height": 844}).new_page()
    stranger.goto(address)
    assert "/accounts/login/" not in stranger.url
    assert stranger.locator("h1").inner_text() == "Lighthouse study"
    body = stranger.locator("main").inner_text()
    assert "a lighthouse at dusk" in body
    assert "Workspace E2E" not in stranger.content() and "$0.30" not in body
    wait_until(
        stranger,
        "[...document.querySelectorAll('.tile img')].every(i => i.complete && i.naturalWidth > 0)",
    )
    assert stranger.locator(".tile img").count() == 2
    screenshot(stranger, "17-shared-phone")

    # Revoked, the same address no longer opens anything.
    page.on("dialog", lambda dialog: dialog.accept())
    page.click(".share-table__fresh button:has-text('Revoke')")
    page.wait_for_selector(".message--success")
    assert stranger.goto(address).status == 404


def test_viewer_sees_no_launch_or_write_actions(
    live_site: LiveSite, seeded: dict, page: Any
) -> None:
    sign_in(page, live_site, *VIEWER)
    page.goto(team_url(live_site, seeded))
    assert page.locator("tr.run-row").count() == 5
    assert page.locator("[data-launch]").count() == 0
    assert page.locator("button.star").count() == 0
    assert page.locator("button:has-text('Share…')").count() == 0
    page.goto(team_url(live_site, seeded, f"runs/{seeded['first']}/"))
    assert page.locator("button:has-text('Run again')").count() == 0
    assert page.locator("a:has-text('Edit and run')").count() == 0
    assert page.locator(".feedback button").count() == 0


# Elements sticking out to the right of a phone screen, for a readable failure.
WIDE = """[...document.querySelectorAll('main *')]
  .filter(e => e.getBoundingClientRect().right > 391).slice(0, 8)
  .map(e => e.tagName + '.' + e.className + ' ' + Math.round(e.getBoundingClientRect().width))"""


def test_phone_and_dark_mode(live_site: LiveSite, seeded: dict, new_context: Any) -> None:
    phone = new_context(viewport={"width": 390, "height": 844}, color_scheme="dark").new_page()
    sign_in(phone, live_site)
    phone.goto(team_url(live_site, seeded))
    width = phone.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, phone.evaluate(WIDE)
    background = phone.evaluate("getComputedStyle(document.body).backgroundColor")
    assert background == "rgb(15, 17, 21)"
    screenshot(phone, "18-runs-phone-dark")
    phone.goto(team_url(live_site, seeded, f"runs/{seeded['first']}/"))
    wide = phone.evaluate(WIDE)
    assert phone.evaluate("document.documentElement.scrollWidth") <= 390, wide
    screenshot(phone, "19-run-phone-dark")


def test_keyboard_focus_is_visible(live_site: LiveSite, seeded: dict, page: Any) -> None:
    sign_in(page, live_site)
    page.goto(team_url(live_site, seeded, "gallery/"))
    page.focus("a[data-lightbox]")
    page.keyboard.press("Tab")
    page.keyboard.press("Shift+Tab")
    shadow = page.evaluate("getComputedStyle(document.activeElement).boxShadow")
    assert shadow and shadow != "none"


def demo_team(live_site: LiveSite) -> str | None:
    """The Demo team's uuid when it has a key on the sandbox, else None (nothing to launch)."""
    out = live_site.shell(
        "from runs.models import Team\n"
        "team = Team.objects.filter(name='Demo').first()\n"
        "print(team.uuid if team and team.default_key() else '')"
    )
    lines = out.strip().splitlines()
    return lines[-1] if lines and lines[-1] else None


def launch(page: Any, live_site: LiveSite, team: str, prompt: str) -> str:
    page.goto(f"{live_site.url}/t/{team}/launch/google/nano-banana-pro/")
    if not page.locator("#id_input-prompt").count():
        raise AssertionError(f"no launch form at {page.url}:\n{page.locator('main').inner_text()}")
    page.fill("#id_input-prompt", prompt)
    page.click("#launch-form button[type=submit]:has-text('Launch')")
    page.wait_for_url(re.compile(r"/runs/[0-9a-f-]{36}/$"))
    return str(page.url)


# Records desktop notifications instead of showing them (and says permission was given).
FAKE_NOTIFICATIONS = """
window.__notes = [];
class FakeNotification {
  constructor(title, options) { window.__notes.push(title + " | " + (options || {}).body); }
  addEventListener() {}
  close() {}
}
FakeNotification.permission = "granted";
FakeNotification.requestPermission = () => Promise.resolve("granted");
window.Notification = FakeNotification;
localStorage.setItem("runflow-notify", "1");
"""


def test_launch_and_watch_it_finish_without_reload(live_site: LiveSite, page: Any) -> None:
    team = demo_team(live_site)
    if team is None:
        pytest.skip("the Demo team is not wired to the sandbox in this build")
    page.context.add_init_script(FAKE_NOTIFICATIONS)
    sign_in(page, live_site)
    url = launch(page, live_site, team, "a paper boat on a quiet lake")
    page.evaluate("window.__noReload = true")
    statuses = set()
    for _ in range(120):
        statuses.add(page.locator("#region-head").get_attribute("data-run-status"))
        if page.locator("#region-outputs img").count():
            break
        page.wait_for_timeout(250)
    wait_until(
        page,
        "[...document.querySelectorAll('#region-outputs img')].some(i => i.naturalWidth > 0)",
        timeout=30,
    )
    assert page.evaluate("window.__noReload") is True  # the same document all along
    assert page.url == url
    assert page.locator("#region-head").get_attribute("data-run-status") == "succeeded"
    assert statuses & {"pending", "queued", "dispatching", "running"}, statuses
    assert page.locator(".log-line").count() > 0
    assert page.locator("#run-poller[hx-trigger]").count() == 0  # polling stopped
    assert page.title().startswith("Succeeded ·")
    notes = page.evaluate("window.__notes")
    assert notes == ["Succeeded: a paper boat on a quiet lake | Its outputs are ready."], notes
    screenshot(page, "20-launched-run")


def test_a_failing_run_shows_its_failure_panel(live_site: LiveSite, page: Any) -> None:
    team = demo_team(live_site)
    if team is None:
        pytest.skip("the Demo team is not wired to the sandbox in this build")
    sign_in(page, live_site)
    launch(page, live_site, team, "this one will break [fail]")
    page.wait_for_selector(".failure", timeout=45_000)
    assert page.locator("#region-head").get_attribute("data-run-status") == "failed"
    assert "What to try" in page.locator(".failure").inner_text()
    screenshot(page, "21-launched-run-failed")
