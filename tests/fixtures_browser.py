"""Debian's Chromium through Playwright, for the dashboard's tests (test_dashboard*.py).

``browser`` is one module-scoped Chromium; ``open_context(browser, server, api_key)`` opens a
context on an all-in-one server with the API key already in the tab (as if typed into the key
prompt); ``PageErrors`` collects a page's uncaught exceptions (each one is a dashboard bug);
``dashboard_page(browser, server, api_key)`` is a page on the dashboard that fails the test on
any uncaught page error; ``screenshot(page, name)`` saves test-artifacts/screenshots/<name>.png.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from playwright.sync_api import sync_playwright

if TYPE_CHECKING:  # imported for real, it would load fixture modules before pytest registers them
    from tests.fixtures_server import AllInOneServer

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync"]
SCREENSHOTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "screenshots"
KEY_STORAGE = "cattlecounter.apiKey"  # sessionStorage name used by api/static/js/auth.js


@pytest.fixture(scope="module")
def browser() -> Iterator:
    if not CHROMIUM.exists():
        message = f"{CHROMIUM} is missing: install Debian's chromium (make browser) for the dashboard tests"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                              args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


class PageErrors:
    """Uncaught exceptions in the page's scripts: any one of them is a bug in the dashboard."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def __call__(self, error) -> None:
        self.errors.append(str(error))


def open_context(browser, server: AllInOneServer, api_key: str | None, **options):
    context = browser.new_context(base_url=server.url, viewport={"width": 1280, "height": 900}, **options)
    if api_key:  # as if the user had typed it into the key prompt earlier in this tab
        context.add_init_script(f"sessionStorage.setItem({KEY_STORAGE!r}, {api_key!r})")
    return context


def screenshot(page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


@contextmanager
def dashboard_page(browser, server: AllInOneServer, api_key: str | None) -> Iterator:
    """A page on the dashboard, the API key in sessionStorage; any uncaught page error fails the test."""
    context = open_context(browser, server, api_key)
    page = context.new_page()
    errors = PageErrors()
    page.on("pageerror", errors)
    page.goto("/")
    yield page
    context.close()
    assert not errors.errors, f"uncaught errors in the dashboard: {errors.errors}"


def submit_images_as_one_job(page, files: list[Path]) -> str:
    """Choose ``files`` in the dashboard's form, submit them as one images job at threshold
    0.01, and return its id once the upload is done."""
    from playwright.sync_api import expect

    page.get_by_test_id("file-input").set_input_files(files)
    expect(page.get_by_test_id("submit-button")).to_contain_text(f"{len(files)} images as one job")
    page.get_by_label("Confidence threshold").fill("0.01")
    page.get_by_test_id("submit-button").click()
    done = page.locator("[data-testid=upload-item][data-state=done]")
    expect(done).to_have_count(1, timeout=60_000)
    return done.get_attribute("data-job-id")
