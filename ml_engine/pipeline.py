"""The streaming pipeline: decode → batch → detect → track, then stitch, then draw → encode,
with bounded memory.

The counting pass: three threads joined by bounded queues (PyAV and torch release the GIL, so
they overlap):

    decode thread ──frames──▶ caller's thread: batch + detect ──chunks──▶ track + exports

Only every ``stride``-th frame is detected and tracked. A chunk is the run of decoded frames
that holds one detection batch; it is capped at ``max_chunk_frames`` frames so a large stride
cannot make it grow. At most ``queue_size + 1 + 4 * chunk`` frames are in memory (the decoded
queue, the frame the decoder holds, and four chunks: being filled, two queued, being
tracked), whatever the video's length; ``buffer_plan`` shrinks the chunk and the queue so that
this stays within ``max_buffered_bytes`` however large the frames (with a floor of 6 frames).

After the last frame, tracks are stitched and the exports rewritten with the final ids. Then
the rendering pass (``ml_engine.render``) decodes the video again and draws every frame (with
the latest processed frame's tracks, read back from detections.jsonl) and encodes it, so
annotated.mp4 keeps the source's frame count and rate and shows the final ids and counts:
the numbers of stats.json, not the live tracker's. It needs no model.

Any stage's failure sets a shared stop event; every queue put/get waits in short slices and
gives up when it is set, so no stage hangs, and the caller gets the original error. Outputs
are written to a temporary subdirectory and moved into ``output_dir`` only on success.
"""

from __future__ import annotations

import contextvars
import logging
import os
import queue
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Generator
from contextlib import closing
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import supervision as sv
from pydantic import BaseModel, ValidationError

from core.errors import InvalidInput, JobCancelled, describe_validation_error
from core.jobs import CountingLine, CountingZone, Tracker, check_unique_names, with_default_names
from core.outputs import ANNOTATED_VIDEO, DETECTIONS, GALLERY_CROPS_DIR, STATS
from ml_engine.counting import CountingConfig, CountSummary, ObjectCounter
from ml_engine.detection import DetectionConfig, DetectorLike, TiledDetector
from ml_engine.gallery import GalleryCollector
from ml_engine.media.telemetry import Telemetry, telemetry_facts
from ml_engine.media.video import (
    EncoderChoice,
    Frame,
    VideoInfo,
    VideoLimits,
    check_encoder_options,
    iter_frames,
    probe,
)
from ml_engine.outputs import OutputWriter, build_stats, move_outputs
from ml_engine.render import RenderResult, RenderSettings, render_video

log = logging.getLogger(__name__)

_QUEUE_POLL_S = 0.1  # how often a blocked put/get looks at the stop event
_JOIN_TIMEOUT_S = 30.0
_END = object()  # end-of-stream marker on the queues
# The share of a job's progress that the rendering pass takes: it decodes, draws and encodes
# every frame, while the counting pass decodes, detects and tracks. With a fast model (a GPU,
# or the tiny one on CPU) the two take about as long (docs/performance.md); with a full-size
# model on CPU the counting pass is far longer, and the bar moves faster at the end.
RENDER_SHARE = 0.5


@dataclass
class PipelineConfig:
    """How to process one video.

    ``detection``: threshold, low threshold, classes and tiling (``DetectionConfig``); the
    threshold also starts tracks (and the first matching stage), weaker detections down to
    the low threshold only extend them.
    ``frame_stride``: detect every Nth frame (``frame_interval_seconds`` overrides it).
    ``max_frames``: stop after this many frames (previews, tests).
    ``max_buffered_bytes``: decoded frames held in memory at once, in bytes (see ``buffer_plan``).
    ``max_video_pixels``, ``max_video_seconds``: refuse bigger or longer videos (None: any).
    ``batch_size`` counts frames; when tiling, a batch takes as many frames as fit the
    detection's ``tile_batch_size`` model inputs, at least one, and a frame with more tiles
    than the cap (8K) is split into forward passes of at most the cap.
    """

    detection: DetectionConfig = field(default_factory=DetectionConfig)
    frame_stride: int = 1
    frame_interval_seconds: float | None = None
    batch_size: int = 4
    min_hits: int = 3
    lines: list[CountingLine] = field(default_factory=list)
    zones: list[CountingZone] = field(default_factory=list)
    queue_size: int = 8
    track_buffer_s: float = 1.0
    max_frames: int | None = None
    max_chunk_frames: int = 16
    progress_interval_s: float = 0.5
    crf: int = 23
    preset: str = "veryfast"
    encoder: str = "auto"  # the H.264 encoder of annotated.mp4: auto (NVENC where it opens), libx264, h264_nvenc
    max_buffered_bytes: int = 1024**3
    max_video_pixels: int | None = None
    max_video_seconds: float | None = None
    # tracking: the live tracker, and offline stitching of broken tracks
    tracker: Tracker = Tracker.BOTSORT
    stitching: bool = True
    # the flight's telemetry (a drone's .SRT, read by the caller): stats.json's ``telemetry`` reports it
    telemetry: Telemetry | None = None

    def __post_init__(self) -> None:
        self.lines, self.zones = checked_lines_and_zones(self.lines, self.zones)
        _require(self.frame_stride >= 1, f"frame_stride must be at least 1, got {self.frame_stride}")
        if self.frame_interval_seconds is not None:
            _require(self.frame_interval_seconds > 0, "frame_interval_seconds must be positive")
        for name in ("batch_size", "min_hits", "queue_size", "max_chunk_frames", "max_buffered_bytes"):
            _require(getattr(self, name) >= 1, f"{name} must be at least 1, got {getattr(self, name)}")
        if self.max_frames is not None:
            _require(self.max_frames >= 1, f"max_frames must be at least 1, got {self.max_frames}")
        check_encoder_options(self.crf, self.preset, self.encoder)

    @property
    def video_limits(self) -> VideoLimits:
        return VideoLimits(self.max_video_pixels, self.max_video_seconds)

    def stride_for(self, fps: float | Fraction) -> int:
        """Frames between detections: ``frame_interval_seconds`` converted at ``fps``, else the stride."""
        if self.frame_interval_seconds is not None:
            return max(1, round(self.frame_interval_seconds * float(fps)))
        return self.frame_stride


def checked_lines_and_zones(
    lines: list[CountingLine], zones: list[CountingZone]
) -> tuple[list[CountingLine], list[CountingZone]]:
    """Lines and zones as models (plain dicts accepted), each named and every name unique:
    checked when the configuration is made, not after the model loads (video and live)."""
    lines = with_default_names([_validated(CountingLine, line) for line in lines], "line")
    zones = with_default_names([_validated(CountingZone, zone) for zone in zones], "zone")
    check_unique_names("line", [line.name for line in lines])
    check_unique_names("zone", [zone.name for zone in zones])
    return lines, zones


def _validated(model: type[BaseModel], value: Any) -> Any:
    """Accept model instances or plain dicts (notebooks, the CLI); bad ones are InvalidInput."""
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        problems = describe_validation_error(exc.errors(), name=lambda location: "")
        raise InvalidInput(
            f"invalid counting {model.__name__.removeprefix('Counting').lower()}: {problems}"
        ) from None


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise InvalidInput(message)


def model_facts(detector: DetectorLike, classes: list[str] | None, **settings: Any) -> dict[str, Any]:
    """stats.json's ``model``: what the detector says of itself, then ``settings``, then the classes
    asked for. The video pipeline and the live run report it the same way."""
    facts = dict(detector.describe())
    facts.setdefault("id", str(detector.model_id))
    facts.setdefault("device", str(detector.device))
    facts.setdefault("random_weights", bool(detector.random_weights))
    facts.update(settings)
    facts["classes"] = classes
    return facts


@dataclass(frozen=True)
class BufferPlan:
    """How many frames each buffer of a run may hold."""

    chunk_frames: int  # frames per chunk (a detection batch and the frames between)
    queue_frames: int  # decoded frames waiting for the detector

    @property
    def frames_in_flight(self) -> int:
        """The most frames in memory at once: the queue, one the decoder holds, four chunks."""
        return self.queue_frames + 1 + 4 * self.chunk_frames


def buffer_plan(config: PipelineConfig, frame_bytes: int) -> BufferPlan:
    """Buffer sizes that keep the decoded frames in memory within ``config.max_buffered_bytes``.

    The in-flight bound used to count frames, not bytes: an 8000x8000 video (192 MB a frame)
    took a worker to 6.8 GB. Past the budget the chunk shrinks first (down to one frame, so
    detection batches get smaller), then the queue; 6 frames is the floor, however large."""
    affordable = max(1, config.max_buffered_bytes // max(1, frame_bytes))
    chunk = min(max(config.batch_size, config.max_chunk_frames), max(1, (affordable - 2) // 5))
    queue_frames = min(config.queue_size, max(1, affordable - 1 - 4 * chunk))
    return BufferPlan(chunk_frames=chunk, queue_frames=queue_frames)


@dataclass
class Progress:
    """How far a run has got. ``frames_total`` is an estimate when the container has no count.

    ``frames_done`` counts the frames of the counting pass; ``frames_rendered`` those of the
    rendering pass after it (the annotated video), which takes ``RENDER_SHARE`` of ``fraction``.
    """

    frames_done: int
    frames_total: int | None
    fps: float
    eta_s: float | None
    frames_rendered: int = 0

    @property
    def fraction(self) -> float | None:
        if not self.frames_total:
            return None
        counted = min(1.0, self.frames_done / self.frames_total)
        rendered = min(1.0, self.frames_rendered / self.frames_total)
        return (1 - RENDER_SHARE) * counted + RENDER_SHARE * rendered


@dataclass
class PipelineResult:
    """``stats`` is the stats.json document; ``outputs`` maps file name -> path in output_dir.
    ``crops`` maps each gallery picture's name (``crops/<id>.jpg``) -> its path: stored beside
    the outputs but not listed among them (there is one per counted animal)."""

    stats: dict[str, Any]
    outputs: dict[str, Path]
    crops: dict[str, Path] = field(default_factory=dict)


def process_video(
    input_path: str | os.PathLike[str],
    output_dir: str | os.PathLike[str],
    detector: DetectorLike,
    config: PipelineConfig | None = None,
    progress: Callable[[Progress], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
    on_counted: Callable[[], None] | None = None,
) -> PipelineResult:
    """Detect, track and count objects in a video; write annotated.mp4, stats.json and exports.

    ``progress`` is called from this thread at most every ``config.progress_interval_s`` (and
    once at the end); ``should_cancel`` is checked before each detection batch. ``on_counted``
    is called (from this thread) once the counting pass is over: the model is not used after it,
    while the video is drawn and encoded.

    Raises:
        VideoError subclasses: the input is not a usable video (see ``ml_engine.media.video.probe``).
        InvalidInput: a bad config, or class names the model does not know.
        ModelError: the model failed.
        VideoTooLarge, VideoTooLong: the video is over ``max_video_pixels`` or ``max_video_seconds``.
        JobCancelled: ``should_cancel()`` returned True; nothing is left in output_dir.
    """
    config = config or PipelineConfig()
    info = probe(input_path, config.video_limits)
    detection = TiledDetector(detector, config.detection, config.detection.effective_low_threshold)
    detection.check_classes()  # now, not after the first batch
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    work_dir = Path(tempfile.mkdtemp(prefix=".partial-", dir=output_dir))
    try:
        run = _Run(Path(input_path), info, work_dir, detection, config, progress, should_cancel)
        run.on_counted = on_counted
        stats, files = run.execute()
        moved = move_outputs(files, output_dir)
        crops = {name: path for name, path in moved.items() if name.startswith(f"{GALLERY_CROPS_DIR}/")}
        outputs = {name: path for name, path in moved.items() if name not in crops}
        return PipelineResult(stats=stats, outputs=outputs, crops=crops)
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)


class _Stopped(Exception):
    """Internal: another stage failed, so this one stops. Never leaves the pipeline."""


@dataclass
class _Chunk:
    frames: list[Frame]
    detections: dict[int, sv.Detections]  # frame index -> detections, for the detected frames


class _Run:
    """One video's run: the three stages, their queues and the shared stop/failure state."""

    def __init__(
        self,
        input_path: Path,
        info: VideoInfo,
        work_dir: Path,
        detection: TiledDetector,
        config: PipelineConfig,
        progress: Callable[[Progress], None] | None,
        should_cancel: Callable[[], bool] | None,
    ) -> None:
        self.input_path, self.info, self.work_dir = input_path, info, work_dir
        self.detection, self.detector, self.config = detection, detection.detector, config
        self.progress, self.should_cancel = progress, should_cancel
        self.stride = config.stride_for(info.fps)
        width, height = info.display_size
        self.buffers = buffer_plan(config, width * height * 3)
        self.tiles = detection.plan(width, height)
        self.frames_per_batch = self._frames_per_batch()
        self.chunk_limit = self.buffers.chunk_frames
        self.decoded: queue.Queue = queue.Queue(maxsize=self.buffers.queue_frames)
        self.inferred: queue.Queue = queue.Queue(maxsize=2)  # one being encoded, one waiting
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self._error_lock = threading.Lock()
        self.frames_decoded = 0
        self.frames_processed = 0
        self.frames_tracked = 0  # decoded frames through the tracking stage (detected or not)
        self.frames_rendered = 0
        self.counter = ObjectCounter(self._counting_config(), telemetry=self.config.telemetry)
        self.outputs: OutputWriter | None = None
        self.started = time.monotonic()
        self._last_progress = 0.0
        self.counted = False  # the counting pass is over (frames_decoded is the total)
        self.render_seconds = 0.0
        self.encoder: EncoderChoice | None = None  # which H.264 encoder wrote annotated.mp4, once it has
        self.on_counted: Callable[[], None] | None = None

    def _frames_per_batch(self) -> int:
        """Frames per detection batch: ``batch_size``, fewer when tiling so that all their
        views fit one forward pass of at most ``tile_batch_size`` inputs (at least one frame)."""
        if not self.tiles.tiled:
            return self.config.batch_size
        fitting = self.config.detection.tile_batch_size // self.tiles.views_per_frame
        return max(1, min(self.config.batch_size, fitting))

    def _counting_config(self) -> CountingConfig:
        return CountingConfig(
            fps=float(self.info.fps) / self.stride,
            min_hits=self.config.min_hits,
            lines=self.config.lines,
            zones=self.config.zones,
            track_buffer_s=self.config.track_buffer_s,
            track_threshold=self.config.detection.threshold,
            tracker=self.config.tracker,
            stitching=self.config.stitching,
        )

    # --- orchestration ---------------------------------------------------------------------

    def execute(self) -> tuple[dict[str, Any], dict[str, Path]]:
        labels = self.detector.labels or {}
        self.outputs = OutputWriter(self.work_dir, labels, self.info.display_size)
        # each thread runs in a copy of the caller's context, so log lines keep its job_id
        threads = [
            threading.Thread(
                target=contextvars.copy_context().run, args=(self._guard, stage), name=name, daemon=True
            )
            for stage, name in ((self._decode_stage, "cattlecounter-decode"),
                                (self._track_stage, "cattlecounter-track"))
        ]
        try:
            for thread in threads:
                thread.start()
            self._guard(self._infer_stage)
            for thread in threads:
                thread.join()  # each ends by itself: at the end of the video, or on the stop event
            if self.error is not None:
                raise self.error
            return self._finish()
        finally:
            self.stop.set()
            self._join_quickly(threads)
            self.outputs.close()

    def _guard(self, stage: Callable[[], None]) -> None:
        """Run a stage; record its failure and stop the others."""
        try:
            stage()
        except _Stopped:
            pass
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            with self._error_lock:
                if self.error is None:
                    self.error = exc
            self.stop.set()

    def _join_quickly(self, threads: list[threading.Thread]) -> None:
        """After a failure: wait a bounded time (a stage may be inside one decode or encode call)."""
        deadline = time.monotonic() + _JOIN_TIMEOUT_S
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                log.warning("pipeline %s thread did not stop within %.0f s", thread.name, _JOIN_TIMEOUT_S)

    def _put(self, target: queue.Queue, item: Any) -> None:
        while not self.stop.is_set():
            try:
                target.put(item, timeout=_QUEUE_POLL_S)
                return
            except queue.Full:
                continue
        raise _Stopped()

    def _get(self, source: queue.Queue, cancellable: bool = False) -> Any:
        """``cancellable``: while waiting, honour a cancel too (a decoder that stalls without
        failing must not make the job deaf to cancel, shutdown or a lost lease)."""
        while not self.stop.is_set():
            try:
                return source.get(timeout=_QUEUE_POLL_S)
            except queue.Empty:
                if cancellable:
                    self._raise_if_cancelled()
        raise _Stopped()

    # --- stage 1: decode -------------------------------------------------------------------

    def _decode_stage(self) -> None:
        with closing(self._frames()) as frames:
            for frame in frames:
                self._put(self.decoded, frame)
                self.frames_decoded += 1
        self._put(self.decoded, _END)

    def _frames(self) -> Generator[Frame]:
        limit = self.config.max_frames
        video_limits = self.config.video_limits
        for frame in iter_frames(self.input_path, self.info):
            if limit is not None and frame.index >= limit:
                return
            video_limits.check_time(frame.time_s, self.input_path.name)  # the header may have understated it
            yield frame

    # --- stage 2: batch + detect (the caller's thread) ---------------------------------------

    def _infer_stage(self) -> None:
        ended = False
        while not ended:
            frames, ended = self._next_chunk()
            self._raise_if_cancelled()
            self._put(self.inferred, _Chunk(frames, self._detect(frames)))
            self._report_progress()
        self._put(self.inferred, _END)

    def _raise_if_cancelled(self) -> None:
        if self.should_cancel is not None and self.should_cancel():
            raise JobCancelled("the job was cancelled while it was being processed")

    def _next_chunk(self) -> tuple[list[Frame], bool]:
        """Frames up to a full detection batch (or the chunk cap); True when the video ended."""
        frames: list[Frame] = []
        to_detect = 0
        while to_detect < self.frames_per_batch and len(frames) < self.chunk_limit:
            item = self._get(self.decoded, cancellable=True)
            if item is _END:
                return frames, True
            frames.append(item)
            to_detect += self._is_detected(item)
        return frames, False

    def _is_detected(self, frame: Frame) -> bool:
        return frame.index % self.stride == 0

    def _detect(self, frames: list[Frame]) -> dict[int, sv.Detections]:
        chosen = [frame for frame in frames if self._is_detected(frame)]
        if not chosen:
            return {}
        results = self.detection.detect([frame.image for frame in chosen], [frame.index for frame in chosen])
        return {frame.index: detections for frame, detections in zip(chosen, results, strict=True)}

    def _report_progress(self, final: bool = False) -> None:
        now = time.monotonic()
        if self.progress is None:
            return
        if not final and now - self._last_progress < self.config.progress_interval_s:
            return
        self._last_progress = now
        done = self.frames_tracked
        total = self.frames_decoded if self.counted or final else self._expected_frames()
        elapsed = max(now - self.started, 1e-6)
        report = Progress(frames_done=done, frames_total=total, fps=round(done / elapsed, 3), eta_s=None,
                          frames_rendered=self.frames_rendered)
        fraction = report.fraction
        if fraction:  # the whole job at the pace so far, both passes
            report.eta_s = elapsed * (1 - fraction) / fraction
        self.progress(report)

    def _expected_frames(self) -> int | None:
        total = self.info.frames
        if self.config.max_frames is not None:
            total = min(total, self.config.max_frames) if total else self.config.max_frames
        return total

    # --- stage 3: track, write the exports ------------------------------------------------------

    def _track_stage(self) -> None:
        while (chunk := self._get(self.inferred)) is not _END:
            for frame in chunk.frames:
                if frame.index in chunk.detections:
                    self._track(frame, chunk.detections[frame.index])
                self.frames_tracked += 1

    def _track(self, frame: Frame, detections: sv.Detections) -> None:
        assert self.outputs is not None
        # camera motion is estimated here, on the thread that already holds the frame
        image = frame.image if self.counter.uses_frames else None
        tracked = self.counter.update(frame.index, frame.time_s, detections, image)
        self.outputs.write_frame(frame.index, frame.time_s, tracked)
        self.frames_processed += 1

    # --- the end ----------------------------------------------------------------------------------

    def _finish(self) -> tuple[dict[str, Any], dict[str, Path]]:
        assert self.outputs is not None
        self.counted = True
        self._report_progress(final=True)
        if self.on_counted is not None:  # the model is done with: the rest needs no detector
            self.on_counted()
        summary = self.counter.summary()
        summary.timeline = []  # the live one: replaced below, and long for a long video
        exports = self.outputs.finish_exports(summary.id_map, _final_classes(summary))
        gallery = GalleryCollector(self.work_dir, self.info.display_size,
                                   {int(track["id"]): int(track["last_frame"]) for track in summary.tracks})
        rendered = self._render(gallery)
        exports.update(gallery.finish(summary.tracks))
        # the timeline and the peak as the video shows them: final ids, final classes
        summary.timeline, summary.peak = rendered.timeline, rendered.peak
        stats = build_stats(
            self.info, self.frames_decoded, self._model_facts(), summary, self._processing_facts()
        )
        stats["telemetry"] = telemetry_facts(self.config.telemetry)
        exports.update(self.outputs.write_summary_files(stats))
        # stats.json moves last: once it is in output_dir, everything else is too
        files = {ANNOTATED_VIDEO: self.work_dir / ANNOTATED_VIDEO}
        files.update((name, path) for name, path in exports.items() if name != STATS)
        files[STATS] = exports[STATS]
        return stats, files

    def _render(self, gallery: GalleryCollector) -> RenderResult:
        """The rendering pass: the annotated video, with the final ids and counts; the gallery's
        crops are taken from the same decoded frames."""
        settings = RenderSettings(
            lines=self.config.lines,
            zones=self.config.zones,
            crf=self.config.crf,
            preset=self.config.preset,
            encoder=self.config.encoder,
            queue_frames=self.buffers.queue_frames,
            line_hysteresis_px=self.counter.config.line_hysteresis_px,
        )
        started = time.monotonic()
        result = render_video(
            self.info, self.work_dir / DETECTIONS, self.work_dir / ANNOTATED_VIDEO, settings, self._frames,
            on_frame=self._rendered, should_cancel=self.should_cancel,
            on_processed=lambda frame, tracked: gallery.offer(frame.index, frame.time_s, frame.image, tracked),
        )
        self.render_seconds = time.monotonic() - started
        self.encoder = result.encoder
        self._report_progress(final=True)
        return result

    def _rendered(self, frames: int) -> None:
        self.frames_rendered = frames
        self._report_progress()

    def _tiling_facts(self) -> dict[str, Any]:
        facts = self.tiles.describe(self.config.detection.tiling, self.config.detection.full_frame)
        if self.tiles.tiled:
            facts["frames_per_batch"] = self.frames_per_batch
        return facts

    def _model_facts(self) -> dict[str, Any]:
        return model_facts(self.detector, self.config.detection.classes, threshold=self.config.detection.threshold)

    def _processing_facts(self) -> dict[str, Any]:
        seconds = time.monotonic() - self.started
        return {
            "seconds": round(seconds, 3),
            "render_seconds": round(self.render_seconds, 3),
            "video_encoder": asdict(self.encoder) if self.encoder is not None else None,
            "fps": round(self.frames_decoded / seconds, 3) if seconds > 0 else 0.0,
            "device": str(self.detector.device),
            "frame_stride": self.stride,
            "frames_decoded": self.frames_decoded,
            "frames_processed": self.frames_processed,
            "batch_size": self.config.batch_size,
            "threshold": self.config.detection.threshold,
            "low_threshold": self.config.detection.effective_low_threshold,
            "min_hits": self.config.min_hits,
            "max_frames": self.config.max_frames,
            "tiling": self._tiling_facts(),
            **self.counter.describe(),
        }


def _final_classes(summary: CountSummary) -> dict[int, str]:
    """Final track id -> its class over the whole stitched track (stats.json's ``tracks``)."""
    return {int(track["id"]): str(track["class"]) for track in summary.tracks}
