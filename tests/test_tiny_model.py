"""The random test checkpoints: real-size ones must rank their queries like a trained model,
by separated scores, or no comparison between runtimes (or preprocessing paths) means anything."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoModelForObjectDetection

from ml_engine import tiny_model
from ml_engine.detector import Detector
from ml_engine.tiny_model import build_tiny_checkpoint, calibration_images, separate_scores


def _encoder_scores(model: torch.nn.Module, pixel_values: torch.Tensor) -> torch.Tensor:
    """The encoder's best class score per anchor: what RT-DETR ranks to choose its queries."""
    with torch.inference_mode():
        outputs = model(pixel_values=pixel_values)
    scores = outputs.enc_outputs_class[0].max(-1).values
    return scores[torch.isfinite(scores)]


def _small_model_with_default_init() -> torch.nn.Module:
    """The tiny RT-DETRv2 with transformers' default init (batch-norm weights about 0.01), the
    init that makes the real-size model degenerate; small enough to build in a second."""
    config = tiny_model._config("rt_detr_v2", "tiny", ["cow", "sheep"])
    config.initializer_range = 0.01
    torch.manual_seed(0)
    return AutoModelForObjectDetection.from_config(config).eval()


def test_separate_scores_turns_tied_encoder_scores_into_distinct_ones() -> None:
    model = _small_model_with_default_init()
    image = calibration_images(tiny_model.TINY_INPUT)[:1]
    before = _encoder_scores(model, image)
    assert before.unique().numel() < 0.05 * before.numel(), "the default init should tie the scores"
    separate_scores(model, calibration_images(tiny_model.TINY_INPUT))
    after = _encoder_scores(model, image)
    assert after.unique().numel() > 0.9 * after.numel()
    assert float(after.std()) > 0.1
    assert not model.training and all(not module.training for module in model.modules())


def test_separate_scores_gives_all_zero_heads_noise() -> None:
    model = _small_model_with_default_init()
    zero = [name for name, p in model.named_parameters() if p.dim() >= 2 and not p.any()]
    assert zero, "RT-DETR starts its box-refinement heads at zero"
    separate_scores(model, calibration_images(tiny_model.TINY_INPUT))
    still_zero = [name for name, p in model.named_parameters() if p.dim() >= 2 and not p.any()]
    assert still_zero == []


@pytest.mark.heavy
def test_real_size_checkpoint_has_separated_encoder_scores(tmp_path: Path) -> None:
    directory = build_tiny_checkpoint(tmp_path / "real", size="real")
    detector = Detector.load(str(directory), device="cpu")
    inputs = detector.prepare([calibration_images(640)[1].permute(1, 2, 0).mul(255).byte().numpy()])
    scores = _encoder_scores(detector._model, inputs["pixel_values"])
    assert scores.numel() > 8000
    assert scores.unique().numel() > 0.9 * scores.numel()
    top = scores.topk(300).values
    assert float(top[0] - top[-1]) > 0.1
