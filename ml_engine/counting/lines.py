"""Line crossings: a track's anchor (bottom centre) changing side of a line, with hysteresis."""

from __future__ import annotations

from collections import Counter

import numpy as np

from core.jobs import CountingLine


def anchors(xyxy: np.ndarray) -> np.ndarray:
    """Bottom-centre points (N, 2): where an animal stands, the point that crosses lines."""
    return np.stack([(xyxy[:, 0] + xyxy[:, 2]) / 2.0, xyxy[:, 3]], axis=1)


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
        self._first_side: dict[int, tuple[int, np.ndarray]] = {}  # for crossings across stitched gaps
        self.crossings: list[tuple[int, str]] = []  # (track id, "in" | "out")
        self.totals: Counter[str] = Counter()  # "in"/"out" -> crossings so far

    def update(self, track_ids: np.ndarray, points: np.ndarray) -> list[tuple[int, str]]:
        """Feed this frame's anchors; returns the crossings it completed."""
        events = []
        for track_id, point in zip(track_ids.tolist(), points, strict=True):
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
        self._first_side.setdefault(track_id, (side, point))
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

    def crossings_across_gaps(self, links: list[tuple[int, int]]) -> list[tuple[int, str]]:
        """Crossings made while a track was lost, for stitched (earlier, later) track pairs:
        the earlier one's last side against the later one's first side."""
        events = []
        for before, after in links:
            last, first = self._last_side.get(before), self._first_side.get(after)
            if last is None or first is None or last[0] == first[0]:
                continue
            if self._passes_within_segment(last[1], first[1]):
                events.append((before, "in" if first[0] > 0 else "out"))
        return events

    def forget(self, track_ids: set[int]) -> None:
        """Drop what is kept about ended tracks (streams: memory stays flat over hours).
        Their crossings stay in ``totals``; ``crossings`` and the stitching sides lose them."""
        for track_id in track_ids:
            self._last_side.pop(track_id, None)
            self._first_side.pop(track_id, None)
        self.crossings = [crossing for crossing in self.crossings if crossing[0] not in track_ids]
