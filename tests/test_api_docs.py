"""The API's documentation pages, /docs (Swagger UI) and /redoc, in Debian's Chromium against a
real ``uvicorn api.main:app``, with every request to another host refused: they must render the
operations from the files the service installs (a CDN is out of reach offline and on closed farm
networks, and would see every user)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import pytest

from core.config import Settings
from tests.fixtures_browser import PageErrors, screenshot
from tests.fixtures_service import Process, free_port, settings_env
from tests.waiting import answers, wait_until

pytestmark = [pytest.mark.browser, pytest.mark.slow]

RENDER_TIMEOUT_MS = 30_000  # the bundles are 1-1.5 MB of script each, parsed on a loaded machine


@pytest.fixture(scope="module")
def api_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("docs")
    settings = Settings(_env_file=None, storage_backend="local", data_dir=tmp / "data",  # type: ignore[call-arg]
                        log_format="text")
    port = free_port()
    api = Process("api", [sys.executable, "-m", "uvicorn", "api.main:app", "--host", "127.0.0.1",
                          "--port", str(port)], settings_env(settings), tmp / "api.log")
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: answers(f"{url}/health") or api.popen.poll() is not None, 60, "the API to answer /health")
        assert api.popen.poll() is None, f"API exited at start:\n{api.log()}"
        yield url
    finally:
        api.stop()


@dataclass
class OfflinePage:
    page: object
    refused: list[str] = field(default_factory=list)  # requests to any other host, refused


@pytest.fixture
def offline_page(browser, api_url: str) -> Iterator[OfflinePage]:
    """A page that reaches the API's own host only: any other request is refused and recorded."""
    context = browser.new_context(base_url=api_url, viewport={"width": 1280, "height": 900})
    own_host = urlsplit(api_url).netloc
    offline = OfflinePage(page=context.new_page())

    def only_own_host(route) -> None:
        if urlsplit(route.request.url).netloc == own_host:
            route.continue_()
        else:
            offline.refused.append(route.request.url)
            route.abort("internetdisconnected")

    context.route("**/*", only_own_host)
    errors = PageErrors()
    offline.page.on("pageerror", errors)  # type: ignore[attr-defined]
    yield offline
    context.close()
    assert not errors.errors, f"uncaught errors in the page: {errors.errors}"


def test_swagger_ui_renders_the_operations_offline(offline_page: OfflinePage) -> None:
    page = offline_page.page
    page.goto("/docs")  # type: ignore[attr-defined]
    operations = page.locator(".opblock")  # type: ignore[attr-defined]
    operations.first.wait_for(timeout=RENDER_TIMEOUT_MS)
    summaries = operations.locator(".opblock-summary-path").all_inner_texts()
    assert {"/jobs", "/streams", "/uploads", "/jobs/{job_id}"} <= {text.strip() for text in summaries}
    screenshot(page, "swagger-ui-offline")
    assert offline_page.refused == []  # nothing was even asked of another host


def test_redoc_renders_the_operations_offline(offline_page: OfflinePage) -> None:
    page = offline_page.page
    page.goto("/redoc")  # type: ignore[attr-defined]
    heading = page.get_by_role("heading", name="Start counting a live camera stream")  # type: ignore[attr-defined]
    heading.wait_for(timeout=RENDER_TIMEOUT_MS)
    screenshot(page, "redoc-offline")
    assert offline_page.refused == []
