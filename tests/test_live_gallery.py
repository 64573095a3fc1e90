"""ml_engine.live.gallery: a stream's new animals of each window, each with its best picture.

The first tests feed ``WindowGallery`` real pixels and tracked detections frame by frame; the
last ones run ``StreamRun`` on the walking red animal of tests/test_live_engine.py (its
``ClipSource`` and ``ColourBoxDetector``, which really finds the animal, so counts have a ground
truth), through a hand-back and its resume, and on a real RTSP server.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
import supervision as sv

from core.outputs import WINDOWS, gallery_crop, window_gallery
from ml_engine.gallery import MAX_CROP_PX
from ml_engine.live import StreamRun, StreamState
from ml_engine.live.counts import iso
from ml_engine.live.gallery import WindowGallery, gallery_to_continue
from ml_engine.media.video import iter_frames, probe
from tests.fixtures_rtsp import RtspServer
from tests.fixtures_video import write_clip
from tests.test_live_engine import (
    FAST_SOURCE,
    RED,
    ClipSource,
    ColourBoxDetector,
    Journal,
    Recorder,
    jsonl,
    processed,
    stop_after,
    stream_config,
    until,
)

T0 = 1_760_000_000.0  # a time.time() in the stream's life
FRAME = np.random.default_rng(7).integers(0, 256, (240, 320, 3), dtype=np.uint8)  # texture: crops are sharp


def tracks(*boxes: tuple[int, tuple[float, float, float, float]], cls: str = "cow",
           confidence: float = 0.9) -> sv.Detections:
    """Tracked detections: (track id, box) pairs, as ``LiveTracks.update`` gives them."""
    detections = sv.Detections(
        xyxy=np.array([box for _, box in boxes], dtype=float).reshape(-1, 4),
        confidence=np.full(len(boxes), confidence),
        class_id=np.zeros(len(boxes), dtype=int),
        tracker_id=np.array([track_id for track_id, _ in boxes], dtype=int),
    )
    detections.data["class_name"] = np.array([cls] * len(boxes), dtype=str)
    return detections


def window_record(number: int) -> dict:
    """The fields of a windows.jsonl line the gallery reads."""
    return {"window": number, "from": iso(T0 + number - 1), "to": iso(T0 + number)}


def read(path: Path) -> dict:
    return json.loads(path.read_text())


def picture(path: Path) -> np.ndarray:
    image = cv2.imread(str(path))
    assert image is not None, f"{path} is not a JPEG"
    return image


# --- WindowGallery, frame by frame ---------------------------------------------------------------


def test_a_window_lists_the_animals_first_counted_in_it_each_at_its_best(tmp_path: Path) -> None:
    gallery = WindowGallery(tmp_path)
    gallery.offer(FRAME, tracks((1, (100, 100, 120, 120))), T0, counted_now={1})  # 1 is counted
    gallery.offer(FRAME, tracks((1, (100, 100, 160, 160))), T0 + 0.1, counted_now=set())  # larger: better
    gallery.offer(FRAME, tracks((1, (0, 80, 90, 170))), T0 + 0.2, counted_now=set())  # larger, cut by the edge
    gallery.offer(FRAME, tracks((2, (200, 100, 240, 140))), T0 + 0.3, counted_now={2})  # 1 gone, 2 counted
    assert (tmp_path / gallery_crop(1)).is_file()  # out of view: its picture went to disk...
    assert gallery.crops_held == 1  # ...and its pixels went; 2's are held while it is in view

    files = gallery.close_window(window_record(1))
    assert set(files) == {gallery_crop(1), gallery_crop(2), window_gallery(1)}
    document = read(files[window_gallery(1)])
    assert (document["window"], document["count"], document["from"]) == (1, 2, iso(T0))
    assert "partial" not in document and "truncated" not in document
    first, second = document["items"]
    assert (first["id"], first["class"], first["crop"]) == (1, "cow", "crops/1.jpg")
    assert first["crop_box"] == [100, 100, 160, 160] and first["crop_whole"] is True  # whole beats larger
    assert (first["counted_at"], first["last_seen_at"], first["frames_seen"]) == (iso(T0), iso(T0 + 0.2), 3)
    assert first["crop_at"] == iso(T0 + 0.1) and first["mean_confidence"] == 0.9
    height, width = picture(tmp_path / first["crop"]).shape[:2]
    assert (width, height) == (first["crop_width"], first["crop_height"]) and 60 < width < 75  # box + context
    assert second["id"] == 2 and picture(tmp_path / second["crop"]).shape[:2] == (second["crop_height"],
                                                                                second["crop_width"])

    # 2 stays in view into window 2: listed in window 1 only; 3 is window 2's new animal
    gallery.offer(FRAME, tracks((2, (200, 100, 250, 150)), (3, (20, 20, 60, 60))), T0 + 1.1, counted_now={3})
    document = read(gallery.close_window(window_record(2))[window_gallery(2)])
    assert document["count"] == 1 and [item["id"] for item in document["items"]] == [3]
    assert gallery.tracks_held == 2  # 2 and 3, in view: only to know not to list them again


def test_a_large_animal_s_picture_is_at_most_256_px(tmp_path: Path) -> None:
    frame = np.random.default_rng(1).integers(0, 256, (720, 1280, 3), dtype=np.uint8)
    gallery = WindowGallery(tmp_path)
    gallery.offer(frame, tracks((9, (100, 100, 700, 500))), T0, counted_now={9})
    item = read(gallery.close_window(window_record(1))[window_gallery(1)])["items"][0]
    assert max(item["crop_width"], item["crop_height"]) == MAX_CROP_PX
    assert max(picture(tmp_path / item["crop"]).shape[:2]) == MAX_CROP_PX


def test_a_track_that_leaves_uncounted_is_forgotten(tmp_path: Path) -> None:
    """A track seen only before it is counted (not in counted_now) that leaves
    is let go: no picture, nothing held."""
    gallery = WindowGallery(tmp_path)
    gallery.offer(FRAME, tracks((5, (10, 10, 50, 50))), T0, counted_now=set())
    assert gallery.crops_held == 1
    gallery.offer(FRAME, tracks(), T0 + 0.1, counted_now=set())
    assert (gallery.tracks_held, gallery.crops_held) == (0, 0)
    document = read(gallery.close_window(window_record(1))[window_gallery(1)])
    assert document["count"] == 0 and document["items"] == []
    assert not (tmp_path / "crops").exists()


def test_memory_stays_bounded_over_many_windows(tmp_path: Path) -> None:
    """Two animals in view at a time, a new one every 5 frames, for 300 windows: what is held
    never grows past the animals in view and those counted in the open window."""
    gallery = WindowGallery(tmp_path)
    highest, most_held, most_crops = 0, 0, 0
    for window in range(1, 301):
        for step in range(10):
            frame_number = (window - 1) * 10 + step
            in_view = [frame_number // 5 + 1, frame_number // 5 + 2]  # each one in view for 10 frames
            boxes = [(track_id, (10.0 + 60 * (track_id % 4), 40.0, 60.0 + 60 * (track_id % 4), 90.0))
                     for track_id in in_view]
            gallery.offer(FRAME, tracks(*boxes), T0 + frame_number / 10,
                          counted_now={track_id for track_id in in_view if track_id > highest})
            highest = max(highest, *in_view)
            most_held, most_crops = max(most_held, gallery.tracks_held), max(most_crops, gallery.crops_held)
        document = read(gallery.close_window(window_record(window))[window_gallery(window)])
        new_animals = 3 if window == 1 else 2  # the first frame shows two
        assert document["count"] == len(document["items"]) == new_animals, (window, document["count"])
        assert gallery.tracks_held <= 2  # the two in view, listed already
    assert most_crops <= 2 and most_held <= 4  # in view, plus counted in the open window and gone
    assert len(list((tmp_path / "crops").iterdir())) == highest  # every animal's picture, on disk


def test_a_window_lists_at_most_max_items_and_says_so(tmp_path: Path) -> None:
    gallery = WindowGallery(tmp_path, max_items=2)
    gallery.offer(FRAME, tracks(*[(i, (10.0 * i, 10, 10.0 * i + 8, 18)) for i in range(1, 6)]), T0, counted_now=set(range(1, 6)))
    assert gallery.crops_held == 2  # the unlisted ones' pixels are not kept
    document = read(gallery.close_window(window_record(1))[window_gallery(1)])
    assert document["count"] == 5 and len(document["items"]) == 2
    assert document["truncated"]["listed"] == 2 and "5 animals" in document["truncated"]["note"]


def test_a_hand_back_s_gallery_is_carried_into_the_window_the_next_run_continues(tmp_path: Path) -> None:
    first = WindowGallery(tmp_path)
    first.offer(FRAME, tracks((11, (10, 10, 50, 50))), T0, counted_now={11})
    files = first.hand_back(3, T0)
    partial = read(files[window_gallery(3)])
    assert partial["partial"] is True and partial["count"] == 1 and partial["to"] is None
    assert gallery_to_continue(StreamState(next_window=3, open_window={"number": 3})) == window_gallery(3)
    assert gallery_to_continue(StreamState(next_window=4)) is None  # no unfinished window: nothing to fetch

    second = WindowGallery(tmp_path, StreamState(next_window=3, open_window={"number": 3}))
    second.offer(FRAME, tracks((12, (100, 10, 140, 50))), T0 + 5, counted_now={12})
    files = second.close_window(window_record(3))
    document = read(files[window_gallery(3)])
    assert document["count"] == 2 and [item["id"] for item in document["items"]] == [11, 12]
    assert "partial" not in document
    assert gallery_crop(11) not in files  # stored by the run before: not reported again

    # after a crash no partial gallery was stored: the continued window lists what it counts now
    crashed = tmp_path / "crashed"
    crashed.mkdir()
    third = WindowGallery(crashed, StreamState(next_window=3, open_window={"number": 3}))
    assert read(third.close_window(window_record(3))[window_gallery(3)])["count"] == 0


# --- StreamRun: every window's gallery has as many animals as the window counted -----------------


@pytest.fixture(scope="module")
def walk_frames(tmp_path_factory: pytest.TempPathFactory) -> list[np.ndarray]:
    clip = write_clip(tmp_path_factory.mktemp("clip") / "walk.mp4", boxes=[RED], frames=40, fps=10)
    return [frame.image for frame in iter_frames(clip, probe(clip))]


def assert_galleries_match_windows(output_dir: Path) -> list[dict]:
    """Each window's gallery lists exactly the animals the window counted, each with a picture
    of it (the red animal: a red crop); returns every item."""
    items = []
    for window in jsonl(output_dir / WINDOWS):
        document = read(output_dir / window_gallery(window["window"]))
        assert document["count"] == len(document["items"]) == window["unique"], (window, document)
        assert "partial" not in document and document["from"] == window["from"]
        for item in document["items"]:
            crop = picture(output_dir / item["crop"])  # BGR
            red = (crop[:, :, 2] > 180) & (crop[:, :, 1] < 90)
            assert red.mean() > 0.4, item  # the animal, not the background
            assert item["class"] == "cow" and item["crop_whole"] is True
        items.extend(document["items"])
    return items


def test_a_stream_writes_each_window_s_new_animals_and_reports_them(
        walk_frames: list[np.ndarray], tmp_path: Path) -> None:
    seen = Recorder()
    stats, _ = StreamRun("rtsp://camera.invalid/s", stream_config(), ColourBoxDetector(), tmp_path,
                         seen.stopping(stop_after(7.0)), source=ClipSource(walk_frames)).run()
    items = assert_galleries_match_windows(tmp_path)
    assert len(items) == stats["counts"]["total_unique"] == 2
    assert len({item["id"] for item in items}) == 2
    reported = {name for changed, _ in seen.files for name in changed}
    assert {item["crop"] for item in items} <= reported  # stored as each window closed
    assert {window_gallery(record["window"]) for record, _ in seen.windows} <= reported


def test_a_window_carried_over_a_hand_back_lists_the_animals_of_both_runs(
        walk_frames: list[np.ndarray], tmp_path: Path) -> None:
    """Fails without the carried partial gallery: the continued window's gallery lists only the
    animal counted after the resume, though the window counts both."""
    first = Journal()
    run = StreamRun("rtsp://camera.invalid/s", stream_config(window_s=6.0), ColourBoxDetector(), tmp_path,
                    first.stopping(hand_back=stop_after(2.5)), source=ClipSource(walk_frames))
    stats, _ = run.run()
    state = first.states[-1]
    assert run.handed_back and state["open_window"]["unique"] == stats["counts"]["total_unique"] == 1
    reported = {name for changed, _ in first.files for name in changed}
    assert window_gallery(1) in reported and read(tmp_path / window_gallery(1))["partial"] is True

    second = Recorder()
    stats, _ = StreamRun("rtsp://camera.invalid/s", stream_config(window_s=6.0), ColourBoxDetector(), tmp_path,
                         second.stopping(until(lambda: len(second.windows) >= 1, 60)),
                         resume=StreamState.from_dict(state), source=ClipSource(walk_frames)).run()
    items = assert_galleries_match_windows(tmp_path)
    assert stats["counts"]["total_unique"] == len(items) >= 2
    assert read(tmp_path / window_gallery(1))["count"] >= 2  # the carried window: both runs' animals


def test_rtsp_a_real_stream_s_windows_each_list_their_new_animals(
        rtsp_server_factory: Callable[..., RtspServer], tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "walk.mp4", boxes=[RED], frames=40, fps=10)
    server = rtsp_server_factory(video=clip, width=320, height=240, fps=10, gop_s=0.5)
    output_dir = tmp_path / "outputs"
    seen = Recorder()
    started = time.monotonic()
    stats, _ = StreamRun(
        server.url, stream_config(source=FAST_SOURCE), ColourBoxDetector(), output_dir,
        seen.stopping(until(lambda: len(seen.windows) >= 6 and processed(seen) >= 30
                            and seen.statuses[-1].counts["total_unique"] >= 1, 90)),
    ).run()
    assert time.monotonic() - started < 90, "the stream never counted an animal"
    items = assert_galleries_match_windows(output_dir)
    assert len(items) == stats["counts"]["total_unique"] >= 1
