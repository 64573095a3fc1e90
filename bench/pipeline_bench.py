"""Pipeline benchmark: our streaming pipeline against a typical notebook loop and the bare model.

Three ways over the same video with the same model, each in its own process (so each
one's peak RSS is its own):

  pipeline    ml_engine.pipeline.process_video: threaded decode -> batched torch
              preprocessing + inference -> track/annotate/H.264 encode, bounded queues.
  naive       the usual notebook loop, one frame at a time: cv2.VideoCapture -> HF
              AutoImageProcessor -> model -> post_process_object_detection ->
              trackers.ByteTrackTracker -> supervision box/label annotators -> cv2.VideoWriter (mp4v).
  model-only  the model's forward pass alone, in batches, on frames decoded and
              preprocessed beforehand: the ceiling for any pipeline with this model.

    python bench/pipeline_bench.py                      # tiny RT-DETRv2, 10 s synthetic 1080p clip
    python bench/pipeline_bench.py --arch-size real --device cuda --seconds 20
    python bench/pipeline_bench.py --model PekingU/rtdetr_v2_r18vd --video field.mp4
    python bench/pipeline_bench.py --memory            # 1-minute vs 10-minute video: peak RSS
    python bench/pipeline_bench.py --tiling-cost --input-size 640 --size 3840x2160   # detection cost per frame, TILING off vs auto
    python bench/pipeline_bench.py --tracking-cost      # the pipeline's fps with CMC and stitching off / on

Prints a table and writes JSON to bench/results/. Timings on a shared machine move with
its load, so the load average is recorded beside each figure, and CPU seconds per frame
(less sensitive to other processes) are reported too.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from fractions import Fraction
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

RESULTS = REPO / "bench" / "results"
VIDEO_CACHE = RESULTS / "videos"
MODES = ("pipeline", "naive", "model-only")
MEMORY_TARGET_MB = 150.0


@dataclass
class ModeResult:
    mode: str
    frames: int
    seconds: float
    fps: float
    cpu_seconds: float
    peak_rss_mb: float
    load_before: float
    load_after: float
    detail: dict[str, Any]

    @property
    def cpu_ms_per_frame(self) -> float:
        return 1000 * self.cpu_seconds / max(self.frames, 1)


# --- command line -----------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="checkpoint dir or hub id (default: build a random RT-DETRv2)")
    parser.add_argument("--arch-size", choices=("tiny", "real"), default="tiny",
                        help="size of the random RT-DETRv2 built when --model is not given: tiny (320 px, "
                             "a few MB) or real (the rtdetr_v2_r18vd architecture, 640 px)")
    parser.add_argument("--video", type=Path, help="video to process (default: a synthetic clip)")
    parser.add_argument("--seconds", type=float, default=10.0, help="synthetic clip length (default 10)")
    parser.add_argument("--fps", type=int, default=30, help="synthetic clip frame rate (default 30)")
    parser.add_argument("--size", default="1920x1080", help="synthetic clip size (default 1920x1080)")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--threshold", type=float, default=0.5)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--input-size", type=int, default=None, help="model input size override")
    parser.add_argument("--runtime", default="torch", help="RUNTIME for the pipeline and model-only modes: "
                                                           "torch, onnxruntime, openvino or auto")
    parser.add_argument("--precision", default="fp32", help="RUNTIME_PRECISION (fp32, bf16, int8)")
    parser.add_argument("--dtype", default="auto", help="torch autocast dtype (auto, float32, float16, bfloat16)")
    parser.add_argument("--preset", default="veryfast", help="x264 preset of the pipeline's output (VIDEO_PRESET)")
    parser.add_argument("--modes", default=",".join(MODES), help="comma-separated subset of " + ", ".join(MODES))
    parser.add_argument("--memory", action="store_true",
                        help="peak RSS of the pipeline on a 1-minute and a 10-minute synthetic 1080p video")
    parser.add_argument("--memory-fps", type=int, default=10, help="frame rate of the memory videos (default 10)")
    parser.add_argument("--memory-stride", type=int, default=10, help="frame stride in --memory runs (default 10)")
    parser.add_argument("--memory-minutes", default="1,10", help="video lengths for --memory (default 1,10)")
    parser.add_argument("--tiling", default="off",
                        help="TILING for the pipeline mode (default off, so figures compare with earlier runs)")
    parser.add_argument("--tiling-cost", action="store_true",
                        help="time detection per frame (preprocess + forward + post-process + merge) "
                             "with TILING=off and each of --tiling-values, on frames of --size")
    parser.add_argument("--tiling-values", default="auto", help="comma-separated TILING values for --tiling-cost")
    parser.add_argument("--repeats", type=int, default=5, help="timed batches per TILING value in --tiling-cost")
    parser.add_argument("--tile-batch-size", type=int, default=None,
                        help="TILE_BATCH_SIZE for --tiling-cost (default: the pipeline's)")
    parser.add_argument("--tracking-cost", action="store_true",
                        help="the pipeline mode with TRACKER=bytetrack STITCHING=off (no camera motion), "
                             "botsort (CMC) and botsort + stitching, interleaved --repeats times: the share "
                             "of the pipeline's fps that CMC and stitching cost")
    parser.add_argument("--tracker", default=None, help="TRACKER for the pipeline mode (default: the pipeline's)")
    parser.add_argument("--stitching", choices=("on", "off"), default=None,
                        help="STITCHING for the pipeline mode (default: the pipeline's)")
    parser.add_argument("--worker", choices=MODES, help=argparse.SUPPRESS)  # internal: run one mode
    parser.add_argument("--stride", type=int, default=1, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        result = run_mode(args)
        print("RESULT " + json.dumps(asdict(result)), flush=True)
        return 0
    with tempfile.TemporaryDirectory(prefix="cattlecounter-bench-") as scratch:
        model = args.model or build_model(Path(scratch) / "model", args.arch_size)
        if args.memory:
            report = memory_benchmark(args, model)
        elif args.tiling_cost:
            report = tiling_cost(args, model)
        elif args.tracking_cost:
            report = tracking_cost(args, model)
        else:
            report = throughput_benchmark(args, model)
    kind = "memory" if args.memory else "tiling" if args.tiling_cost else "tracking" if args.tracking_cost else "pipeline"
    path = save_report(report, kind)
    print(f"\nJSON: {path}")
    return 0


def build_model(directory: Path, size: str) -> str:
    from ml_engine.tiny_model import build_tiny_checkpoint

    return str(build_tiny_checkpoint(directory, arch="rt_detr_v2", size=size))


# --- the throughput comparison ---------------------------------------------------------------------------


def throughput_benchmark(args: argparse.Namespace, model: str) -> dict[str, Any]:
    width, height = parse_size(args.size)
    video = args.video or synthetic_video(width, height, args.fps, args.seconds)
    modes = [mode.strip() for mode in args.modes.split(",") if mode.strip()]
    print(f"video {video}\nmodel {model}  batch {args.batch_size}  device {args.device}  "
          f"threshold {args.threshold}\n")
    results = {mode: run_in_subprocess(mode, args, model, video) for mode in modes}
    print_table(results)
    ratios = {}
    if "pipeline" in results and "naive" in results:
        ratios["pipeline_over_naive"] = results["pipeline"].fps / results["naive"].fps
    if "pipeline" in results and "model-only" in results:
        ratios["pipeline_over_model_only"] = results["pipeline"].fps / results["model-only"].fps
    for name, value in ratios.items():
        print(f"{name.replace('_over_', ' / ').replace('_', '-')}: {value:.2f}x")
    if "pipeline_over_naive" in ratios:
        verdict = "met" if ratios["pipeline_over_naive"] >= 1.3 else "MISSED"
        print(f"target pipeline >= 1.3x naive: {verdict}")
    return {
        "kind": "throughput",
        "video": str(video),
        "model": model,
        "settings": settings_of(args),
        "results": {mode: {**asdict(result), "cpu_ms_per_frame": result.cpu_ms_per_frame}
                    for mode, result in results.items()},
        "ratios": ratios,
    }


# --- the cost of tiling ------------------------------------------------------------------------------------


def tiling_cost(args: argparse.Namespace, model: str) -> dict[str, Any]:
    """Detection alone, per frame, as the pipeline runs it: ``detect`` on a batch of frames
    with TILING=off; with tiling, every view of a batch of frames through ``detect_views``
    (one forward pass per ``tile_batch_size`` views) and the per-frame merge. Decode,
    tracking and encoding are left out: they do not change with tiling."""
    import numpy as np
    import torch

    from ml_engine.detection import DetectionConfig
    from ml_engine.detector import Detector
    from ml_engine.tiling import TilePlan, View, merge_views, parse_tiling, plan_tiles

    width, height = parse_size(args.size)
    detector = Detector.load(args.model or model, device=args.device, input_size=args.input_size)
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(args.batch_size)]
    cap = args.tile_batch_size or DetectionConfig().tile_batch_size
    rows = []
    print(f"model {model}  input {detector.spec.describe_input_size()}  frames {width}x{height}  "
          f"device {detector.device}  BATCH_SIZE {args.batch_size}  TILE_BATCH_SIZE {cap}\n")
    for value in ["off", *[v.strip() for v in args.tiling_values.split(",") if v.strip() and v.strip() != "off"]]:
        plan = plan_tiles(parse_tiling(value), (width, height), detector.model_input_size(width, height),
                          detector.tile_size())
        per_batch = max(1, min(args.batch_size, cap // plan.views_per_frame)) if plan.tiled else args.batch_size
        batch = frames[:per_batch]
        forwards = 0

        def run_batch(plan: TilePlan = plan, batch: list = batch) -> None:  # bound now, not late
            nonlocal forwards
            if not plan.tiled:
                detector.detect(batch, args.threshold)
                forwards += 1
                return
            views = [View(i, i, region) for i in range(len(batch)) for region in plan.regions]
            found = []
            for start in range(0, len(views), cap):
                found += detector.detect_views(batch, views[start:start + cap], args.threshold)
                forwards += 1
            n = plan.views_per_frame
            for i in range(len(batch)):
                merge_views(found[i * n:(i + 1) * n])

        run_batch()  # warm-up
        forwards = 0
        with _Clock() as clock:
            for _ in range(args.repeats):
                run_batch()
                _synchronize(detector.device)
        frames_done = args.repeats * len(batch)
        row = {"tiling": value, "tiled": plan.tiled, "views_per_frame": plan.views_per_frame,
               "tile": f"{plan.tile_size[0]}x{plan.tile_size[1]}" if plan.tile_size else None,
               "frames_per_forward": len(batch), "forwards_per_frame": round(forwards / frames_done, 2),
               "ms_per_frame": round(1000 * clock.wall / frames_done, 1),
               "cpu_ms_per_frame": round(1000 * clock.cpu / frames_done, 1), "torch_threads": torch.get_num_threads()}
        rows.append(row)
        print(f"TILING={value:<10} tiled={str(plan.tiled):<5} views/frame={plan.views_per_frame:<4} "
              f"frames/forward={len(batch)}  forwards/frame={row['forwards_per_frame']}  "
              f"{row['ms_per_frame']:.1f} ms/frame wall, {row['cpu_ms_per_frame']:.1f} ms CPU")
    off = rows[0]["ms_per_frame"]
    for row in rows[1:]:
        row["cost_over_off"] = round(row["ms_per_frame"] / off, 2) if off else None
    return {"kind": "tiling_cost", "model": model, "input": detector.spec.describe_input_size(),
            "size": f"{width}x{height}", "device": detector.device, "settings": settings_of(args), "rows": rows}


# --- the cost of camera-motion compensation and stitching ---------------------------------------------

# (label, TRACKER, STITCHING); the first is the reference: no camera motion is estimated at all
# (STITCHING=on estimates it too, for ground positions, whatever the tracker)
TRACKING_CONFIGS = (
    ("bytetrack", "bytetrack", "off"),
    ("botsort (CMC)", "botsort", "off"),
    ("botsort + stitching", "botsort", "on"),
)


def tracking_cost(args: argparse.Namespace, model: str) -> dict[str, Any]:
    """The whole pipeline (decode, detection, tracking, annotation, encode) on one clip with each
    of ``TRACKING_CONFIGS``, each run in its own process; the configurations take turns, round
    after round, so a change in the machine's load falls on all of them. Per configuration the
    median over rounds of frames/s and CPU ms/frame, and the share of the reference's fps lost."""
    import statistics

    width, height = parse_size(args.size)
    video = args.video or synthetic_video(width, height, args.fps, args.seconds)
    print(f"video {video}\nmodel {model}  batch {args.batch_size}  device {args.device}  "
          f"rounds {args.repeats}\n")
    runs: dict[str, list[ModeResult]] = {label: [] for label, _, _ in TRACKING_CONFIGS}
    for round_index in range(args.repeats):
        for label, tracker, stitching in TRACKING_CONFIGS:
            worker_args = argparse.Namespace(**{**vars(args), "tracker": tracker, "stitching": stitching})
            runs[label].append(run_in_subprocess("pipeline", worker_args, model, video))
        print_table({f"{label} #{round_index + 1}": runs[label][-1] for label in runs})
    rows = []
    reference = None
    for label, results in runs.items():
        fps = statistics.median(r.fps for r in results)
        cpu = statistics.median(r.cpu_ms_per_frame for r in results)
        cmc = statistics.median(r.detail.get("camera_motion_ms_per_frame", 0.0) for r in results)
        reference = reference or (fps, cpu)
        rows.append({"config": label, "fps": round(fps, 2), "cpu_ms_per_frame": round(cpu, 1),
                     "camera_motion_ms_per_frame": round(cmc, 2),
                     "fps_share_lost_pct": round(100 * (1 - fps / reference[0]), 1),
                     "cpu_share_added_pct": round(100 * (cpu / reference[1] - 1), 1),
                     "fps_runs": [r.fps for r in results],
                     "load": [(r.load_before, r.load_after) for r in results]})
    print(f"\n{'config':<22} {'fps (median)':>12} {'CPU ms/frame':>13} {'CMC ms/frame':>13} "
          f"{'fps lost':>9} {'CPU added':>10}")
    for row in rows:
        print(f"{row['config']:<22} {row['fps']:>12.2f} {row['cpu_ms_per_frame']:>13.1f} "
              f"{row['camera_motion_ms_per_frame']:>13.2f} {row['fps_share_lost_pct']:>8.1f}% "
              f"{row['cpu_share_added_pct']:>9.1f}%")
    return {"kind": "tracking_cost", "video": str(video), "model": model, "settings": settings_of(args),
            "rounds": args.repeats, "rows": rows}


def print_table(results: dict[str, ModeResult]) -> None:
    """One row per run: label, frames, wall seconds, frames/s, CPU ms per frame, peak RSS, load."""
    print(f"{'run':<13} {'frames':>6} {'seconds':>8} {'frames/s':>9} {'cpu ms/frame':>13} "
          f"{'peak RSS MB':>12} {'load avg':>11}")
    for label, r in results.items():
        print(f"{label:<13} {r.frames:>6} {r.seconds:>8.2f} {r.fps:>9.2f} {r.cpu_ms_per_frame:>13.1f} "
              f"{r.peak_rss_mb:>12.0f} {r.load_before:>5.1f}/{r.load_after:<5.1f}")


# --- the memory comparison ---------------------------------------------------------------------------------


def memory_benchmark(args: argparse.Namespace, model: str) -> dict[str, Any]:
    width, height = parse_size(args.size)
    minutes = [float(m) for m in args.memory_minutes.split(",")]
    print(f"pipeline peak RSS on {width}x{height} synthetic videos at {args.memory_fps} fps, detecting every "
          f"{args.memory_stride}th frame (every frame is still decoded, annotated and encoded)\n")
    runs = {}
    for length in minutes:
        video = synthetic_video(width, height, args.memory_fps, length * 60)
        worker_args = argparse.Namespace(**{**vars(args), "stride": args.memory_stride})
        runs[f"pipeline {length:g}m"] = run_in_subprocess("pipeline", worker_args, model, video)
    print_table(runs)
    labels = list(runs)
    growth = runs[labels[-1]].peak_rss_mb - runs[labels[0]].peak_rss_mb
    print(f"\npeak RSS {labels[-1]} - {labels[0]}: {growth:+.0f} MB (target: within {MEMORY_TARGET_MB:.0f} MB)"
          f" -> {'met' if abs(growth) <= MEMORY_TARGET_MB else 'MISSED'}")
    return {
        "kind": "memory",
        "model": model,
        "settings": {**settings_of(args), "fps": args.memory_fps, "stride": args.memory_stride},
        "results": {label: asdict(result) for label, result in runs.items()},
        "peak_rss_growth_mb": growth,
    }


# --- one mode, in a child process --------------------------------------------------------------------------


def run_in_subprocess(mode: str, args: argparse.Namespace, model: str, video: Path) -> ModeResult:
    command = [
        sys.executable, str(Path(__file__).resolve()), "--worker", mode, "--model", model, "--video", str(video),
        "--batch-size", str(args.batch_size), "--threshold", str(args.threshold), "--device", args.device,
        "--stride", str(getattr(args, "stride", 1)), "--preset", args.preset,
        "--runtime", getattr(args, "runtime", "torch"), "--precision", getattr(args, "precision", "fp32"),
        "--dtype", getattr(args, "dtype", "auto"),
    ]
    for option in ("tracker", "stitching"):
        if getattr(args, option, None):
            command += [f"--{option}", getattr(args, option)]
    if args.input_size:
        command += ["--input-size", str(args.input_size)]
    print(f"running {mode} ...", flush=True)
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, env=worker_environment())
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        sys.stderr.write(done.stderr[-4000:])
        raise SystemExit(f"{mode} run failed (exit status {done.returncode})")
    return ModeResult(**json.loads(lines[-1].removeprefix("RESULT ")))


def worker_environment() -> dict[str, str]:
    """Every mode runs under the same OpenMP wait policy: the one ml_engine sets (PASSIVE) unless
    the caller chose one, so the comparison measures the code, not an environment variable."""
    return {**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}


def run_mode(args: argparse.Namespace) -> ModeResult:
    """Inside the child: run one mode, timing only the video processing (not imports or model load)."""
    runner = {"pipeline": _pipeline, "naive": _naive, "model-only": _model_only}[args.worker]
    load_before = os.getloadavg()[0]
    frames, seconds, cpu_seconds, detail = runner(args)
    return ModeResult(
        mode=args.worker,
        frames=frames,
        seconds=round(seconds, 3),
        fps=round(frames / seconds, 3),
        cpu_seconds=round(cpu_seconds, 3),
        peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        load_before=round(load_before, 2),
        load_after=round(os.getloadavg()[0], 2),
        detail=detail,
    )


class _Clock:
    """Wall and CPU time of this process between start and stop."""

    def __enter__(self) -> _Clock:
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.wall
        self.cpu = time.process_time() - self.cpu


def _pipeline(args: argparse.Namespace) -> tuple[int, float, float, dict[str, Any]]:
    from core.jobs import Tracker
    from core.tiling import parse_tiling
    from ml_engine.detection import DetectionConfig
    from ml_engine.detector import Detector
    from ml_engine.pipeline import PipelineConfig, process_video

    detector = Detector.load(args.model, device=args.device, input_size=args.input_size,
                             dtype=args.dtype, runtime=args.runtime, precision=args.precision)
    tracking: dict[str, Any] = {}
    if args.tracker:
        tracking["tracker"] = Tracker(args.tracker)
    if args.stitching:
        tracking["stitching"] = args.stitching == "on"
    detection = DetectionConfig(threshold=args.threshold, tiling=parse_tiling(args.tiling))
    config = PipelineConfig(detection=detection, batch_size=args.batch_size, frame_stride=args.stride,
                            preset=args.preset, **tracking)
    with tempfile.TemporaryDirectory() as out, _Clock() as clock:
        result = process_video(args.video, out, detector, config)
    frames = result.stats["video"]["frames"]
    detail = {"device": detector.device, "dtype": detector.dtype, "input": detector.spec.describe_input_size(),
              "frames_processed": result.stats["processing"]["frames_processed"], "stride": args.stride,
              "unique_tracks": result.stats["counts"]["total_unique"],
              **{key: result.stats["processing"].get(key) for key in
                 ("tracker", "stitching", "camera_motion_frames", "camera_motion_ms_per_frame", "render_seconds")},
              "runtime": _runtime_facts(detector)}
    return frames, clock.wall, clock.cpu, detail


def _naive(args: argparse.Namespace) -> tuple[int, float, float, dict[str, Any]]:
    """The loop most notebooks write. Deliberately plain: that is what it measures."""
    import cv2
    import supervision as sv
    import torch
    from trackers import ByteTrackTracker
    from transformers import AutoImageProcessor, AutoModelForObjectDetection

    from ml_engine.detector import resolve_device

    device = resolve_device(args.device)
    processor = AutoImageProcessor.from_pretrained(args.model)
    if args.input_size:  # the same override Detector applies, through the processor's own option
        processor = AutoImageProcessor.from_pretrained(args.model, size=_size_override(processor, args.input_size))
    model = AutoModelForObjectDetection.from_pretrained(args.model).eval().to(device)
    id2label = model.config.id2label
    frames = 0
    with tempfile.TemporaryDirectory() as out, _Clock() as clock:
        capture = cv2.VideoCapture(str(args.video))
        fps = capture.get(cv2.CAP_PROP_FPS)
        width, height = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
        writer = cv2.VideoWriter(str(Path(out) / "annotated.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), fps,
                                 (width, height))
        tracker = ByteTrackTracker(frame_rate=fps)
        boxes, labels = sv.BoxAnnotator(), sv.LabelAnnotator()
        while True:
            ok, bgr = capture.read()
            if not ok:
                break
            rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            inputs = processor(images=rgb, return_tensors="pt").to(device)
            with torch.no_grad():
                outputs = model(**inputs)
            result = processor.post_process_object_detection(
                outputs, threshold=args.threshold, target_sizes=[(height, width)]
            )[0]
            detections = tracker.update(sv.Detections.from_transformers(result, id2label=id2label))
            names = [f"{id2label[int(c)]} #{t}" for c, t in zip(detections.class_id, detections.tracker_id, strict=True)]
            scene = boxes.annotate(bgr.copy(), detections)
            writer.write(labels.annotate(scene, detections, labels=names))
            frames += 1
        capture.release()
        writer.release()
    return frames, clock.wall, clock.cpu, {"device": str(device), "codec": "mp4v"}


def _size_override(processor: Any, input_size: int) -> dict[str, int]:
    from ml_engine.preprocess import spec_from_processor

    spec = spec_from_processor(processor, input_size)
    if spec.resize_mode == "shortest_edge":
        return {"shortest_edge": spec.shortest_edge, "longest_edge": spec.longest_edge}
    return {"height": spec.height, "width": spec.width}


def _model_only(args: argparse.Namespace) -> tuple[int, float, float, dict[str, Any]]:
    """Forward passes alone, in batches, over as many frames as the video has."""
    from ml_engine.detector import Detector
    from ml_engine.media.video import iter_frames, probe

    detector = Detector.load(args.model, device=args.device, input_size=args.input_size,
                             dtype=args.dtype, runtime=args.runtime, precision=args.precision)
    info = probe(args.video)
    sample = []
    for frame in iter_frames(args.video, info):  # a few batches' worth, reused cyclically
        sample.append(frame.image)
        if len(sample) == 4 * args.batch_size:
            break
    batches = [detector.prepare(sample[i : i + args.batch_size]) for i in range(0, len(sample), args.batch_size)]
    detector.forward(batches[0])  # warm-up, as the other modes pay it inside their loops anyway
    total = info.frames or len(sample)
    done = 0
    with _Clock() as clock:
        while done < total:
            batch = batches[(done // args.batch_size) % len(batches)]
            detector.forward(batch)
            _synchronize(detector.device)
            done += len(batch["pixel_values"])
    return done, clock.wall, clock.cpu, {"device": detector.device, "dtype": detector.dtype,
                                         "runtime": _runtime_facts(detector)}


def _runtime_facts(detector: Any) -> dict[str, Any]:
    """The runtime the detector ended up on, and its measured deviation from torch."""
    facts = detector.describe()
    keys = ("runtime", "precision", "runtime_requested", "runtime_refused", "faithfulness")
    return {key: facts[key] for key in keys if key in facts}


def _synchronize(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


# --- synthetic footage -----------------------------------------------------------------------------------


def synthetic_video(width: int, height: int, fps: int, seconds: float) -> Path:
    """A clip of moving coloured shapes over a textured background, cached in bench/results/videos."""
    frames = max(1, round(fps * seconds))
    path = VIDEO_CACHE / f"synthetic_{width}x{height}_{fps}fps_{frames}f.mp4"
    if path.exists():
        return path
    VIDEO_CACHE.mkdir(parents=True, exist_ok=True)
    print(f"generating {path.name} ({frames} frames) ...", flush=True)
    partial = path.with_suffix(".partial.mp4")
    _encode_synthetic(partial, width, height, fps, frames)
    partial.rename(path)
    return path


def _encode_synthetic(path: Path, width: int, height: int, fps: int, frames: int) -> None:
    import av
    import numpy as np

    rng = np.random.default_rng(7)
    background = _background(width, height, rng)
    shapes = [_random_shape(width, height, rng) for _ in range(12)]
    with av.open(str(path), mode="w", format="mp4", options={"movflags": "+faststart"}) as container:
        stream = container.add_stream("libx264", rate=Fraction(fps))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.options = {"preset": "ultrafast", "crf": "23"}
        for index in range(frames):
            image = background.copy()
            for shape in shapes:
                _draw(image, shape, index)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = index, Fraction(1, fps)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


def _background(width: int, height: int, rng: Any) -> Any:
    import numpy as np

    y, x = np.mgrid[0:height, 0:width]
    image = np.empty((height, width, 3), dtype=np.uint8)
    image[..., 0] = 60 + 40 * np.sin(x / 97.0)
    image[..., 1] = 110 + 30 * np.cos(y / 53.0)
    image[..., 2] = 70 + 20 * np.sin((x + y) / 131.0)
    image += rng.integers(0, 12, image.shape, dtype=np.uint8)  # grass-like texture
    return image


def _random_shape(width: int, height: int, rng: Any) -> dict[str, Any]:
    size = rng.integers(height // 12, height // 5, 2)
    return {
        "start": rng.uniform((0, 0), (width, height)),
        "velocity": rng.uniform(-6, 6, 2) * width / 1920,
        "size": size,
        "color": rng.integers(0, 256, 3).astype("uint8"),
    }


def _draw(image: Any, shape: dict[str, Any], index: int) -> None:
    height, width = image.shape[:2]
    w, h = shape["size"]
    x = int((shape["start"][0] + shape["velocity"][0] * index) % (width + w)) - w
    y = int((shape["start"][1] + shape["velocity"][1] * index) % (height + h)) - h
    x1, y1, x2, y2 = max(x, 0), max(y, 0), min(x + w, width), min(y + h, height)
    if x2 > x1 and y2 > y1:
        image[y1:y2, x1:x2] = shape["color"]


# --- bookkeeping ----------------------------------------------------------------------------------------------


def parse_size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise SystemExit(f"--size must look like 1920x1080, got {text!r}") from None
    return width, height


def settings_of(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "batch_size": args.batch_size,
        "threshold": args.threshold,
        "device": args.device,
        "input_size": args.input_size,
        "preset": args.preset,
        "arch_size": None if args.model else args.arch_size,
        "omp_wait_policy": worker_environment()["OMP_WAIT_POLICY"],
    }


def machine() -> dict[str, Any]:
    import torch

    return {
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
    }


def save_report(report: dict[str, Any], kind: str) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS / f"{kind}_{stamp}.json"
    path.write_text(json.dumps({"machine": machine(), "when": stamp, **report}, indent=2))
    return path


if __name__ == "__main__":
    sys.exit(main())
