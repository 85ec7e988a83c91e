"""The report in a real browser: headless Chromium opens report.html from disk (no network), shows every image,
logs no error, and gives a full-page screenshot.

Needs the ``playwright`` Python package and a system Chromium (``apt-get install chromium``); no browser is
downloaded (``playwright install`` is not used). Skipped, with the reason, when either is missing.
"""

from __future__ import annotations

import shutil

import pytest

from graft.report import write_report
from tests.report.test_html import PNG_SIGNATURE, full_run  # noqa: F401  (full_run is a fixture)


@pytest.fixture
def chromium():
    """(playwright's sync API, the Chromium executable), or skip: checked before any run folder is built."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return sync_api, found
    pytest.skip("no Chromium executable on PATH (install it with: apt-get install -y chromium)")


def test_the_report_renders_in_headless_chromium(chromium, full_run, tmp_path):  # noqa: F811
    sync_api, executable = chromium
    report = write_report(full_run)
    messages, errors, requests = [], [], []
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"], headless=True)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.on("console", lambda message: messages.append((message.type, message.text)))
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.on("request", lambda request: requests.append(request.url))
            page.goto(report.as_uri(), wait_until="load")
            images = page.eval_on_selector_all(
                "img", "images => images.map(i => [i.complete, i.naturalWidth, i.getBoundingClientRect().width,"
                       " i.getBoundingClientRect().height, getComputedStyle(i).visibility, getComputedStyle(i).display])")
            sections = page.eval_on_selector_all("section", "nodes => nodes.map(n => n.id)")
            title = page.title()
            screenshot = tmp_path / "report.png"
            page.screenshot(path=str(screenshot), full_page=True)
        finally:
            browser.close()
    assert not errors, errors
    assert not [m for m in messages if m[0] == "error"], messages
    assert len(images) == 6
    for complete, natural_width, width, height, visibility, display in images:
        assert complete and natural_width > 0 and width > 0 and height > 0
        assert visibility == "visible" and display != "none"
    assert sections == ["plan", "measures", "advice", "comparison", "history", "metrics", "model_card"]
    assert title.startswith("graft report: run <b>")  # the escaped name reads back as plain text
    assert all(url.startswith(("file:", "data:")) for url in requests), requests
    data = screenshot.read_bytes()
    assert data.startswith(PNG_SIGNATURE) and len(data) > 50_000
