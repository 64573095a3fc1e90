"""``WindowClock``: the windows of ``windows.jsonl``, one after the other on the wall clock."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ml_engine.live.counts import Window

MAX_CATCH_UP_WINDOWS = 100  # empty windows written at most after the loop was held up


class WindowClock:
    """Which window the time falls in. There is always an open window (``window``): when it
    ends the next one opens where it ended, numbered on, so windows are contiguous.

    ``lines``, ``zones``: the names each window counts; ``length_s``: a window's length.
    """

    def __init__(self, window: Window, length_s: float, lines: list[str], zones: list[str]) -> None:
        self.window = window
        self.length_s, self.lines, self.zones = length_s, lines, zones

    @classmethod
    def starting(cls, number: int, started_at: float, length_s: float, lines: list[str], zones: list[str],
                 frames_dropped: int) -> WindowClock:
        """A clock whose first window (``number``) opens at ``started_at``."""
        return cls(Window(number, started_at, length_s, lines, zones, frames_dropped), length_s, lines, zones)

    @classmethod
    def continuing(cls, unfinished: dict[str, Any], saved_at: float, now: float, length_s: float,
                   lines: list[str], zones: list[str]) -> WindowClock:
        """A clock that goes on with a window stored unfinished at ``saved_at`` (a hand-back's;
        ``Window.to_state``), so a rolling restart adds no short window: same number, its
        counts so far, ending once it has seen the rest of its length from ``now`` on."""
        return cls(Window.from_state(unfinished, lines, zones, length_s, saved_at, now), length_s, lines, zones)

    def advance(self, now: float, close: Callable[[Window], None], frames_dropped: Callable[[], int]) -> Window:
        """The window ``now`` falls in. Each window that ended before ``now`` is handed to
        ``close`` first, in order (it ended at its ``ends_at``); ``frames_dropped``: the
        source's count as the next window opens."""
        caught_up = 0
        while now >= self.window.ends_at:
            ended_at = self.window.ends_at
            close(self.window)
            caught_up += 1
            # held up for many windows (a detector slower than a window): one jump, not a flood
            opens_at = ended_at if caught_up < MAX_CATCH_UP_WINDOWS else now
            self.window = Window(self.window.number + 1, opens_at, self.length_s, self.lines, self.zones,
                                 frames_dropped())
        return self.window
