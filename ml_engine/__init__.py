"""CattleCounter's engine: detect, track and count objects in a video file.

Standalone (no queue, no API): use it from a notebook or ``python -m ml_engine VIDEO -o OUT``.

    from ml_engine import DetectionConfig, Detector, PipelineConfig, process_video
    detector = Detector.load("PekingU/rtdetr_v2_r18vd")
    cows = DetectionConfig(classes=["cow"])  # and threshold, tiling=parse_tiling("640x640"), ...
    result = process_video("field.mp4", "out/", detector, PipelineConfig(detection=cows))

    run = StillsRun(Path("out/"), detector, StillsConfig(detection=cows))  # stills, orthomosaics
    run.add_file("ortho.tif", Path("ortho.tif")); stats, outputs = run.finish()

Importing this package does not import torch or transformers (the API process imports
``ml_engine.media.video`` to validate uploads and has neither): the names below are imported
from their modules on first use.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

# The pipeline runs video decode and H.264 encode threads beside torch's OpenMP pool. With
# OpenMP's default wait policy idle torch workers spin at every barrier and starve those
# threads: on a 2-core CPU that made the pipeline 2-4x slower in bench/pipeline_bench.py
# (several times the CPU per frame). PASSIVE lets them sleep. It only takes effect if set
# before torch is first imported (no ml_engine module imports torch at package import), and
# an explicit OMP_WAIT_POLICY in the environment wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

_LAZY_EXPORTS = {
    "DetectionConfig": "ml_engine.detection",
    "Detector": "ml_engine.detector",
    "build_tiny_checkpoint": "ml_engine.tiny_model",
    "process_video": "ml_engine.pipeline",
    "PipelineConfig": "ml_engine.pipeline",
    "PipelineResult": "ml_engine.pipeline",
    "Progress": "ml_engine.pipeline",
    "probe": "ml_engine.media.video",
    "StillsConfig": "ml_engine.stills",
    "StillsRun": "ml_engine.stills",
    "TiledDetector": "ml_engine.detection",
    "VideoInfo": "ml_engine.media.video",
}

__all__ = sorted(_LAZY_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _LAZY_EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'ml_engine' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
