"""The segments a live stream's playlists list, and the playlists' text (``HlsWriter`` writes them).

* ``index.m3u8`` (``live``) lists only the newest ``live_segments``: a sliding window
  (``EXT-X-MEDIA-SEQUENCE`` moves on), so its size does not grow with the stream's age;
  ``recording.m3u8`` (``whole``) lists every retained segment, and once the stream ended
  (``ended``) both are the whole recording with ``#EXT-X-ENDLIST``.
* A segment after a gap or a resume carries ``#EXT-X-DISCONTINUITY``; each one carries
  ``#EXT-X-PROGRAM-DATE-TIME``, the wall-clock time of its first frame.
* ``retention_s`` keeps only the newest segments worth that many seconds: older ones leave the
  list (``EXT-X-MEDIA-SEQUENCE`` and ``EXT-X-DISCONTINUITY-SEQUENCE`` move on). None keeps every
  segment: the recording.
* ``state()`` is small and JSON-able whatever the run's length: older segments are folded into
  runs of consecutive numbers, listed with their mean length.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from core.errors import InvalidInput
from core.outputs import live_segment

_STATE_SEGMENTS = 512  # segments the state lists one by one; older ones are folded (size bound)
LIVE_SEGMENTS = 60  # segments the live playlist lists: 2 minutes of 2 s segments, for players that fall behind


@dataclass(frozen=True)
class Segment:
    """One finished segment: its number, length, whether the picture jumped before it, and the
    wall-clock time (``time.time()``) of its first frame, when known."""

    sequence: int
    duration_s: float
    discontinuity: bool = False
    started_at: float | None = None

    @property
    def name(self) -> str:
        return live_segment(self.sequence)


@dataclass
class _Folded:
    """Segments too old to list one by one in the state: numbers ``first..first+count-1``, of
    ``seconds`` in all. A new run starts where numbers skip (a resume lost the segment that
    was open): its first segment follows a discontinuity, which the playlist keeps."""

    first: int
    count: int = 0
    seconds: float = 0.0
    discontinuity: bool = False
    started_at: float | None = None  # the first segment's; the others' follow from the durations

    def segments(self) -> Iterator[Segment]:
        mean = self.seconds / self.count if self.count else 0.0
        for offset in range(self.count):
            yield Segment(self.first + offset, mean, self.discontinuity and offset == 0,
                          self.started_at if offset == 0 else None)

    def to_list(self) -> list[Any]:
        return [self.first, self.count, round(self.seconds, 3), int(self.discontinuity), self.started_at]

    def copy(self) -> _Folded:
        return _Folded(self.first, self.count, self.seconds, self.discontinuity, self.started_at)


def _fold(runs: list[_Folded], segment: Segment) -> None:
    """Add ``segment`` to the last run when it continues it, else start a run."""
    last = runs[-1] if runs else None
    if last is None or last.first + last.count != segment.sequence or segment.discontinuity:  # keep every jump
        last = _Folded(segment.sequence, discontinuity=segment.discontinuity, started_at=segment.started_at)
        runs.append(last)
    last.count += 1
    last.seconds += segment.duration_s


class Playlist:
    """The listed segments, oldest first (a resumed long run's older ones ``folded``), their
    numbering, and the playlists' text (see the module's docstring)."""

    def __init__(self, segment_s: float, retention_s: float | None, live_segments: int = LIVE_SEGMENTS) -> None:
        self.segment_s, self.retention_s = segment_s, retention_s
        self.live_segments = max(1, live_segments)
        self.segments: list[Segment] = []  # listed in the playlist, oldest first
        self.folded: list[_Folded] = []  # listed too, before ``segments`` (a resumed long run)
        self.next_sequence = 1
        self.discontinuity_sequence = 0  # discontinuities before the first listed segment
        self._listed_jumps = 0  # discontinuities among the listed segments
        self.ended = False
        self._aged: list[_Folded] | None = None  # the state's folded runs, kept between states (no retention)
        self._aged_count = 0  # leading ``segments`` already folded into ``_aged``

    @property
    def empty(self) -> bool:
        return not (self.segments or self.folded)

    def add(self, segment: Segment) -> list[Segment]:
        """List a finished segment; returns those that retention drops for it, oldest first."""
        self.segments.append(segment)
        self._listed_jumps += segment.discontinuity
        return self.apply_retention()

    def apply_retention(self) -> list[Segment]:
        """Drop the oldest segments past ``retention_s``; returns them, oldest first."""
        if self.retention_s is None:
            return []
        listed = self.listed()
        total = sum(s.duration_s for s in listed)
        dropped = []
        for oldest in listed[:-1]:
            if total - oldest.duration_s < self.retention_s:
                break
            total -= oldest.duration_s
            dropped.append(self._drop_oldest())
        return dropped

    def _drop_oldest(self) -> Segment:
        if self.folded:
            run = self.folded[0]
            segment = next(run.segments())
            run.first, run.count, run.seconds = run.first + 1, run.count - 1, run.seconds - segment.duration_s
            run.discontinuity = False
            if not run.count:
                self.folded.pop(0)
        else:
            segment = self.segments.pop(0)
        if segment.discontinuity:
            self.discontinuity_sequence += 1
            self._listed_jumps -= 1
        return segment

    # --- the playlists' text ---------------------------------------------------------------------

    def listed(self) -> list[Segment]:
        """The segments the playlist names, oldest first."""
        older = [segment for run in self.folded for segment in run.segments()]
        return older + self.segments

    def whole(self) -> str:
        """The whole recording's playlist: every listed segment (``recording.m3u8``, and
        ``index.m3u8`` once the stream ended)."""
        return self._render(self.listed(), self.discontinuity_sequence, whole=True)

    def live(self) -> str:
        """The live playlist: the newest ``live_segments`` only, so its size, and the work of
        writing and serving it, stay the same however long the stream has run."""
        if len(self.segments) >= self.live_segments:
            window = self.segments[-self.live_segments:]
        else:  # a resumed run's first segments: the tail of the folded ones too (once per segment, briefly)
            window = self.listed()[-self.live_segments:]
        jumps_before = self._listed_jumps - sum(s.discontinuity for s in window)
        return self._render(window, self.discontinuity_sequence + jumps_before, whole=False)

    def _render(self, listed: list[Segment], discontinuity_sequence: int, whole: bool) -> str:
        longest = max((s.duration_s for s in listed), default=self.segment_s)
        lines = [
            "#EXTM3U",
            "#EXT-X-VERSION:3",
            f"#EXT-X-TARGETDURATION:{max(1, math.ceil(max(longest, self.segment_s) - 1e-6))}",
            f"#EXT-X-MEDIA-SEQUENCE:{listed[0].sequence if listed else self.next_sequence}",
            f"#EXT-X-DISCONTINUITY-SEQUENCE:{discontinuity_sequence}",
        ]
        if whole and self.retention_s is None:
            lines.append("#EXT-X-PLAYLIST-TYPE:EVENT")  # segments are only ever added
        for segment in listed:
            if segment.discontinuity:
                lines.append("#EXT-X-DISCONTINUITY")
            if segment.started_at is not None:
                lines.append(f"#EXT-X-PROGRAM-DATE-TIME:{_iso(segment.started_at)}")
            lines += [f"#EXTINF:{segment.duration_s:.3f},", Path(segment.name).name]
        if whole and self.ended:
            lines.append("#EXT-X-ENDLIST")
        return "\n".join(lines) + "\n"

    # --- resume ----------------------------------------------------------------------------------

    def state(self, clock_s: float) -> dict[str, Any]:
        """The numbering, the recording's clock (``clock_s``, the writer's) and the listed
        segments, small whatever the run's length."""
        folded, detailed = self._state_segments()
        return {
            "next_sequence": self.next_sequence,
            "discontinuity_sequence": self.discontinuity_sequence,
            "clock_s": round(clock_s, 3),
            "folded": [run.to_list() for run in folded],
            "segments": [[s.sequence, round(s.duration_s, 3), int(s.discontinuity), _rounded(s.started_at)]
                         for s in detailed],
        }

    def _state_segments(self) -> tuple[list[_Folded], list[Segment]]:
        """(folded runs, segments listed one by one) for the state. The state is taken several
        times a second: without retention (segments are only ever added) the folding is kept
        and only extended, so its cost does not grow with the stream's age."""
        if self.retention_s is not None:  # few segments, and the oldest ones leave: fold afresh
            folded = [run.copy() for run in self.folded]
            for segment in self.segments[:-_STATE_SEGMENTS] if len(self.segments) > _STATE_SEGMENTS else []:
                _fold(folded, segment)
            return folded, self.segments[-_STATE_SEGMENTS:]
        if self._aged is None:
            self._aged, self._aged_count = [run.copy() for run in self.folded], 0
        while len(self.segments) - self._aged_count > _STATE_SEGMENTS:
            _fold(self._aged, self.segments[self._aged_count])
            self._aged_count += 1
        return self._aged, self.segments[self._aged_count:]

    def restore(self, state: dict[str, Any]) -> float:
        """Take the numbering and the listed segments from a ``state()``; returns its clock.

        Raises:
            InvalidInput: the state cannot be read.
        """
        try:
            self.next_sequence = int(state["next_sequence"])
            self.discontinuity_sequence = int(state.get("discontinuity_sequence", 0))
            clock_s = float(state.get("clock_s", 0.0))
            self.folded = [_Folded(int(a), int(n), float(t), bool(j), _time(at))
                           for a, n, t, j, at in state.get("folded", [])]
            self.segments = [Segment(int(n), float(d), bool(j), _time(at)) for n, d, j, at in state.get("segments", [])]
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInput(f"the live video's resume state is unreadable: {exc}") from None
        self._listed_jumps = sum(s.discontinuity for s in self.listed())
        return clock_s


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _rounded(at: float | None) -> float | None:
    return None if at is None else round(at, 3)


def _time(at: Any) -> float | None:
    return None if at is None else float(at)
