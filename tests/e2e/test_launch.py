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


def open_launch_form(page: object, live_site: LiveSite, model_id: str = MODEL) -> None:
    open_models(page, live_site)
    page.click(f"{card(model_id)} a:has-text('Launch')")  # type: ignore[attr-defined]
    page.wait_for_selector("#launch-form")  # type: ignore[attr-defined]


def show_advanced(page: object, selector: str) -> None:
    if not page.is_visible(selector):  # type: ignore[attr-defined]
        page.click("details.advanced > summary")  # type: ignore[attr-defined]


def test_enter_never_launches_and_in_the_preset_name_it_saves_the_preset(
    live_site: LiveSite, page: object
) -> None:
    open_launch_form(page, live_site)
    launch_url = page.url  # type: ignore[attr-defined]
    # Every submit of the page, with the button that sent it (none: implicit submission).
    page.evaluate(  # type: ignore[attr-defined]
        """window.sent = [];
        document.addEventListener("submit", (e) => window.sent.push(
            e.submitter ? (e.submitter.id || e.submitter.textContent.trim()) : "(no button)"
        ), true);"""
    )
    page.fill("textarea[name='input-prompt']", "A harbour at night, long exposure")  # type: ignore[attr-defined]
    # Enter in a single-line input of the form (a number here) sends nothing.
    show_advanced(page, "input[name='input-num_images']")
    page.fill("input[name='input-num_images']", "2")  # type: ignore[attr-defined]
    page.press("input[name='input-num_images']", "Enter")  # type: ignore[attr-defined]
    assert page.evaluate("window.sent") == []  # type: ignore[attr-defined]
    assert page.url == launch_url  # type: ignore[attr-defined]

    # Enter in the preset name saves the preset, with the form's values, and launches nothing.
    page.fill("input[name='preset-name']", "Harbour at night")  # type: ignore[attr-defined]
    page.press("input[name='preset-name']", "Enter")  # type: ignore[attr-defined]
    page.wait_for_url(re.compile(r"/launch/.+\?preset=[0-9a-f-]{36}$"), timeout=15_000)  # type: ignore[attr-defined]
    assert "Preset “Harbour at night” saved" in page.inner_text("main")  # type: ignore[attr-defined]
    prompt = page.input_value("textarea[name='input-prompt']")  # type: ignore[attr-defined]
    assert prompt == "A harbour at night, long exposure"
    assert page.input_value("input[name='input-num_images']") == "2"  # type: ignore[attr-defined]
    screenshot(page, "launch-08-preset-saved")


def test_copy_as_curl_and_the_estimate_follow_the_form(live_site: LiveSite, page: object) -> None:
    open_launch_form(page, live_site)
    facts = ".launch-facts"  # "$0.15 per image · about $0.15 for this input"
    assert "about $0.15 for this input" in page.inner_text(facts)  # type: ignore[attr-defined]
    page.fill("textarea[name='input-prompt']", "A lighthouse in fog")  # type: ignore[attr-defined]
    # Text selectors, not wait_for_function: the page's CSP forbids evaluating strings.
    page.wait_for_selector("#launch-curl:has-text('A lighthouse in fog')", timeout=10_000)  # type: ignore[attr-defined]
    show_advanced(page, "input[name='input-num_images']")
    page.fill("input[name='input-num_images']", "3")  # type: ignore[attr-defined]
    page.wait_for_selector(".launch-facts:has-text('about $0.45 for this input')", timeout=10_000)  # type: ignore[attr-defined]
    curl = page.inner_text("#launch-curl")  # type: ignore[attr-defined]
    assert '"prompt": "A lighthouse in fog"' in curl and '"num_images": 3' in curl
    assert "$RUNFLOW_API_KEY" in curl
    screenshot(page, "launch-09-live-curl")


def test_a_retired_model_says_so_and_offers_no_launch(live_site: LiveSite, page: object) -> None:
    retired = "black-forest-labs/flux-1.1-pro"  # the sandbox lists it, marked retired
    open_models(page, live_site)
    assert page.locator(card(retired)).count() == 0  # type: ignore[attr-defined]  # browsing: offered only
    page.fill("#m-q", "FLUX1.1")  # type: ignore[attr-defined]  # a search also finds it
    page.wait_for_selector(card(retired))  # type: ignore[attr-defined]
    found = page.locator(card(retired))  # type: ignore[attr-defined]
    assert "Runflow no longer offers this model" in found.inner_text()
    assert found.locator("a:has-text('Launch')").count() == 0
    screenshot(page, "launch-10-retired-card")

    found.locator(".model-card__link").click()
    page.wait_for_selector("h1")  # type: ignore[attr-defined]
    assert "Runflow no longer offers this model" in page.inner_text("main")  # type: ignore[attr-defined]
    assert page.locator(".page-head a:has-text('Launch')").count() == 0  # type: ignore[attr-defined]
    assert page.locator(".page-head a:has-text('Batch')").count() == 0  # type: ignore[attr-defined]

    # Its launch form, opened by address: a notice, a Launch that cannot be pressed.
    page.goto(page.url.replace("/models/", "/launch/"))  # type: ignore[attr-defined]
    page.wait_for_selector("#launch-form")  # type: ignore[attr-defined]
    assert "Runflow no longer offers this model" in page.inner_text("#launch-unavailable")  # type: ignore[attr-defined]
    assert page.is_disabled("button[data-submit-once]")  # type: ignore[attr-defined]
    assert page.locator("a:has-text('Batch')").count() == 0  # type: ignore[attr-defined]
    screenshot(page, "launch-11-retired-form")
