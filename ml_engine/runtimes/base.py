"""What every runtime implements: raw model outputs for the detector's preprocessed inputs."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import torch
from transformers.utils import ModelOutput

from core.errors import ModelError

RUNTIMES = ("torch", "onnxruntime", "openvino", "auto")
PRECISIONS = ("fp32", "bf16", "int8")


@dataclass
class RawOutputs(ModelOutput):
    """The two outputs DETR-family post-processing reads, as the transformers model names them."""

    logits: torch.Tensor | None = None
    pred_boxes: torch.Tensor | None = None


class RuntimeRefused(ModelError):
    """A runtime that cannot run this checkpoint here, or whose detections are not torch's."""

    def __init__(self, runtime: str, reason: str) -> None:
        super().__init__(f"runtime {runtime} refused: {reason}")
        self.runtime = runtime
        self.reason = reason


class Backend(ABC):
    """Runs a detection model on a batch of preprocessed inputs.

    Attributes:
        name: the runtime (``"torch"``, ``"onnxruntime"``, ``"openvino"``).
        precision: ``"fp32"``, ``"bf16"`` or ``"int8"``: the arithmetic the runtime uses.
    """

    name: str = ""
    precision: str = "fp32"

    @abstractmethod
    def __call__(self, inputs: dict[str, torch.Tensor]) -> Any:
        """Outputs with ``logits`` and ``pred_boxes`` for ``inputs`` (``pixel_values`` N x 3 x H x W)."""

    def describe(self) -> dict[str, Any]:
        """What stats.json and GET /model say of the runtime."""
        return {"runtime": self.name, "precision": self.precision}
