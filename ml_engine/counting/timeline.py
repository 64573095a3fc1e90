"""The per-frame count timeline, stored compactly."""

from __future__ import annotations

from array import array
from collections import Counter
from collections.abc import Iterator
from typing import Any


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
