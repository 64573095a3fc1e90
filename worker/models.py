"""Detectors loaded once per process and shared by the worker's job threads."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from core.config import Settings
from ml_engine.detector import Detector

log = logging.getLogger(__name__)


class DetectorCache:
    def __init__(self, settings: Settings, loader: Callable[..., Detector] | None = None) -> None:
        self._settings = settings
        self._loader = loader or Detector.load
        self._detectors: dict[str, Detector] = {}
        self._lock = threading.Lock()

    def get(self, model_id: str | None = None) -> Detector:
        """The detector for ``model_id`` (default MODEL_ID), loading it on first use.
        Raises ModelError when it cannot be loaded."""
        model_id = model_id or self._settings.model_id
        with self._lock:
            if model_id not in self._detectors:
                log.info("loading model %s on %s", model_id, self._settings.device)
                self._detectors[model_id] = self._loader(
                    model_id, device=self._settings.device, input_size=self._settings.input_size
                )
            return self._detectors[model_id]
