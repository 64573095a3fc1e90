"""The annotated video after stitching (ml_engine.render): one count everywhere a person looks.

The scene: a red box walks right and is hidden for 1.5 s (longer than the tracker's 1 s
buffer), so the live tracker gives it a second id, and stitching merges the two; while it is
hidden it crosses a counting line. A green box is in view throughout. Its first sightings are
labelled green too (a detector's slip), so its live class differs from its final one early on.

What the video shows is read back from its pixels: the last frame of annotated.mp4 is compared
with that frame drawn with the final numbers and with wrong ones (the live tracker's): it must
be the final one, on every pixel where they differ.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import supervision as sv

from core.errors import JobCancelled
from core.jobs import CountingLine, CountingZone
from ml_engine.annotate import FrameAnnotator
from ml_engine.media.video import iter_frames
from ml_engine.outputs import ANNOTATED_VIDEO, DETECTIONS, MOT
from ml_engine.pipeline import PipelineConfig, Progress, process_video
from ml_engine.render import read_tracked_frames
from tests.fixtures_video import DEFAULT_BOXES, render_frame, write_clip
from tests.test_pipeline import ColourBoxDetector

GATE = CountingLine(name="gate", start=(150, 0), end=(150, 240))  # red crosses it while hidden
PASTURE = CountingZone(name="pasture", polygon=[(150, 0), (320, 0), (320, 240), (150, 240)])
FRAMES = 40


def _red_hidden_for_a_while(index: int) -> np.ndarray:
    """The red box vanishes for frames 10-24 (1.5 s, longer than the 1 s track buffer)."""
    boxes = DEFAULT_BOXES if not 10 <= index < 25 else DEFAULT_BOXES[1:]
    return render_frame(320, 240, boxes, index)


class FirstSightingsMislabelled(ColourBoxDetector):
    """Calls the red box "green" in the first 4 frames it sees: that track's live majority
    class is green at first, its final class red."""

    def __init__(self) -> None:
        super().__init__()
        self.frames_seen = 0

    def _find(self, image: np.ndarray) -> sv.Detections:
        found = super()._find(image)
        self.frames_seen += 1
        if self.frames_seen <= 4 and len(found):
            found.class_id = np.ones(len(found), dtype=int)
            found.data["class_name"] = np.array(["green"] * len(found), dtype=str)
        return found


@pytest.fixture(scope="module")
def stitched_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path, Path]:
    folder = tmp_path_factory.mktemp("stitched_run")
    clip = write_clip(folder / "hidden.mp4", frames=FRAMES, frame_maker=_red_hidden_for_a_while)
    config = PipelineConfig(lines=[GATE], zones=[PASTURE])
    result = process_video(clip, folder / "out", FirstSightingsMislabelled(), config)
    return result.stats, folder / "out", clip


def last_frame(path: Path) -> np.ndarray:
    image = None
    for frame in iter_frames(path):
        image = frame.image
    assert image is not None
    return image


def mot_frame(out: Path, frame_index: int, classes: dict[int, str]) -> sv.Detections:
    """One frame's rows of mot.txt as tracked detections (with each track's class from stats)."""
    rows = [line.split(",") for line in (out / MOT).read_text().splitlines() if int(line.split(",")[0]) == frame_index + 1]
    ids = [int(row[1]) for row in rows]
    tracked = sv.Detections(
        xyxy=np.array([[float(r[2]), float(r[3]), float(r[2]) + float(r[4]), float(r[3]) + float(r[5])] for r in rows]),
        confidence=np.array([float(r[6]) for r in rows]),
        class_id=np.zeros(len(rows), dtype=int),
        tracker_id=np.array(ids, dtype=int),
    )
    tracked.data["class_name"] = np.array([classes[i] for i in ids], dtype=str)
    return tracked


def drawn(source: np.ndarray, tracked: sv.Detections, counts: dict, provisional: bool = False) -> np.ndarray:
    return FrameAnnotator([GATE], [PASTURE], provisional=provisional).annotate(source.copy(), tracked, counts)


def shows(video: np.ndarray, right: np.ndarray, wrong: np.ndarray) -> bool:
    """Whether the decoded frame is ``right`` rather than ``wrong``, on the pixels where they differ
    (H.264 blurs them a little: clearly nearer, not equal)."""
    differ = np.any(right != wrong, axis=2)
    assert differ.sum() > 20, "the two drawings are alike: the test would prove nothing"
    error_right = np.abs(video[differ].astype(int) - right[differ]).mean()
    error_wrong = np.abs(video[differ].astype(int) - wrong[differ]).mean()
    return bool(error_right < 0.5 * error_wrong)


def final_counts(stats: dict, in_frame: int) -> dict:
    """What the last frame should say: stats.json's numbers."""
    zone = stats["zones"][0]
    return {
        "total_unique": stats["counts"]["total_unique"],
        "by_class": stats["counts"]["by_class"],
        "in_frame": in_frame,
        "lines": {line["name"]: {"in": line["in_total"], "out": line["out_total"]} for line in stats["lines"]},
        "zones": {zone["name"]: {"inside": 1, "visited": sum(zone["unique"].values())}},
    }


def test_the_scene_merges_two_raw_tracks_and_crosses_the_line_while_hidden(stitched_run) -> None:
    stats, _, _ = stitched_run
    counts = stats["counts"]
    assert (counts["raw_total_unique"], counts["total_unique"], counts["merged"]) == (3, 2, 1)
    assert counts["by_class"] == {"green": 1, "red": 1}
    # green walks left across the gate ("in"), red right ("out"), while it was hidden: only
    # stitching sees that crossing, across the gap
    assert (stats["lines"][0]["in_total"], stats["lines"][0]["out_total"]) == (1, 1)


def test_the_last_frame_shows_the_count_of_stats_json(stitched_run) -> None:
    stats, out, clip = stitched_run
    source, video = last_frame(clip), last_frame(out / ANNOTATED_VIDEO)
    classes = {t["id"]: t["class"] for t in stats["tracks"]}
    tracked = mot_frame(out, FRAMES - 1, classes)
    counts = final_counts(stats, len(tracked))
    right = drawn(source, tracked, counts)
    # what the live tracker would have drawn: 3 counted, and not the red box's crossing (hidden then)
    assert shows(video, right, drawn(source, tracked, {**counts, "total_unique": 3, "by_class": {"green": 1, "red": 2}}))
    assert shows(video, right, drawn(source, tracked, {**counts, "lines": {"gate": {"in": 1, "out": 0}}}))
    assert shows(video, right, drawn(source, tracked, counts, provisional=True))


def test_the_ids_drawn_are_the_ids_of_mot_txt(stitched_run) -> None:
    stats, out, clip = stitched_run
    source, video = last_frame(clip), last_frame(out / ANNOTATED_VIDEO)
    classes = {t["id"]: t["class"] for t in stats["tracks"]}
    tracked = mot_frame(out, FRAMES - 1, classes)
    red = next(t for t in stats["tracks"] if t["class"] == "red")
    assert red["id"] in tracked.tracker_id.tolist() and red["raw_ids"][-1] != red["id"]
    live_ids = tracked.tracker_id.copy()
    live_ids[live_ids == red["id"]] = red["raw_ids"][-1]  # the red box's live id in the last frame
    as_live = mot_frame(out, FRAMES - 1, classes)
    as_live.tracker_id = live_ids
    counts = final_counts(stats, len(tracked))
    assert shows(video, drawn(source, tracked, counts), drawn(source, as_live, counts))


def test_timeline_and_peak_count_final_ids_with_final_classes(stitched_run) -> None:
    stats, out, _ = stitched_run
    classes = {t["id"]: t["class"] for t in stats["tracks"]}
    rows = [json.loads(line) for line in (out / DETECTIONS).read_text().splitlines()]
    expected = [
        {"frame": row["frame"], "time_s": row["time_s"], "count": len({d["track_id"] for d in row["detections"]}),
         "by_class": dict(Counter(classes[d["track_id"]] for d in row["detections"]))}
        for row in rows
    ]
    assert stats["timeline"] == expected
    # the red box's first confirmed frames were live-labelled green: finally it is red there too
    first = next(entry for entry in stats["timeline"] if entry["count"] == 2)
    assert first["by_class"] == {"green": 1, "red": 1}
    assert stats["counts"]["peak"] == {**first}


def test_exports_give_each_track_its_final_class(stitched_run) -> None:
    stats, out, _ = stitched_run
    classes = {t["id"]: t["class"] for t in stats["tracks"]}
    for frame in read_tracked_frames(out / DETECTIONS):
        assert [classes[i] for i in frame.tracked.tracker_id.tolist()] == frame.tracked.data["class_name"].tolist()
    coco = json.loads((out / "coco.json").read_text())
    names = {c["id"]: c["name"] for c in coco["categories"]}
    assert {(a["track_id"], names[a["category_id"]]) for a in coco["annotations"]} == set(classes.items())


def test_a_cancel_while_the_video_is_drawn_stops_it_and_leaves_nothing(tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "clip.mp4", frames=FRAMES)
    drawing = []

    def progress(report: Progress) -> None:
        if report.frames_rendered:
            drawing.append(report.frames_rendered)

    config = PipelineConfig(progress_interval_s=0)
    with pytest.raises(JobCancelled, match="drawn"):
        process_video(clip, tmp_path / "out", ColourBoxDetector(), config, progress=progress,
                      should_cancel=lambda: bool(drawing))
    assert drawing and max(drawing) < FRAMES  # it stopped part-way through the rendering pass
    assert list((tmp_path / "out").iterdir()) == []
