"""Camera-motion compensation: the estimate itself, and ids kept through a rendered pan.

The pan is one of the counting benchmark's scenes (bench/counting), rendered to real frames,
with perfect detections so that any id change is the tracker's.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace

import cv2
import numpy as np
import pytest
import supervision as sv

from bench.counting.oracle import Oracle, OracleConfig
from bench.counting.render import ground_texture, render_frame
from bench.counting.scene import SCENARIOS, Scene
from ml_engine.counting import CameraFrame, CameraMotion, CountingConfig, ObjectCounter, camera_frame
from ml_engine.counting.tracker import LiveTracker, reach_similarity, runner_like

PERFECT = OracleConfig(miss=0, crowd_miss=0, occlusion_miss=0, edge_miss=0, small_miss=0, jitter=0,
                       jitter_input_px=0, score_sd=0, false_per_frame=0, min_px=0)


def textured(width: int = 960, height: int = 540, seed: int = 0) -> np.ndarray:
    """Grass-like grey noise, blurred so optical flow has corners to follow."""
    noise = np.random.default_rng(seed).integers(0, 255, (height, width), dtype=np.uint8)
    return cv2.GaussianBlur(noise, (0, 0), 2.0)


def test_a_shifted_frame_gives_the_shift_in_frame_pixels() -> None:
    ground = textured(1200, 600)
    motion = CameraMotion()
    first = camera_frame(ground[:, 100:1060])  # 960 wide: estimated at 480, scale 2
    second = camera_frame(ground[:, 130:1090])  # the camera moved 30 px right: content moves left
    assert first.scale == pytest.approx(2.0)
    assert np.allclose(motion.estimate(first), np.eye(2, 3))  # nothing to compare with yet
    matrix = motion.estimate(second)
    assert matrix[0, 2] == pytest.approx(-30, abs=1.5)
    assert matrix[1, 2] == pytest.approx(0, abs=1.5)
    assert np.allclose(matrix[:, :2], np.eye(2), atol=0.01)


def test_animals_moving_on_plain_ground_are_not_camera_motion() -> None:
    # the only corners are on the animals: masked out, too few points are left, so no motion
    plain = np.full((270, 480), 90, dtype=np.uint8)
    motion = CameraMotion()
    boxes = []
    for step in range(3):
        frame = plain.copy()
        boxes = np.array([[100 + 20 * step, 100, 140 + 20 * step, 130], [300 + 20 * step, 50, 330 + 20 * step, 80]])
        for x1, y1, x2, y2 in boxes:
            frame[y1:y2, x1:x2] = textured(x2 - x1, y2 - y1, seed=int(x1))
        matrix = motion.estimate(CameraFrame(frame, 1.0), boxes)
    assert np.allclose(matrix, np.eye(2, 3))
    unmasked = CameraMotion()
    for step in range(3):  # the same frames without the boxes: the herd reads as a pan
        frame = plain.copy()
        for x1, y1, x2, y2 in boxes - [20 * (2 - step), 0, 20 * (2 - step), 0]:
            frame[y1:y2, x1:x2] = textured(x2 - x1, y2 - y1, seed=int(x1))
        matrix = unmasked.estimate(CameraFrame(frame, 1.0))
    assert abs(matrix[0, 2]) > 5


def _ids_through_pan(tracker: str, stride: int) -> tuple[dict[int, set[int]], int, int]:
    scenario = replace(SCENARIOS["pan"], name="test_cmc_pan", width=640, height=360, frames=90, trees=0,
                       crossing=False, walking=0.0, animal_px=(24.0, 36.0), herd_spread=60.0, pan_px=6.0,
                       jitter_px=0.0, drift_px=0.0)
    scene = Scene(scenario, seed=1)
    oracle, present, texture = Oracle(scene, PERFECT), scene.ground_truth.present, ground_texture(scene)
    counter = ObjectCounter(CountingConfig(fps=30 / stride, tracker=tracker, stitching=False))
    ids_of_animal: dict[int, set[int]] = defaultdict(set)
    processed = list(range(0, scenario.frames, stride))
    for f in processed:
        found = oracle.detect(f, threshold=0.25)
        keep = present[f, found.truth]  # only the animals the ground truth calls present
        detections = type(found)(found.xyxy[keep], found.scores[keep], found.truth[keep]).to_supervision()
        tracked = counter.update(f, f / 30, detections, render_frame(scene, f, texture))
        for animal, track_id in zip(tracked.data.get("truth", []), tracked.tracker_id, strict=True):
            ids_of_animal[int(animal)].add(int(track_id))
    animals = int((present[processed].sum(axis=0) >= 3).sum())
    return ids_of_animal, counter.summary().total_unique, animals


def test_camera_motion_compensation_keeps_every_id_through_a_fast_pan_at_stride_5() -> None:
    # 6 px a frame at stride 5: a 30 px step between processed frames, about a body length
    ids, count, animals = _ids_through_pan("botsort", stride=5)
    assert count == animals > 20
    assert all(len(track_ids) == 1 for track_ids in ids.values())  # no animal changed id
    # without compensation the predicted boxes miss: ids break and animals are lost
    _, count_without, _ = _ids_through_pan("bytetrack", stride=5)
    assert abs(count_without - animals) > 5


def _ids_of_a_runner(tracker: str, step: float, updates: int = 12) -> list[int]:
    """Tracker ids given to one animal (30 px) running ``step`` px between processed frames."""
    live = LiveTracker(tracker, fps=6.0, track_threshold=0.5, min_hits=3, track_buffer_s=1.0, match_iou=0.1)
    ids = []
    for n in range(updates):
        x = 100 + step * n
        box = np.array([[x, 300, x + 30, 330]], dtype=float)
        tracked = live.update(sv.Detections(xyxy=box, confidence=np.array([0.9])), None)
        ids += [int(i) for i in tracked.tracker_id if i >= 0]
    return ids


def test_an_animal_running_past_its_own_box_is_tracked_from_its_third_frame() -> None:
    # the benchmark's stampede at stride 5: 1.7 body lengths between processed frames, never
    # overlapping itself; a new track used to stay where it was first seen and never be confirmed
    ids = _ids_of_a_runner("botsort", step=51)
    assert len(ids) == 12 - 2 and len(set(ids)) == 1  # confirmed on its third frame, one id after
    assert _ids_of_a_runner("bytetrack", step=51) == []  # boxes alone: never confirmed
    slow = _ids_of_a_runner("botsort", step=5)
    assert len(slow) == 12 - 2 and len(set(slow)) == 1


def _ids_of_a_runner_beside_a_herd(step: float, fps: float = 6.0, on_frames: bool = True) -> list[int]:
    """Tracker ids given to an animal (30 px) that runs ``step`` px between processed
    frames along a standing herd (30 px animals, 60 px apart, 20 px beside its path), from the
    fifth frame on, when every animal of the herd has a confirmed track that matches each frame.
    The camera stands still, measured on the frames (``on_frames``) or read from the detections."""
    live = LiveTracker("botsort", fps=fps, track_threshold=0.5, min_hits=3, track_buffer_s=1.0, match_iou=0.1)
    herd = [np.array([x, 300, x + 30, 330], dtype=float) for x in range(100, 460, 60)]
    ids = []
    for n in range(14):
        boxes = list(herd)
        if n >= 5:
            x = 60 + step * (n - 5)
            boxes.append(np.array([x, 350, x + 30, 380], dtype=float))
        detections = sv.Detections(xyxy=np.array(boxes), confidence=np.full(len(boxes), 0.9))
        tracked = live.update(detections, np.eye(2, 3), measured_on_frames=on_frames)
        runner = tracked.xyxy[:, 1] == 350
        ids += [int(i) for i in tracked.tracker_id[runner] if i >= 0]
    return ids


def test_an_animal_running_past_a_tracked_herd_at_stride_5_is_tracked_from_its_third_frame() -> None:
    # flyover_120 at stride 5: a herd runs through a standing one, about a body length between
    # processed frames. The herd's tracks all matched, so a leftover detection beside them is an
    # animal none of them holds: the runner's new track reaches for it and is confirmed.
    ids = _ids_of_a_runner_beside_a_herd(step=40)
    assert len(ids) == 9 - 2 and len(set(ids)) == 1
    # frames 1/10 s apart (stride 3): a runner would overlap itself, so the crowd guard holds
    assert _ids_of_a_runner_beside_a_herd(step=40, fps=10.0) == []
    # beyond 1.5 box lengths a step beside a herd: more likely a neighbour than a runner
    assert _ids_of_a_runner_beside_a_herd(step=50) == []
    # the camera's motion read from the detections: a match is less sure, the guard holds
    assert _ids_of_a_runner_beside_a_herd(step=40, on_frames=False) == []


def test_a_runner_beside_a_herd_leaves_its_box_behind_at_a_step_and_keeps_its_size() -> None:
    track = np.array([[0, 0, 30, 30]], dtype=float)
    detections = np.array([
        [40, 0, 70, 30],  # 1.33 box lengths on, no overlap, same size: a runner
        [50, 0, 80, 30],  # 1.67 lengths on: too far
        [35, 0, 75, 30],  # 1.33 lengths on and 1.33 times the area: still alike
        [32, 0, 82, 30],  # 1.4 lengths on but 1.67 times the area: another animal (the general reach allows 2x)
        [20, 0, 50, 30],  # overlapping a third of it: a neighbour as likely as the animal itself
    ], dtype=float)
    iou = np.array([[0.0, 0.0, 0.0, 0.0, 0.2]])
    assert runner_like(track, detections, iou).tolist() == [[True, False, True, False, False]]
    assert (reach_similarity(track, detections) > 0).all()  # the general reach takes them all
