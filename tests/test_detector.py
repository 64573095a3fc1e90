"""Detector: loading, torch preprocessing equal to the checkpoints' own processors, filtering, errors.

Every test uses real checkpoints written by ``save_pretrained`` (tiny, randomly initialised)
and loaded through ``Detector.load``; the reference for correctness is the transformers
pipeline itself: ``AutoImageProcessor`` -> model -> ``post_process_object_detection``.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import av
import numpy as np
import pytest
import supervision as sv
import torch
from transformers import AutoImageProcessor, AutoModelForObjectDetection

from core.errors import ConfigError, InvalidInput, ModelError
from ml_engine.detector import Detector, best_label_per_box
from ml_engine.preprocess import resized_size, spec_from_processor
from ml_engine.tiny_model import DEFAULT_LABELS, build_tiny_checkpoint

BOX_TOLERANCE_PX = 1.0  # on 768x576 frames
SCORE_TOLERANCE = 0.01


# --- helpers -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_frames(vtest_video: Path) -> list[np.ndarray]:
    """Frames 0, 40 and 80 of the real test clip (people walking), RGB; skips without the clip."""
    wanted = {0, 40, 80}
    frames = []
    with av.open(str(vtest_video)) as container:
        for index, frame in enumerate(container.decode(video=0)):
            if index in wanted:
                frames.append(frame.to_ndarray(format="rgb24"))
            if index >= max(wanted):
                break
    return frames


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory, tiny_rtdetr_dir, tiny_detr_dir) -> dict[str, Path]:
    """One tiny checkpoint per supported architecture (the session fixtures for the two main ones)."""
    built = {"rt_detr_v2": tiny_rtdetr_dir, "detr": tiny_detr_dir}
    for arch in ("rt_detr", "conditional_detr", "deformable_detr", "yolos"):
        built[arch] = build_tiny_checkpoint(tmp_path_factory.mktemp(f"tiny_{arch}"), arch=arch)
    return built


def reference_detections(checkpoint: Path, images: list[np.ndarray], threshold: float) -> list[sv.Detections]:
    """What the plain transformers recipe returns: processor -> model -> post_process (boxes
    clipped), plus the one step the detector adds on purpose: one label per distinct box."""
    processor = AutoImageProcessor.from_pretrained(checkpoint)
    model = AutoModelForObjectDetection.from_pretrained(checkpoint).eval()
    inputs = processor(images=images, return_tensors="pt")
    accepted = inspect.signature(model.forward).parameters
    with torch.inference_mode():
        outputs = model(**{key: value for key, value in inputs.items() if key in accepted})
    sizes = [image.shape[:2] for image in images]
    results = processor.post_process_object_detection(outputs, threshold=threshold, target_sizes=sizes)
    detections = []
    for result, (height, width) in zip(results, sizes, strict=True):
        xyxy = result["boxes"].numpy().astype(np.float32)
        xyxy[:, 0::2] = xyxy[:, 0::2].clip(0, width)
        xyxy[:, 1::2] = xyxy[:, 1::2].clip(0, height)
        scores, labels = result["scores"].numpy(), result["labels"].numpy()
        keep = best_label_per_box(xyxy, scores)
        detections.append(sv.Detections(xyxy=xyxy[keep], confidence=scores[keep], class_id=labels[keep]))
    return detections


def box_gap(a: sv.Detections, b: sv.Detections) -> float:
    """Largest distance (px, per coordinate) from a box in one set to the nearest same-class box
    in the other; inf when a class is missing. Order-free, so near-equal scores may swap."""
    worst = 0.0
    for one, other in ((a, b), (b, a)):
        for box, class_id in zip(one.xyxy, one.class_id, strict=True):
            candidates = other.xyxy[other.class_id == class_id]
            if len(candidates) == 0:
                return float("inf")
            worst = max(worst, float(np.abs(candidates - box).max(axis=1).min()))
    return worst


NEAR_TIE_PX = 0.01  # boxes closer than this are one box whose exact equality is down to float kernels


def distinct_boxes(detections: sv.Detections) -> sv.Detections:
    """One detection per box, its best score, treating boxes within NEAR_TIE_PX as the same box.

    ``best_label_per_box`` merges only bit-identical boxes (RT-DETR's duplicates are, by
    construction). A random tiny checkpoint can also emit two boxes ~1e-5 px apart; whether the
    detector's path and the reference's see them as equal depends on the CPU's float kernels
    (Intel one day, AMD the next), so the tests compare near-ties as one box on both sides.
    """
    order = np.argsort(-detections.confidence, kind="stable")
    kept: list[int] = []
    for index in order:
        box = detections.xyxy[index]
        if all(np.abs(detections.xyxy[k] - box).max() > NEAR_TIE_PX for k in kept):
            kept.append(int(index))
    return detections[np.sort(np.array(kept, dtype=int))] if kept else detections[:0]


def assert_same_detections(ours: sv.Detections, theirs: sv.Detections) -> None:
    """Equal as matched sets within tolerance: same distinct boxes, same classes, close scores."""
    ours, theirs = distinct_boxes(ours), distinct_boxes(theirs)
    assert len(ours) == len(theirs) > 0
    assert box_gap(ours, theirs) <= BOX_TOLERANCE_PX
    assert score_gap(ours, theirs) <= SCORE_TOLERANCE


def score_gap(a: sv.Detections, b: sv.Detections) -> float:
    return float(np.abs(np.sort(a.confidence) - np.sort(b.confidence)).max())


def synthetic_frame(height: int = 240, width: int = 320, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    image = np.full((height, width, 3), 80, dtype=np.uint8)
    for _ in range(6):
        x, y = int(rng.integers(0, width - 40)), int(rng.integers(0, height - 40))
        image[y : y + 40, x : x + 40] = rng.integers(0, 256, 3, dtype=np.uint8)
    return image


# --- preprocessing equals the checkpoint's processor ----------------------------------------


@pytest.mark.parametrize("arch", ["rt_detr_v2", "detr", "yolos"])
def test_torch_preprocessing_gives_the_processors_pixels(checkpoints, real_frames, arch):
    detector = Detector.load(str(checkpoints[arch]), device="cpu")
    processor = AutoImageProcessor.from_pretrained(checkpoints[arch])
    expected = processor(images=[real_frames[0]], return_tensors="pt")["pixel_values"]
    ours = detector.prepare([real_frames[0]])["pixel_values"]
    assert ours.shape == expected.shape
    # at most one grey level apart (PIL rounds its resized pixels, torch's kernel may round the other way)
    one_level = 1 / 255 / min(detector.spec.image_std if detector.spec.do_normalize else (1.0,))
    assert (ours - expected).abs().max().item() <= one_level + 1e-6
    assert (ours - expected).abs().mean().item() < one_level / 10


@pytest.mark.parametrize("arch", ["rt_detr_v2", "rt_detr", "detr"])
def test_boxes_match_the_checkpoints_own_pipeline_on_real_frames(checkpoints, real_frames, arch):
    detector = Detector.load(str(checkpoints[arch]), device="cpu")
    ours = detector.detect(real_frames, threshold=0.0)
    reference = reference_detections(checkpoints[arch], real_frames, threshold=0.0)
    for mine, theirs in zip(ours, reference, strict=True):
        assert_same_detections(mine, theirs)
    # the comparison has teeth: the same model on a mirrored frame gives boxes outside the tolerance
    mirrored = detector.detect([np.ascontiguousarray(real_frames[0][:, ::-1])], threshold=0.0)[0]
    assert box_gap(mirrored, ours[0]) > BOX_TOLERANCE_PX


@pytest.mark.parametrize("arch", ["conditional_detr", "deformable_detr", "yolos"])
def test_other_detr_family_checkpoints_match_their_pipeline(checkpoints, real_frames, arch):
    detector = Detector.load(str(checkpoints[arch]), device="cpu")
    ours = detector.detect(real_frames[:1], threshold=0.0)[0]
    theirs = reference_detections(checkpoints[arch], real_frames[:1], threshold=0.0)[0]
    assert_same_detections(ours, theirs)


def test_detr_batch_of_different_sizes_is_padded_like_the_processor(checkpoints, real_frames):
    images = [real_frames[0], np.ascontiguousarray(real_frames[1][:300, :500])]
    detector = Detector.load(str(checkpoints["detr"]), device="cpu")
    inputs = detector.prepare(images)
    pixel_values, pixel_mask = inputs["pixel_values"], inputs.get("pixel_mask")
    assert pixel_mask is not None and pixel_mask.shape == (2, *pixel_values.shape[-2:])
    assert (pixel_mask[0] == 0).any()  # the 768x576 frame (resized to 426x320) is padded to 533 wide
    ours = detector.detect(images, threshold=0.0)
    reference = reference_detections(checkpoints["detr"], images, threshold=0.0)
    for mine, theirs, image in zip(ours, reference, images, strict=True):
        assert box_gap(mine, theirs) <= BOX_TOLERANCE_PX
        assert mine.xyxy[:, 2].max() <= image.shape[1] and mine.xyxy[:, 3].max() <= image.shape[0]


@pytest.mark.parametrize(
    ("height", "width"), [(576, 768), (1080, 1920), (1920, 1080), (240, 320), (333, 500), (100, 1000)]
)
def test_resized_size_matches_the_processor(checkpoints, height, width):
    for arch in ("detr", "yolos", "rt_detr_v2"):
        processor = AutoImageProcessor.from_pretrained(checkpoints[arch])
        spec = spec_from_processor(processor)
        image = np.zeros((height, width, 3), dtype=np.uint8)
        expected = processor(images=[image], return_tensors="pt")["pixel_values"].shape[-2:]
        assert resized_size(height, width, spec) == tuple(expected), arch


# --- batching, filtering, output format ---------------------------------------------------


def test_a_batch_gives_the_same_detections_as_one_frame_at_a_time(tiny_rtdetr_detector):
    frames = [synthetic_frame(seed=seed) for seed in range(3)]
    batched = tiny_rtdetr_detector.detect(frames, threshold=0.3)
    single = [tiny_rtdetr_detector.detect([frame], threshold=0.3)[0] for frame in frames]
    for a, b in zip(batched, single, strict=True):
        a, b = distinct_boxes(a), distinct_boxes(b)
        assert len(a) == len(b)
        assert box_gap(a, b) < 1e-2
        assert score_gap(a, b) < 1e-4


def test_detections_carry_class_names_and_frame_pixel_boxes(tiny_rtdetr_detector):
    frame = synthetic_frame(height=200, width=600)
    (detections,) = tiny_rtdetr_detector.detect([frame], threshold=0.0)
    assert len(detections) > 0
    assert detections.xyxy.dtype == np.float32 and detections.xyxy.shape == (len(detections), 4)
    assert (detections.xyxy[:, 0::2] >= 0).all() and (detections.xyxy[:, 0::2] <= 600).all()
    assert (detections.xyxy[:, 1::2] >= 0).all() and (detections.xyxy[:, 1::2] <= 200).all()
    assert (detections.xyxy[:, 2:] >= detections.xyxy[:, :2]).all()
    expected_names = [tiny_rtdetr_detector.labels[int(c)] for c in detections.class_id]
    assert list(detections.data["class_name"]) == expected_names
    assert set(expected_names) <= set(DEFAULT_LABELS)


def test_threshold_filters_scores(tiny_rtdetr_detector):
    frame = synthetic_frame()
    (everything,) = tiny_rtdetr_detector.detect([frame], threshold=0.0)
    cut = float(np.median(everything.confidence))
    (kept,) = tiny_rtdetr_detector.detect([frame], threshold=cut)
    assert 0 < len(kept) < len(everything)
    assert (kept.confidence > cut).all()
    (none,) = tiny_rtdetr_detector.detect([frame], threshold=1.0)
    assert len(none) == 0 and none.data["class_name"].shape == (0,)


def test_class_filter_is_case_insensitive(tiny_rtdetr_detector):
    frame = synthetic_frame()
    (everything,) = tiny_rtdetr_detector.detect([frame], threshold=0.0)
    present = str(everything.data["class_name"][0])
    (only,) = tiny_rtdetr_detector.detect([frame], threshold=0.0, class_names={present.upper()})
    assert len(only) == int((everything.data["class_name"] == present).sum()) > 0
    assert set(only.data["class_name"]) == {present}
    absent = sorted(set(DEFAULT_LABELS) - set(everything.data["class_name"]))
    if absent:
        (nothing,) = tiny_rtdetr_detector.detect([frame], threshold=0.0, class_names=[absent[0]])
        assert len(nothing) == 0


def test_no_class_filter_and_an_empty_one_both_keep_everything(tiny_rtdetr_detector):
    frame = synthetic_frame()
    (everything,) = tiny_rtdetr_detector.detect([frame], threshold=0.0)
    (empty_filter,) = tiny_rtdetr_detector.detect([frame], threshold=0.0, class_names=[])
    assert len(empty_filter) == len(everything) > 0
    assert tiny_rtdetr_detector.class_ids("Sheep") == {1}  # one name given as a plain string


def test_unknown_class_name_is_rejected_naming_the_valid_ones(tiny_rtdetr_detector):
    with pytest.raises(InvalidInput) as raised:
        tiny_rtdetr_detector.detect([synthetic_frame()], threshold=0.5, class_names=["cow", "zebra"])
    message = str(raised.value)
    assert "'zebra'" in message and all(name in message for name in DEFAULT_LABELS)


@pytest.mark.parametrize(
    "image",
    [np.zeros((240, 320), np.uint8), np.zeros((240, 320, 3), np.float32), np.zeros((240, 320, 4), np.uint8)],
    ids=["grey", "float", "rgba"],
)
def test_images_that_are_not_rgb_uint8_are_rejected(tiny_rtdetr_detector, image):
    with pytest.raises(InvalidInput, match="HxWx3 uint8"):
        tiny_rtdetr_detector.detect([image], threshold=0.5)


def test_an_empty_batch_gives_no_results(tiny_rtdetr_detector):
    assert tiny_rtdetr_detector.detect([], threshold=0.5) == []


# --- loading ------------------------------------------------------------------------------


def test_tiny_checkpoints_are_small_flagged_and_deterministic(tmp_path, tiny_rtdetr_dir):
    files = {path.name for path in tiny_rtdetr_dir.iterdir()}
    assert {"config.json", "model.safetensors", "preprocessor_config.json"} <= files
    assert sum(path.stat().st_size for path in tiny_rtdetr_dir.iterdir()) < 5 * 1024 * 1024
    assert json.loads((tiny_rtdetr_dir / "config.json").read_text())["cattlecounter_random_init"] is True
    again = build_tiny_checkpoint(tmp_path / "again", arch="rt_detr_v2")
    assert (again / "model.safetensors").read_bytes() == (tiny_rtdetr_dir / "model.safetensors").read_bytes()


def test_loaded_detector_describes_itself(tiny_rtdetr_detector):
    assert tiny_rtdetr_detector.device == "cpu"
    assert tiny_rtdetr_detector.labels == dict(enumerate(DEFAULT_LABELS))
    assert tiny_rtdetr_detector.random_weights is True
    info = tiny_rtdetr_detector.describe()
    assert info["random_weights"] is True and "not real detections" in info["note"]
    assert info["architecture"] == "rt_detr_v2" and info["input_size"] == "320x320"


def test_input_size_override(checkpoints, real_frames):
    rtdetr = Detector.load(str(checkpoints["rt_detr_v2"]), device="cpu", input_size=256)
    pixels = rtdetr.prepare(real_frames[:1])["pixel_values"]
    assert pixels.shape[-2:] == (256, 256)
    (detections,) = rtdetr.detect(real_frames[:1], threshold=0.0)
    assert len(detections) > 0 and detections.xyxy[:, 2].max() > 256  # still in frame pixels (768 wide)
    detr = Detector.load(str(checkpoints["detr"]), device="cpu", input_size=160)
    pixels = detr.prepare(real_frames[:1])["pixel_values"]
    assert pixels.shape[-2:] == (160, 213)  # shortest edge 160, aspect kept


def test_missing_directory_raises_model_error_saying_what_to_set(tmp_path):
    with pytest.raises(ModelError) as raised:
        Detector.load(str(tmp_path / "no-such-model"))
    assert "does not exist" in str(raised.value) and "MODEL_ID" in str(raised.value)


def test_directory_without_a_checkpoint_raises_model_error(tmp_path):
    with pytest.raises(ModelError, match="MODEL_ID"):
        Detector.load(str(tmp_path))


def test_corrupt_config_raises_model_error(tmp_path, tiny_rtdetr_dir):
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("model.safetensors", "preprocessor_config.json"):
        (broken / name).write_bytes((tiny_rtdetr_dir / name).read_bytes())
    (broken / "config.json").write_text("{ not json")
    with pytest.raises(ModelError, match="could not load model"):
        Detector.load(str(broken))


def test_checkpoint_without_weights_raises_model_error(tmp_path, tiny_rtdetr_dir):
    no_weights = tmp_path / "no_weights"
    no_weights.mkdir()
    for name in ("config.json", "preprocessor_config.json"):
        (no_weights / name).write_bytes((tiny_rtdetr_dir / name).read_bytes())
    with pytest.raises(ModelError, match="MODEL_ID"):
        Detector.load(str(no_weights))


def test_a_file_instead_of_a_directory_raises_model_error(tiny_rtdetr_dir):
    with pytest.raises(ModelError, match="is a file"):
        Detector.load(str(tiny_rtdetr_dir / "config.json"))


def test_timm_backbone_without_timm_explains_the_no_timm_revision(tmp_path, tiny_detr_dir):
    timm_detr = tmp_path / "timm_detr"
    timm_detr.mkdir()
    config = json.loads((tiny_detr_dir / "config.json").read_text())
    config["backbone_config"] = {"model_type": "timm_backbone", "backbone": "resnet50", "out_indices": [1, 2, 3, 4]}
    (timm_detr / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelError) as raised:
        Detector.load(str(timm_detr))
    assert "timm" in str(raised.value) and "no_timm" in str(raised.value)


def test_unavailable_device_and_bad_dtype_are_config_errors(tiny_rtdetr_dir):
    with pytest.raises(ConfigError, match="DEVICE"):
        Detector.load(str(tiny_rtdetr_dir), device="tpu")
    with pytest.raises(ConfigError, match="dtype"):
        Detector.load(str(tiny_rtdetr_dir), dtype="int8")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no CUDA GPU"):
            Detector.load(str(tiny_rtdetr_dir), device="cuda")


def test_autocast_path_runs_and_returns_float32(tiny_rtdetr_dir):
    # CUDA uses bf16/fp16 autocast; CPU autocast runs the same code path here
    detector = Detector.load(str(tiny_rtdetr_dir), device="cpu", dtype="bfloat16")
    assert detector.dtype == "bfloat16" and detector.describe()["dtype"] == "bfloat16"
    (detections,) = detector.detect([synthetic_frame()], threshold=0.0)
    assert len(detections) > 0
    assert detections.xyxy.dtype == np.float32 and detections.confidence.dtype == np.float32


def test_package_import_does_not_pull_in_torch_and_tames_openmp():
    import os
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[1]
    code = (
        "import os, sys, ml_engine; assert 'torch' not in sys.modules and 'transformers' not in sys.modules; "
        "print(os.environ['OMP_WAIT_POLICY'])"
    )
    environment = {key: value for key, value in os.environ.items() if key != "OMP_WAIT_POLICY"}
    default = subprocess.run([sys.executable, "-c", code], cwd=repo, env=environment, capture_output=True, text=True)
    assert default.returncode == 0, default.stderr
    assert default.stdout.strip() == "PASSIVE"
    chosen = subprocess.run([sys.executable, "-c", code], cwd=repo, env={**environment, "OMP_WAIT_POLICY": "ACTIVE"},
                            capture_output=True, text=True)
    assert chosen.stdout.strip() == "ACTIVE"  # an explicit choice wins


def test_one_query_returned_with_two_labels_counts_as_its_best_label_only(tiny_rtdetr_detector):
    """RT-DETR's top-k over (query, class) pairs can return one box twice with two labels."""
    import torch

    result = {
        "boxes": torch.tensor([[10.0, 10, 50, 50], [10, 10, 50, 50], [60, 60, 90, 90]]),
        "labels": torch.tensor([0, 1, 0]),  # cow, sheep (the same box), cow
        "scores": torch.tensor([0.80, 0.57, 0.60]),
    }
    detections = tiny_rtdetr_detector._to_detections(result, (100, 100, 3), None)
    assert detections.data["class_name"].tolist() == ["cow", "cow"]
    assert detections.confidence.tolist() == pytest.approx([0.80, 0.60])
    only_sheep = tiny_rtdetr_detector._to_detections(result, (100, 100, 3), {1})
    assert len(only_sheep) == 0  # that object is a cow: it is not counted as a sheep either
