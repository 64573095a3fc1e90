"""ONNX Runtime and OpenVINO, each running the cached ONNX export of the checkpoint."""

from __future__ import annotations

import importlib.util
import threading
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ml_engine.runtimes.base import Backend, RawOutputs, RuntimeRefused
from ml_engine.runtimes.export import INPUT_NAME


def available(runtime: str) -> bool:
    """Whether the runtime's Python package is installed here."""
    module = {"onnxruntime": "onnxruntime", "openvino": "openvino"}[runtime]
    return importlib.util.find_spec(module) is not None


class _OneFrameAtATime(Backend):
    """The export takes a batch of one: run each frame, stack the outputs on the input's device."""

    def __call__(self, inputs: dict[str, torch.Tensor]) -> Any:
        pixels = inputs[INPUT_NAME]
        frames = pixels.detach().float().cpu().numpy()
        logits, boxes = zip(*(self._run_one(np.ascontiguousarray(frames[i:i + 1])) for i in range(len(frames))),
                            strict=True)
        return RawOutputs(logits=torch.from_numpy(np.concatenate(logits)).to(pixels.device),
                          pred_boxes=torch.from_numpy(np.concatenate(boxes)).to(pixels.device))

    def _run_one(self, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError


class OnnxRuntimeBackend(_OneFrameAtATime):
    """ONNX Runtime: the CPU provider, or TensorRT / CUDA first when the model is on a GPU. For
    int8, ``onnx_path`` is the quantised graph (``quantize.py``)."""

    name = "onnxruntime"

    def __init__(self, onnx_path: Path, precision: str, threads: int, device: str = "cpu") -> None:
        if precision == "bf16":
            raise RuntimeRefused(self.name, "RUNTIME_PRECISION=bf16 is not offered with onnxruntime (use openvino)")
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.log_severity_level = 3  # warnings about unused initialisers are noise here
        self.providers = _providers(ort.get_available_providers(), device)
        self.precision = precision
        self._session = ort.InferenceSession(str(onnx_path), options, providers=self.providers)

    def _run_one(self, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        logits, boxes = self._session.run(None, {INPUT_NAME: frame})
        return logits, boxes

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "providers": list(self._session.get_providers())}


def _providers(available_providers: list[str], device: str) -> list[str]:
    """GPU providers first when the model is meant for a GPU (TensorRT, then CUDA), CPU last."""
    wanted = ["TensorrtExecutionProvider", "CUDAExecutionProvider"] if device.startswith("cuda") else []
    return [name for name in wanted if name in available_providers] + ["CPUExecutionProvider"]


class OpenVinoBackend(_OneFrameAtATime):
    """OpenVINO on the CPU: fp32; bf16 where the CPU has it; int8 from the quantised graph
    (``quantize.py``), whose QDQ nodes OpenVINO runs as int8 whatever the precision hint."""

    name = "openvino"
    _HINTS = {"fp32": "f32", "bf16": "bf16", "int8": "f32"}

    def __init__(self, onnx_path: Path, precision: str, threads: int) -> None:
        import openvino as ov

        core = ov.Core()
        if precision == "bf16" and "BF16" not in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
            raise RuntimeRefused(self.name, "RUNTIME_PRECISION=bf16 but this CPU has no bf16 instructions")
        config = {"INFERENCE_PRECISION_HINT": self._HINTS[precision], "INFERENCE_NUM_THREADS": threads,
                  "PERFORMANCE_HINT": "LATENCY"}
        self.precision = precision
        self._compiled = core.compile_model(core.read_model(str(onnx_path)), "CPU", config)
        self._request = self._compiled.create_infer_request()
        self._lock = threading.Lock()  # one infer request; job threads may share the detector

    def _run_one(self, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with self._lock:
            results = self._request.infer([frame])
            return np.array(results[0]), np.array(results[1])
