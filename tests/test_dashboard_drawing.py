"""Counting lines and zones drawn on a video's first frame in the upload form, in a real browser
(Chromium through Playwright) against a real ``python -m allinone``: the frame is shown before
anything is uploaded, a line is dragged and a zone clicked with the mouse on the canvas (shown
smaller than the video), and the job the upload makes holds them in the source's pixels, the
line's "in" arrow on the side ml_engine/counting/lines.py counts as in. The same on a live
camera's snapshot (a real RTSP server, tests/fixtures_rtsp.py) in the stream form: the stream
job holds what was drawn in the camera's pixels. Screenshots at 1280 × 800 and 390 × 844 go to
test-artifacts/screenshots/."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from ml_engine.media.video import iter_frames
from tests.fixtures_browser import SCREENSHOTS, dashboard_page
from tests.fixtures_server import TENANT_KEYS, AllInOneServer
from tests.fixtures_video import write_clip

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ALLINONE_TENANT = "drawing"  # read by the allinone_server fixture: one tenant of the shared server
API_KEY = TENANT_KEYS[ALLINONE_TENANT]
UI_TIMEOUT_MS = 15_000
SNAPSHOT_TIMEOUT_MS = 30_000  # the API connects to the camera: its open timeout (10 s) and a loaded CPU
CAMERA_BACKGROUND = (48, 80, 128)  # tests/rtsp_server.py's pattern: background-color=0xff305080
FRAMES = 10
LINE_YELLOW = (255, 212, 0)  # drawing.js's line colour


@pytest.fixture(scope="module")
def real_clip(vtest_video: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first second of the real test footage (768x576) as an MP4: Chromium plays no AVI."""
    frames = []
    for frame in iter_frames(vtest_video):
        frames.append(frame.image)
        if len(frames) == FRAMES:
            break
    height, width = frames[0].shape[:2]
    return write_clip(tmp_path_factory.mktemp("drawing") / "street.mp4", width=width, height=height,
                      frames=FRAMES, frame_maker=lambda index: frames[index])


def source_point(box: dict[str, float], fx: float, fy: float) -> tuple[float, float]:
    """The page position at fractions (fx, fy) of the displayed canvas."""
    return box["x"] + fx * box["width"], box["y"] + fy * box["height"]


def canvas_pixel(page, x: int, y: int, panel: str = "drawing-panel") -> tuple[int, int, int]:
    return tuple(page.get_by_test_id(panel).get_by_test_id("drawing-canvas").evaluate(
        "(canvas, [x, y]) => Array.from(canvas.getContext('2d').getImageData(x, y, 1, 1).data.slice(0, 3))",
        [x, y]))


def is_line_colour(rgb: tuple[int, int, int]) -> bool:
    return all(abs(a - b) <= 40 for a, b in zip(rgb, LINE_YELLOW, strict=True))


def shot(page, name: str, width: int, height: int, panel: str = "drawing-panel") -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.set_viewport_size({"width": width, "height": height})
    page.get_by_test_id(panel).scroll_into_view_if_needed()
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"))


def choose_video(page, clip: Path):
    """Choose the clip in the upload form and wait for its first frame on the drawing panel."""
    page.get_by_test_id("file-input").set_input_files(clip)
    panel = page.get_by_test_id("drawing-panel")
    expect(panel).to_have_attribute("data-state", "ready", timeout=UI_TIMEOUT_MS)
    return panel


def test_a_line_and_a_zone_drawn_with_the_mouse_reach_the_job_in_source_pixels(
    browser, allinone_server: AllInOneServer, real_clip: Path
) -> None:
    with dashboard_page(browser, allinone_server, API_KEY) as page:
        choose_video(page, real_clip)
        expect(page.get_by_test_id("drawing-size")).to_contain_text("768 × 576")
        canvas = page.get_by_test_id("drawing-canvas")
        canvas.scroll_into_view_if_needed()
        box = canvas.bounding_box()  # in the viewport, where the mouse is
        assert box is not None and box["width"] < 768, "the frame is shown smaller than the video"

        # a line dragged left to right across the middle: "in" is down the frame
        page.mouse.move(*source_point(box, 0.1, 0.5))
        page.mouse.down()
        page.mouse.move(*source_point(box, 0.5, 0.5), steps=4)
        page.mouse.move(*source_point(box, 0.9, 0.5), steps=4)
        page.mouse.up()
        expect(page.get_by_test_id("drawn-line")).to_have_count(1)
        assert is_line_colour(canvas_pixel(page, 384, 288 + 14)), "the 'in' arrow points down"
        assert not is_line_colour(canvas_pixel(page, 384, 288 - 14))

        # a zone: three clicks, the last one a double-click that closes it
        page.get_by_test_id("draw-zone").check()
        for fx, fy in [(0.1, 0.1), (0.4, 0.1)]:
            page.mouse.click(*source_point(box, fx, fy))
        page.mouse.dblclick(*source_point(box, 0.4, 0.3))
        expect(page.get_by_test_id("drawn-zone")).to_have_count(1)
        page.get_by_test_id("drawn-zone-name").fill("pen")
        shot(page, "drawing", 1280, 800)
        shot(page, "drawing-phone", 390, 844)
        page.set_viewport_size({"width": 1280, "height": 900})

        page.get_by_test_id("submit-button").click()
        done = page.locator("[data-testid=upload-item][data-state=done]")
        expect(done).to_have_count(1, timeout=30_000)
        params = allinone_server.job(done.get_attribute("data-job-id"))["params"]

    [line] = params["lines"]
    assert line["name"] == "line 1"
    assert line["start"] == pytest.approx([77, 288], abs=2) and line["end"] == pytest.approx([691, 288], abs=2)
    [zone] = params["zones"]
    assert zone["name"] == "pen"
    corners = [c for point in zone["polygon"] for c in point]
    assert corners == pytest.approx([77, 58, 307, 58, 307, 173], abs=2)


def test_removing_the_video_hides_the_frame_and_forgets_what_was_drawn(
    browser, allinone_server: AllInOneServer, real_clip: Path
) -> None:
    with dashboard_page(browser, allinone_server, API_KEY) as page:
        panel = choose_video(page, real_clip)
        page.get_by_test_id("drawing-canvas").scroll_into_view_if_needed()
        box = page.get_by_test_id("drawing-canvas").bounding_box()
        assert box is not None
        page.mouse.move(*source_point(box, 0.2, 0.2))
        page.mouse.down()
        page.mouse.move(*source_point(box, 0.2, 0.8), steps=4)
        page.mouse.up()
        expect(page.get_by_test_id("drawn-line")).to_have_count(1)
        page.get_by_test_id("remove-drawn-line").click()
        expect(page.get_by_test_id("drawn-line")).to_have_count(0)

        page.get_by_role("button", name=f"Remove {real_clip.name}").click()
        expect(panel).to_be_hidden()
        page.get_by_test_id("file-input").set_input_files(real_clip)
        expect(panel).to_have_attribute("data-state", "ready", timeout=UI_TIMEOUT_MS)
        expect(page.get_by_test_id("drawn-line")).to_have_count(0)


def test_lines_drawn_on_a_camera_snapshot_reach_the_stream_in_the_camera_pixels(
    browser, allinone_server: AllInOneServer, rtsp_server_factory
) -> None:
    camera = rtsp_server_factory(width=320, height=240)
    job_id = None
    try:
        with dashboard_page(browser, allinone_server, API_KEY) as page:
            page.get_by_test_id("source-camera").check()
            page.get_by_test_id("stream-url-input").fill(camera.url)
            page.get_by_test_id("snapshot-button").click()
            panel = page.get_by_test_id("stream-drawing-panel")
            expect(panel).to_have_attribute("data-state", "ready", timeout=SNAPSHOT_TIMEOUT_MS)
            expect(panel.get_by_test_id("drawing-size")).to_contain_text("320 × 240")
            background = canvas_pixel(page, 3, 3, panel="stream-drawing-panel")
            assert all(abs(a - b) <= 30 for a, b in zip(background, CAMERA_BACKGROUND, strict=True)), (
                f"the canvas shows the camera's picture: {background}")
            canvas = panel.get_by_test_id("drawing-canvas")
            canvas.scroll_into_view_if_needed()
            box = canvas.bounding_box()
            assert box is not None and box["width"] > 320, "the snapshot is shown larger than the camera's frame"

            # a line dragged left to right across the middle, then a zone of three points
            page.mouse.move(*source_point(box, 0.1, 0.5))
            page.mouse.down()
            page.mouse.move(*source_point(box, 0.9, 0.5), steps=6)
            page.mouse.up()
            expect(panel.get_by_test_id("drawn-line")).to_have_count(1)
            panel.get_by_test_id("drawn-line-name").fill("gate")
            panel.get_by_test_id("draw-zone").check()
            expect(page.get_by_test_id("drawing-panel").get_by_test_id("draw-line")).to_be_checked()  # its own group
            canvas.scroll_into_view_if_needed()
            box = canvas.bounding_box()  # naming the line may have scrolled the page
            assert box is not None
            for fx, fy in [(0.6, 0.1), (0.9, 0.1)]:
                page.mouse.click(*source_point(box, fx, fy))
            page.mouse.dblclick(*source_point(box, 0.9, 0.4))
            expect(panel.get_by_test_id("drawn-zone")).to_have_count(1)
            shot(page, "stream-snapshot-drawing", 1280, 800, panel="stream-drawing-panel")
            shot(page, "stream-snapshot-drawing-phone", 390, 844, panel="stream-drawing-panel")
            page.set_viewport_size({"width": 1280, "height": 900})

            page.get_by_test_id("submit-button").click()
            page.wait_for_url(re.compile(r"#/jobs/[A-Za-z0-9_-]+$"), timeout=UI_TIMEOUT_MS)
            job_id = page.url.rsplit("/", 1)[1]
        params = allinone_server.job(job_id)["params"]
    finally:
        if job_id is not None:
            allinone_server.client.delete(f"/jobs/{job_id}")  # stops the stream

    [line] = params["lines"]
    assert line["name"] == "gate"
    assert line["start"] == pytest.approx([32, 120], abs=2) and line["end"] == pytest.approx([288, 120], abs=2)
    [zone] = params["zones"]
    corners = [c for point in zone["polygon"] for c in point]
    assert corners == pytest.approx([192, 24, 288, 24, 288, 96], abs=2)


def test_a_snapshot_of_a_camera_outside_the_allowed_networks_says_why(
    browser, allinone_server: AllInOneServer
) -> None:
    with dashboard_page(browser, allinone_server, API_KEY) as page:
        page.get_by_test_id("source-camera").check()
        page.get_by_test_id("snapshot-button").click()
        expect(page.get_by_test_id("form-error")).to_contain_text("Enter the camera's stream URL")
        page.get_by_test_id("stream-url-input").fill("rtsp://viewer:pw@10.255.0.1:554/cam")
        page.get_by_test_id("snapshot-button").click()
        expect(page.get_by_test_id("form-error")).to_contain_text("STREAM_ALLOWED_NETWORKS", timeout=UI_TIMEOUT_MS)
        expect(page.get_by_test_id("form-error")).not_to_contain_text("pw@")
        expect(page.get_by_test_id("stream-drawing-panel")).to_be_hidden()
