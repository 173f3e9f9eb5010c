"""Launching in a real browser against the sandbox: one run, a batch of three, a rerun."""

from __future__ import annotations

import re
from pathlib import Path

from tests.plugins.live import LiveSite, screenshot, sign_in

MODEL = "google/nano-banana-pro"
EDIT_MODEL = "google/nano-banana-pro/edit"
# Runs finish in a few seconds on the live site's fast sandbox; leave room for a busy host.
FINISH_MS = 60_000


def card(model_id: str) -> str:
    """The catalog card of exactly this model (one id can be a prefix of another)."""
    return f".model-card:has(.model-card__id:text-is('{model_id}'))"


def open_models(page: object, live_site: LiveSite) -> None:
    sign_in(page, live_site)
    page.click("nav.topbar__inner .nav >> text=Models")  # type: ignore[attr-defined]
    # The worker fetches the sandbox catalog at start; the page fills in by itself.
    page.wait_for_selector(card(MODEL), timeout=FINISH_MS)  # type: ignore[attr-defined]


def wait_for_status(page: object, status: str) -> None:
    page.wait_for_selector(  # type: ignore[attr-defined]
        f"#region-head .badge--{status}", timeout=FINISH_MS
    )


def test_launch_a_text_to_image_run_then_rerun_it_with_one_change(
    live_site: LiveSite, page: object
) -> None:
    open_models(page, live_site)
    screenshot(page, "launch-01-models")
    page.click(f"{card(MODEL)} a:has-text('Launch')")  # type: ignore[attr-defined]
    page.wait_for_selector("#launch-form")  # type: ignore[attr-defined]
    assert "$RUNFLOW_API_KEY" in page.inner_text("#launch-curl")  # type: ignore[attr-defined]
    page.fill("textarea[name='input-prompt']", "A lighthouse at dawn, watercolour")  # type: ignore[attr-defined]
    screenshot(page, "launch-02-form")
    page.click("button[data-submit-once]")  # type: ignore[attr-defined]
    page.wait_for_url(re.compile(r"/runs/[0-9a-f-]{36}/$"))  # type: ignore[attr-defined]
    first_url = page.url  # type: ignore[attr-defined]
    wait_for_status(page, "succeeded")
    screenshot(page, "launch-03-run")

    # Edit and run: the form comes back prefilled; change one field.
    page.click("a:has-text('Edit and run')")  # type: ignore[attr-defined]
    page.wait_for_selector("#launch-form")  # type: ignore[attr-defined]
    prompt = page.input_value("textarea[name='input-prompt']")  # type: ignore[attr-defined]
    assert prompt == "A lighthouse at dawn, watercolour"
    if not page.is_visible("select[name='input-aspect_ratio']"):  # type: ignore[attr-defined]
        page.click("details.advanced > summary")  # type: ignore[attr-defined]
    page.select_option("select[name='input-aspect_ratio']", "16:9")  # type: ignore[attr-defined]
    page.click("button[data-submit-once]")  # type: ignore[attr-defined]
    page.wait_for_url(re.compile(r"/runs/[0-9a-f-]{36}/$"))  # type: ignore[attr-defined]
    assert page.url != first_url  # type: ignore[attr-defined]
    wait_for_status(page, "succeeded")
    screenshot(page, "launch-04-rerun")
    body = page.inner_text("main")  # type: ignore[attr-defined]
    assert "16:9" in body
    # The new run links to the one it was made from, and the changed input is marked.
    assert page.locator("a:has-text('run it was made from')").get_attribute("href") in first_url  # type: ignore[attr-defined]
    assert "was 1:1" in " ".join(body.split())


def test_launch_a_batch_of_three_prompts(live_site: LiveSite, page: object) -> None:
    open_models(page, live_site)
    page.click(f"{card(MODEL)} .model-card__link")  # type: ignore[attr-defined]
    page.click("a:has-text('Batch')")  # type: ignore[attr-defined]
    page.wait_for_selector("textarea[name='lines']")  # type: ignore[attr-defined]
    page.fill(  # type: ignore[attr-defined]
        "textarea[name='lines']", "A red fox in snow\nA blue owl at night\nA green frog on a leaf"
    )
    page.fill("input[name='label']", "Three animals")  # type: ignore[attr-defined]
    screenshot(page, "launch-05-batch-form")
    page.click("button[data-submit-once]")  # type: ignore[attr-defined]
    page.wait_for_url(re.compile(r"/batches/[0-9a-f-]{36}/$"))  # type: ignore[attr-defined]
    assert page.locator(".contact-sheet__item").count() == 3  # type: ignore[attr-defined]
    # The progress region refreshes itself and says "Finished" when all three are done.
    page.wait_for_selector("#progress-title:has-text('Finished')", timeout=FINISH_MS)  # type: ignore[attr-defined]
    assert page.inner_text("[data-count='succeeded']") == "3"  # type: ignore[attr-defined]
    screenshot(page, "launch-06-batch")


def test_an_image_input_uploads_with_progress_then_launches(
    live_site: LiveSite, page: object, tmp_path: Path
) -> None:
    from PIL import Image

    picture = tmp_path / "fox.png"
    Image.new("RGB", (64, 48), (200, 90, 30)).save(picture)
    open_models(page, live_site)
    page.click(f"{card(EDIT_MODEL)} a:has-text('Launch')")  # type: ignore[attr-defined]
    page.wait_for_selector("#launch-form")  # type: ignore[attr-defined]
    page.set_input_files("input[name='input-image_urls__file']", str(picture))  # type: ignore[attr-defined]
    page.wait_for_selector(".upload__status:has-text('fox.png uploaded')")  # type: ignore[attr-defined]
    urls = page.input_value("textarea[name='input-image_urls']")  # type: ignore[attr-defined]
    assert urls.startswith(live_site.sandbox_url)
    assert page.input_value("input[name='input-image_urls__file']") == ""  # type: ignore[attr-defined]
    page.fill("textarea[name='input-prompt']", "Make the fox blue")  # type: ignore[attr-defined]
    screenshot(page, "launch-07-upload")
    page.click("button[data-submit-once]")  # type: ignore[attr-defined]
    page.wait_for_url(re.compile(r"/runs/[0-9a-f-]{36}/$"))  # type: ignore[attr-defined]
    wait_for_status(page, "succeeded")
