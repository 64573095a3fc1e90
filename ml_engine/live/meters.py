"""A stream's running figures besides its counts: frames, streaming time, latency, gaps. Each
starts where a resume state left it, so the figures cover the whole stream."""

from __future__ import annotations

import json
import logging
import time
from collections import deque
from pathlib import Path
from typing import Any, Protocol

from ml_engine.live.counts import LatencyHistogram, RecentLatency, iso
from ml_engine.live.frames import Gap, LiveFrame
from ml_engine.live.state import StreamState

log = logging.getLogger(__name__)

CONNECTED_WITHIN_S = 5.0  # a source that decoded a frame this recently is "connected"
RECENT_GAPS = 20  # gaps kept in the state and stats.json (all of them are counted)


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


class UnopenedSource:
    """The source of a run that ends before connecting: it received nothing."""

    frames_received = frames_dropped = reconnects = 0

    def next(self, timeout: float) -> LiveFrame | Gap | None:
        return None

    def close(self) -> None:
        return None


class FrameCounts:
    """Frames received, processed and dropped, and reconnects: the runs before included."""

    def __init__(self, state: StreamState) -> None:
        self._received_before, self._dropped_before = state.frames_received, state.frames_dropped
        self._reconnects_before = state.reconnects
        self.processed = self.processed_before = state.frames_processed
        self._last_received = (-1, time.time())  # (the source's frames_received, when it last changed)

    def received(self, source: FrameSource) -> int:
        return self._received_before + source.frames_received

    def dropped(self, source: FrameSource) -> int:
        return self._dropped_before + source.frames_dropped

    def reconnects(self, source: FrameSource) -> int:
        return self._reconnects_before + source.reconnects

    def connected(self, source: FrameSource, now: float) -> bool:
        """Whether the source decoded a frame within ``CONNECTED_WITHIN_S``."""
        received = source.frames_received
        if received != self._last_received[0]:
            self._last_received = (received, now)
        return received > 0 and now - self._last_received[1] < CONNECTED_WITHIN_S


class StreamingTime:
    """Seconds streamed in all, the runs before a resume included: from the stream's first
    frame on (the time spent connecting to a source that has not delivered yet is not
    streaming, so ``duration_s`` cannot end a dead source as if it had run)."""

    def __init__(self, before_s: float) -> None:
        self.before_s = before_s
        self.since: float | None = None  # when this run's streaming started; None: not yet

    def start(self, at: float) -> None:
        if self.since is None:
            self.since = at

    def seconds(self, now: float | None = None) -> float:
        if self.since is None:
            return self.before_s
        return self.before_s + max(0.0, (now or time.time()) - self.since)


class Latencies:
    """Captured (or received) → counted: the last window's (status), the whole stream's
    (stats.json, in the state) and where the last one was measured from."""

    def __init__(self, window_s: float, state: StreamState) -> None:
        self.recent = RecentLatency(window_s)
        self.histogram = LatencyHistogram(state.latency_histogram)
        self.measured_from: str | None = None  # "capture" | "arrival"; None: no frame counted yet

    def add(self, frame: LiveFrame, counted_at: float) -> float:
        """The frame's latency, recorded: from when the camera took it where the source says,
        else from when it was decoded."""
        if frame.captured_at is not None:
            self.measured_from, start = "capture", frame.captured_at
        else:
            self.measured_from, start = "arrival", frame.received_at
        latency = max(0.0, counted_at - start)
        self.recent.add(counted_at, latency)
        self.histogram.add(latency)
        return latency


class GapLog:
    """Every gap in ``gaps.jsonl``; the total and the newest ``RECENT_GAPS`` for the state and
    stats.json; those not yet in a status."""

    def __init__(self, path: Path, state: StreamState) -> None:
        self.path = path
        self.total = state.gaps_total
        self.recent: deque[dict[str, Any]] = deque(state.recent_gaps, maxlen=RECENT_GAPS)
        self._unreported: list[dict[str, Any]] = []

    def record(self, started_at: float, ended_at: float, reason: str) -> None:
        gap = {"from": iso(started_at), "to": iso(ended_at), "reason": reason}
        log.info("stream gap: %s from %s to %s", reason, gap["from"], gap["to"])
        with self.path.open("a", encoding="utf-8") as out:
            out.write(json.dumps(gap) + "\n")
        self.total += 1
        self.recent.append(gap)
        self._unreported.append(gap)

    def take_unreported(self) -> list[dict[str, Any]]:
        taken, self._unreported = self._unreported, []
        return taken
