"""ONNX export of a DETR-family model, made once and cached by checkpoint hash.

The legacy TorchScript exporter (``dynamo=False``, opset 17) exports RT-DETR as it is; the
dynamo exporter fails on the model's own shape check. The graph is fixed at the model's
input size and a batch of one, so only checkpoints with a fixed input size (RT-DETR) can
be exported; the backends run a batch one frame at a time.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import torch

from ml_engine.preprocess import PreprocessSpec
from ml_engine.runtimes.base import RuntimeRefused

log = logging.getLogger(__name__)

OPSET = 17
INPUT_NAME = "pixel_values"
OUTPUT_NAMES = ("logits", "pred_boxes")


def default_cache_dir() -> Path:
    """Exports live beside the downloaded checkpoints, in the model cache (HF_HOME, read now:
    huggingface_hub reads it once, at import)."""
    from huggingface_hub import constants

    return Path(os.environ.get("HF_HOME") or constants.HF_HOME).expanduser() / "cattlecounter" / "onnx"


def exportable_size(spec: PreprocessSpec, runtime: str) -> tuple[int, int]:
    """The (height, width) an export is fixed at. Raises RuntimeRefused for checkpoints whose
    input size follows each frame (DETR, YOLOS) or that pad batches."""
    if not spec.do_resize or spec.resize_mode != "fixed" or spec.height is None or spec.width is None:
        raise RuntimeRefused(runtime, "the ONNX export needs a model with a fixed input size (RT-DETR); "
                                      f"this one takes {spec.describe_input_size()}")
    if spec.do_pad:
        raise RuntimeRefused(runtime, "the ONNX export cannot take a padding mask")
    return spec.height, spec.width


def checkpoint_hash(model: torch.nn.Module, spec: PreprocessSpec) -> str:
    """A digest of everything the exported graph depends on: weights, config, input size,
    exporter versions. Hashing the weights (not the path) keeps a changed checkpoint at the
    same path from reusing a stale export."""
    digest = hashlib.sha256()
    config = getattr(model, "config", None)
    digest.update(config.to_json_string().encode() if config is not None else b"")
    digest.update(repr((spec.height, spec.width, OPSET, torch.__version__)).encode())
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:32]


def exported_onnx(model: torch.nn.Module, spec: PreprocessSpec, cache_dir: Path | None = None,
                  runtime: str = "onnxruntime") -> Path:
    """The cached ONNX export of ``model`` at ``spec``'s input size, exported first if missing.

    Raises RuntimeRefused when the model cannot be exported (the reason says why).
    """
    height, width = exportable_size(spec, runtime)
    folder = (cache_dir or default_cache_dir()) / checkpoint_hash(model, spec)
    path = folder / "model.onnx"
    if path.exists():
        log.info("using the cached ONNX export %s", path)
        return path
    folder.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    # another process may export the same checkpoint at once: each writes its own file, the last rename wins
    handle, partial = tempfile.mkstemp(dir=folder, suffix=".onnx.partial")
    os.close(handle)
    try:
        _export(model, height, width, Path(partial), runtime)
        os.replace(partial, path)
    finally:
        Path(partial).unlink(missing_ok=True)
    log.info("exported the model to ONNX in %.1f s: %s", time.monotonic() - started, path)
    return path


class _RawOutputsOnly(torch.nn.Module):
    """The model with the two tensors post-processing reads as its only outputs."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor) -> tuple[Any, Any]:
        outputs = self.model(pixel_values=pixel_values)
        return outputs.logits, outputs.pred_boxes


def _export(model: torch.nn.Module, height: int, width: int, path: Path, runtime: str) -> None:
    device = next(model.parameters()).device
    example = torch.rand(1, 3, height, width, device=device)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # TracerWarnings about Python branches fixed at this size
            torch.onnx.export(_RawOutputsOnly(model).eval(), (example,), str(path), dynamo=False,
                              opset_version=OPSET, input_names=[INPUT_NAME], output_names=list(OUTPUT_NAMES))
    except Exception as exc:  # the exporter raises RuntimeError, TypeError, torch.onnx errors, ...
        reason = " ".join(str(exc).split())[:300] or type(exc).__name__
        raise RuntimeRefused(runtime, f"the ONNX export failed ({type(exc).__name__}: {reason})") from exc
