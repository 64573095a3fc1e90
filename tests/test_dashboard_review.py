"""The dashboard's review panel in a real browser (Chromium through Playwright) against a real
``python -m allinone`` with an API key: a correction, the same review open in a second tab that
has not seen it (the API's 412 reloads it, nothing is lost), and undo. Screenshots at 1280 × 800
and 390 × 844 go to test-artifacts/screenshots/."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.fixtures_browser import SCREENSHOTS, dashboard_page
from tests.fixtures_server import TENANT_KEYS, AllInOneServer
from tests.fixtures_video import write_clip

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ALLINONE_TENANT = "review"  # read by the allinone_server fixture: one tenant of the shared server
API_KEY = TENANT_KEYS[ALLINONE_TENANT]
JOB_TIMEOUT_S = 90.0
UI_TIMEOUT_MS = 10_000


@pytest.fixture(scope="module")
def completed_job(allinone_server: AllInOneServer, tmp_path_factory: pytest.TempPathFactory) -> str:
    clip = write_clip(tmp_path_factory.mktemp("review") / "pasture.mp4", frames=20)
    with clip.open("rb") as handle:
        response = allinone_server.client.post("/jobs", files={"file": ("pasture.mp4", handle)},
                                               data={"tiling": "off"})
    assert response.status_code == 202, response.text
    job_id = response.json()["job_id"]
    assert allinone_server.wait_for_status(job_id, {"completed", "failed"}, JOB_TIMEOUT_S)["status"] == "completed"
    return job_id


@pytest.fixture
def two_tabs(browser, allinone_server: AllInOneServer) -> Iterator:
    with dashboard_page(browser, allinone_server, API_KEY) as first, \
            dashboard_page(browser, allinone_server, API_KEY) as second:
        yield first, second


def shot(page, name: str, width: int, height: int) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.set_viewport_size({"width": width, "height": height})
    card = page.get_by_test_id("review-card")
    card.scroll_into_view_if_needed()
    page.screenshot(path=str(Path(SCREENSHOTS) / f"{name}.png"))


def test_correct_in_one_tab_refused_in_a_stale_one_then_undo(two_tabs, allinone_server, completed_job):
    stats = allinone_server.client.get(f"/jobs/{completed_job}/result").json()
    assert len(stats["tracks"]) >= 2, "the clip must give two counted animals to review"
    total = stats["counts"]["total_unique"]
    first_track, second_track = stats["tracks"][0]["id"], stats["tracks"][1]["id"]
    tab_one, tab_two = two_tabs
    for tab in two_tabs:
        tab.goto(f"/#/jobs/{completed_job}")
        expect(tab.get_by_test_id("review-card")).to_be_visible(timeout=UI_TIMEOUT_MS)
        expect(tab.get_by_test_id("review-reviewed")).to_contain_text(str(total))

    tab_one.get_by_test_id("review-track").fill(str(first_track))
    tab_one.get_by_test_id("review-action").select_option("not_animal")
    tab_one.get_by_test_id("review-apply").click()
    expect(tab_one.get_by_test_id("review-correction")).to_have_count(1, timeout=UI_TIMEOUT_MS)
    expect(tab_one.get_by_test_id("review-reviewed")).to_contain_text(str(total - 1))
    expect(tab_one.get_by_test_id("review-automatic")).to_contain_text(str(total))
    shot(tab_one, "review", 1280, 800)
    shot(tab_one, "review-phone", 390, 844)

    # the second tab has not seen that correction: its change is refused and the review reloaded
    tab_two.get_by_test_id("review-track").fill(str(second_track))
    tab_two.get_by_test_id("review-action").select_option("not_animal")
    tab_two.get_by_test_id("review-apply").click()
    expect(tab_two.get_by_test_id("review-message")).to_contain_text("changed this review", timeout=UI_TIMEOUT_MS)
    expect(tab_two.get_by_test_id("review-correction")).to_have_count(1)
    review = allinone_server.client.get(f"/jobs/{completed_job}/review").json()
    assert [c["track"] for c in review["corrections"]] == [first_track]  # tab one's correction kept
    tab_two.get_by_test_id("review-apply").click()  # now from the review it has reloaded
    expect(tab_two.get_by_test_id("review-correction")).to_have_count(2, timeout=UI_TIMEOUT_MS)
    expect(tab_two.get_by_test_id("review-reviewed")).to_contain_text(str(total - 2))

    for undone in (1, 2):  # one by one, each from the review the previous undo returned
        tab_two.get_by_test_id("review-correction").locator("button").first.click()
        expect(tab_two.locator("[data-testid=review-correction].undone")).to_have_count(undone, timeout=UI_TIMEOUT_MS)
    expect(tab_two.get_by_test_id("review-reviewed")).to_contain_text(str(total))
    review = allinone_server.client.get(f"/jobs/{completed_job}/review").json()
    assert review["reviewed"] == review["automatic"]
    assert all(c["undone"] and c["by"] == ALLINONE_TENANT for c in review["corrections"])


def card_of(page, track: int):
    return page.locator(f"[data-testid=animal-card][data-track-id='{track}']")


def correct_from_card(page, track: int, action: str, *, into: int | None = None, class_name: str = "") -> None:
    card = card_of(page, track)
    card.get_by_test_id("card-action").select_option(action)
    if into is not None:
        card.get_by_test_id("card-into").fill(str(into))
    if class_name:
        card.get_by_test_id("card-class").select_option(class_name)
    card.get_by_test_id("card-apply").click()


def test_correct_from_the_gallery_cards_and_undo_from_a_card_and_the_panel(browser, allinone_server, completed_job):
    stats = allinone_server.client.get(f"/jobs/{completed_job}/result").json()
    total = stats["counts"]["total_unique"]
    first, second = stats["tracks"][0], stats["tracks"][1]
    with dashboard_page(browser, allinone_server, API_KEY) as page:
        page.goto(f"/#/jobs/{completed_job}")
        expect(card_of(page, first["id"]).get_by_test_id("card-action")).to_be_enabled(timeout=UI_TIMEOUT_MS)
        expect(page.get_by_test_id("count-reviewed-stat")).to_be_hidden()  # no correction stands yet
        expect(page.get_by_test_id("count-total-label")).to_have_text("animals")  # every class: not "objects"

        # not an animal: struck out, and the headline's reviewed count is one less than the automatic one
        correct_from_card(page, first["id"], "not_animal")
        expect(card_of(page, first["id"])).to_have_attribute("data-review", "not-animal", timeout=UI_TIMEOUT_MS)
        expect(card_of(page, first["id"]).get_by_test_id("card-state")).to_have_text("Not an animal")
        expect(page.get_by_test_id("count-reviewed")).to_have_text(str(total - 1))
        expect(page.get_by_test_id("count-total")).to_have_text(str(total))
        review = allinone_server.client.get(f"/jobs/{completed_job}/review").json()
        assert (review["corrections"][-1]["action"], review["corrections"][-1]["track"]) == ("not_animal", first["id"])
        assert review["reviewed"]["total_unique"] == total - 1
        gallery_shots(page)

        card_of(page, first["id"]).get_by_test_id("card-undo").click()
        expect(card_of(page, first["id"])).to_have_attribute("data-review", "counted", timeout=UI_TIMEOUT_MS)
        expect(page.get_by_test_id("count-reviewed-stat")).to_be_hidden()
        assert allinone_server.client.get(f"/jobs/{completed_job}/review").json()["reviewed"]["total_unique"] == total

        # same as #N from a card, undone from the panel
        correct_from_card(page, second["id"], "merge", into=first["id"])
        expect(card_of(page, second["id"]).get_by_test_id("card-state")).to_have_text(
            f"Same animal as #{first['id']}", timeout=UI_TIMEOUT_MS)
        expect(page.get_by_test_id("count-reviewed")).to_have_text(str(total - 1))
        page.locator("[data-testid=review-correction]:not(.undone) button").first.click()
        expect(card_of(page, second["id"])).to_have_attribute("data-review", "counted", timeout=UI_TIMEOUT_MS)

        # class is X: the card names its new class; the count stays
        other_class = next(name for name in ("sheep", "cow") if name != first["class"])
        correct_from_card(page, first["id"], "class", class_name=other_class)
        expect(card_of(page, first["id"]).get_by_test_id("card-state")).to_have_text(
            f"Class is {other_class}", timeout=UI_TIMEOUT_MS)
        expect(page.get_by_test_id("count-reviewed")).to_have_text(str(total))
        card_of(page, first["id"]).get_by_test_id("card-undo").click()
        expect(card_of(page, first["id"])).to_have_attribute("data-review", "counted", timeout=UI_TIMEOUT_MS)
    review = allinone_server.client.get(f"/jobs/{completed_job}/review").json()
    assert review["reviewed"] == review["automatic"]


def gallery_shots(page) -> None:
    """The gallery with a card marked, at a desktop's and a phone's size."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for name, width, height in (("gallery-review", 1280, 800), ("gallery-review-phone", 390, 844)):
        page.set_viewport_size({"width": width, "height": height})
        page.get_by_test_id("gallery-grid").scroll_into_view_if_needed()
        page.screenshot(path=str(Path(SCREENSHOTS) / f"{name}.png"))
    page.set_viewport_size({"width": 1280, "height": 800})
