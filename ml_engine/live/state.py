"""How a stream resumes: the state one run hands over and the next run continues from.

A stream job outlives its workers (a hand-back on shutdown, a crash, a retry). Every run hands
its caller a ``StreamState`` to store (``StreamSink.on_window`` as each window closes,
``StreamSink.store_state`` as the run starts, when its reserved segment numbers run low, and on
a hand-back); the next run is given the newest one stored and continues:

- the totals (``totals``), the frame counters, the streaming time and the latency histogram
  go on from where they were; the time away is recorded as a gap (reason ``resumed``);
- windows: numbering goes on from ``next_window``; a hand-back's unfinished window
  (``open_window``) goes on with its counts so far instead of a short window being written.
  The service keeps only the windows of ``windows.jsonl`` the state knows of
  (``drop_unknown_windows``): the resumed run writes the others again;
- track ids go on rising from ``track_id_base`` (every track ends at a resume, so an animal in
  view on both sides counts again, as at any gap);
- the annotated video's segments go on numbered past ``segments_reserved_to``: segments are
  served immutable, so a resumed run must never reuse the number of one that the run before
  may have uploaded after storing its state (``SegmentReservation``);
- a stream that delivered frames before (``has_worked``) treats a camera down now as an
  outage to wait out, not as a bad URL.

The state is JSON of a few KB whatever the stream's length. ``STATE_VERSION`` is the layout; a
state of another version is refused with a clear error (the job fails instead of counting from
a state it misreads). Keys missing from a state take their starting values.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.errors import InvalidInput
from ml_engine.live.counts import iso

STATE_VERSION = 1
SPARE_SEGMENT_NUMBERS = 8  # a new state is stored this many numbers before the reserved ones run out


@dataclass(frozen=True)
class StreamState:
    """What a later run needs to continue a stream (see the module's docstring).

    ``window``: the last window written; ``next_window``: the number the next run writes (or
    continues, with ``open_window``: ``Window.to_state``). ``totals``: ``Totals.to_dict``;
    ``segments``: ``HlsWriter.state``; ``latency_histogram``: ``LatencyHistogram.to_dict``.
    ``saved_at_s``: when it was made (``time.time()``).
    """

    saved_at_s: float | None = None
    totals: dict[str, Any] = field(default_factory=dict)
    window: int = 0
    next_window: int = 1
    open_window: dict[str, Any] | None = None
    segments: dict[str, Any] | None = None
    segments_reserved_to: int | None = None
    streaming_s: float = 0.0
    gaps_total: int = 0
    recent_gaps: list[dict[str, Any]] = field(default_factory=list)
    frames_received: int = 0
    frames_processed: int = 0
    frames_dropped: int = 0
    reconnects: int = 0
    track_id_base: int = 0
    latency_histogram: dict[str, int] = field(default_factory=dict)

    @property
    def has_worked(self) -> bool:
        """The stream delivered frames before (a run that handed back before its first frame
        leaves a state that says neither)."""
        return self.streaming_s > 0 or self.frames_received > 0

    def segments_to_continue(self) -> dict[str, Any] | None:
        """The segments' state, numbered on past what the run that stored it may have uploaded."""
        if not self.segments or self.segments_reserved_to is None:
            return self.segments
        return {**self.segments, "next_sequence": max(int(self.segments["next_sequence"]), self.segments_reserved_to)}

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "saved_at": iso(self.saved_at_s) if self.saved_at_s is not None else None,
            "saved_at_s": self.saved_at_s,
            "totals": self.totals,
            "window": self.window,
            "next_window": self.next_window,
            "open_window": self.open_window,
            "segments": self.segments,
            "segments_reserved_to": self.segments_reserved_to,
            "streaming_s": self.streaming_s,
            "gaps_total": self.gaps_total,
            "recent_gaps": self.recent_gaps,
            "frames_received": self.frames_received,
            "frames_processed": self.frames_processed,
            "frames_dropped": self.frames_dropped,
            "reconnects": self.reconnects,
            "track_id_base": self.track_id_base,
            "latency_histogram": self.latency_histogram,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_json(cls, text: str | bytes) -> StreamState | None:
        """A stored state; None for an empty one (nothing to resume).

        Raises:
            InvalidInput: not JSON, another version, or a value of the wrong kind.
        """
        try:
            data = json.loads(text)
        except (ValueError, UnicodeDecodeError) as exc:
            raise InvalidInput(f"this stream's resume state is not JSON: {exc}") from None
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: object) -> StreamState | None:
        """A state as ``to_dict`` made it; None for an empty one. Missing keys take their
        starting values.

        Raises:
            InvalidInput: another version, or a value of the wrong kind.
        """
        if data is None or data == {}:
            return None
        if not isinstance(data, dict):
            raise InvalidInput(f"this stream's resume state must be a JSON object, got {type(data).__name__}")
        if data.get("version") != STATE_VERSION:
            raise InvalidInput(f"this stream's resume state has version {data.get('version')!r}, "
                               f"this worker reads version {STATE_VERSION}")
        read = _Reader(data)
        return cls(
            saved_at_s=read.number("saved_at_s"),
            totals=read.mapping("totals") or {},
            window=read.integer("window", 0),
            next_window=read.integer("next_window", 1),
            open_window=read.mapping("open_window"),
            segments=read.mapping("segments"),
            segments_reserved_to=read.optional_integer("segments_reserved_to"),
            streaming_s=read.number("streaming_s") or 0.0,
            gaps_total=read.integer("gaps_total", 0),
            recent_gaps=read.sequence("recent_gaps"),
            frames_received=read.integer("frames_received", 0),
            frames_processed=read.integer("frames_processed", 0),
            frames_dropped=read.integer("frames_dropped", 0),
            reconnects=read.integer("reconnects", 0),
            track_id_base=read.integer("track_id_base", 0),
            latency_histogram=read.mapping("latency_histogram") or {},
        )


class _Reader:
    """A stored state's values, each checked for its kind (a clear error names the key)."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data

    def _wrong(self, key: str, kind: str) -> InvalidInput:
        return InvalidInput(f"this stream's resume state is damaged: {key} must be {kind}, got {self.data[key]!r}")

    def optional_integer(self, key: str) -> int | None:
        value = self.data.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise self._wrong(key, "an integer")
        try:
            return int(value)
        except ValueError:
            raise self._wrong(key, "an integer") from None

    def integer(self, key: str, default: int) -> int:
        value = self.optional_integer(key)
        return default if value is None else value

    def number(self, key: str) -> float | None:
        value = self.data.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self._wrong(key, "a number")
        if not math.isfinite(value):
            raise self._wrong(key, "a finite number")
        return float(value)

    def mapping(self, key: str) -> dict[str, Any] | None:
        value = self.data.get(key)
        if value is not None and not isinstance(value, dict):
            raise self._wrong(key, "an object")
        return value

    def sequence(self, key: str) -> list[Any]:
        value = self.data.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            raise self._wrong(key, "a list")
        return value


class SegmentReservation:
    """The segment numbers the last state handed out reserves: a resumed run numbers its
    segments past them, and a new state is handed out (with the unfinished window in it)
    before the segments closed since the last one use them up."""

    def __init__(self, window_s: float, segment_s: float) -> None:
        # two windows' worth: a state is handed out at least once a window
        self.ahead = 2 * math.ceil(window_s / segment_s) + 2 * SPARE_SEGMENT_NUMBERS
        self.reserved_to = 0  # numbers below this are covered by the last state handed out

    def reserve(self, next_sequence: int) -> int:
        """The numbers a state handed out now reserves (up to, not including, the result)."""
        self.reserved_to = next_sequence + self.ahead
        return self.reserved_to

    def running_low(self, next_sequence: int) -> bool:
        return bool(self.reserved_to) and next_sequence + SPARE_SEGMENT_NUMBERS >= self.reserved_to


def drop_unknown_windows(path: Path, state: StreamState) -> None:
    """Keep the windows of ``windows.jsonl`` at ``path`` that ``state`` knows of: a worker that
    died after uploading windows.jsonl but before storing the state would otherwise leave a
    window the resumed run writes again."""
    kept = path.with_suffix(".kept")
    with path.open("rb") as lines, kept.open("wb") as out:
        for line in lines:
            try:
                number = int(json.loads(line)["window"])
            except (ValueError, KeyError, TypeError):
                continue  # a torn last line: the resumed run writes its window again
            if number < state.next_window:
                out.write(line if line.endswith(b"\n") else line + b"\n")
    kept.replace(path)
