"""MODEL_ID naming an ONNX export: YOLOv8/11, YOLOv5-style and RT-DETR heads. Each test exports
a small torch module whose output is known, in that format's layout, and reads it back through
``Detector.load``: a decoder that assumes another layout finds other boxes, or none."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from core.errors import ModelError
from ml_engine.detector import Detector
from ml_engine.onnx_models import class_wise_nms, output_format

SIDE = 320
FRAME = np.zeros((320, 640, 3), dtype=np.uint8)  # twice as wide as the input: x scales by 2
# (cx, cy, w, h) in input pixels
COW_BOX, COW_TWIN, SHEEP_ON_COW = (100, 100, 40, 40), (102, 101, 40, 40), (101, 100, 40, 40)


class FixedHead(torch.nn.Module):
    """Outputs ``values`` whatever the image (the image still feeds the graph, so it is an input)."""

    def __init__(self, values: np.ndarray) -> None:
        super().__init__()
        self.register_buffer("values", torch.tensor(values, dtype=torch.float32))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.values + 0.0 * images.mean()


def export(values: np.ndarray, path: Path, names: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(FixedHead(values), (torch.zeros(1, 3, SIDE, SIDE),), str(path), dynamo=False,
                          opset_version=17, input_names=["images"], output_names=["output0"])
    if names is not None:  # as Ultralytics writes them
        model = onnx.load(str(path))
        model.metadata_props.add(key="names", value=names)
        onnx.save(model, str(path))
    return path


def frame_box(cxcywh: tuple[float, float, float, float]) -> list[float]:
    cx, cy, w, h = cxcywh
    return [2 * (cx - w / 2), cy - h / 2, 2 * (cx + w / 2), cy + h / 2]


def yolov8_output() -> np.ndarray:
    """(1, 4 + nc, N): columns are anchors. cow 0.9, its near twin cow 0.8 (NMS drops it), a sheep
    on the same spot 0.7 (another class: kept), one anchor below any threshold."""
    anchors = [(*COW_BOX, 0.9, 0.05), (*COW_TWIN, 0.8, 0.05), (*SHEEP_ON_COW, 0.1, 0.7), (200, 200, 30, 30, 0.01, 0.02)]
    return np.array(anchors, dtype=np.float32).T[None]


def test_yolov8_head_with_names_in_metadata(tmp_path: Path) -> None:
    path = export(yolov8_output(), tmp_path / "yolov8n.onnx", names="{0: 'cow', 1: 'sheep'}")
    detector = Detector.load(str(path))
    assert detector.labels == {0: "cow", 1: "sheep"}
    assert detector.class_ids(["Sheep"]) == {1}
    [found] = detector.detect([FRAME], threshold=0.5)
    assert found.data["class_name"].tolist() == ["cow", "sheep"]
    np.testing.assert_allclose(found.confidence, [0.9, 0.7], atol=1e-6)
    np.testing.assert_allclose(found.xyxy, [frame_box(COW_BOX), frame_box(SHEEP_ON_COW)], atol=1e-3)
    facts = detector.describe()
    assert facts["format"] == "yolov8" and facts["runtime"] == "onnxruntime"


def test_yolov5_head_multiplies_objectness_and_reads_labels_txt(tmp_path: Path) -> None:
    rows = [(*COW_BOX, 0.9, 0.95, 0.1), (*COW_TWIN, 0.8, 0.9, 0.1), (*SHEEP_ON_COW, 0.9, 0.1, 0.7),
            (200, 200, 30, 30, 0.3, 0.9, 0.1)]  # a confident class of a box barely there: 0.27
    export(np.array(rows, dtype=np.float32)[None], tmp_path / "model" / "best.onnx")
    (tmp_path / "model" / "labels.txt").write_text("cow\nsheep\n")
    detector = Detector.load(str(tmp_path / "model"))
    [found] = detector.detect([FRAME], threshold=0.5)
    assert found.data["class_name"].tolist() == ["cow", "sheep"]
    np.testing.assert_allclose(found.confidence, [0.9 * 0.95, 0.9 * 0.7], atol=1e-6)
    np.testing.assert_allclose(found.xyxy, [frame_box(COW_BOX), frame_box(SHEEP_ON_COW)], atol=1e-3)
    assert detector.describe()["format"] == "yolov5"


def test_rtdetr_export_has_normalised_boxes_and_no_nms(tmp_path: Path) -> None:
    normalised = [(cx / SIDE, cy / SIDE, w / SIDE, h / SIDE) for cx, cy, w, h in (COW_BOX, COW_TWIN)]
    queries = [(*normalised[0], 0.9, 0.1), (*normalised[1], 0.8, 0.1), (0.5, 0.5, 0.1, 0.1, 0.1, 0.2)]
    export(np.array(queries, dtype=np.float32)[None], tmp_path / "rtdetr" / "rtdetr-l.onnx")
    (tmp_path / "rtdetr" / "labels.json").write_text(json.dumps({"0": "cow", "1": "sheep"}))
    detector = Detector.load(str(tmp_path / "rtdetr"))
    [found] = detector.detect([FRAME], threshold=0.5)
    assert found.data["class_name"].tolist() == ["cow", "cow"]  # overlapping queries are both kept
    np.testing.assert_allclose(found.xyxy, [frame_box(COW_BOX), frame_box(COW_TWIN)], atol=1e-3)
    assert detector.describe()["format"] == "rtdetr"


@pytest.mark.parametrize(("shape", "classes", "expected"), [
    ((1, 84, 8400), 80, "yolov8"), ((1, 25200, 85), 80, "yolov5"), ((1, 300, 84), 80, "rtdetr"),
    ((1, 6, "anchors"), 2, "yolov8"), ((1, "queries", 6), 2, "rtdetr"),
])
def test_output_format_from_the_layout_and_the_class_count(shape, classes, expected) -> None:
    assert output_format(shape, classes) == expected


def test_labels_that_do_not_fit_the_output_name_the_layouts(tmp_path: Path) -> None:
    export(yolov8_output(), tmp_path / "m" / "model.onnx")
    (tmp_path / "m" / "labels.txt").write_text("cow\nsheep\nhorse\n")  # 3 names, the head has 2 classes
    with pytest.raises(ModelError, match=r"\(1, 4\+nc, N\) for YOLOv8/11.*nc = 3 classes"):
        Detector.load(str(tmp_path / "m"))


def test_an_onnx_model_without_names_asks_for_a_labels_file(tmp_path: Path) -> None:
    path = export(yolov8_output(), tmp_path / "nameless.onnx")
    with pytest.raises(ModelError, match="labels.txt"):
        Detector.load(str(path))


def test_a_pytorch_file_is_refused_with_the_way_to_export_it(tmp_path: Path) -> None:
    (tmp_path / "yolov8n.pt").write_bytes(b"PK\x03\x04 not a checkpoint directory")
    with pytest.raises(ModelError, match=r"export.*ONNX|ONNX.*export|exported to ONNX"):
        Detector.load(str(tmp_path / "yolov8n.pt"))


def test_a_folder_with_two_onnx_files_asks_which(tmp_path: Path) -> None:
    export(yolov8_output(), tmp_path / "m" / "a.onnx")
    export(yolov8_output(), tmp_path / "m" / "b.onnx")
    with pytest.raises(ModelError, match="several ONNX files"):
        Detector.load(str(tmp_path / "m"))


def test_class_wise_nms_keeps_overlaps_of_other_classes() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [0, 0, 10, 10], [50, 50, 60, 60]], dtype=np.float32)
    kept = class_wise_nms(boxes, np.array([0.9, 0.8, 0.7, 0.6]), np.array([0, 0, 1, 0]), 0.45)
    assert kept.tolist() == [0, 2, 3]
