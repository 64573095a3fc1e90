"""int8 without NNCF: ONNX Runtime's static quantisation of the cached fp32 export.

The export is quantised once and cached beside it: weights per output channel (int8),
activations (uint8) with ranges calibrated on a few synthetic frames passed through the
detector's own preprocessing. The result is a QDQ graph (QuantizeLinear / DequantizeLinear
pairs around each quantised operator), which ONNX Runtime runs with int8 kernels and which
OpenVINO reads as its own int8 (FakeQuantize). Each runtime gets its own file: they want
different activation types.

Only convolutions and matrix products are quantised: they carry nearly all of the arithmetic,
and what follows them in RT-DETR (softmax, sigmoid, the sampling of deformable attention, the
top-k choice of queries) loses the most from 8 bits. int8 is never chosen without being asked
for, and its deviation from torch is measured by the same check as every runtime's.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from ml_engine.runtimes.base import RuntimeRefused
from ml_engine.runtimes.export import INPUT_NAME

log = logging.getLogger(__name__)

# bump when the calibration or the quantisation settings change: the cached file's name says which
QUANTISATION_VERSION = 1
CALIBRATION_FRAMES = 8
QUANTISED_OPERATORS = ["Conv", "MatMul", "Gemm"]

Prepare = Callable[[np.ndarray], np.ndarray]  # one RGB frame -> the model's 1 x 3 x H x W input


def int8_path(fp32_path: Path, runtime: str) -> Path:
    return fp32_path.with_name(f"model.int8-v{QUANTISATION_VERSION}-{runtime}.onnx")


def quantised_onnx(fp32_path: Path, prepare: Prepare, runtime: str) -> Path:
    """The int8 QDQ version of the export at ``fp32_path``, quantised first if missing.

    ``prepare`` turns a calibration frame into the model's input, as the detector does.
    Raises RuntimeRefused when quantisation fails (the reason says why).
    """
    path = int8_path(fp32_path, runtime)
    if path.exists():
        log.info("using the cached int8 model %s", path)
        return path
    started = time.monotonic()
    handle, partial = tempfile.mkstemp(dir=path.parent, suffix=".onnx.partial")
    os.close(handle)
    try:
        _quantise(fp32_path, Path(partial), prepare, runtime)
        os.replace(partial, path)
    except RuntimeRefused:
        raise
    except Exception as exc:  # onnxruntime.quantization raises plain exceptions on graphs it cannot handle
        reason = " ".join(str(exc).split())[:300] or type(exc).__name__
        raise RuntimeRefused(runtime, f"int8 quantisation failed ({type(exc).__name__}: {reason})") from exc
    finally:
        Path(partial).unlink(missing_ok=True)
    log.info("quantised the model to int8 in %.1f s: %s", time.monotonic() - started, path)
    return path


def _quantise(source: Path, target: Path, prepare: Prepare, runtime: str) -> None:
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class Frames(CalibrationDataReader):
        def __init__(self) -> None:
            self._inputs: Iterator[np.ndarray] = (prepare(image) for image in calibration_frames())

        def get_next(self) -> dict[str, np.ndarray] | None:
            pixels = next(self._inputs, None)
            return None if pixels is None else {INPUT_NAME: pixels}

    quantize_static(
        str(source), str(target), Frames(),
        quant_format=QuantFormat.QDQ,
        # ONNX Runtime's x86 kernels want unsigned activations; OpenVINO's int8 transformations
        # refuse the decoder's matrix products with them, and take signed ones
        activation_type=QuantType.QInt8 if runtime == "openvino" else QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        per_channel=True,
        # 7-bit weights: x86 CPUs without VNNI (this one) saturate 8-bit products in int16; the
        # cached file may also move to another machine, so it is made safe for all of them
        reduce_range=True,
        op_types_to_quantize=QUANTISED_OPERATORS,
        calibrate_method=CalibrationMethod.MinMax,
        calibration_providers=["CPUExecutionProvider"],
    )


def calibration_frames() -> list[np.ndarray]:
    """Synthetic scenes like the footage the service counts: ground with a gradient and a
    texture, animals as bright and dark ellipses of several sizes, at two frame sizes.
    Not the faithfulness check's images, so the check does not judge on what was calibrated."""
    rng = np.random.default_rng(2026)
    frames = []
    for index in range(CALIBRATION_FRAMES):
        height, width = (720, 1280) if index % 2 == 0 else (1080, 1920)
        ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
        base = rng.uniform(40, 140, 3)
        ground = np.stack([base[c] + 50 * np.sin(xs / rng.uniform(60, 300) + ys / rng.uniform(80, 400))
                           for c in range(3)], axis=-1)
        ground += rng.normal(0, 12, ground.shape)
        for _ in range(rng.integers(5, 40)):
            cx, cy = rng.uniform(0, width), rng.uniform(0, height)
            rx, ry = rng.uniform(10, width / 12), rng.uniform(8, height / 12)
            shade = rng.choice([rng.uniform(0, 50), rng.uniform(180, 255)])
            ground[((xs - cx) / rx) ** 2 + ((ys - cy) / ry) ** 2 < 1] = shade
        frames.append(ground.clip(0, 255).astype(np.uint8))
    return frames
