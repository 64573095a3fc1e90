"""Camera motion read from the detections themselves, for a counter fed detections but no frames.

When the camera pans, every animal in the picture moves together; the few that walk move
against that common motion. So the camera's frame-to-frame motion is the shift that carries
most of the previous frame's detections onto this frame's (a vote among the shifts to each
one's nearest neighbours, so that a herd's regular spacing does not alias it), refined as the
median shift of the pairs it makes: the walkers are its outliers. A shift only: a rotation or a
zoom fitted on a herd that fills a corner of the picture is ill-conditioned, and a wrong one
throws far tracks off (measured on the bench's ``altitude`` flight); from one frame to the next
a drone's roll and climb are small beside its pan.

It serves both the tracker's camera-motion compensation (from the second frame on, so that its
Kalman filter never learns the pan as velocity) and the ground positions stitching compares.
With too few detections, or no majority moving together, the motion is unknown: the last known
step is assumed to continue (a survey flight pans steadily) and the frame is counted as a guess
(``frames_guessed``).
"""

from __future__ import annotations

import numpy as np

# fewer detections than this in either frame: the motion is a guess (two walkers could fake a pan)
MIN_POINTS = 4
# a detection agrees with a shift within this fraction of the median box size
INLIER_SIZES = 0.25
# the largest shift searched, in box sizes (a stride-5 pan at 9 px a frame, a 30 px jump)
MAX_SHIFT_SIZES = 2.5
# each previous detection votes for the shifts to this many of its nearest current detections
CANDIDATES_PER_POINT = 3
# shifts at least this fraction as supported as the best compete on smoothness
SMOOTH_SUPPORT = 0.25
# at most about this many previous detections vote (a dense herd has a hundred)
VOTERS = 40


class HerdMotion:
    """Frame-to-frame camera motion from consecutive frames' detection centres.

    ``estimate(xyxy)`` takes one processed frame's detections (boxes) and returns the 2x3
    transform from the previous processed frame's pixels to this one's (identity on the first).
    """

    def __init__(self) -> None:
        self.frames_estimated = 0
        self.frames_guessed = 0
        self._previous: np.ndarray | None = None  # the previous frame's centres; None: none seen yet
        self._last_step = np.eye(2, 3)

    def estimate(self, xyxy: np.ndarray) -> np.ndarray:
        centres = _centres(xyxy)
        previous, self._previous = self._previous, centres
        if previous is None:
            return np.eye(2, 3)
        step = _register(previous, centres, _median_size(xyxy), self._last_step)
        if step is None:
            self.frames_guessed += 1
            return self._last_step.copy()
        self.frames_estimated += 1
        self._last_step = step
        return step


def _register(before: np.ndarray, after: np.ndarray, size: float, last: np.ndarray) -> np.ndarray | None:
    if min(len(before), len(after)) < MIN_POINTS or size <= 0:
        return None
    expected = before + last[:, 2]  # where the last step would carry them
    offsets = after[None, :, :] - expected[:, None, :]  # (B, A, 2)
    shift = _voted_shift(offsets, size)
    if shift is None:
        return None
    tolerance = INLIER_SIZES * size
    residual = np.linalg.norm(offsets - shift, axis=2)
    partner, agrees = residual.argmin(axis=1), residual.min(axis=1) < tolerance
    if agrees.sum() < MIN_POINTS:
        return None
    step = np.eye(2, 3)
    step[:, 2] = np.median(after[partner[agrees]] - before[agrees], axis=0)
    return step

def _voted_shift(offsets: np.ndarray, size: float) -> np.ndarray | None:
    """The shift that brings the most previous detections onto a current one; None without a
    majority of them (or of the current ones, whichever is fewer)."""
    offsets = offsets[:: max(1, len(offsets) // VOTERS)]  # a spread-out sample votes: bounded cost
    distance = np.linalg.norm(offsets, axis=2)
    nearest = np.argsort(distance, axis=1)[:, :CANDIDATES_PER_POINT]
    candidates = np.take_along_axis(offsets, nearest[:, :, None], axis=1).reshape(-1, 2)
    candidates = candidates[np.linalg.norm(candidates, axis=1) < MAX_SHIFT_SIZES * size]
    if len(candidates) == 0:
        return None
    tolerance = INLIER_SIZES * size
    flat = offsets.reshape(-1, 2)
    # (candidates, previous, current): which previous detections each candidate lands on a current one
    lands = (((offsets[None] - candidates[:, None, None, :]) ** 2).sum(axis=3) < tolerance**2).any(axis=2)
    support = lands.sum(axis=1)
    needed = max(MIN_POINTS, min(offsets.shape[0], offsets.shape[1]) // 2)
    if support.max() < needed:
        return None
    # Of the shifts most agree on, the one nearest the last step: the camera moves smoothly,
    # while a running herd can outnumber the animals standing still.
    strong = np.flatnonzero(support >= max(MIN_POINTS, SMOOTH_SUPPORT * support.max()))
    best = strong[np.argmin(np.linalg.norm(candidates[strong], axis=1))]
    close = np.linalg.norm(flat - candidates[best], axis=1) < tolerance
    return np.median(flat[close], axis=0)


def _centres(xyxy: np.ndarray) -> np.ndarray:
    if len(xyxy) == 0:
        return np.zeros((0, 2))
    return (np.asarray(xyxy[:, :2], dtype=float) + np.asarray(xyxy[:, 2:], dtype=float)) / 2


def _median_size(xyxy: np.ndarray) -> float:
    if len(xyxy) == 0:
        return 0.0
    return float(np.median(np.sqrt(np.clip((xyxy[:, 2] - xyxy[:, 0]) * (xyxy[:, 3] - xyxy[:, 1]), 0, None))))
