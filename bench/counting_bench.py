"""Counting benchmark: synthetic drone flyovers with exact ground truth.

Renders every scenario (static, pan, pan + roll, altitude change, camera jumps, dense herd,
small animals in 4K, low-texture ground, a gentle survey calibrated to the issue's real
clips, and a steady flyover of about 120 animals, ``flyover_120``) for several seeds, detects with a noisy oracle
(misses, jitter, false positives, a resolution limit), and runs each tracker "column" on the
detections at frame strides 1, 3 and 5. For each scenario it reports the true count, our
count, |error| %, ID switches, IDF1 and HOTA (TrackEval), and tracker frames per second.

    python bench/counting_bench.py                 # default: 10 scenarios x 5 seeds x strides 1,3,5
    python bench/counting_bench.py --quick         # smoke run: 2 scenarios, 1 short seed
    python bench/counting_bench.py --scenarios pan,jumps --seeds 3 --columns baseline,product
    python bench/counting_bench.py --cmc-cost      # also time CMC per frame at 1080p and 4K
    python bench/counting_bench.py --tiling auto --scenarios small_4k,altitude,pan --columns baseline,botsort_sof
                                                   # the tiling column: TILING=off against auto (and any WxH)

Rendered frames and detections are cached in bench/results/counting-cache (git-ignored),
so a second run skips rendering. Survey stills (JPEG grids, GeoTIFFs with edge-cut animals) have
their own benchmark, bench/survey_bench.py. The full pipeline (x264 video -> PyAV decode -> the oracle
through the detector interface -> tracking -> counting -> x264 outputs) runs on seed 0 of a
few sequences and must give exactly the product column's tracks (same detections, same decoded frames). Writes JSON to
bench/results/counting.json (or --json) and, with --markdown PATH, the tables.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.counting import report  # noqa: E402
from bench.counting import tiling as tiling_column  # noqa: E402
from bench.counting.columns import COLUMNS, DEFAULT_COLUMNS  # noqa: E402
from bench.counting.runner import cmc_cost, describe_config, dumps, pipeline_check, run_sequence  # noqa: E402
from bench.counting.scene import MOVING_CAMERA, SCENARIOS  # noqa: E402

RESULTS = REPO / "bench" / "results"
CACHE = RESULTS / "counting-cache"
# (scenario, stride, frames or None): seed 0 of these goes through the full pipeline
PIPELINE_CHECKS = (("pan", 1, None), ("jumps", 5, None), ("small_4k", 1, 60))
QUICK_PIPELINE_CHECKS = (("pan", 1, 60),)


def _csv(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: pan and jumps, 1 seed, 90 frames")
    parser.add_argument("--seeds", type=int, default=5, help="seeds per scenario (0..N-1)")
    parser.add_argument("--scenarios", type=_csv, default=list(SCENARIOS), help=f"of {','.join(SCENARIOS)}")
    parser.add_argument("--columns", type=_csv, default=list(DEFAULT_COLUMNS), help=f"of {','.join(COLUMNS)}")
    parser.add_argument("--strides", type=lambda t: [int(v) for v in _csv(t)], default=[1, 3, 5])
    parser.add_argument("--frames", type=int, default=None, help="shorten every sequence to this many frames")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes")
    parser.add_argument("--no-pipeline", action="store_true", help="skip the full-pipeline check")
    parser.add_argument("--cmc-cost", action="store_true", help="time CMC per frame at 1080p and 4K")
    parser.add_argument("--tiling", type=_csv, default=[],
                        help="TILING values (auto, WxH) to compare with off, at stride 1, on --scenarios; "
                             "then only the tiling column runs, counted by each of --columns")
    parser.add_argument("--json", type=Path, default=None, help="default: bench/results/counting[-quick].json")
    parser.add_argument("--markdown", type=Path, default=None, help="also write the tables here")
    parser.add_argument("--cache", type=Path, default=CACHE)
    args = parser.parse_args(argv)
    if args.quick:
        args.scenarios, args.seeds, args.frames = ["pan", "jumps"], 1, 90
        args.strides = [1, 5]
    if args.json is None:
        args.json = RESULTS / ("counting-quick.json" if args.quick else "counting.json")
    for name in args.scenarios:
        if name not in SCENARIOS:
            parser.error(f"unknown scenario {name!r}; known: {', '.join(SCENARIOS)}")
    for column in args.columns:
        if column not in COLUMNS:
            parser.error(f"unknown column {column!r}; known: {', '.join(COLUMNS)}")
    if args.seeds < 1 or any(s < 1 for s in args.strides):
        parser.error("--seeds and every stride must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.tiling:
        return tiling_main(args, argv)
    started = time.perf_counter()
    load_before = os.getloadavg()[0]
    # biggest sequences first, so the workers finish together
    cost = {"small_4k": 3, "dense_herd": 2, "altitude": 2}
    jobs = sorted(((n, s) for n in args.scenarios for s in range(args.seeds)), key=lambda j: -cost.get(j[0], 1))
    checks_wanted = [] if args.no_pipeline else (QUICK_PIPELINE_CHECKS if args.quick else PIPELINE_CHECKS)
    with ProcessPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        futures = [pool.submit(run_sequence, n, s, args.strides, args.columns, str(args.cache), args.frames)
                   for n, s in jobs]
        check_futures = [pool.submit(pipeline_check, n, 0, stride, frames, str(args.cache))
                         for n, stride, frames in checks_wanted if n in args.scenarios or args.quick]
        rows = []
        for (name, seed), future in zip(jobs, futures, strict=True):
            rows += future.result()
            print(f"  {name} seed {seed} done ({time.perf_counter() - started:.0f} s)", file=sys.stderr)
        checks = [f.result() for f in check_futures]
    cmc = cmc_cost() if args.cmc_cost else []
    seconds = time.perf_counter() - started
    aggregated = report.aggregate(rows)
    summary = report.summary(aggregated)
    moving = report.summary([r for r in aggregated if r["scenario"] in MOVING_CAMERA])
    document = {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "python bench/counting_bench.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "load_before": round(load_before, 2), "load_after": round(os.getloadavg()[0], 2)},
        "seconds": round(seconds, 1),
        "config": describe_config(),
        "columns": {c: COLUMNS[c] for c in args.columns},
        "summary": summary,
        "summary_moving_camera": moving,
        "scenarios": aggregated,
        "pipeline_checks": checks,
        "cmc_cost": cmc,
        "rows": rows,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(dumps(document))
    tables = render_tables(document, args)
    print(tables)
    if args.markdown:
        args.markdown.write_text(tables + "\n")
    print(f"\n{len(rows)} runs in {seconds:.0f} s (load {load_before:.1f} -> {os.getloadavg()[0]:.1f}); "
          f"JSON: {args.json}", file=sys.stderr)
    mismatched = [c for c in checks if not c["tracks_identical"]]
    if mismatched:
        print("the full pipeline's tracks differ from the counting stage's on: "
              + ", ".join(f"{c['scenario']} stride {c['stride']}" for c in mismatched), file=sys.stderr)
        return 1
    return 0


def tiling_main(args: argparse.Namespace, argv: list[str] | None) -> int:
    """The tiling column: each scenario and seed with TILING=off and each --tiling value."""
    started = time.perf_counter()
    load_before = os.getloadavg()[0]
    cost = {"small_4k": 3, "dense_herd": 2, "altitude": 2}
    jobs = sorted(((n, s) for n in args.scenarios for s in range(args.seeds)), key=lambda j: -cost.get(j[0], 1))
    with ProcessPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        futures = [pool.submit(tiling_column.run_tiling, n, s, args.tiling, args.columns, str(args.cache), args.frames)
                   for n, s in jobs]
        checks = [] if args.no_pipeline or "small_4k" not in args.scenarios else [
            pool.submit(tiling_column.pipeline_check, "small_4k", 0, 60, "auto", str(args.cache))]
        rows = []
        for (name, seed), future in zip(jobs, futures, strict=True):
            rows += future.result()
            print(f"  {name} seed {seed} done ({time.perf_counter() - started:.0f} s)", file=sys.stderr)
        checks = [f.result() for f in checks]
    aggregated = tiling_column.aggregate(rows)
    seconds = time.perf_counter() - started
    document = {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "python bench/counting_bench.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "load_before": round(load_before, 2), "load_after": round(os.getloadavg()[0], 2)},
        "seconds": round(seconds, 1), "config": describe_config(), "tiling": aggregated,
        "pipeline_checks": checks, "rows": rows,
    }
    path = args.json if args.json != RESULTS / "counting.json" else RESULTS / "counting-tiling.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dumps(document))
    parts = ["Tiling column, stride 1, mean over seeds (recall and recovery pooled):", "",
             tiling_column.table(aggregated)]
    for c in checks:
        parts += ["", f"Full pipeline with TILING={c['tiling']} on {c['scenario']} seed {c['seed']} "
                  f"({c['frames']} frames, {c['size']}): count {c['pipeline_count']} (counting stage alone "
                  f"{c['counting_stage_count']}, tracks identical: {c['tracks_identical']}), "
                  f"{c['forward_passes']} detector calls for {c['views']} views, {c['pipeline_fps']} fps."]
    parts += ["", f"{seconds:.0f} s on {os.cpu_count()} CPUs, load average {load_before:.1f} -> "
              f"{os.getloadavg()[0]:.1f}."]
    text = "\n".join(parts)
    print(text)
    if args.markdown:
        args.markdown.write_text(text + "\n")
    print(f"JSON: {path}", file=sys.stderr)
    return 0 if all(c["tracks_identical"] for c in checks) else 1


def render_tables(document: dict, args: argparse.Namespace) -> str:
    parts = []
    if document["summary_moving_camera"]:
        parts += [f"Mean over the moving-camera scenarios run ({', '.join(s for s in MOVING_CAMERA if s in args.scenarios)}; "
                  "the target: mean |err| <= 1 %):", "",
                  report.summary_table(document["summary_moving_camera"], args.columns), ""]
    parts += [
        "Mean over all the scenarios run, per column and stride:",
        "",
        report.summary_table(document["summary"], args.columns),
        "",
        "Where the errors come from (mean per sequence, over all scenarios):",
        "",
        report.breakdown_table(document["summary"], args.columns),
        "",
        "Per scenario, mean over seeds. Cell: our count (mean |err| %) · ID switches · IDF1 · HOTA.",
        "",
        report.detail_table(document["scenarios"], args.columns, args.scenarios),
        "",
        "Counting stage alone, tracker frames per second at stride 1 (CMC included):",
        "",
        report.speed_table(document["scenarios"], args.columns),
    ]
    if document["pipeline_checks"]:
        parts += ["", "Full pipeline (x264 decode -> oracle detector -> tracking -> counting -> x264 outputs), "
                  "seed 0, against the counting stage alone:", "", report.pipeline_table(document["pipeline_checks"])]
    if document["cmc_cost"]:
        parts += ["", "CMC cost per frame (one thread):", "", report.cmc_table(document["cmc_cost"])]
    m = document["machine"]
    parts += ["", f"{document['seconds']:.0f} s on {m['cpus']} CPUs, load average {m['load_before']} -> "
              f"{m['load_after']} (the machine is shared; fps figures move with its load)."]
    return "\n".join(parts)


if __name__ == "__main__":
    sys.exit(main())
