"""Inference runtimes for DETR-family checkpoints: one ``Backend`` interface, one file per runtime.

``torch`` runs the transformers model itself (the default). ``onnxruntime`` and ``openvino``
run an ONNX export of it, made at first use and cached by checkpoint hash (``export.py``);
each is checked against torch on sample images before it is used (``faithfulness.py``), and
refused, with the reason logged, when its detections differ from torch's by more than torch
differs from itself at another thread count. ``auto`` picks the fastest faithful one
(``select.py``).
"""

from __future__ import annotations

from ml_engine.runtimes.base import PRECISIONS, RUNTIMES, Backend, RawOutputs, RuntimeRefused

__all__ = ["PRECISIONS", "RUNTIMES", "Backend", "RawOutputs", "RuntimeRefused"]
