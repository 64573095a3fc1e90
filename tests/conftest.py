"""Shared pytest set-up. Fixtures live in tests/fixtures_*.py, one file per area, listed here.
Here too: the ``heavy`` mark for tests using the fixtures that make them so, and the scheduler
``make test`` runs under pytest-xdist (``--dist loadgroup``; which tests stay together and why:
tests/xdist_scopes.py)."""

from __future__ import annotations

import pytest

from tests.xdist_scopes import make_scheduler

pytest_plugins: list[str] = [
    "tests.fixtures_video",
    "tests.fixtures_browser",
    "tests.fixtures_storage",
    "tests.fixtures_service",
    "tests.fixtures_models",
    "tests.fixtures_server",
    "tests.fixtures_webhooks",
    "tests.fixtures_rtsp",
    "tests.fixtures_hls",
]

# What makes a test heavy wherever it is (marked so here, not test by test): real API and worker
# processes, each importing torch, or a live source's processes. `make test-fast` leaves them out.
HEAVY_FIXTURES = frozenset({"start_service", "shared_service", "allinone_server", "rtsp_server", "rtsp_server_factory",
                            "hls_stream", "hls_camera", "silent_server", "dead_segments_playlist",
                            "walk_server"})


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by mark
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if set(getattr(item, "fixturenames", ())) & HEAVY_FIXTURES:
            item.add_marker(pytest.mark.heavy)


@pytest.hookimpl(optionalhook=True)  # an xdist hook: pytest without xdist does not know it
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object | None:
    """``--dist loadgroup``: our groups (tests/xdist_scopes.py); other modes: xdist's own."""
    if config.getvalue("dist") != "loadgroup":
        return None
    return make_scheduler(config, log)
