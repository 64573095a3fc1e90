"""A job's parameters resolved against the service's settings: what the engine is asked to do.

Videos and images share the detection part (threshold, classes, tiling), so both configs are
built from one ``detection_options``.
"""

from __future__ import annotations

from typing import Any

from core.config import Settings
from core.jobs import JobParams
from ml_engine.pipeline import PipelineConfig
from ml_engine.stills import StillsConfig


def detection_options(params: JobParams, settings: Settings) -> dict[str, Any]:
    """The job's detection parameters, with the service's settings for anything it left unset."""
    return {
        "threshold": settings.confidence_threshold if params.threshold is None else params.threshold,
        "classes": params.classes or settings.classes or None,
        "tiling": params.tiling or settings.tiling,
        "tiling_full_frame": settings.tiling_full_frame,
        "tile_batch_size": settings.tile_batch_size,
    }


def pipeline_config(params: JobParams, settings: Settings) -> PipelineConfig:
    """A video job's pipeline: detection as above, then frames, tracking, counting and encoding."""
    return PipelineConfig(
        **detection_options(params, settings),
        frame_stride=params.frame_stride or settings.frame_stride,
        frame_interval_seconds=params.frame_interval_seconds,
        batch_size=settings.batch_size,
        min_hits=settings.min_track_hits,
        crf=settings.video_crf,
        preset=settings.video_preset,
        lines=list(params.lines),
        zones=list(params.zones),
        max_buffered_bytes=settings.frame_buffer_bytes,
        max_video_pixels=settings.max_video_pixels,
        max_video_seconds=settings.max_video_seconds,
        tracker=(params.tracker or settings.tracker).value,
        stitching=settings.stitching if params.stitching is None else params.stitching,
    )


def stills_config(params: JobParams, settings: Settings) -> StillsConfig:
    """An images job's run: detection as above, and the raster size cap."""
    return StillsConfig(**detection_options(params, settings), max_raster_pixels=settings.max_raster_pixels)
