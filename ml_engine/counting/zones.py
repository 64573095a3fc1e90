"""Zone occupancy: which anchors lie inside a polygon, per frame, by class."""

from __future__ import annotations

from collections import Counter

import numpy as np

from core.jobs import CountingZone


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


class ZoneCounter:
    """Per-frame occupancy of one polygon, by class: max, mean and the tracks that entered.

    Also entries and exits, for live streams: a track enters when its anchor is first seen
    inside (coming in, or appearing there), and exits when it is seen outside again or when it
    ends inside (``forget``), so ``entries - exits`` is always the tracks inside.
    """

    def __init__(self, zone: CountingZone) -> None:
        self.zone = zone
        self._polygon = np.asarray(zone.polygon, dtype=float)
        self.frames = 0
        self.max_by_class: Counter[str] = Counter()
        self.sum_by_class: Counter[str] = Counter()
        self.max_total = 0
        self.sum_total = 0
        self.visitors: set[int] = set()
        self.occupancy = 0  # inside in the last frame
        self.inside: set[int] = set()  # tracks whose anchor was inside when last seen
        self.entered: list[int] = []  # tracks that entered in the last frame
        self.exited: list[int] = []  # tracks that were seen leaving in the last frame

    def update(self, track_ids: np.ndarray, points: np.ndarray, classes: list[str]) -> int:
        """Feed this frame's anchors; returns how many are inside."""
        inside = points_in_polygon(points, self._polygon)
        occupancy = Counter(cls for cls, is_in in zip(classes, inside, strict=True) if is_in)
        self.visitors.update(track_ids[inside].tolist())
        self._follow(track_ids[inside].tolist(), track_ids[~inside].tolist())
        self.frames += 1
        total = int(inside.sum())
        self.occupancy = total
        self.max_total = max(self.max_total, total)
        self.sum_total += total
        for cls, n in occupancy.items():
            self.max_by_class[cls] = max(self.max_by_class[cls], n)
            self.sum_by_class[cls] += n
        return total

    def _follow(self, now_inside: list[int], now_outside: list[int]) -> None:
        self.entered = [t for t in now_inside if t not in self.inside]
        self.exited = [t for t in now_outside if t in self.inside]
        self.inside.update(self.entered)
        self.inside.difference_update(self.exited)

    def forget(self, track_ids: set[int]) -> list[int]:
        """Drop ended tracks (streams keep memory flat); returns those that ended inside: exits."""
        ended_inside = sorted(self.inside & track_ids)
        self.inside -= track_ids
        self.visitors -= track_ids
        return ended_inside
