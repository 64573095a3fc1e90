"""The trackers the benchmark compares ("columns"), each fed one sequence's detections.

The product columns run the product's own counting stage, ``ml_engine.counting.ObjectCounter``,
configured as ``ml_engine.pipeline`` configures it (same defaults), fed the oracle's
detections and, where it uses them, the frames (grey, ``CMC_WIDTH`` wide, as the product's
``camera_frame`` makes them), through the product's code path, CMC included:

    baseline      TRACKER=bytetrack STITCHING=off: the product before BoT-SORT and stitching
    cmc           TRACKER=botsort (camera-motion compensated), STITCHING=off
    stitch        TRACKER=bytetrack, STITCHING=on
    product       the product's defaults (TRACKER=botsort, STITCHING=on)
    frameless     the product's defaults fed detections but no frames (the standalone counter of a
                  researcher with their own detections: camera motion read from the detections)
    telemetry     the product's defaults given the flight's DJI SRT telemetry, which the bench
                  writes (``lawnmower.srt_text``: GPS with a 1.5 m error, altitude, gimbal yaw)

Their IDF1/HOTA/ID switches are measured on the final (stitched) ids. The others are
exploratory: trackers from the ``trackers`` package used directly, with the product's
counting rule (a track counts once it has a confirmed id, after ``min_hits`` consecutive
matches) and the same thresholds where they have one:

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

from ml_engine.counting import CMC_WIDTH as PRODUCT_CMC_WIDTH
from ml_engine.counting import CameraFrame, CountingConfig, ObjectCounter
from ml_engine.media.telemetry import parse_srt
from ml_engine.pipeline import PipelineConfig

CMC_WIDTH = PRODUCT_CMC_WIDTH  # the cached CMC frames are rendered at the product's CMC width

# the pipeline's defaults, so the baseline column counts as the product does
_PIPELINE = PipelineConfig()
TRACK_THRESHOLD = _PIPELINE.detection.threshold
LOW_THRESHOLD = _PIPELINE.detection.effective_low_threshold
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
    small_grey: list | None  # per processed frame, CMC_WIDTH wide grey (or CameraFrame), for CMC columns
    frame_width: int
    srt: str | None = None  # the flight's telemetry as a DJI SRT file, for the telemetry column


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
    passes: dict | None = None  # product columns: the lawnmower passes' report (counts.passes)


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


# product column -> (tracker, stitching); None: the product's defaults
PRODUCT_COLUMNS: dict[str, tuple[str, bool] | None] = {
    "baseline": ("bytetrack", False),
    "cmc": ("botsort", False),
    "stitch": ("bytetrack", True),
    "product": None,
    "frameless": None,
    "telemetry": None,
}


def product_counter(seq: Sequence, column: str = "product") -> ObjectCounter:
    """The counting stage as ``ml_engine.pipeline`` builds it, with ``column``'s tracker/stitching
    (and, for the telemetry column, the flight's SRT read by the product's reader)."""
    settings = PRODUCT_COLUMNS[column]
    chosen = {} if settings is None else {"tracker": settings[0], "stitching": settings[1]}
    if column == "telemetry" and seq.srt is None:
        raise ValueError("the telemetry column needs the sequence's SRT (Sequence.srt)")
    telemetry = parse_srt(seq.srt) if column == "telemetry" and seq.srt is not None else None
    return ObjectCounter(
        CountingConfig(fps=seq.fps, min_hits=MIN_HITS, track_buffer_s=TRACK_BUFFER_S,
                       track_threshold=TRACK_THRESHOLD, **chosen),
        telemetry=telemetry,
    )


def run_product(seq: Sequence, column: str = "product") -> Tracked:
    """``small_grey`` may hold grey arrays ``CMC_WIDTH`` wide, or ``CameraFrame``s."""
    counter = product_counter(seq, column)
    feed_frames = counter.uses_frames and seq.small_grey is not None and column != "frameless"
    out = Tracked()
    started = time.perf_counter()
    for i, (f, det) in enumerate(zip(seq.frames, seq.detections, strict=True)):
        frame = _camera_frame(seq.small_grey[i], seq.frame_width) if feed_frames else None
        confirmed = counter.update(f, f / seq.source_fps, det, frame)
        out.ids.append(np.asarray(confirmed.tracker_id, dtype=int))
        out.boxes.append(np.asarray(confirmed.xyxy, dtype=float).reshape(-1, 4))
        out.truths.append(_truth(confirmed))
    summary = counter.summary()  # stitching runs here: part of the counting stage's time
    out.seconds = time.perf_counter() - started
    out.cmc_seconds = counter.camera.seconds
    _use_final_ids(out, summary.id_map)
    out.count = summary.total_unique
    out.tracks = summary.tracks
    out.passes = summary.passes
    return out


def _use_final_ids(out: Tracked, id_map: dict[int, int | None]) -> None:
    """Metrics on the summary's ids: stitched, and without the tracks it dropped as too short."""
    for i, ids in enumerate(out.ids):
        final = [id_map.get(int(t), int(t)) for t in ids]
        keep = np.array([f is not None for f in final], dtype=bool)
        out.ids[i] = np.asarray([f for f in final if f is not None], dtype=int)
        out.boxes[i], out.truths[i] = out.boxes[i][keep], out.truths[i][keep]


def _camera_frame(grey: np.ndarray | CameraFrame, frame_width: int) -> CameraFrame:
    if isinstance(grey, CameraFrame):
        return grey
    return CameraFrame(grey, frame_width / grey.shape[1])


def run_baseline(seq: Sequence) -> Tracked:
    return run_product(seq, "baseline")


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
    "baseline": "product ObjectCounter, TRACKER=bytetrack STITCHING=off (before BoT-SORT)",
    "cmc": "product ObjectCounter, TRACKER=botsort (CMC) STITCHING=off",
    "stitch": "product ObjectCounter, TRACKER=bytetrack STITCHING=on",
    "product": "product ObjectCounter, defaults (TRACKER=botsort STITCHING=on)",
    "frameless": "product ObjectCounter, defaults, fed detections but no frames",
    "telemetry": "product ObjectCounter, defaults, given the flight's DJI SRT (GPS sigma 1.5 m)",
    "ocsort": "trackers.OCSORTTracker",
    "botsort": "trackers.BoTSORTTracker, no CMC",
    "botsort_sof": "BoT-SORT + CMC sparse optical flow on a 480 px grey frame",
    "botsort_orb": "BoT-SORT + CMC ORB on a 480 px grey frame",
    "botsort_ecc": "BoT-SORT + CMC ECC on a 480 px grey frame",
}
DEFAULT_COLUMNS = ("baseline", "cmc", "stitch", "product")
_CMC_OF = {"botsort_sof": "sparseOptFlow", "botsort_orb": "orb", "botsort_ecc": "ecc"}


def needs_frames(column: str) -> bool:
    return column in _CMC_OF or (column in PRODUCT_COLUMNS and column != "frameless")


def run_column(column: str, seq: Sequence) -> Tracked:
    if column in PRODUCT_COLUMNS:
        return run_product(seq, column)
    if column == "ocsort":
        return run_trackers_package(seq, make_ocsort(seq), needs_frames=False)
    if column == "botsort":
        return run_trackers_package(seq, make_botsort(seq, None), needs_frames=False)
    if column in _CMC_OF:
        return run_trackers_package(seq, make_botsort(seq, _CMC_OF[column]), needs_frames=True)
    raise ValueError(f"unknown column {column!r}; known: {', '.join(COLUMNS)}")
