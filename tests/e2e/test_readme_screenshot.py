"""The README's product screenshot: the run history of a team with a few finished runs,
launched for real against the sandbox (its outputs, copied into our storage).

It runs with the other browser tests and saves artifacts/screenshots/readme-history.png.
To refresh the committed picture, run it with UPDATE_DOCS_SCREENSHOT=1:

    UPDATE_DOCS_SCREENSHOT=1 uv run pytest tests/e2e/test_readme_screenshot.py

which also writes docs/screenshot.png (kept under MAX_BYTES).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from tests.e2e.test_workspace import wait_until
from tests.plugins.live import ROOT, LiveSite, screenshot, signed_in_page

DOCS_SCREENSHOT = ROOT / "docs" / "screenshot.png"
MAX_BYTES = 300 * 1024
FINISH_SECONDS = 90

# A team of three on the sandbox, and five runs launched the way the launch form does.
LAUNCH = r"""
import json
from django.contrib.auth import get_user_model
from runs.connection import connect_sandbox
from runs.launching import launch_run
from runs.models import Membership, Role, Team

User = get_user_model()
admin = User.objects.get(username="admin")
team = Team.objects.create(name="Northwind Studio")
people = {"admin": Membership.objects.create(user=admin, team=team, role=Role.ADMIN)}
for name in ("maya", "leo"):
    user, _ = User.objects.get_or_create(username=name)
    people[name] = Membership.objects.create(user=user, team=team, role=Role.MEMBER)
connect_sandbox(team)
runs = [
    ("maya", "google/nano-banana-pro",
     {"prompt": "A lighthouse at dawn, watercolour", "aspect_ratio": "16:9"}),
    ("leo", "black-forest-labs/flux-2-pro",
     {"prompt": "A red fox curled up in fresh snow", "width": 1024, "height": 768}),
    ("admin", "elevenlabs/sound-effects/v2",
     {"prompt": "Rain on a tin roof, distant thunder", "duration_seconds": 4}),
    ("maya", "recraft/v3",
     {"prompt": "Flat icons for a coffee shop menu", "style": "vector_illustration",
      "num_images": 3}),
    ("leo", "google/nano-banana-pro",
     {"prompt": "A neon city street in the rain, cinematic", "aspect_ratio": "3:2"}),
]
uuids = [str(launch_run(people[who], model, data).uuid) for who, model, data in runs]
print(json.dumps({"team": str(team.uuid), "runs": uuids}))
"""

ALL_DONE = """(() => {
  const rows = [...document.querySelectorAll('#history-rows tr')];
  return rows.length === %d
    && rows.every(row => row.querySelector('.badge--succeeded'))
    && !document.querySelector('#history-rows .thumb--pending, #history-rows .thumb--bad')
    && [...document.querySelectorAll('#history-rows img.thumb')]
         .every(img => img.complete && img.naturalWidth > 0);
})()"""


def test_readme_screenshot_of_the_run_history(live_site: LiveSite, new_context: Any) -> None:
    launched = json.loads(live_site.shell(LAUNCH).strip().splitlines()[-1])
    page = signed_in_page(new_context, live_site, 1280, 720)
    page.goto(f"{live_site.url}/t/{launched['team']}/")
    # The page refreshes itself as the runs finish and their outputs are copied.
    wait_until(page, ALL_DONE % len(launched["runs"]), timeout=FINISH_SECONDS)
    assert page.locator("#history-rows img.thumb").count() >= 6  # 1 + 1 + 3 + 1 images
    page.mouse.move(0, 0)  # no hover highlight in the picture
    page.wait_for_timeout(1500)  # the "updated" flash of the last rows has faded

    saved = screenshot(page, "readme-history")
    # The viewport only (not the full page): what a visitor sees first.
    page.screenshot(path=str(saved), full_page=False)
    assert 0 < saved.stat().st_size < MAX_BYTES
    if os.environ.get("UPDATE_DOCS_SCREENSHOT") == "1":
        DOCS_SCREENSHOT.parent.mkdir(exist_ok=True)
        shutil.copyfile(saved, DOCS_SCREENSHOT)


def test_the_committed_screenshot_is_small_and_in_the_readme() -> None:
    assert DOCS_SCREENSHOT.exists() and DOCS_SCREENSHOT.stat().st_size < MAX_BYTES
    assert DOCS_SCREENSHOT.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    readme = Path(ROOT / "README.md").read_text()
    assert "docs/screenshot.png" in readme.split("## The two commands")[0]
