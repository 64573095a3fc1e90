"""A live frame's detections: the whole frame, or tiles merged (``StreamConfig``'s tiling)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import supervision as sv

from core.errors import ModelError
from ml_engine.pipeline import DetectorLike
from ml_engine.tiling import TilePlan, TilingSetting, View, merge_views, plan_tiles

if TYPE_CHECKING:
    from ml_engine.live.run import StreamConfig


class FrameDetector:
    """Detects on one frame at a time, with the tiling plan of the frame's size."""

    def __init__(self, config: StreamConfig, detector: DetectorLike) -> None:
        self.config, self.detector = config, detector
        self._tiles: TilePlan | None = None  # planned for the first frame, again when the size changes
        self._tiles_for: tuple[int, int] | None = None

    def detect(self, image: np.ndarray, frame_index: int) -> sv.Detections:
        tiles = self._plan_for(image)
        threshold, classes = self.config.effective_low_threshold, self.config.classes
        if not tiles.tiled:
            results = self.detector.detect([image], threshold, classes)
            if len(results) != 1:
                raise ModelError(f"the detector returned {len(results)} results for 1 frame")
            return results[0]
        views = [View(0, frame_index, region) for region in tiles.regions]
        per_view: list[sv.Detections] = []
        cap = self.config.tile_batch_size
        for start in range(0, len(views), cap):
            part = views[start:start + cap]
            found = self.detector.detect_views([image], part, threshold, classes)
            if len(found) != len(part):
                raise ModelError(f"the detector returned {len(found)} results for {len(part)} tiles")
            per_view.extend(found)
        return merge_views(per_view)

    def _plan_for(self, image: np.ndarray) -> TilePlan:
        """The tiling plan for this frame's size (a camera may change resolution)."""
        size = (image.shape[1], image.shape[0])
        if self._tiles is None or self._tiles_for != size:
            setting = self.config.tiling
            assert isinstance(setting, TilingSetting)
            self._tiles = plan_tiles(
                setting, size, self.detector.model_input_size(*size), self.detector.tile_size(),
                self.config.tiling_full_frame,
            )
            self._tiles_for = size
        return self._tiles

    def tiling_facts(self) -> dict[str, Any] | None:
        """The last frame size's tiling plan (None: no frame was processed in this run)."""
        setting = self.config.tiling
        assert isinstance(setting, TilingSetting)
        return self._tiles.describe(setting, self.config.tiling_full_frame) if self._tiles else None
