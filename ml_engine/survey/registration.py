"""Overlapping shots registered to each other, to refine footprints from metadata.

A shot's metadata footprint is off by the GNSS error (about 1.5 m) and its yaw and altitude
errors, far more than an animal's spacing in a herd. Where two shots overlap, the same ground
is in both: matching features (ORB, on a copy of the shot shrunk to ``FEATURE_SIDE_PX``)
give pairs of pixels that must land on the same ground point. A pasture is close to a plane,
and each footprint is already a homography from the camera model, so what is left between the
new shot's metadata footprint and its neighbours' (already placed) footprints is a ground-to-
ground similarity (shift, turn, scale). Each overlapping neighbour's matches are fitted
alone with RANSAC (``cv2.estimateAffinePartial2D``), which sorts out the matches that agree;
the similarity is then the least-squares fit over all neighbours' agreeing matches together.
Neighbours are placed through different chains of registrations (the previous shot of the
same line, the shots of the line before), and over a long grid the chains drift apart by up
to a metre or two; one RANSAC over all matches followed whichever neighbour had most matches,
and left the seam between the chains where the next shot followed the other one. Heard
together, each shot lands between its neighbours, the drift is spread out, and the
residual (RMS over every agreeing match) shows what disagreement is left: the matching
tolerance of the shot's detections widens with it (``ml_engine.survey.grid``).

Matches are *guided*: a pair whose two ground points, by the metadata, are further apart than
``gate_m`` cannot be the same point (grass repeats itself; a descriptor alone is not enough).
A fit is taken when at least ``MIN_INLIERS`` matches agree (each neighbour's within
``RANSAC_PX`` pixels of its own fit, in the new shot's ground sample distance; a neighbour
with fewer than half of ``MIN_INLIERS`` is not heard), and its scale and turn are plausible
for metadata errors.
Only the features are kept per shot (a few hundred kB), never the pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from ml_engine.survey.footprint import Footprint

__all__ = ["FEATURE_SIDE_PX", "Features", "Registration", "features_of", "register"]

FEATURE_SIDE_PX = 1200  # long side of the shrunk copy features are found on
FEATURES_PER_SHOT = 1500
RATIO_TEST = 0.8  # Lowe's ratio: the best match clearly better than the second
RANSAC_PX = 3.0
MIN_INLIERS = 20
MAX_SCALE_CHANGE = 0.15  # registration may correct the altitude's scale by this much
MAX_TURN_DEG = 10.0  # and the yaw by this much


@dataclass
class Features:
    """A shot's ORB keypoints (full-resolution pixels, N x 2) and descriptors (N x 32)."""

    points: np.ndarray
    descriptors: np.ndarray | None


@dataclass
class Registration:
    """A fit: the 3x3 similarity that moves the metadata footprint onto its neighbours, the
    inliers, their RMS residual on the ground, and which neighbours took part."""

    similarity: np.ndarray
    inliers: int
    matches: int
    residual_m: float
    neighbours: list[int]


def features_of(image: np.ndarray) -> Features:
    """ORB features of an RGB (or grey) image, found on a copy shrunk to FEATURE_SIDE_PX."""
    grey = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    height, width = grey.shape[:2]
    scale = min(1.0, FEATURE_SIDE_PX / max(width, height))
    small = cv2.resize(grey, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_AREA) \
        if scale < 1 else grey
    orb = cv2.ORB.create(nfeatures=FEATURES_PER_SHOT, fastThreshold=10)
    keypoints, descriptors = orb.detectAndCompute(small, None)
    points = np.array([k.pt for k in keypoints], dtype=np.float32).reshape(-1, 2) / scale
    return Features(points, descriptors)


def register(new: Features, footprint: Footprint, neighbours: list[tuple[int, Features, Footprint]],
             gate_m: float) -> Registration | None:
    """The similarity that puts ``new`` (placed by ``footprint``, from its metadata) onto its
    ``neighbours`` (index, features, their placed footprint); None when no fit is trusted."""
    if new.descriptors is None or len(new.points) < MIN_INLIERS:
        return None
    sources, targets, used = [], [], []
    matcher = cv2.BFMatcher(cv2.NORM_HAMMING)
    new_east, new_north = footprint.to_ground(new.points[:, 0], new.points[:, 1])
    for index, features, placed in neighbours:
        if features.descriptors is None or len(features.points) < 2:
            continue
        pairs = matcher.knnMatch(new.descriptors, features.descriptors, k=2)
        good = [p[0] for p in pairs if len(p) == 2 and p[0].distance < RATIO_TEST * p[1].distance]
        if not good:
            continue
        ours = np.array([m.queryIdx for m in good])
        theirs = np.array([m.trainIdx for m in good])
        east, north = placed.to_ground(features.points[theirs, 0], features.points[theirs, 1])
        source = np.column_stack([new_east[ours], new_north[ours]])
        target = np.column_stack([east, north])
        near = np.hypot(*(source - target).T) <= gate_m
        if near.sum() >= 3:
            sources.append(source[near])
            targets.append(target[near])
            used.append(index)
    if not sources:
        return None
    threshold = RANSAC_PX * footprint.gsd_m
    agreeing = [_agreeing(s, t, threshold) for s, t in zip(sources, targets, strict=True)]
    source = np.concatenate([s[keep] for s, keep in zip(sources, agreeing, strict=True)])
    target = np.concatenate([t[keep] for t, keep in zip(targets, agreeing, strict=True)])
    used = [index for index, keep in zip(used, agreeing, strict=True) if keep.any()]
    if len(source) < MIN_INLIERS:
        return None
    matrix = _least_squares_similarity(source, target)
    scale = math.hypot(matrix[0, 0], matrix[1, 0])
    turn = math.degrees(math.atan2(matrix[1, 0], matrix[0, 0]))
    if abs(scale - 1) > MAX_SCALE_CHANGE or abs(turn) > MAX_TURN_DEG:
        return None
    moved = source @ matrix[:, :2].T + matrix[:, 2]
    residual = float(np.sqrt(np.mean(np.sum((moved - target) ** 2, axis=1))))
    similarity = np.vstack([matrix, [0.0, 0.0, 1.0]])
    return Registration(similarity, len(source), sum(len(s) for s in sources), residual, used)


def _agreeing(source: np.ndarray, target: np.ndarray, threshold: float) -> np.ndarray:
    """Which of one neighbour's matches agree with its own RANSAC similarity (none when it has
    too few): each neighbour is fitted alone, so that neighbours placed along different chains
    of registrations are all heard, not only the one with most matches."""
    keep = np.zeros(len(source), dtype=bool)
    if len(source) < MIN_INLIERS // 2:
        return keep
    matrix, inliers = cv2.estimateAffinePartial2D(source, target, method=cv2.RANSAC,
                                                  ransacReprojThreshold=threshold, maxIters=2000,
                                                  confidence=0.999, refineIters=10)
    if matrix is None or inliers is None or int(inliers.sum()) < MIN_INLIERS // 2:
        return keep
    return inliers.ravel().astype(bool)


def _least_squares_similarity(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The 2x3 similarity (shift, turn, scale) that fits source onto target in least squares."""
    x, y = source[:, 0].astype(np.float64), source[:, 1].astype(np.float64)
    ones, zeros = np.ones_like(x), np.zeros_like(x)
    rows = np.vstack([np.column_stack([x, -y, ones, zeros]), np.column_stack([y, x, zeros, ones])])
    values = np.concatenate([target[:, 0], target[:, 1]]).astype(np.float64)
    (a, b, tx, ty), *_ = np.linalg.lstsq(rows, values, rcond=None)
    return np.array([[a, -b, tx], [b, a, ty]])
