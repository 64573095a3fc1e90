"""Detection as the video pipeline, live streams and stills all do it: ``DetectionConfig``
(what to detect) and ``TiledDetector`` (how: whole frames, or their tiles merged back).

``TiledDetector`` is shaped like supervision's ``InferenceSlicer`` and sahi's
``get_sliced_prediction``, batched across frames: it takes a batch of frames, plans the tiles
of each frame size (``plan_tiles``), runs the model on every view of the batch
``tile_batch_size`` at a time, and merges each frame's views (``ml_engine.tiling`` owns the
merges). A large raster, never held in memory whole, goes through ``detect_windowed``: its
tiles are read from the file batch by batch.

Torch-free: the model is whatever implements ``DetectorLike``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

import numpy as np
import supervision as sv

from core.errors import InvalidInput, ModelError
from core.tiling import TilingSetting
from ml_engine.tiling import (
    Region,
    TilePlan,
    View,
    merge_in_clusters,
    merge_views,
    offset_boxes,
    plan_tiles,
)

__all__ = ["DEFAULT_RASTER_TILE", "DetectionConfig", "DetectorLike", "TileProgress", "TiledDetector"]

DEFAULT_RASTER_TILE = (640, 640)  # a large raster's tiles when the model takes any size (no resize)


class DetectorLike(Protocol):
    """What the engine needs of ``ml_engine.detector.Detector`` (every attribute it reads)."""

    labels: dict[int, str]  # class id -> name
    model_id: str
    device: str
    random_weights: bool

    def detect(self, images: list[Any], threshold: float, class_names: Any = None) -> list[sv.Detections]: ...

    def detect_views(
        self, images: list[Any], views: list[View], threshold: float, class_names: Any = None
    ) -> list[sv.Detections]:
        """One result per view (a region of one of ``images``), boxes in frame pixels; one forward pass."""
        ...

    def class_ids(self, class_names: Iterable[str]) -> set[int]:
        """The ids of these class names; InvalidInput naming the valid ones for an unknown name."""
        ...

    def model_input_size(self, width: int, height: int) -> tuple[int, int] | None:
        """The (width, height) the model resizes such a frame to; None: it takes frames whole."""
        ...

    def tile_size(self) -> tuple[int, int] | None:
        """The tile (width, height) the model sees at full resolution (``TILING=auto``)."""
        ...

    def describe(self) -> dict[str, Any]:
        """Model facts for stats.json (at least ``id``; see ``Detector.describe``)."""
        ...


@dataclass(frozen=True)
class DetectionConfig:
    """What to detect, shared by the video, live and stills configurations.

    ``threshold``: minimum score for a detection to count (for tracking: to start a track).
    ``low_threshold``: weaker detections, down to this, only extend existing tracks
    (ByteTrack's second stage, which keeps ids through partial occlusion); default
    ``threshold / 2``; set it equal to ``threshold`` to turn that off. Stills keep only
    ``threshold``. ``classes``: class names to keep (None: all). ``tiling``: parsed at the
    edge (``core.tiling.parse_tiling``); ``full_frame``: when tiling, also look at the whole
    frame (large animals). ``tile_batch_size``: the most model inputs (tiles and whole-frame
    views) of one forward pass when tiling.
    """

    threshold: float = 0.5
    low_threshold: float | None = None
    classes: list[str] | None = None
    tiling: TilingSetting = field(default_factory=lambda: TilingSetting("auto"))
    full_frame: bool = True
    tile_batch_size: int = 64

    def __post_init__(self) -> None:
        _require(0.0 <= self.threshold <= 1.0, f"threshold must be within 0..1, got {self.threshold}")
        if self.low_threshold is not None:
            _require(
                0.0 <= self.low_threshold <= self.threshold,
                f"low_threshold must be within 0..threshold ({self.threshold}), got {self.low_threshold}",
            )
        _require(self.tile_batch_size >= 1, f"tile_batch_size must be at least 1, got {self.tile_batch_size}")
        # the type, not the grammar: the grammar was checked where the text came in
        _require(isinstance(self.tiling, TilingSetting),
                 f"tiling must be a TilingSetting (core.tiling.parse_tiling), got {self.tiling!r}")

    @property
    def effective_low_threshold(self) -> float:
        return self.threshold / 2 if self.low_threshold is None else self.low_threshold


class TileProgress(Protocol):
    """Told before and after each forward pass of a frame's views (stills report tiles)."""

    def check(self, done: int, total: int) -> None:
        """Before a forward pass; may raise (a cancelled job)."""
        ...

    def report(self, done: int, total: int) -> None:
        """After a forward pass: ``done`` of the ``total`` views are detected."""
        ...


class _Silent:
    def check(self, done: int, total: int) -> None:
        pass

    def report(self, done: int, total: int) -> None:
        pass


class TiledDetector:
    """A detector that tiles frames much larger than the model's input (see the module).

    ``threshold``: the score detections are kept down to (the video and live runs ask for
    ``effective_low_threshold``, for the tracker's second stage; stills for ``threshold``).
    ``clustered``: merge a frame's views one cluster of overlapping boxes at a time
    (``merge_in_clusters``: memory follows the largest herd, not the image; stills), rather
    than all at once (``merge_views``: video frames, whose box order the tracker sees).
    """

    def __init__(self, detector: DetectorLike, config: DetectionConfig, threshold: float,
                 clustered: bool = False) -> None:
        self.detector, self.config, self.threshold, self.clustered = detector, config, threshold, clustered
        self._plans: dict[tuple[int, int], TilePlan] = {}
        self.last_plan: TilePlan | None = None  # the plan of the last frame detected (stats.json)

    def check_classes(self) -> None:
        """Raise InvalidInput now for class names the model does not know, before any work."""
        if self.config.classes:
            self.detector.class_ids(self.config.classes)

    def plan(self, width: int, height: int) -> TilePlan:
        """How a ``width`` x ``height`` frame is cut (one plan per size: a camera may change it)."""
        size = (width, height)
        if size not in self._plans:
            self._plans[size] = plan_tiles(self.config.tiling, size, self.detector.model_input_size(width, height),
                                           self.detector.tile_size(), self.config.full_frame)
        return self._plans[size]

    def describe(self, plan: TilePlan | None = None) -> dict[str, Any] | None:
        """stats.json's ``tiling`` for ``plan`` (default the last frame's; None before any frame)."""
        plan = plan or self.last_plan
        return plan.describe(self.config.tiling, self.config.full_frame) if plan else None

    def detect(self, images: Sequence[np.ndarray], frames: Sequence[int] | None = None,
               progress: TileProgress | None = None) -> list[sv.Detections]:
        """One ``sv.Detections`` per image, boxes in its pixels. Frames seen whole go through
        the model together; the views of tiled frames go ``tile_batch_size`` at a time (a
        batch holds several frames' views), and each frame's views are merged. ``frames``:
        each image's frame index, which its views carry (default 0).

        Raises ModelError when the model answers for a different number of inputs."""
        plans = [self.plan(image.shape[1], image.shape[0]) for image in images]
        if plans:
            self.last_plan = plans[-1]
        results: list[sv.Detections | None] = [None] * len(images)
        whole = [i for i, plan in enumerate(plans) if not plan.tiled]
        tiled = [i for i, plan in enumerate(plans) if plan.tiled]
        if whole:
            self._detect_whole(images, whole, results, progress or _Silent())
        if tiled:
            indices = list(frames) if frames is not None else [0] * len(images)
            self._detect_tiled(images, tiled, plans, indices, results, progress or _Silent())
        return cast("list[sv.Detections]", results)  # every place filled (a detector's answer, as it is)

    def _detect_whole(self, images: Sequence[np.ndarray], chosen: list[int],
                      results: list[sv.Detections | None], progress: TileProgress) -> None:
        progress.check(0, len(chosen))
        found = self.detector.detect([images[i] for i in chosen], self.threshold, self.config.classes)
        _expect(found, len(chosen), "frames")
        for i, detections in zip(chosen, found, strict=True):
            results[i] = detections
        progress.report(len(chosen), len(chosen))

    def _detect_tiled(self, images: Sequence[np.ndarray], chosen: list[int], plans: list[TilePlan],
                      frames: list[int], results: list[sv.Detections | None], progress: TileProgress) -> None:
        batch = [images[i] for i in chosen]
        views = [View(k, frames[i], region) for k, i in enumerate(chosen) for region in plans[i].regions]
        per_view = self._in_passes(views, lambda part: self.detector.detect_views(
            batch, part, self.threshold, self.config.classes), progress)
        start = 0
        for i in chosen:
            count = plans[i].views_per_frame
            results[i] = self._merge(per_view[start:start + count], plans[i])
            start += count

    def detect_windowed(self, read: Callable[[Region], np.ndarray], width: int, height: int,
                        tile: tuple[int, int], progress: TileProgress | None = None) -> tuple[sv.Detections, int]:
        """A raster too large to hold: its ``tile`` tiles (no whole-frame view) read with
        ``read(region)`` one batch at a time, each batch one forward pass and then dropped;
        only the boxes are kept, merged across seams. Returns (detections, tiles)."""
        plan = plan_tiles(TilingSetting("size", tile), (width, height), None, None, full_frame=False)
        regions = list(plan.regions)

        def detect_part(part: list[Region]) -> list[sv.Detections]:
            windows = [read(region) for region in part]
            views = [View(i, 0, (0, 0, r[2] - r[0], r[3] - r[1])) for i, r in enumerate(part)]
            found = self.detector.detect_views(windows, views, self.threshold, self.config.classes)
            _expect(found, len(part), "tiles")
            return [offset_boxes(d, region) for d, region in zip(found, part, strict=True)]

        per_view = self._in_passes(regions, detect_part, progress or _Silent())
        return self._merge([d for d in per_view if len(d)], plan), len(regions)

    def _in_passes(self, items: list[Any], detect: Callable[[list[Any]], list[sv.Detections]],
                   progress: TileProgress) -> list[sv.Detections]:
        """``detect`` on ``items`` ``tile_batch_size`` at a time, one forward pass each."""
        cap = self.config.tile_batch_size
        per_view: list[sv.Detections] = []
        for start in range(0, len(items), cap):
            progress.check(start, len(items))
            part = items[start:start + cap]
            found = detect(part)
            _expect(found, len(part), "tiles")
            per_view.extend(found)
            progress.report(start + len(part), len(items))
        return per_view

    def _merge(self, per_view: list[sv.Detections], plan: TilePlan) -> sv.Detections:
        if self.clustered:
            return merge_in_clusters(per_view, cell=max(plan.tile_size or DEFAULT_RASTER_TILE))
        return merge_views(per_view)


def _expect(found: list[Any], wanted: int, what: str) -> None:
    if len(found) != wanted:
        raise ModelError(f"the detector returned {len(found)} results for {wanted} {what}")


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise InvalidInput(message)
