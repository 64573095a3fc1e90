"""The counting benchmark's measuring stick must stay true: sprites are where the ground truth
says, the true count is the animals actually seen, the oracle detector honours its
resolution limit (so a later tiling change is measured against a real limit), and the
counting stage alone counts exactly what the full pipeline counts."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

import cv2
import numpy as np
import pytest

from bench.counting import columns as cols
from bench.counting import tiling as tiling_column
from bench.counting.oracle import Oracle, OracleConfig, OracleDetector, box_iou
from bench.counting.render import ground_texture, render_frame
from bench.counting.runner import Prepared, counting_stage_on_video, sequence_at, write_video
from bench.counting.scene import MIN_PRESENT_FRAMES, SCENARIOS, SEEN_VISIBILITY, Scene
from ml_engine.pipeline import PipelineConfig, process_video


@pytest.fixture(scope="module")
def small_pan() -> Scene:
    """A short, small-frame pan with rotation, zoom and walking animals: every geometric path."""
    scenario = replace(SCENARIOS["pan_rotate"], name="test_pan", width=640, height=360, frames=40,
                       animal_px=(24.0, 40.0), herd_spread=60.0, pan_px=4.0, zoom=(1.0, 0.8), walking=0.8)
    return Scene(scenario, seed=3)


def _sprite_difference(scene: Scene, f: int, texture: np.ndarray) -> np.ndarray:
    """How much drawing the animals changed each pixel (sum over RGB)."""
    with_animals = render_frame(scene, f, texture).astype(int)
    ground_only = render_frame(scene, f, texture, animals=False).astype(int)
    return np.abs(with_animals - ground_only).sum(axis=2)


def test_sprites_are_drawn_inside_their_ground_truth_boxes(small_pan):
    texture = ground_texture(small_pan)
    gt = small_pan.ground_truth
    checked = 0
    for f in range(0, 40, 4):
        difference = _sprite_difference(small_pan, f, texture)
        mask = difference > 0
        boxes = gt.boxes[f]
        on_screen = gt.in_frame[f] > 0
        # nothing is drawn outside every box (cv2's antialiasing tints up to 2 px beyond an edge)
        allowed = np.zeros_like(mask)
        for x1, y1, x2, y2 in boxes[on_screen]:
            allowed[max(int(y1 - 2), 0):int(np.ceil(y2 + 2)), max(int(x1 - 2), 0):int(np.ceil(x2 + 2))] = True
        assert not (mask & ~allowed).any(), f"frame {f}: sprite pixels outside every ground-truth box"
        # an animal fully visible, inside the frame and apart from the others fills its box
        iou = box_iou(boxes, boxes)
        np.fill_diagonal(iou, 0)
        for a in np.flatnonzero((gt.visibility[f] == 1) & (gt.in_frame[f] == 1)):
            x1, y1, x2, y2 = boxes[a]
            near = (boxes[:, 0] < x2 + 6) & (boxes[:, 2] > x1 - 6) & (boxes[:, 1] < y2 + 6) & (boxes[:, 3] > y1 - 6)
            if near.sum() > 1:  # another sprite (or its fringe) would be in the window
                continue
            window = difference[max(int(y1) - 3, 0):int(y2) + 4, max(int(x1) - 3, 0):int(x2) + 4]
            ys, xs = np.nonzero(window)
            drawn = np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]) + [max(int(x1) - 3, 0),
                                                                                  max(int(y1) - 3, 0)] * 2
            # the sprite reaches its box's edges (within 1 px) and its antialiasing fringe
            # goes at most 2 px beyond them
            outward = np.concatenate([boxes[a][:2] - drawn[:2], drawn[2:] - boxes[a][2:]])
            assert np.all(outward >= -1.0) and np.all(outward <= 2.1), f"frame {f} animal {a}: {drawn} vs {boxes[a]}"
            checked += 1
    assert checked >= 10, "too few isolated animals to check: the test scene changed"


def test_trees_hide_the_animals_the_ground_truth_calls_hidden(small_pan):
    texture = ground_texture(small_pan)
    gt = small_pan.ground_truth
    hidden = np.argwhere(gt.visibility == 0)
    hidden = [(f, a) for f, a in hidden if gt.in_frame[f, a] == 1][:5]
    if not hidden:
        pytest.skip("no animal fully under a tree in this scene")
    for f, a in hidden:
        x1, y1, x2, y2 = gt.boxes[f, a]
        mask = _sprite_difference(small_pan, f, texture) > 0
        others = np.delete(gt.boxes[f], a, axis=0)
        if (box_iou(gt.boxes[f, a][None], others) > 0).any():
            continue
        assert not mask[int(y1) + 2:int(y2) - 1, int(x1) + 2:int(x2) - 1].any()


def test_true_count_is_the_animals_seen_long_enough(small_pan):
    gt = small_pan.ground_truth
    present, seen = Counter(), Counter()
    for f in range(small_pan.frames):
        ids, boxes = gt.frame(f)
        assert np.all(boxes[:, 2] > boxes[:, 0]) and np.all(boxes[:, 3] > boxes[:, 1])
        assert np.all(boxes >= 0) and np.all(boxes[:, [0, 2]] <= 640) and np.all(boxes[:, [1, 3]] <= 360)
        present.update(ids.tolist())
        seen.update(np.flatnonzero((gt.visibility[f] >= SEEN_VISIBILITY) & (gt.in_frame[f] >= 0.5)).tolist())
    counted = {a for a, n in seen.items() if n >= MIN_PRESENT_FRAMES}
    assert gt.true_count == len(counted) == len(gt.counted_ids())
    half_visible = {a for a, n in present.items() if n >= MIN_PRESENT_FRAMES}
    assert gt.true_count_half_visible == len(half_visible) and half_visible <= counted  # the stricter count
    assert 5 <= gt.true_count <= small_pan.animals


def test_oracle_never_detects_below_its_resolution_limit():
    scene = Scene(SCENARIOS["small_4k"].short(10), seed=0)
    oracle = Oracle(scene)
    cfg = oracle.config
    for f in range(0, 10, 3):
        whole = oracle.detect(f)
        # 10-22 px animals in a 3840 px frame seen at 640 px: all far below the limit
        assert (whole.truth >= 0).sum() == 0
        # the same frame cut into 960x540 tiles, each seen at 640 px: now most are found
        found, findable = set(), set()
        for x in range(0, 3840, 960):
            for y in range(0, 2160, 540):
                region = (x, y, x + 960, y + 540)
                scale = cfg.input_size / 960
                tile = oracle.detect(f, region=region, scale=scale)
                gt_boxes = np.clip(scene.ground_truth.boxes[f], [x, y, x, y], [x + 960, y + 540] * 2)
                areas = np.prod(np.maximum(gt_boxes[:, 2:] - gt_boxes[:, :2], 0), axis=1)
                for a in tile.truth[tile.truth >= 0]:
                    assert np.sqrt(areas[a]) * scale >= cfg.min_px
                found.update(tile.truth[tile.truth >= 0].tolist())
                big = (np.sqrt(areas) * scale >= cfg.sure_px) & scene.ground_truth.present[f]
                findable.update(np.flatnonzero(big).tolist())
        assert len(findable) >= 10
        assert len(found & findable) >= 0.7 * len(findable)


def test_oracle_gives_an_animal_the_same_box_in_a_tile_and_in_the_whole_frame():
    scene = Scene(SCENARIOS["pan"].short(5), seed=1)
    oracle = Oracle(scene)
    whole = oracle.detect(2)
    region = (0.0, 0.0, 1920.0, 1080.0)
    same_scale = oracle.detect(2, region=region, scale=oracle.full_frame_scale())
    assert np.array_equal(whole.truth, same_scale.truth) and np.allclose(whole.xyxy, same_scale.xyxy)
    # at a finer scale only the quantisation jitter shrinks: boxes move by less than their jitter
    fine = oracle.detect(2, scale=1.0)
    common = np.intersect1d(whole.truth[whole.truth >= 0], fine.truth[fine.truth >= 0])
    assert len(common) >= 5
    for a in common:
        b1, b2 = whole.xyxy[whole.truth == a][0], fine.xyxy[fine.truth == a][0]
        assert box_iou(b1[None], b2[None])[0, 0] > 0.7


def test_a_perfect_oracle_makes_the_product_count_exact():
    """With no misses, no noise and no false positives, the product's counting stage must
    count exactly the animals seen: what is left of the benchmark's error is the detector's."""
    scenario = replace(SCENARIOS["pan"], name="test_perfect", frames=60, trees=0, walking=0.0, crossing=False,
                       jitter_px=0.0, drift_px=0.0)
    scene = Scene(scenario, seed=2)
    perfect = OracleConfig(miss=0, crowd_miss=0, occlusion_miss=0, edge_miss=0, small_miss=0, jitter=0,
                           jitter_input_px=0, score_sd=0, false_per_frame=0, min_px=0)
    oracle = Oracle(scene, perfect)
    frames = list(range(scene.frames))
    present = scene.ground_truth.present
    detections = []
    for f in frames:
        det = oracle.detect(f, threshold=cols.LOW_THRESHOLD)
        keep = present[f, det.truth]  # only the animals the ground truth calls present
        detections.append(type(det)(det.xyxy[keep], det.scores[keep], det.truth[keep]).to_supervision())
    seq = cols.Sequence(frames=frames, fps=30.0, source_fps=30.0, detections=detections, small_grey=None,
                        frame_width=scenario.width)
    tracked = cols.run_baseline(seq)
    ever_present = int((present.sum(axis=0) >= cols.MIN_HITS).sum())
    assert tracked.count == ever_present


def test_the_pipeline_oracle_counts_frames_by_stride_and_rejects_wrong_sizes():
    scene = Scene(SCENARIOS["pan"].short(12), seed=0)
    oracle = Oracle(scene)
    detector = OracleDetector(oracle, stride=5)
    assert detector.detect([], 0.25) == []
    image = np.zeros((1080, 1920, 3), dtype=np.uint8)
    got = detector.detect([image, image], 0.25)
    for result, f in zip(got, (0, 5), strict=True):
        assert np.allclose(result.xyxy, oracle.detect(f, threshold=0.25).xyxy)
    with pytest.raises(ValueError, match="oracle for 1920x1080"):
        detector.detect([cv2.resize(image, (960, 540))], 0.25)


@pytest.mark.parametrize("stride", [1, 3])
def test_the_full_pipeline_counts_exactly_what_the_counting_stage_alone_counts(tmp_path, stride):
    """The benchmark measures trackers on the counting stage alone; this is only worth
    something if the real pipeline (x264 file, PyAV decode, detector interface, tracking,
    counting) gives the very same tracks on the same detections."""

    scenario = replace(SCENARIOS["jumps"], name="test_pipeline", width=640, height=360, frames=45,
                       animal_px=(28.0, 40.0), herd_spread=50.0, pan_px=3.0, jump_every_s=0.5)
    scene = Scene(scenario, seed=5)
    video = tmp_path / "flyover.mp4"
    write_video(scene, video)
    result = process_video(video, tmp_path / "out", OracleDetector(Oracle(scene), stride),
                           PipelineConfig(frame_stride=stride))
    detections = Oracle(scene).sequence(cols.LOW_THRESHOLD)
    seq = sequence_at(Prepared(scene, detections, None, 0.0), stride, with_frames=False)
    alone = counting_stage_on_video(video, seq)
    assert result.stats["processing"]["camera_motion_frames"] == len(seq.frames)
    assert result.stats["counts"]["total_unique"] == alone.count >= 5
    assert result.stats["tracks"] == alone.tracks


@pytest.mark.heavy
def test_the_tiling_columns_pipeline_check_compares_the_pipeline_with_its_own_defaults(tmp_path):
    """bench/counting/tiling.py's check: the real pipeline with TILING=auto on 4K frames gives
    the tracks of the counting stage (the pipeline's default tracker and stitching) fed the
    column's tiled detections; it once compared against ByteTrack and reported a mismatch."""
    check = tiling_column.pipeline_check("small_4k", 0, 20, "auto", str(tmp_path))
    assert check["views"] == 20 * 33 and check["forward_passes"] == 20
    assert check["pipeline_count"] == check["counting_stage_count"] >= 5
    assert check["tracks_identical"]



def test_without_frames_at_stride_5_a_pan_is_read_from_the_detections():
    """Fed the noisy oracle's detections but no frames, at stride 5 (a 45 px pan between
    processed frames), the counter reads the pan from the detections and counts the benchmark's
    pan flight exactly; taking image positions for ground ones it counted 31 of 42."""
    scene = Scene(SCENARIOS["pan"], seed=0)
    prep = Prepared(scene, Oracle(scene).sequence(cols.LOW_THRESHOLD), np.zeros((0,)), 0.0)
    tracked = cols.run_column("frameless", sequence_at(prep, 5, with_frames=False))
    assert (tracked.count, scene.ground_truth.true_count) == (42, 42)
