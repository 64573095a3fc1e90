"""The transformers model itself, in torch eager (with autocast where the detector asks for it)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import torch

from ml_engine.runtimes.base import Backend


class TorchBackend(Backend):
    name = "torch"

    def __init__(self, model: torch.nn.Module, autocast: Callable[[], contextlib.AbstractContextManager],
                 precision: str = "fp32") -> None:
        self.model = model
        self._autocast = autocast
        self.precision = precision

    def __call__(self, inputs: dict[str, torch.Tensor]) -> Any:
        with torch.inference_mode(), self._autocast():
            return self.model(**inputs)
