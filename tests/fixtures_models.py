"""Model fixtures: tiny randomly initialised checkpoints, built once per test session.

They are real transformers checkpoints (config.json + model.safetensors +
preprocessor_config.json, written by ``save_pretrained``) and load through the same
``Detector.load`` path users take; only their weights are random, so their boxes are noise.
"""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_rtdetr_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny RT-DETRv2 checkpoint (labels cow, sheep, horse, person; 320x320 input)."""
    from ml_engine.tiny_model import build_tiny_checkpoint

    return build_tiny_checkpoint(tmp_path_factory.mktemp("tiny_rtdetr_v2"), arch="rt_detr_v2")


@pytest.fixture(scope="session")
def separated_rtdetr_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny RT-DETRv2 with separated scores (``tiny_model.separate_scores``), like a trained
    model's: which queries it keeps does not hang on ties, so runtimes can be compared on it."""
    from ml_engine.tiny_model import build_tiny_checkpoint

    return build_tiny_checkpoint(tmp_path_factory.mktemp("separated_rtdetr_v2"), arch="rt_detr_v2", separated=True)


@pytest.fixture(scope="session")
def tiny_detr_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny DETR checkpoint with a transformers-native ResNet backbone (shortest edge 320)."""
    from ml_engine.tiny_model import build_tiny_checkpoint

    return build_tiny_checkpoint(tmp_path_factory.mktemp("tiny_detr"), arch="detr")


@pytest.fixture(scope="session")
def tiny_rtdetr_detector(tiny_rtdetr_dir: Path):
    """The tiny RT-DETRv2 loaded on the CPU, shared by the session (a Detector holds no per-call state)."""
    from ml_engine.detector import Detector

    return Detector.load(str(tiny_rtdetr_dir), device="cpu")


@pytest.fixture(scope="session")
def mismatched_checkpoint_dir(tmp_path_factory: pytest.TempPathFactory, tiny_rtdetr_dir: Path) -> Path:
    """The tiny RT-DETRv2 with a config.json that does not match its weights: it loads (the
    weight shapes still fit), but its forward pass fails (32 channels cannot split into 3 heads)."""
    import json
    import shutil

    directory = tmp_path_factory.mktemp("mismatched") / "checkpoint"
    shutil.copytree(tiny_rtdetr_dir, directory)
    config = json.loads((directory / "config.json").read_text())
    config["encoder_attention_heads"] = 3
    (directory / "config.json").write_text(json.dumps(config))
    return directory
