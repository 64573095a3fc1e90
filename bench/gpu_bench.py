"""The GPU benchmark, prepared for a CUDA machine: one command, within a 10-minute budget.

With the real-size RT-DETRv2-R18 (random weights, separated scores) on a synthetic 1080p clip:

1. which hardware codecs PyAV's FFmpeg offers (NVDEC ``h264_cuvid``, NVENC ``h264_nvenc``), and
   decode / encode frames/s with them against the software codecs, on the same clip;
2. ``pipeline_bench.py``'s ``pipeline`` and ``model-only`` modes on CUDA for torch (fp32, and
   the bf16/fp16 autocast ``DTYPE=auto`` picks), ONNX Runtime (TensorRT and CUDA providers,
   whichever this onnxruntime has), each in its own process: frames/s, pipeline / model-only.

Every step has a share of the budget and is skipped, and says so, when the budget is spent.

    python bench/gpu_bench.py                       # on the CUDA machine
    python bench/gpu_bench.py --dry-run             # anywhere: CPU, tiny model, 1 s clip (checks the script)

Writes bench/results/gpu_<time>.json with the card's name, the driver, and every figure.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from fractions import Fraction
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench import pipeline_bench  # noqa: E402  (the path above first)

BUDGET_S = 600.0
HW_DECODERS = ("h264_cuvid", "hevc_cuvid")
HW_ENCODERS = ("h264_nvenc", "hevc_nvenc")
# (label, RUNTIME, DTYPE): what runs the model in each pipeline run
RUNS = (("torch fp32", "torch", "float32"), ("torch autocast", "torch", "auto"), ("onnxruntime", "onnxruntime", "auto"))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry-run", action="store_true", help="CPU, tiny model, short clip: checks the script runs")
    parser.add_argument("--seconds", type=float, default=20.0, help="synthetic clip length (default 20)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--budget", type=float, default=BUDGET_S, help="seconds for everything (default 600)")
    return parser.parse_args(argv)


class Budget:
    def __init__(self, seconds: float) -> None:
        self.deadline = time.monotonic() + seconds

    def left(self) -> float:
        return self.deadline - time.monotonic()


def card() -> dict[str, Any]:
    import torch

    if not torch.cuda.is_available():
        return {"cuda": False}
    props = torch.cuda.get_device_properties(0)
    return {"cuda": True, "name": props.name, "memory_gb": round(props.total_memory / 1024**3, 1),
            "torch_cuda": torch.version.cuda, "capability": f"{props.major}.{props.minor}"}


def codecs() -> dict[str, list[str]]:
    import av

    available = set(av.codecs_available)
    return {"decoders": [name for name in HW_DECODERS if name in available],
            "encoders": [name for name in HW_ENCODERS if name in available]}


def decode_fps(video: Path, codec_name: str | None, budget: Budget) -> float | None:
    """Frames/s decoding ``video`` with ``codec_name`` (None: PyAV's default software decoder)."""
    import av

    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        context = av.CodecContext.create(codec_name, "r") if codec_name else stream.codec_context
        if codec_name:
            context.extradata = stream.codec_context.extradata
        frames, started = 0, time.perf_counter()
        for packet in container.demux(stream):
            for frame in context.decode(packet):
                frame.to_ndarray(format="rgb24")
                frames += 1
            if budget.left() < 0:
                return None
    return frames / (time.perf_counter() - started)


def encode_fps(codec_name: str, width: int, height: int, frames: int) -> float:
    """Frames/s encoding ``frames`` synthetic frames with ``codec_name`` (into memory)."""
    import io

    import av
    import numpy as np

    image = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    with av.open(io.BytesIO(), "w", format="mp4") as container:
        stream = container.add_stream(codec_name, rate=Fraction(30))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        started = time.perf_counter()
        for _ in range(frames):
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return frames / (time.perf_counter() - started)


def codec_figures(video: Path, found: dict[str, list[str]], frames: int, budget: Budget) -> dict[str, Any]:
    figures: dict[str, Any] = {"decode_fps": {"software": _round(decode_fps(video, None, budget))},
                               "encode_fps": {"libx264": round(encode_fps("libx264", 1920, 1080, frames), 1)}}
    for name in found["decoders"][:1]:
        figures["decode_fps"][name] = _attempt(lambda name=name: _round(decode_fps(video, name, budget)))
    for name in found["encoders"][:1]:
        figures["encode_fps"][name] = _attempt(lambda name=name: round(encode_fps(name, 1920, 1080, frames), 1))
    return figures


def _attempt(step: Any) -> Any:
    try:
        return step()
    except Exception as exc:  # a codec listed but unusable (no driver, no GPU): say why, go on
        return f"failed: {type(exc).__name__}: {exc}"[:200]


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def pipeline_runs(args: argparse.Namespace, model: str, video: Path, budget: Budget) -> list[dict[str, Any]]:
    device = "cpu" if args.dry_run else "cuda"
    rows = []
    for label, runtime, dtype in RUNS:
        row: dict[str, Any] = {"run": label, "runtime": runtime, "dtype": dtype}
        for mode in ("model-only", "pipeline"):
            if budget.left() < 30:
                row[mode] = "skipped: out of time"
                continue
            bench_args = argparse.Namespace(batch_size=args.batch_size, threshold=0.5, device=device, stride=1,
                                            preset="veryfast", input_size=None, runtime=runtime, precision="fp32",
                                            tracker=None, stitching=None, dtype=dtype)
            try:
                result = pipeline_bench.run_in_subprocess(mode, bench_args, model, video)
            except SystemExit as exc:  # the run failed: its stderr is printed above
                row[mode] = f"failed: {exc}"
                continue
            row[mode] = {key: value for key, value in asdict(result).items() if key != "detail"}
            row[f"{mode}_runtime"] = result.detail.get("runtime")
        if isinstance(row.get("pipeline"), dict) and isinstance(row.get("model-only"), dict):
            row["pipeline_over_model_only"] = round(row["pipeline"]["fps"] / row["model-only"]["fps"], 3)
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def separated_model(size: str) -> str:
    """RT-DETRv2 with separated scores (the tiny one too), so the runtimes' faithfulness check
    compares the model and ONNX Runtime is not refused over tie-breaking. Built once, kept."""
    from ml_engine.tiny_model import build_tiny_checkpoint

    directory = REPO / "bench" / "results" / "models" / f"gpu_bench_{size}_separated"
    if not (directory / "config.json").exists():
        build_tiny_checkpoint(directory, arch="rt_detr_v2", size=size, separated=True)
    return str(directory)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    budget = Budget(args.budget)
    found_card = card()
    if not found_card["cuda"] and not args.dry_run:
        raise SystemExit("no CUDA GPU here: run on a CUDA machine, or with --dry-run to check the script")
    seconds = 1.0 if args.dry_run else args.seconds
    size = "tiny" if args.dry_run else "real"
    model = separated_model(size)
    video = pipeline_bench.synthetic_video(1920, 1080, 30, seconds)
    found = codecs()
    print(f"card {found_card}\ncodecs {found}\nmodel {model}\nvideo {video}", flush=True)
    report: dict[str, Any] = {"card": found_card, "dry_run": args.dry_run, "codecs": found, "model": model}
    report["codec_fps"] = codec_figures(video, found, 30 if args.dry_run else 300, budget)
    print(f"codec frames/s {report['codec_fps']}", flush=True)
    report["runs"] = pipeline_runs(args, model, video, budget)
    report["seconds_left"] = round(budget.left(), 1)
    path = pipeline_bench.save_report(report, "gpu")
    print(f"\nJSON: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
