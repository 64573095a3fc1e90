"""The counted animals' gallery in a real browser (Debian's Chromium through Playwright) against
a real ``python -m allinone`` (API + worker, local backend, tiny random model): one card per
counted animal, and a card, a row of the tracks table and the chart each take the video to
where they point, the animal's box outlined over the picture. Screenshots at a desktop's
1280x800 and a phone's 390x844 go to test-artifacts/screenshots/.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from playwright.sync_api import expect

from tests.fixtures_browser import SCREENSHOTS, dashboard_page, screenshot
from tests.fixtures_server import TENANT_KEYS, AllInOneServer
from tests.fixtures_video import write_clip

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ALLINONE_TENANT = "gallery"  # read by the allinone_server fixture: one tenant of the shared server
API_KEY = TENANT_KEYS[ALLINONE_TENANT]
JOB_TIMEOUT_S = 90  # the tiny model on 2 busy CPU cores; the job takes a few seconds
UI_TIMEOUT_MS = 10_000
SEEK_TOLERANCE_S = 0.05  # a frame is 0.1 s: the video must land on the frame asked for


@pytest.fixture(scope="module")
def counted_job(allinone_server: AllInOneServer, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A completed job that counted animals (the tiny random model, at a low threshold), with its
    stats.json and gallery.json."""
    clip = write_clip(tmp_path_factory.mktemp("gallery-clip") / "herd.mp4", frames=40)
    with clip.open("rb") as handle:
        response = allinone_server.client.post("/jobs", files={"file": ("herd.mp4", handle)},
                                               data={"threshold": "0.05", "tiling": "off"})
    assert response.status_code == 202, response.text
    job_id = response.json()["job_id"]
    assert allinone_server.wait_for_status(job_id, {"completed", "failed"}, JOB_TIMEOUT_S)["status"] == "completed"
    stats = allinone_server.client.get(f"/jobs/{job_id}/result").json()
    gallery = allinone_server.client.get(f"/jobs/{job_id}/gallery").json()
    assert stats["counts"]["total_unique"] >= 2, "too few animals counted: the test would prove little"
    return {"id": job_id, "stats": stats, "gallery": gallery}


@pytest.fixture
def page(browser, allinone_server: AllInOneServer) -> Iterator:
    with dashboard_page(browser, allinone_server, API_KEY) as page:
        yield page


def open_job(page, job_id: str) -> None:
    page.goto(f"/#/jobs/{job_id}")
    expect(page.get_by_test_id("gallery-grid")).to_be_visible(timeout=UI_TIMEOUT_MS)
    page.wait_for_function("document.querySelector('[data-testid=result-video]').readyState >= 1",
                           timeout=UI_TIMEOUT_MS)


def move_video_to_the_end(page) -> None:
    """So that a seek to any sighting is a real move."""
    page.evaluate("() => { const v = document.querySelector('[data-testid=result-video]');"
                  " v.currentTime = v.duration; }")
    page.wait_for_function("(() => { const v = document.querySelector('[data-testid=result-video]');"
                           " return !v.seeking && v.currentTime > v.duration - 0.2; })()", timeout=UI_TIMEOUT_MS)


def wait_for_video_at(page, time_s: float) -> None:
    page.wait_for_function(
        "([t, tolerance]) => { const v = document.querySelector('[data-testid=result-video]');"
        " return !v.seeking && Math.abs(v.currentTime - t) < tolerance; }",
        arg=[time_s, SEEK_TOLERANCE_S], timeout=UI_TIMEOUT_MS)


def wait_for_every_picture(page) -> None:
    """Each card's picture decoded: the cards are scrolled into view in turn (the pictures load lazily)."""
    for card in page.get_by_test_id("animal-card").all():
        card.scroll_into_view_if_needed()
    page.wait_for_function("[...document.querySelectorAll('[data-testid=animal-card] img')]"
                           ".every((img) => img.complete && img.naturalWidth > 0)", timeout=UI_TIMEOUT_MS)


def test_the_grid_shows_one_card_per_counted_animal(page, counted_job):
    open_job(page, counted_job["id"])
    cards = page.get_by_test_id("animal-card")
    items = counted_job["gallery"]["items"]
    expect(cards).to_have_count(counted_job["stats"]["counts"]["total_unique"])
    assert [int(card.get_attribute("data-track-id")) for card in cards.all()] == [item["id"] for item in items]
    first = cards.first
    expect(first).to_contain_text(f"#{items[0]['id']}")
    expect(first).to_contain_text(items[0]["class"])
    # every picture loads (lazily, as it comes into view), through its signed link
    wait_for_every_picture(page)
    sources = page.eval_on_selector_all("[data-testid=animal-card] img", "imgs => imgs.map((i) => i.src)")
    assert all("sig=" in src and API_KEY not in src for src in sources)
    zip_link = page.get_by_test_id("download-gallery-zip")
    expect(zip_link).to_be_visible()
    assert "/gallery.zip?" in zip_link.get_attribute("href")


def test_a_card_seeks_the_video_to_the_first_sighting_with_its_box_outlined(page, counted_job):
    open_job(page, counted_job["id"])
    item = max(counted_job["gallery"]["items"], key=lambda i: i["first_time_s"])  # the latest first sighting
    move_video_to_the_end(page)
    page.locator(f'[data-testid=animal-card][data-track-id="{item["id"]}"] .animal-button').click()
    wait_for_video_at(page, item["first_time_s"])
    highlight = page.get_by_test_id("video-highlight")
    expect(highlight).to_be_visible()
    expect(highlight).to_have_text(f"#{item['id']} {item['class']}")
    # the outline sits where the box is on the picture as shown (scaled from the source's pixels)
    video_box = page.get_by_test_id("result-video").bounding_box()
    shown = highlight.bounding_box()
    scale = video_box["width"] / counted_job["gallery"]["video"]["width"]
    x1, y1, x2, y2 = item["first_box"]
    assert abs(shown["x"] - (video_box["x"] + x1 * scale)) < 2
    assert abs(shown["y"] - (video_box["y"] + y1 * scale)) < 2
    assert abs(shown["width"] - (x2 - x1) * scale) < 2
    page.evaluate("document.querySelector('[data-testid=result-video]').play().catch(() => {})")
    expect(highlight).to_be_hidden()  # playing on: the outline belongs to that frame only


def test_a_track_row_and_the_chart_seek_the_video(page, counted_job):
    open_job(page, counted_job["id"])
    track = max(counted_job["stats"]["tracks"], key=lambda t: t["first_time_s"])
    move_video_to_the_end(page)
    page.locator(f'#track-body tr[data-track-id="{track["id"]}"]').click()
    wait_for_video_at(page, track["first_time_s"])
    expect(page.get_by_test_id("video-highlight")).to_be_visible()

    move_video_to_the_end(page)
    chart = page.locator("[data-testid=count-chart] svg")
    plot = chart.evaluate("svg => ({left: +svg.dataset.plotLeft, right: +svg.dataset.plotRight,"
                          " maxTime: +svg.dataset.maxTime, width: svg.viewBox.baseVal.width})")
    box = chart.bounding_box()
    middle = (plot["left"] + plot["right"]) / 2  # in the chart's own units: half its time span
    chart.click(position={"x": middle * box["width"] / plot["width"], "y": box["height"] / 2})
    wait_for_video_at(page, plot["maxTime"] / 2)


@pytest.mark.parametrize(("name", "viewport"), [("gallery", {"width": 1280, "height": 800}),
                                                 ("gallery-phone", {"width": 390, "height": 844})])
def test_gallery_screenshots(page, counted_job, name, viewport):
    page.set_viewport_size(viewport)
    open_job(page, counted_job["id"])
    wait_for_every_picture(page)
    item = max(counted_job["gallery"]["items"], key=lambda i: i["first_time_s"])
    page.locator(f'[data-testid=animal-card][data-track-id="{item["id"]}"] .animal-button').click()
    wait_for_video_at(page, item["first_time_s"])
    page.screenshot(path=str(SCREENSHOTS / f"{name}-seek.png"))  # the viewport: the outlined animal
    screenshot(page, name)  # the whole page, the grid included


CARD_BOXES_JS = """() => {
  const place = (el) => { const r = el.getBoundingClientRect();
    return [r.left + window.scrollX, r.top + window.scrollY, r.width, r.height].map((v) => Math.round(v * 10) / 10); };
  const cards = [...document.querySelectorAll('[data-testid=animal-card]')].map(place);
  const after = document.getElementById('gallery-card').nextElementSibling;
  return {cards, after: after ? place(after) : null};
}"""


@pytest.mark.parametrize("viewport", [{"width": 1280, "height": 800}, {"width": 390, "height": 844}],
                         ids=["desktop", "phone"])
def test_the_cards_do_not_move_when_their_pictures_load(page, counted_job, viewport):
    """Each card keeps its picture's box before the JPEG arrives: with the pictures held back,
    then let through, no card moves or changes size, nor does what follows the grid."""
    page.set_viewport_size(viewport)
    held: list = []
    holding = [True]
    # the pictures wait until let through
    page.route("**/crops/*", lambda route: held.append(route) if holding[0] else route.continue_())
    open_job(page, counted_job["id"])
    expect(page.get_by_test_id("animal-card")).to_have_count(counted_job["stats"]["counts"]["total_unique"])
    page.get_by_test_id("gallery-grid").scroll_into_view_if_needed()
    deadline = time.monotonic() + UI_TIMEOUT_MS / 1000
    while not held and time.monotonic() < deadline:  # the pictures in view have been asked for
        page.wait_for_timeout(50)
    assert held, "no picture was asked for"
    assert page.eval_on_selector_all("[data-testid=animal-card] img", "imgs => imgs.every((i) => !i.naturalWidth)")
    before = page.evaluate(CARD_BOXES_JS)
    holding[0] = False
    for route in held:
        route.continue_()
    wait_for_every_picture(page)
    assert page.evaluate(CARD_BOXES_JS) == before
