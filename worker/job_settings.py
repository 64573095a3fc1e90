"""A job's parameters resolved against the service's settings: what the engine is asked to do.

Videos, images and streams share the detection part (threshold, classes, tiling): one
``detection_config``. Both sides were validated where they came in (``JobParams`` at
submission, ``Settings`` at start), so nothing here can fail.
"""

from __future__ import annotations

from core.config import Settings
from core.jobs import JobParams
from core.tiling import parse_tiling
from ml_engine.detection import DetectionConfig
from ml_engine.media.telemetry import Telemetry
from ml_engine.pipeline import PipelineConfig
from ml_engine.stills import StillsConfig


def detection_config(params: JobParams, settings: Settings) -> DetectionConfig:
    """The job's detection parameters, with the service's settings for anything it left unset."""
    return DetectionConfig(
        threshold=settings.confidence_threshold if params.threshold is None else params.threshold,
        classes=params.classes or settings.classes or None,
        # stored as its canonical text (the job record is JSON); checked at submission or startup
        tiling=parse_tiling(params.tiling or settings.tiling),
        full_frame=settings.tiling_full_frame,
        tile_batch_size=settings.tile_batch_size,
    )


def pipeline_config(params: JobParams, settings: Settings, telemetry: Telemetry | None = None) -> PipelineConfig:
    """A video job's pipeline: detection as above, then frames, tracking, counting and encoding;
    ``telemetry``: the flight's, read by the worker (``worker.telemetry``), if the job has some."""
    return PipelineConfig(
        detection=detection_config(params, settings),
        frame_stride=params.frame_stride or settings.frame_stride,
        frame_interval_seconds=params.frame_interval_seconds,
        batch_size=settings.batch_size,
        min_hits=settings.min_track_hits,
        crf=settings.video_crf,
        preset=settings.video_preset,
        encoder=settings.video_encoder,
        lines=list(params.lines),
        zones=list(params.zones),
        max_buffered_bytes=settings.frame_buffer_bytes,
        max_video_pixels=settings.max_video_pixels,
        max_video_seconds=settings.max_video_seconds,
        tracker=params.tracker or settings.tracker,
        stitching=settings.stitching if params.stitching is None else params.stitching,
        telemetry=telemetry,
    )


def stills_config(params: JobParams, settings: Settings) -> StillsConfig:
    """An images job's run: detection as above, and the raster size cap."""
    return StillsConfig(detection=detection_config(params, settings), max_raster_pixels=settings.max_raster_pixels)
