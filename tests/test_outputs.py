"""ml_engine.outputs (exports + stats.json schema) and ml_engine.annotate (drawing), no model needed."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import supervision as sv

from core.errors import CattleCounterError
from core.jobs import CountingLine, CountingZone
from core.outputs import LINES_CSV, TIMELINE_CSV, TRACKS_CSV
from ml_engine.annotate import LINE_COLOUR, FrameAnnotator
from ml_engine.counting import CountingConfig, ObjectCounter, empty_tracked
from ml_engine.media.video import VideoInfo
from ml_engine.outputs import (
    COCO,
    DETECTIONS,
    MOT,
    RANDOM_WEIGHTS_NOTE,
    STATS,
    OutputWriter,
    build_stats,
    validate_stats,
)

LABELS = {0: "cow", 1: "sheep"}
VIDEO = VideoInfo(
    width=320,
    height=240,
    fps=Fraction(30000, 1001),
    frames=3,
    duration_s=0.1,
    rotation=0,
    codec="h264",
    frames_exact=True,
)


def tracked(boxes, track_ids, classes, scores) -> sv.Detections:
    return sv.Detections(
        xyxy=np.array(boxes, dtype=np.float32).reshape(-1, 4),
        confidence=np.array(scores, dtype=np.float32),
        class_id=np.array([{"cow": 0, "sheep": 1}[c] for c in classes]),
        tracker_id=np.array(track_ids),
        data={"class_name": np.array(classes, dtype=str)},
    )


def counted_summary():
    """A real ObjectCounter run over hand-built detections: 2 cows crossing a gate, a pen."""
    config = CountingConfig(
        fps=10,
        lines=[CountingLine(name="gate", start=(0, 100), end=(320, 100))],
        zones=[CountingZone(name="pen", polygon=[(0, 0), (320, 0), (320, 90), (0, 90)])],
    )
    counter = ObjectCounter(config)
    for i in range(12):
        boxes = [(40, 30 + 8 * i, 80, 70 + 8 * i), (200, 20 + 8 * i, 240, 60 + 8 * i)]
        detections = sv.Detections(
            xyxy=np.array(boxes, dtype=np.float32),
            confidence=np.array([0.9, 0.8], dtype=np.float32),
            class_id=np.array([0, 1]),
            data={"class_name": np.array(["cow", "sheep"])},
        )
        counter.update(i, i / 10, detections)
    return counter.summary()


def stats_document(**model) -> dict:
    processing = {"seconds": 1.5, "fps": 8.0, "device": "cpu", "frame_stride": 1}
    return build_stats(
        VIDEO, 12, {"id": "tiny", "random_weights": False, **model}, counted_summary(), processing
    )


# --- streaming exports -------------------------------------------------------------------------


@pytest.fixture()
def written(tmp_path: Path) -> Path:
    with OutputWriter(tmp_path, LABELS, (320, 240)) as writer:
        writer.write_frame(0, 0.0, empty_tracked())
        writer.write_frame(
            2,
            0.0667,
            tracked([(10, 20, 50, 80), (100.5, 0, 140.25, 30)], [1, 2], ["cow", "sheep"], [0.91, 0.6]),
        )
        writer.finish({"schema_version": 1})
    return tmp_path


def test_detections_jsonl_has_one_line_per_processed_frame(written: Path) -> None:
    lines = [json.loads(line) for line in (written / DETECTIONS).read_text().splitlines()]
    assert lines == [
        {"frame": 0, "time_s": 0.0, "detections": []},
        {
            "frame": 2,
            "time_s": 0.0667,
            "detections": [
                {"track_id": 1, "class": "cow", "score": 0.91, "box": [10.0, 20.0, 50.0, 80.0]},
                {"track_id": 2, "class": "sheep", "score": 0.6, "box": [100.5, 0.0, 140.25, 30.0]},
            ],
        },
    ]


def test_mot_rows_are_one_based_frames_with_xywh(written: Path) -> None:
    assert (written / MOT).read_text().splitlines() == [
        "3,1,10.00,20.00,40.00,60.00,0.9100,-1,-1,-1",
        "3,2,100.50,0.00,39.75,30.00,0.6000,-1,-1,-1",
    ]


def test_coco_has_categories_images_and_tracked_annotations(written: Path) -> None:
    coco = json.loads((written / COCO).read_text())
    assert coco["categories"] == [
        {"id": 0, "name": "cow", "supercategory": "object"},
        {"id": 1, "name": "sheep", "supercategory": "object"},
    ]
    assert [
        (image["id"], image["frame_index"], image["width"], image["height"]) for image in coco["images"]
    ] == [
        (1, 0, 320, 240),
        (3, 2, 320, 240),
    ]
    first, second = coco["annotations"]
    assert first == {
        "id": 1,
        "image_id": 3,
        "category_id": 0,
        "bbox": [10.0, 20.0, 40.0, 60.0],
        "area": 2400.0,
        "iscrowd": 0,
        "score": 0.91,
        "track_id": 1,
    }
    assert (second["category_id"], second["track_id"], second["bbox"]) == (1, 2, [100.5, 0.0, 39.75, 30.0])


def test_finish_leaves_only_the_named_outputs(written: Path) -> None:
    assert sorted(p.name for p in written.iterdir()) == sorted([COCO, DETECTIONS, MOT, STATS, LINES_CSV, TIMELINE_CSV,
                                                                TRACKS_CSV])


def test_a_failed_run_leaves_no_part_files(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), OutputWriter(tmp_path, LABELS, (320, 240)) as writer:
        writer.write_frame(0, 0.0, tracked([(1, 1, 5, 5)], [1], ["cow"], [0.9]))
        raise RuntimeError("stage failed")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert not (tmp_path / COCO).exists() and not (tmp_path / STATS).exists()


# --- stats.json ------------------------------------------------------------------------------


def test_stats_from_a_real_count_match_the_schema() -> None:
    stats = stats_document(device="cpu")
    validate_stats(stats)
    assert stats["video"] == {
        "width": 320,
        "height": 240,
        "fps": 29.97003,
        "fps_fraction": "30000/1001",
        "frames": 12,
        "duration_s": 0.1,
        "rotation": 0,
        "codec": "h264",
    }
    assert stats["counts"]["total_unique"] == 2
    assert stats["lines"][0]["in"] == {"cow": 1, "sheep": 1}
    assert stats["zones"][0]["name"] == "pen"
    assert len(stats["timeline"]) == 12
    json.dumps(stats)  # plain JSON types only


def test_random_weights_are_flagged_in_the_model_section() -> None:
    stats = stats_document(random_weights=True)
    validate_stats(stats)
    assert stats["model"]["note"] == RANDOM_WEIGHTS_NOTE


def test_schema_rejects_stats_without_random_weights_flag() -> None:
    stats = stats_document()
    del stats["model"]["random_weights"]
    with pytest.raises(CattleCounterError, match=r"\$\.model: 'random_weights' is a required property"):
        validate_stats(stats)


def test_schema_rejects_wrong_types_with_their_paths() -> None:
    stats = stats_document()
    stats["counts"]["total_unique"] = -1
    stats["tracks"][0]["id"] = "one"
    with pytest.raises(CattleCounterError) as caught:
        validate_stats(stats)
    assert "$.counts.total_unique" in str(caught.value) and "$.tracks[0].id" in str(caught.value)


# --- annotation --------------------------------------------------------------------------------


def test_annotator_draws_boxes_in_track_colours_lines_and_counts() -> None:
    gate = CountingLine(name="gate", start=(0, 200), end=(320, 200))
    annotator = FrameAnnotator(lines=[gate])
    image = np.full((240, 320, 3), 90, np.uint8)
    detections = tracked([(60, 60, 160, 160)], [3], ["cow"], [0.9])
    counts = {
        "total_unique": 1,
        "by_class": {"cow": 1},
        "in_frame": 1,
        "lines": {"gate": {"in": 2, "out": 1}},
    }
    out = annotator.annotate(image, detections, counts)
    assert out is image  # drawn in place
    box_colour = sv.ColorPalette.DEFAULT.by_idx(3)
    assert tuple(out[160, 110]) == (box_colour.r, box_colour.g, box_colour.b)  # bottom edge, RGB order
    assert tuple(out[200, 300]) == LINE_COLOUR
    assert (out[8:30, 8:100] != 90).any()  # the count overlay
    assert (out[100:120, 100:120] == 90).all()  # inside the box: untouched


def test_annotator_traces_follow_processed_frames_only() -> None:
    annotator = FrameAnnotator(trace_points=5)
    counts: dict = {}
    for i in range(4):
        detections = tracked([(10 + 20 * i, 10, 50 + 20 * i, 50)], [1], ["cow"], [0.9])
        annotator.annotate(np.zeros((120, 160, 3), np.uint8), detections, counts)
    annotator.annotate(np.zeros((120, 160, 3), np.uint8), detections, counts, processed=False)
    assert list(annotator._traces[1]) == [(30, 50), (50, 50), (70, 50), (90, 50)]
    for _ in range(6):  # the track is gone: its trace is forgotten after trace_points frames
        annotator.annotate(np.zeros((120, 160, 3), np.uint8), empty_tracked(), counts)
    assert 1 not in annotator._traces
