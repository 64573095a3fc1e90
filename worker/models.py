"""Detectors loaded once per process and shared by the worker's job threads."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from core.backends.base import BlobStore
from core.config import Settings
from core.errors import StorageError
from core.model_card import ModelCard, publish_card
from ml_engine.detector import Detector

log = logging.getLogger(__name__)


class DetectorCache:
    """``blobs``: where to publish each loaded model's card (its class names) for the API."""

    def __init__(self, settings: Settings, blobs: BlobStore | None = None,
                 loader: Callable[..., Detector] | None = None) -> None:
        self._settings = settings
        self._blobs = blobs
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
                detector = self._loader(model_id, device=self._settings.device, input_size=self._settings.input_size)
                self._publish(model_id, detector)
                self._detectors[model_id] = detector
            return self._detectors[model_id]

    def _publish(self, model_id: str, detector: Detector) -> None:
        if self._blobs is None:
            return
        facts = detector.describe()
        card = ModelCard(model_id=model_id, architecture=facts["architecture"], classes=detector.label_names(),
                         random_weights=detector.random_weights, device=facts["device"])
        try:
            publish_card(self._blobs, card)
        except StorageError as exc:  # the API then just cannot list classes; jobs still run
            log.warning("could not publish the model card of %s: %s", model_id, exc)
