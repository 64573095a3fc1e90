"""Tracking and counting, usable on its own (no model, no video): ``ObjectCounter``.

tracker.py (the live tracker and camera motion), lines.py, zones.py, timeline.py,
stitching.py (offline re-linking of broken tracks), rule.py (when a track counts, for videos and
streams alike: ``CountRule``), counter.py (``ObjectCounter``).
``CountingLine`` and ``CountingZone`` are the job model's (``core.jobs``, which the API
validates requests with), re-exported so that a notebook needs only this package.
"""

from core.jobs import CountingLine, CountingZone, Tracker
from ml_engine.counting.counter import (
    DEFAULT_CLASS,
    CountingConfig,
    CountSummary,
    ObjectCounter,
    TrackEvent,
    TrackRecord,
    empty_tracked,
    tracker_ids,
)
from ml_engine.counting.lines import LineCounter, anchors
from ml_engine.counting.stitching import StitchConfig, TrackEnds, stitch
from ml_engine.counting.timeline import Timeline
from ml_engine.counting.tracker import (
    CMC_WIDTH,
    DEFAULT_TRACKER,
    TRACKERS,
    CameraFrame,
    CameraMotion,
    camera_frame,
)
from ml_engine.counting.zones import ZoneCounter, points_in_polygon

__all__ = [
    "CMC_WIDTH", "DEFAULT_CLASS", "DEFAULT_TRACKER", "TRACKERS", "CameraFrame", "CameraMotion",
    "CountSummary", "CountingConfig", "CountingLine", "CountingZone", "LineCounter", "ObjectCounter", "StitchConfig", "Timeline",
    "Tracker",
    "TrackEnds", "TrackEvent", "TrackRecord", "ZoneCounter", "anchors", "camera_frame", "empty_tracked",
    "points_in_polygon", "stitch", "tracker_ids",
]
