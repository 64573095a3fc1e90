"""A live stream's counts: running totals, per-window counts and latency, all of bounded size.

A stream runs for days, so nothing here keeps a per-frame or per-track history: the totals
are counters, a window holds its own frame's latencies only until it closes, and the
all-run latency is a fixed log-scale histogram.
"""

from __future__ import annotations

import math
from collections import Counter, deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from ml_engine.counting import TrackEvent


def iso(at: float) -> str:
    """A wall-clock time (``time.time()``) as ISO 8601 UTC with milliseconds, ``Z``-suffixed."""
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def percentile(samples: list[float] | np.ndarray, q: float) -> float | None:
    """The ``q``-th percentile (0..100) of ``samples``, rounded to the millisecond; None if empty."""
    if len(samples) == 0:
        return None
    return round(float(np.percentile(np.asarray(samples, dtype=float), q)), 4)


def _new_line() -> dict[str, Any]:
    return {"in": 0, "out": 0, "by_class": {"in": Counter(), "out": Counter()}}


def _new_zone() -> dict[str, int]:
    return {"occupancy": 0, "entries": 0, "exits": 0}


@dataclass
class Totals:
    """The running totals since the stream started, resumes included (``LiveStatus.counts``).

    ``total_unique`` counts tracks when they first meet the counting rule (``CountRule``), by their
    class then; a gap ends every track, so an animal in view across a gap counts again (see
    docs/architecture.md).
    """

    line_names: list[str]
    zone_names: list[str]
    total_unique: int = 0
    by_class: Counter[str] = field(default_factory=Counter)
    lines: dict[str, dict[str, Any]] = field(default_factory=dict)
    zones: dict[str, dict[str, int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in self.line_names:
            self.lines.setdefault(name, _new_line())
        for name in self.zone_names:
            self.zones.setdefault(name, _new_zone())

    def add_track(self, class_name: str) -> None:
        self.total_unique += 1
        self.by_class[class_name] += 1

    def add_event(self, event: TrackEvent) -> None:
        if event.kind == "line_crossing" and event.name in self.lines and event.direction in ("in", "out"):
            line = self.lines[event.name]
            line[event.direction] += 1
            line["by_class"][event.direction][event.class_name] += 1
        elif event.kind == "zone_entry" and event.name in self.zones:
            self.zones[event.name]["entries"] += 1
        elif event.kind == "zone_exit" and event.name in self.zones:
            self.zones[event.name]["exits"] += 1

    def set_occupancy(self, occupancy: dict[str, int]) -> None:
        for name, zone in self.zones.items():
            zone["occupancy"] = occupancy.get(name, 0)

    def to_dict(self) -> dict[str, Any]:
        return {
            "total_unique": self.total_unique,
            "by_class": dict(sorted(self.by_class.items())),
            "lines": {
                name: {
                    "in": line["in"],
                    "out": line["out"],
                    "by_class": {d: dict(sorted(line["by_class"][d].items())) for d in ("in", "out")},
                }
                for name, line in self.lines.items()
            },
            "zones": {name: dict(zone) for name, zone in self.zones.items()},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], line_names: list[str], zone_names: list[str]) -> Totals:
        """Totals from a resume state. A line or zone the state does not know starts at zero;
        occupancy starts at zero (tracks start fresh on a resume)."""
        totals = cls(line_names, zone_names, int(data.get("total_unique", 0)), Counter(data.get("by_class", {})))
        for name, line in data.get("lines", {}).items():
            if name in totals.lines:
                by_class = line.get("by_class", {})
                totals.lines[name] = {
                    "in": int(line.get("in", 0)),
                    "out": int(line.get("out", 0)),
                    "by_class": {d: Counter(by_class.get(d, {})) for d in ("in", "out")},
                }
        for name, zone in data.get("zones", {}).items():
            if name in totals.zones:
                totals.zones[name].update(entries=int(zone.get("entries", 0)), exits=int(zone.get("exits", 0)))
        return totals


@dataclass
class _ZoneWindow:
    entries: int = 0
    exits: int = 0
    max_occupancy: int = 0
    occupancy_sum: int = 0


class Window:
    """One time window's counts, as ``windows.jsonl`` records them (counts IN the window)."""

    def __init__(self, number: int, started_at: float, length_s: float, lines: list[str], zones: list[str],
                 frames_dropped_before: int) -> None:
        self.number, self.started_at, self.ends_at = number, started_at, started_at + length_s
        self.unique = 0
        self.by_class: Counter[str] = Counter()
        self.lines = {name: {"in": 0, "out": 0} for name in lines}
        self.zones = {name: _ZoneWindow() for name in zones}
        self.frames_processed = 0
        self.frames_dropped_before = frames_dropped_before
        self.latencies: list[float] = []  # bounded by the frames one window holds
        self.gaps = 0

    def add_track(self, class_name: str) -> None:
        self.unique += 1
        self.by_class[class_name] += 1

    def add_event(self, event: TrackEvent) -> None:
        if event.kind == "line_crossing" and event.name in self.lines and event.direction in ("in", "out"):
            self.lines[event.name][event.direction] += 1
        elif event.kind == "zone_entry" and event.name in self.zones:
            self.zones[event.name].entries += 1
        elif event.kind == "zone_exit" and event.name in self.zones:
            self.zones[event.name].exits += 1

    def add_frame(self, latency_s: float, occupancy: dict[str, int]) -> None:
        self.frames_processed += 1
        self.latencies.append(latency_s)
        for name, zone in self.zones.items():
            inside = occupancy.get(name, 0)
            zone.max_occupancy = max(zone.max_occupancy, inside)
            zone.occupancy_sum += inside

    def to_state(self) -> dict[str, Any]:
        """The window so far, for a resume state (its latencies are left out: they are many)."""
        return {
            "number": self.number, "started_at": round(self.started_at, 3),
            "length_s": round(self.ends_at - self.started_at, 3),
            "unique": self.unique, "by_class": dict(self.by_class), "lines": self.lines,
            "zones": {name: [z.entries, z.exits, z.max_occupancy, z.occupancy_sum] for name, z in self.zones.items()},
            "frames_processed": self.frames_processed, "frames_dropped_before": self.frames_dropped_before,
            "gaps": self.gaps,
        }

    @classmethod
    def from_state(cls, data: dict[str, Any], lines: list[str], zones: list[str], length_s: float,
                   saved_at: float, now: float) -> Window:
        """A window stored unfinished at ``saved_at``, going on at ``now``: it ends when it has
        seen the rest of its length (the time in between is not counted towards it)."""
        window = cls(int(data["number"]), float(data["started_at"]), length_s, lines, zones,
                     int(data.get("frames_dropped_before", 0)))
        seen_s = max(0.0, saved_at - window.started_at)
        window.ends_at = now + max(0.0, length_s - seen_s)
        window.unique = int(data.get("unique", 0))
        window.by_class = Counter(data.get("by_class", {}))
        for name, counts in data.get("lines", {}).items():
            if name in window.lines:
                window.lines[name] = {"in": int(counts.get("in", 0)), "out": int(counts.get("out", 0))}
        for name, values in data.get("zones", {}).items():
            if name in window.zones:
                window.zones[name] = _ZoneWindow(*(int(v) for v in values))
        window.frames_processed = int(data.get("frames_processed", 0))
        window.gaps = int(data.get("gaps", 0))
        return window

    def record(self, ended_at: float, frames_dropped_now: int) -> dict[str, Any]:
        frames = max(self.frames_processed, 1)
        return {
            "window": self.number,
            "from": iso(self.started_at),
            "to": iso(ended_at),
            "unique": self.unique,
            "by_class": dict(sorted(self.by_class.items())),
            "lines": {name: dict(counts) for name, counts in self.lines.items()},
            "zones": {
                name: {
                    "entries": zone.entries,
                    "exits": zone.exits,
                    "max_occupancy": zone.max_occupancy,
                    "mean_occupancy": round(zone.occupancy_sum / frames, 4),
                }
                for name, zone in self.zones.items()
            },
            "frames_processed": self.frames_processed,
            "frames_dropped": max(0, frames_dropped_now - self.frames_dropped_before),
            "latency_p50_s": percentile(self.latencies, 50),
            "latency_p95_s": percentile(self.latencies, 95),
            "gaps": self.gaps,
        }


class RecentLatency:
    """Latencies of the last ``span_s`` seconds (the status's p50/p95), and those not yet
    reported (the Prometheus histogram's samples)."""

    def __init__(self, span_s: float) -> None:
        self.span_s = span_s
        self._recent: deque[tuple[float, float]] = deque()  # (counted at, latency)
        self._unreported: list[float] = []

    def add(self, counted_at: float, latency_s: float) -> None:
        self._recent.append((counted_at, latency_s))
        self._unreported.append(latency_s)
        self._expire(counted_at)

    def percentiles(self, now: float) -> tuple[float | None, float | None]:
        self._expire(now)
        samples = [latency for _, latency in self._recent]
        return percentile(samples, 50), percentile(samples, 95)

    def take_unreported(self) -> list[float]:
        taken, self._unreported = self._unreported, []
        return taken

    def _expire(self, now: float) -> None:
        while self._recent and self._recent[0][0] < now - self.span_s:
            self._recent.popleft()


class LatencyHistogram:
    """All latencies of a stream in fixed log-scale buckets (1 ms to ~17 min, 5% wide): the
    whole run's percentiles in constant memory, and small enough for the resume state."""

    GROWTH = 1.05
    FIRST_S = 0.001

    def __init__(self, buckets: dict[str, int] | None = None) -> None:
        self.buckets: Counter[int] = Counter({int(k): int(v) for k, v in (buckets or {}).items()})

    def add(self, latency_s: float) -> None:
        self.buckets[self._bucket(latency_s)] += 1

    def _bucket(self, latency_s: float) -> int:
        if latency_s <= self.FIRST_S:
            return 0
        return min(400, 1 + int(math.log(latency_s / self.FIRST_S, self.GROWTH)))

    def _upper_s(self, bucket: int) -> float:
        return self.FIRST_S * self.GROWTH**bucket

    def percentile(self, q: float) -> float | None:
        """The bucket's upper edge where ``q`` % of the samples are at or below (at most 5% high)."""
        total = sum(self.buckets.values())
        if not total:
            return None
        wanted, seen = q / 100 * total, 0
        for bucket in sorted(self.buckets):
            seen += self.buckets[bucket]
            if seen >= wanted:
                return round(self._upper_s(bucket), 4)
        return round(self._upper_s(max(self.buckets)), 4)

    def to_dict(self) -> dict[str, int]:
        return {str(k): v for k, v in sorted(self.buckets.items())}
