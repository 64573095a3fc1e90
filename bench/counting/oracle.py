"""A noisy oracle detector: answers from the ground truth, with a real detector's failings.

It misses animals (more in crowds, under partial occlusion, where the region's edge cuts
them, and when they are small), jitters boxes, scatters scores, and reports flickering false
positives. It has a **resolution limit**: an animal whose box is under ``min_px`` pixels
(square root of its area) *at the model's input* is never found, and between ``min_px`` and ``sure_px`` it is
found less often, as with real models on downscaled 4K frames (tiling fixes exactly that).

It answers for a *region* of a frame seen at a *scale* (model-input pixels per frame
pixel): the whole frame letterboxed into ``input_size`` by default, or a tile. All its
randomness is drawn once per sequence in tables indexed by (frame, animal), so the same
animal in the same frame gets the same draw whatever region asks: a tile differs from the
whole frame only through scale and edges, as a real detector would. Whether an animal is
found is ``latent[f, id] >= p_miss``; the latent is uniform in each frame and correlated
from frame to frame (a detector misses the same animal for a few frames in a row).

``OracleDetector`` plugs it into ``ml_engine.pipeline.process_video`` through the
pipeline's ``DetectorLike`` interface.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import supervision as sv
from scipy.special import ndtr

from bench.counting.scene import SEEN_VISIBILITY, Scene
from core.errors import InvalidInput

CLASS_NAME = "cow"


@dataclass(frozen=True)
class OracleConfig:
    input_size: int = 640  # the model's input, long side (letterboxed)
    min_px: float = 5.0  # box size (sqrt of area) at the model's input below which nothing is found
    sure_px: float = 9.0  # from this size on, size no longer causes misses
    small_miss: float = 0.5  # extra miss probability just above min_px, fading to 0 at sure_px
    miss: float = 0.04  # base miss probability
    crowd_miss: float = 0.04  # per overlapping neighbour (IoU > 0.05), up to crowd_cap
    crowd_cap: float = 0.25
    occlusion_miss: float = 0.9  # times the hidden fraction of the body
    edge_miss: float = 0.35  # when the region's edge cuts the box
    min_visibility: float = SEEN_VISIBILITY  # less visible than this: never found (the true count's limit too)
    latent_correlation: float = 0.6  # frame-to-frame correlation of the miss draws
    jitter: float = 0.04  # sd of each box side, as a fraction of the box size
    jitter_input_px: float = 0.5  # plus this many model-input pixels (quantisation)
    score: float = 0.78
    score_sd: float = 0.1
    false_per_frame: float = 0.1  # new false-positive "ghosts" per frame
    false_max_frames: int = 3  # a ghost lasts 1..this many frames
    false_score: tuple[float, float] = (0.3, 0.56)


@dataclass
class Detections:
    """One frame's detections: ``xyxy`` (K, 4), ``scores`` (K,), ``truth`` (K,): the animal id
    each came from, -1 for a false positive (the trackers never see it)."""

    xyxy: np.ndarray
    scores: np.ndarray
    truth: np.ndarray

    def to_supervision(self) -> sv.Detections:
        det = sv.Detections(
            xyxy=self.xyxy.astype(np.float32).reshape(-1, 4),
            confidence=self.scores.astype(np.float32),
            class_id=np.zeros(len(self.scores), dtype=int),
        )
        det.data["class_name"] = np.array([CLASS_NAME] * len(self.scores), dtype=str)
        det.data["truth"] = self.truth.astype(int)  # for diagnostics; trackers carry data along
        return det


class Oracle:
    """The noisy detector of one scene."""

    def __init__(self, scene: Scene, config: OracleConfig | None = None, seed: int = 0) -> None:
        self.scene = scene
        self.config = config or OracleConfig()
        self.gt = scene.ground_truth
        rng = np.random.default_rng([scene.seed, seed, 7])
        n_frames, n = scene.frames, scene.animals
        self._latent = _correlated_uniform(rng, n_frames, n, self.config.latent_correlation)
        self._jitter = rng.standard_normal((n_frames, n, 4))
        self._score_noise = rng.standard_normal((n_frames, n))
        self._ghosts = _ghosts(scene, self.config, rng)

    def full_frame_scale(self) -> float:
        sc = self.scene.scenario
        return self.config.input_size / max(sc.width, sc.height)

    def detect(
        self,
        f: int,
        region: tuple[float, float, float, float] | None = None,
        scale: float | None = None,
        threshold: float = 0.0,
    ) -> Detections:
        """What the detector reports for ``region`` (xyxy in frame pixels; default the whole
        frame) of frame ``f`` seen at ``scale`` model-input pixels per frame pixel (default:
        the whole frame letterboxed into ``input_size``). Boxes are in frame pixels, clipped
        to the region; scores below ``threshold`` are dropped."""
        sc = self.scene.scenario
        region = (0.0, 0.0, float(sc.width), float(sc.height)) if region is None else region
        scale = self.full_frame_scale() if scale is None else scale
        animals = self._animals(f, np.asarray(region, dtype=float), scale)
        ghosts = self._ghost_boxes(f, np.asarray(region, dtype=float), scale)
        xyxy = np.vstack([animals.xyxy, ghosts.xyxy])
        scores = np.concatenate([animals.scores, ghosts.scores])
        truth = np.concatenate([animals.truth, ghosts.truth])
        keep = scores >= threshold
        return Detections(xyxy[keep], scores[keep], truth[keep])

    def _animals(self, f: int, region: np.ndarray, scale: float) -> Detections:
        cfg, gt = self.config, self.gt
        vis = gt.visibility[f]
        candidates = np.flatnonzero((gt.in_frame[f] > 0) & (vis >= cfg.min_visibility))
        boxes = gt.boxes[f, candidates]
        in_region = _clip(boxes, region)
        area = _area(boxes)
        kept_area = _area(in_region) / np.maximum(area, 1e-9)
        cut = np.any(np.abs(in_region - boxes) > 0.5, axis=1)  # the frame or region edge cuts it
        size_px = np.sqrt(_area(in_region)) * scale
        small = np.clip((cfg.sure_px - size_px) / (cfg.sure_px - cfg.min_px), 0, 1)
        crowd = np.minimum(cfg.crowd_miss * _neighbours(boxes), cfg.crowd_cap)
        p_miss = (
            cfg.miss + crowd + cfg.occlusion_miss * (1 - vis[candidates]) + cfg.edge_miss * cut
            + cfg.small_miss * small
        )
        found = (self._latent[f, candidates] >= p_miss) & (size_px >= cfg.min_px) & (kept_area >= 0.3)
        ids = candidates[found]
        size = np.repeat(np.stack([boxes[found, 2] - boxes[found, 0], boxes[found, 3] - boxes[found, 1]], 1), 2,
                         axis=1)
        sd = cfg.jitter * size + cfg.jitter_input_px / scale
        noisy = boxes[found] + self._jitter[f, ids] * sd
        noisy = _clip(noisy, region)
        score = (
            cfg.score - 0.3 * (1 - vis[ids]) - 0.25 * small[found] - 0.15 * crowd[found]
            + cfg.score_sd * self._score_noise[f, ids]
        )
        valid = (noisy[:, 2] - noisy[:, 0] > 1) & (noisy[:, 3] - noisy[:, 1] > 1)
        return Detections(noisy[valid], np.clip(score[valid], 0.01, 0.99), ids[valid])

    def _ghost_boxes(self, f: int, region: np.ndarray, scale: float) -> Detections:
        g = self._ghosts
        alive = np.flatnonzero((g["start"] <= f) & (f < g["start"] + g["frames"]))
        matrix = self.scene.camera.matrix(f)
        centres = g["xy"][alive] @ matrix[:, :2].T + matrix[:, 2]
        half = (g["size"][alive] * self.scene.camera.scale[f])[:, None] / 2 * np.array([1.0, 0.6])
        boxes = _clip(np.hstack([centres - half, centres + half]), region)
        keep = np.sqrt(_area(boxes)) * scale >= self.config.min_px
        scores = g["score"][alive] + 0.04 * np.sin(f + alive)  # flicker a little
        return Detections(boxes[keep], scores[keep], np.full(int(keep.sum()), -1))

    def sequence(self, threshold: float, frames: range | None = None) -> list[Detections]:
        """Whole-frame detections of every frame (what the benchmark caches)."""
        frames = range(self.scene.frames) if frames is None else frames
        return [self.detect(f, threshold=threshold) for f in frames]


def _correlated_uniform(rng: np.random.Generator, n_frames: int, n: int, rho: float) -> np.ndarray:
    """(F, N) uniforms, each column an AR(1) sequence with correlation ``rho`` (Gaussian copula)."""
    z = np.empty((n_frames, n))
    z[0] = rng.standard_normal(n)
    innovation = np.sqrt(1 - rho * rho)
    for f in range(1, n_frames):
        z[f] = rho * z[f - 1] + innovation * rng.standard_normal(n)
    return ndtr(z)


def _ghosts(scene: Scene, cfg: OracleConfig, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """False positives fixed on the ground (a rock, a bush) for 1..false_max_frames frames."""
    sc = scene.scenario
    n = rng.poisson(cfg.false_per_frame * sc.frames)
    start = rng.integers(0, sc.frames, n)
    cam = scene.camera
    span = np.array([sc.width, sc.height]) / cam.scale[start][:, None]
    xy = cam.centre[start] + rng.uniform(-0.5, 0.5, (n, 2)) * span
    return {
        "start": start,
        "frames": rng.integers(1, cfg.false_max_frames + 1, n),
        "xy": xy,
        "size": rng.uniform(*sc.animal_px, n) / cam.scale[0],
        "score": rng.uniform(*cfg.false_score, n),
    }


def _clip(boxes: np.ndarray, region: np.ndarray) -> np.ndarray:
    return np.clip(boxes, region[[0, 1, 0, 1]], region[[2, 3, 2, 3]])


def _area(boxes: np.ndarray) -> np.ndarray:
    return np.maximum(boxes[:, 2] - boxes[:, 0], 0) * np.maximum(boxes[:, 3] - boxes[:, 1], 0)


def _neighbours(boxes: np.ndarray) -> np.ndarray:
    """How many other boxes overlap each box with IoU above 0.05."""
    if len(boxes) == 0:
        return np.zeros(0)
    iou = box_iou(boxes, boxes)
    np.fill_diagonal(iou, 0)
    return (iou > 0.05).sum(axis=1)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix (len(a), len(b)) of xyxy boxes."""
    low = np.maximum(a[:, None, :2], b[None, :, :2])
    high = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(high - low, 0, None), axis=2)
    union = _area(a)[:, None] + _area(b)[None, :] - inter
    return inter / np.maximum(union, 1e-9)


class OracleDetector:
    """The oracle behind the pipeline's detector interface (``DetectorLike``).

    The pipeline hands ``detect`` the images of the frames it detects, in order: frames 0,
    stride, 2*stride, ... . The oracle answers from the ground truth, so it needs each
    image's frame index: it counts them, and checks that every image has the scene's size
    (a mismatch means the counting went wrong, and the run fails loudly).

    With tiling the pipeline calls ``detect_views`` instead: each view carries its frame
    index and its region, and the oracle answers for that region seen at the scale the
    model would see it (the region letterboxed into ``input_size``), so its resolution
    limit applies at the tile's scale. ``views_seen`` and ``calls`` count what it was asked.
    """

    labels = {0: CLASS_NAME}
    model_id = "oracle"
    device = "cpu"
    random_weights = False

    def __init__(self, oracle: Oracle, stride: int) -> None:
        self.oracle = oracle
        self.stride = stride
        self._next_frame = 0
        self.calls = 0  # detect_views calls (forward passes a real model would make)
        self.views_seen = 0

    def detect(self, images: list[Any], threshold: float, class_names: Any = None) -> list[sv.Detections]:
        sc = self.oracle.scene.scenario
        results = []
        for image in images:
            if image.shape[:2] != (sc.height, sc.width):
                raise ValueError(f"oracle for {sc.width}x{sc.height} frames got an image of {image.shape}")
            results.append(self.oracle.detect(self._next_frame, threshold=threshold).to_supervision())
            self._next_frame += self.stride
        return results

    def class_ids(self, class_names: Any) -> set[int]:
        """The oracle knows one class; any other name is refused as the real model would."""
        unknown = set(class_names) - {CLASS_NAME}
        if unknown:
            raise InvalidInput(f"unknown class name(s) {sorted(unknown)}; valid names: {CLASS_NAME}")
        return {0}

    def detect_views(self, images: list[Any], views: list[Any], threshold: float,
                     class_names: Any = None) -> list[sv.Detections]:
        sc = self.oracle.scene.scenario
        self.calls += 1
        results = []
        for view in views:
            if images[view.image].shape[:2] != (sc.height, sc.width):
                raise ValueError(f"oracle for {sc.width}x{sc.height} frames got an image of {images[view.image].shape}")
            results.append(self.oracle.detect(view.frame, region=tuple(float(v) for v in view.region),
                                              scale=self.scale_of(view.region), threshold=threshold).to_supervision())
        self.views_seen += len(views)
        return results

    def scale_of(self, region: tuple[int, int, int, int]) -> float:
        """Model-input pixels per frame pixel for a region letterboxed into the input."""
        return self.oracle.config.input_size / max(region[2] - region[0], region[3] - region[1])

    def model_input_size(self, width: int, height: int) -> tuple[int, int]:
        scale = self.oracle.config.input_size / max(width, height)
        return round(width * scale), round(height * scale)

    def tile_size(self) -> tuple[int, int]:
        return self.oracle.config.input_size, self.oracle.config.input_size

    def describe(self) -> dict[str, Any]:
        return {"id": "oracle", "device": "cpu", "random_weights": False}
