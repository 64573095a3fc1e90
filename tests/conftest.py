"""Shared pytest set-up. Fixtures live in tests/fixtures_*.py, one file per area, listed here."""

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
