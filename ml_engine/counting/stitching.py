"""Offline track stitching: re-link a track that ended to one that began later, when they
are one animal.

A live tracker forgets a lost track after its buffer (1 s); an animal hidden under a tree
for longer comes back with a new id and would be counted twice. A job sees the whole video,
so after the last frame it can re-associate: tracklet A (ended) and tracklet B (began
within ``max_gap_s`` after A ended) are one animal when

* they never coexist: B's first frame is after A's last. Two tracks seen in one frame are two
  animals, so a chain of stitched tracklets never holds two of them at once;
* the class agrees (each one's majority class) and so does the size (within ``max_size_ratio``);
* the positions fit the motion, in camera-compensated ("ground") coordinates: B's first
  position lies near A's path extrapolated over the gap (and A's last near B's path traced
  back), within ``gate_sizes`` body sizes plus ``wander_sizes_per_s`` per second of gap;
* they do not head in opposite directions (both walking, velocities more than 90° apart):
  an animal that leaves and another that enters nearby are two animals.

Links are taken best first, one successor and one predecessor per tracklet, "best" being
nearest to where A's motion puts the animal at the moment B begins (a file of animals walks
the same path, only later). Only each track's first and last second of observations are kept
(``TrackEnds``), never per-frame data, so the cost is bounded by the number of tracks, not
the length of the video.
"""

from __future__ import annotations

import bisect
from collections import deque
from dataclasses import dataclass, field

import numpy as np

# Each end of a track keeps its observations over this long (at most END_SAMPLES of them) to
# estimate where it was going: at 30 fps six frames (0.2 s) gave headings that box jitter and
# jostling in a crowd turned around; a second of walking gives a steady one at any stride.
END_WINDOW_S = 1.0
END_SAMPLES = 30


@dataclass
class StitchConfig:
    max_gap_s: float = 8.0
    gate_sizes: float = 1.0
    wander_sizes_per_s: float = 0.5
    max_size_ratio: float = 1.6
    # below this speed (body sizes per second) a direction is noise, not a heading
    heading_min_sizes_per_s: float = 0.3


@dataclass
class TrackEnds:
    """A track's first and last few observations in ground coordinates: (time, x, y, size)."""

    track_id: int
    first_frame: int = -1
    last_frame: int = -1
    class_name: str = ""
    head: list[tuple[float, float, float, float]] = field(default_factory=list)
    tail: deque[tuple[float, float, float, float]] = field(default_factory=lambda: deque(maxlen=END_SAMPLES))

    def observe(self, frame_index: int, time_s: float, x: float, y: float, size: float) -> None:
        if self.first_frame < 0:
            self.first_frame = frame_index
        self.last_frame = frame_index
        sample = (time_s, x, y, size)
        if len(self.head) < END_SAMPLES and (not self.head or time_s - self.head[0][0] <= END_WINDOW_S):
            self.head.append(sample)
        self.tail.append(sample)
        while self.tail[0][0] < time_s - END_WINDOW_S:
            self.tail.popleft()

    @property
    def first_time(self) -> float:
        return self.head[0][0]

    @property
    def last_time(self) -> float:
        return self.tail[-1][0]

    @property
    def size(self) -> float:
        return float(np.median([s[3] for s in (*self.head, *self.tail)]))

    def start(self) -> tuple[np.ndarray, np.ndarray]:
        """Position and velocity (per second) where the track began."""
        return _position_velocity(self.head, at_end=False)

    def end(self) -> tuple[np.ndarray, np.ndarray]:
        """Position and velocity (per second) where the track ended."""
        return _position_velocity(list(self.tail), at_end=True)


def _position_velocity(samples: list[tuple[float, float, float, float]], at_end: bool) -> tuple[np.ndarray, np.ndarray]:
    data = np.asarray(samples, dtype=float)
    times, points = data[:, 0], data[:, 1:3]
    edge = points[-1] if at_end else points[0]
    if len(data) < 2 or times[-1] - times[0] <= 0:
        return edge, np.zeros(2)
    # least-squares line through the samples: steadier than the last step under box jitter
    t = times - times.mean()
    velocity = (t[:, None] * (points - points.mean(axis=0))).sum(axis=0) / (t**2).sum()
    fitted_edge = points.mean(axis=0) + velocity * ((times[-1] if at_end else times[0]) - times.mean())
    return fitted_edge, velocity


def _distance_to_path(point: np.ndarray, origin: np.ndarray, travel: np.ndarray) -> float:
    """Distance from ``point`` to the segment origin -> origin + travel."""
    length2 = float(travel @ travel)
    along = 0.0 if length2 == 0 else float(np.clip((point - origin) @ travel / length2, 0.0, 1.0))
    return float(np.linalg.norm(point - (origin + along * travel)))


def link_cost(before: TrackEnds, after: TrackEnds, config: StitchConfig) -> float | None:
    """How well ``after`` continues ``before`` (0 best; lower is a better fit in time and place);
    None: not one animal."""
    if after.first_frame <= before.last_frame:
        return None  # seen at the same time (or out of order): never one animal
    gap = after.first_time - before.last_time
    if gap > config.max_gap_s or before.class_name != after.class_name:
        return None
    size_a, size_b = before.size, after.size
    if max(size_a, size_b) > config.max_size_ratio * max(min(size_a, size_b), 1e-6):
        return None
    size = (size_a + size_b) / 2
    end_a, vel_a = before.end()
    start_b, vel_b = after.start()
    slow = config.heading_min_sizes_per_s * size
    if np.linalg.norm(vel_a) > slow and np.linalg.norm(vel_b) > slow and float(vel_a @ vel_b) < 0:
        return None  # walking opposite ways: two animals
    allowed = size * (config.gate_sizes + config.wander_sizes_per_s * gap)
    off_path = min(
        _distance_to_path(start_b, end_a, vel_a * gap),  # A carried forward over the gap
        _distance_to_path(end_a, start_b, -vel_b * gap),  # B traced back over it
    )
    if off_path > allowed:
        return None
    # Ranked by where the animal should be *when* B begins, not anywhere along A's path: in a
    # file of animals walking under a tree, the one behind is on the same path, only later.
    # The path gate above still admits an animal that stopped or slowed while hidden.
    off_time = min(
        float(np.linalg.norm(start_b - (end_a + vel_a * gap))),
        float(np.linalg.norm(end_a - (start_b - vel_b * gap))),
    )
    return off_time / allowed


def stitch(tracks: list[TrackEnds], config: StitchConfig) -> dict[int, int]:
    """Raw track id -> stitched id (the id of the chain's first track), for every track."""
    by_start = sorted((t for t in tracks if t.head), key=lambda t: t.first_time)
    starts = [t.first_time for t in by_start]
    links = []
    for before in by_start:
        last = before.last_time
        lo = bisect.bisect_right(starts, last - 1e-9)
        hi = bisect.bisect_right(starts, last + config.max_gap_s)
        for after in by_start[lo:hi]:
            cost = link_cost(before, after, config)
            if cost is not None:
                links.append((cost, before.track_id, after.track_id))
    successor: dict[int, int] = {}
    predecessor: dict[int, int] = {}
    for _, a, b in sorted(links):
        if a not in successor and b not in predecessor:
            successor[a], predecessor[b] = b, a
    stitched = {}
    for track in tracks:
        root = track.track_id
        while root in predecessor:
            root = predecessor[root]
        stitched[track.track_id] = root
    return stitched
