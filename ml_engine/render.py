"""The annotated video, drawn after stitching, so that it shows the count stats.json gives.

The counting pass (``ml_engine.pipeline``) detects and tracks; it writes each processed
frame's tracks to ``detections.jsonl`` and encodes nothing. Once tracks are stitched and the
exports carry the final ids, this pass decodes the video again, reads ``detections.jsonl``
beside it, and draws every frame with the final ids and a running count over them. So the
count drawn at the last frame is stats.json's, and the ids drawn are the ids of mot.txt and
detections.jsonl: they are read from the same rows. No model is needed.

From the same rows come the per-frame timeline and the peak, and the counts drawn at lines
and zones: all over final ids and final classes.

Memory stays flat, however long the video: frames are decoded on a thread into a small
bounded queue, detections.jsonl is read a line at a time, and what is kept per animal is its
final id and class.
"""

from __future__ import annotations

import contextvars
import json
import queue
import threading
from collections import Counter
from collections.abc import Callable, Generator, Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import supervision as sv

from core.errors import JobCancelled
from core.jobs import CountingLine, CountingZone
from ml_engine.annotate import FrameAnnotator
from ml_engine.counting import anchors, empty_tracked
from ml_engine.counting.lines import LineCounter
from ml_engine.counting.timeline import Timeline
from ml_engine.counting.zones import ZoneCounter
from ml_engine.media.video import EncoderChoice, Frame, VideoInfo, VideoWriter

_POLL_S = 0.1  # how often a blocked queue put/get looks at the stop event
_CANCEL_CHECK_FRAMES = 16  # frames between looks at should_cancel
_END = object()


@dataclass(frozen=True)
class TrackedFrame:
    """One processed frame's row of detections.jsonl, as the renderer draws it."""

    index: int
    time_s: float
    tracked: sv.Detections


@dataclass
class RenderSettings:
    """How to draw and encode the annotated video. ``line_hysteresis_px`` must be the
    counter's, so that the crossings drawn are the crossings counted."""

    lines: Sequence[CountingLine] = ()
    zones: Sequence[CountingZone] = ()
    crf: int = 23
    preset: str = "veryfast"
    encoder: str = "auto"  # VIDEO_ENCODER: auto, libx264 or h264_nvenc (ml_engine.media.video.choose_encoder)
    queue_frames: int = 8
    line_hysteresis_px: float = 4.0


@dataclass
class RenderResult:
    """What the rendering pass learnt from the rows: the timeline and peak over final ids, and
    the running counts at the last frame (what the video shows last)."""

    frames_written: int
    timeline: list[dict[str, Any]]
    peak: dict[str, Any]
    final_counts: dict[str, Any]
    encoder: EncoderChoice


def read_tracked_frames(path: Path) -> Generator[TrackedFrame]:
    """detections.jsonl's rows, one processed frame at a time, as tracked detections."""
    with path.open(encoding="utf-8") as rows:
        for line in rows:
            if line.strip():
                yield _tracked_frame(json.loads(line))


def _tracked_frame(row: dict[str, Any]) -> TrackedFrame:
    found = row["detections"]
    if not found:
        return TrackedFrame(int(row["frame"]), float(row["time_s"]), empty_tracked())
    tracked = sv.Detections(
        xyxy=np.array([d["box"] for d in found], dtype=float),
        confidence=np.array([d["score"] for d in found], dtype=float),
        class_id=np.zeros(len(found), dtype=int),
        tracker_id=np.array([d["track_id"] for d in found], dtype=int),
    )
    tracked.data["class_name"] = np.array([d["class"] for d in found], dtype=str)
    return TrackedFrame(int(row["frame"]), float(row["time_s"]), tracked)


class RunningCounts:
    """The counts over final ids as the video goes by: counted so far (an animal counts from
    its first sighting), in view, line crossings and zone occupancy; and the timeline."""

    def __init__(self, lines: Sequence[CountingLine], zones: Sequence[CountingZone], hysteresis_px: float) -> None:
        self._counted: dict[int, str] = {}  # final id -> class
        self._by_class: Counter[str] = Counter()
        self._in_view: Counter[str] = Counter()
        self._lines = [LineCounter(line, hysteresis_px) for line in lines]
        self._zones = [ZoneCounter(zone) for zone in zones]
        self.timeline = Timeline()  # typed arrays: a few bytes a processed frame
        self.peak: dict[str, Any] = {"count": 0, "frame": None, "time_s": None, "by_class": {}}

    def add(self, frame: TrackedFrame) -> None:
        """Feed one processed frame (in order)."""
        ids = frame.tracked.tracker_id if frame.tracked.tracker_id is not None else np.zeros(0, int)
        classes = [str(c) for c in frame.tracked.data.get("class_name", [])]
        for track_id, cls in zip(ids.tolist(), classes, strict=True):
            if track_id not in self._counted:
                self._counted[track_id] = cls
                self._by_class[cls] += 1
        self._in_view = Counter(classes)
        points = anchors(frame.tracked.xyxy) if len(frame.tracked) else np.zeros((0, 2))
        for line in self._lines:
            line.update(ids, points)
        for zone in self._zones:
            zone.update(ids, points, classes)
        self.timeline.append(frame.index, frame.time_s, self._in_view)
        if len(classes) > self.peak["count"]:  # the first frame with the most in view
            self.peak = {"count": len(classes), "frame": frame.index, "time_s": round(frame.time_s, 4),
                         "by_class": dict(self._in_view)}

    def counts(self) -> dict[str, Any]:
        """In ``FrameAnnotator.annotate``'s shape (``ObjectCounter.live_counts``), plus zones."""
        return {
            "total_unique": len(self._counted),
            "by_class": dict(sorted(self._by_class.items())),
            "in_frame": sum(self._in_view.values()),
            "in_frame_by_class": dict(self._in_view),
            "lines": {c.line.name: {"in": c.totals["in"], "out": c.totals["out"]} for c in self._lines},
            "zones": {z.zone.name: {"inside": z.occupancy, "visited": len(z.visitors)} for z in self._zones},
        }


def render_video(
    info: VideoInfo,
    detections_path: Path,
    output_path: Path,
    settings: RenderSettings,
    frames: Callable[[], Generator[Frame]],
    on_frame: Callable[[int], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
    on_processed: Callable[[Frame, sv.Detections], None] | None = None,
) -> RenderResult:
    """Decode ``frames()`` again and write ``output_path``: each frame drawn with the tracks of
    the latest processed frame at or before it (frame stride), from ``detections_path``.

    ``on_frame(n)`` is called after each written frame (progress); ``on_processed(frame,
    tracked)`` with each processed frame and its tracks, before it is drawn on (the gallery's
    crops). Raises JobCancelled when
    ``should_cancel()`` says so, and whatever decoding or encoding raised.
    """
    width, height = info.display_size
    annotator = FrameAnnotator(settings.lines, settings.zones, provisional=False)
    running = RunningCounts(settings.lines, settings.zones, settings.line_hysteresis_px)
    latest = empty_tracked()
    written = 0
    writer = VideoWriter(output_path, width, height, info.fps, crf=settings.crf, preset=settings.preset,
                         encoder=settings.encoder)
    with _Encoding(writer, settings.queue_frames) as encode, closing(read_tracked_frames(detections_path)) as rows, \
            _Prefetched(frames, settings.queue_frames) as decoded:
        upcoming = next(rows, None)
        for frame in decoded:
            processed = False
            while upcoming is not None and upcoming.index <= frame.index:
                running.add(upcoming)
                latest, processed = upcoming.tracked, upcoming.index == frame.index
                upcoming = next(rows, None)
            if processed and on_processed is not None:
                on_processed(frame, latest)
            annotator.annotate(frame.image, latest, running.counts(), processed=processed)
            encode(frame.image)
            written += 1
            if on_frame is not None:
                on_frame(written)
            if should_cancel is not None and written % _CANCEL_CHECK_FRAMES == 0 and should_cancel():
                raise JobCancelled("the job was cancelled while its video was being drawn")
        while upcoming is not None:  # rows past the last decoded frame: none in practice, counted anyway
            running.add(upcoming)
            upcoming = next(rows, None)
    return RenderResult(written, list(running.timeline.entries()), running.peak, running.counts(), writer.encoder)


class _Prefetched:
    """Iterate ``frames()`` on a thread, through a bounded queue, so decoding overlaps drawing
    and encoding. Leaving the block stops the thread (at its next frame); a decoding error is
    raised in the caller's thread."""

    def __init__(self, frames: Callable[[], Generator[Frame]], size: int) -> None:
        self._frames = frames
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, size))
        self._stop = threading.Event()
        self._error: BaseException | None = None
        # the thread runs in a copy of the caller's context, so its log lines keep the job id
        self._thread = threading.Thread(
            target=contextvars.copy_context().run, args=(self._decode,), name="cattlecounter-render-decode",
            daemon=True,
        )

    def __enter__(self) -> Iterator[Frame]:
        self._thread.start()
        return self._iterate()

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()

    def _decode(self) -> None:
        try:
            with closing(self._frames()) as frames:  # closed early too: the container is released
                for frame in frames:
                    if not self._put(frame):
                        return
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            self._error = exc
        self._put(_END)

    def _put(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def _iterate(self) -> Iterator[Frame]:
        while True:
            item = self._queue.get()
            if item is _END:
                if self._error is not None:
                    raise self._error
                return
            yield item


class _Encoding:
    """Encode on a thread, through a bounded queue, so drawing overlaps the colour conversion
    and x264 (three threads busy, as in the counting pass, not two). Inside the block, call it
    with each frame; leaving the block cleanly waits for the last frame and finishes the file,
    and an encoding error is raised in the caller's thread (at the next frame or at the end)."""

    def __init__(self, writer: VideoWriter, size: int) -> None:
        self._writer = writer
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, size))
        self._failed = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(
            target=contextvars.copy_context().run, args=(self._encode,), name="cattlecounter-render-encode",
            daemon=True,
        )

    def __enter__(self) -> Callable[[np.ndarray], None]:
        self._writer.__enter__()
        self._thread.start()
        return self._put

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        self._queue_end()
        self._thread.join()
        if exc_type is None and self._error is not None:
            self._writer.__exit__(type(self._error), self._error, None)
            raise self._error
        self._writer.__exit__(exc_type, exc, tb)

    def _put(self, image: np.ndarray) -> None:
        while not self._failed.is_set():
            try:
                self._queue.put(image, timeout=_POLL_S)
                return
            except queue.Full:
                continue
        assert self._error is not None
        raise self._error

    def _queue_end(self) -> None:
        while not self._failed.is_set():
            try:
                self._queue.put(_END, timeout=_POLL_S)
                return
            except queue.Full:
                continue

    def _encode(self) -> None:
        try:
            while (image := self._queue.get()) is not _END:
                self._writer.write(image)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            self._error = exc
            self._failed.set()
