"""``CountRule``: when a track counts as an animal, for a video and a stream alike.

A track counts once the tracker has *confirmed* it (matched in ``min_hits`` consecutive
processed frames) and it has been seen for ``min_track_s`` in all, the frames that confirmed it
included: a false detection that lasts just long enough to be confirmed is flicker, not an
animal.

A video applies the rule after its last frame, to the stitched tracks (``ObjectCounter.summary``),
where a track the video's start or end may have cut is kept; a stream applies it as the frames
come (``ml_engine.live.tracks``): a track counts on the first frame on which it meets the rule.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CountRule:
    """``fps``: the rate of the frames the counter is fed; ``min_hits`` and ``min_track_s`` as
    in ``CountingConfig``."""

    fps: float
    min_hits: int
    min_track_s: float

    @property
    def confirming(self) -> int:
        """The frames that confirm a track: the trackers confirm on the second match at the earliest."""
        return max(self.min_hits, 2)

    def long_enough(self, frames_seen: int) -> bool:
        """Whether a confirmed track seen in ``frames_seen`` frames since its confirmation was
        seen for ``min_track_s`` in all (it was seen in the frames that confirmed it too)."""
        unconfirmed = self.confirming - 1
        shortest = self.min_track_s - 1e-9  # float noise: 3 frames at 10 fps are 0.3 s
        return not (frames_seen + unconfirmed) / self.fps < shortest
