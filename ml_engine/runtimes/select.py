"""Choosing the runtime a detector runs on: build it, check it against torch, or fall back.

The Detector calls ``choose`` once after loading the checkpoint in torch. An explicit runtime
that cannot be built here or fails the faithfulness check is refused with the reason logged,
and the detector stays on torch (``GET /model`` and stats.json say which runtime runs and
why another was refused). ``auto`` times every faithful fp32 runtime and keeps the fastest.
"""

from __future__ import annotations

import logging
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import supervision as sv
import torch

from core.errors import ConfigError
from ml_engine.runtimes import faithfulness, quantize
from ml_engine.runtimes.base import PRECISIONS, RUNTIMES, Backend, RuntimeRefused
from ml_engine.runtimes.export import INPUT_NAME, exported_onnx
from ml_engine.runtimes.onnx_backends import OnnxRuntimeBackend, OpenVinoBackend, available
from ml_engine.runtimes.quantize import quantised_onnx

if TYPE_CHECKING:
    from ml_engine.detector import Detector

log = logging.getLogger(__name__)

ONNX_RUNTIMES = ("onnxruntime", "openvino")
TIMING_RUNS = 3


@dataclass
class Choice:
    """The backend chosen, and what was learnt choosing it (for describe())."""

    backend: Backend
    requested: str
    verdicts: dict[str, dict[str, Any]] = field(default_factory=dict)
    refused: dict[str, str] = field(default_factory=dict)
    ms_per_frame: dict[str, float] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        facts: dict[str, Any] = {**self.backend.describe(), "runtime_requested": self.requested}
        if self.refused:
            facts["runtime_refused"] = dict(self.refused)
        verdict = self.verdicts.get(self.backend.name)
        if verdict is not None:
            facts["faithfulness"] = verdict
        if self.ms_per_frame:
            facts["runtime_ms_per_frame"] = {name: round(ms, 1) for name, ms in self.ms_per_frame.items()}
        return facts


def validate(runtime: str, precision: str) -> tuple[str, str]:
    """Normalised (runtime, precision). Raises ConfigError naming the valid values."""
    runtime, precision = (runtime or "torch").strip().lower(), (precision or "fp32").strip().lower()
    if runtime not in RUNTIMES:
        raise ConfigError(f"RUNTIME must be one of {', '.join(RUNTIMES)}, got {runtime!r}")
    if precision not in PRECISIONS:
        raise ConfigError(f"RUNTIME_PRECISION must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if runtime == "torch" and precision != "fp32":
        raise ConfigError(f"RUNTIME_PRECISION={precision} needs RUNTIME=openvino, onnxruntime (int8) or auto; "
                          "torch runs fp32 on the CPU (DTYPE sets its autocast on a GPU)")
    return runtime, precision


def choose(detector: Detector, runtime: str, precision: str, cache_dir: Path | None = None) -> Choice:
    """The backend ``detector`` should run on for RUNTIME=``runtime``, RUNTIME_PRECISION=``precision``."""
    runtime, precision = validate(runtime, precision)
    torch_backend = detector.backend
    choice = Choice(torch_backend, runtime)
    if runtime == "torch":
        return choice
    names = [runtime] if runtime != "auto" else [name for name in ONNX_RUNTIMES if available(name)]
    faithful: list[Backend] = []
    for name in names:
        try:
            backend = _build(detector, name, precision, cache_dir)
        except RuntimeRefused as exc:
            choice.refused[name] = exc.reason
            log.warning("RUNTIME %s is not used for %s: %s", name, detector.model_id, exc.reason)
            continue
        verdict = _judge(detector, backend)
        choice.verdicts[name] = verdict.as_dict()
        if verdict.passed or (precision != "fp32" and runtime != "auto"):
            faithful.append(backend)
            if not verdict.passed:  # asked for by name: used, and the deviation said loudly
                log.warning("RUNTIME %s at %s deviates from torch for %s: %s", name, precision,
                            detector.model_id, verdict.reason)
        else:
            choice.refused[name] = verdict.reason
            log.warning("RUNTIME %s refused for %s: %s", name, detector.model_id, verdict.reason)
    if runtime != "auto":
        choice.backend = faithful[0] if faithful else torch_backend
        return choice
    return _fastest(detector, [torch_backend, *faithful], choice)


def _build(detector: Detector, name: str, precision: str, cache_dir: Path | None) -> Backend:
    if not available(name):
        raise RuntimeRefused(name, f"the {name} package is not installed here")
    if detector.device.startswith("cuda") and name == "openvino":
        raise RuntimeRefused(name, "OpenVINO runs on the CPU here; the model is on a GPU")
    onnx_path = exported_onnx(detector.backend_model(), detector.spec, cache_dir, runtime=name)
    if precision == "int8":
        onnx_path = quantised_onnx(onnx_path, _model_input(detector), runtime=name)
    threads = torch.get_num_threads()
    try:
        if name == "onnxruntime":
            return OnnxRuntimeBackend(onnx_path, precision, threads, detector.device)
        return OpenVinoBackend(onnx_path, precision, threads)
    except RuntimeRefused:
        raise
    except Exception as exc:  # the runtimes raise their own error types when a graph does not load
        reason = " ".join(str(exc).split())[:300] or type(exc).__name__
        raise RuntimeRefused(name, f"could not load the ONNX export ({type(exc).__name__}: {reason})") from exc


def _model_input(detector: Detector) -> quantize.Prepare:
    """One frame as the exported graph takes it: the detector's preprocessing, as a numpy batch of one."""

    def prepare(image: np.ndarray) -> np.ndarray:
        return detector.prepare([image])[INPUT_NAME].detach().float().cpu().numpy()

    return prepare


def _judge(detector: Detector, backend: Backend) -> faithfulness.Verdict:
    reference = _detect_with(detector, detector.backend)

    def other_threads(images: list[np.ndarray]) -> list[sv.Detections]:
        with faithfulness.torch_threads(faithfulness.other_thread_count()):
            return reference(images)

    verdict = faithfulness.judge(backend.name, reference, _detect_with(detector, backend), other_threads)
    log.info("RUNTIME %s (%s) against torch for %s: %s; %s", backend.name, backend.precision, detector.model_id,
             "faithful" if verdict.passed else "NOT faithful", verdict.reason)
    return verdict


def _detect_with(detector: Detector, backend: Backend) -> faithfulness.Detect:
    def detect(images: list[np.ndarray]) -> list[sv.Detections]:
        with detector.running_on(backend):
            return detector.detect(images, threshold=0.0)

    return detect


def _fastest(detector: Detector, backends: list[Backend], choice: Choice) -> Choice:
    inputs = detector.prepare(faithfulness.sample_images()[:1])
    for backend in backends:
        backend(inputs)  # warm-up: first runs allocate
        times = []
        for _ in range(TIMING_RUNS):
            started = time.perf_counter()
            backend(inputs)
            times.append(time.perf_counter() - started)
        choice.ms_per_frame[backend.name] = 1000 * statistics.median(times)
    choice.backend = min(backends, key=lambda backend: choice.ms_per_frame[backend.name])
    log.info("RUNTIME=auto chose %s for %s (ms per frame: %s)", choice.backend.name, detector.model_id,
             ", ".join(f"{name} {ms:.0f}" for name, ms in choice.ms_per_frame.items()))
    return choice
