"""ml_engine.counting: hand-built detections with known ground truth, exact counts.

Scenes run at 10 processed frames a second with the defaults (min_hits=3, 1 s track buffer).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest
import supervision as sv

from core.errors import InvalidInput
from core.jobs import CountingLine, CountingZone
from ml_engine.counting import CountingConfig, ObjectCounter, points_in_polygon

FPS = 10.0
Box = tuple[float, float, float, float]


def detections(
    boxes: Sequence[Box], classes: Sequence[str] | None = None, scores: Sequence[float] | None = None
):
    """sv.Detections as the detector makes them: xyxy, confidence, class_id, data['class_name']."""
    classes = list(classes) if classes is not None else ["cow"] * len(boxes)
    names = sorted(set(classes) | {"cow"})
    return sv.Detections(
        xyxy=np.array(boxes, dtype=np.float32).reshape(-1, 4),
        confidence=np.array(scores if scores is not None else [0.9] * len(boxes), dtype=np.float32),
        class_id=np.array([names.index(c) for c in classes], dtype=int),
        data={"class_name": np.array(classes, dtype=str)},
    )


def box_at(x: float, y: float, size: float = 40) -> Box:
    """A box whose anchor (bottom centre) is at (x, y)."""
    return (x - size / 2, y - size, x + size / 2, y)


def run(counter: ObjectCounter, frames: Sequence[sv.Detections]) -> list[sv.Detections]:
    return [counter.update(i, i / FPS, dets) for i, dets in enumerate(frames)]


def counter(**overrides) -> ObjectCounter:
    return ObjectCounter(CountingConfig(fps=FPS, **overrides))


# --- unique counts -------------------------------------------------------------------------


def test_one_steady_object_is_one_track_confirmed_after_min_hits() -> None:
    c = counter()
    out = run(c, [detections([box_at(50 + 5 * i, 100)]) for i in range(20)])
    assert [len(d) for d in out[:3]] == [0, 0, 1]  # confirmed on its 3rd consecutive hit
    assert {int(d.tracker_id[0]) for d in out[2:]} == {1}
    summary = c.summary()
    assert (summary.total_unique, summary.by_class) == (1, {"cow": 1})
    track = summary.tracks[0]
    assert (track["id"], track["first_frame"], track["last_frame"], track["frames_seen"]) == (1, 2, 19, 18)
    assert track["mean_confidence"] == pytest.approx(0.9)


def test_flickering_detections_are_never_counted() -> None:
    # One real cow walking; a false detection for 1 frame at frame 5, another for 2 frames at 12-13.
    frames = []
    for i in range(20):
        boxes, classes = [box_at(50 + 5 * i, 100)], ["cow"]
        if i == 5:
            boxes, classes = boxes + [box_at(250, 200)], classes + ["sheep"]
        if i in (12, 13):
            boxes, classes = boxes + [box_at(200, 60)], classes + ["horse"]
        frames.append(detections(boxes, classes))
    c = counter()
    out = run(c, frames)
    summary = c.summary()
    assert (summary.total_unique, summary.by_class) == (1, {"cow": 1})
    assert all(len(d) <= 1 for d in out)
    assert summary.peak["count"] == 1


def test_object_missing_for_a_few_frames_keeps_its_id() -> None:
    # Missed by the detector for 5 frames (0.5 s, within the 1 s buffer) while moving on.
    frames = [detections([] if 8 <= i < 13 else [box_at(40 + 6 * i, 120)]) for i in range(25)]
    c = counter()
    out = run(c, frames)
    ids = {int(t) for d in out for t in d.tracker_id}
    assert ids == {1}
    assert [len(d) for d in out[8:13]] == [0] * 5  # not reported while unseen
    assert len(out[13]) == 1  # back at once, under the same id: no re-confirmation
    assert c.summary().total_unique == 1


def test_object_gone_longer_than_the_buffer_gets_a_new_live_id_that_stitching_undoes() -> None:
    frames = [detections([] if 5 <= i < 20 else [box_at(100, 120)]) for i in range(30)]
    live = counter(track_buffer_s=1.0, stitching=False)
    run(live, frames)
    assert live.summary().total_unique == 2
    stitched = counter(track_buffer_s=1.0)
    out = run(stitched, frames)
    assert {int(d.tracker_id[0]) for d in out if len(d)} == {1, 2}  # live ids: provisional
    summary = stitched.summary()
    assert (summary.total_unique, summary.raw_total_unique, summary.merged) == (1, 2, 1)
    assert summary.tracks[0]["raw_ids"] == [1, 2]
    assert summary.id_map == {1: 1, 2: 1}


def test_two_objects_passing_each_other_keep_their_ids() -> None:
    # Left-to-right and right-to-left along nearly the same row: the boxes overlap heavily
    # for several frames while they pass.
    frames = [detections([box_at(40 + 8 * i, 100), box_at(280 - 8 * i, 108)]) for i in range(31)]
    c = counter()
    out = run(c, frames)
    paths: dict[int, list[float]] = {}
    for d in out:
        for track_id, anchor_x in zip(d.tracker_id.tolist(), (d.xyxy[:, 0] + d.xyxy[:, 2]) / 2, strict=True):
            paths.setdefault(track_id, []).append(float(anchor_x))
    assert sorted(paths) == [1, 2]
    directions = sorted(np.sign(np.diff(path)).mean() for path in paths.values())
    assert directions == [-1.0, 1.0]  # each id kept moving one way: no swap while crossing
    assert c.summary().total_unique == 2


def test_weak_detections_extend_tracks_but_never_start_them() -> None:
    # A cow seen strongly, then weakly (partly hidden); a lone weak detection elsewhere.
    frames = []
    for i in range(16):
        score = 0.9 if i < 8 else 0.3
        frames.append(detections([box_at(60 + 4 * i, 100), box_at(260, 220)], scores=[score, 0.3]))
    c = counter(track_threshold=0.5)
    out = run(c, frames)
    assert [len(d) for d in out[8:]] == [1] * 8  # still tracked through the weak frames
    assert c.summary().total_unique == 1


def test_class_is_the_majority_vote_over_the_track() -> None:
    classes = ["cow", "cow", "horse", "cow", "cow", "horse", "cow", "cow", "cow", "cow"]
    frames = [detections([box_at(100 + 3 * i, 100)], [cls]) for i, cls in enumerate(classes)]
    c = counter()
    out = run(c, frames)
    # Votes start at confirmation (frame 2, itself a "horse"); the label turns to "cow" once
    # cows outvote it and a tie (frame 5) keeps it there.
    assert [d.data["class_name"].tolist() for d in out[2:5]] == [["horse"], ["horse"], ["cow"]]
    assert all(d.data["class_name"].tolist() == ["cow"] for d in out[4:])
    assert out[5].data["detected_class"].tolist() == ["horse"]  # the detector's own label is kept
    assert out[5].class_id.tolist() == out[4].class_id.tolist()
    summary = c.summary()
    assert summary.by_class == {"cow": 1}
    assert summary.tracks[0]["class_votes"] == {"horse": 2, "cow": 6}  # votes from confirmation on


def test_timeline_and_peak_follow_the_objects_in_frame() -> None:
    # A alone for frames 0-9; B joins at 5; C joins at 10 while A leaves.
    frames = []
    for i in range(15):
        boxes, classes = [], []
        if i < 10:
            boxes, classes = boxes + [box_at(40 + 2 * i, 80)], classes + ["cow"]
        if i >= 5:
            boxes, classes = boxes + [box_at(200, 200 - 2 * i)], classes + ["sheep"]
        if i >= 10:
            boxes, classes = boxes + [box_at(120, 150 + i)], classes + ["sheep"]
        frames.append(detections(boxes, classes))
    c = counter()
    run(c, frames)
    summary = c.summary()
    counts = [entry["count"] for entry in summary.timeline]
    assert counts == [0, 0, 1, 1, 1, 1, 1, 2, 2, 2, 1, 1, 2, 2, 2]
    assert summary.timeline[7] == {"frame": 7, "time_s": 0.7, "count": 2, "by_class": {"cow": 1, "sheep": 1}}
    assert summary.peak == {"count": 2, "frame": 7, "time_s": 0.7, "by_class": {"cow": 1, "sheep": 1}}
    assert (summary.total_unique, summary.by_class) == (3, {"cow": 1, "sheep": 2})
    assert summary.frames_processed == 15


def test_frames_must_arrive_in_order() -> None:
    c = counter()
    c.update(3, 0.3, detections([]))
    with pytest.raises(InvalidInput, match="in order"):
        c.update(3, 0.3, detections([]))


@pytest.mark.parametrize(
    "overrides, words",
    [
        ({"fps": 0}, "frame rate"),
        ({"min_hits": 0}, "min_hits"),
        ({"track_buffer_s": -1}, "track_buffer_s"),
        ({"lines": [CountingLine(name="gate", start=(0, 0), end=(1, 1))] * 2}, "repeated: gate"),
    ],
)
def test_bad_config_is_rejected(overrides: dict, words: str) -> None:
    with pytest.raises(InvalidInput, match=words):
        CountingConfig(**{"fps": FPS, **overrides})


# --- lines ------------------------------------------------------------------------------------

GATE = CountingLine(name="gate", start=(0, 100), end=(320, 100))  # horizontal, drawn left to right


def test_objects_crossing_a_line_count_in_and_out_by_class() -> None:
    # A cow walks down across the gate (in), a sheep walks up across it (out),
    # a horse walks along beside it without crossing.
    frames = [
        detections(
            [box_at(60, 40 + 8 * i), box_at(200, 180 - 8 * i), box_at(20 + 10 * i, 160)],
            ["cow", "sheep", "horse"],
        )
        for i in range(20)
    ]
    c = counter(lines=[GATE])
    run(c, frames)
    line = c.summary().lines[0]
    assert line == {
        "name": "gate",
        "start": [0, 100],
        "end": [320, 100],
        "in": {"cow": 1},
        "out": {"sheep": 1},
        "in_total": 1,
        "out_total": 1,
    }
    assert c.live_counts()["lines"] == {"gate": {"in": 1, "out": 1}}


def test_jitter_on_the_line_counts_one_crossing() -> None:
    # Walks down to the line, dithers +-3 px on it for 10 frames, then carries on down.
    ys = [60 + 6 * i for i in range(7)] + [100 + (3 if i % 2 else -3) for i in range(10)]
    ys += [110 + 6 * i for i in range(8)]
    c = counter(lines=[GATE])
    run(c, [detections([box_at(150, y)]) for y in ys])
    line = c.summary().lines[0]
    assert (line["in_total"], line["out_total"]) == (1, 0)


def test_crossing_back_counts_out_again() -> None:
    ys = [60 + 8 * i for i in range(10)] + [132 - 8 * i for i in range(10)]
    c = counter(lines=[GATE])
    run(c, [detections([box_at(150, y)]) for y in ys])
    line = c.summary().lines[0]
    assert (line["in"], line["out"]) == ({"cow": 1}, {"cow": 1})


def test_passing_beyond_the_end_of_a_line_is_not_a_crossing() -> None:
    short_gate = CountingLine(name="short", start=(0, 100), end=(100, 100))
    c = counter(lines=[short_gate])
    run(c, [detections([box_at(200, 60 + 8 * i)]) for i in range(12)])
    assert c.summary().lines[0]["in_total"] == 0


# --- zones ------------------------------------------------------------------------------------


def test_points_in_polygon_handles_concave_shapes() -> None:
    l_shape = np.array([(0, 0), (10, 0), (10, 4), (4, 4), (4, 10), (0, 10)], dtype=float)
    points = np.array([(2, 2), (8, 2), (2, 8), (8, 8), (12, 2)], dtype=float)
    assert points_in_polygon(points, l_shape).tolist() == [True, True, True, False, False]


def test_zone_occupancy_max_mean_and_visitors() -> None:
    pen = CountingZone(name="pen", polygon=[(0, 0), (160, 0), (160, 120), (0, 120)])
    # A cow stays in the pen; a sheep walks in (anchor inside for frames 15-25) and out again.
    frames = []
    for i in range(30):
        sheep_x = 300 - 10 * i if i <= 20 else 100 + 10 * (i - 20)
        frames.append(detections([box_at(40, 50), box_at(sheep_x, 110)], ["cow", "sheep"]))
    c = counter(zones=[pen])
    run(c, frames)
    zone = c.summary().zones[0]
    assert zone["max"] == {"cow": 1, "sheep": 1}
    assert zone["max_total"] == 2
    assert zone["unique"] == {"cow": 1, "sheep": 1}
    assert zone["mean"] == {"cow": round(28 / 30, 4), "sheep": round(11 / 30, 4)}
    assert zone["mean_total"] == round(39 / 30, 4)
    assert c.summary().total_unique == 2


# --- live streams: events, and forgetting ended tracks (memory stays flat) ----------------------


def test_crossings_entries_and_exits_come_out_as_events_as_they_happen() -> None:
    gate = CountingLine(name="gate", start=(100, 0), end=(100, 200))  # walking right: "out"
    pen = CountingZone(name="pen", polygon=[(150, 0), (250, 0), (250, 200), (150, 200)])
    c = counter(lines=[gate], zones=[pen])
    happened = []
    for i in range(30):  # a cow walks right from x=40 to x=330: crosses the gate, through the pen
        c.update(i, i / FPS, detections([box_at(40 + 10 * i, 100)]))
        happened += [(i, e.kind, e.name, e.direction, e.track_id, e.class_name) for e in c.events]
    assert happened == [
        (7, "line_crossing", "gate", "out", 1, "cow"),  # x=100 at i=6 is on the line (hysteresis)
        (11, "zone_entry", "pen", None, 1, "cow"),  # x=150
        (21, "zone_exit", "pen", None, 1, "cow"),  # x=250: out again
    ]
    assert c.events == []  # the last frame's events only: nothing piles up on a video


def test_forgetting_ended_tracks_keeps_counts_and_bounds_what_is_remembered() -> None:
    pen = CountingZone(name="pen", polygon=[(0, 0), (400, 0), (400, 200), (0, 200)])
    gate = CountingLine(name="gate", start=(200, 0), end=(200, 200))
    c = counter(lines=[gate], zones=[pen], stitching=False, timeline=False)
    exits = []
    for animal in range(40):  # one after another: each walks through the gate and vanishes in the pen
        for step in range(8):
            frame = animal * 30 + step
            c.update(frame, frame / FPS, detections([box_at(150 + 15 * step, 100)]))
        for idle in range(8, 30):  # nobody in view: the track is lost, then ends
            frame = animal * 30 + idle
            c.update(frame, frame / FPS, detections([]))
            exits += c.forget_ended_tracks()
    counts = c.live_counts()
    assert counts["total_unique"] == 40 and counts["by_class"] == {"cow": 40}
    assert counts["lines"]["gate"] == {"in": 0, "out": 40}
    assert [(e.kind, e.name) for e in exits] == [("zone_exit", "pen")] * 40  # each ended inside the pen
    assert c._tracks == {} and c._lines[0].crossings == [] and c._zones[0].inside == set()
    assert len(c._timeline) == 0
