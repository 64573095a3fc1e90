"""The per-frame count timeline, stored compactly."""

from __future__ import annotations

from array import array
from collections import Counter
from collections.abc import Iterator, Mapping
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

    def entries(self, minus: Mapping[int, Counter[str]] | None = None) -> Iterator[dict[str, Any]]:
        """Each row as a dict; ``minus`` (row -> class counts) takes out tracks the offline
        pass dropped, so the timeline agrees with the exports."""
        minus = minus or {}
        for row, frame_index in enumerate(self.frames):
            removed = minus.get(row, Counter())
            counts = {cls: column[row] - removed[cls] for cls, column in self.by_class.items()}
            yield {
                "frame": frame_index,
                "time_s": round(self.times[row], 4),
                "count": self.counts[row] - sum(removed.values()),
                "by_class": {cls: n for cls, n in counts.items() if n},
            }


def peak_of(entries: list[dict[str, Any]]) -> dict[str, Any]:
    """The first row with the most tracks in one frame."""
    best = max(entries, key=lambda entry: entry["count"], default=None)
    if best is None or best["count"] == 0:
        return {"count": 0, "frame": None, "time_s": None, "by_class": {}}
    return {"count": best["count"], "frame": best["frame"], "time_s": best["time_s"], "by_class": best["by_class"]}
