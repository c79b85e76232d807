"""The demo page in a real browser: Debian's Chromium, headless, driven by Playwright, against the app served on
127.0.0.1. It opens the page, uploads photos (and a text file, a broken JPEG, a 10000x1 strip), moves the budget slider, clicks a region, and
checks the rendered images, the token counts, that the boundary model ran once per image, and that the page
asked nothing of any other host.

A screenshot is saved under the test's ``tmp_path``, and also into ``$SUBOBJECT_VLM_SCREENSHOT_DIR`` when set
(``SUBOBJECT_VLM_SCREENSHOT_DIR=docs pytest tests/test_demo_browser.py`` refreshes the README's picture).
Skips only where no Chromium is installed (``.ci/run`` installs it).
"""

import os
import re
import shutil
import socket
import time
from pathlib import Path

import numpy as np
import pytest

from subobject_vlm.segmentation.settings import DEFAULT_MAX_TOKENS

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
IMAGE_IDS = ("boundary-map", "ours-overlay", "ours-mean-colour", "patch", "slic", "felzenszwalb")


def find_chromium() -> str | None:
    for candidate in ("/usr/bin/chromium", shutil.which("chromium"), shutil.which("chromium-browser")):
        if candidate and Path(candidate).is_file():
            return candidate
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture()
def served_demo():
    """The demo on a free 127.0.0.1 port, in this process, and its segmenter (whose model runs are counted)."""
    from subobject_vlm.demo import build_demo, demo_segmenter

    segmenter = demo_segmenter()
    demo = build_demo(segmenter=segmenter)
    _, url, _ = demo.launch(
        server_name="127.0.0.1",
        server_port=free_port(),
        prevent_thread_lock=True,
        ssr_mode=False,
        quiet=True,
        show_error=True,
    )
    yield url, segmenter
    demo.close()


def rendered_sources(page) -> dict[str, str]:
    """``elem_id -> img src`` of the result images, each checked to be decoded with a real size."""
    sources = {}
    for elem_id in IMAGE_IDS:
        image = page.locator(f"#{elem_id} img").first
        size = image.evaluate("img => img.complete ? [img.naturalWidth, img.naturalHeight] : [0, 0]")
        assert min(size) > 0, f"{elem_id}: image not rendered"
        sources[elem_id] = image.get_attribute("src")
    return sources


def token_count(page, elem_id: str) -> int:
    """The token count in an image's caption (``"SLIC · 24 tokens"``)."""
    caption = page.locator(f"#{elem_id}").inner_text()
    match = re.search(r"(\d+) tokens", caption)
    assert match, f"{elem_id}: no token count in {caption!r}"
    return int(match.group(1))


def upload(page, path: Path) -> None:
    """Choose ``path`` in the photo box, clearing the file it holds first (the page opens on an example)."""
    chooser = page.locator("#photo input[type=file]")
    if not chooser.count():
        page.locator("#photo button[aria-label='Clear']").first.click()
    chooser.set_input_files(str(path))


def test_the_page_tokenizes_an_uploaded_photo_and_the_slider_reuses_the_boundary_map(served_demo, tmp_path):
    chromium = find_chromium()
    if chromium is None:
        pytest.skip(
            "Chromium not found (apt-get install chromium); the browser test drives the system browser"
        )
    from PIL import Image
    from playwright.sync_api import expect, sync_playwright
    from skimage import data

    url, segmenter = served_demo
    photo, broken, strip = tmp_path / "coffee.jpg", tmp_path / "broken.jpg", tmp_path / "strip.png"
    Image.fromarray(data.coffee()).save(photo, quality=90)  # 600x400
    broken.write_bytes(b"this is not a JPEG")
    notes = tmp_path / "notes.txt"
    notes.write_text("not a photo")
    Image.new("RGB", (10000, 1), (200, 120, 40)).save(strip)
    ground_truth = tmp_path / "coffee_gt.npy"
    np.save(
        ground_truth, (np.arange(400)[:, None] // 200) * 2 + (np.arange(600)[None, :] // 300)
    )  # quadrants
    start = time.perf_counter()
    requested = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),  # a fresh profile
            executable_path=chromium,
            args=CHROMIUM_ARGS,
            headless=True,
            viewport={"width": 1400, "height": 1000},
        )
        try:
            page = browser.new_page()
            page.on("request", lambda request: requested.append(request.url))
            page.set_default_timeout(60_000)
            expect.set_options(timeout=60_000)  # a loaded 2-core machine runs the model in seconds
            page.goto(url)
            # the page opens on the first example, tokenized
            expect(page.locator("#status")).to_contain_text("astronaut.jpg", timeout=90_000)
            print(f"page open and first example tokenized: {time.perf_counter() - start:.1f} s")

            upload(page, photo)
            expect(page.locator("#status")).to_contain_text("coffee.jpg · 600×400 px · boundary model")
            count = token_count(page, "ours-overlay")
            assert 8 <= count <= DEFAULT_MAX_TOKENS  # the default budget caps it
            for elem_id in ("patch", "slic", "felzenszwalb"):  # the baselines at our count
                expect(page.locator(f"#{elem_id}")).to_contain_text(f" {count} tokens")
            before = rendered_sources(page)
            runs = segmenter.model_runs
            lap = time.perf_counter()

            # move the budget slider: new label maps, the boundary map from the cache
            budget = max(2, count // 2)  # fewer tokens than shown: every picture must change
            page.locator("#budget input[type=range]").fill(str(budget))
            expect(page.locator("#ours-overlay")).not_to_contain_text(f" {count} tokens")  # ours first
            print(f"slider: ours shown after {time.perf_counter() - lap:.2f} s")
            expect(page.locator("#status")).to_contain_text("reused from the cache")
            expect(page.locator("#budget input[type=number]")).to_have_value(str(budget))
            count = token_count(page, "ours-overlay")
            assert count <= budget
            for elem_id in ("ours-mean-colour", "patch", "slic", "felzenszwalb"):
                expect(page.locator(f"#{elem_id}")).to_contain_text(f" {count} tokens")
            expect(page.locator("#summary")).to_contain_text("Felzenszwalb")
            after = rendered_sources(page)
            print(f"slider: every tokenizer shown after {time.perf_counter() - lap:.2f} s")
            assert after["ours-overlay"] != before["ours-overlay"] and after["slic"] != before["slic"]
            assert (
                segmenter.model_runs == runs == 2
            )  # the example and the photo: once each, not per slider move

            # click a region of ours: its token index, area and box
            shown = page.locator("#ours-overlay img").first
            box = shown.bounding_box()
            shown.click(position={"x": box["width"] * 0.45, "y": box["height"] * 0.3})  # the cup
            expect(page.locator("#region-info")).to_contain_text("ours: token")
            expect(page.locator("#region-info")).to_contain_text(" px (")
            for name in ("coffee_labels.png", "coffee_labels.npy", "coffee_subobjects.png"):
                expect(page.locator(f'#downloads a[download="{name}"]')).to_have_count(1)
            with page.expect_download() as download:  # the label map as a user gets it
                page.locator('#downloads a[download="coffee_labels.png"]').click()
            download.value.save_as(tmp_path / "labels.png")
            with Image.open(tmp_path / "labels.png") as labels:
                assert labels.mode.startswith("I") and labels.size == (600, 400)
                assert np.asarray(labels).max() + 1 == count
            page.screenshot(path=str(tmp_path / "demo.png"), full_page=True)
            folder = os.environ.get("SUBOBJECT_VLM_SCREENSHOT_DIR")
            if folder:  # the README's picture
                Path(folder).mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(Path(folder) / "demo.jpg"), full_page=True, type="jpeg", quality=85)

            # a ground truth: every tokenizer captioned with its boundary recall
            page.locator("#ground-truth input[type=file]").set_input_files(str(ground_truth))
            for elem_id in ("ours-overlay", "patch", "slic", "felzenszwalb"):
                expect(page.locator(f"#{elem_id}")).to_contain_text(" · recall ")
            expect(page.locator("#summary")).to_contain_text("boundary recall")

            # bad files: a clear message in the page each time, and the app keeps serving
            upload(page, notes)  # refused by the file box itself
            expect(page.get_by_text("Invalid file type: notes.txt").first).to_be_visible()
            upload(page, broken)
            expect(page.locator("#status")).to_contain_text("broken.jpg: not an image file Pillow can read")
            upload(page, strip)
            expect(page.locator("#status")).to_contain_text("strip.png: the image is 10000×1 px")
            page.screenshot(path=str(tmp_path / "demo_bad_input.png"), full_page=True)
            upload(page, photo)
            expect(page.locator("#status")).to_contain_text("coffee.jpg · 600×400 px · boundary map")
            assert segmenter.model_runs == 2
        finally:
            browser.close()
    hosts = {request.split("/")[2] for request in requested if request.startswith("http")}
    assert hosts == {url.split("/")[2]}, f"the page reached other hosts: {hosts}"
    print(f"browser test: {time.perf_counter() - start:.1f} s")
