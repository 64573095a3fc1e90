"""``StreamRun``: detect, track and count on a live stream, for as long as it runs.

The caller's thread runs the loop, between the source's decode thread and the video's:

    LiveSource decode thread ──newest due frame──▶ caller's thread: detect → track/count →
        events, windows, status ──(2 frames at most)──▶ video thread: annotate → HLS segment

The source hands frames out as they fall due by their timestamps (an HLS segment, decoded in
one burst, at the camera's rate), the newest due one first: when inference is slower than the
camera, older frames are dropped (and counted), so latency and memory stay bounded instead of
a backlog growing. Latency is measured from when the camera took the frame where the source
says (``captured_at``: HLS program date-time), else from the frame leaving the decoder
(``received_at``), to its counts being updated; ``latency_from`` says which.

Every ``window_s`` the window's counts are appended to ``windows.jsonl`` and ``on_window``
gets the record and a small resume ``state``; a later ``StreamRun`` given that state continues
the totals, the window and segment numbering and the recording's clock. A state is also
stored (``on_state``) as the run starts, when the segment numbers it reserved run low, and on a
hand-back (``should_hand_back``: the worker goes away, the stream resumes elsewhere), which
finalises nothing and puts the unfinished window in the state. A gap in the source
(a stall, a reset, a resume) ends every track: tracking across it would join different
animals, so an animal in view on both sides of a gap counts again, and the gap is recorded.

Memory stays flat over days: the counter forgets ended tracks (their counts live on in the
totals), keeps no timeline and does no offline stitching; no per-frame history is kept and
``detections.jsonl`` is not written.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import supervision as sv

from core.errors import InvalidInput, StreamUnavailable
from core.jobs import CountingLine, CountingZone, Tracker
from core.outputs import GAPS, LIVE_PLAYLIST, LIVE_RECORDING, STATS, WINDOWS
from ml_engine.annotate import FrameAnnotator
from ml_engine.counting import CountingConfig, ObjectCounter, TrackEvent, tracker_ids
from ml_engine.detection import DetectionConfig, TiledDetector
from ml_engine.live.counts import LatencyHistogram, RecentLatency, Totals, Window, iso
from ml_engine.live.segments import HlsWriter
from ml_engine.live.source import Gap, LiveFrame, LiveSource, SourceOptions, redact_url
from ml_engine.live.video import LiveVideo
from ml_engine.pipeline import DetectorLike, checked_lines_and_zones, model_facts
from ml_engine.video import check_encoder_options

log = logging.getLogger(__name__)

STATE_VERSION = 1
_POLL_S = 0.2  # the longest the loop waits for a frame before looking at the clock and should_stop
# The tracker counts lost time in processed frames; a stream's processing rate is not known in
# advance (it is whatever inference keeps up with), so tracks are sized for this nominal rate.
_NOMINAL_FPS = 10.0
_CONNECTED_WITHIN_S = 5.0  # a source that decoded a frame this recently is "connected"
_RECENT_GAPS = 20  # gaps kept in the state and stats.json (all of them are counted)
_MAX_CATCH_UP_WINDOWS = 100  # empty windows written at most after the loop was held up
_SPARE_SEGMENT_NUMBERS = 8  # a new state is stored this many numbers before the reserved ones run out


@dataclass
class StreamConfig:
    """How to count one stream. ``detection`` (``DetectionConfig``) and the tracking fields
    mean what they mean in ``PipelineConfig``; the rest:

    ``window_s``: length of a ``windows.jsonl`` window. ``segment_s``: the annotated HLS
    segments' length; ``segment_retention_s``: keep only this many seconds of segments (None:
    every one, the whole recording). ``duration_s``: stop (completed) after this much streaming
    time in all, resumes included, counted from the first frame (connecting is not streaming).
    ``status_interval_s``: how often ``on_status`` is called.
    ``source``: the source's ``SourceOptions`` (timeouts, reconnects).
    """

    detection: DetectionConfig = field(default_factory=DetectionConfig)
    min_hits: int = 3
    track_buffer_s: float = 1.0
    lines: list[CountingLine] = field(default_factory=list)
    zones: list[CountingZone] = field(default_factory=list)
    tracker: Tracker = Tracker.BOTSORT
    window_s: float = 60.0
    segment_s: float = 2.0
    segment_retention_s: float | None = None
    duration_s: float | None = None
    status_interval_s: float = 2.0
    crf: int = 28
    preset: str = "veryfast"
    source: SourceOptions = field(default_factory=SourceOptions)

    def __post_init__(self) -> None:
        self.lines, self.zones = checked_lines_and_zones(self.lines, self.zones)
        _require(self.min_hits >= 1, f"min_hits must be at least 1, got {self.min_hits}")
        check_encoder_options(self.crf, self.preset)
        for name in ("window_s", "segment_s", "status_interval_s"):
            _require(getattr(self, name) > 0, f"{name} must be positive, got {getattr(self, name)}")
        if self.duration_s is not None:
            _require(self.duration_s > 0, f"duration_s must be positive, got {self.duration_s}")
        if self.segment_retention_s is not None:
            _require(
                self.segment_retention_s >= self.segment_s,
                f"segment_retention_s must be at least segment_s ({self.segment_s}), got {self.segment_retention_s}",
            )

    @property
    def line_names(self) -> list[str]:
        return [line.name or "" for line in self.lines]  # every line is named once validated

    @property
    def zone_names(self) -> list[str]:
        return [zone.name or "" for zone in self.zones]

    def counting_config(self) -> CountingConfig:
        """Live counting: no offline stitching, no timeline (memory must stay flat)."""
        return CountingConfig(
            fps=_NOMINAL_FPS, min_hits=self.min_hits, lines=self.lines, zones=self.zones,
            track_buffer_s=self.track_buffer_s, track_threshold=self.detection.threshold, tracker=self.tracker,
            stitching=False, timeline=False,
        )


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise InvalidInput(message)


@dataclass
class LiveStatus:
    """What ``GET /jobs/{id}`` and Prometheus show of a running stream.

    ``counts``: the running totals (``Totals.to_dict``). ``latency_*``: captured (or received,
    ``latency_from``) → counted over the last ``window_s``; ``latencies_s``: every sample since
    the previous status. ``gaps``:
    gaps recorded since the previous status. Frame counters and ``streaming_s`` include the
    runs before a resume.
    """

    counts: dict[str, Any]
    frames_received: int
    frames_processed: int
    frames_dropped: int
    latency_p50_s: float | None
    latency_p95_s: float | None
    latencies_s: list[float]
    gaps: list[dict[str, Any]]
    reconnects: int
    streaming_s: float
    connected: bool
    latency_from: str | None = None  # "capture" | "arrival" (the last frame counted); None: none yet


@dataclass
class CountEvent:
    """One line crossing, zone entry or zone exit, as it happens (for event webhooks)."""

    kind: str  # "line_crossing" | "zone_entry" | "zone_exit"
    name: str  # the line's or zone's name
    direction: str | None  # "in" | "out" for a line crossing
    class_name: str
    track_id: int
    at: str  # ISO 8601 UTC


class FrameSource(Protocol):
    """What ``StreamRun`` needs of ``ml_engine.live.source.LiveSource`` (tests hand in others)."""

    @property
    def frames_received(self) -> int: ...

    @property
    def frames_dropped(self) -> int: ...

    @property
    def reconnects(self) -> int: ...

    def next(self, timeout: float) -> LiveFrame | Gap | None: ...

    def close(self) -> None: ...


_STOP, _HAND_BACK = "stop", "hand_back"


def _past_reserved(state: dict[str, Any]) -> dict[str, Any] | None:
    """The segments' state, numbered on past what the run that stored it may have uploaded."""
    segments = state.get("segments")
    if not segments or "segments_reserved_to" not in state:
        return segments
    return {**segments, "next_sequence": max(int(segments["next_sequence"]), int(state["segments_reserved_to"]))}


def _ignore(*args: Any) -> None:
    return None


def _never() -> bool:
    return False


class StreamRun:
    """One stream job's run on this worker (see the module's docstring).

    ``resume``: the last ``state`` an earlier run handed to ``on_window`` or ``on_state`` (store
    both the same way: each replaces the one before). ``should_stop``: end the stream (outputs
    final). ``should_hand_back``: stop without ending it (see ``run``). ``source``: what frames
    come from; default a ``LiveSource`` on ``url`` (tests hand in their own). Callbacks and the
    two checks run on the caller's thread only; a callback that raises stops the run with its error.
    """

    def __init__(
        self,
        url: str,
        config: StreamConfig,
        detector: DetectorLike,
        output_dir: Path,
        resume: dict[str, Any] | None = None,
        on_status: Callable[[LiveStatus], None] = _ignore,
        on_window: Callable[[dict[str, Any], dict[str, Any]], None] = _ignore,
        on_files: Callable[[dict[str, Path], list[str]], None] = _ignore,
        on_event: Callable[[CountEvent], None] = _ignore,
        should_stop: Callable[[], bool] = _never,
        source: FrameSource | None = None,
        should_hand_back: Callable[[], bool] = _never,
        on_state: Callable[[dict[str, Any]], None] = _ignore,
    ) -> None:
        self.url, self.config, self.detector = url, config, detector
        self.output_dir = Path(output_dir)
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self.on_status, self.on_window, self.on_files, self.on_event = on_status, on_window, on_files, on_event
        self.should_stop, self.should_hand_back, self.on_state = should_stop, should_hand_back, on_state
        self.handed_back = False  # run() returned because should_hand_back said so: nothing was finalised
        # set by this thread when the run stops; all the source's decode thread reads (cheap, no storage)
        self._stop_flag = threading.Event()
        self._source = source
        resume = resume or {}
        self._check_state(resume)
        self._resumed = bool(resume)
        # the stream delivered frames before this run: a camera down now is an outage, not a bad
        # URL (a run that handed back before its first frame leaves a state that says neither)
        self._has_worked = config.source.has_worked or float(resume.get("streaming_s", 0.0)) > 0 \
            or int(resume.get("frames_received", 0)) > 0
        self.totals = Totals.from_dict(resume.get("totals", {}), config.line_names, config.zone_names)
        self.hls = HlsWriter(
            self.output_dir, segment_s=config.segment_s, retention_s=config.segment_retention_s,
            crf=config.crf, preset=config.preset, state=_past_reserved(resume),
        )
        self._reserved_to = 0  # segment numbers below this are covered by the last state handed out
        self._carried: dict[str, Any] | None = resume.get("open_window")  # a hand-back's unfinished window
        self._resumed_from: float | None = resume.get("saved_at_s") if resume else None
        self._next_window = int(resume.get("next_window", 1))
        self._streaming_before = float(resume.get("streaming_s", 0.0))
        self._gaps_total = int(resume.get("gaps_total", 0))
        self._recent_gaps: deque[dict[str, Any]] = deque(resume.get("recent_gaps", []), maxlen=_RECENT_GAPS)
        self._before = {k: int(resume.get(k, 0)) for k in ("frames_received", "frames_dropped", "reconnects")}
        self._frames_processed = int(resume.get("frames_processed", 0))
        self._processed_before = self._frames_processed
        self._track_id_base = int(resume.get("track_id_base", 0))  # ids go on rising across gaps and resumes
        self._latency_from: str | None = None  # where the last frame's latency was measured from
        self._highest_id = self._track_id_base
        self.latency = RecentLatency(config.window_s)
        self.histogram = LatencyHistogram(resume.get("latency_histogram"))
        self.annotator = FrameAnnotator(config.lines, config.zones)
        self.video: LiveVideo | None = None  # its thread starts with run()
        self.counter = ObjectCounter(config.counting_config())
        self._frame_index = 0
        self._detection = TiledDetector(detector, config.detection, config.detection.effective_low_threshold)
        self._unreported_gaps: list[dict[str, Any]] = []
        self._started = time.time()
        # when this run's streaming time starts: its first frame, or its start for a stream that
        # has worked before (an outage after the first frame is streaming time, as a gap is)
        self._streaming_since: float | None = None
        self._last_status = 0.0
        self._last_received = (-1, self._started)  # (source frames_received, when it last changed)
        self._window: Window | None = None
        self._windows_path = self.output_dir / WINDOWS
        self._gaps_path = self.output_dir / GAPS

    @staticmethod
    def _check_state(state: dict[str, Any]) -> None:
        if state and state.get("version") != STATE_VERSION:
            raise InvalidInput(f"this stream's resume state has version {state.get('version')!r}, "
                               f"this worker reads version {STATE_VERSION}")

    # --- the loop --------------------------------------------------------------------------------

    def run(self) -> tuple[dict[str, Any], dict[str, Path]]:
        """Count until ``should_stop()``, ``duration_s`` or ``should_hand_back()``; returns
        (stats, {output name: path}).

        After a stop the outputs are final: the playlist ends with ``#EXT-X-ENDLIST``, the last
        (partial) window is in ``windows.jsonl``, and ``stats.json`` is written. A resumed run
        told to stop before it starts ends the outputs from the state without connecting.
        After a hand-back (``self.handed_back``) nothing is final: the closed segments are
        reported, the state (with the unfinished window) goes to ``on_state``, and ``stats`` is
        not written anywhere; the next run resumes from that state.

        Raises:
            StreamUnavailable: the source never worked, or its reconnects ran out. What was
                counted is kept: the last window is written and the playlist ended first.
            InvalidInput: class names the model does not know (before anything runs).
            ModelError: the model failed.
        """
        self._detection.check_classes()  # bad classes fail now
        self._started = time.time()
        stop = self._stop_reason()
        if stop is not None and self._resumed:  # stopped between runs: end without connecting
            return self._end_unstarted(stop)
        if self._has_worked:
            self._streaming_since = self._started
        self._window = self._resume_window() or self._open_window(self._started)
        if self._resumed_from is not None:
            self._record_gap(float(self._resumed_from), self._started, "resumed")
        # stored at once: it reserves the segment numbers this run uses until its first window
        # closes (without it, a run dying before then would leave a later one to reuse them)
        self.on_state(self._handed_state(self._started, self._window))
        if self._source is None:
            self._source = self._open_source()
        source = self._source
        try:
            self.video = LiveVideo(self.hls, self.annotator)
            while (stop := self._stop_reason()) is None:
                item = source.next(timeout=_POLL_S)
                if isinstance(item, Gap):
                    self._on_gap(item)
                elif item is not None:
                    if self._streaming_since is None:
                        self._streaming_since = item.received_at
                    self._on_frame(item)
                self._fail_if_no_first_frame()
                self._tick(source)
            if stop == _HAND_BACK:
                return self._hand_back(source)
            return self._finish(source)
        except StreamUnavailable:
            self._flush_before_failing()
            raise
        finally:
            if self.video is not None:
                self.video.close()
            source.close()

    def _open_source(self) -> FrameSource:
        options = self.config.source
        if self._has_worked:
            options = replace(options, has_worked=True)
        return LiveSource(self.url, options, self._stop_flag.is_set)

    def _stop_reason(self) -> str | None:
        """``_HAND_BACK``, ``_STOP`` or None (go on). Only this thread calls the caller's checks."""
        duration_s = self.config.duration_s
        if self.should_hand_back():
            reason: str | None = _HAND_BACK
        elif self.should_stop() or (duration_s is not None and self.streaming_s() >= duration_s):
            reason = _STOP
        else:
            reason = None
        if reason is not None:
            self._stop_flag.set()
        return reason

    def streaming_s(self, now: float | None = None) -> float:
        """Seconds streamed in all, the runs before a resume included: from the stream's first
        frame on (the time spent connecting to a source that has not delivered yet is not
        streaming, so ``duration_s`` cannot end a dead source as if it had run)."""
        if self._streaming_since is None:
            return self._streaming_before
        return self._streaming_before + max(0.0, (now or time.time()) - self._streaming_since)

    def _fail_if_no_first_frame(self) -> None:
        """A source that has never delivered fails after its first-connect attempts; this bounds
        what those cannot see (a connection whose packets never decode into a frame)."""
        if self._streaming_since is not None:
            return
        waited_s = time.time() - self._started
        if waited_s > self._first_frame_within_s():
            raise StreamUnavailable(f"the stream {redact_url(self.url)} delivered no frame in {waited_s:.0f} s")

    def _first_frame_within_s(self) -> float:
        """Every first-connect attempt timing out, with the longest backoff after each, and half again."""
        options = self.config.source
        per_attempt_s = options.open_timeout_s + options.read_timeout_s + options.backoff_max_s
        return 1.5 * options.first_connect_attempts * per_attempt_s

    # --- a frame ---------------------------------------------------------------------------------

    def _on_frame(self, frame: LiveFrame) -> None:
        image: np.ndarray = frame.image
        detections = self._detect(image)
        self._frame_index += 1
        time_s = frame.received_at - self._started
        camera = image if self.counter.uses_frames else None
        tracked = self.counter.update(self._frame_index, time_s, detections, camera)
        counted_at = time.time()
        window = self._current_window(counted_at)  # first: what was counted now belongs to it
        tracked.tracker_id = tracker_ids(tracked) + self._track_id_base  # rising across gaps and resumes
        self._count_new_tracks(tracked)
        events = self.counter.events + self.counter.forget_ended_tracks()
        self._publish(events, counted_at)
        latency = max(0.0, counted_at - self._latency_start(frame))
        occupancy = self.counter.zone_occupancy()
        self.totals.set_occupancy(occupancy)
        self._frames_processed += 1
        self.latency.add(counted_at, latency)
        self.histogram.add(latency)
        window.add_frame(latency, occupancy)
        self._record_frame(image, tracked, frame.received_at)

    def _latency_start(self, frame: LiveFrame) -> float:
        """When the camera took the frame, where the source says; else when it was decoded."""
        if frame.captured_at is not None:
            self._latency_from = "capture"
            return frame.captured_at
        self._latency_from = "arrival"
        return frame.received_at

    def _detect(self, image: np.ndarray) -> sv.Detections:
        return self._detection.detect([image], [self._frame_index])[0]

    def _count_new_tracks(self, tracked: sv.Detections) -> None:
        """Ids rise as tracks are confirmed: one above the highest seen before is a new animal
        (several may be confirmed in one frame, in any order)."""
        if not len(tracked):
            return
        assert self._window is not None
        classes = tracked.data.get("class_name", np.array([], dtype=str))
        ids = tracker_ids(tracked).tolist()
        for track_id, class_name in zip(ids, classes, strict=True):
            if track_id > self._highest_id:
                self.totals.add_track(str(class_name))
                self._window.add_track(str(class_name))
        self._highest_id = max(self._highest_id, *ids)

    def _publish(self, events: list[TrackEvent], at: float) -> None:
        assert self._window is not None
        for event in events:
            event = event._replace(track_id=event.track_id + self._track_id_base)
            self.totals.add_event(event)
            self._window.add_event(event)
            self.on_event(CountEvent(event.kind, event.name, event.direction, event.class_name, event.track_id, iso(at)))

    def _record_frame(self, image: np.ndarray, tracked: sv.Detections, received_at: float) -> None:
        """Hand the frame to the video thread, with the counts to draw as they are now."""
        assert self.video is not None
        counts = self.totals.to_dict()
        counts["in_frame"] = len(tracked)
        self.video.frame(image, tracked, counts, received_at)

    # --- a gap -----------------------------------------------------------------------------------

    def _on_gap(self, gap: Gap) -> None:
        """The source stalled, reset or changed: every track ends (a new one counts again)."""
        self._end_tracks()
        assert self.video is not None
        self.video.cut()
        self._record_gap(gap.started_at, gap.ended_at, gap.reason)

    def _end_tracks(self) -> None:
        self._publish(self.counter.forget_ended_tracks(everything=True), time.time())
        self.totals.set_occupancy({})
        self._track_id_base = self._highest_id
        self.counter = ObjectCounter(self.config.counting_config())
        self._frame_index = 0

    def _record_gap(self, started_at: float, ended_at: float, reason: str) -> None:
        gap = {"from": iso(started_at), "to": iso(ended_at), "reason": reason}
        log.info("stream gap: %s from %s to %s", reason, gap["from"], gap["to"])
        with self._gaps_path.open("a", encoding="utf-8") as out:  # every gap; the state keeps the recent ones
            out.write(json.dumps(gap) + "\n")
        self.on_files({GAPS: self._gaps_path}, [])
        self._gaps_total += 1
        self._recent_gaps.append(gap)
        self._unreported_gaps.append(gap)
        if self._window is not None:
            self._window.gaps += 1

    # --- the clock: windows and status -----------------------------------------------------------

    def _tick(self, source: FrameSource) -> None:
        now = time.time()
        self._current_window(now)
        self._report_files()  # segments the video thread finished
        self._store_state_if_numbers_run_out(now)
        if now - self._last_status >= self.config.status_interval_s:
            self._last_status = now
            self.on_status(self.status(source, now))

    def _resume_window(self) -> Window | None:
        """A hand-back's unfinished window goes on (same number, its counts so far), so a
        rolling restart adds no short window; the time away is inside it, recorded as a gap."""
        if not self._carried:
            return None
        window = Window.from_state(self._carried, self.config.line_names, self.config.zone_names,
                                   self.config.window_s, self._resumed_from or self._started, self._started)
        self._next_window = window.number + 1
        return window

    def _open_window(self, started_at: float) -> Window:
        window = Window(
            self._next_window, started_at, self.config.window_s,
            self.config.line_names, self.config.zone_names, self._dropped(),
        )
        self._next_window += 1
        return window

    def _current_window(self, now: float) -> Window:
        """The window ``now`` falls in: windows that ended are written first."""
        assert self._window is not None
        caught_up = 0
        while now >= self._window.ends_at:
            ended_at = self._window.ends_at
            self._close_window(ended_at)
            caught_up += 1
            # held up for many windows (a detector slower than a window): one jump, not a flood
            self._window = self._open_window(ended_at if caught_up < _MAX_CATCH_UP_WINDOWS else now)
        return self._window

    def _close_window(self, ended_at: float) -> dict[str, Any]:
        assert self._window is not None
        record = self._window.record(ended_at, self._dropped())
        with self._windows_path.open("a", encoding="utf-8") as out:
            out.write(json.dumps(record) + "\n")
        self._report_files({WINDOWS: self._windows_path})
        self.on_window(record, self._handed_state(ended_at))  # after on_files: the state names only uploaded files
        return record

    def status(self, source: FrameSource | None = None, now: float | None = None) -> LiveStatus:
        now = now or time.time()
        p50, p95 = self.latency.percentiles(now)
        gaps, self._unreported_gaps = self._unreported_gaps, []
        return LiveStatus(
            counts=self.totals.to_dict(),
            frames_received=self._received(),
            frames_processed=self._frames_processed,
            frames_dropped=self._dropped(),
            latency_p50_s=p50,
            latency_p95_s=p95,
            latencies_s=self.latency.take_unreported(),
            gaps=gaps,
            reconnects=self._before["reconnects"] + self._source_count("reconnects"),
            streaming_s=round(self.streaming_s(now), 3),
            connected=self._connected(now),
            latency_from=self._latency_from,
        )

    def _connected(self, now: float) -> bool:
        received = self._source_count("frames_received")
        if received != self._last_received[0]:
            self._last_received = (received, now)
        return received > 0 and now - self._last_received[1] < _CONNECTED_WITHIN_S

    def _source_count(self, name: str) -> int:
        return int(getattr(self._source, name, 0)) if self._source is not None else 0

    def _received(self) -> int:
        return self._before["frames_received"] + self._source_count("frames_received")

    def _dropped(self) -> int:
        return self._before["frames_dropped"] + self._source_count("frames_dropped")

    # --- files, state, the end -------------------------------------------------------------------

    def _report_files(self, extra: dict[str, Path] | None = None) -> None:
        if self.video is not None:
            changed, removed, _ = self.video.snapshot()
        else:
            changed, removed = self.hls.take_changes()
        if extra:
            changed.update(extra)
        if changed or removed:
            self.on_files(changed, removed)

    def _handed_state(self, now: float, open_window: Window | None = None) -> dict[str, Any]:
        """``state`` as it is handed to the caller to store: the segment numbers it reserves
        are not used before the next one is handed out."""
        state = self.state(now, open_window)
        self._reserved_to = state["segments_reserved_to"]
        return state

    def _store_state_if_numbers_run_out(self, now: float) -> None:
        """Segments are served immutable, so a resumed run must never reuse the number of one
        that was uploaded: each state reserves numbers, and a new state is stored (with the
        unfinished window in it) before the segments closed since the last one use them up."""
        if self._reserved_to and self._segments_state()["next_sequence"] + _SPARE_SEGMENT_NUMBERS >= self._reserved_to:
            self.on_state(self._handed_state(now, self._window))

    def _segments_state(self) -> dict[str, Any]:
        return self.video.segments_state if self.video is not None else self.hls.state()

    def state(self, now: float | None = None, open_window: Window | None = None) -> dict[str, Any]:
        """What a later run needs to continue this one (JSON-able, a few KB whatever the length).

        ``open_window``: the window not yet written; a later run continues it. Without it (as
        each window closes) the state holds the written windows only.
        """
        now = now or time.time()
        segments = self._segments_state()
        per_window = math.ceil(self.config.window_s / self.config.segment_s)
        return {
            "version": STATE_VERSION,
            "saved_at": iso(now),
            "saved_at_s": round(now, 3),
            "totals": self.totals.to_dict(),
            "window": self._next_window - 1 - (open_window is not None),  # the last one written
            "next_window": open_window.number if open_window is not None else self._next_window,
            "open_window": open_window.to_state() if open_window is not None else None,
            "segments": segments,
            # a resumed run numbers its segments from here: past any this run may upload before
            # the next state (two windows' worth; see _store_state_if_numbers_run_out)
            "segments_reserved_to": int(segments["next_sequence"]) + 2 * per_window + 2 * _SPARE_SEGMENT_NUMBERS,
            "streaming_s": round(self.streaming_s(now), 3),
            "gaps_total": self._gaps_total,
            "recent_gaps": list(self._recent_gaps),
            "frames_received": self._received(),
            "frames_processed": self._frames_processed,
            "frames_dropped": self._dropped(),
            "reconnects": self._before["reconnects"] + self._source_count("reconnects"),
            "track_id_base": self._highest_id,
            "latency_histogram": self.histogram.to_dict(),
        }

    def _finish(self, source: FrameSource) -> tuple[dict[str, Any], dict[str, Path]]:
        now = time.time()
        assert self._window is not None
        self._close_window(now)
        self._window = None
        assert self.video is not None
        self.video.finish()
        self._report_files()
        stats = self._stats(now)
        stats_path = self.output_dir / STATS
        stats_path.write_text(json.dumps(stats, indent=2), encoding="utf-8")
        self.on_files({STATS: stats_path}, [])
        self.on_status(self.status(source, now))
        return stats, self.outputs()

    def _hand_back(self, source: FrameSource) -> tuple[dict[str, Any], dict[str, Path]]:
        """The worker is going away and the stream resumes elsewhere: nothing is final. The
        open segment is closed and reported, the unfinished window goes into the state
        (``on_state``), and the playlist is not ended (players keep following it)."""
        now = time.time()
        assert self.video is not None and self._window is not None
        self.video.finish(end=False)
        self._report_files()
        self.on_state(self._handed_state(now, self._window))
        self.on_status(self.status(source, now))
        self.handed_back = True
        return self._stats(now), self.outputs()

    def _end_unstarted(self, stop: str) -> tuple[dict[str, Any], dict[str, Path]]:
        """Told to stop before connecting, with a resume state (a DELETE while the stream was
        between workers): end the outputs from the state alone: the playlist of the stored
        segments with ``#EXT-X-ENDLIST`` and stats.json with the stored totals; the windows
        stay as they are (a hand-back's unfinished window is written as it was). A hand-back
        leaves everything as it is."""
        now = time.time()
        if stop == _HAND_BACK:
            self.handed_back = True
            return self._stats(now), self.outputs()
        self._started = now  # no time streamed in this run
        if self._carried:  # a hand-back's unfinished window: written as it was, so windows add up to the totals
            self._window = self._resume_window()
            self._close_window(float(self._resumed_from or now))
            self._window = None
        self.hls.finish()
        changed, removed = self.hls.take_changes()
        stats = self._stats(now)
        stats_path = self.output_dir / STATS
        stats_path.write_text(json.dumps(stats, indent=2), encoding="utf-8")
        self.on_files({**changed, STATS: stats_path}, removed)
        self.on_status(self.status(None, now))
        return stats, self.outputs()

    def _flush_before_failing(self) -> None:
        """The camera is gone for good: keep what it gave (the last window, a playable video)."""
        if self._frames_processed == self._processed_before:
            return  # it delivered no frame in this run: nothing to keep
        assert self._window is not None
        self._close_window(time.time())
        self._window = None
        assert self.video is not None
        self.video.finish()
        self._report_files()

    def outputs(self) -> dict[str, Path]:
        """{output name: local path} of every output on disk (earlier runs' segments are not)."""
        names = [WINDOWS, STATS, GAPS, LIVE_PLAYLIST, LIVE_RECORDING] + [segment.name for segment in self.hls.listed()]
        return {name: self.output_dir / name for name in names if (self.output_dir / name).is_file()}

    def _stats(self, now: float) -> dict[str, Any]:
        return {
            "kind": "stream",
            "source": redact_url(self.url),  # never the credentials
            "counts": self.totals.to_dict(),
            "windows": self._next_window - 1,
            "window_s": self.config.window_s,
            "streaming_s": round(self.streaming_s(now), 3),
            "frames": {
                "received": self._received(),
                "processed": self._frames_processed,
                "dropped": self._dropped(),
            },
            "latency": {
                "p50_s": self.histogram.percentile(50),
                "p95_s": self.histogram.percentile(95),
                "from": self._latency_from,
                "note": "captured (from: capture) or received from the decoder (from: arrival) -> counted, "
                        "over the whole stream (5% buckets)",
            },
            "gaps_total": self._gaps_total,
            "gaps": list(self._recent_gaps),
            "reconnects": self._before["reconnects"] + self._source_count("reconnects"),
            "video": {"playlist": LIVE_PLAYLIST, "segments": len(self.hls.listed()),
                      "segment_s": self.config.segment_s, "retention_s": self.config.segment_retention_s},
            "model": self._model_facts(),
            "tracking": {"tracker": self.config.tracker, "stitching": False, "min_hits": self.config.min_hits,
                         "threshold": self.config.detection.threshold,
                         "low_threshold": self.config.detection.effective_low_threshold},
            "tiling": self._tiling_facts(),
        }

    def _tiling_facts(self) -> dict[str, Any] | None:
        """The last frame size's tiling plan (None: no frame was processed in this run)."""
        return self._detection.describe()

    def _model_facts(self) -> dict[str, Any]:
        return model_facts(self.detector, self.config.detection.classes)
