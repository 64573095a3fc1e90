"""Scores of one column on one sequence: count error, and TrackEval's tracking metrics.

ID switches come from TrackEval's CLEAR, IDF1 from its Identity metric, HOTA from its HOTA
(averaged over its localisation thresholds, as TrackEval reports it). They are computed on
the processed frames only (every stride-th), against the animals *present* in them (see
``bench.counting.scene``), matching boxes by IoU.
"""

from __future__ import annotations

import contextlib
import io
from itertools import pairwise
from typing import Any

import numpy as np
from trackeval.metrics import CLEAR, HOTA, Identity

from bench.counting.oracle import box_iou
from bench.counting.scene import PRESENT_IN_FRAME, PRESENT_VISIBILITY, GroundTruth


def _contiguous(ids_per_frame: list[np.ndarray]) -> tuple[list[np.ndarray], int]:
    """Map arbitrary ids to 0..K-1 (TrackEval indexes arrays with them)."""
    unique = np.unique(np.concatenate(ids_per_frame)) if ids_per_frame else np.zeros(0, int)
    lookup = {int(v): i for i, v in enumerate(unique)}
    return [np.array([lookup[int(v)] for v in ids], dtype=int) for ids in ids_per_frame], len(unique)


def trackeval_data(
    gt: GroundTruth, frames: list[int], track_ids: list[np.ndarray], track_boxes: list[np.ndarray]
) -> dict[str, Any]:
    gt_ids, gt_boxes = zip(*(gt.frame(f) for f in frames), strict=True) if frames else ((), ())
    gt_ids_c, n_gt = _contiguous(list(gt_ids))
    tr_ids_c, n_tr = _contiguous(list(track_ids))
    similarity = [box_iou(g, t) for g, t in zip(gt_boxes, track_boxes, strict=True)]
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


def count_breakdown(
    gt: GroundTruth, frames: list[int], track_ids: list[np.ndarray], truths: list[np.ndarray]
) -> dict[str, int]:
    """Where a column's count goes wrong. Each track is given the animal most of its boxes came
    from (the oracle tags every detection). Then:

    ``false_tracks``: tracks made of false positives; ``missed``: counted animals no track
    followed; ``extra_after_occlusion``: a further id for an animal after a tree hid it;
    ``extra_after_leaving``: ... after it left the frame and came back (jumps, drift, roll);
    ``extra_other``: ... after neither (a crowd, a crossing, a fast camera: the tracker lost it);
    ``uncounted_animal``: tracks of an animal the truth does not count (never seen for half a
    second: at the frame's edge, or almost all under a tree).
    """
    spans: dict[int, list[int]] = {}
    votes: dict[int, dict[int, int]] = {}
    for f, ids, truth in zip(frames, track_ids, truths, strict=True):
        for t, a in zip(ids.tolist(), truth.tolist(), strict=True):
            spans.setdefault(t, [f, f])[1] = f
            votes.setdefault(t, {}).setdefault(a, 0)
            votes[t][a] += 1
    by_animal: dict[int, list[tuple[int, int]]] = {}
    false_tracks = 0
    for t, v in votes.items():
        animal = max(v, key=v.get)
        if animal < 0:
            false_tracks += 1
        else:
            by_animal.setdefault(animal, []).append(tuple(spans[t]))
    counted = set(gt.counted_ids().tolist())
    out = {"false_tracks": false_tracks, "extra_after_occlusion": 0, "extra_after_leaving": 0, "extra_other": 0,
           "uncounted_animal": sum(len(tracks) for animal, tracks in by_animal.items() if animal not in counted)}
    for animal, tracks in by_animal.items():
        tracks.sort()
        for (_, end), (start, _) in pairwise(tracks):
            lo, hi = min(end, start), max(end, start) + 1
            if gt.visibility[lo:hi, animal].min() < PRESENT_VISIBILITY:
                out["extra_after_occlusion"] += 1
            elif gt.in_frame[lo:hi, animal].min() < PRESENT_IN_FRAME:
                out["extra_after_leaving"] += 1
            else:
                out["extra_other"] += 1
    out["missed"] = len(counted - set(by_animal))
    return out
