"""The trackers the benchmark compares ("columns"), each fed one sequence's detections.

``baseline`` is the product's own counting stage, ``ml_engine.tracking.ObjectCounter``,
configured as ``ml_engine.pipeline`` configures it (same defaults), so its count is the
count a user gets. The others are exploratory: trackers from the ``trackers`` package used
directly, with the product's counting rule (a track counts once it has a confirmed id,
after ``min_hits`` consecutive matches) and the same thresholds where they have one:

    ocsort        OCSORTTracker (observation-centric re-update and momentum; no CMC)
    botsort       BoTSORTTracker without camera-motion compensation
    botsort_sof   BoTSORTTracker + CMC by sparse optical flow
    botsort_orb   BoTSORTTracker + CMC by ORB features (boxes masked out)
    botsort_ecc   BoTSORTTracker + CMC by ECC image alignment

CMC looks at a grey frame downscaled to ``CMC_WIDTH`` pixels wide (what a product would
hand it), through ``ScaledCMC``, which maps the affine transform back to frame pixels.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import cv2
import numpy as np
import supervision as sv
from trackers import CMC, BoTSORTTracker, CMCConfig, OCSORTTracker

from ml_engine.pipeline import PipelineConfig
from ml_engine.tracking import CountingConfig, ObjectCounter

CMC_WIDTH = 480

# the pipeline's defaults, so the baseline column counts as the product does
_PIPELINE = PipelineConfig()
TRACK_THRESHOLD = _PIPELINE.threshold
LOW_THRESHOLD = _PIPELINE.effective_low_threshold
MIN_HITS = _PIPELINE.min_hits
TRACK_BUFFER_S = _PIPELINE.track_buffer_s
MATCH_IOU = CountingConfig(fps=30.0).match_iou
_REFERENCE_FPS = 30.0  # ``trackers`` express their lost-track buffer in frames at 30 fps


@dataclass
class Sequence:
    """What a column sees: the processed frames of one sequence at one stride."""

    frames: list[int]  # frame indices processed (every stride-th)
    fps: float  # processed frames per second (source fps / stride)
    source_fps: float
    detections: list[sv.Detections]  # per processed frame
    small_grey: list[np.ndarray] | None  # per processed frame, CMC_WIDTH wide, for CMC columns
    frame_width: int


@dataclass
class Tracked:
    """A column's output: per processed frame, confirmed track ids and their boxes."""

    ids: list[np.ndarray] = field(default_factory=list)
    boxes: list[np.ndarray] = field(default_factory=list)
    truths: list[np.ndarray] = field(default_factory=list)  # the animal each box came from (-1: false)
    count: int = 0
    seconds: float = 0.0  # time in the tracker (and CMC), for fps
    cmc_seconds: float = 0.0
    tracks: list[dict] = field(default_factory=list)  # baseline only: the stats.json "tracks"


class ScaledCMC(CMC):
    """``trackers.CMC`` on a downscaled grey frame: boxes are scaled down to it, and the
    transform's translation scaled back up to frame pixels (rotation/scale need nothing)."""

    def __init__(self, method: str, frame_width: int) -> None:
        super().__init__(CMCConfig(method=method, downscale=1))
        self.factor = frame_width / CMC_WIDTH
        self.seconds = 0.0

    def estimate(self, frame_bgr: np.ndarray, dets_xyxy: np.ndarray | None = None) -> np.ndarray:
        started = time.perf_counter()
        small = dets_xyxy / self.factor if dets_xyxy is not None else None
        matrix = super().estimate(frame_bgr, small).copy()
        matrix[:, 2] *= self.factor
        self.seconds += time.perf_counter() - started
        return matrix


def _truth(detections: sv.Detections) -> np.ndarray:
    return np.asarray(detections.data.get("truth", np.full(len(detections), -1)), dtype=int)


def _grey_to_bgr(grey: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR)


def run_baseline(seq: Sequence) -> Tracked:
    counter = ObjectCounter(
        CountingConfig(fps=seq.fps, min_hits=MIN_HITS, track_buffer_s=TRACK_BUFFER_S,
                       track_threshold=TRACK_THRESHOLD)
    )
    out = Tracked()
    started = time.perf_counter()
    for f, det in zip(seq.frames, seq.detections, strict=True):
        confirmed = counter.update(f, f / seq.source_fps, det)
        out.ids.append(np.asarray(confirmed.tracker_id, dtype=int))
        out.boxes.append(np.asarray(confirmed.xyxy, dtype=float).reshape(-1, 4))
        out.truths.append(_truth(confirmed))
    out.seconds = time.perf_counter() - started
    summary = counter.summary()
    out.count = summary.total_unique
    out.tracks = summary.tracks
    return out


def _buffer_frames() -> int:
    return round(TRACK_BUFFER_S * _REFERENCE_FPS)


def make_ocsort(seq: Sequence) -> OCSORTTracker:
    return OCSORTTracker(
        lost_track_buffer=_buffer_frames(), frame_rate=seq.fps, minimum_consecutive_frames=MIN_HITS,
        minimum_iou_threshold=MATCH_IOU, high_conf_det_threshold=TRACK_THRESHOLD,
    )


def make_botsort(seq: Sequence, cmc: str | None) -> BoTSORTTracker:
    tracker = BoTSORTTracker(
        lost_track_buffer=_buffer_frames(), frame_rate=seq.fps, track_activation_threshold=TRACK_THRESHOLD,
        minimum_consecutive_frames=MIN_HITS, high_conf_det_threshold=TRACK_THRESHOLD, enable_cmc=False,
        # the product's match IoU (0.1) in every stage: the library's 0.2-0.5 lose fast pans at stride 3+
        minimum_iou_threshold_first_assoc=MATCH_IOU, minimum_iou_threshold_second_assoc=MATCH_IOU,
        minimum_iou_threshold_unconfirmed_assoc=MATCH_IOU,
        instant_first_frame_activation=False,  # the product's rule: confirmed after min_hits, first frame too
    )
    if cmc is not None:
        # the tracker calls self.cmc.estimate(frame, high_boxes) between predict and association
        tracker.enable_cmc = True
        tracker.cmc = ScaledCMC(cmc, seq.frame_width)
    return tracker


def run_trackers_package(seq: Sequence, tracker, needs_frames: bool) -> Tracked:
    out = Tracked()
    seen: set[int] = set()
    started = time.perf_counter()
    for i, det in enumerate(seq.detections):
        frame = _grey_to_bgr(seq.small_grey[i]) if needs_frames else None
        result = tracker.update(det, frame=frame)
        ids = np.asarray(result.tracker_id, dtype=int)
        confirmed = ids >= 0
        out.ids.append(ids[confirmed])
        out.boxes.append(np.asarray(result.xyxy, dtype=float).reshape(-1, 4)[confirmed])
        out.truths.append(_truth(result)[confirmed])
        seen.update(ids[confirmed].tolist())
    out.seconds = time.perf_counter() - started
    out.count = len(seen)
    cmc = getattr(tracker, "cmc", None)
    out.cmc_seconds = cmc.seconds if isinstance(cmc, ScaledCMC) else 0.0
    return out


COLUMNS = {
    "baseline": "product ObjectCounter (ByteTrack), as the pipeline runs it",
    "ocsort": "trackers.OCSORTTracker",
    "botsort": "trackers.BoTSORTTracker, no CMC",
    "botsort_sof": "BoT-SORT + CMC sparse optical flow on a 480 px grey frame",
    "botsort_orb": "BoT-SORT + CMC ORB on a 480 px grey frame",
    "botsort_ecc": "BoT-SORT + CMC ECC on a 480 px grey frame",
}
DEFAULT_COLUMNS = ("baseline", "ocsort", "botsort", "botsort_sof", "botsort_orb")
_CMC_OF = {"botsort_sof": "sparseOptFlow", "botsort_orb": "orb", "botsort_ecc": "ecc"}


def needs_frames(column: str) -> bool:
    return column in _CMC_OF


def run_column(column: str, seq: Sequence) -> Tracked:
    if column == "baseline":
        return run_baseline(seq)
    if column == "ocsort":
        return run_trackers_package(seq, make_ocsort(seq), needs_frames=False)
    if column == "botsort":
        return run_trackers_package(seq, make_botsort(seq, None), needs_frames=False)
    if column in _CMC_OF:
        return run_trackers_package(seq, make_botsort(seq, _CMC_OF[column]), needs_frames=True)
    raise ValueError(f"unknown column {column!r}; known: {', '.join(COLUMNS)}")
