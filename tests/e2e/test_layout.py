"""Layout in a real browser at a phone's width (375 px) and a laptop's (1280 px).

Every main page must fit the screen (no sideways scrolling of the page itself: wide tables
scroll inside their own box), the header must stay usable on a phone, and the defects a QA
pass found must stay fixed: run titles wrapped one letter per line, the compare table's
label column taking most of a phone, a status badge sticking out of its batch tile, and a
caption starting with " · ".

The seeded runs live in their own team ("Layout E2E"), so other browser tests are not
disturbed; the catalog and connection pages use the Demo team, which `serve` wires to the
sandbox.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.test_workspace import wait_until
from tests.plugins.live import LiveSite, screenshot, sign_in, signed_in_page

PHONE, LAPTOP = 375, 1280

SEED = r"""
import io, json
from datetime import timedelta
from PIL import Image
from django.contrib.auth import get_user_model
from django.core.files.base import ContentFile
from django.utils import timezone
from runs.models import Batch, Membership, Output, Role, Run, Status, Team

admin = get_user_model().objects.get(username="admin")
team = Team.objects.create(name="Layout E2E")
Membership.objects.create(user=admin, team=team, role=Role.ADMIN)
now = timezone.now()

def run(prompt, minutes, status=Status.SUCCEEDED, model="google/nano-banana-pro", **extra):
    return Run.objects.create(team=team, created_by=admin, api_url="http://127.0.0.1:8765",
                              model_id=model, input={"prompt": prompt, "seed": minutes},
                              status=status, created_at=now - timedelta(minutes=minutes),
                              **extra)

def image(r, index=0, color=(40, 90, 200)):
    buffer = io.BytesIO()
    Image.new("RGB", (240, 160), color).save(buffer, format="PNG")
    o = Output(run=r, index=index, kind="image", source_url="https://files.example/x.png",
               content_type="image/png", width=240, height=160, archive_state="archived",
               archived_at=now)
    o.file.save(f"{index}.png", ContentFile(buffer.getvalue()), save=False)
    o.size_bytes = len(buffer.getvalue())
    o.save()

first = run("a lighthouse at dusk, oil painting", 9)
image(first, 0)
image(first, 1, (200, 60, 40))
second = run("a lighthouse at dawn, watercolor", 8)
image(second, 0, (40, 160, 90))
failed = run("an impossible request", 7, status=Status.FAILED,
             failure_message="image dimensions exceed 4096x4096")
sound = run("thunder over the sea", 6, model="elevenlabs/sound-effects/v2")
audio = Output(run=sound, index=0, kind="audio", source_url="https://files.example/a.mp3",
               content_type="audio/mpeg", duration=3.0, archive_state="archived",
               archived_at=now)
audio.file.save("0.mp3", ContentFile(b"ID3" + bytes(2000)), save=False)
audio.size_bytes = 2003
audio.save()

def batch(label, statuses):
    made = Batch.objects.create(team=team, created_by=admin, api_url="http://127.0.0.1:8765",
                                model_id="google/nano-banana-pro", label=label, source="lines")
    items = []
    for i, status in enumerate(statuses):
        items.append(run(f"{label} item {i}", 5, status=status, batch=made, batch_index=i))
        if status in (Status.SUCCEEDED, Status.PARTIAL_SUCCEEDED):
            image(items[-1])
    return made, items

finished, _ = batch("Finished batch",
                    [Status.SUCCEEDED, Status.PARTIAL_SUCCEEDED, Status.FAILED])
live, live_items = batch("Live batch", [Status.RUNNING, Status.RUNNING])
demo = Team.objects.filter(name="Demo").first()
print(json.dumps({"team": str(team.uuid), "demo": str(demo.uuid) if demo else "",
                  "first": str(first.uuid), "second": str(second.uuid),
                  "failed": str(failed.uuid), "sound": str(sound.uuid),
                  "batch": str(finished.uuid), "live_batch": str(live.uuid),
                  "live_item": str(live_items[0].uuid)}))
"""

FAIL_RUN = r"""
from django.utils import timezone
from runs.models import Run, Status
Run.objects.filter(uuid="{uuid}").update(status=Status.FAILED, completed_at=timezone.now(),
                                          updated_at=timezone.now(), failure_message="boom")
"""

# Elements reaching past the right edge of the screen, for a readable failure message.
WIDE = """(width) => [...document.querySelectorAll('body *')]
  .filter(e => e.getBoundingClientRect().right > width + 1).slice(0, 8)
  .map(e => e.tagName + '.' + e.className + ' ' + Math.round(e.getBoundingClientRect().width))"""

BOX = (
    "(selector) => { const r = document.querySelector(selector).getBoundingClientRect();"
    " return {left: r.left, right: r.right, top: r.top, bottom: r.bottom, width: r.width,"
    " height: r.height}; }"
)


@pytest.fixture(scope="module")
def seeded(live_site: LiveSite) -> Iterator[dict[str, str]]:
    yield json.loads(live_site.shell(SEED).strip().splitlines()[-1])


def pages(seeded: dict[str, str]) -> dict[str, str]:
    """Every main page, by a short name: the ones of the seeded team and, when `serve` made
    one, the Demo team's catalog, launch form and connection pages."""
    team, demo = f"/t/{seeded['team']}/", f"/t/{seeded['demo']}/"
    found = {
        "history": team,
        "run": f"{team}runs/{seeded['first']}/",
        "run-failed": f"{team}runs/{seeded['failed']}/",
        "run-audio": f"{team}runs/{seeded['sound']}/",
        "gallery": f"{team}gallery/",
        "batch": f"{team}batches/{seeded['batch']}/",
        "compare": f"{team}compare/?runs={seeded['first']}&runs={seeded['second']}",
        "usage": f"{team}usage/",
        "budgets": f"{team}budgets/",
        "settings": f"{team}settings/",
        "audit": f"{team}audit/",
        "zip": f"{team}downloads/new/?runs={seeded['first']}",
    }
    if seeded["demo"]:
        found |= {
            "models": f"{demo}models/",
            "model": f"{demo}models/google/nano-banana-pro/",
            "launch": f"{demo}launch/google/nano-banana-pro/",
            "batch-form": f"{demo}batches/new/google/nano-banana-pro/",
            "connection": f"{demo}connection/",
            "audit-demo": f"{demo}audit/",
        }
    return found


def assert_fits(page: Any, width: int, name: str) -> None:
    scroll = page.evaluate("document.documentElement.scrollWidth")
    assert scroll <= width, (name, scroll, page.evaluate(WIDE, width))


@pytest.mark.parametrize("width", [PHONE, LAPTOP])
def test_no_page_scrolls_sideways(
    live_site: LiveSite, seeded: dict[str, str], new_context: Any, width: int
) -> None:
    page = signed_in_page(new_context, live_site, width)
    for name, path in pages(seeded).items():
        response = page.goto(live_site.url + path)
        assert response.status == 200, (name, response.status)
        assert_fits(page, width, name)


def test_phone_header_shows_every_section(
    live_site: LiveSite, seeded: dict[str, str], new_context: Any
) -> None:
    page = signed_in_page(new_context, live_site, PHONE)
    # Demo's short name left the nav a 27 px strip beside the menus; a long name pushed the
    # account menu onto a line of its own. Both teams' headers must look alike.
    teams = [seeded["team"]] + ([seeded["demo"]] if seeded["demo"] else [])
    for team in teams:
        page.goto(f"{live_site.url}/t/{team}/")
        nav = page.evaluate(BOX, ".nav")
        assert nav["width"] >= PHONE - 2 * 16, nav
        links = page.locator(".nav a")
        assert links.count() >= 4
        for index in range(links.count()):
            box = links.nth(index).bounding_box()
            assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE, links.nth(index).inner_text()
            assert box["y"] >= nav["top"] - 1 and box["y"] + box["height"] <= nav["bottom"] + 1
        team_menu = page.evaluate(BOX, ".team-switcher > summary")
        account = page.evaluate(BOX, ".user-menu > summary")
        assert abs(team_menu["top"] - account["top"]) < 2, (team_menu, account)
        assert account["right"] <= PHONE and account["bottom"] <= nav["top"]
    screenshot(page, "layout-01-phone-header")

    # The sections are plain links: Tab reaches each of them, in the order shown.
    page.locator(".team-switcher > summary").focus()
    labels = [page.locator(".nav a").nth(i).inner_text() for i in range(links.count())]
    for label in labels:
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.textContent.trim()") == label

    # A menu opens as a sheet within the screen.
    page.click(".team-switcher > summary")
    panel = page.evaluate(BOX, ".team-switcher .menu__panel")
    assert panel["left"] >= 0 and panel["right"] <= PHONE, panel
    assert_fits(page, PHONE, "team menu open")


def test_phone_run_list_keeps_titles_readable(
    live_site: LiveSite, seeded: dict[str, str], new_context: Any
) -> None:
    page = signed_in_page(new_context, live_site, PHONE)
    page.goto(f"{live_site.url}/t/{seeded['team']}/")
    # The failed run has no thumbnail line; its title wrapped one letter per line.
    title = page.evaluate(BOX, f"#run-{seeded['failed']} .run-link")
    assert title["width"] >= 200, title
    assert title["height"] < 2 * 24, title  # "an impossible request": one line
    screenshot(page, "layout-02-phone-runs")


def test_phone_compare_gives_the_runs_the_room(
    live_site: LiveSite, seeded: dict[str, str], new_context: Any
) -> None:
    page = signed_in_page(new_context, live_site, PHONE)
    page.goto(live_site.url + pages(seeded)["compare"])
    table = page.evaluate(BOX, "table.compare")
    label = page.evaluate(BOX, "table.compare .compare__name")
    assert table["right"] <= PHONE  # two runs fit without scrolling
    assert label["width"] <= 0.4 * table["width"], (label, table)  # it was ~60 %
    screenshot(page, "layout-03-phone-compare")


def test_batch_counts_partly_succeeded_and_badges_stay_in_their_tiles(
    live_site: LiveSite, seeded: dict[str, str], new_context: Any
) -> None:
    for width in (PHONE, LAPTOP):
        page = signed_in_page(new_context, live_site, width)
        page.goto(live_site.url + pages(seeded)["batch"])
        counts = {
            name: page.inner_text(f"[data-count='{name}']")
            for name in ("succeeded", "partial", "failed")
        }
        assert counts == {"succeeded": "1", "partial": "1", "failed": "1"}
        assert page.locator("#batch-live #batch-retry").is_visible()
        outside = page.evaluate(
            """[...document.querySelectorAll('.contact-sheet__item')].filter(item => {
                 const tile = item.getBoundingClientRect();
                 return [...item.querySelectorAll('.badge, img')].some(e => {
                   const r = e.getBoundingClientRect();
                   return r.right > tile.right + 0.5 || r.left < tile.left - 0.5; });
               }).map(item => item.innerText)"""
        )
        assert outside == []
        # Each picture really loads (a video's or a missing thumbnail's URL did not).
        wait_until(
            page,
            "[...document.querySelectorAll('.contact-sheet img')]"
            ".every(i => i.complete && i.naturalWidth > 0)",
        )
        assert page.locator(".contact-sheet img").count() == 2
        screenshot(page, f"layout-04-batch-{width}")


def test_retry_button_appears_without_a_reload(
    live_site: LiveSite, seeded: dict[str, str], page: Any
) -> None:
    sign_in(page, live_site)
    page.goto(f"{live_site.url}/t/{seeded['team']}/batches/{seeded['live_batch']}/")
    assert page.locator("#batch-retry").count() == 0
    page.evaluate("window.__noReload = true")
    live_site.shell(FAIL_RUN.replace("{uuid}", seeded["live_item"]))
    page.wait_for_selector("#batch-retry", timeout=15_000)
    assert page.evaluate("window.__noReload") is True
    assert page.inner_text("[data-count='failed']") == "1"


def test_captions_never_start_with_a_separator(
    live_site: LiveSite, seeded: dict[str, str], page: Any
) -> None:
    sign_in(page, live_site)
    for name in ("gallery", "run-audio", "run"):
        page.goto(live_site.url + pages(seeded)[name])
        captions = page.locator(".tile__caption").all_inner_texts()
        assert captions, name
        assert not [c for c in captions if c.strip().startswith("·")], captions
    page.goto(live_site.url + pages(seeded)["run-audio"])
    assert page.locator(".tile__facts").inner_text().startswith("3.0 s · ")


def test_download_all_leads_back_to_the_run(
    live_site: LiveSite, seeded: dict[str, str], page: Any
) -> None:
    sign_in(page, live_site)
    run_url = f"/t/{seeded['team']}/runs/{seeded['first']}/"
    page.goto(live_site.url + run_url)
    page.click("a:has-text('Download all')")
    back = page.locator(".page-head a.button")
    assert back.inner_text() == "Back to the run" and back.get_attribute("href") == run_url
    page.click("button:has-text('Build the ZIP')")
    page.wait_for_url(re.compile(r"/downloads/[0-9a-f-]{36}/"))
    assert back.inner_text() == "Back to the run" and back.get_attribute("href") == run_url
    back.click()
    page.wait_for_url(live_site.url + run_url)


def test_laptop_run_filters_share_one_line(
    live_site: LiveSite, seeded: dict[str, str], page: Any
) -> None:
    sign_in(page, live_site)
    page.goto(f"{live_site.url}/t/{seeded['team']}/")
    # The search has its own line; every other filter and the buttons share the next one
    # ("Starred by me" and Apply were left alone on a third line).
    bottoms = page.evaluate(
        "[...document.querySelectorAll('.history-filters > .field:not(.field--grow)')]"
        ".map(f => Math.round(f.getBoundingClientRect().bottom))"
    )
    assert len(bottoms) >= 7 and len(set(bottoms)) == 1, bottoms
    search = page.evaluate(BOX, ".history-filters .field--grow")
    assert search["bottom"] < min(bottoms) - 30
    screenshot(page, "layout-05-laptop-runs")
