"""Inference runtimes compared: the whole pipeline and the model alone, per RUNTIME.

For each runtime (torch eager, ONNX Runtime, OpenVINO; fp32 unless --precisions says more),
runs ``pipeline_bench.py``'s ``pipeline`` and ``model-only`` modes on the same clip, each in
its own process, and prints frames/s, CPU ms per frame, peak RSS, and the largest box and
score deviation from torch that the runtime's faithfulness check measured (after
post-processing, detections matched as sets). Default model: the real-size RT-DETRv2-R18
architecture with random weights (``ml_engine.tiny_model --size real``, separated scores).

    python bench/runtime_bench.py                          # real-size R18, 4 s 1080p clip, CPU
    python bench/runtime_bench.py --seconds 2 --runtimes torch,openvino --precisions fp32,bf16
    python bench/runtime_bench.py --seconds 1 --modes model-only --precisions int8   # int8's deviation and speed
    python bench/runtime_bench.py --model PekingU/rtdetr_v2_r18vd --video field.mp4

The load average is printed beside every figure: on a shared machine compare rows of one run.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench import pipeline_bench  # noqa: E402  (the path above first)

MODEL_CACHE = pipeline_bench.RESULTS / "models"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="checkpoint dir or hub id (default: a real-size random RT-DETRv2-R18)")
    parser.add_argument("--video", type=Path, help="video (default: a synthetic 1080p clip)")
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--size", default="1920x1080")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--threshold", type=float, default=0.5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--runtimes", default="torch,onnxruntime,openvino")
    parser.add_argument("--precisions", default="fp32", help="comma-separated; bf16 applies to openvino only, int8 "
                                                                   "to onnxruntime and openvino")
    parser.add_argument("--modes", default="pipeline,model-only")
    parser.add_argument("--preset", default="veryfast")
    return parser.parse_args(argv)


def real_size_model() -> str:
    """The real-size random RT-DETRv2-R18, built once and kept (building it takes a while)."""
    from ml_engine.tiny_model import build_tiny_checkpoint

    directory = MODEL_CACHE / "rtdetr_v2_r18_real_separated"
    if not (directory / "config.json").exists():
        build_tiny_checkpoint(directory, arch="rt_detr_v2", size="real")
    return str(directory)


def runs(args: argparse.Namespace) -> list[tuple[str, str]]:
    pairs = []
    for runtime in [name.strip() for name in args.runtimes.split(",") if name.strip()]:
        for precision in [name.strip() for name in args.precisions.split(",") if name.strip()]:
            if precision == "fp32" or runtime == "openvino" or (precision, runtime) == ("int8", "onnxruntime"):
                pairs.append((runtime, precision))
    return pairs


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    model = args.model or real_size_model()
    width, height = pipeline_bench.parse_size(args.size)
    video = args.video or pipeline_bench.synthetic_video(width, height, args.fps, args.seconds)
    modes = [mode.strip() for mode in args.modes.split(",") if mode.strip()]
    rows: list[dict[str, Any]] = []
    print(f"model {model}\nvideo {video}\n")
    for runtime, precision in runs(args):
        for mode in modes:
            bench_args = argparse.Namespace(batch_size=args.batch_size, threshold=args.threshold, device=args.device,
                                            stride=1, preset=args.preset, input_size=None, runtime=runtime,
                                            precision=precision, tracker=None, stitching=None)
            result = pipeline_bench.run_in_subprocess(mode, bench_args, model, video)
            rows.append({"runtime": runtime, "precision": precision, **asdict(result)})
            print_row(rows[-1], flush=True)
    report = {"machine": pipeline_bench.machine(), "model": model, "video": str(video), "rows": rows}
    path = pipeline_bench.save_report(report, "runtimes")
    print(f"\nJSON: {path}")
    return 0


def print_row(row: dict[str, Any], flush: bool = False) -> None:
    facts = row["detail"].get("runtime", {})
    used = facts.get("runtime", "?")
    check = facts.get("faithfulness", {})
    deviation = check.get("deviation", {})
    box = f"{deviation['max_box_px']:.2g} px" if deviation else "-"
    score = f"{deviation['max_score']:.2g}" if deviation else "-"
    matched = f"{deviation['compared'] - deviation['unmatched']}/{deviation['compared']}" if deviation else "-"
    refused = f"  REFUSED: {facts['runtime_refused']}" if facts.get("runtime_refused") else ""
    cpu_ms = 1000 * row["cpu_seconds"] / max(row["frames"], 1)
    print(f"{row['runtime']:>12} {row['precision']:>5} {row['mode']:>10}  ran on {used:<11} {row['fps']:6.2f} fps  "
          f"{cpu_ms:6.0f} CPU ms/frame  {row['peak_rss_mb']:6.0f} MB  box {box:>9}  score {score:>8}  "
          f"matched {matched:>7}  "
          f"load {row['load_before']:.1f}->{row['load_after']:.1f}{refused}", flush=flush)


if __name__ == "__main__":
    sys.exit(main())
