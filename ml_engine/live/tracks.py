"""A live stream's tracks: the counter, and track ids that keep rising across gaps and resumes."""

from __future__ import annotations

import numpy as np
import supervision as sv

from ml_engine.counting import CountingConfig, ObjectCounter, TrackEvent, tracker_ids


class LiveTracks:
    """The tracks in view. A gap ends every one (``end_all``): tracking across it would join
    different animals. The counter's own ids restart then, so ids here are shifted by
    ``base`` (the highest id before), and rise over the whole stream."""

    def __init__(self, config: CountingConfig, base: int) -> None:
        self.config = config
        self.counter = ObjectCounter(config)
        self.base = base
        self.highest = base
        self.frame_index = 0  # frames given to this counter

    def update(self, image: np.ndarray, time_s: float, detections: sv.Detections) -> sv.Detections:
        """The frame's tracks, with the stream's ids."""
        self.frame_index += 1
        camera = image if self.counter.uses_frames else None
        tracked = self.counter.update(self.frame_index, time_s, detections, camera)
        tracked.tracker_id = tracker_ids(tracked) + self.base
        return tracked

    def new_tracks(self, tracked: sv.Detections) -> list[str]:
        """The class names of the tracks confirmed in this frame. Ids rise as tracks are
        confirmed: one above the highest seen before is a new animal (several may be confirmed
        in one frame, in any order)."""
        if not len(tracked):
            return []
        classes = tracked.data.get("class_name", np.array([], dtype=str))
        ids = tracker_ids(tracked).tolist()
        new = [str(class_name) for track_id, class_name in zip(ids, classes, strict=True) if track_id > self.highest]
        self.highest = max(self.highest, *ids)
        return new

    def events(self) -> list[TrackEvent]:
        """The frame's line and zone events, and those of the tracks that ended."""
        return self._shifted(self.counter.events + self.counter.forget_ended_tracks())

    def end_all(self) -> list[TrackEvent]:
        """End every track (a gap): their last events; the next tracks get new ids."""
        events = self._shifted(self.counter.forget_ended_tracks(everything=True))
        self.base = self.highest
        self.counter = ObjectCounter(self.config)
        self.frame_index = 0
        return events

    def _shifted(self, events: list[TrackEvent]) -> list[TrackEvent]:
        return [event._replace(track_id=event.track_id + self.base) for event in events]
