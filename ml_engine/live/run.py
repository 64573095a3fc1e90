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

What the run reports, and who tells it to stop, is its ``StreamSink`` (``sink.py``). Every
``window_s`` (``WindowClock``) the window's counts are appended to ``windows.jsonl`` and
``on_window`` gets the record and a ``StreamState``; a later ``StreamRun`` given that state
continues the stream (``state.py``: how a stream resumes). A gap in the source (a stall, a
reset, a resume) ends every track: tracking across it would join different animals, so an
animal in view on both sides of a gap counts again, and the gap is recorded.

Memory stays flat over days: the counter forgets ended tracks (their counts live on in the
totals), keeps no timeline and does no offline stitching; no per-frame history is kept and
``detections.jsonl`` is not written.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import supervision as sv

from core.errors import InvalidInput, StreamUnavailable
from core.jobs import CountingLine, CountingZone, Tracker
from core.outputs import GAPS, LIVE_PLAYLIST, LIVE_RECORDING, STATS, WINDOWS
from ml_engine.annotate import FrameAnnotator
from ml_engine.counting import CountingConfig, TrackEvent
from ml_engine.detection import DetectionConfig, TiledDetector
from ml_engine.live.clock import WindowClock
from ml_engine.live.counts import Totals, Window, iso
from ml_engine.live.gallery import WindowGallery
from ml_engine.live.meters import FrameCounts, FrameSource, GapLog, Latencies, StreamingTime, UnopenedSource
from ml_engine.live.segments import HlsWriter
from ml_engine.live.sink import CountEvent, LiveStatus, QuietSink, StreamSink
from ml_engine.live.source import Gap, LiveFrame, LiveSource, SourceOptions, redact_url
from ml_engine.live.state import SegmentReservation, StreamState
from ml_engine.live.stats import stream_stats
from ml_engine.live.tracks import LiveTracks
from ml_engine.live.video import LiveVideo
from ml_engine.media.video import check_encoder_options
from ml_engine.pipeline import DetectorLike, checked_lines_and_zones

__all__ = ["FrameSource", "StreamConfig", "StreamRun"]

_POLL_S = 0.2  # the longest the loop waits for a frame before looking at the clock and should_stop
# The tracker counts lost time in processed frames; a stream's processing rate is not known in
# advance (it is whatever inference keeps up with), so tracks are sized for this nominal rate.
_NOMINAL_FPS = 10.0


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


_STOP, _HAND_BACK = "stop", "hand_back"


class _Segments(Protocol):
    """The annotated video's files as the run reports them: ``LiveVideo`` while it encodes."""

    def snapshot(self) -> tuple[dict[str, Path], list[str], dict[str, Any]]: ...

    @property
    def segments_state(self) -> dict[str, Any]: ...


class _Unencoded:
    """The video of a run that encodes nothing (it ends before connecting): the writer as it is."""

    def __init__(self, hls: HlsWriter) -> None:
        self.hls = hls

    def snapshot(self) -> tuple[dict[str, Path], list[str], dict[str, Any]]:
        changed, removed = self.hls.take_changes()
        return changed, removed, self.hls.state()

    @property
    def segments_state(self) -> dict[str, Any]:
        return self.hls.state()


class StreamRun:
    """One stream job's run on this worker (see the module's docstring).

    ``sink``: where the results go, and what says when to stop (``StreamSink``; default: none
    goes anywhere, it never stops). ``resume``: the newest ``StreamState`` an earlier run handed
    to its sink. ``source``: what frames come from; default a ``LiveSource`` on ``url`` (tests
    hand in their own). Everything here lasts as long as the object; what exists only while
    ``run()`` runs is its ``_Run``.
    """

    def __init__(self, url: str, config: StreamConfig, detector: DetectorLike, output_dir: Path,
                 sink: StreamSink | None = None, resume: StreamState | None = None,
                 source: FrameSource | None = None) -> None:
        self.url, self.config, self.detector = url, config, detector
        self.output_dir = Path(output_dir)
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self.sink: StreamSink = sink or QuietSink()
        self.resume = resume
        self.handed_back = False  # run() returned because should_hand_back said so: nothing was finalised
        # set by this thread when the run stops; all the source's decode thread reads (cheap, no storage)
        self._stop_flag = threading.Event()
        self._source = source
        state = resume or StreamState()
        # the stream delivered frames before this run: a camera down now is an outage, not a bad URL
        self._has_worked = config.source.has_worked or state.has_worked
        self.totals = Totals.from_dict(state.totals, config.line_names, config.zone_names)
        self.hls = HlsWriter(
            self.output_dir, segment_s=config.segment_s, retention_s=config.segment_retention_s,
            crf=config.crf, preset=config.preset, state=state.segments_to_continue(),
        )
        self.reservation = SegmentReservation(config.window_s, config.segment_s)
        self.frames = FrameCounts(state)
        self.streaming = StreamingTime(state.streaming_s)
        self.latency = Latencies(config.window_s, state)
        self.gaps = GapLog(self.output_dir / GAPS, state)
        self.tracks = LiveTracks(config.counting_config(), state.track_id_base)
        self.detection = TiledDetector(detector, config.detection, config.detection.effective_low_threshold)
        self.annotator = FrameAnnotator(config.lines, config.zones)
        self.windows_path = self.output_dir / WINDOWS
        self.gallery = WindowGallery(self.output_dir, resume)  # each window's new animals, with pictures

    def run(self) -> tuple[dict[str, Any], dict[str, Path]]:
        """Count until ``should_stop()``, ``duration_s`` or ``should_hand_back()``; returns
        (stats, {output name: path}).

        After a stop the outputs are final: the playlist ends with ``#EXT-X-ENDLIST``, the last
        (partial) window is in ``windows.jsonl``, and ``stats.json`` is written. A resumed run
        told to stop before it starts ends the outputs from the state without connecting.
        After a hand-back (``self.handed_back``) nothing is final: the closed segments are
        reported, the state (with the unfinished window) goes to ``store_state``, and ``stats``
        is not written anywhere; the next run resumes from that state.

        Raises:
            StreamUnavailable: the source never worked, or its reconnects ran out. What was
                counted is kept: the last window is written and the playlist ended first.
            InvalidInput: class names the model does not know (before anything runs).
            ModelError: the model failed.
        """
        self.detection.check_classes()  # bad classes fail now
        started = time.time()
        stop = self.stop_reason()
        if stop is not None and self.resume is not None:  # stopped between runs: end without connecting
            return self._end_unstarted(stop, started, self.resume)
        if self._has_worked:  # an outage after the first frame is streaming time, as a gap is
            self.streaming.start(started)
        clock = self._first_window(started)
        unopened = _Unencoded(self.hls)
        if self.resume is not None and self.resume.saved_at_s is not None:
            self.record_gap(clock.window, self.resume.saved_at_s, started, "resumed")
        # stored at once: it reserves the segment numbers this run uses until its first window
        # closes (without it, a run dying before then would leave a later one to reuse them)
        self.sink.store_state(self.state(started, self._source or UnopenedSource(), unopened, clock.window))
        source = self._source or self._open_source()
        with contextlib.closing(source):
            video = LiveVideo(self.hls, self.annotator)
            try:
                return _Run(self, started, clock, source, video).count()
            finally:
                video.close()

    def _first_window(self, started: float) -> WindowClock:
        """A hand-back's unfinished window goes on; else the next window opens now."""
        config, resume = self.config, self.resume
        lines, zones = config.line_names, config.zone_names
        if resume is not None and resume.open_window:
            saved_at = resume.saved_at_s or started
            return WindowClock.continuing(resume.open_window, saved_at, started, config.window_s, lines, zones)
        number = resume.next_window if resume is not None else 1
        dropped = self.frames.dropped(self._source or UnopenedSource())
        return WindowClock.starting(number, started, config.window_s, lines, zones, dropped)

    def _open_source(self) -> FrameSource:
        options = self.config.source
        if self._has_worked:
            options = replace(options, has_worked=True)
        return LiveSource(self.url, options, self._stop_flag.is_set)

    def stop_reason(self) -> str | None:
        """``_HAND_BACK``, ``_STOP`` or None (go on). Only this thread asks the sink."""
        duration_s = self.config.duration_s
        if self.sink.should_hand_back():
            reason: str | None = _HAND_BACK
        elif self.sink.should_stop() or (duration_s is not None and self.streaming.seconds() >= duration_s):
            reason = _STOP
        else:
            reason = None
        if reason is not None:
            self._stop_flag.set()
        return reason

    def _end_unstarted(self, stop: str, now: float, resume: StreamState) -> tuple[dict[str, Any], dict[str, Path]]:
        """Told to stop before connecting, with a resume state (a DELETE while the stream was
        between workers): end the outputs from the state alone: the playlist of the stored
        segments with ``#EXT-X-ENDLIST`` and stats.json with the stored totals; the windows
        stay as they are (a hand-back's unfinished window is written as it was). A hand-back
        leaves everything as it is."""
        source, unencoded = UnopenedSource(), _Unencoded(self.hls)
        windows = resume.next_window - 1
        if stop == _HAND_BACK:
            self.handed_back = True
            return stream_stats(self, source, windows, now), self.outputs()
        if resume.open_window:  # written as it was, so windows add up to the totals
            window = self._first_window(now).window
            self.close_window(window, float(resume.saved_at_s or now), source, unencoded)
            windows = window.number
        self.hls.finish()
        changed, removed = self.hls.take_changes()
        stats = stream_stats(self, source, windows, now)
        self.sink.on_files({**changed, STATS: self.write_stats(stats)}, removed)
        self.sink.on_status(self.status(source, now))
        return stats, self.outputs()

    # --- shared by the loop and the endings ------------------------------------------------------

    def record_gap(self, window: Window, started_at: float, ended_at: float, reason: str) -> None:
        self.gaps.record(started_at, ended_at, reason)
        self.sink.on_files({GAPS: self.gaps.path}, [])
        window.gaps += 1

    def report_files(self, video: _Segments, extra: dict[str, Path] | None = None) -> None:
        changed, removed, _ = video.snapshot()
        if extra:
            changed.update(extra)
        if changed or removed:
            self.sink.on_files(changed, removed)

    def close_window(self, window: Window, ended_at: float, source: FrameSource, video: _Segments) -> None:
        record = window.record(ended_at, self.frames.dropped(source))
        with self.windows_path.open("a", encoding="utf-8") as out:
            out.write(json.dumps(record) + "\n")
        self.report_files(video, {WINDOWS: self.windows_path, **self.gallery.close_window(record)})
        # after on_files: the state names only uploaded files
        self.sink.on_window(record, self.state(ended_at, source, video, window, still_open=False))

    def state(self, now: float, source: FrameSource, video: _Segments, window: Window,
              still_open: bool = True) -> StreamState:
        """What a later run needs to continue this one, as handed to the sink: the segment
        numbers it reserves are not used before the next one is handed out.

        ``window``: the window not yet written (``still_open``: a later run continues it), or
        the one just written.
        """
        segments = video.segments_state
        return StreamState(
            saved_at_s=round(now, 3),
            totals=self.totals.to_dict(),
            window=window.number - 1 if still_open else window.number,  # the last one written
            next_window=window.number if still_open else window.number + 1,
            open_window=window.to_state() if still_open else None,
            segments=segments,
            segments_reserved_to=self.reservation.reserve(int(segments["next_sequence"])),
            streaming_s=round(self.streaming.seconds(now), 3),
            gaps_total=self.gaps.total,
            recent_gaps=list(self.gaps.recent),
            frames_received=self.frames.received(source),
            frames_processed=self.frames.processed,
            frames_dropped=self.frames.dropped(source),
            reconnects=self.frames.reconnects(source),
            track_id_base=self.tracks.highest,
            latency_histogram=self.latency.histogram.to_dict(),
        )

    def status(self, source: FrameSource, now: float) -> LiveStatus:
        p50, p95 = self.latency.recent.percentiles(now)
        return LiveStatus(
            counts=self.totals.to_dict(),
            frames_received=self.frames.received(source),
            frames_processed=self.frames.processed,
            frames_dropped=self.frames.dropped(source),
            latency_p50_s=p50,
            latency_p95_s=p95,
            latencies_s=self.latency.recent.take_unreported(),
            gaps=self.gaps.take_unreported(),
            reconnects=self.frames.reconnects(source),
            streaming_s=round(self.streaming.seconds(now), 3),
            connected=self.frames.connected(source, now),
            latency_from=self.latency.measured_from,
        )

    def write_stats(self, stats: dict[str, Any]) -> Path:
        path = self.output_dir / STATS
        path.write_text(json.dumps(stats, indent=2), encoding="utf-8")
        return path

    def outputs(self) -> dict[str, Path]:
        """{output name: local path} of every output on disk (earlier runs' segments are not)."""
        names = [WINDOWS, STATS, GAPS, LIVE_PLAYLIST, LIVE_RECORDING] + [segment.name for segment in self.hls.listed()]
        return {name: self.output_dir / name for name in names if (self.output_dir / name).is_file()}


class _Run:
    """One ``StreamRun.run()`` from its first window to its end: the loop, a frame, a gap, the
    clock's ticks, and the three endings of a run that started (stop, hand-back, failure)."""

    def __init__(self, stream: StreamRun, started: float, clock: WindowClock, source: FrameSource,
                 video: LiveVideo) -> None:
        self.stream, self.started, self.clock, self.source, self.video = stream, started, clock, source, video
        self.sink = stream.sink
        self._last_status = 0.0

    def count(self) -> tuple[dict[str, Any], dict[str, Path]]:
        try:
            while (stop := self.stream.stop_reason()) is None:
                item = self.source.next(timeout=_POLL_S)
                if isinstance(item, Gap):
                    self._on_gap(item)
                elif item is not None:
                    self.stream.streaming.start(item.received_at)
                    self._on_frame(item)
                self._fail_if_no_first_frame()
                self._tick()
            if stop == _HAND_BACK:
                return self._hand_back()
            return self._finish()
        except StreamUnavailable:
            self._flush_before_failing()
            raise

    def _fail_if_no_first_frame(self) -> None:
        """A source that has never delivered fails after its first-connect attempts; this bounds
        what those cannot see (a connection whose packets never decode into a frame)."""
        if self.stream.streaming.since is not None:
            return
        waited_s = time.time() - self.started
        if waited_s > self._first_frame_within_s():
            raise StreamUnavailable(f"the stream {redact_url(self.stream.url)} delivered no frame in {waited_s:.0f} s")

    def _first_frame_within_s(self) -> float:
        """Every first-connect attempt timing out, with the longest backoff after each, and half again."""
        options = self.stream.config.source
        per_attempt_s = options.open_timeout_s + options.read_timeout_s + options.backoff_max_s
        return 1.5 * options.first_connect_attempts * per_attempt_s

    # --- a frame ---------------------------------------------------------------------------------

    def _on_frame(self, frame: LiveFrame) -> None:
        stream, image = self.stream, frame.image
        detections = stream.detection.detect([image], [stream.tracks.frame_index])[0]
        tracked = stream.tracks.update(image, frame.received_at - self.started, detections)
        counted_at = time.time()
        window = self._current_window(counted_at)  # first: what was counted now belongs to it
        counted = stream.tracks.new_tracks(tracked)
        for class_name in counted.values():
            stream.totals.add_track(class_name)
            window.add_track(class_name)
        stream.gallery.offer(image, tracked, frame.received_at, counted.keys())  # before it is drawn on
        self._publish(stream.tracks.events(), counted_at)
        latency = stream.latency.add(frame, counted_at)
        occupancy = stream.tracks.counter.zone_occupancy()
        stream.totals.set_occupancy(occupancy)
        stream.frames.processed += 1
        window.add_frame(latency, occupancy)
        self._record_frame(image, tracked, frame.received_at)

    def _publish(self, events: list[TrackEvent], at: float) -> None:
        for event in events:
            self.stream.totals.add_event(event)
            self.clock.window.add_event(event)
            self.sink.on_event(CountEvent(event.kind, event.name, event.direction, event.class_name, event.track_id,
                                          iso(at)))

    def _record_frame(self, image: np.ndarray, tracked: sv.Detections, received_at: float) -> None:
        """Hand the frame to the video thread, with the counts to draw as they are now."""
        counts = self.stream.totals.to_dict()
        counts["in_frame"] = len(tracked)
        self.video.frame(image, tracked, counts, received_at)

    def _on_gap(self, gap: Gap) -> None:
        """The source stalled, reset or changed: every track ends (a new one counts again)."""
        self._publish(self.stream.tracks.end_all(), time.time())
        self.stream.totals.set_occupancy({})
        self.video.cut()
        self.stream.record_gap(self.clock.window, gap.started_at, gap.ended_at, gap.reason)

    # --- the clock: windows, status, states ------------------------------------------------------

    def _tick(self) -> None:
        now = time.time()
        self._current_window(now)
        self.stream.report_files(self.video)  # segments the video thread finished
        self._store_state_if_numbers_run_out(now)
        if now - self._last_status >= self.stream.config.status_interval_s:
            self._last_status = now
            self.sink.on_status(self.stream.status(self.source, now))

    def _current_window(self, now: float) -> Window:
        """The window ``now`` falls in: windows that ended are written first."""
        return self.clock.advance(now, self._close, lambda: self.stream.frames.dropped(self.source))

    def _close(self, window: Window, ended_at: float | None = None) -> None:
        self.stream.close_window(window, window.ends_at if ended_at is None else ended_at, self.source, self.video)

    def _store_state_if_numbers_run_out(self, now: float) -> None:
        """Segments are served immutable, so a resumed run must never reuse the number of one
        that was uploaded: a new state is stored before the reserved numbers run out."""
        if self.stream.reservation.running_low(int(self.video.segments_state["next_sequence"])):
            self.sink.store_state(self._open_state(now))

    def _open_state(self, now: float) -> StreamState:
        return self.stream.state(now, self.source, self.video, self.clock.window)

    # --- the endings -----------------------------------------------------------------------------

    def _finish(self) -> tuple[dict[str, Any], dict[str, Path]]:
        now = time.time()
        self._close(self.clock.window, now)
        self.video.finish()
        self.stream.report_files(self.video)
        stats = stream_stats(self.stream, self.source, self.clock.window.number, now)
        self.sink.on_files({STATS: self.stream.write_stats(stats)}, [])
        self.sink.on_status(self.stream.status(self.source, now))
        return stats, self.stream.outputs()

    def _hand_back(self) -> tuple[dict[str, Any], dict[str, Path]]:
        """The worker is going away and the stream resumes elsewhere: nothing is final. The
        open segment is closed and reported, the unfinished window goes into the state
        (``store_state``), and the playlist is not ended (players keep following it)."""
        now = time.time()
        self.video.finish(end=False)
        window = self.clock.window
        self.stream.report_files(self.video, self.stream.gallery.hand_back(window.number, window.started_at))
        self.sink.store_state(self._open_state(now))
        self.sink.on_status(self.stream.status(self.source, now))
        self.stream.handed_back = True
        return stream_stats(self.stream, self.source, self.clock.window.number, now), self.stream.outputs()

    def _flush_before_failing(self) -> None:
        """The camera is gone for good: keep what it gave (the last window, a playable video)."""
        if self.stream.frames.processed == self.stream.frames.processed_before:
            return  # it delivered no frame in this run: nothing to keep
        self._close(self.clock.window, time.time())
        self.video.finish()
        self.stream.report_files(self.video)
