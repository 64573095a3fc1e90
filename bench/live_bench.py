"""Live stream benchmark: ``StreamRun`` on a real RTSP stream, RSS, drops and latency over time.

A video is served by the tests' GStreamer RTSP server (``tests/rtsp_server.py``, Debian's
``/usr/bin/python3``: ``make rtsp``) faster than real time, and counted live by the tiny model
in this process, with everything a stream job does: windows, the annotated HLS segments,
events, the resume state at every window.

    python bench/live_bench.py                          # an hour of vtest.avi at 10x: 6 minutes
    python bench/live_bench.py --sim-minutes 10          # a shorter check
    python bench/live_bench.py --overload                # 1080p at 30 fps: faster than the model
    python bench/live_bench.py --hls                     # an HLS camera at 10 fps in real time, 2 minutes
    python bench/live_bench.py --hls --no-model          # the same with a detector that costs nothing

``--hls`` counts a live HLS camera instead (``tests/hls_camera.py``: PyAV's FFmpeg writes 1 s
segments with ``EXT-X-PROGRAM-DATE-TIME`` in real time, served over loopback HTTP), so latency
runs from capture. ``--no-model`` swaps the model for a detector that finds nothing at no cost,
so what is dropped is the source's and the loop's doing, not inference's (an idle CPU's
figure on a busy machine). Windows are ``--window-sim-s`` of stream time (so ``window-sim-s / speed`` of wall time). RSS
is read from /proc at every window; its growth is reported per simulated hour, from the
second window (after the model, the encoder and the first tracks have warmed up). Prints a
table and writes JSON to bench/results/.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

RESULTS = REPO / "bench" / "results"
VTEST = REPO.parent / "shared" / "assets" / "videos" / "vtest.avi"
LATENCY_TARGET_S = 2.0
GROWTH_TARGET_MB_PER_HOUR = 20.0


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--video", type=Path, default=VTEST, help="looped by the server (default vtest.avi)")
    parser.add_argument("--content-fps", type=float, default=10.0, help="the video's own rate")
    parser.add_argument("--speed", type=float, default=10.0, help="how much faster than real time it is sent")
    parser.add_argument("--sim-minutes", type=float, default=60.0, help="stream time to run (wall: / speed)")
    parser.add_argument("--size", default="640x480", help="the frame size the server sends")
    parser.add_argument("--window-sim-s", type=float, default=60.0, help="window length in stream time")
    parser.add_argument("--threshold", type=float, default=0.3)
    parser.add_argument("--tracker", default="bytetrack")
    parser.add_argument("--model", help="checkpoint directory (default: a tiny random RT-DETRv2)")
    parser.add_argument("--overload", action="store_true",
                        help="a 1080p 30 fps stream in real time for --sim-minutes (default 3): faster than the model")
    parser.add_argument("--no-model", action="store_true",
                        help="a detector that finds nothing at no cost instead of the model")
    parser.add_argument("--hls", action="store_true",
                        help="a live HLS camera at --content-fps in real time for --sim-minutes (default 2)")
    args = parser.parse_args(argv)
    given = argv or sys.argv
    if args.hls:
        args.speed = 1.0
        if "--sim-minutes" not in given:
            args.sim_minutes = 2.0
        if "--window-sim-s" not in given:
            args.window_sim_s = 20.0
    if args.overload:
        args.size, args.speed, args.content_fps = "1920x1080", 1.0, 30.0
        if "--sim-minutes" not in (argv or sys.argv):
            args.sim_minutes = 3.0
        if "--window-sim-s" not in (argv or sys.argv):
            args.window_sim_s = 20.0
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    from core.jobs import Tracker
    from core.tiling import parse_tiling
    from ml_engine.detection import DetectionConfig
    from ml_engine.detector import Detector
    from ml_engine.live import QuietSink, SourceOptions, StreamConfig, StreamRun, StreamState
    from ml_engine.tiny_model import build_tiny_checkpoint
    from tests.fixtures_rtsp import rtsp_unavailable_reason

    reason = None if args.hls else rtsp_unavailable_reason()
    if reason:
        raise SystemExit(reason)
    work = Path(tempfile.mkdtemp(prefix="live-bench-"))
    video = args.video if args.video.is_file() else None
    width, height = (int(v) for v in args.size.split("x"))
    if args.no_model:
        detector: Any = SeesNothing()
    else:
        detector = Detector.load(args.model or str(build_tiny_checkpoint(work / "model")), device="cpu")
    server = start_camera(args, work, video, width, height)
    wall_s = args.sim_minutes * 60 / args.speed
    window_s = args.window_sim_s / args.speed
    samples: list[dict[str, Any]] = []
    started = time.monotonic()

    class Sampler(QuietSink):
        def on_window(self, record: dict[str, Any], state: StreamState) -> None:
            sample(record, state)

        def should_stop(self) -> bool:
            return time.monotonic() - started >= wall_s

    def sample(record: dict[str, Any], state: StreamState) -> None:
        samples.append({
            "window": record["window"],
            "wall_s": round(time.monotonic() - started, 1),
            "sim_min": round((time.monotonic() - started) * args.speed / 60, 2),
            "rss_mb": round(rss_mb(), 1),
            "frames_processed": record["frames_processed"],
            "frames_dropped": record["frames_dropped"],
            "latency_p50_s": record["latency_p50_s"],
            "latency_p95_s": record["latency_p95_s"],
            "unique": record["unique"],
            "state_bytes": len(state.to_json()),
        })
        print(json.dumps(samples[-1]), flush=True)

    config = StreamConfig(
        detection=DetectionConfig(threshold=args.threshold, tiling=parse_tiling("off")), tracker=Tracker(args.tracker),
        window_s=window_s, segment_s=2.0, segment_retention_s=60.0,
        source=SourceOptions(read_timeout_s=5.0, backoff_initial_s=0.5, backoff_max_s=2.0),
    )
    load_before = os.getloadavg()[0]
    try:
        stats, _ = StreamRun(server.url, config, detector, work / "out", sink=Sampler()).run()
    finally:
        server.stop()
    return report(args, stats, samples, load_before, video)


class SeesNothing:
    """The detector interface at no cost: no boxes (``--no-model``)."""

    labels = {0: "animal"}
    model_id, device, random_weights = "sees-nothing", "cpu", False

    def detect(self, images: list[Any], threshold: float, class_names: Any = None) -> list[Any]:
        import supervision as sv

        return [sv.Detections.empty() for _ in images]

    def detect_views(self, images: list[Any], views: list[Any], threshold: float, class_names: Any = None) -> list[Any]:
        return self.detect(list(views), threshold)

    def class_ids(self, class_names: Any) -> set[int]:
        return {0}

    def model_input_size(self, width: int, height: int) -> None:
        return None

    def tile_size(self) -> None:
        return None

    def describe(self) -> dict[str, Any]:
        return {"id": self.model_id}


def start_camera(args: argparse.Namespace, work: Path, video: Path | None, width: int, height: int) -> Any:
    """The stream to count: the tests' RTSP server looping ``video``, or their HLS camera."""
    if args.hls:
        from tests.fixtures_hls import start_hls_camera

        return start_hls_camera(work, fps=round(args.content_fps), width=width, height=height)
    from tests.fixtures_rtsp import start_rtsp_server

    return start_rtsp_server(work, video=str(video) if video else None, width=width, height=height,
                             fps=round(args.content_fps * args.speed), gop_s=1.0)


def report(args: argparse.Namespace, stats: dict[str, Any], samples: list[dict[str, Any]],
           load_before: float, video: Path | None) -> dict[str, Any]:
    warm = samples[1] if len(samples) > 2 else samples[0]
    last = samples[-1]
    sim_hours = max((last["sim_min"] - warm["sim_min"]) / 60, 1e-9)
    frames = stats["frames"]
    summary = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "load_before": round(load_before, 2), "load_after": round(os.getloadavg()[0], 2)},
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "source": "hls" if args.hls else "rtsp",
        "detector": "none (--no-model)" if args.no_model else args.model or "tiny random RT-DETRv2",
        "video": "tests/hls_camera.py" if args.hls else str(video) if video else "synthetic pattern",
        "frames": frames,
        "dropped_rate": round(frames["dropped"] / max(frames["received"], 1), 4),
        "processed_fps": round(frames["processed"] / max(last["wall_s"], 1e-9), 2),
        "latency_p50_s": stats["latency"]["p50_s"],
        "latency_p95_s": stats["latency"]["p95_s"],
        "latency_from": stats["latency"].get("from"),
        "worst_window_p95_s": max((s["latency_p95_s"] or 0.0) for s in samples),
        "rss_warm_mb": warm["rss_mb"],
        "rss_last_mb": last["rss_mb"],
        "rss_peak_mb": max(s["rss_mb"] for s in samples),
        "rss_growth_mb_per_sim_hour": round((last["rss_mb"] - warm["rss_mb"]) / sim_hours, 1),
        "state_bytes_max": max(s["state_bytes"] for s in samples),
        "unique_total": stats["counts"]["total_unique"],
        "windows": samples,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    kind = "hls" if args.hls else "overload" if args.overload else "hour"
    out = RESULTS / f"live_bench-{kind}-{int(time.time())}.json"
    out.write_text(json.dumps(summary, indent=2))
    print()
    print("| figure | value | target |")
    print("|---|---|---|")
    print(f"| frames received / processed / dropped | {frames['received']} / {frames['processed']} / "
          f"{frames['dropped']} ({summary['dropped_rate']:.1%} dropped) | |")
    print(f"| processed fps | {summary['processed_fps']} | |")
    print(f"| latency p50 / p95 (whole run, from {summary['latency_from']}) | {summary['latency_p50_s']} / "
          f"{summary['latency_p95_s']} s "
          f"| p95 < {LATENCY_TARGET_S} s |")
    print(f"| worst window p95 | {summary['worst_window_p95_s']} s | |")
    print(f"| RSS warm / last / peak | {warm['rss_mb']} / {last['rss_mb']} / {summary['rss_peak_mb']} MB | |")
    print(f"| RSS growth per simulated hour | {summary['rss_growth_mb_per_sim_hour']} MB "
          f"| < {GROWTH_TARGET_MB_PER_HOUR} MB |")
    print(f"| resume state, largest | {summary['state_bytes_max']} bytes | < 64 KB |")
    print(f"\nload average {summary['machine']['load_before']} -> {summary['machine']['load_after']}; {out}")
    return summary


if __name__ == "__main__":
    main()
