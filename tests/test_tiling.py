"""Tiled inference: the tiles' geometry, the mapping of boxes back to the frame, the merge
across seams (hand-built boxes, exact), one batched forward pass per batch of frames on the
real tiny model, and a short clip end to end where tiling finds what the whole frame cannot."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import supervision as sv

from core.errors import InvalidInput
from core.jobs import JobParams
from ml_engine.detection import DetectionConfig, TiledDetector
from ml_engine.outputs import validate_stats
from ml_engine.pipeline import PipelineConfig, process_video
from ml_engine.tiling import View, merge_in_clusters, merge_views, parse_tiling, plan_tiles, tile_regions
from tests.fixtures_video import write_clip

pytest_plugins = ["tests.fixtures_models"]


def _dets(boxes, scores, classes=None) -> sv.Detections:
    classes = [0] * len(boxes) if classes is None else classes
    return sv.Detections(
        xyxy=np.array(boxes, dtype=np.float32).reshape(-1, 4),
        confidence=np.array(scores, dtype=np.float32),
        class_id=np.array(classes, dtype=int),
        data={"class_name": np.array(["cow"] * len(boxes), dtype=str)},
    )


# --- geometry ------------------------------------------------------------------------------------


def test_tiles_overlap_cover_the_frame_and_the_last_ones_end_on_its_edge():
    # 400 px tiles, 20 % overlap: a step of 320; the last column/row moved back onto the edge
    regions = tile_regions(1000, 500, 400, 400, overlap=0.2)
    assert regions == [
        (0, 0, 400, 400), (320, 0, 720, 400), (600, 0, 1000, 400),
        (0, 100, 400, 500), (320, 100, 720, 500), (600, 100, 1000, 500),
    ]
    covered = np.zeros((500, 1000), dtype=bool)
    for x0, y0, x1, y1 in regions:
        covered[y0:y1, x0:x1] = True
    assert covered.all()


def test_auto_tiles_a_4k_frame_but_leaves_1080p_whole():
    auto = parse_tiling("auto")
    uhd = plan_tiles(auto, (3840, 2160), model_input=(640, 360), model_tile=(640, 640))
    assert uhd.tiled and uhd.tile_size == (640, 640)
    assert uhd.regions[-1] == (0, 0, 3840, 2160)  # the full-frame view comes last
    assert len(uhd.regions) == 8 * 4 + 1
    full_hd = plan_tiles(auto, (1920, 1080), model_input=(640, 360), model_tile=(640, 640))
    assert not full_hd.tiled and full_hd.regions == ((0, 0, 1920, 1080),)
    # a model that takes frames whole never needs tiles; an explicit size always tiles
    assert not plan_tiles(auto, (3840, 2160), None, None).tiled
    sized = plan_tiles(parse_tiling("960x540"), (1920, 1080), (640, 360), (640, 640), full_frame=False)
    assert sized.tiled and (0, 0, 1920, 1080) not in sized.regions and len(sized.regions) == 9


@pytest.mark.parametrize("text", ["", "on", "640", "640x", "10x10", "640x99999", "-640x640", "auto,off"])
def test_a_bad_tiling_value_is_refused_at_submit_with_a_clear_message(text):
    with pytest.raises(InvalidInput, match="tiling must be auto, off or a tile size WxH"):
        parse_tiling(text)
    with pytest.raises(ValueError, match="tiling must be auto, off"):
        JobParams(tiling=text)
    assert JobParams(tiling=" 800X600 ").tiling == "800x600"
    assert parse_tiling("AUTO") == DetectionConfig().tiling


def test_the_engine_takes_tiling_parsed_not_as_text():
    with pytest.raises(InvalidInput, match="tiling must be a TilingSetting"):
        DetectionConfig(tiling="640x640")  # type: ignore[arg-type]


def _detecting(tiling: str = "auto", **detection) -> DetectionConfig:
    return DetectionConfig(tiling=parse_tiling(tiling), **detection)


# --- merging across seams ------------------------------------------------------------------------


def test_an_animal_cut_by_a_seam_counts_once_with_its_whole_box():
    # tiles A = (0, 0, 400, 400) and B = (320, 0, 720, 400); an animal at x 380..420
    tile_a = _dets([(380, 100, 400, 140)], [0.6])  # the part inside A, clipped at A's edge
    tile_b = _dets([(380, 100, 420, 140), (500, 50, 530, 70)], [0.9, 0.8])
    merged = merge_views([tile_a, tile_b])
    order = np.argsort(merged.xyxy[:, 0])
    np.testing.assert_allclose(merged.xyxy[order], [[380, 100, 420, 140], [500, 50, 530, 70]])
    np.testing.assert_allclose(merged.confidence[order], [0.9, 0.8])


def test_the_merged_box_is_the_union_when_each_tile_saw_a_part():
    tile_a = _dets([(380, 100, 400, 140)], [0.7])
    tile_b = _dets([(385, 102, 420, 141)], [0.8])
    merged = merge_views([tile_a, tile_b])
    np.testing.assert_allclose(merged.xyxy, [[380, 100, 420, 141]])
    np.testing.assert_allclose(merged.confidence, [0.8])


def test_a_partial_box_that_outscores_the_whole_one_still_gathers_every_part_of_the_animal():
    # one animal: the whole frame saw it whole, one tile its top part (the best score), another
    # tile its right part. The right part overlaps the top part by 40 % of the smaller box only,
    # but lies inside the whole box the top part took in: it is the same animal.
    whole_frame = _dets([(0, 0, 100, 100)], [0.7])
    top_tile = _dets([(0, 0, 100, 40)], [0.9])
    right_tile = _dets([(60, 0, 100, 100)], [0.8])
    merged = merge_views([whole_frame, top_tile, right_tile])
    np.testing.assert_allclose(merged.xyxy, [[0, 0, 100, 100]])
    np.testing.assert_allclose(merged.confidence, [0.9])


def test_a_large_animal_takes_its_own_box_from_the_other_view_not_a_small_neighbours_inside_it():
    # a large animal with a small one lying over its corner, both seen by two views. The small
    # box lies inside the large one (intersection over the smaller box 1.0), yet the large
    # animal's partner in the other view is its own, nearly identical box (about 0.9).
    view_a = _dets([(0, 0, 100, 100), (60, 60, 90, 90)], [0.9, 0.8])
    view_b = _dets([(-3, 2, 100, 103), (61, 59, 91, 89)], [0.85, 0.8])
    merged = merge_views([view_a, view_b])
    order = np.argsort(merged.xyxy[:, 0])
    np.testing.assert_allclose(merged.xyxy[order], [[-3, 0, 100, 103], [60, 59, 91, 90]])
    np.testing.assert_allclose(merged.confidence[order], [0.9, 0.8])


def test_overlapping_animals_of_one_tile_and_other_classes_are_not_merged():
    # two animals pressed together in one tile (the model answered once for each), and a
    # sheep under a cow seen by another tile: three objects, not one
    same_tile = _dets([(100, 100, 140, 140), (105, 105, 140, 140)], [0.9, 0.8])
    other_tile = _dets([(100, 100, 140, 140), (110, 110, 130, 130)], [0.7, 0.6], classes=[0, 1])
    merged = merge_views([same_tile, other_tile])
    assert len(merged) == 3
    assert sorted(merged.class_id.tolist()) == [0, 0, 1]
    # and the whole-frame view's copy of the first cow went into one of them, not a fourth
    np.testing.assert_allclose(merged.confidence[merged.class_id == 0], [0.9, 0.8])


def test_merging_cluster_by_cluster_equals_merging_everything_at_once() -> None:
    """merge_in_clusters (bounded memory over a mosaic) gives exactly merge_views' result."""
    rng = np.random.default_rng(7)
    per_view = []
    for _view in range(12):  # overlapping views of many animals, some cut, some crowded
        centres = rng.uniform(0, 2000, size=(40, 2))
        sizes = rng.uniform(8, 40, size=(40, 2))
        xyxy = np.concatenate([centres - sizes / 2, centres + sizes / 2], axis=1).astype(np.float32)
        per_view.append(sv.Detections(xyxy=xyxy, confidence=rng.uniform(0.3, 1, 40).astype(np.float32),
                                      class_id=rng.integers(0, 2, 40)))
    whole = merge_views(per_view)
    clustered = merge_in_clusters(per_view, cell=256)
    assert len(clustered) == len(whole) < 12 * 40
    key = lambda d: sorted(map(tuple, np.round(d.xyxy, 3).tolist()))  # noqa: E731
    assert key(clustered) == key(whole)


def test_merging_a_packed_herd_whose_boxes_all_touch_takes_memory_in_proportion_to_it() -> None:
    """One cluster of 4,000 touching boxes (a packed pen seen by two views; random weights at a
    low threshold look the same) is compared a few rows at a time: its every-box-with-every-box
    matrices would take over a gigabyte (a 24 MP raster's 10,000 boxes took 9 GB)."""
    import tracemalloc

    rng = np.random.default_rng(3)
    ys, xs = np.mgrid[0:40, 0:50]
    centres = np.stack([xs.ravel() * 10.0, ys.ravel() * 10.0], axis=1)  # 2,000 animals, 12 px, 10 px apart
    per_view = []
    for _view in range(2):
        seen = centres + rng.normal(0, 0.3, centres.shape)
        xyxy = np.concatenate([seen - 6, seen + 6], axis=1).astype(np.float32)
        per_view.append(sv.Detections(xyxy=xyxy, confidence=rng.uniform(0.3, 1, len(xyxy)).astype(np.float32),
                                      class_id=np.zeros(len(xyxy), dtype=int)))
    tracemalloc.start()
    try:
        merged = merge_in_clusters(per_view, cell=256)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(merged) == 2000  # each animal once, no neighbour folded in
    assert peak < 150e6, f"{peak / 1e6:.0f} MB"



# --- the one tiled detector (video, live and stills) ---------------------------------------------


class _Views:
    """BlobDetector, recording each forward pass's views (the model's inputs)."""

    def __init__(self, detector):
        self.detector, self.passes = detector, []

    def __getattr__(self, name):
        return getattr(self.detector, name)

    def detect(self, images, threshold, class_names=None):
        self.passes.append([("whole", image.shape[:2]) for image in images])
        return self.detector.detect(images, threshold, class_names)

    def detect_views(self, images, views, threshold, class_names=None):
        self.passes.append(list(views))
        return self.detector.detect_views(images, views, threshold, class_names)


def test_one_tiled_detector_batches_the_views_of_a_batch_of_frames_and_merges_each_frame():
    from tests.stills_oracle import Animal, BlobDetector, paint

    # two 600x400 frames cut into 256x256 tiles (3 x 2 each, no whole-frame view), one 200x150
    # frame that fits a tile (seen whole); animals on the seams of the tiled ones
    big = [paint(np.zeros((400, 600, 3), np.uint8), [Animal(205, 200), Animal(400, 150, "sheep")]),
           paint(np.zeros((400, 600, 3), np.uint8), [Animal(300, 144)])]
    small = paint(np.zeros((150, 200, 3), np.uint8), [Animal(50, 50), Animal(150, 100)])
    model = _Views(BlobDetector())
    config = DetectionConfig(tiling=parse_tiling("256x256"), full_frame=False, tile_batch_size=4)
    detector = TiledDetector(model, config, threshold=0.5)
    found = detector.detect([big[0], small, big[1]], frames=[10, 11, 12])
    assert [len(d) for d in found] == [2, 2, 1]  # each seam-cut animal once, in its own frame
    assert sorted(found[0].data["class_name"].tolist()) == ["cow", "sheep"]
    assert model.passes[0] == [("whole", (150, 200))]  # the small frame: one whole view
    tiled = [view for views in model.passes[1:] for view in views]
    assert [len(views) for views in model.passes[1:]] == [4, 4, 4]  # 12 tiles, at most 4 a pass
    assert [view.frame for view in tiled] == [10] * 6 + [12] * 6  # the views say which frame
    assert detector.describe() == {"setting": "256x256", "tiled": True, "tile": "256x256",
                                   "tiles_per_frame": 6, "overlap": 0.2, "full_frame_pass": False}


def test_class_names_are_checked_explicitly_before_anything_is_detected(tmp_path):
    from ml_engine.stills import StillsConfig, StillsRun
    from tests.stills_oracle import BlobDetector

    model = _Views(BlobDetector())
    with pytest.raises(InvalidInput, match="unicorn"):
        TiledDetector(model, DetectionConfig(classes=["cow", "unicorn"]), threshold=0.5).check_classes()
    with pytest.raises(InvalidInput, match="unicorn"):  # stills: when the run is made, before any file
        StillsRun(tmp_path / "out", model, StillsConfig(detection=DetectionConfig(classes=["unicorn"])))
    assert model.passes == []


# --- the real tiny model ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_detr_detector(tiny_detr_dir):
    from ml_engine.detector import Detector

    return Detector.load(str(tiny_detr_dir), device="cpu")


@pytest.mark.parametrize("arch", ["rt_detr_v2", "detr"])  # fixed-size input; aspect-keeping and padded
def test_view_boxes_are_the_crops_boxes_moved_to_frame_pixels(arch, request):
    detector = request.getfixturevalue("tiny_rtdetr_detector" if arch == "rt_detr_v2" else "tiny_detr_detector")
    _check_view_mapping(detector)


def _check_view_mapping(detector) -> None:
    rng = np.random.default_rng(3)
    frame = rng.integers(0, 256, (500, 900, 3), dtype=np.uint8)
    region = (300, 100, 620, 420)
    crop = np.ascontiguousarray(frame[100:420, 300:620])
    [via_view] = detector.detect_views([frame], [View(0, 0, region)], threshold=0.0)
    [via_crop] = detector.detect([crop], threshold=0.0)
    assert len(via_view) == len(via_crop) > 0
    np.testing.assert_allclose(via_view.xyxy, via_crop.xyxy + np.array([300, 100, 300, 100]), atol=1e-3)
    assert (via_view.xyxy[:, [0, 2]] >= 300).all() and (via_view.xyxy[:, [0, 2]] <= 620).all()
    assert (via_view.xyxy[:, [1, 3]] >= 100).all() and (via_view.xyxy[:, [1, 3]] <= 420).all()
    with pytest.raises(InvalidInput, match="not inside"):
        detector.detect_views([frame], [View(0, 0, (800, 0, 1000, 100))], threshold=0.0)


class ForwardCounter:
    """Counts the real model's forward passes and the batch each one took (a torch hook)."""

    def __init__(self, detector) -> None:
        self.batches: list[int] = []
        model = detector._model
        self._handle = model.register_forward_pre_hook(self._seen, with_kwargs=True)

    def _seen(self, module, args, kwargs) -> None:
        self.batches.append(int(kwargs["pixel_values"].shape[0]))

    def close(self) -> None:
        self._handle.remove()


@pytest.fixture
def forwards(tiny_rtdetr_detector):
    counter = ForwardCounter(tiny_rtdetr_detector)
    yield counter
    counter.close()


def _clip(tmp_path: Path, frames: int, width: int, height: int) -> Path:
    return write_clip(tmp_path / "clip.mp4", width=width, height=height, frames=frames)


@pytest.mark.heavy
def test_all_tiles_of_a_batch_of_frames_go_through_one_forward_pass(tmp_path, tiny_rtdetr_detector, forwards):
    # 1280x720 into the 320x320 tiny model is 4x: auto tiles it, 15 tiles + the whole frame
    clip = _clip(tmp_path, frames=10, width=1280, height=720)
    config = PipelineConfig(detection=_detecting(tile_batch_size=64, threshold=0.9), batch_size=4, preset="ultrafast")
    result = process_video(clip, tmp_path / "out", tiny_rtdetr_detector, config)
    tiling = result.stats["processing"]["tiling"]
    assert tiling == {"setting": "auto", "tiled": True, "tile": "320x320", "tiles_per_frame": 15,
                      "overlap": 0.2, "full_frame_pass": True, "frames_per_batch": 4}
    assert forwards.batches == [4 * 16, 4 * 16, 2 * 16]  # 10 frames: batches of 4, 4, 2 frames
    validate_stats(result.stats)


@pytest.mark.heavy
def test_the_tile_batch_bounds_every_forward_pass_even_for_a_frame_with_many_tiles(
    tmp_path, tiny_rtdetr_detector, forwards
):
    # 128 px tiles of a 1280x720 frame: 13 x 7 = 91 tiles + the whole frame, more than the cap
    clip = _clip(tmp_path, frames=3, width=1280, height=720)
    config = PipelineConfig(detection=_detecting("128x128", tile_batch_size=40, threshold=0.9), batch_size=4,
                            preset="ultrafast")
    result = process_video(clip, tmp_path / "out", tiny_rtdetr_detector, config)
    assert result.stats["processing"]["tiling"]["frames_per_batch"] == 1
    assert max(forwards.batches) <= 40
    assert sum(forwards.batches) == 3 * 92 and len(forwards.batches) == 3 * 3  # 40 + 40 + 12 per frame


def test_tiling_off_and_a_frame_near_the_input_size_keep_one_view_per_frame(tmp_path, tiny_rtdetr_detector, forwards):
    clip = _clip(tmp_path, frames=6, width=640, height=360)  # 2x the tiny model's input: auto stays off
    for tiling in ("auto", "off"):
        forwards.batches.clear()
        result = process_video(clip, tmp_path / tiling, tiny_rtdetr_detector,
                               PipelineConfig(detection=_detecting(tiling, threshold=0.9), batch_size=4,
                                              preset="ultrafast"))
        assert result.stats["processing"]["tiling"] == {"setting": tiling, "tiled": False}
        assert forwards.batches == [4, 2]


# --- end to end: small animals that only tiles can see ----------------------------------------------


@pytest.mark.heavy
def test_a_short_clip_with_tiling_counts_the_small_animals_the_whole_frame_misses(tmp_path):
    from bench.counting.oracle import Oracle, OracleConfig, OracleDetector
    from bench.counting.runner import write_video
    from bench.counting.scene import SCENARIOS, Scene

    # 1280x720 frames, 8-12 px animals, a model input of 320: the whole frame shows them at
    # 2-3 px (under the oracle's 5 px limit); 320 px tiles show them at full size
    # 3 s rather than 1: the default counting drops tracks seen under 0.3 s (flicker), and in a
    # 1 s clip most animals are near its ends
    scenario = replace(SCENARIOS["small_4k"], name="test_tiling", width=1280, height=720, frames=90,
                       animal_px=(8.0, 12.0), herd_spread=80.0, herds=2, herd_animals=(8, 12), pan_px=3.0)
    scene = Scene(scenario, seed=1)
    video = tmp_path / "flyover.mp4"
    write_video(scene, video)
    oracle_config = OracleConfig(input_size=320)
    counts = {}
    for tiling in ("off", "auto"):
        detector = OracleDetector(Oracle(scene, oracle_config), stride=1)
        result = process_video(video, tmp_path / tiling, detector,
                               PipelineConfig(detection=_detecting(tiling), batch_size=4, preset="ultrafast"))
        counts[tiling] = result.stats["counts"]["total_unique"]
        if tiling == "auto":
            assert detector.calls == 23  # 16 views a frame: 4 frames (BATCH_SIZE) a forward within the default 64
            assert result.stats["processing"]["tiling"]["tiles_per_frame"] == 15
    true = scene.ground_truth.true_count
    assert true >= 10
    assert counts["off"] == 0
    assert abs(counts["auto"] - true) <= 0.2 * true
