"""Decoded frames handed out at the stream's own pace, newest first when the consumer is behind.

A camera's frames do not always arrive as they were taken. FFmpeg reads an HLS stream a whole
segment at a time (one to six seconds of frames decoded in a burst, then nothing until the
next segment is listed), and a busy machine or network bunches RTSP frames too. A mailbox that
keeps only the newest frame turns each burst into one or two frames counted, however fast
inference is.

So each frame waits until it is due, by its timestamps: ``Pacer`` spaces a connection's
frames by their media time on the monotonic clock, and ``PacedMailbox`` holds the frames (and the gaps between
them, in order) until then. A consumer that keeps up gets every frame, evenly spaced; one that
is slower gets the newest due frame and the older due ones are dropped and counted, as before.
Memory stays bounded by bytes: past ``max_bytes`` the oldest waiting frame is released early
(and dropped if the consumer does not take it before the next frame comes).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Generic, TypeVar

# How much faster than they were taken frames come while they are behind (a share of the time
# between two frames): a burst is spread out at 90 % of the camera's spacing, so the delay it
# added shrinks by 10 % of the time streamed, and the frames after a late one are not delayed
# for ever. Small enough that a consumer almost as fast as the camera still gets every frame.
CATCH_UP = 0.1
# A frame due this much later than it arrived comes after a clock that leapt ahead (a broken or
# reset timestamp), not from a burst: it is due at once and the pacing starts over from it.
MAX_WAIT_S = 10.0

FrameT = TypeVar("FrameT")
GapT = TypeVar("GapT")


class Pacer:
    """When each frame of one connection is due, on ``time.monotonic()``'s clock.

    A frame is due when it arrives, or, when the frames before it are still waiting (a burst),
    ``1 - CATCH_UP`` of its media time step after the one before it: frames decoded in one
    burst come out spaced almost as they were taken, and none waits once the stream is back
    in step. No frame waits longer than ``max_delay_s`` (0: frames are due as they arrive).
    """

    def __init__(self, max_delay_s: float = MAX_WAIT_S) -> None:
        self.max_delay_s = min(max_delay_s, MAX_WAIT_S)
        self._last: tuple[float, float] | None = None  # (due_at, media_time_s) of the previous frame

    def due_at(self, arrived: float, media_time_s: float) -> float:
        due = arrived
        if self._last is not None:
            last_due, last_media = self._last
            spaced = last_due + (1.0 - CATCH_UP) * max(0.0, media_time_s - last_media)
            if arrived < spaced <= arrived + MAX_WAIT_S:
                due = min(spaced, arrived + self.max_delay_s)
        self._last = (due, media_time_s)
        return due


@dataclass
class _Waiting(Generic[FrameT]):
    frame: FrameT
    due_at: float
    size: int  # bytes it holds


class PacedMailbox(Generic[FrameT, GapT]):
    """Frames waiting to be due, and gaps, in arrival order. Not thread-safe: the caller locks.

    ``received``: frames put; ``dropped``: frames that were due and not taken before a newer
    one was, or that a gap made stale. Every frame put is delivered, dropped or still waiting.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.received = 0
        self.dropped = 0
        self._items: deque[_Waiting[FrameT] | GapT] = deque()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._items)

    @property
    def bytes_waiting(self) -> int:
        return self._bytes

    def put_frame(self, frame: FrameT, due_at: float, size: int, now: float) -> None:
        self.received += 1
        self._items.append(_Waiting(frame, due_at, size))
        self._bytes += size
        if self._bytes > self.max_bytes:
            self._shed(now)

    def put_gap(self, gap: GapT, now: float) -> None:
        """After a gap the frames from before it that are already due are stale: they are
        dropped. Those still waiting (the rest of a burst) are delivered before the gap."""
        while self._items:
            last = self._items[-1]
            if not isinstance(last, _Waiting) or last.due_at > now:
                break
            self._items.pop()
            self._drop(last)
        self._items.append(gap)

    def take(self, now: float) -> FrameT | GapT | None:
        """The newest frame due by ``now`` (older due ones are dropped), else a gap at the head,
        else None. A gap is never skipped: frames after it wait until it is taken."""
        newest: _Waiting[FrameT] | None = None
        while self._items:
            head = self._items[0]
            if not isinstance(head, _Waiting):
                if newest is None:
                    self._items.popleft()
                    return head
                break
            if head.due_at > now:
                break
            self._items.popleft()
            self._bytes -= head.size
            if newest is not None:
                self.dropped += 1
            newest = head
        return newest.frame if newest is not None else None

    def seconds_until_due(self, now: float) -> float | None:
        """How long until the head frame is due (None: nothing waits, or a gap is next)."""
        head = self._items[0] if self._items else None
        return max(0.0, head.due_at - now) if isinstance(head, _Waiting) else None

    def _shed(self, now: float) -> None:
        """Over ``max_bytes``: the oldest waiting frame is released now, early rather than lost.
        A due frame that a newer due one follows is dropped (``take`` would drop it: the
        consumer is behind), and so on until what is left fits."""
        while self._bytes > self.max_bytes:
            frames = [item for item in self._items if isinstance(item, _Waiting)][:2]
            if len(frames) < 2:
                return  # one frame larger than the limit: it waits as any other
            first, second = frames
            if first.due_at > now:
                first.due_at = now
                return
            if second.due_at > now:
                second.due_at = now
                return
            self._items.remove(first)
            self._drop(first)

    def _drop(self, item: _Waiting[FrameT]) -> None:
        self._bytes -= item.size
        self.dropped += 1
