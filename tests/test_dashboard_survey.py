"""A survey's stills on the dashboard, in a real browser (Chromium through Playwright) against a
real ``python -m allinone`` (tiny random model): the headline is the deduplicated total when
overlapping drone JPEGs could be placed on the ground, and the labelled per-image sum, with a
warning, when they could not.

The random model's boxes are reproducible only on identical pixels, so the overlapping stills are
two shots of the same ground from the same hovering position (100 % overlap): every animal the
model finds in one it finds in the other, at the same place on the ground.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import expect

from bench.survey.flight import Camera, plan_grid, render_shot, write_dji_jpeg
from tests.fixtures_browser import dashboard_page, screenshot, submit_images_as_one_job
from tests.fixtures_server import TENANT_KEYS, AllInOneServer

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ALLINONE_TENANT = "survey"  # read by the allinone_server fixture: one tenant of the shared server
API_KEY = TENANT_KEYS[ALLINONE_TENANT]
JOB_TIMEOUT_MS = 90_000
UI_TIMEOUT_MS = 10_000


@pytest.fixture
def page(browser, allinone_server: AllInOneServer) -> Iterator:
    with dashboard_page(browser, allinone_server, API_KEY) as page:
        yield page


def hovering_pair(folder: Path, **options) -> list[Path]:
    """Two DJI JPEGs of the same ground from the same place (``options``: write_dji_jpeg's)."""
    folder.mkdir(parents=True, exist_ok=True)
    flight = plan_grid(1, 1, 0.7, 0.7, seed=4, camera=Camera(width=640, height=480), herd=5, gps_sigma_m=0.0)
    shot = flight.shots[0]
    image = render_shot(flight, shot)
    return [write_dji_jpeg(folder / name, image, flight, shot, **options) for name in ("DJI_0001.JPG", "DJI_0002.JPG")]


def submit(page, allinone_server: AllInOneServer, files: list[Path]) -> dict:
    job_id = submit_images_as_one_job(page, files)
    assert allinone_server.wait_for_status(job_id, {"completed", "failed"}, JOB_TIMEOUT_MS / 1000)["status"] == "completed"
    page.goto(f"/#/jobs/{job_id}")
    expect(page.get_by_test_id("images-result")).to_be_visible(timeout=UI_TIMEOUT_MS)
    return allinone_server.client.get(f"/jobs/{job_id}/result").json()


def test_the_headline_is_the_deduplicated_total_of_two_overlapping_stills(page, allinone_server, tmp_path):
    stats = submit(page, allinone_server, hovering_pair(tmp_path / "placed"))
    counts = stats["counts"]
    assert stats["survey"]["placed"] == 2 and stats["survey"]["footprints_overlap"] is True
    assert counts["deduplicated"]["applied"] is True
    found = counts["per_image_sum"] // 2
    assert found >= 1, "the model found nothing: the test would prove little"
    assert counts["per_image_sum"] == 2 * found and counts["deduplicated"]["total"] == found
    expect(page.get_by_test_id("images-total")).to_have_text(f"{found:,}")
    expect(page.get_by_test_id("images-total-label")).to_have_text(
        "animals, each counted once (deduplicated on the ground)")
    expect(page.get_by_test_id("images-sum")).to_have_text(f"{2 * found:,}")  # beside it, smaller
    expect(page.get_by_test_id("images-overlap-warning")).to_be_hidden()
    screenshot(page, "images-survey-deduplicated")


def test_without_footprints_the_sum_is_labelled_and_the_overlap_warned_of(page, allinone_server, tmp_path):
    no_attitude = {"xmp": {name: None for name in ("GimbalYawDegree", "FlightYawDegree", "RelativeAltitude")}}
    stats = submit(page, allinone_server, hovering_pair(tmp_path / "unplaced", **no_attitude))
    counts = stats["counts"]
    assert counts["deduplicated"]["applied"] is False and counts["deduplicated"]["footprints_overlap"] is True
    expect(page.get_by_test_id("images-total")).to_have_text(f"{counts['per_image_sum']:,}")
    expect(page.get_by_test_id("images-total-label")).to_have_text("sum over images, overlap not removed")
    expect(page.get_by_test_id("images-sum-stat")).to_be_hidden()
    expect(page.get_by_test_id("images-overlap-warning")).to_be_visible()
    expect(page.get_by_test_id("images-overlap-warning")).to_contain_text("footprints overlap")
