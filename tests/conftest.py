"""Shared pytest set-up. Fixtures live in tests/fixtures_*.py, one file per area, listed here.

Under pytest-xdist (``make test``: ``-n 3 --dist loadgroup``) every worker is its own pytest
session: session fixtures run once per worker, each in its own temp directory, and every server
a fixture starts (Azurite, RTSP, HLS, uvicorn, the all-in-one) binds a free port. So any test can
run on any worker; the groups below only keep what is expensive or timing-sensitive together.
"""

from __future__ import annotations

import pytest

pytest_plugins: list[str] = [
    "tests.fixtures_video",
    "tests.fixtures_browser",
    "tests.fixtures_storage",
    "tests.fixtures_service",
    "tests.fixtures_models",
    "tests.fixtures_server",
    "tests.fixtures_webhooks",
    "tests.fixtures_rtsp",
]

# Module-scoped fixtures that start a server (and Chromium): a module using one keeps its tests
# on one worker, so the server starts once rather than once per worker (a module whose server
# fixture has another name marks itself: `pytestmark = pytest.mark.xdist_group(...)`).
MODULE_SERVERS = frozenset({"allinone_server", "browser"})
# Live sources paced in real time: run one at a time, so that two streams (each an encoder, a
# decoder and a detector) do not starve each other of the CPU their assertions time.
LIVE_SOURCES = frozenset({"rtsp_server", "rtsp_server_factory", "hls_stream", "walk_server"})
LIVE_MODULES = frozenset({"test_live_engine", "test_live_source"})
# What makes a test heavy wherever it is (marked so here, not test by test): real API and worker
# processes, each importing torch, or a live source's processes. `make test-fast` leaves them out.
HEAVY_FIXTURES = LIVE_SOURCES | {"start_service", "allinone_server"}


def xdist_group(item: pytest.Item) -> str | None:
    """The group an item runs in under ``--dist loadgroup`` (None: any worker, test by test)."""
    module = item.module.__name__.rsplit(".", 1)[-1] if isinstance(item, pytest.Function) else ""
    fixtures = set(getattr(item, "fixturenames", ()))
    if fixtures & MODULE_SERVERS:
        return module
    if item.get_closest_marker("azurite"):
        return "azurite"  # one Azurite for them all (the session fixture starts one per worker)
    if fixtures & LIVE_SOURCES or module in LIVE_MODULES:
        return "live"
    return None


# first: before `-m` deselects by mark and before xdist reads the marks to name the groups
@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if set(getattr(item, "fixturenames", ())) & HEAVY_FIXTURES:
            item.add_marker(pytest.mark.heavy)
        group = xdist_group(item)
        if group and item.get_closest_marker("xdist_group") is None:
            item.add_marker(pytest.mark.xdist_group(group))
