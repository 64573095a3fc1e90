"""Detectors loaded once per process and shared by the worker's job threads."""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable

import numpy as np

from core.backends.base import BlobStore
from core.config import Settings
from core.errors import ConfigError, InvalidInput, StorageError
from core.model_card import ModelCard, public_model_id, publish_card
from ml_engine.detector import Detector

log = logging.getLogger(__name__)

# the start-up check's frames; the detector resizes every frame to its input size anyway
WARM_UP_FRAME_WIDTH, WARM_UP_FRAME_HEIGHT = 640, 480


class DetectorCache:
    """At most MAX_LOADED_MODELS detectors, least recently used unloaded first (jobs may choose
    their model when ALLOW_MODEL_OVERRIDE is on, and each model holds GPU memory).

    ``blobs``: where to publish each loaded model's card (its class names) for the API.
    """

    def __init__(self, settings: Settings, blobs: BlobStore | None = None,
                 loader: Callable[..., Detector] | None = None) -> None:
        self._settings = settings
        self._blobs = blobs
        self._loader = loader or Detector.load
        self._detectors: OrderedDict[str, Detector] = OrderedDict()  # least recently used first
        self._lock = threading.Lock()

    def get(self, model_id: str | None = None) -> Detector:
        """The detector for ``model_id`` (default MODEL_ID), loading it on first use.
        Raises ModelError when it cannot be loaded."""
        model_id = model_id or self._settings.model_id
        with self._lock:
            if model_id in self._detectors:
                self._detectors.move_to_end(model_id)
                return self._detectors[model_id]
            log.info("loading model %s on %s", model_id, self._settings.device)
            detector = self._loader(model_id, device=self._settings.device, input_size=self._settings.input_size,
                                    runtime=self._settings.runtime, precision=self._settings.runtime_precision)
            self._publish(model_id, detector)
            self._detectors[model_id] = detector
            while len(self._detectors) > self._settings.max_loaded_models:
                # a job still running on it keeps its own reference until it ends
                unloaded, _ = self._detectors.popitem(last=False)
                log.info("unloading model %s (MAX_LOADED_MODELS=%d)", unloaded, self._settings.max_loaded_models)
            return detector

    def load_default(self) -> Detector:
        """Load MODEL_ID and prove that it works with these settings, before any job runs, so
        that a misconfiguration stops the worker at start instead of failing every job:
        CLASSES must be names the model knows, and one batch of BATCH_SIZE frames must run
        (a checkpoint whose config does not match its weights, or a batch too big for the
        GPU, fails here). Raises ModelError or ConfigError."""
        detector = self.get()
        if self._settings.classes:
            try:
                detector.class_ids(self._settings.classes)
            except InvalidInput as exc:
                raise ConfigError(f"CLASSES: {exc}") from None
        blank = np.zeros((WARM_UP_FRAME_HEIGHT, WARM_UP_FRAME_WIDTH, 3), dtype=np.uint8)
        detector.detect([blank] * self._settings.batch_size, threshold=1.0)
        return detector

    def _publish(self, model_id: str, detector: Detector) -> None:
        if self._blobs is None:
            return
        facts = detector.describe()
        card = ModelCard(model_id=public_model_id(model_id), architecture=facts["architecture"],
                         classes=detector.label_names(), random_weights=detector.random_weights, device=facts["device"],
                         runtime=facts.get("runtime", "torch"), precision=facts.get("precision", "fp32"))
        try:
            publish_card(self._blobs, card, model_id)
        except StorageError as exc:  # the API then just cannot list classes; jobs still run
            log.warning("could not publish the model card of %s: %s", model_id, exc)
