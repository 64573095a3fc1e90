"""Render and cache sequences, run the columns on them, and check the full pipeline.

Each (scenario, seed) is rendered once: its whole-frame oracle detections and its frames as
CMC sees them (grey, ``CMC_WIDTH`` wide) are cached under ``bench/results/counting-cache``
(git-ignored). The columns then run on the cached data at each stride: stride ``k`` keeps
frames 0, k, 2k, ..., exactly the frames the pipeline detects at ``frame_stride=k``.

``pipeline_check`` renders full-size frames, encodes them with x264, and runs the real
``process_video`` (PyAV decode -> the oracle through the detector interface -> tracking ->
counting -> annotated x264 video and exports), then compares its counts and tracks with the
``product`` column's fed the same detections and the same decoded frames: they must be identical.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import time
from dataclasses import asdict
from itertools import pairwise
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from bench.counting import columns as cols
from bench.counting.lawnmower import srt_text  # also registers the lawnmower scenarios
from bench.counting.metrics import count_breakdown, count_error_pct, tracking_scores
from bench.counting.oracle import Detections, Oracle, OracleConfig, OracleDetector
from bench.counting.render import ground_texture, render_frame, shrink_texture
from bench.counting.scene import SCENARIOS, Scenario, Scene
from ml_engine.counting import camera_frame

CACHE_VERSION = 3  # bump when rendering or the oracle change in a way their parameters do not show


def _cache_key(scenario: Scenario, seed: int) -> str:
    text = f"{CACHE_VERSION}|{scenario!r}|{OracleConfig()!r}|{cols.LOW_THRESHOLD}|{cols.CMC_WIDTH}"
    return f"{scenario.name}-seed{seed}-{hashlib.sha1(text.encode()).hexdigest()[:10]}"


class Prepared:
    """One rendered sequence: scene (with ground truth), detections per frame, CMC frames."""

    def __init__(self, scene: Scene, detections: list[Detections], grey: np.ndarray, render_s: float) -> None:
        self.scene, self.detections, self.grey, self.render_s = scene, detections, grey, render_s


def prepare(scenario: Scenario, seed: int, cache_dir: Path) -> Prepared:
    scene = Scene(scenario, seed)
    key = _cache_key(scenario, seed)
    det_path, grey_path = cache_dir / f"{key}.npz", cache_dir / f"{key}.grey.npy"
    if det_path.exists() and grey_path.exists():
        return Prepared(scene, _load_detections(det_path), np.load(grey_path, mmap_mode="r"), 0.0)
    started = time.perf_counter()
    detections = Oracle(scene).sequence(cols.LOW_THRESHOLD)
    grey = render_cmc_frames(scene)
    cache_dir.mkdir(parents=True, exist_ok=True)
    _save_detections(det_path, detections)
    tmp = grey_path.with_suffix(".tmp.npy")
    np.save(tmp, grey)
    tmp.replace(grey_path)
    return Prepared(scene, detections, grey, time.perf_counter() - started)


def render_cmc_frames(scene: Scene) -> np.ndarray:
    """(F, h, CMC_WIDTH) grey frames, drawn directly at CMC size from a prefiltered ground."""
    out_scale = cols.CMC_WIDTH / scene.scenario.width
    texture = shrink_texture(ground_texture(scene), out_scale)
    return np.stack(
        [cv2.cvtColor(render_frame(scene, f, texture, out_scale=out_scale), cv2.COLOR_RGB2GRAY)
         for f in range(scene.frames)]
    )


def _save_detections(path: Path, detections: list[Detections]) -> None:
    offsets = np.cumsum([0] + [len(d.scores) for d in detections])
    tmp = path.with_suffix(".tmp.npz")
    np.savez(
        tmp,
        xyxy=np.vstack([d.xyxy for d in detections]) if detections else np.zeros((0, 4)),
        scores=np.concatenate([d.scores for d in detections]),
        truth=np.concatenate([d.truth for d in detections]),
        offsets=offsets,
    )
    tmp.replace(path)


def _load_detections(path: Path) -> list[Detections]:
    with np.load(path) as data:
        xyxy, scores, truth, offsets = data["xyxy"], data["scores"], data["truth"], data["offsets"]
    return [Detections(xyxy[a:b], scores[a:b], truth[a:b]) for a, b in pairwise(offsets)]


def sequence_at(prep: Prepared, stride: int, frames: int | None = None, with_frames: bool = True,
                srt: str | None = None) -> cols.Sequence:
    n = prep.scene.frames if frames is None else min(frames, prep.scene.frames)
    chosen = list(range(0, n, stride))
    sc = prep.scene.scenario
    return cols.Sequence(
        frames=chosen,
        fps=sc.fps / stride,
        source_fps=sc.fps,
        detections=[prep.detections[f].to_supervision() for f in chosen],
        small_grey=[np.asarray(prep.grey[f]) for f in chosen] if with_frames else None,
        frame_width=sc.width,
        srt=srt,
    )


def evaluate(prep: Prepared, seq: cols.Sequence, tracked: cols.Tracked) -> dict[str, Any]:
    gt = prep.scene.ground_truth
    true = gt.true_count
    scores = tracking_scores(gt, seq.frames, tracked.ids, tracked.boxes)
    n = max(len(seq.frames), 1)
    return {
        "true": true,
        "count": tracked.count,
        "err_pct": round(count_error_pct(true, tracked.count), 3),
        # against the stricter count used until 2026-12-01 (see bench/counting/scene.py)
        "true_half_visible": gt.true_count_half_visible,
        "err_half_visible_pct": round(count_error_pct(gt.true_count_half_visible, tracked.count), 3),
        **{k: (round(v, 4) if isinstance(v, float) else v) for k, v in scores.items()},
        **count_breakdown(gt, seq.frames, tracked.ids, tracked.truths),
        "processed_frames": len(seq.frames),
        "tracker_ms_per_frame": round(1000 * tracked.seconds / n, 3),
        "cmc_ms_per_frame": round(1000 * tracked.cmc_seconds / n, 3),
    }


def run_sequence(name: str, seed: int, strides: list[int], columns: list[str], cache_dir: str,
                 frames: int | None = None) -> list[dict[str, Any]]:
    """Every column at every stride on one (scenario, seed). Runs in a worker process."""
    cv2.setNumThreads(1)
    scenario = SCENARIOS[name] if frames is None else SCENARIOS[name].short(frames)
    prep = prepare(scenario, seed, Path(cache_dir))
    rows = []
    srt = srt_text(prep.scene) if "telemetry" in columns else None
    for stride in strides:
        seq = sequence_at(prep, stride, with_frames=any(cols.needs_frames(c) for c in columns), srt=srt)
        for column in columns:
            tracked = cols.run_column(column, seq)
            rows.append({"scenario": name, "seed": seed, "stride": stride, "column": column,
                         "render_s": round(prep.render_s, 2), **evaluate(prep, seq, tracked),
                         **_passes_facts(tracked.passes)})
    return rows


def _passes_facts(passes: dict[str, Any] | None) -> dict[str, Any]:
    """A lawnmower flight's passes as the product saw them (nothing for one pass)."""
    if passes is None:
        return {}
    return {"passes": len(passes["passes"]), "passes_placement": passes["placement"],
            "passes_error_px": passes["error_px"], "merged_across_passes": passes["merged_across_passes"]}


# --- the full pipeline on one seed -------------------------------------------------------------


def write_video(scene: Scene, path: Path, crf: int = 18) -> float:
    """Encode the scene's full-size frames as H.264 (ml_engine's own writer); returns seconds."""
    from ml_engine.media.video import VideoWriter

    started = time.perf_counter()
    texture = ground_texture(scene)
    sc = scene.scenario
    tmp = path.with_suffix(".tmp.mp4")
    with VideoWriter(tmp, sc.width, sc.height, sc.fps, crf=crf, preset="veryfast") as writer:
        for f in range(scene.frames):
            writer.write(render_frame(scene, f, texture))
    tmp.replace(path)
    return time.perf_counter() - started


def pipeline_check(name: str, seed: int, stride: int, frames: int | None, cache_dir: str) -> dict[str, Any]:
    """The real pipeline on one sequence vs the counting stage alone (the product column) on the same frames."""
    from core.tiling import parse_tiling
    from ml_engine.detection import DetectionConfig
    from ml_engine.pipeline import PipelineConfig, process_video

    scenario = SCENARIOS[name] if frames is None else SCENARIOS[name].short(frames)
    cache = Path(cache_dir)
    prep = prepare(scenario, seed, cache)
    video = cache / f"{_cache_key(scenario, seed)}.mp4"
    encode_s = 0.0
    if not video.exists():
        encode_s = write_video(prep.scene, video)
    detector = OracleDetector(Oracle(prep.scene), stride)
    # the whole frame, as the counting stage is fed (TILING=auto would tile 4K: bench/counting/tiling.py checks that)
    config = PipelineConfig(detection=DetectionConfig(tiling=parse_tiling("off")), frame_stride=stride)
    with tempfile.TemporaryDirectory(prefix="counting-bench-") as out:
        started = time.perf_counter()
        result = process_video(video, out, detector, config)
        seconds = time.perf_counter() - started
    stats = result.stats
    stage = counting_stage_on_video(video, sequence_at(prep, stride, with_frames=False))
    pipeline_tracks = [_track_key(t) for t in stats["tracks"]]
    stage_tracks = [_track_key(t) for t in stage.tracks]
    return {
        "scenario": name,
        "seed": seed,
        "stride": stride,
        "frames": scenario.frames,
        "size": f"{scenario.width}x{scenario.height}",
        "true": prep.scene.ground_truth.true_count,
        "pipeline_count": stats["counts"]["total_unique"],
        "counting_stage_count": stage.count,
        "tracks_identical": pipeline_tracks == stage_tracks,
        "pipeline_fps": round(scenario.frames / seconds, 2),
        "pipeline_seconds": round(seconds, 2),
        "video_encode_s": round(encode_s, 2),
        "processing": stats["processing"],
    }


def counting_stage_on_video(video: Path, seq: cols.Sequence) -> cols.Tracked:
    """The product's counting stage alone (defaults), fed ``seq``'s detections and the frames
    decoded from ``video`` (which CMC looks at), as the pipeline feeds it."""
    from ml_engine.media.video import iter_frames

    wanted = set(seq.frames)
    grey = [camera_frame(frame.image) for frame in iter_frames(video) if frame.index in wanted]
    frames_seq = cols.Sequence(seq.frames, seq.fps, seq.source_fps, seq.detections, grey, seq.frame_width)
    return cols.run_product(frames_seq, "product")


def _track_key(track: dict[str, Any]) -> tuple:
    return (track["id"], track["first_frame"], track["last_frame"], track["frames_seen"])


def cmc_cost(frames: int = 30) -> list[dict[str, Any]]:
    """Milliseconds per frame of camera-motion estimation at 1080p and 4K, one thread: the
    product's path (``camera_frame``: RGB -> grey -> 480 px, then ``CameraMotion.estimate``
    with the frame's detections masked), split into its two parts; the library's methods on
    the same 480 px grey frame; and the library's own default (sparse optical flow on the
    full frame downscaled by 2) for comparison."""
    from trackers import CMC, CMCConfig

    from ml_engine.counting import CameraMotion

    cv2.setNumThreads(1)
    rows = []
    for name in ("pan", "small_4k"):
        scene = Scene(SCENARIOS[name].short(frames), 0)
        texture = ground_texture(scene)
        images = [render_frame(scene, f, texture) for f in range(frames)]  # RGB, as decoded
        boxes = [d.xyxy for d in Oracle(scene).sequence(cols.LOW_THRESHOLD)]
        sc = scene.scenario
        size = f"{sc.width}x{sc.height}"
        started = time.perf_counter()
        small = [camera_frame(image) for image in images]
        prepare_ms = 1000 * (time.perf_counter() - started) / frames
        motion = CameraMotion()
        started = time.perf_counter()
        for frame, dets in zip(small, boxes, strict=True):
            motion.estimate(frame, dets)
        estimate_ms = 1000 * (time.perf_counter() - started) / frames
        rows.append({"size": size, "method": "product (sparse optical flow, animals masked)",
                     "input": f"grey {cols.CMC_WIDTH} px", "prepare_ms": round(prepare_ms, 2),
                     "estimate_ms": round(estimate_ms, 2), "ms_per_frame": round(prepare_ms + estimate_ms, 2)})
        for method in ("sparseOptFlow", "orb", "ecc"):
            cmc = cols.ScaledCMC(method, sc.width)
            started = time.perf_counter()
            for frame in small:
                cmc.estimate(cv2.cvtColor(frame.grey, cv2.COLOR_GRAY2BGR))
            per = prepare_ms + 1000 * (time.perf_counter() - started) / frames
            rows.append({"size": size, "method": f"trackers {method}", "input": f"grey {cols.CMC_WIDTH} px",
                         "ms_per_frame": round(per, 2)})
        cmc = CMC(CMCConfig(method="sparseOptFlow", downscale=2))
        started = time.perf_counter()
        for image in images:
            cmc.estimate(cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        rows.append({"size": size, "method": "trackers sparseOptFlow",
                     "input": "library default: full BGR frame, downscale 2",
                     "ms_per_frame": round(1000 * (time.perf_counter() - started) / frames, 2)})
    return rows


def describe_config() -> dict[str, Any]:
    return {
        "oracle": asdict(OracleConfig()),
        "track_threshold": cols.TRACK_THRESHOLD,
        "low_threshold": cols.LOW_THRESHOLD,
        "min_hits": cols.MIN_HITS,
        "track_buffer_s": cols.TRACK_BUFFER_S,
        "match_iou": cols.MATCH_IOU,
        "cmc_width": cols.CMC_WIDTH,
        "scenarios": {name: asdict(s) for name, s in SCENARIOS.items()},
    }


def dumps(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, default=str)
