"""A live stream's tracks: the counter, the tracks that count, and track ids that keep rising
across gaps and resumes."""

from __future__ import annotations

import numpy as np
import supervision as sv

from ml_engine.counting import CountingConfig, ObjectCounter, TrackEvent, tracker_ids


class LiveTracks:
    """The tracks in view. A gap ends every one (``end_all``): tracking across it would join
    different animals. The counter's own ids restart then, so ids here are shifted by
    ``base`` (the highest id before), and rise over the whole stream.

    A track counts by the counter's own rule (``ObjectCounter.rule``, a ``CountRule``), as a
    video's tracks do: on the first frame on which it meets it.
    """

    def __init__(self, config: CountingConfig, base: int) -> None:
        self.config = config
        self.counter = ObjectCounter(config)
        self.base = base
        self.highest = base
        self.frame_index = 0  # frames given to this counter
        self._counted: set[int] = set()  # the counter's ids of the tracks alive that counted already

    def update(self, image: np.ndarray, time_s: float, detections: sv.Detections) -> sv.Detections:
        """The frame's tracks, with the stream's ids."""
        self.frame_index += 1
        camera = image if self.counter.uses_frames else None
        tracked = self.counter.update(self.frame_index, time_s, detections, camera)
        tracked.tracker_id = tracker_ids(tracked) + self.base
        return tracked

    def new_tracks(self, tracked: sv.Detections) -> dict[int, str]:
        """The tracks that count from this frame on: stream id → the class each has now."""
        ids = (tracker_ids(tracked) - self.base).tolist()
        if ids:
            self.highest = max(self.highest, self.base + max(ids))
        new: dict[int, str] = {}
        for track_id in ids:
            if track_id in self._counted:
                continue
            record = self.counter.track(track_id)
            if record is not None and self.counter.rule.long_enough(record.frames_seen):
                self._counted.add(track_id)
                new[self.base + track_id] = record.class_name
        return new

    def events(self) -> list[TrackEvent]:
        """The frame's line and zone events, and those of the tracks that ended."""
        events = self._shifted(self.counter.events + self.counter.forget_ended_tracks())
        self._counted = {track_id for track_id in self._counted if self.counter.track(track_id) is not None}
        return events

    def end_all(self) -> list[TrackEvent]:
        """End every track (a gap): their last events; the next tracks get new ids."""
        events = self._shifted(self.counter.forget_ended_tracks(everything=True))
        self.base = self.highest
        self.counter = ObjectCounter(self.config)
        self.frame_index = 0
        self._counted = set()
        return events

    def _shifted(self, events: list[TrackEvent]) -> list[TrackEvent]:
        return [event._replace(track_id=event.track_id + self.base) for event in events]
