"""What a ``StreamRun`` tells its caller, and asks it: the ``StreamSink``.

The worker's ``StreamSession`` is the sink of a stream job; the CLI's and tests' sinks start
from ``QuietSink``. The run calls every method on its own thread only (the source's decode
thread reads a flag the run sets, so a slow ``should_stop`` never stalls the camera's reads). A
method that raises stops the run with its error.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ml_engine.live.state import StreamState


@dataclass
class LiveStatus:
    """What ``GET /jobs/{id}`` and Prometheus show of a running stream.

    ``counts``: the running totals (``Totals.to_dict``). ``latency_*``: captured (or received,
    ``latency_from``) → counted over the last ``window_s``; ``latencies_s``: every sample since
    the previous status. ``gaps``:
    gaps recorded since the previous status. Frame counters and ``streaming_s`` include the
    runs before a resume.
    """

    counts: dict[str, Any]
    frames_received: int
    frames_processed: int
    frames_dropped: int
    latency_p50_s: float | None
    latency_p95_s: float | None
    latencies_s: list[float]
    gaps: list[dict[str, Any]]
    reconnects: int
    streaming_s: float
    connected: bool
    latency_from: str | None = None  # "capture" | "arrival" (the last frame counted); None: none yet


@dataclass
class CountEvent:
    """One line crossing, zone entry or zone exit, as it happens (for event webhooks)."""

    kind: str  # "line_crossing" | "zone_entry" | "zone_exit"
    name: str  # the line's or zone's name
    direction: str | None  # "in" | "out" for a line crossing
    class_name: str
    track_id: int
    at: str  # ISO 8601 UTC


class StreamSink(Protocol):
    """Where a run's results go, and who says when it ends."""

    def should_stop(self) -> bool:
        """End the stream: the outputs are made final."""
        ...

    def should_hand_back(self) -> bool:
        """Stop without ending the stream (the worker goes away; it resumes elsewhere)."""
        ...

    def on_status(self, status: LiveStatus) -> None:
        """Every ``status_interval_s``, and as the run ends."""
        ...

    def on_window(self, record: dict[str, Any], state: StreamState) -> None:
        """A window closed: its ``windows.jsonl`` record, and the state to store (after
        ``on_files`` has reported the files it names)."""
        ...

    def on_files(self, changed: dict[str, Path], removed: list[str]) -> None:
        """Outputs written ({output name: local path}) and retired (names)."""
        ...

    def on_event(self, event: CountEvent) -> None:
        """A line crossing or a zone entry or exit, as it happens."""
        ...

    def store_state(self, state: StreamState) -> None:
        """A state to store outside a window's close (each replaces the one before)."""
        ...


class QuietSink:
    """A sink that ignores everything and never stops the run: a base to override from."""

    def should_stop(self) -> bool:
        return False

    def should_hand_back(self) -> bool:
        return False

    def on_status(self, status: LiveStatus) -> None:
        return None

    def on_window(self, record: dict[str, Any], state: StreamState) -> None:
        return None

    def on_files(self, changed: dict[str, Path], removed: list[str]) -> None:
        return None

    def on_event(self, event: CountEvent) -> None:
        return None

    def store_state(self, state: StreamState) -> None:
        return None
