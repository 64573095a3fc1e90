"""RUNTIME=torch|onnxruntime|openvino|auto: the ONNX export, its cache, and the faithfulness
check that refuses a runtime whose detections are not torch's. Real exports of real (tiny)
checkpoints, run by the real runtimes on the CPU."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import supervision as sv

from core.config import load_settings
from core.errors import ConfigError
from ml_engine.detector import Detector
from ml_engine.runtimes import faithfulness
from ml_engine.runtimes.faithfulness import BOX_TOLERANCE_PX, SCORE_TOLERANCE, deviation, sample_images

pytestmark = pytest.mark.heavy  # each test exports a model or runs one in two runtimes


@pytest.fixture(scope="module")
def onnx_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("onnx_cache")


def _detections(boxes: list[list[float]], scores: list[float], labels: list[int]) -> sv.Detections:
    return sv.Detections(xyxy=np.array(boxes, dtype=np.float32).reshape(-1, 4),
                         confidence=np.array(scores, dtype=np.float32), class_id=np.array(labels))


# --- the comparison itself -------------------------------------------------------------------------------


REFERENCE = _detections([[10, 10, 50, 50], [100, 100, 140, 160], [12, 11, 48, 52]], [0.9, 0.8, 0.7], [0, 1, 0])


def test_detections_in_another_order_with_tiny_noise_match() -> None:
    shuffled = _detections([[100.2, 100, 140, 160], [12, 11, 48.3, 52], [10, 10, 50, 50.1]], [0.8004, 0.7, 0.9], [1, 0, 0])
    result = deviation([REFERENCE], [shuffled], BOX_TOLERANCE_PX, SCORE_TOLERANCE)
    assert result.within(BOX_TOLERANCE_PX, SCORE_TOLERANCE)
    assert result.compared == 3 and result.max_box_px == pytest.approx(0.3, abs=1e-4)


@pytest.mark.parametrize(("boxes", "scores", "labels", "why"), [
    ([[10, 10, 50, 50], [100, 100, 140, 160.6], [12, 11, 48, 52]], [0.9, 0.8, 0.7], [0, 1, 0], "a box 0.6 px off"),
    ([[10, 10, 50, 50], [100, 100, 140, 160], [12, 11, 48, 52]], [0.9, 0.802, 0.7], [0, 1, 0], "a score 2e-3 off"),
    ([[10, 10, 50, 50], [100, 100, 140, 160], [12, 11, 48, 52]], [0.9, 0.8, 0.7], [0, 2, 0], "another label"),
    ([[10, 10, 50, 50], [12, 11, 48, 52]], [0.9, 0.7], [0, 0], "a detection missing"),
    # (cx, cy, w, h) read as corners: the layout mistake a hand-written exporter makes
    ([[30, 30, 40, 40], [120, 130, 40, 60], [30, 31.5, 36, 41]], [0.9, 0.8, 0.7], [0, 1, 0], "boxes as cxcywh"),
])
def test_detections_that_differ_do_not_match(boxes, scores, labels, why) -> None:
    result = deviation([REFERENCE], [_detections(boxes, scores, labels)], BOX_TOLERANCE_PX, SCORE_TOLERANCE)
    assert not result.within(BOX_TOLERANCE_PX, SCORE_TOLERANCE), why


def test_the_torch_thread_floor_widens_the_tolerance() -> None:
    off_by_0_7 = [_detections([[10, 10, 50, 50.7], [100, 100, 140, 160], [12, 11, 48, 52]], [0.9, 0.8, 0.7], [0, 1, 0])]

    def run(detections):
        return lambda images: detections * len(images)

    strict = faithfulness.judge("x", run([REFERENCE]), run(off_by_0_7), run([REFERENCE]))
    assert not strict.passed and "no match within 0.5 px" in strict.reason
    noisy_torch = faithfulness.judge("x", run([REFERENCE]), run(off_by_0_7), run(off_by_0_7))
    assert noisy_torch.passed and noisy_torch.floor.max_box_px == pytest.approx(0.7, abs=1e-4)


# --- runtimes on real exports ----------------------------------------------------------------------------


@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])
def test_runtime_detects_what_torch_detects(runtime: str, separated_rtdetr_dir: Path, onnx_cache: Path) -> None:
    torch_detector = Detector.load(str(separated_rtdetr_dir), device="cpu")
    detector = Detector.load(str(separated_rtdetr_dir), device="cpu", runtime=runtime, runtime_cache=onnx_cache)
    facts = detector.describe()
    assert (facts["runtime"], facts["precision"]) == (runtime, "fp32")
    assert facts["faithfulness"]["passed"] and facts["faithfulness"]["deviation"]["compared"] > 10
    images = sample_images()
    expected = torch_detector.detect(images, threshold=0.3)
    got = detector.detect(images, threshold=0.3)
    assert sum(len(d) for d in expected) > 5
    assert deviation(expected, got, BOX_TOLERANCE_PX, SCORE_TOLERANCE).within(BOX_TOLERANCE_PX, SCORE_TOLERANCE)
    assert [len(d) for d in got] == [len(d) for d in expected]


def test_export_is_cached_by_checkpoint_hash(separated_rtdetr_dir: Path, tmp_path: Path, caplog) -> None:
    from ml_engine.tiny_model import build_tiny_checkpoint

    cache = tmp_path / "cache"
    Detector.load(str(separated_rtdetr_dir), device="cpu", runtime="onnxruntime", runtime_cache=cache)
    exports = sorted(cache.glob("*/model.onnx"))
    assert len(exports) == 1
    written = exports[0].stat().st_mtime_ns
    with caplog.at_level(logging.INFO, logger="ml_engine.runtimes.export"):
        Detector.load(str(separated_rtdetr_dir), device="cpu", runtime="onnxruntime", runtime_cache=cache)
    assert "using the cached ONNX export" in caplog.text
    assert exports[0].stat().st_mtime_ns == written
    # other weights at the same kind of path: another export, never the stale one
    other = build_tiny_checkpoint(tmp_path / "other", separated=True, seed=1)
    Detector.load(str(other), device="cpu", runtime="onnxruntime", runtime_cache=cache)
    assert len(list(cache.glob("*/model.onnx"))) == 2


def test_a_runtime_that_breaks_ties_differently_is_refused(tiny_rtdetr_dir: Path, onnx_cache: Path, caplog) -> None:
    """The tiny checkpoint's encoder scores tie (its border anchors all score the same), so the
    ONNX graph keeps other queries than torch: the check must see it and keep torch."""
    with caplog.at_level(logging.WARNING, logger="ml_engine.runtimes.select"):
        detector = Detector.load(str(tiny_rtdetr_dir), device="cpu", runtime="onnxruntime", runtime_cache=onnx_cache)
    facts = detector.describe()
    assert facts["runtime"] == "torch" and facts["runtime_requested"] == "onnxruntime"
    assert "no match within" in facts["runtime_refused"]["onnxruntime"]
    assert "RUNTIME onnxruntime refused" in caplog.text


def test_auto_picks_the_fastest_faithful_runtime(separated_rtdetr_dir: Path, onnx_cache: Path) -> None:
    detector = Detector.load(str(separated_rtdetr_dir), device="cpu", runtime="auto", runtime_cache=onnx_cache)
    facts = detector.describe()
    timings = facts["runtime_ms_per_frame"]
    assert set(timings) == {"torch", "onnxruntime", "openvino"}
    assert facts["runtime"] == min(timings, key=timings.get)
    assert facts["precision"] == "fp32"


def test_models_without_a_fixed_input_size_stay_on_torch(tiny_detr_dir: Path, onnx_cache: Path) -> None:
    detector = Detector.load(str(tiny_detr_dir), device="cpu", runtime="openvino", runtime_cache=onnx_cache)
    facts = detector.describe()
    assert facts["runtime"] == "torch"
    assert "fixed input size" in facts["runtime_refused"]["openvino"]


@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])
def test_int8_runs_a_quantised_graph_and_reports_its_deviation(runtime: str, separated_rtdetr_dir: Path,
                                                               onnx_cache: Path) -> None:
    """int8 with no NNCF: ONNX Runtime's static quantisation of the export, cached beside it, run
    by either runtime; asked for by name it is used, and GET /model / stats.json carry its deviation."""
    pytest.importorskip(runtime)
    onnx = pytest.importorskip("onnx")
    detector = Detector.load(str(separated_rtdetr_dir), device="cpu", runtime=runtime, precision="int8",
                             runtime_cache=onnx_cache)
    facts = detector.describe()
    assert (facts["runtime"], facts["precision"]) == (runtime, "int8"), facts.get("runtime_refused")
    assert facts["faithfulness"]["deviation"]["compared"] > 0
    quantised = list(onnx_cache.glob(f"*/model.int8-v*-{runtime}.onnx"))
    assert len(quantised) == 1
    operators = {node.op_type for node in onnx.load(str(quantised[0])).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= operators  # int8 tensors in the graph, not fp32 renamed
    detections = detector.detect(sample_images(), threshold=0.0)
    assert all(len(found) for found in detections)


@pytest.mark.parametrize(("runtime", "precision", "message"), [
    ("tensorflow", "fp32", "RUNTIME must be one of torch, onnxruntime, openvino, auto"),
    ("openvino", "fp8", "RUNTIME_PRECISION must be one of fp32, bf16, int8"),
    ("torch", "bf16", "needs RUNTIME=openvino"),
])
def test_bad_runtime_settings_are_refused_before_loading(runtime, precision, message, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=message):
        Detector.load(str(tmp_path / "never-read"), runtime=runtime, precision=precision)


def test_settings_accept_only_known_runtimes() -> None:
    assert load_settings(env={"RUNTIME": "auto"}, env_file=None).runtime == "auto"
    with pytest.raises(ConfigError, match="(?i)runtime"):
        load_settings(env={"RUNTIME": "tensorrt"}, env_file=None)


def test_the_worker_publishes_the_runtime_it_runs_for_get_model(make_settings, separated_rtdetr_dir: Path,
                                                                monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from core.backends import build_backends
    from core.model_card import read_card
    from worker.models import DetectorCache

    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # the export's cache: here, not the user's
    settings = make_settings("local", model_id=str(separated_rtdetr_dir), runtime="openvino")
    backends = build_backends(settings)
    try:
        DetectorCache(settings, backends.blobs).get()
        card = read_card(backends.blobs, settings.model_id)
        assert card is not None and (card.runtime, card.precision) == ("openvino", "fp32")
        assert list((tmp_path / "hf" / "cattlecounter" / "onnx").glob("*/model.onnx"))
    finally:
        backends.close()
