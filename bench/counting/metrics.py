"""Scores of one column on one sequence: count error, and TrackEval's tracking metrics.

ID switches come from TrackEval's CLEAR, IDF1 from its Identity metric, HOTA from its HOTA
(averaged over its localisation thresholds, as TrackEval reports it). They are computed on
the processed frames only (every stride-th), against the animals *present* in them (see
``bench.counting.scene``), matching boxes by IoU.
"""

from __future__ import annotations

import contextlib
import io
from typing import Any

import numpy as np
from trackeval.metrics import CLEAR, HOTA, Identity

from bench.counting.oracle import box_iou
from bench.counting.scene import GroundTruth


def _contiguous(ids_per_frame: list[np.ndarray]) -> tuple[list[np.ndarray], int]:
    """Map arbitrary ids to 0..K-1 (TrackEval indexes arrays with them)."""
    unique = np.unique(np.concatenate(ids_per_frame)) if ids_per_frame else np.zeros(0, int)
    lookup = {int(v): i for i, v in enumerate(unique)}
    return [np.array([lookup[int(v)] for v in ids], dtype=int) for ids in ids_per_frame], len(unique)


def trackeval_data(
    gt: GroundTruth, frames: list[int], track_ids: list[np.ndarray], track_boxes: list[np.ndarray]
) -> dict[str, Any]:
    gt_ids, gt_boxes = zip(*(gt.frame(f) for f in frames)) if frames else ((), ())
    gt_ids_c, n_gt = _contiguous(list(gt_ids))
    tr_ids_c, n_tr = _contiguous(list(track_ids))
    similarity = [box_iou(g, t) for g, t in zip(gt_boxes, track_boxes)]
    return {
        "num_timesteps": len(frames),
        "num_gt_ids": n_gt,
        "num_tracker_ids": n_tr,
        "num_gt_dets": int(sum(len(i) for i in gt_ids_c)),
        "num_tracker_dets": int(sum(len(i) for i in tr_ids_c)),
        "gt_ids": gt_ids_c,
        "tracker_ids": tr_ids_c,
        "similarity_scores": similarity,
    }


def tracking_scores(
    gt: GroundTruth, frames: list[int], track_ids: list[np.ndarray], track_boxes: list[np.ndarray]
) -> dict[str, float]:
    data = trackeval_data(gt, frames, track_ids, track_boxes)
    with contextlib.redirect_stdout(io.StringIO()):  # TrackEval prints its config
        clear = CLEAR({"PRINT_CONFIG": False}).eval_sequence(data)
        identity = Identity({"PRINT_CONFIG": False}).eval_sequence(data)
        hota = HOTA().eval_sequence(data)
    return {
        "idsw": int(clear["IDSW"]),
        "mota": float(clear["MOTA"]),
        "idf1": float(identity["IDF1"]),
        "hota": float(np.mean(hota["HOTA"])),
    }


def count_error_pct(true_count: int, count: int) -> float:
    """Signed count error in percent of the true count."""
    return 100.0 * (count - true_count) / max(true_count, 1)
