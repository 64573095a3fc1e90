"""Cost of each CPU stage per frame at 1080p and 4K, and the frames/s ceiling it puts on a GPU worker.

Stages, each timed alone on frames of a synthetic drone-like clip (moving textured ground,
20 animals), in CPU milliseconds per frame (less sensitive to a loaded machine than wall time):

  decode       PyAV (FFmpeg's H.264 decoder, its own threads) to RGB arrays
  preprocess   ml_engine.preprocess.Preprocessor for the RT-DETR 640 x 640 input
  camera       camera motion (downscale to grey + optical flow + RANSAC), ml_engine.counting.tracker
  tracking     ObjectCounter.update (BoT-SORT, counting), camera motion excluded
  stitching    the offline re-linking after the video: per video, for the tracks the clip made
  drawing      ml_engine.annotate.FrameAnnotator (boxes, ids, traces, counts)
  encode       ml_engine.media.video.VideoWriter as annotated.mp4 is written: RGB -> yuv420p, then H.264
               (libx264 veryfast, or NVENC where VIDEO_ENCODER=auto finds it)

Inference is in runtime_bench.py's table. Ceilings: a stage that runs frame by frame in
order (camera motion, tracking) gets one core whatever the machine has: 1000 / ms; a stage
whose frames are independent (decode, preprocessing, drawing, encoding: threads or frames in
parallel) gets up to every core: cores x 1000 / ms; all CPU stages together share the cores:
cores x 1000 / (sum of ms). These are upper bounds from CPU time, not measured on a GPU worker.

    python bench/stage_bench.py                   # 1080p and 4K, 20 frames each
    python bench/stage_bench.py --frames 60 --sizes 1920x1080
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench import pipeline_bench  # noqa: E402  (the path above first)

SEQUENTIAL = ("camera", "tracking")
CORES = (4, 8, 16)
STAGES = ("decode", "preprocess", "camera", "tracking", "drawing", "encode")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=20, help="frames per size (default 20)")
    parser.add_argument("--sizes", default="1920x1080,3840x2160")
    parser.add_argument("--preset", default="veryfast", help="x264 preset (VIDEO_PRESET)")
    parser.add_argument("--encoder", default="auto", help="VIDEO_ENCODER: auto, libx264 or h264_nvenc")
    return parser.parse_args(argv)


def cpu_ms(step: Callable[[], Any]) -> tuple[float, Any]:
    started = time.process_time()
    result = step()
    return 1000 * (time.process_time() - started), result


def decode(video: Path) -> tuple[float, list[Any]]:
    from ml_engine.media.video import iter_frames, probe

    info = probe(video)
    ms, frames = cpu_ms(lambda: [frame.image for frame in iter_frames(video, info)])
    return ms / len(frames), frames


def animals(frame_index: int, width: int, height: int) -> Any:
    """20 boxes drifting with the camera: what a detector would return on this clip."""
    import numpy as np
    import supervision as sv

    rng = np.random.default_rng(1)
    x = rng.uniform(0.1, 0.85, 20) * width - 4 * frame_index
    y = rng.uniform(0.1, 0.85, 20) * height
    size = height / 20
    xyxy = np.stack([x, y, x + size * 1.5, y + size], axis=1).astype(np.float32)
    return sv.Detections(xyxy=xyxy, confidence=np.full(20, 0.9, dtype=np.float32), class_id=np.zeros(20, dtype=int),
                         data={"class_name": np.array(["cow"] * 20)})


def stage_costs(frames: list[Any], decode_ms: float, preset: str = "veryfast", encoder: str = "auto") -> dict[str, float]:
    import torch

    from ml_engine.annotate import FrameAnnotator
    from ml_engine.counting.counter import CountingConfig, ObjectCounter
    from ml_engine.counting.tracker import CameraMotion, camera_frame
    from ml_engine.preprocess import Preprocessor, spec_from_processor
    from ml_engine.tiny_model import image_processor

    height, width = frames[0].shape[:2]
    detections = [animals(i, width, height) for i in range(len(frames))]
    preprocess = Preprocessor(spec_from_processor(image_processor("rt_detr_v2", "real")), torch.device("cpu"))
    costs = {"decode": decode_ms}
    costs["preprocess"] = cpu_ms(lambda: [preprocess([frame]) for frame in frames])[0] / len(frames)
    motion = CameraMotion()
    costs["camera"] = cpu_ms(lambda: [motion.estimate(camera_frame(frame), d.xyxy)
                                      for frame, d in zip(frames, detections, strict=True)])[0] / len(frames)
    counter = ObjectCounter(CountingConfig(fps=30.0))
    # no frames: BoT-SORT takes the camera as still, so this is tracking and counting alone
    ms, tracked = cpu_ms(lambda: [counter.update(i, i / 30, d) for i, d in enumerate(detections)])
    costs["tracking"] = ms / len(frames)
    costs["stitching_per_video"] = cpu_ms(counter.stitched_ids)[0]
    annotator = FrameAnnotator()
    costs["drawing"] = cpu_ms(lambda: [annotator.annotate(frame.copy(), t, {"total_unique": 0})
                                       for frame, t in zip(frames, tracked, strict=True)])[0] / len(frames)
    costs["encode"] = encode_ms(frames, preset, encoder)
    return costs


def encode_ms(frames: list[Any], preset: str, encoder: str) -> float:
    """annotated.mp4's writer itself (colour conversion + H.264), into a scratch file."""
    import tempfile

    from ml_engine.media.video import VideoWriter

    height, width = frames[0].shape[:2]
    with tempfile.TemporaryDirectory() as scratch:
        writer = VideoWriter(Path(scratch) / "out.mp4", width, height, 30, preset=preset, encoder=encoder)

        def run() -> None:
            with writer:
                for frame in frames:
                    writer.write(frame)

        ms = cpu_ms(run)[0] / len(frames)
    print(f"  encoder: {writer.encoder_used} ({writer.encoder.reason})")
    return ms


def ceilings(costs: dict[str, float]) -> dict[str, dict[int, float]]:
    table = {}
    for stage in STAGES:
        ms = max(costs[stage], 1e-6)
        table[stage] = {cores: (1000 / ms if stage in SEQUENTIAL else cores * 1000 / ms) for cores in CORES}
    total = sum(costs[stage] for stage in STAGES)
    table["all CPU stages"] = {cores: cores * 1000 / total for cores in CORES}
    return table


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    report: dict[str, Any] = {"load_before": os.getloadavg()[0], "sizes": {}}
    for size in [s.strip() for s in args.sizes.split(",") if s.strip()]:
        width, height = pipeline_bench.parse_size(size)
        video = pipeline_bench.synthetic_video(width, height, 30, args.frames / 30)
        decode_ms, frames = decode(video)
        costs = stage_costs(frames, decode_ms, args.preset, args.encoder)
        report["sizes"][size] = {"cpu_ms_per_frame": costs, "fps_ceiling": ceilings(costs)}
        print(f"\n{size}  (load {os.getloadavg()[0]:.1f})")
        print(f"{'stage':<16}{'CPU ms/frame':>14}" + "".join(f"{f'{c} cores fps':>14}" for c in CORES))
        for stage, row in ceilings(costs).items():
            ms = costs.get(stage, sum(costs[s] for s in STAGES))
            print(f"{stage:<16}{ms:>14.1f}" + "".join(f"{row[c]:>14.0f}" for c in CORES))
        print(f"{'stitching':<16}{costs['stitching_per_video']:>11.1f} ms per video ({args.frames} frames)")
    report["load_after"] = os.getloadavg()[0]
    path = pipeline_bench.save_report(report, "stages")
    print(f"\nJSON: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
