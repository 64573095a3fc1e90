"""The live tracker behind ``ObjectCounter``, and the camera-motion estimate it may use.

Two trackers from Roboflow's ``trackers`` package (``supervision`` removed ``sv.ByteTrack``
in 0.31; ``trackers`` is its maintained successor):

* ``botsort`` (default): BoT-SORT with camera-motion compensation (CMC). Before matching,
  every track's predicted box is moved by the camera's frame-to-frame motion, so a pan, a
  jump or a frame stride does not break ids. Chosen on ``bench/counting_bench.py``: see
  docs/performance.md.
* ``bytetrack``: ByteTrack on boxes alone; right for a fixed camera, cheaper, no frames needed.

Camera motion is estimated by sparse optical flow on a grey frame downscaled to
``CMC_WIDTH`` pixels wide (the library's default, the full frame halved, costs 4-5x more
for no gain in counting), with the corner count capped (``CMC_MAX_CORNERS``) because a
downscaled 4K frame has many more corners than a 1080p one, and the animals masked out.
ORB fails on grass at this size and ECC is slower for no gain (bench). The same estimate also serves offline stitching,
which compares positions in compensated ("ground") coordinates.
"""

from __future__ import annotations

import time
from typing import Any, NamedTuple

import cv2
import numpy as np
from trackers import BoTSORTTracker, ByteTrackTracker

from core.jobs import Tracker

TRACKERS = tuple(t.value for t in Tracker)  # botsort, bytetrack: the names jobs and settings accept
DEFAULT_TRACKER = Tracker.BOTSORT
CMC_WIDTH = 480
CMC_MAX_CORNERS = 300
# fewer agreeing points than this (plain ground, a frame filled by the herd): assume no motion
CMC_MIN_POINTS = 8
# Corner strength relative to the strongest in the frame. The library's 0.01 keeps 5-20 corners
# on a 480 px grass frame once the animals are masked (trees and animals set the maximum), too
# few to survive a 45 px step at stride 5; 0.001 keeps the cap's worth on grass.
CMC_CORNER_QUALITY = 0.001

# The trackers express their lost-track buffer in frames of a 30 fps video and rescale it.
_REFERENCE_FPS = 30.0
# ByteTrack hands out an id on a track's second consecutive match at the earliest.
_MIN_HITS = 2


def uses_frames(tracker: Tracker) -> bool:
    """Whether ``tracker`` needs the frames (for camera-motion compensation)."""
    return tracker == Tracker.BOTSORT


class CameraFrame(NamedTuple):
    """A frame as camera-motion estimation sees it: ``grey``, downscaled by ``scale``
    (frame pixels per ``grey`` pixel)."""

    grey: np.ndarray
    scale: float


def camera_frame(image: np.ndarray, width: int = CMC_WIDTH) -> CameraFrame:
    """Grey, at most ``width`` pixels wide, from an RGB/BGR (H, W, 3) or grey (H, W) frame."""
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image
    full_width = grey.shape[1]
    if full_width <= width:
        return CameraFrame(np.ascontiguousarray(grey), 1.0)
    height = max(1, round(grey.shape[0] * width / full_width))
    small = cv2.resize(grey, (width, height), interpolation=cv2.INTER_AREA)
    return CameraFrame(small, full_width / width)


class CameraMotion:
    """Frame-to-frame camera motion by sparse optical flow on a ``CameraFrame``.

    The algorithm of BoT-SORT's ``sparseOptFlow`` CMC (Shi-Tomasi corners tracked by
    pyramidal Lucas-Kanade, a RANSAC partial-affine fit), with three changes: corners on
    detected animals are masked out (a herd walking across plain ground must not read as a
    pan), the corner count is capped, and too few agreeing points give "no motion" rather
    than a guess.

    ``estimate`` returns the 2x3 affine transform from the previous frame's pixels to this
    frame's (identity on the first frame). ``seconds`` is the time spent, downscale included.
    """

    def __init__(self, max_corners: int = CMC_MAX_CORNERS, min_points: int = CMC_MIN_POINTS) -> None:
        self.max_corners, self.min_points = max_corners, min_points
        self.seconds = 0.0
        self.frames_failed = 0
        self._previous: np.ndarray | None = None
        self._points: np.ndarray | None = None

    def estimate(self, frame: CameraFrame, boxes: np.ndarray | None = None) -> np.ndarray:
        started = time.perf_counter()
        matrix = self._estimate(frame, boxes)
        self.seconds += time.perf_counter() - started
        return matrix

    def _estimate(self, frame: CameraFrame, boxes: np.ndarray | None) -> np.ndarray:
        grey, matrix = frame.grey, np.eye(2, 3)
        previous, points = self._previous, self._points
        if previous is not None and points is not None and previous.shape == grey.shape:
            # nextPts is only an output buffer here (no OPTFLOW_USE_INITIAL_FLOW): OpenCV fills it.
            moved, status, _ = cv2.calcOpticalFlowPyrLK(previous, grey, points, np.empty_like(points))
            if moved is not None and status is not None:
                good = status.reshape(-1) != 0
                matrix = self._fit(points[good], moved[good], frame.scale)
        self._previous = grey
        self._points = cv2.goodFeaturesToTrack(
            grey, maxCorners=self.max_corners, qualityLevel=CMC_CORNER_QUALITY, minDistance=3, blockSize=3,
            mask=_background_mask(grey.shape, boxes, frame.scale),
        )
        return matrix

    def _fit(self, before: np.ndarray, after: np.ndarray, scale: float) -> np.ndarray:
        if len(before) >= self.min_points:
            fitted, inliers = cv2.estimateAffinePartial2D(before, after, method=cv2.RANSAC)
            if fitted is not None and inliers is not None and int(inliers.sum()) >= self.min_points:
                # OpenCV returns float64 already; the typed copy lets the translation be scaled in place.
                matrix = fitted.astype(np.float64)
                matrix[:, 2] *= scale  # translation back to frame pixels; rotation/scale need nothing
                return matrix
        self.frames_failed += 1
        return np.eye(2, 3)


def _background_mask(shape: tuple[int, ...], boxes: np.ndarray | None, scale: float) -> np.ndarray | None:
    """255 where corners may be taken: everywhere but the detected boxes (grown by a quarter)."""
    if boxes is None or len(boxes) == 0:
        return None
    mask = np.full(shape[:2], 255, dtype=np.uint8)
    small = np.asarray(boxes, dtype=float) / scale
    grow = np.stack([small[:, 2] - small[:, 0], small[:, 3] - small[:, 1]], axis=1) / 8
    for (x1, y1, x2, y2), (gx, gy) in zip(small, grow, strict=True):
        mask[max(0, int(y1 - gy)):max(0, int(y2 + gy + 1)), max(0, int(x1 - gx)):max(0, int(x2 + gx + 1))] = 0
    return mask


class _GivenMotion:
    """Stands in for BoT-SORT's own CMC: hands it the transform already estimated for this
    frame, so the camera motion is computed once and shared with stitching."""

    def __init__(self) -> None:
        self.matrix = np.eye(2, 3)

    def estimate(self, frame: Any, dets_xyxy: Any = None) -> np.ndarray:
        return self.matrix

    def reset(self) -> None:
        self.matrix = np.eye(2, 3)


# How far a new track may reach for a detection its box does not overlap, in lengths of its box.
UNCONFIRMED_REACH = 3.0
# Beside confirmed tracks that all matched, a new track may still reach for a runner, but only when
# processed frames are this far apart (an animal running about 8 body lengths a second leaves its
# own box behind; closer in time a runner overlaps itself and needs no reach): at 30 fps, stride 4+.
RUNNER_MIN_INTERVAL_S = 1 / 8
# ... and only for a detection it does not overlap at all (a partial overlap is as likely a neighbour),
RUNNER_MAX_IOU = 0.02
# within this many lengths of its box (a runner a step; three was too far in a herd),
RUNNER_REACH = 1.5
# and within this ratio of its box's area (the general reach allows 2x: a neighbour half hidden).
RUNNER_AREA_RATIO = 1.5


class _ReachingBoTSORT(BoTSORTTracker):
    """BoT-SORT that can start tracks on animals too fast to overlap themselves.

    A new track has no velocity yet, so its predicted box stays where the animal was first
    seen. An animal running 10 body lengths a second moves 1.7 of them between frames at
    stride 5: it never overlaps itself, its track is never confirmed, and it is never counted
    (the benchmark's `altitude` stampede). Two changes, both for tracks not yet confirmed:

    * In BoT-SORT's last stage (new tracks against the detections every confirmed track left
      over) a detection within ``UNCONFIRMED_REACH`` box lengths and of a similar size may
      match, scored below any overlap, unless it lies that close to a confirmed track: in a
      crowd, a leftover detection is far more likely a neighbour than a runner. When processed
      frames are at least ``RUNNER_MIN_INTERVAL_S`` apart and the camera's motion was measured
      on the frames, a confirmed track that matched this frame has its animal, so beside it
      (and no unmatched confirmed track) the reach stays open for a runner: a detection the new
      track does not overlap at all, within ``RUNNER_REACH`` lengths and of about its size. At
      stride 5 a herd running through a standing one (the benchmark's `flyover_120`) was
      otherwise never confirmed. With the motion read from the detections (no frames) a match
      is less sure, and opening the reach there added tracks (`jumps`, `altitude` at stride 5).
    * On its second match a new track takes the displacement between its two observations
      as its velocity, so its third prediction lands where the animal will be (the Kalman
      filter, starting from zero velocity, would need several frames to learn it).
    """

    _priors: dict[int, np.ndarray]  # new track -> its predicted centre this frame (after CMC)
    # whether a runner may pass beside tracks that matched (LiveTracker sets it per frame)
    runners_may_pass = False

    def update(self, detections: Any, frame: np.ndarray | None = None, timestamp: float | None = None) -> Any:
        self._priors = {}
        out = super().update(detections, frame=frame, timestamp=timestamp)
        for track in self.tracks:
            prior = self._priors.get(id(track))
            if prior is not None and track.number_of_successful_updates == 2 and track.time_since_update == 0:
                state = track.state_estimator.kf.state  # [xc, yc, w, h, vx, vy, vw, vh] column
                state[4:6, 0] = state[0:2, 0] - prior
        return out

    def _get_iou_matrix(self, tracklets: list[Any], detections: np.ndarray,
                        tracklet_boxes_by_id: dict[int, np.ndarray]) -> np.ndarray:
        iou = super()._get_iou_matrix(tracklets, detections, tracklet_boxes_by_id)
        # only the last stage is called with tracks not yet confirmed, and with nothing else
        if not tracklets or len(detections) == 0 or any(t.tracker_id != -1 for t in tracklets):
            return iou
        boxes = np.array([tracklet_boxes_by_id[id(t)] for t in tracklets])
        self._priors = {id(t): centre for t, centre in zip(tracklets, _centres(boxes), strict=True)
                        if t.number_of_successful_updates == 1}
        reach = reach_similarity(boxes, detections)
        confirmed = [t for t in self.tracks if t.tracker_id != -1]
        # a confirmed track that matched this frame holds its animal: beside it only a runner is reached
        holds = [self.runners_may_pass and t.time_since_update == 0 for t in confirmed]
        guards = [tracklet_boxes_by_id[id(t)] for t, h in zip(confirmed, holds, strict=True) if not h]
        held = [tracklet_boxes_by_id[id(t)] for t, h in zip(confirmed, holds, strict=True) if h]
        if guards:
            reach[:, within_reach(np.array(guards), detections).any(axis=0)] = 0
        if held:
            beside = np.asarray(within_reach(np.array(held), detections).any(axis=0))
            reach[~runner_like(boxes, detections, iou) & beside[None, :]] = 0
        return np.maximum(iou, reach)


def _centres(boxes: np.ndarray) -> np.ndarray:
    return (boxes[:, :2] + boxes[:, 2:]) / 2


def _areas(boxes: np.ndarray) -> np.ndarray:
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def _lengths(boxes: np.ndarray) -> np.ndarray:
    return np.maximum(np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]), 1.0)


def _distances(boxes: np.ndarray, detections: np.ndarray) -> np.ndarray:
    return np.linalg.norm(_centres(boxes)[:, None] - _centres(detections)[None], axis=2)


def within_reach(boxes: np.ndarray, detections: np.ndarray) -> np.ndarray:
    """(boxes, detections): the detection's centre is within ``UNCONFIRMED_REACH`` box lengths."""
    return _distances(boxes, detections) < UNCONFIRMED_REACH * _lengths(boxes)[:, None]


def runner_like(tracks: np.ndarray, detections: np.ndarray, iou: np.ndarray) -> np.ndarray:
    """(tracks, detections): where the detection may be the track's animal running past a herd:
    no overlap, within ``RUNNER_REACH`` box lengths, and an area within ``RUNNER_AREA_RATIO``."""
    near = _distances(tracks, detections) < RUNNER_REACH * _lengths(tracks)[:, None]
    area_t, area_d = _areas(tracks)[:, None], _areas(detections)[None, :]
    alike = (area_d <= RUNNER_AREA_RATIO * area_t) & (area_t <= RUNNER_AREA_RATIO * area_d)
    return near & alike & (iou < RUNNER_MAX_IOU)


def reach_similarity(tracks: np.ndarray, detections: np.ndarray) -> np.ndarray:
    """(tracks, detections) in [0, 0.5]: 0.5 at the same centre, falling to 0 at
    ``UNCONFIRMED_REACH`` box lengths; 0 where the areas differ by more than 2x."""
    closeness = 1 - _distances(tracks, detections) / (UNCONFIRMED_REACH * _lengths(tracks)[:, None])
    area_t, area_d = _areas(tracks)[:, None], _areas(detections)[None, :]
    alike = (area_d <= 2 * area_t) & (area_t <= 2 * area_d)
    return np.where(alike, 0.5 * np.clip(closeness, 0, 1), 0.0)


class LiveTracker:
    """One video's tracker: ``update(detections, motion)`` with ``motion`` the camera's 2x3
    transform from the previous processed frame (None: unknown, taken as no motion);
    ``measured_on_frames``: whether that motion was measured on the frames' pixels."""

    def __init__(self, name: Tracker, fps: float, track_threshold: float, min_hits: int,
                 track_buffer_s: float, match_iou: float) -> None:
        self.name = name
        buffer_frames = round(track_buffer_s * _REFERENCE_FPS)
        self._motion: _GivenMotion | None = None
        if name == Tracker.BYTETRACK:
            self._tracker: Any = ByteTrackTracker(
                lost_track_buffer=buffer_frames, frame_rate=float(fps),
                track_activation_threshold=track_threshold, high_conf_det_threshold=track_threshold,
                minimum_consecutive_frames=max(min_hits, _MIN_HITS), minimum_iou_threshold=match_iou,
            )
            return
        self._tracker = _ReachingBoTSORT(
            lost_track_buffer=buffer_frames, frame_rate=float(fps),
            track_activation_threshold=track_threshold, high_conf_det_threshold=track_threshold,
            minimum_consecutive_frames=max(min_hits, _MIN_HITS),
            # the product's match IoU in every stage: the library's 0.2-0.5 lose fast pans at stride 3+
            minimum_iou_threshold_first_assoc=match_iou, minimum_iou_threshold_second_assoc=match_iou,
            minimum_iou_threshold_unconfirmed_assoc=match_iou,
            instant_first_frame_activation=False,  # confirmed after min_hits, on the first frame too
            enable_cmc=False,
        )
        self._far_apart = fps <= 1 / RUNNER_MIN_INTERVAL_S  # a runner leaves its box between frames
        self._motion = _GivenMotion()
        self._tracker.enable_cmc = True
        self._tracker.cmc = self._motion

    def alive_ids(self) -> set[int]:
        """The tracker's (0-based) ids of the confirmed tracks it still holds, lost ones included:
        any other id has ended for good."""
        return set(self._tracker.tracked_objects.tracker_id.tolist())

    def update(self, detections: Any, motion: np.ndarray | None, measured_on_frames: bool = False) -> Any:
        if self._motion is None:
            return self._tracker.update(detections)
        self._tracker.runners_may_pass = self._far_apart and motion is not None and measured_on_frames
        self._motion.matrix = np.eye(2, 3) if motion is None else motion
        # BoT-SORT applies CMC only when given a frame; the frame itself is not looked at here
        return self._tracker.update(detections, frame=_NO_PIXELS)


_NO_PIXELS = np.zeros((1, 1, 3), dtype=np.uint8)
