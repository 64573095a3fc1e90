"""Tracking and counting: ByteTrack ids, flicker-proof unique counts, line crossings, zone occupancy.

``ObjectCounter`` wraps one Roboflow ``trackers.ByteTrackTracker`` per video (``supervision``
removed ``sv.ByteTrack`` in 0.31; ``trackers`` is its maintained successor) and turns its
output into counts users can trust:

* a track counts only once it is *confirmed*: matched in ``min_hits`` consecutive processed
  frames, so a detection that flickers for a frame or two never becomes an object;
* a track keeps its id through short gaps (``track_buffer_s``), so an object missed for a few
  frames is not counted twice;
* a track's class is the majority vote over its detections, so one frame labelled "horse" in a
  herd of cows does not create a horse;
* line crossings use the sign of the track's anchor (bottom centre) relative to the line with a
  hysteresis band, so jitter on the line is not a crossing and each real crossing counts once.

Pure numpy + trackers: usable without a model or a video.
"""

from __future__ import annotations

from array import array
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import supervision as sv
from trackers import ByteTrackTracker

from core.errors import InvalidInput
from core.jobs import CountingLine, CountingZone, check_unique_names, with_default_names

# ByteTrack expresses its lost-track buffer in frames of a 30 fps video and rescales it.
_BYTETRACK_REFERENCE_FPS = 30.0
# ByteTrack hands out an id on a track's second consecutive match at the earliest.
_BYTETRACK_MIN_HITS = 2
DEFAULT_CLASS = "object"


@dataclass
class CountingConfig:
    """How tracks are formed and counted.

    ``fps`` is the rate of the frames fed to ``update`` (source fps / frame stride).
    ``min_hits``: consecutive matched frames before a track is confirmed and counted (values
    below 2 act as 2: ByteTrack confirms on the second match at the earliest).
    ``track_buffer_s``: how long a lost track keeps its id waiting to be matched again.
    ``track_threshold``: detections at or above it are matched first and may start tracks;
    weaker ones only extend existing tracks (ByteTrack's second stage).
    ``match_iou``: minimum IoU between a track's predicted box and a detection to match.
    ``line_hysteresis_px``: an anchor within this distance of a line keeps its previous side.
    """

    fps: float
    min_hits: int = 3
    lines: list[CountingLine] = field(default_factory=list)
    zones: list[CountingZone] = field(default_factory=list)
    track_buffer_s: float = 1.0
    track_threshold: float = 0.5
    match_iou: float = 0.1
    line_hysteresis_px: float = 4.0

    def __post_init__(self) -> None:
        if not self.fps or not np.isfinite(self.fps) or self.fps <= 0:
            raise InvalidInput(f"counting needs a positive frame rate, got {self.fps}")
        if self.min_hits < 1:
            raise InvalidInput(f"min_hits must be at least 1, got {self.min_hits}")
        if self.track_buffer_s < 0:
            raise InvalidInput(f"track_buffer_s cannot be negative, got {self.track_buffer_s}")
        if not 0.0 <= self.track_threshold <= 1.0:
            raise InvalidInput(f"track_threshold must be within 0..1, got {self.track_threshold}")
        self.lines = with_default_names(self.lines, "line")
        self.zones = with_default_names(self.zones, "zone")
        check_unique_names("line", [line.name for line in self.lines])
        check_unique_names("zone", [zone.name for zone in self.zones])


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

    def vote(self, cls: str) -> None:
        """Count one detection's label. The track's class is the majority so far; a tie keeps
        the current class, so the label does not flip back and forth on every stray frame."""
        self.class_votes[cls] += 1
        if not self.class_name or self.class_votes[cls] > self.class_votes[self.class_name]:
            self.class_name = cls

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
        }


# --- geometry -------------------------------------------------------------------------------


def anchors(xyxy: np.ndarray) -> np.ndarray:
    """Bottom-centre points (N, 2): where an animal stands, the point that crosses lines."""
    return np.stack([(xyxy[:, 0] + xyxy[:, 2]) / 2.0, xyxy[:, 3]], axis=1)


def points_in_polygon(points: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """Even-odd rule: which of ``points`` (N, 2) lie inside ``polygon`` (M, 2)."""
    if len(points) == 0:
        return np.zeros(0, dtype=bool)
    x, y = points[:, :1], points[:, 1:2]
    x1, y1 = polygon[:, 0], polygon[:, 1]
    x2, y2 = np.roll(x1, -1), np.roll(y1, -1)
    spans = (y1 > y) != (y2 > y)
    safe_dy = np.where(y2 == y1, 1.0, y2 - y1)  # rows where dy == 0 are masked by `spans`
    crossing_x = x1 + (y - y1) * (x2 - x1) / safe_dy
    return (spans & (x < crossing_x)).sum(axis=1) % 2 == 1


class LineCounter:
    """Counts tracks crossing one line, in and out, once per crossing.

    "in" is a crossing from the left of the line to its right, as seen walking from
    ``start`` to ``end`` in image coordinates (y down): for a horizontal line drawn left to
    right, objects moving down the frame count as "in". Anchors within ``hysteresis_px`` of
    the line keep their previous side, so jitter on the line never counts.
    """

    def __init__(self, line: CountingLine, hysteresis_px: float) -> None:
        self.line = line
        self._start = np.asarray(line.start, dtype=float)
        direction = np.asarray(line.end, dtype=float) - self._start
        self._length = float(np.hypot(*direction))
        self._unit = direction / self._length
        self._hysteresis = hysteresis_px
        self._last_side: dict[int, tuple[int, np.ndarray]] = {}  # track id -> (side, anchor)
        self.crossings: list[tuple[int, str]] = []  # (track id, "in" | "out")
        self.totals: Counter[str] = Counter()  # "in"/"out" -> crossings so far

    def update(self, track_ids: np.ndarray, points: np.ndarray) -> list[tuple[int, str]]:
        """Feed this frame's anchors; returns the crossings it completed."""
        events = []
        for track_id, point in zip(track_ids.tolist(), points):
            event = self._update_one(track_id, point)
            if event:
                events.append((track_id, event))
        self.crossings.extend(events)
        self.totals.update(direction for _, direction in events)
        return events

    def _update_one(self, track_id: int, point: np.ndarray) -> str | None:
        distance = self._signed_distance(point)
        if abs(distance) < self._hysteresis:
            return None
        side = 1 if distance > 0 else -1
        previous = self._last_side.get(track_id)
        self._last_side[track_id] = (side, point)
        if previous is None or previous[0] == side:
            return None
        if not self._passes_within_segment(previous[1], point):
            return None  # went round the end of the line
        return "in" if side > 0 else "out"

    def _signed_distance(self, point: np.ndarray) -> float:
        offset = point - self._start
        return float(self._unit[0] * offset[1] - self._unit[1] * offset[0])

    def _passes_within_segment(self, before: np.ndarray, after: np.ndarray) -> bool:
        d0, d1 = self._signed_distance(before), self._signed_distance(after)
        crossing_point = before + (after - before) * (d0 / (d0 - d1))
        along = float(np.dot(crossing_point - self._start, self._unit))
        return -self._hysteresis <= along <= self._length + self._hysteresis


class ZoneCounter:
    """Per-frame occupancy of one polygon, by class: max, mean and the tracks that entered."""

    def __init__(self, zone: CountingZone) -> None:
        self.zone = zone
        self._polygon = np.asarray(zone.polygon, dtype=float)
        self.frames = 0
        self.max_by_class: Counter[str] = Counter()
        self.sum_by_class: Counter[str] = Counter()
        self.max_total = 0
        self.sum_total = 0
        self.visitors: set[int] = set()

    def update(self, track_ids: np.ndarray, points: np.ndarray, classes: list[str]) -> int:
        """Feed this frame's anchors; returns how many are inside."""
        inside = points_in_polygon(points, self._polygon)
        occupancy = Counter(cls for cls, is_in in zip(classes, inside) if is_in)
        self.visitors.update(track_ids[inside].tolist())
        self.frames += 1
        total = int(inside.sum())
        self.max_total = max(self.max_total, total)
        self.sum_total += total
        for cls, n in occupancy.items():
            self.max_by_class[cls] = max(self.max_by_class[cls], n)
            self.sum_by_class[cls] += n
        return total


# --- the timeline, stored compactly -----------------------------------------------------------


class Timeline:
    """Per processed frame: frame index, time, count and count by class.

    Stored in typed arrays (a few bytes a frame) because a long video has many frames; a
    class's column is created when the class first appears, filled with zeros before.
    """

    def __init__(self) -> None:
        self.frames = array("q")
        self.times = array("d")
        self.counts = array("l")
        self.by_class: dict[str, array] = {}

    def append(self, frame_index: int, time_s: float, by_class: Counter[str]) -> None:
        for cls in by_class.keys() - self.by_class.keys():
            self.by_class[cls] = array("l", bytes(len(self.frames) * array("l").itemsize))
        self.frames.append(frame_index)
        self.times.append(time_s)
        self.counts.append(sum(by_class.values()))
        for cls, column in self.by_class.items():
            column.append(by_class.get(cls, 0))

    def __len__(self) -> int:
        return len(self.frames)

    def entries(self) -> Iterator[dict[str, Any]]:
        for row, frame_index in enumerate(self.frames):
            by_class = {cls: column[row] for cls, column in self.by_class.items() if column[row]}
            yield {
                "frame": frame_index,
                "time_s": round(self.times[row], 4),
                "count": self.counts[row],
                "by_class": by_class,
            }


# --- the counter ------------------------------------------------------------------------------


@dataclass
class CountSummary:
    """Everything counted in one video; ``to_dict()`` is the ``counts``-related part of stats."""

    total_unique: int
    by_class: dict[str, int]
    peak: dict[str, Any]
    tracks: list[dict[str, Any]]
    timeline: list[dict[str, Any]]
    lines: list[dict[str, Any]]
    zones: list[dict[str, Any]]
    frames_processed: int

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
        }


class ObjectCounter:
    """Tracks detections frame by frame and counts unique, confirmed objects.

    Feed it every processed frame in order, including frames with no detections (that is how
    lost tracks age). One instance per video.
    """

    def __init__(self, config: CountingConfig) -> None:
        self.config = config
        self._tracker = ByteTrackTracker(
            lost_track_buffer=round(config.track_buffer_s * _BYTETRACK_REFERENCE_FPS),
            frame_rate=float(config.fps),
            track_activation_threshold=config.track_threshold,
            high_conf_det_threshold=config.track_threshold,
            minimum_consecutive_frames=max(config.min_hits, _BYTETRACK_MIN_HITS),
            minimum_iou_threshold=config.match_iou,
        )
        self._tracks: dict[int, TrackRecord] = {}
        self._class_ids: dict[str, int] = {}
        self._unique_by_class: Counter[str] = Counter()  # by each track's current majority class
        self._lines = [LineCounter(line, config.line_hysteresis_px) for line in config.lines]
        self._zones = [ZoneCounter(zone) for zone in config.zones]
        self._timeline = Timeline()
        self._peak: dict[str, Any] = {"count": 0, "frame": None, "time_s": None, "by_class": {}}
        self._in_frame: Counter[str] = Counter()
        self._last_frame = -1

    def update(self, frame_index: int, time_s: float, detections: sv.Detections) -> sv.Detections:
        """Track one processed frame's detections.

        Returns the confirmed tracked detections of this frame: ``tracker_id`` (1-based, stable
        through short gaps) set, and ``class_name``/``class_id`` replaced by the track's
        majority class (the detector's own label stays in ``data["detected_class"]``).
        """
        if frame_index <= self._last_frame:
            raise InvalidInput(f"frames must be fed in order: {frame_index} after {self._last_frame}")
        self._last_frame = frame_index
        tracked = self._tracker.update(_with_class_names(detections))
        confirmed = tracked[tracked.tracker_id != -1] if len(tracked) else empty_tracked()
        confirmed.tracker_id = confirmed.tracker_id + 1  # users count from 1
        classes = self._record(frame_index, time_s, confirmed)
        self._relabel(confirmed, classes)
        self._count(frame_index, time_s, confirmed, classes)
        return confirmed

    def _record(self, frame_index: int, time_s: float, confirmed: sv.Detections) -> list[str]:
        detected = confirmed.data.get("class_name", np.array([], dtype=str))
        confidences = confirmed.confidence if confirmed.confidence is not None else np.ones(len(confirmed))
        class_ids = confirmed.class_id if confirmed.class_id is not None else np.zeros(len(confirmed), int)
        classes = []
        for track_id, cls, cls_id, score in zip(
            confirmed.tracker_id.tolist(), detected, class_ids, confidences
        ):
            self._class_ids.setdefault(str(cls), int(cls_id))
            classes.append(self._observe(int(track_id), str(cls), float(score), frame_index, time_s))
        return classes

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
        self._timeline.append(frame_index, time_s, self._in_frame)
        if len(confirmed) > self._peak["count"]:
            self._peak = {
                "count": len(confirmed),
                "frame": frame_index,
                "time_s": round(time_s, 4),
                "by_class": dict(self._in_frame),
            }
        points = anchors(confirmed.xyxy)
        for line in self._lines:
            line.update(confirmed.tracker_id, points)
        for zone in self._zones:
            zone.update(confirmed.tracker_id, points, classes)

    # --- reading the counts --------------------------------------------------------------------

    def live_counts(self) -> dict[str, Any]:
        """The running counts an overlay shows: unique so far, in this frame, line totals."""
        return {
            "total_unique": len(self._tracks),
            "by_class": _positive(self._unique_by_class),
            "in_frame": sum(self._in_frame.values()),
            "in_frame_by_class": dict(self._in_frame),
            "lines": {
                counter.line.name: {"in": counter.totals["in"], "out": counter.totals["out"]}
                for counter in self._lines
            },
        }

    def summary(self) -> CountSummary:
        """Final counts: per-class totals use each track's final majority class."""
        final_class = {track_id: track.class_name for track_id, track in self._tracks.items()}
        return CountSummary(
            total_unique=len(self._tracks),
            by_class=dict(sorted(Counter(final_class.values()).items())),
            peak=self._peak,
            tracks=[track.to_dict() for track in self._tracks.values()],
            timeline=list(self._timeline.entries()),
            lines=[_line_summary(counter, final_class) for counter in self._lines],
            zones=[_zone_summary(counter, final_class) for counter in self._zones],
            frames_processed=len(self._timeline),
        )


def _line_summary(counter: LineCounter, final_class: dict[int, str]) -> dict[str, Any]:
    by_direction: dict[str, Counter[str]] = {"in": Counter(), "out": Counter()}
    for track_id, direction in counter.crossings:
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


def _zone_summary(counter: ZoneCounter, final_class: dict[int, str]) -> dict[str, Any]:
    frames = max(counter.frames, 1)
    return {
        "name": counter.zone.name,
        "polygon": [list(point) for point in counter.zone.polygon],
        "max": dict(sorted(counter.max_by_class.items())),
        "mean": {cls: round(total / frames, 4) for cls, total in sorted(counter.sum_by_class.items())},
        "max_total": counter.max_total,
        "mean_total": round(counter.sum_total / frames, 4),
        "unique": dict(sorted(Counter(final_class[t] for t in counter.visitors).items())),
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


def _positive(counter: Counter[str]) -> dict[str, int]:
    return {cls: n for cls, n in sorted(counter.items()) if n > 0}
