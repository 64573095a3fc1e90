"""Does a runtime detect what torch detects? Compared after post-processing, as sets.

Raw outputs cannot be compared in order: RT-DETR keeps its top queries by scores that are
nearly tied, so any numerical change (torch's own thread count included) reorders them.
Detections are matched instead, per label, box to nearest box; a runtime passes when every
detection finds its match within 0.5 px and 1e-3 in score, or within what torch at another
thread count deviates from torch, whichever is larger.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import supervision as sv
import torch

BOX_TOLERANCE_PX = 0.5
SCORE_TOLERANCE = 1e-3
# compare the detections above this score, or the best COMPARED_AT_LEAST when fewer pass it
COMPARE_ABOVE = 0.2
COMPARED_AT_LEAST = 30

Detect = Callable[[list[np.ndarray]], list[sv.Detections]]


@dataclass(frozen=True)
class Deviation:
    """How far one run's detections are from the reference's."""

    compared: int  # reference detections compared
    unmatched: int  # of them, those with no counterpart within the tolerances
    max_box_px: float  # over matched pairs
    max_score: float

    def within(self, box_px: float, score: float) -> bool:
        return self.unmatched == 0 and self.max_box_px <= box_px and self.max_score <= score


@dataclass(frozen=True)
class Verdict:
    """The faithfulness check's result, as logs and stats report it."""

    runtime: str
    passed: bool
    deviation: Deviation
    floor: Deviation  # torch against torch at another thread count
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "reason": self.reason, "deviation": asdict(self.deviation),
                "torch_thread_floor": asdict(self.floor)}


def sample_images() -> list[np.ndarray]:
    """The check's inputs: uniform noise, and a structured scene (smooth ground, bright and dark
    blobs, an edge), at two frame sizes so the resize is exercised too."""
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    ys, xs = np.mgrid[0:720, 0:1280]
    scene = np.stack([60 + 80 * xs / 1280, 110 + 60 * ys / 720, 50 + 0 * xs], axis=-1)
    for cx, cy, r, shade in ((300, 200, 60, 230), (800, 400, 90, 30), (1000, 150, 40, 200), (500, 550, 70, 250)):
        scene[(xs - cx) ** 2 + ((ys - cy) * 1.6) ** 2 < r * r] = shade
    scene[:, 1100:] *= 0.5
    return [noise, scene.clip(0, 255).astype(np.uint8)]


def judge(runtime: str, reference: Detect, candidate: Detect, other_threads: Detect) -> Verdict:
    """Run the three on the sample images and decide whether ``candidate`` is faithful."""
    images = sample_images()
    expected = reference(images)
    floor = deviation(expected, other_threads(images), BOX_TOLERANCE_PX * 4, SCORE_TOLERANCE * 10)
    box_tol = max(BOX_TOLERANCE_PX, floor.max_box_px)
    score_tol = max(SCORE_TOLERANCE, floor.max_score)
    got = deviation(expected, candidate(images), box_tol, score_tol)
    if got.compared == 0:
        return Verdict(runtime, False, got, floor, "torch detected nothing on the sample images to compare")
    if got.within(box_tol, score_tol):
        return Verdict(runtime, True, got, floor, "matches torch")
    reason = (f"{got.unmatched} of {got.compared} detections have no match within {box_tol:.2g} px and "
              f"{score_tol:.2g} in score (matched ones deviate up to {got.max_box_px:.3g} px, "
              f"{got.max_score:.3g}; torch at another thread count: {floor.max_box_px:.3g} px, {floor.max_score:.3g})")
    return Verdict(runtime, False, got, floor, reason)


def deviation(expected: list[sv.Detections], got: list[sv.Detections], box_tol: float, score_tol: float) -> Deviation:
    """Match ``got`` to ``expected`` image by image, label by label, nearest box first."""
    compared = unmatched = 0
    max_box = max_score = 0.0
    for want, have in zip(expected, got, strict=True):
        threshold = _compare_above(want)
        for label in np.unique(np.asarray(want.class_id)):
            pairs = _match(want, have, int(label), threshold, box_tol, score_tol)
            compared += pairs.compared
            unmatched += pairs.unmatched
            max_box = max(max_box, pairs.max_box_px)
            max_score = max(max_score, pairs.max_score)
    return Deviation(compared, unmatched, max_box, max_score)


def _compare_above(detections: sv.Detections) -> float:
    scores = np.sort(np.asarray(detections.confidence))[::-1]
    if len(scores) > COMPARED_AT_LEAST and scores[COMPARED_AT_LEAST - 1] < COMPARE_ABOVE:
        return float(scores[COMPARED_AT_LEAST - 1])
    return COMPARE_ABOVE


def _match(want: sv.Detections, have: sv.Detections, label: int, threshold: float,
           box_tol: float, score_tol: float) -> Deviation:
    """Greedy nearest-box matching of one label's detections. A reference detection within the
    score tolerance of the threshold may lack a counterpart: the other side may fall just below."""
    want_labels, want_scores = np.asarray(want.class_id), np.asarray(want.confidence)
    have_labels, have_scores = np.asarray(have.class_id), np.asarray(have.confidence)
    mine = (want_labels == label) & (want_scores >= threshold)
    theirs = (have_labels == label) & (have_scores >= threshold - score_tol)
    boxes_a, scores_a = want.xyxy[mine], want_scores[mine]
    boxes_b, scores_b = have.xyxy[theirs], have_scores[theirs]
    distance = np.abs(boxes_a[:, None, :] - boxes_b[None, :, :]).max(-1) if len(boxes_b) else np.zeros((len(boxes_a), 0))
    score_gap = np.abs(scores_a[:, None] - scores_b[None, :])
    distance = np.where(score_gap <= score_tol, distance, np.inf)
    taken: set[int] = set()
    unmatched = 0
    max_box = max_score = 0.0
    for row in np.argsort(distance.min(axis=1) if distance.shape[1] else np.zeros(len(boxes_a)), kind="stable"):
        candidates = [col for col in np.argsort(distance[row], kind="stable") if col not in taken]
        best = candidates[0] if candidates and distance[row, candidates[0]] <= box_tol else None
        if best is None:
            unmatched += int(scores_a[row] >= threshold + score_tol)
            continue
        taken.add(int(best))
        max_box = max(max_box, float(distance[row, best]))
        max_score = max(max_score, float(score_gap[row, best]))
    return Deviation(len(boxes_a), unmatched, max_box, max_score)


@contextlib.contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Run torch with ``count`` intra-op threads for a while (the check's torch-vs-torch floor)."""
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def other_thread_count() -> int:
    return 1 if torch.get_num_threads() > 1 else 2
