"""The dashboard in a real browser (Debian's Chromium through Playwright) against a real
``python -m allinone`` (API + worker, local backend, tiny random model).

The server runs with an API key, so every test also exercises the key: the page sends it as
X-API-Key, and the video and download links are signed URLs that never carry the key. Screenshots of the main states
go to test-artifacts/screenshots/.
"""

from __future__ import annotations

import base64
import json
import struct
import time
from collections.abc import Iterator
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from urllib.parse import unquote

import httpx
import pytest
from playwright.sync_api import expect

from ml_engine.tiny_model import DEFAULT_LABELS as TINY_MODEL_CLASSES
from tests.fixtures_browser import (
    KEY_STORAGE,
    SCREENSHOTS,
    PageErrors,
    dashboard_page,
    open_context,
    screenshot,
    submit_images_as_one_job,
)
from tests.fixtures_server import TENANT_KEYS, AllInOneServer, launch_allinone
from tests.fixtures_telemetry import dji_srt
from tests.fixtures_video import write_clip, write_truncated_midstream
from tests.waiting import wait_until

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ALLINONE_TENANT = "dashboard"  # read by the allinone_server fixture: one tenant of the shared server
API_KEY = TENANT_KEYS[ALLINONE_TENANT]

DIRECT_UPLOAD_BYTES = 32 * 1024 * 1024  # api/static/js/api.js: files this big go through POST /uploads
JOB_TIMEOUT_MS = 90_000  # the tiny model on 2 busy CPU cores; jobs here take a few seconds
UI_TIMEOUT_MS = 10_000
STATUS_RANK = {"queued": 0, "processing": 1, "cancelling": 1, "completed": 2, "failed": 2, "cancelled": 2}


# --- browser (the browser fixture is tests/fixtures_browser.py's) ----------------------------------


@pytest.fixture
def page(browser, allinone_server: AllInOneServer) -> Iterator:
    """A page on the dashboard, holding the API key in sessionStorage."""
    with dashboard_page(browser, allinone_server, API_KEY) as page:
        yield page


# --- clips ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("dashboard-clips")
    long_clip = write_clip(folder / "long-pasture.mp4", frames=600)  # 60 s: long enough to cancel mid-job
    return {
        "small": write_clip(folder / "pasture.mp4", frames=20),
        "big": write_padded_clip(folder / "big-pasture.mp4", DIRECT_UPLOAD_BYTES + 1024),
        "long": long_clip,
        "damaged": write_truncated_midstream(folder / "damaged.mp4"),
    }


def write_padded_clip(path: Path, min_bytes: int) -> Path:
    """A real 2 s clip followed by a 'free' atom (padding every MP4 reader skips) to reach
    ``min_bytes``: big enough for the direct-upload path, quick to process."""
    write_clip(path, frames=20)
    padding = min_bytes - path.stat().st_size
    with path.open("ab") as handle:
        handle.write(struct.pack(">I4s", padding, b"free"))
        remaining = padding - 8
        while remaining > 0:
            chunk = min(remaining, 1 << 20)
            handle.write(b"\0" * chunk)
            remaining -= chunk
    return path


# --- page helpers --------------------------------------------------------------------------------


def job_row(page, job_id: str):
    return page.locator(f'[data-testid=job-row][data-job-id="{job_id}"]')


def record_status_changes(page) -> None:
    """Record every status a job row shows, in order, in window.__statusLog ([[id, status], ...])."""
    page.evaluate("""() => {
        window.__statusLog = [];
        const list = document.querySelector('[data-testid=job-list]');
        const seen = new Map();
        const record = () => {
            for (const row of list.querySelectorAll('[data-testid=job-row]')) {
                const status = row.querySelector('[data-testid=job-status]').textContent;
                if (status && seen.get(row.dataset.jobId) !== status) {
                    seen.set(row.dataset.jobId, status);
                    window.__statusLog.push([row.dataset.jobId, status]);
                }
            }
        };
        new MutationObserver(record).observe(list, {subtree: true, childList: true, characterData: true});
    }""")


def statuses_seen(page, job_id: str) -> list[str]:
    return [status for seen_id, status in page.evaluate("window.__statusLog") if seen_id == job_id]


def uploaded_job_ids(page, count: int) -> dict[str, str]:
    """Filename -> job id of the page's finished uploads, once ``count`` of them are done."""
    done = page.locator("[data-testid=upload-item][data-state=done]")
    expect(done).to_have_count(count, timeout=30_000)
    return {item.locator(".file-name").text_content(): item.get_attribute("data-job-id")
            for item in done.all()}


def text_of(page, test_id: str) -> str:
    return page.get_by_test_id(test_id).text_content().strip()


# --- tests ------------------------------------------------------------------------------------------


def test_upload_watch_progress_and_open_the_result(page, allinone_server, clips):
    """The main journey: choose two videos (one big enough for the direct-upload path), set a
    counting line, cancel the queued one, watch the other complete and open it: the video plays
    and the numbers shown are stats.json's."""
    put_requests: list[str] = []
    page.on("request", lambda request: request.method == "PUT" and put_requests.append(request.url))
    urls: list[str] = []
    page.on("request", lambda request: urls.append(request.url))
    record_status_changes(page)

    page.get_by_test_id("file-input").set_input_files([clips["small"], clips["big"]])
    expect(page.get_by_test_id("selected-file")).to_have_count(2)
    page.get_by_label("Counting line").fill("0,120,320,120")
    page.get_by_label("Confidence threshold").fill("0.5")
    screenshot(page, "upload-form")
    page.get_by_test_id("submit-button").click()

    jobs = uploaded_job_ids(page, 2)
    assert set(jobs) == {"pasture.mp4", "big-pasture.mp4"}
    assert len(put_requests) == 1 and "/uploads/" in put_requests[0], put_requests  # only the big one
    for bar in page.locator("[data-testid=upload-item] [data-testid=upload-progress]").all():
        expect(bar).to_have_js_property("value", 1)
    big = allinone_server.job(jobs["big-pasture.mp4"])
    assert big["size_bytes"] == clips["big"].stat().st_size
    assert big["params"]["lines"][0]["start"] == [0.0, 120.0]

    # the big one waits behind the small one: cancel it there (processing it would only repeat the small one)
    big_row = job_row(page, jobs["big-pasture.mp4"])
    big_row.get_by_test_id("job-cancel").click()
    expect(big_row.get_by_test_id("job-status")).to_have_text("cancelled", timeout=JOB_TIMEOUT_MS)
    assert allinone_server.job(jobs["big-pasture.mp4"])["status"] == "cancelled"

    small_id = jobs["pasture.mp4"]
    row = job_row(page, small_id)
    expect(row.get_by_test_id("job-status")).to_have_text("completed", timeout=JOB_TIMEOUT_MS)
    expect(row.get_by_test_id("job-progress")).to_have_js_property("value", 1)
    expect(row.get_by_test_id("job-progress-text")).to_have_text("100 %")
    seen = statuses_seen(page, small_id)
    assert seen[-1] == "completed" and seen == sorted(seen, key=STATUS_RANK.__getitem__), seen

    stats = allinone_server.client.get(f"/jobs/{small_id}/result").json()
    expect(row.get_by_test_id("job-counts")).to_contain_text(f"{stats['counts']['total_unique']} unique")

    row.get_by_test_id("job-open").click()
    expect(page.get_by_test_id("result")).to_be_visible(timeout=UI_TIMEOUT_MS)
    check_result_view(page, stats)
    check_video_plays(page, stats)
    check_downloads(page, allinone_server)
    assert any("sig=" in url for url in urls)  # the video came through a signed link
    assert not [url for url in urls if API_KEY in url or "api_key" in url], "the key must never be in a URL"
    screenshot(page, "job-detail")
    page.set_viewport_size({"width": 390, "height": 844})
    screenshot(page, "job-detail-phone")


def check_result_view(page, stats: dict) -> None:
    counts = stats["counts"]
    assert text_of(page, "count-total") == str(counts["total_unique"])
    assert text_of(page, "count-peak") == str(counts["peak"]["count"])
    for name, unique in counts["by_class"].items():
        class_row = page.get_by_test_id("count-by-class").locator("tr", has_text=name)
        expect(class_row).to_contain_text(str(unique))
    line = stats["lines"][0]
    expect(page.get_by_test_id("line-counts").locator("tbody td")).to_have_text(
        [line["name"], str(line["in_total"]), str(line["out_total"])])
    # the test model's counts must never pass for real ones
    assert stats["model"]["random_weights"] is True
    expect(page.get_by_test_id("random-weights-banner")).to_be_visible()
    expect(page.get_by_test_id("random-weights-banner")).to_contain_text("not real detections")
    chart = page.get_by_test_id("count-chart").locator("svg")
    expect(chart).to_be_visible()
    assert chart.locator("path.chart-line").get_attribute("d").count("L") == len(stats["timeline"]) - 1
    track_rows = page.get_by_test_id("track-table").locator("tbody tr")
    expect(track_rows).to_have_count(min(len(stats["tracks"]), 500))  # the page shows at most 500


def check_video_plays(page, stats: dict) -> None:
    """Debian's Chromium decodes H.264 (proprietary codecs are enabled in its build), so the
    annotated video must buffer and play, and its duration must match stats.json."""
    video = page.get_by_test_id("result-video")
    can_play_h264 = video.evaluate("""v => v.canPlayType('video/mp4; codecs="avc1.42E01E"')""")
    assert can_play_h264 in ("probably", "maybe")
    page.wait_for_function(
        "() => document.querySelector('[data-testid=result-video]').readyState >= 3", timeout=UI_TIMEOUT_MS)
    duration = video.evaluate("v => v.duration")
    assert duration == pytest.approx(stats["video"]["duration_s"], abs=0.15)
    video.evaluate("v => { v.muted = true; return v.play(); }")  # muted: allowed without a user gesture
    page.wait_for_function(
        "() => document.querySelector('[data-testid=result-video]').currentTime > 0.3", timeout=UI_TIMEOUT_MS)
    video.evaluate("v => v.pause()")
    # seekable: the server answers Range requests, so the browser can jump anywhere
    seekable_end = video.evaluate("v => v.seekable.length ? v.seekable.end(0) : 0")
    assert seekable_end == pytest.approx(duration, abs=0.15)
    assert page.get_by_test_id("video-note").is_hidden()


def check_downloads(page, server: AllInOneServer) -> None:
    """Each link works on its own (no header, no key: the URL is signed) and is an attachment."""
    expected_types = {
        "download-stats": "application/json", "download-detections": "application/x-ndjson",
        "download-coco": "application/json", "download-mot": "text/plain", "download-video": "video/mp4",
        "download-tracks-csv": "text/csv", "download-timeline-csv": "text/csv", "download-lines-csv": "text/csv",
    }
    for test_id, media_type in expected_types.items():
        href = page.get_by_test_id(test_id).get_attribute("href")
        assert "sig=" in href and "exp=" in href and API_KEY not in href, href
        response = httpx.get(server.url + href, timeout=30)
        assert response.status_code == 200, (test_id, response.text[:200])
        assert response.headers["content-type"].startswith(media_type)
        assert response.headers["content-disposition"].startswith("attachment")


def open_file_chooser_with_enter(page, button, attempts: int = 3):
    """Focus ``button``, press Enter and return the file chooser it opens.

    Playwright turns file-chooser interception on with a message it does not wait for when
    the first "filechooser" listener is added, so a key pressed straight after
    ``expect_file_chooser()`` can beat it and the chooser is never reported (CI saw this once
    in ~30 runs). So: listen first, wait for the listener to take effect, then press; press
    again (at most ``attempts`` times, always on the same focused button) only if nothing was
    reported within the deadline.
    """
    choosers: list = []

    def on_chooser(chooser) -> None:  # a plain function: Playwright tags its handlers
        choosers.append(chooser)

    page.on("filechooser", on_chooser)
    page.evaluate("() => null")  # a round trip to the browser: the subscription is in place
    try:
        for _ in range(attempts):
            button.focus()
            expect(button).to_be_focused()
            page.keyboard.press("Enter")
            deadline = time.monotonic() + UI_TIMEOUT_MS / 1000
            while not choosers and time.monotonic() < deadline:
                page.wait_for_timeout(50)  # lets Playwright deliver events while we poll
            if choosers:
                return choosers[0]
    finally:
        page.remove_listener("filechooser", on_chooser)
    focused = page.evaluate("() => document.activeElement && document.activeElement.outerHTML")
    pytest.fail(f"Enter on the focused element opened no file chooser after {attempts} presses; "
                f"focused element: {focused}")


def test_keyboard_use_and_form_checks(page, allinone_server, clips):
    """Keyboard only: the picker opens from its button, fields follow in order, Enter submits,
    and a bad value is named, marked invalid and focused; nothing reaches the server."""
    reload_once_the_model_card_is_published(page, allinone_server)
    jobs_before = len(allinone_server.client.get("/jobs").json()["jobs"])
    open_file_chooser_with_enter(page, page.get_by_test_id("choose-button")).set_files(clips["small"])
    expect(page.get_by_test_id("selected-file")).to_have_count(1)

    page.keyboard.press("Tab")  # "Choose a folder of images…"
    expect(page.get_by_test_id("folder-button")).to_be_focused()
    page.keyboard.press("Tab")  # the file's Remove button
    page.keyboard.press("Tab")  # the flight telemetry's file field
    expect(page.get_by_test_id("telemetry-input")).to_be_focused()
    page.keyboard.press("Tab")
    page.keyboard.type("cow")
    expect(page.get_by_label("Classes")).to_have_value("cow")
    page.keyboard.press("Tab")  # "Classes this model knows", a disclosure
    expect(page.get_by_test_id("known-classes").locator("summary")).to_be_focused()
    page.keyboard.press("Tab")
    page.keyboard.type("2")
    page.keyboard.press("Enter")
    threshold = page.get_by_label("Confidence threshold")
    expect(page.get_by_test_id("form-error")).to_have_text(
        "The confidence threshold must be a number from 0 to 1.")
    expect(threshold).to_have_attribute("aria-invalid", "true")
    expect(threshold).to_be_focused()
    assert threshold.evaluate("el => getComputedStyle(el).outlineStyle") != "none"  # a visible focus ring

    threshold.fill("0.4")
    page.get_by_label("Counting line").fill("10,10,10,10")
    page.keyboard.press("Enter")
    expect(page.get_by_test_id("form-error")).to_contain_text("two different points")
    expect(page.get_by_label("Counting line")).to_be_focused()
    expect(page.get_by_test_id("upload-item")).to_have_count(0)
    assert len(allinone_server.client.get("/jobs").json()["jobs"]) == jobs_before


def reload_once_the_model_card_is_published(page, server: AllInOneServer) -> None:
    """The all-in-one server loads its model in the background; until it has, the page cannot
    list the model's classes (nor add their disclosure to the tab order)."""
    wait_until(lambda: server.client.get("/model").status_code == 200, JOB_TIMEOUT_MS / 1000,
               "the worker to load the model and publish its card")
    page.reload()
    expect(page.get_by_test_id("known-classes")).to_be_visible()


def test_the_models_classes_are_listed_and_a_typo_is_caught_before_upload(page, allinone_server, clips):
    """The page reads GET /model (the card the worker published): it lists the class names,
    warns that this is a test model, and refuses an unknown name without uploading anything."""
    reload_once_the_model_card_is_published(page, allinone_server)
    expect(page.get_by_test_id("known-classes-list")).to_have_text("cow, sheep, horse, person")
    expect(page.get_by_test_id("test-model-banner")).to_be_visible()
    jobs_before = len(allinone_server.client.get("/jobs").json()["jobs"])

    page.get_by_test_id("file-input").set_input_files(clips["small"])
    page.get_by_label("Classes").fill("Cow, zebra")
    page.get_by_test_id("submit-button").click()
    expect(page.get_by_test_id("form-error")).to_have_text(
        "The model does not know “zebra”. It knows: cow, sheep, horse, person.")
    expect(page.get_by_label("Classes")).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_label("Classes")).to_be_focused()
    screenshot(page, "unknown-class")
    expect(page.get_by_test_id("upload-item")).to_have_count(0)
    assert len(allinone_server.client.get("/jobs").json()["jobs"]) == jobs_before


def one_decimal_like_js(value: float) -> str:
    """``value.toFixed(1)``: halves of the exact binary value round up (Python's format rounds
    them to even)."""
    return str(Decimal(value).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP))


def test_zone_counts_of_a_job_are_shown(page, allinone_server, clips):
    """Zones come from the API (the form offers a line only); the job view shows their counts
    as stats.json has them."""
    zones = [{"name": "whole field", "polygon": [[0, 0], [320, 0], [320, 240], [0, 240]]},
             {"name": "left strip", "polygon": [[0, 0], [20, 0], [20, 240], [0, 240]]}]
    with clips["small"].open("rb") as handle:
        response = allinone_server.client.post("/jobs", files={"file": ("zones.mp4", handle)},
                                               data={"zones": json.dumps(zones), "tiling": "off",
                                                     "classes": ",".join(TINY_MODEL_CLASSES)})
    assert response.status_code == 202, response.text
    job_id = response.json()["job_id"]
    assert allinone_server.wait_for_status(job_id, {"completed", "failed"}, JOB_TIMEOUT_MS / 1000)[
        "status"] == "completed"
    stats = allinone_server.client.get(f"/jobs/{job_id}/result").json()

    page.goto(f"/#/jobs/{job_id}")
    table = page.get_by_test_id("zone-counts")
    expect(table).to_be_visible(timeout=UI_TIMEOUT_MS)
    expected = [[zone["name"], str(zone["max_total"]), one_decimal_like_js(zone["mean_total"]),
                 str(sum(zone["unique"].values()))] for zone in stats["zones"]]
    expect(table.locator("tbody tr")).to_have_count(2)
    for index, cells in enumerate(expected):
        expect(table.locator("tbody tr").nth(index).locator("td")).to_have_text(cells)
    assert stats["zones"][0]["max_total"] > 0  # the whole field saw something: the numbers are not all zero
    expect(page.get_by_test_id("line-counts")).to_be_hidden()
    expect(page.get_by_test_id("detail-meta").locator("dd").last).to_have_text(  # Settings
        f"classes {', '.join(TINY_MODEL_CLASSES)} · no tiling · zone “whole field” · zone “left strip”")
    # the labels say what was counted: the classes the job chose (every class: nothing filtered out)
    expect(page.get_by_test_id("count-total-label")).to_have_text(", ".join(TINY_MODEL_CLASSES))
    expect(table.locator("th").last).to_have_text(f"{', '.join(TINY_MODEL_CLASSES).capitalize()} seen in it")
    table.scroll_into_view_if_needed()
    page.screenshot(path=str(SCREENSHOTS / "job-zones.png"))  # the viewport: the zone table in view
    check_a_phone_shows_the_counts_before_the_metadata(page)


def check_a_phone_shows_the_counts_before_the_metadata(page) -> None:
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(SCREENSHOTS / "job-desktop.png"))  # the heading's card and the metadata as one
    page.set_viewport_size({"width": 390, "height": 844})
    counts = page.get_by_test_id("count-total").bounding_box()
    meta = page.get_by_test_id("detail-meta").bounding_box()
    heading = page.get_by_test_id("detail-heading").bounding_box()
    assert counts and meta and heading
    assert heading["y"] < counts["y"] < meta["y"], (heading, counts, meta)
    page.screenshot(path=str(SCREENSHOTS / "job-phone.png"), full_page=True)


def test_failed_job_shows_its_error(page, allinone_server, clips):
    """A damaged video dropped on the page: its start is sound, so the API accepts it; the
    worker's decoder fails part-way, and the page shows the worker's message in the list and
    the job."""
    drop_file(page, clips["damaged"], name="damaged-flight.mp4")
    expect(page.get_by_test_id("selected-file")).to_contain_text(["damaged-flight.mp4"])
    page.get_by_test_id("submit-button").click()
    job_id = uploaded_job_ids(page, 1)["damaged-flight.mp4"]

    row = job_row(page, job_id)
    expect(row.get_by_test_id("job-status")).to_have_text("failed", timeout=JOB_TIMEOUT_MS)
    error = allinone_server.job(job_id)["error"]
    assert error["code"] == "corrupt_video"
    assert "truncated" in error["message"] or "damaged" in error["message"]
    expect(row.get_by_test_id("job-error")).to_have_text(f"Failed: {error['message']}")
    screenshot(page, "job-list-failed")

    row.get_by_test_id("job-open").click()
    expect(page.get_by_test_id("detail-error")).to_contain_text(error["message"], timeout=UI_TIMEOUT_MS)
    expect(page.get_by_test_id("detail-status")).to_have_text("failed")
    expect(page.get_by_test_id("result")).to_be_hidden()
    screenshot(page, "job-failed")


def drop_file(page, path: Path, name: str) -> None:
    """Drop a file on the drop zone the way a browser does: a drop event carrying a DataTransfer."""
    payload = base64.b64encode(path.read_bytes()).decode()
    page.get_by_test_id("drop-zone").evaluate(
        """(zone, [payload, name]) => {
            const bytes = Uint8Array.from(atob(payload), c => c.charCodeAt(0));
            const transfer = new DataTransfer();
            transfer.items.add(new File([bytes], name, {type: 'video/mp4'}));
            for (const type of ['dragenter', 'dragover', 'drop']) {
                const init = {dataTransfer: transfer, bubbles: true, cancelable: true};
                zone.dispatchEvent(new DragEvent(type, init));
            }
        }""",
        [payload, name],
    )


def test_cancel_a_running_job_then_delete_it(page, allinone_server, clips):
    page.get_by_test_id("file-input").set_input_files(clips["long"])
    page.get_by_test_id("submit-button").click()
    job_id = uploaded_job_ids(page, 1)["long-pasture.mp4"]
    row = job_row(page, job_id)

    expect(row.get_by_test_id("job-status")).to_have_text("processing", timeout=JOB_TIMEOUT_MS)
    page.wait_for_function(  # the worker has reported progress, with speed and time left
        """id => { const row = document.querySelector(`[data-testid=job-row][data-job-id="${id}"]`);
                   const bar = row.querySelector('[data-testid=job-progress]');
                   const text = row.textContent;
                   return bar.value > 0 && bar.value < 1 && /fps/.test(text) && /left/.test(text); }""",
        arg=job_id, timeout=JOB_TIMEOUT_MS)
    screenshot(page, "job-list-progress")

    row.get_by_test_id("job-cancel").click()
    expect(row.get_by_test_id("job-status")).to_have_text("cancelled", timeout=JOB_TIMEOUT_MS)
    job = allinone_server.job(job_id)
    assert job["status"] == "cancelled" and job["progress"] < 1
    expect(row.get_by_test_id("job-cancel")).to_be_hidden()

    delete = row.get_by_test_id("job-delete")
    delete.click()
    expect(delete).to_have_text("Confirm delete")  # the first click only asks
    assert allinone_server.client.get(f"/jobs/{job_id}").status_code == 200
    delete.click()
    expect(row).to_have_count(0)
    assert allinone_server.client.get(f"/jobs/{job_id}").status_code == 404


def test_api_key_is_asked_for_once(browser, allinone_server):
    context = open_context(browser, allinone_server, api_key=None)
    errors = PageErrors()
    try:
        page = context.new_page()
        page.on("pageerror", errors)
        page.goto("/")
        dialog = page.get_by_test_id("api-key-dialog")
        expect(dialog).to_be_visible(timeout=UI_TIMEOUT_MS)
        expect(page.get_by_test_id("job-row")).to_have_count(0)
        screenshot(page, "api-key-prompt")

        page.get_by_label("API key", exact=True).fill("wrong-key")
        page.get_by_test_id("api-key-submit").click()
        expect(dialog).to_contain_text("not accepted", timeout=UI_TIMEOUT_MS)
        expect(dialog).to_be_visible()

        page.get_by_label("API key", exact=True).fill(API_KEY)
        page.get_by_test_id("api-key-submit").click()
        expect(dialog).to_be_hidden(timeout=UI_TIMEOUT_MS)
        listed = allinone_server.client.get("/jobs").json()["jobs"]
        expect(page.get_by_test_id("job-row")).to_have_count(len(listed), timeout=UI_TIMEOUT_MS)
        assert page.evaluate(f"sessionStorage.getItem({KEY_STORAGE!r})") == API_KEY

        page.reload()  # same tab: the key is remembered, no second prompt
        expect(page.get_by_test_id("job-row")).to_have_count(len(listed), timeout=UI_TIMEOUT_MS)
        expect(dialog).to_be_hidden()
    finally:
        context.close()
    assert not errors.errors, f"uncaught errors in the dashboard: {errors.errors}"



# --- images jobs ------------------------------------------------------------------------------------


def _write_images_set(folder: Path) -> list[Path]:
    """Six stills, a note that is not an image, and a georeferenced orthomosaic big enough to be
    read in windows (one colour, DEFLATE: a few KB on disk)."""
    from affine import Affine

    from tests.fixtures_stills import image_bytes, write_stills

    paths = write_stills(folder, 6)
    notes = folder / "notes.txt"
    notes.write_text("flight notes, not an image")
    field = folder / "field.tif"
    field.write_bytes(image_bytes("GTiff", 6100, 4000, crs="EPSG:32633", compress="deflate", uniform=True,
                                  transform=Affine(0.05, 0, 500000, 0, -0.05, 5000000)))
    return [*paths, notes, field]


def test_images_upload_shows_files_overview_and_both_totals(page, allinone_server, tmp_path):
    """Images chosen together become one job: the page shows its per-file table (the bad file
    with its typed error), the orthomosaic's overview with its detections, and the
    deduplicated total beside the per-image sum, as stats.json has them."""
    files = _write_images_set(tmp_path / "flight")
    job_id = submit_images_as_one_job(page, files)
    submitted = allinone_server.job(job_id)
    assert (submitted["kind"], submitted["files_total"], submitted["files_failed"]) == ("images", 8, 1)

    row = job_row(page, job_id)
    expect(row.get_by_test_id("job-status")).to_have_text("completed with errors", timeout=JOB_TIMEOUT_MS * 2)
    expect(row.get_by_test_id("job-progress-text")).to_have_text("100 % · 1 of 8 files failed")
    row.get_by_test_id("job-open").click()
    expect(page.get_by_test_id("images-result")).to_be_visible(timeout=UI_TIMEOUT_MS)
    expect(page.get_by_test_id("detail-status")).to_have_text("completed with errors")
    assert page.get_by_test_id("result-video").is_hidden()

    stats = allinone_server.client.get(f"/jobs/{job_id}/result").json()
    counts = stats["counts"]
    assert text_of(page, "images-sum") == f"{counts['per_image_sum']:,}"
    assert counts["deduplicated"]["applied"] is True  # the orthomosaic is georeferenced
    assert text_of(page, "images-total") == f"{counts['deduplicated']['total']:,}"  # the headline
    assert text_of(page, "images-files") == "7 / 8"

    rows = page.get_by_test_id("file-row")
    expect(rows).to_have_count(8)
    failed = page.locator('[data-testid=file-row][data-state=failed]')
    expect(failed).to_have_count(1)
    assert failed.get_attribute("data-name") == "notes.txt"
    expect(failed.get_by_test_id("file-detail")).to_contain_text("(unsupported_image)")

    overview = page.get_by_test_id("overview").locator("img")
    expect(overview).to_have_count(1)
    page.wait_for_function(
        "() => { const i = document.querySelector('[data-testid=overview] img'); return i && i.naturalWidth > 0; }",
        timeout=UI_TIMEOUT_MS)
    assert "sig=" in overview.get_attribute("src") and API_KEY not in overview.get_attribute("src")
    expect(page.get_by_test_id("download-geojson")).to_be_visible()
    results = httpx.get(allinone_server.url + page.get_by_test_id("download-results").get_attribute("href"))
    assert results.status_code == 200 and len(results.text.splitlines()) == 8  # signed: no key needed
    expect(page.get_by_test_id("download-results-csv")).to_be_visible()
    expect(page.get_by_test_id("download-tracks-csv")).to_be_hidden()
    table = httpx.get(allinone_server.url + page.get_by_test_id("download-results-csv").get_attribute("href"))
    assert table.status_code == 200 and table.text.startswith("file,class,count,ok,error_code,error\r\n")
    screenshot(page, "images-job")


def test_an_images_jobs_gallery_card_opens_its_files_image(page, allinone_server, tmp_path):
    """A card per counted animal (as many as the grid shows); choosing one opens the annotated
    image of the file its picture was taken from."""
    from tests.fixtures_stills import write_stills

    job_id = submit_images_as_one_job(page, write_stills(tmp_path / "flight", 3))
    row = job_row(page, job_id)
    expect(row.get_by_test_id("job-status")).to_have_text("completed", timeout=JOB_TIMEOUT_MS * 2)
    row.get_by_test_id("job-open").click()
    expect(page.get_by_test_id("images-result")).to_be_visible(timeout=UI_TIMEOUT_MS)
    counts = allinone_server.client.get(f"/jobs/{job_id}/result").json()["counts"]
    gallery = allinone_server.client.get(f"/jobs/{job_id}/gallery").json()
    assert gallery["count"] == counts["total"] > 0  # not georeferenced: every detection is an animal
    cards = page.get_by_test_id("animal-card")
    expect(cards).to_have_count(min(len(gallery["items"]), 500), timeout=UI_TIMEOUT_MS)
    item = gallery["items"][0]
    expect(cards.first).to_contain_text(item["crop_image"])
    with page.expect_popup() as opened:
        cards.first.locator("button").click()
    url = opened.value.url
    assert unquote(url.partition("/files/")[2].partition("?")[0]) == item["crop_image"]
    image = httpx.get(url)  # signed: no key needed
    assert image.status_code == 200 and image.headers["content-type"] == "image/jpeg"
    opened.value.close()


def test_a_big_set_of_images_goes_through_direct_uploads(page, allinone_server, tmp_path):
    """Images adding up to DIRECT_UPLOAD_BYTES or more: each is PUT to its own upload URL, then
    one job is made of the upload ids (the path for big sets), not one huge multipart body."""
    from tests.fixtures_stills import image_bytes

    put_requests: list[str] = []
    page.on("request", lambda request: request.method == "PUT" and put_requests.append(request.url))
    files = []
    for i in range(2):  # 2 x 17 MB, uncompressed
        path = tmp_path / f"big-{i}.tif"
        path.write_bytes(image_bytes("GTiff", 2400, 2400, uniform=True))
        files.append(path)
    assert sum(path.stat().st_size for path in files) >= DIRECT_UPLOAD_BYTES
    page.get_by_test_id("file-input").set_input_files(files)
    page.get_by_test_id("submit-button").click()
    done = page.locator("[data-testid=upload-item][data-state=done]")
    expect(done).to_have_count(1, timeout=60_000)
    job_id = done.get_attribute("data-job-id")
    assert len(put_requests) == 2 and all("/uploads/" in url for url in put_requests), put_requests
    job = allinone_server.job(job_id)
    assert (job["kind"], job["files_total"]) == ("images", 2)
    expect(job_row(page, job_id).get_by_test_id("job-status")).to_have_text("completed", timeout=JOB_TIMEOUT_MS * 2)


def test_a_videos_srt_goes_with_it_as_its_telemetry(page, allinone_server, clips, tmp_path):
    """A drone's .SRT chosen beside a video goes with the video of its name, sent as the
    multipart field ``telemetry``; one that goes with no video is caught before any upload."""
    own, stray = tmp_path / "pasture.SRT", tmp_path / "elsewhere.SRT"
    for srt in (own, stray):
        srt.write_text(dji_srt(frames=20, fps=10.0))
    page.get_by_test_id("file-input").set_input_files(clips["small"])  # pasture.mp4
    page.get_by_test_id("telemetry-input").set_input_files([own, stray])
    page.get_by_test_id("submit-button").click()
    expect(page.get_by_test_id("form-error")).to_contain_text("elsewhere.SRT goes with none of the chosen videos")
    expect(page.get_by_test_id("upload-item")).to_have_count(0)

    page.get_by_test_id("telemetry-input").set_input_files(own)
    page.get_by_test_id("submit-button").click()
    job_id = uploaded_job_ids(page, 1)["pasture.mp4"]
    assert allinone_server.job(job_id)["telemetry"] == "pasture.SRT"
    allinone_server.client.delete(f"/jobs/{job_id}")  # the telemetry arrived: the count itself is not needed


# --- a service whose model cannot load ---------------------------------------------------------


def test_every_page_says_why_no_job_can_run_while_the_model_cannot_load(browser, tmp_path, clips):
    # no model there (as with no MODEL_ID and no Hub access): the worker takes no job
    server = launch_allinone(tmp_path, tmp_path / "no-such-model", started_path="/openapi.json",
                             API_KEYS=f"farm:{API_KEY}", HF_HUB_OFFLINE="1")
    try:
        wait_until(lambda: server.client.get("/health").status_code == 503, 60, "/health to report the model")
        model = server.client.get("/model").json()["error"]["message"]
        assert "is not loaded" in model and "does not exist" in model, model
        assert "worker.main" not in model  # the all-in-one's user has no worker to start
        with clips["small"].open("rb") as handle:
            job_id = server.client.post("/jobs", files={"file": ("pasture.mp4", handle)}).json()["job_id"]

        with dashboard_page(browser, server, API_KEY) as page:
            banner = page.get_by_test_id("service-problem")
            expect(banner).to_be_visible(timeout=UI_TIMEOUT_MS)
            expect(banner).to_contain_text("No job can run")
            expect(page.get_by_test_id("service-problem-reason")).to_contain_text("does not exist")
            screenshot(page, "model-cannot-load")
            page.goto(f"/#/jobs/{job_id}")
            expect(page.get_by_test_id("detail-view")).to_be_visible(timeout=UI_TIMEOUT_MS)
            expect(banner).to_be_visible(timeout=UI_TIMEOUT_MS)
            expect(page.get_by_test_id("service-problem-reason")).to_contain_text("does not exist")
    finally:
        server.stop()
