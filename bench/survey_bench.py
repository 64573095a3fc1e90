"""Survey stills benchmark: JPEG grid flights and GeoTIFFs with edge-cut animals, counted once per
animal. A sibling of bench/counting_bench.py (video flights).

* **JPEG grids** (bench/survey/flight.py): a textured field with a herd, shot in a boustrophedon
  grid with 60 to 80 % forward and side overlap, yaw jittered by 3 degrees, GPS noise of
  sigma 1.5 m, altitude noise of 0.3 m, the herd grazing (each animal moves up to ``--move``
  metres between shots); each shot written as a DJI JPEG (EXIF GPS and camera, DJI XMP). Counted
  by ``ml_engine.stills.StillsRun`` with the blob detector (tests/stills_oracle.py), so the
  error is the placing and deduplication's own. Target: at most 2 % count error.
* **GeoTIFF edge-cut** : 5 x 3 GeoTIFF stills (50 % overlap, 5 cm) of a 200-animal herd
  whose animals move up to 0.5 m between shots, a third of them standing across an image edge
  where they are first seen (the case of the issue). Target: at most 1 %.
* **300-still grid**: the time to place, register and deduplicate 300 JPEG stills (target:
  under 10 minutes on the 2-core development machine), with the load average.
* **Registration cost**: ORB features of a 20 MP still (5472 x 3648) and matching one
  overlapping neighbour (a revisit), medians of ``--repeats``.

    python bench/survey_bench.py                   # grids at 60/70/80 %, 3 seeds; edge-cut; cost
    python bench/survey_bench.py --big             # also the 300-still grid
    python bench/survey_bench.py --quick           # one grid, one seed

Writes JSON to bench/results/survey.json and prints the tables.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

RESULTS = REPO / "bench" / "results"


def run_grid(overlap: float, seed: int, rows: int, columns: int, move_m: float, registration: bool = True,
             resolution_m: float = 0.025) -> dict[str, Any]:
    """One JPEG grid flight: written, then counted; its truth, counts and timings."""
    from bench.survey.flight import plan_grid, render_shot, write_dji_jpeg
    from core.tiling import parse_tiling
    from ml_engine.detection import DetectionConfig
    from ml_engine.stills import StillsConfig, StillsRun
    from tests.stills_oracle import BlobDetector

    flight = plan_grid(rows, columns, overlap, overlap, seed=seed, herd=max(30, rows * columns * 2), move_m=move_m)
    flight.resolution_m = resolution_m
    with tempfile.TemporaryDirectory(prefix="survey-bench-") as folder:
        paths = []
        started = time.perf_counter()
        for shot in flight.shots:
            path = Path(folder) / f"DJI_{shot.index:04d}.JPG"
            write_dji_jpeg(path, render_shot(flight, shot), flight, shot)
            paths.append(path)
        flight.texture = None
        written = time.perf_counter() - started
        started = time.perf_counter()
        run = StillsRun(Path(folder) / "out", BlobDetector(tile=(4000, 4000)),
                        StillsConfig(detection=DetectionConfig(tiling=parse_tiling("off")), registration=registration))
        for path in paths:
            run.add_file(path.name, path)
        stats, _ = run.finish()
        counted = time.perf_counter() - started
    truth, dedup = len(flight.animals), stats["counts"]["deduplicated"]
    survey = stats["survey"]
    total = dedup.get("total", stats["counts"]["per_image_sum"])
    return {"case": "jpeg_grid", "overlap": overlap, "seed": seed, "shots": len(flight.shots), "truth": truth,
            "per_image_sum": stats["counts"]["per_image_sum"], "deduplicated": total,
            "error_pct": round(100 * abs(total - truth) / truth, 2), "signed_error": total - truth,
            "registration": registration, "registered": survey["registered"], "placed": survey["placed"],
            "median_residual_m": survey["median_residual_m"], "registration_s": survey["registration"]["seconds"],
            "revisits": survey["registration"]["revisits"], "count_s": round(counted, 2),
            "write_s": round(written, 2), "move_m": move_m}


def run_edge_cut(seed: int, herd: int = 200) -> dict[str, Any]:
    """GeoTIFF stills of a moving herd, a third of it first seen cut by an image edge."""
    import numpy as np

    from ml_engine.stills import StillsConfig, StillsRun
    from tests.stills_oracle import Animal, BlobDetector, field_transform, paint, write_geotiff

    rng = np.random.default_rng(seed)
    still, step = 1000, 500
    offsets = [(x, y) for y in (0, step, 2 * step) for x in range(0, 5 * step, step)]
    field = (max(x for x, _ in offsets) + still, max(y for _, y in offsets) + still)
    edges = sorted({x + still for x, _ in offsets if x + still < field[0]})
    start: list[tuple[float, float]] = []
    while len(start) < herd:
        if len(start) < herd // 3:
            x = float(rng.choice(edges)) + rng.uniform(-16, 14)  # first seen cut by a still's right edge
        else:
            x = rng.uniform(40, field[0] - 40)
        y = rng.uniform(40, field[1] - 40)
        if all((x - a) ** 2 + (y - b) ** 2 > 60 ** 2 for a, b in start):
            start.append((x, y))
    home = np.array(start)
    with tempfile.TemporaryDirectory(prefix="survey-bench-") as folder:
        run = StillsRun(Path(folder) / "out", BlobDetector(), StillsConfig())
        for index, (x0, y0) in enumerate(offsets):
            # each shot finds an animal within 5 px (0.25 m) of its spot: any two shots differ by up to 0.5 m
            angle, radius = rng.uniform(0, 2 * np.pi, herd), 5 * np.sqrt(rng.uniform(0, 1, herd))
            position = home + np.column_stack([np.cos(angle), np.sin(angle)]) * radius[:, None]
            animals = [Animal(round(x), round(y), size=36) for x, y in position]
            image = paint(np.full((field[1], field[0], 3), 40, np.uint8), animals)[y0:y0 + still, x0:x0 + still]
            path = write_geotiff(Path(folder) / f"still_{index}.tif", image, transform=field_transform((x0, y0)))
            run.add_file(path.name, path)
        stats, _ = run.finish()
    dedup = stats["counts"]["deduplicated"]
    return {"case": "geotiff_edge_cut", "seed": seed, "stills": len(offsets), "truth": herd,
            "per_image_sum": stats["counts"]["per_image_sum"], "deduplicated": dedup["total"],
            "edge_cut_sightings": dedup["edge_cut_sightings"], "signed_error": dedup["total"] - herd,
            "error_pct": round(100 * abs(dedup["total"] - herd) / herd, 2)}


def registration_cost(repeats: int) -> dict[str, Any]:
    """ORB features of a 20 MP still, and matching one overlapping neighbour (a revisit)."""
    import cv2
    import numpy as np

    from bench.survey.flight import Camera, plan_grid, render_shot
    from ml_engine.survey.footprint import metadata_footprint
    from ml_engine.survey.registration import features_of, register

    camera = Camera(width=5472, height=3648)
    flight = plan_grid(2, 1, 0.7, 0.7, seed=1, camera=camera, herd=20)
    flight.resolution_m = 0.02
    images = [render_shot(flight, shot) for shot in flight.shots]
    cv2.setNumThreads(1)
    feature_s, match_s = [], []
    for _ in range(repeats):
        started = time.perf_counter()
        features = [features_of(image) for image in images]
        feature_s.append((time.perf_counter() - started) / len(images))
    footprints = [metadata_footprint(s.gps_east, s.gps_north, s.meta_altitude, s.meta_yaw, s.pitch,
                                     camera.sensor_width_mm, camera.focal_mm, camera.width, camera.height)
                  for s in flight.shots]
    fit = None
    for _ in range(repeats):
        started = time.perf_counter()
        fit = register(features[1], footprints[1], [(0, features[0], footprints[0])], gate_m=8.0)
        match_s.append(time.perf_counter() - started)
    return {"still_px": f"{camera.width}x{camera.height}", "features_s": round(statistics.median(feature_s), 3),
            "revisit_s": round(statistics.median(match_s), 3), "inliers": fit.inliers if fit else 0,
            "residual_m": round(fit.residual_m, 4) if fit else None, "threads": 1,
            "features": int(np.mean([len(f.points) for f in features]))}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one 70 %% grid, one seed, one edge-cut run")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--overlaps", type=lambda t: [float(v) for v in t.split(",")], default=[0.6, 0.7, 0.8])
    parser.add_argument("--grid", type=lambda t: tuple(int(v) for v in t.split("x")), default=(5, 6),
                        help="rows x columns of the JPEG grids (default 5x6: 30 shots)")
    parser.add_argument("--move", type=float, default=0.15, help="metres an animal may move between shots")
    parser.add_argument("--big", action="store_true", help="also the 300-still grid (15 x 20, 70 %%)")
    parser.add_argument("--only", default=None, help="run only these parts: grids,edge,cost,big")
    parser.add_argument("--no-registration", action="store_true", help="also the grids placed by metadata alone")
    parser.add_argument("--repeats", type=int, default=3, help="of the registration cost")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--json", type=Path, default=RESULTS / "survey.json")
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.overlaps = 1, [0.7]
    args.parts = set((args.only or "grids,edge,cost" + (",big" if args.big else "")).split(","))
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started, load_before = time.perf_counter(), os.getloadavg()[0]
    rows, columns = args.grid
    with ProcessPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        grids = [pool.submit(run_grid, overlap, seed, rows, columns, args.move)
                 for overlap in args.overlaps for seed in range(args.seeds)] if "grids" in args.parts else []
        if args.no_registration and "grids" in args.parts:
            grids += [pool.submit(run_grid, overlap, seed, rows, columns, args.move, False)
                      for overlap in args.overlaps for seed in range(args.seeds)]
        edges = [pool.submit(run_edge_cut, seed) for seed in range(args.seeds)] if "edge" in args.parts else []
        grid_rows = [f.result() for f in grids]
        edge_rows = [f.result() for f in edges]
    cost = registration_cost(args.repeats) if "cost" in args.parts else None
    big = None
    if "big" in args.parts:
        load = os.getloadavg()[0]
        big = run_grid(0.7, 0, 15, 20, args.move, resolution_m=0.05)
        big["load_before"] = round(load, 2)
        big["load_after"] = round(os.getloadavg()[0], 2)
    document = {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "python bench/survey_bench.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "load_before": round(load_before, 2),
                    "load_after": round(os.getloadavg()[0], 2)},
        "seconds": round(time.perf_counter() - started, 1),
        "jpeg_grids": grid_rows, "geotiff_edge_cut": edge_rows, "registration_cost": cost, "big_grid": big,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(document, indent=1))
    print(tables(document))
    return 0


def tables(document: dict[str, Any]) -> str:
    lines = [] if not document["jpeg_grids"] else ["JPEG grids (BlobDetector; GPS sigma 1.5 m, yaw jitter 3 deg; mean over seeds):", "",
             "| overlap | registration | shots | truth | per-image sum | deduplicated | mean abs error | worst | "
             "registered | median residual | registration s/still |", "|" + "---|" * 11]
    keys = sorted({(r["overlap"], r["registration"]) for r in document["jpeg_grids"]})
    for overlap, registered in keys:
        rows = [r for r in document["jpeg_grids"] if r["overlap"] == overlap and r["registration"] == registered]
        def mean(key: str, rows: list[dict[str, Any]] = rows) -> float:
            return statistics.mean(r[key] for r in rows)
        residuals = [r["median_residual_m"] for r in rows if r["median_residual_m"] is not None]
        lines.append(f"| {overlap:.0%} | {'on' if registered else 'off'} | {rows[0]['shots']} | {mean('truth'):.0f} | "
                     f"{mean('per_image_sum'):.0f} | {mean('deduplicated'):.1f} | {mean('error_pct'):.2f} % | "
                     f"{max(r['error_pct'] for r in rows):.2f} % | {mean('registered'):.1f} / {rows[0]['shots']} | "
                     f"{statistics.mean(residuals) if residuals else float('nan'):.3f} m | "
                     f"{mean('registration_s') / rows[0]['shots']:.2f} |")
    edge = document["geotiff_edge_cut"]
    lines += [] if not edge else ["", "GeoTIFF edge-cut (15 stills, 200 animals moving up to 0.5 m between shots, a third first seen cut):",
              "", "| seed | truth | per-image sum | deduplicated | edge-cut sightings | error |", "|---|---|---|---|---|---|"]
    lines += [] if not edge else [f"| {r['seed']} | {r['truth']} | {r['per_image_sum']} | {r['deduplicated']} | "
              f"{r['edge_cut_sightings']} | {r['error_pct']:.2f} % |" for r in edge]
    cost = document["registration_cost"]
    lines += [] if not cost else ["", f"Registration cost, {cost['still_px']} stills, one thread: features {cost['features_s']} s a still, "
              f"{cost['revisit_s']} s a revisit (an overlapping neighbour matched; {cost['inliers']} inliers, "
              f"residual {cost['residual_m']} m)."]
    big = document.get("big_grid")
    if big:
        lines += ["", f"300-still grid ({big['shots']} shots of 1200x800, 70 %): counted in {big['count_s']:.0f} s "
                  f"(registration {big['registration_s']:.0f} s, {big['revisits']} revisits), truth {big['truth']}, "
                  f"deduplicated {big['deduplicated']} ({big['error_pct']:.2f} %), load {big['load_before']} -> "
                  f"{big['load_after']}."]
    machine = document["machine"]
    lines += ["", f"{document['seconds']:.0f} s on {machine['cpus']} CPUs, load average {machine['load_before']} -> "
              f"{machine['load_after']}."]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
