"""Detectors exported to ONNX by other tools: Ultralytics YOLOv8/11, YOLOv5-style, RT-DETR.

``MODEL_ID`` may name a ``.onnx`` file, or a folder holding one ``.onnx`` file (and no
transformers ``config.json``) with an optional labels file (``labels.txt``: one name a line;
or ``labels.json``: a list, or an object of id -> name). Labels come from that file, else
from the ONNX metadata ``names`` that Ultralytics writes.

The output layout decides the format, read with the number of classes:

- ``yolov8``: one output ``(1, 4 + nc, N)``: boxes (cx, cy, w, h) in input pixels, then one
  score per class; class-wise NMS (YOLOv8 and YOLO11 detection heads);
- ``yolov5``: one output ``(1, N, 5 + nc)``: box, objectness, class scores; score =
  objectness x class score; class-wise NMS;
- ``rtdetr``: one output ``(1, N, 4 + nc)``: boxes (cx, cy, w, h) normalised to 0..1, class
  scores; no NMS (the model's queries do not overlap by design).

Frames are resized to the model's input (no letterbox) and scaled to 0..1, in RGB. Inference
runs in ONNX Runtime, one frame at a time (exports are usually fixed at a batch of one).
"""

from __future__ import annotations

import ast
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core.errors import ModelError
from ml_engine.detector import Detector
from ml_engine.preprocess import Preprocessor, PreprocessSpec
from ml_engine.runtimes.base import Backend

log = logging.getLogger(__name__)

FORMATS = ("yolov8", "yolov5", "rtdetr")
LABEL_FILES = ("labels.txt", "labels.json", "names.txt")
NMS_IOU = 0.45  # YOLOv5's default; Ultralytics' own predict uses 0.7 (more overlapping boxes kept)
DEFAULT_SIDE = 640  # the input side when the export leaves it dynamic and INPUT_SIZE is unset
_HOW_TO_EXPORT = "see docs/models.md for exporting a model to ONNX"


@dataclass(frozen=True)
class OnnxModel:
    """Where an ONNX detector's files are."""

    onnx: Path
    labels: Path | None


def locate(model_id: str) -> OnnxModel | None:
    """The ONNX model ``model_id`` names, or None when it names something else (a transformers
    checkpoint folder, a hub id). Raises ModelError for a folder with several ``.onnx`` files."""
    path = Path((model_id or "").strip()).expanduser()
    if path.is_file() and path.suffix.lower() == ".onnx":
        return OnnxModel(path, _labels_file(path.parent))
    if not path.is_dir() or (path / "config.json").exists():
        return None
    found = sorted(path.glob("*.onnx"))
    if not found:
        return None
    if len(found) > 1:
        names = ", ".join(p.name for p in found)
        raise ModelError(f"model folder {path.name!r} holds several ONNX files ({names}); set MODEL_ID to one of them")
    return OnnxModel(found[0], _labels_file(path))


def _labels_file(folder: Path) -> Path | None:
    return next((folder / name for name in LABEL_FILES if (folder / name).is_file()), None)


def read_labels(labels_file: Path | None, metadata: dict[str, str]) -> dict[int, str]:
    """Class id -> name, from the labels file, else the ONNX metadata ``names``."""
    if labels_file is not None:
        text = labels_file.read_text(encoding="utf-8")
        if labels_file.suffix == ".json":
            data = json.loads(text)
            items = enumerate(data) if isinstance(data, list) else ((int(k), v) for k, v in data.items())
            return {int(k): str(v) for k, v in items}
        return dict(enumerate(line.strip() for line in text.splitlines() if line.strip()))
    names = metadata.get("names")
    if names:
        try:
            parsed = ast.literal_eval(names)  # Ultralytics writes a Python dict: {0: 'person', ...}
        except (ValueError, SyntaxError):
            parsed = None
        if isinstance(parsed, dict):
            return {int(k): str(v) for k, v in parsed.items()}
        if isinstance(parsed, (list, tuple)):
            return dict(enumerate(str(v) for v in parsed))
    raise ModelError("the ONNX model has no class names: put a labels.txt (one name a line) beside it, "
                     "or export it with its names in the metadata")


def output_format(shape: tuple[Any, ...], classes: int) -> str:
    """The format of a single ``(1, A, B)`` output for ``classes`` classes (see the module doc).

    Raises ModelError naming the layouts it knows when none fits.
    """
    known = ("(1, 4+nc, N) for YOLOv8/11, (1, N, 5+nc) for YOLOv5, (1, N, 4+nc) for RT-DETR, "
             f"with nc = {classes} classes from the labels")
    if len(shape) != 3:
        raise ModelError(f"the ONNX model's output has shape {shape}; expected {known}")
    _, rows, columns = shape
    if rows == 4 + classes and columns != 4 + classes:
        return "yolov8"
    if columns == 5 + classes:
        return "yolov5"
    if columns == 4 + classes:
        return "rtdetr"
    raise ModelError(f"the ONNX model's output has shape {shape}; expected {known}. "
                     "Check that the labels file lists exactly the model's classes")


class OnnxDetector(Detector):
    """A Detector over an ONNX file: the same detect / detect_views / describe as a checkpoint's."""

    def __init__(self, model_id: str, session: SingleOutputSession, spec: PreprocessSpec, labels: dict[int, str],
                 fmt: str) -> None:
        # not Detector.__init__: there is no transformers model or processor here
        self.model_id = model_id
        self.device = "cpu"
        self.labels = labels
        self.random_weights = False
        self.dtype = "float32"
        self.spec = spec
        self.format = fmt
        self._preprocess = Preprocessor(spec, torch.device("cpu"))
        self._passes_pixel_mask = False
        self._ids_by_name: dict[str, set[int]] = {}
        for class_id, name in labels.items():  # class_ids() looks names up case-insensitively
            self._ids_by_name.setdefault(name.lower(), set()).add(class_id)
        self._backend = session
        self._runtime_choice = None

    @classmethod
    def open(cls, model_id: str, located: OnnxModel, input_size: int | None = None) -> OnnxDetector:
        """Load the ONNX model ``located`` describes. Raises ModelError when it cannot be read or its
        output layout is none of ``FORMATS``."""
        import onnxruntime as ort

        try:
            session = ort.InferenceSession(str(located.onnx), providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own Fail / InvalidGraph types
            raise ModelError(f"could not read the ONNX model {located.onnx.name}: {exc}. {_HOW_TO_EXPORT}") from exc
        inputs, outputs = session.get_inputs(), session.get_outputs()
        if len(inputs) != 1 or len(outputs) != 1:
            raise ModelError(f"the ONNX model {located.onnx.name} has {len(inputs)} inputs and {len(outputs)} "
                             "outputs; a detection export has one of each (YOLO, RT-DETR). " + _HOW_TO_EXPORT)
        labels = read_labels(located.labels, session.get_modelmeta().custom_metadata_map)
        fmt = output_format(tuple(outputs[0].shape), len(labels))
        height, width = _input_size(inputs[0].shape, input_size)
        backend = SingleOutputSession(session, inputs[0].name)
        detector = cls(model_id, backend, _spec(height, width), labels, fmt)
        log.info("loaded ONNX model %s (%s, %d classes, input %dx%d)", located.onnx.name, fmt, len(labels), width, height)
        return detector

    def _infer(self, inputs: dict[str, torch.Tensor], sizes: list[tuple[int, int]],
               threshold: float) -> list[dict[str, torch.Tensor]]:
        raw = self.forward(inputs)
        input_hw = (self.spec.height or 1, self.spec.width or 1)
        return [_decode(self.format, output, input_hw, size, threshold) for output, size in zip(raw, sizes, strict=True)]

    def describe(self) -> dict[str, Any]:
        return {"id": self.model_id, "architecture": f"onnx-{self.format}", "format": self.format,
                "device": self.device, "dtype": self.dtype, "input_size": self.spec.describe_input_size(),
                "random_weights": False, **self._backend.describe()}


class SingleOutputSession(Backend):
    """An ONNX Runtime session with one input and one output, run one frame at a time (exports
    are usually fixed at a batch of one); returns the outputs stacked, as numpy."""

    name = "onnxruntime"

    def __init__(self, session: Any, input_name: str) -> None:
        self._session = session
        self._input_name = input_name

    def __call__(self, inputs: dict[str, torch.Tensor]) -> Any:
        frames = inputs["pixel_values"].detach().float().cpu().numpy()
        return np.concatenate([self._session.run(None, {self._input_name: frames[i:i + 1]})[0]
                               for i in range(len(frames))])

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "providers": list(self._session.get_providers())}


def _input_size(shape: list[Any], override: int | None) -> tuple[int, int]:
    height, width = shape[2], shape[3]
    if isinstance(height, int) and isinstance(width, int):
        return height, width
    side = override or DEFAULT_SIDE
    return side, side


def _spec(height: int, width: int) -> PreprocessSpec:
    return PreprocessSpec(do_resize=True, resize_mode="fixed", height=height, width=width, shortest_edge=None,
                          longest_edge=None, interpolation="bilinear", do_rescale=True, rescale_factor=1 / 255,
                          do_normalize=False, image_mean=(0.0, 0.0, 0.0), image_std=(1.0, 1.0, 1.0), do_pad=False)


def _decode(fmt: str, output: np.ndarray, input_hw: tuple[int, int], frame_hw: tuple[int, int],
            threshold: float) -> dict[str, torch.Tensor]:
    """One frame's raw output -> boxes (xyxy, frame pixels), scores and labels above ``threshold``."""
    (in_h, in_w), (frame_h, frame_w) = input_hw, frame_hw
    if fmt == "yolov8":
        rows = output.T  # (N, 4 + nc)
        boxes, class_scores = rows[:, :4], rows[:, 4:]
    elif fmt == "yolov5":
        boxes, class_scores = output[:, :4], output[:, 5:] * output[:, 4:5]
    else:  # rtdetr: boxes as fractions of the input
        boxes, class_scores = output[:, :4] * np.array([in_w, in_h, in_w, in_h], dtype=np.float32), output[:, 4:]
    labels = class_scores.argmax(axis=1)
    scores = class_scores[np.arange(len(labels)), labels]
    keep = scores > threshold
    to_frame = np.array([frame_w / in_w, frame_h / in_h] * 2, dtype=np.float32)
    xyxy = _corners(boxes[keep]) * to_frame
    scores, labels = scores[keep], labels[keep]
    if fmt != "rtdetr":
        kept = class_wise_nms(xyxy, scores, labels, NMS_IOU)
        xyxy, scores, labels = xyxy[kept], scores[kept], labels[kept]
    return {"boxes": torch.from_numpy(np.ascontiguousarray(xyxy, dtype=np.float32)),
            "scores": torch.from_numpy(np.ascontiguousarray(scores, dtype=np.float32)),
            "labels": torch.from_numpy(labels.astype(np.int64))}


def _corners(cxcywh: np.ndarray) -> np.ndarray:
    cx, cy, w, h = cxcywh[:, 0], cxcywh[:, 1], cxcywh[:, 2], cxcywh[:, 3]
    return np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1).astype(np.float32)


def class_wise_nms(xyxy: np.ndarray, scores: np.ndarray, labels: np.ndarray, iou: float) -> np.ndarray:
    """Indices kept by greedy non-maximum suppression within each class, best score first."""
    kept: list[int] = []
    for label in np.unique(labels):
        index = np.flatnonzero(labels == label)
        order = index[np.argsort(-scores[index], kind="stable")]
        while len(order):
            best, rest = order[0], order[1:]
            kept.append(int(best))
            order = rest[_iou(xyxy[best], xyxy[rest]) <= iou]
    return np.array(sorted(kept, key=lambda i: -scores[i]), dtype=np.int64)


def _iou(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    x0 = np.maximum(box[0], others[:, 0])
    y0 = np.maximum(box[1], others[:, 1])
    x1 = np.minimum(box[2], others[:, 2])
    y1 = np.minimum(box[3], others[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-9)
