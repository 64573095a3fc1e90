"""``ObjectCounter``: per-frame detections in, tracks and trustworthy counts out.

* a track counts only once it is *confirmed*: matched in ``min_hits`` consecutive processed
  frames, so a detection that flickers for a frame or two never becomes an object;
* a track keeps its id through short gaps (``track_buffer_s``), and, with a tracker that uses
  frames (``botsort``), through camera pans, jumps and frame strides;
* after the last frame, tracks broken by longer gaps (an animal under a tree) are stitched
  back together (``stitching``; see ``stitching.py``), and a stitched track seen for less
  than ``min_track_s`` in all is dropped as flicker (a false detection that lasted just
  long enough to be confirmed, 3 frames at 30 fps), unless the video's start or end cut it.
  The summary's counts, tracks, line and zone counts use the stitched identities, while
  ``update`` and ``live_counts`` are live, hence provisional (so are the summary's timeline
  and peak: the video pipeline replaces them
  with those of the final ids and classes, counted by ``ml_engine.render`` as it draws the video);
* a track's class is the majority vote over its detections, so one frame labelled "horse" in a
  herd of cows does not create a horse;
* line crossings use the sign of the track's anchor (bottom centre) relative to the line with a
  hysteresis band, so jitter on the line is not a crossing and each real crossing counts once.

Pure numpy + trackers + OpenCV: usable without a model or a video (feed it detections, and
frames when the tracker uses them).
"""

from __future__ import annotations

from collections import Counter, deque
from contextlib import suppress
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any, NamedTuple

import numpy as np
import supervision as sv

from core.errors import InvalidInput
from core.jobs import CountingLine, CountingZone, Tracker, check_unique_names, with_default_names
from ml_engine.counting.herd_motion import HerdMotion
from ml_engine.counting.lines import LineCounter, anchors
from ml_engine.counting.passes import FlightLog
from ml_engine.counting.rule import CountRule
from ml_engine.counting.stitching import StitchConfig, TrackEnds, stitch
from ml_engine.counting.timeline import Timeline, peak_of
from ml_engine.counting.tracker import (
    TRACKERS,
    CameraFrame,
    CameraMotion,
    LiveTracker,
    camera_frame,
    uses_frames,
)
from ml_engine.counting.zones import ZoneCounter
from ml_engine.media.telemetry import Telemetry

DEFAULT_CLASS = "object"


@dataclass
class CountingConfig:
    """How tracks are formed and counted.

    ``fps`` is the rate of the frames fed to ``update`` (source fps / frame stride).
    ``min_hits``: consecutive matched frames before a track is confirmed and counted (values
    below 2 act as 2: the trackers confirm on the second match at the earliest).
    ``track_buffer_s``: how long a lost track keeps its id waiting to be matched again.
    ``track_threshold``: detections at or above it are matched first and may start tracks;
    weaker ones only extend existing tracks (ByteTrack's second stage).
    ``match_iou``: minimum IoU between a track's predicted box and a detection to match.
    ``line_hysteresis_px``: an anchor within this distance of a line keeps its previous side.
    ``tracker``: ``botsort`` (camera-motion compensated; wants frames) or ``bytetrack``.
    ``stitching``: the offline pass after the last frame: re-link tracks broken by long gaps
    (``stitch`` tunes it) and drop stitched tracks seen for less than ``min_track_s`` in all.
    ``timeline``: keep the per-frame count timeline for the summary. Live streams turn it off
    (with stitching), and call ``forget_ended_tracks``, so that memory stays flat over hours.
    """

    fps: float
    min_hits: int = 3
    lines: list[CountingLine] = field(default_factory=list)
    zones: list[CountingZone] = field(default_factory=list)
    track_buffer_s: float = 1.0
    track_threshold: float = 0.5
    match_iou: float = 0.1
    line_hysteresis_px: float = 4.0
    tracker: Tracker = Tracker.BOTSORT
    stitching: bool = True
    stitch: StitchConfig = field(default_factory=StitchConfig)
    min_track_s: float = 0.3
    timeline: bool = True

    def __post_init__(self) -> None:
        if not self.fps or not np.isfinite(self.fps) or self.fps <= 0:
            raise InvalidInput(f"counting needs a positive frame rate, got {self.fps}")
        if self.min_hits < 1:
            raise InvalidInput(f"min_hits must be at least 1, got {self.min_hits}")
        if self.track_buffer_s < 0:
            raise InvalidInput(f"track_buffer_s cannot be negative, got {self.track_buffer_s}")
        self.tracker = _known_tracker(self.tracker)
        self.lines = with_default_names(self.lines, "line")
        self.zones = with_default_names(self.zones, "zone")
        check_unique_names("line", [line.name for line in self.lines])
        check_unique_names("zone", [zone.name for zone in self.zones])


def _known_tracker(tracker: Tracker | str) -> Tracker:
    """The engine's one check of a tracker (jobs, settings and the CLI hand it a ``Tracker``;
    a notebook may give its name)."""
    try:
        return Tracker(tracker)
    except ValueError:
        raise InvalidInput(f"tracker must be one of {', '.join(TRACKERS)}, got {tracker!r}") from None


class TrackEvent(NamedTuple):
    """A count as it happens: a line crossing, or a zone entry or exit (live streams' events)."""

    kind: str  # "line_crossing" | "zone_entry" | "zone_exit"
    name: str  # the line's or zone's name
    direction: str | None  # "in" | "out" for a line crossing
    track_id: int
    class_name: str


# --- per-track bookkeeping --------------------------------------------------------------------


@dataclass
class TrackRecord:
    """What is known about one confirmed track."""

    track_id: int
    first_frame: int
    first_time_s: float
    last_frame: int
    last_time_s: float
    frames_seen: int = 0
    confidence_sum: float = 0.0
    class_votes: Counter[str] = field(default_factory=Counter)
    class_name: str = ""
    raw_ids: list[int] = field(default_factory=list)  # the tracker's ids stitched into this one
    # (timeline row, class) of its first frames: enough to take a track too short to count
    # back out of the timeline (bounded: only the first ``min_track_s`` worth are kept)
    early_rows: list[tuple[int, str]] = field(default_factory=list)

    def vote(self, cls: str, n: int = 1) -> None:
        """Count a detection's label. The track's class is the majority so far; a tie keeps
        the current class, so the label does not flip back and forth on every stray frame."""
        self.class_votes[cls] += n
        if not self.class_name or self.class_votes[cls] > self.class_votes[self.class_name]:
            self.class_name = cls

    def absorb(self, later: TrackRecord) -> None:
        """Take in a later tracklet of the same animal (stitching)."""
        self.last_frame, self.last_time_s = later.last_frame, later.last_time_s
        self.frames_seen += later.frames_seen
        self.confidence_sum += later.confidence_sum
        for cls, n in later.class_votes.items():
            self.vote(cls, n)
        self.raw_ids.extend(later.raw_ids or [later.track_id])

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.track_id,
            "class": self.class_name,
            "first_frame": self.first_frame,
            "last_frame": self.last_frame,
            "first_time_s": round(self.first_time_s, 4),
            "last_time_s": round(self.last_time_s, 4),
            "frames_seen": self.frames_seen,
            "mean_confidence": round(self.confidence_sum / max(self.frames_seen, 1), 4),
            "class_votes": dict(self.class_votes),
            "raw_ids": self.raw_ids or [self.track_id],
        }


@dataclass
class CountSummary:
    """Everything counted in one video; ``to_dict()`` is the ``counts``-related part of stats.

    ``id_map`` maps every raw tracker id to its stitched id (identity without stitching), or
    to None for a track dropped as too short; ``raw_total_unique`` is the count before stitching.
    """

    total_unique: int
    by_class: dict[str, int]
    peak: dict[str, Any]
    tracks: list[dict[str, Any]]
    timeline: list[dict[str, Any]]
    lines: list[dict[str, Any]]
    zones: list[dict[str, Any]]
    frames_processed: int
    raw_total_unique: int = 0
    short_tracks: int = 0
    id_map: dict[int, int | None] = field(default_factory=dict)
    tracking: dict[str, Any] = field(default_factory=dict)
    passes: dict[str, Any] | None = None  # a lawnmower flight's passes (``passes.py``); None: one pass

    @property
    def merged(self) -> int:
        """Raw tracks that stitching folded into an earlier one."""
        return self.raw_total_unique - self.short_tracks - self.total_unique

    def to_dict(self) -> dict[str, Any]:
        return {
            "total_unique": self.total_unique,
            "by_class": self.by_class,
            "peak": self.peak,
            "tracks": self.tracks,
            "timeline": self.timeline,
            "lines": self.lines,
            "zones": self.zones,
            "frames_processed": self.frames_processed,
            "raw_total_unique": self.raw_total_unique,
            "merged": self.merged,
            "short_tracks": self.short_tracks,
        }


class ObjectCounter:
    """Tracks detections frame by frame and counts unique, confirmed objects.

    Feed it every processed frame in order, including frames with no detections (that is how
    lost tracks age), with the frame itself when ``config.tracker`` uses frames (``botsort``):
    an RGB (H, W, 3) image, or a ``CameraFrame`` prepared by ``camera_frame``. Without frames,
    ``botsort`` assumes a still camera. One instance per video.

    ``telemetry``: the flight's GPS track (a DJI SRT), which helps place the passes of a
    lawnmower flight on the ground (``passes.py``).
    """

    def __init__(self, config: CountingConfig, telemetry: Telemetry | None = None) -> None:
        self.config = config
        self._tracker = LiveTracker(
            config.tracker, fps=config.fps, track_threshold=config.track_threshold,
            min_hits=config.min_hits, track_buffer_s=config.track_buffer_s, match_iou=config.match_iou,
        )
        self.camera = CameraMotion()
        self.herd_motion = HerdMotion()  # the camera's motion read from the detections, when no frames come
        self._to_ground = np.eye(3)  # this frame's pixels -> the first frame's (camera-compensated)
        # the camera's path and keyframes, to count a lawnmower flight's passes once (with stitching)
        self.flight = FlightLog(telemetry) if config.stitching else None
        self._camera_frame: CameraFrame | None = None  # the frame camera motion was last estimated on
        self._tracks: dict[int, TrackRecord] = {}
        self._ends: dict[int, TrackEnds] = {}
        self._class_ids: dict[str, int] = {}
        self._unique_by_class: Counter[str] = Counter()  # by each track's current majority class
        self._lines = [LineCounter(line, config.line_hysteresis_px) for line in config.lines]
        self._zones = [ZoneCounter(zone) for zone in config.zones]
        self._timeline = Timeline()
        self._peak: dict[str, Any] = {"count": 0, "frame": None, "time_s": None, "by_class": {}}
        self._in_frame: Counter[str] = Counter()
        self._last_frame = -1
        # the first and the last few processed frames: a track that begins or ends within them may
        # have been cut by the video's start or end, not be a flicker (see _too_short)
        self.rule = CountRule(config.fps, config.min_hits, config.min_track_s)  # when a track counts
        self._confirming = self.rule.confirming
        self._opening_frames: list[int] = []
        self._closing_frames: deque[int] = deque(maxlen=self._confirming)
        self._early_rows = int(np.ceil(config.min_track_s * config.fps)) + 1
        self.frames_with_motion = 0
        self._given_frames = False  # any frame at all: then a short track at the video's ends is a flicker
        self.events: list[TrackEvent] = []  # the last update's crossings, entries and exits
        self._forgotten = 0  # confirmed tracks whose records forget_ended_tracks dropped

    @property
    def uses_frames(self) -> bool:
        """Whether ``update`` wants frames: for the tracker's CMC, or stitching's ground positions."""
        return uses_frames(self.config.tracker) or self.config.stitching

    def update(
        self,
        frame_index: int,
        time_s: float,
        detections: sv.Detections,
        frame: np.ndarray | CameraFrame | None = None,
    ) -> sv.Detections:
        """Track one processed frame's detections.

        Returns the confirmed tracked detections of this frame: ``tracker_id`` (1-based, stable
        through short gaps; the live id, before stitching) set, and ``class_name``/``class_id``
        replaced by the track's majority class (the detector's own label stays in
        ``data["detected_class"]``).
        """
        if frame_index <= self._last_frame:
            raise InvalidInput(f"frames must be fed in order: {frame_index} after {self._last_frame}")
        self._last_frame = frame_index
        self._note_frame(frame_index)
        motion = self._camera_motion(frame, detections.xyxy)
        if self.flight is not None:
            self.flight.observe(frame_index, time_s, self._to_ground, self._camera_frame)
        on_frames = frame is not None and self.uses_frames  # measured on pixels, not read from the detections
        tracked = self._tracker.update(_with_class_names(detections), motion, measured_on_frames=on_frames)
        confirmed = tracked[tracked.tracker_id != -1] if len(tracked) else empty_tracked()
        confirmed.tracker_id = tracker_ids(confirmed) + 1  # users count from 1
        classes = self._record(frame_index, time_s, confirmed)
        self._relabel(confirmed, classes)
        self._count(frame_index, time_s, confirmed, classes)
        return confirmed

    def _camera_motion(self, frame: np.ndarray | CameraFrame | None, boxes: np.ndarray) -> np.ndarray | None:
        if frame is None and self.config.stitching:
            motion = self.herd_motion.estimate(boxes)  # no pixels: the herd's common motion
        elif frame is None or not self.uses_frames:
            return None
        else:
            self._given_frames = True
            prepared = frame if isinstance(frame, CameraFrame) else camera_frame(frame)
            self._camera_frame = prepared
            motion = self.camera.estimate(prepared, boxes)
            self.frames_with_motion += 1
        step = np.vstack([motion, [0.0, 0.0, 1.0]])  # previous frame -> this one
        with suppress(np.linalg.LinAlgError):  # a degenerate estimate: keep the previous mapping
            self._to_ground = self._to_ground @ np.linalg.inv(step)
        return motion

    def _note_frame(self, frame_index: int) -> None:
        if len(self._opening_frames) < self._confirming:
            self._opening_frames.append(frame_index)
        self._closing_frames.append(frame_index)

    def _record(self, frame_index: int, time_s: float, confirmed: sv.Detections) -> list[str]:
        detected = confirmed.data.get("class_name", np.array([], dtype=str))
        confidences = confirmed.confidence if confirmed.confidence is not None else np.ones(len(confirmed))
        class_ids = confirmed.class_id if confirmed.class_id is not None else np.zeros(len(confirmed), int)
        ground = self._ground_positions(confirmed.xyxy) if self.config.stitching else None
        classes = []
        for row, (track_id, cls, cls_id, score) in enumerate(
            zip(tracker_ids(confirmed).tolist(), detected, class_ids, confidences, strict=True)
        ):
            self._class_ids.setdefault(str(cls), int(cls_id))
            classes.append(self._observe(int(track_id), str(cls), float(score), frame_index, time_s))
            track = self._tracks[int(track_id)]
            if len(track.early_rows) < self._early_rows:
                track.early_rows.append((len(self._timeline), classes[-1]))  # the row _count appends
            if ground is not None:
                ends = self._ends.setdefault(int(track_id), TrackEnds(int(track_id)))
                ends.observe(frame_index, time_s, *ground[row])
        return classes

    def _ground_positions(self, xyxy: np.ndarray) -> np.ndarray:
        """(N, 3): each box's centre in ground coordinates, and its size (sqrt of area) there."""
        if len(xyxy) == 0:
            return np.zeros((0, 3))
        centres = np.stack([(xyxy[:, 0] + xyxy[:, 2]) / 2, (xyxy[:, 1] + xyxy[:, 3]) / 2, np.ones(len(xyxy))])
        ground = (self._to_ground @ centres)[:2].T
        scale = float(np.sqrt(abs(np.linalg.det(self._to_ground[:2, :2]))))
        sizes = np.sqrt(np.clip((xyxy[:, 2] - xyxy[:, 0]) * (xyxy[:, 3] - xyxy[:, 1]), 0, None)) * scale
        return np.column_stack([ground, sizes])

    def _observe(self, track_id: int, cls: str, score: float, frame_index: int, time_s: float) -> str:
        track = self._tracks.get(track_id)
        if track is None:
            track = TrackRecord(track_id, frame_index, time_s, frame_index, time_s)
            self._tracks[track_id] = track
            previous_class = None
        else:
            previous_class = track.class_name
        track.last_frame, track.last_time_s = frame_index, time_s
        track.frames_seen += 1
        track.confidence_sum += score
        track.vote(cls)
        if track.class_name != previous_class:
            if previous_class is not None:
                self._unique_by_class[previous_class] -= 1
            self._unique_by_class[track.class_name] += 1
        return track.class_name

    def _relabel(self, confirmed: sv.Detections, classes: list[str]) -> None:
        if len(confirmed) == 0:
            return
        confirmed.data["detected_class"] = confirmed.data["class_name"]
        confirmed.data["class_name"] = np.array(classes, dtype=str)
        confirmed.class_id = np.array([self._class_ids[cls] for cls in classes], dtype=int)

    def _count(self, frame_index: int, time_s: float, confirmed: sv.Detections, classes: list[str]) -> None:
        self._in_frame = Counter(classes)
        if self.config.timeline:
            self._timeline.append(frame_index, time_s, self._in_frame)
        if len(confirmed) > self._peak["count"]:
            self._peak = {
                "count": len(confirmed),
                "frame": frame_index,
                "time_s": round(time_s, 4),
                "by_class": dict(self._in_frame),
            }
        points, ids = anchors(confirmed.xyxy), tracker_ids(confirmed)
        class_of = dict(zip(ids.tolist(), classes, strict=True))
        self.events = []
        for line in self._lines:
            line_name = line.line.name or ""  # named by with_default_names in the config
            for track_id, direction in line.update(ids, points):
                self.events.append(TrackEvent("line_crossing", line_name, direction, track_id, class_of[track_id]))
        for zone in self._zones:
            zone.update(ids, points, classes)
            zone_name = zone.zone.name or ""
            self.events.extend(TrackEvent("zone_entry", zone_name, None, t, class_of[t]) for t in zone.entered)
            self.events.extend(TrackEvent("zone_exit", zone_name, None, t, class_of[t]) for t in zone.exited)

    def forget_ended_tracks(self, everything: bool = False) -> list[TrackEvent]:
        """Drop the records of tracks the tracker has given up on (``everything``: of every
        track, as at a stream's gap), so memory stays flat on a stream that runs for days.

        ``live_counts`` keeps counting them; ``summary`` no longer sees them (a video calls
        this never). Returns the zone exits of the tracks that ended inside a zone.
        """
        alive = set() if everything else {raw + 1 for raw in self._tracker.alive_ids()}
        ended = {track_id for track_id in self._tracks if track_id not in alive}
        if not ended:
            return []
        exits = [
            TrackEvent("zone_exit", zone.zone.name or "", None, track_id, self._tracks[track_id].class_name)
            for zone in self._zones
            for track_id in zone.forget(ended)
        ]
        for line in self._lines:
            line.forget(ended)
        for track_id in ended:
            del self._tracks[track_id]
            self._ends.pop(track_id, None)
        self._forgotten += len(ended)
        return exits

    # --- reading the counts --------------------------------------------------------------------

    def live_counts(self) -> dict[str, Any]:
        """The running counts an overlay shows, before stitching (provisional): unique so far,
        in this frame, line totals."""
        return {
            "total_unique": len(self._tracks) + self._forgotten,
            "by_class": _positive(self._unique_by_class),
            "in_frame": sum(self._in_frame.values()),
            "in_frame_by_class": dict(self._in_frame),
            "lines": {
                counter.line.name: {"in": counter.totals["in"], "out": counter.totals["out"]}
                for counter in self._lines
            },
        }

    def track(self, track_id: int) -> TrackRecord | None:
        """A confirmed track's record; None once ``forget_ended_tracks`` dropped it."""
        return self._tracks.get(track_id)

    def zone_occupancy(self) -> dict[str, int]:
        """Confirmed tracks inside each zone in the last frame, by zone name."""
        return {zone.zone.name or "": zone.occupancy for zone in self._zones}

    def stitched_ids(self) -> dict[int, int]:
        """Raw (live) track id -> final id: the id of the first track of its stitched chain."""
        if not self.config.stitching:
            return {track_id: track_id for track_id in self._tracks}
        for track_id, ends in self._ends.items():
            ends.class_name = self._tracks[track_id].class_name
        return stitch(list(self._ends.values()), self.config.stitch)

    def summary(self) -> CountSummary:
        """Final counts, with stitching applied: per-class totals use each stitched track's
        final majority class."""
        stitched = self.stitched_ids()
        links = _links(stitched, self._tracks)
        # a lawnmower flight: an animal seen again on a later pass keeps its first pass's id (not a
        # link for line crossings: the later pass sees the line's pixels on other ground)
        across = self.flight.merge_passes(stitched, self._ends) if self.flight is not None else None
        if across is not None:
            stitched = across.ids
        tracks = _merged_tracks(self._tracks, stitched)
        short = self._too_short(tracks)
        id_map = {raw: (None if final in short else final) for raw, final in stitched.items()}
        tracks = {final: track for final, track in tracks.items() if final not in short}
        final_class = {raw: tracks[final].class_name for raw, final in id_map.items() if final is not None}
        links = [(a, b) for a, b in links if id_map[a] is not None]
        timeline = list(self._timeline.entries(self._rows_of([raw for raw, f in id_map.items() if f is None])))
        return CountSummary(
            total_unique=len(tracks),
            by_class=dict(sorted(Counter(t.class_name for t in tracks.values()).items())),
            peak=peak_of(timeline) if short else self._peak,
            tracks=[track.to_dict() for track in tracks.values()],
            timeline=timeline,
            lines=[_line_summary(counter, id_map, final_class, links) for counter in self._lines],
            zones=[_zone_summary(counter, id_map, final_class) for counter in self._zones],
            frames_processed=len(self._timeline),
            raw_total_unique=len(self._tracks),
            short_tracks=sum(1 for final in stitched.values() if final in short),
            id_map=id_map,
            tracking=self.describe(),
            passes=None if across is None else across.report(id_map),
        )

    def _rows_of(self, raw_ids: list[int]) -> dict[int, Counter[str]]:
        rows: dict[int, Counter[str]] = {}
        for raw_id in raw_ids:
            for row, cls in self._tracks[raw_id].early_rows:
                rows.setdefault(row, Counter())[cls] += 1
        return rows

    def _too_short(self, tracks: dict[int, TrackRecord]) -> set[int]:
        """Stitched ids seen for less than ``min_track_s`` in all (the offline pass only).

        Without frames, a track cut by the video's start or end is never too short: it was
        confirmed within the first frames (so seen from the first one), or still seen in the last
        few, and the video cut it. With frames this is not done: on the counting benchmark it
        counted flickers at the ends (static +1.3, survey +0.8 points at stride 1) and helped
        no scenario, while without frames it fixed under-counts of up to 7 %.
        """
        if not self.config.stitching:
            return set()
        return {
            final for final, track in tracks.items()
            if not self.rule.long_enough(track.frames_seen)
            and (self._given_frames or not self._cut_by_the_video(track))
        }

    def _cut_by_the_video(self, track: TrackRecord) -> bool:
        opening, closing = self._opening_frames, self._closing_frames
        began_with_it = len(opening) == self._confirming and track.first_frame <= opening[-1]
        return began_with_it or (bool(closing) and track.last_frame >= closing[0])

    def describe(self) -> dict[str, Any]:
        """The tracking settings and the camera-motion cost, for stats.json's ``processing``."""
        per_frame = 1000 * self.camera.seconds / max(self.frames_with_motion, 1)
        return {
            "tracker": self.config.tracker.value,
            "stitching": self.config.stitching,
            "camera_motion_frames": self.frames_with_motion,
            "camera_motion_ms_per_frame": round(per_frame, 3),
        }


def _merged_tracks(tracks: dict[int, TrackRecord], id_map: dict[int, int]) -> dict[int, TrackRecord]:
    """One record per stitched id, in order of first appearance; a record is not modified."""
    merged: dict[int, TrackRecord] = {}
    for raw_id in sorted(tracks, key=lambda t: (tracks[t].first_frame, t)):
        record, final = tracks[raw_id], id_map.get(raw_id, raw_id)
        if final not in merged:
            merged[final] = TrackRecord(
                final, record.first_frame, record.first_time_s, record.last_frame, record.last_time_s,
                record.frames_seen, record.confidence_sum, Counter(record.class_votes), record.class_name,
                [raw_id], list(record.early_rows),
            )
        else:
            merged[final].absorb(record)
    return merged


def _links(id_map: dict[int, int], tracks: dict[int, TrackRecord]) -> list[tuple[int, int]]:
    """Consecutive (earlier, later) raw ids within each stitched chain."""
    chains: dict[int, list[int]] = {}
    for raw_id in sorted(id_map, key=lambda t: tracks[t].first_frame):
        chains.setdefault(id_map[raw_id], []).append(raw_id)
    return [(a, b) for chain in chains.values() for a, b in pairwise(chain)]


def _line_summary(
    counter: LineCounter, id_map: dict[int, int | None], final_class: dict[int, str], links: list[tuple[int, int]]
) -> dict[str, Any]:
    by_direction: dict[str, Counter[str]] = {"in": Counter(), "out": Counter()}
    crossings = list(counter.crossings) + counter.crossings_across_gaps(links)
    for track_id, direction in crossings:
        if track_id in final_class:  # not a track dropped as too short
            by_direction[direction][final_class[track_id]] += 1
    return {
        "name": counter.line.name,
        "start": list(counter.line.start),
        "end": list(counter.line.end),
        "in": dict(sorted(by_direction["in"].items())),
        "out": dict(sorted(by_direction["out"].items())),
        "in_total": sum(by_direction["in"].values()),
        "out_total": sum(by_direction["out"].values()),
    }


def _zone_summary(counter: ZoneCounter, id_map: dict[int, int | None], final_class: dict[int, str]) -> dict[str, Any]:
    frames = max(counter.frames, 1)
    visitors = {id_map[t]: final_class[t] for t in counter.visitors if t in final_class}
    return {
        "name": counter.zone.name,
        "polygon": [list(point) for point in counter.zone.polygon],
        "max": dict(sorted(counter.max_by_class.items())),
        "mean": {cls: round(total / frames, 4) for cls, total in sorted(counter.sum_by_class.items())},
        "max_total": counter.max_total,
        "mean_total": round(counter.sum_total / frames, 4),
        "unique": dict(sorted(Counter(visitors.values()).items())),
    }


def _with_class_names(detections: sv.Detections) -> sv.Detections:
    """Ensure ``data["class_name"]``: the detector sets it; hand-built detections may not."""
    if "class_name" in detections.data or len(detections) == 0:
        return detections
    names = [str(c) for c in detections.class_id] if detections.class_id is not None else None
    detections.data["class_name"] = np.array(names or [DEFAULT_CLASS] * len(detections), dtype=str)
    return detections


def empty_tracked() -> sv.Detections:
    """No tracked detections, shaped like ``ObjectCounter.update``'s output."""
    empty = sv.Detections.empty()
    empty.tracker_id = np.array([], dtype=int)
    empty.data["class_name"] = np.array([], dtype=str)
    return empty


def tracker_ids(tracked: sv.Detections) -> np.ndarray:
    """The track ids of tracked detections: the tracker (and ``empty_tracked``) always sets them."""
    ids = tracked.tracker_id
    assert ids is not None, "detections without tracker ids where tracked ones were expected"
    return ids


def _positive(counter: Counter[str]) -> dict[str, int]:
    return {cls: n for cls, n in sorted(counter.items()) if n > 0}
