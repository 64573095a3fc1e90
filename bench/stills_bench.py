"""Stills benchmark: peak memory of an orthomosaic read in windows, against its size.

Writes a 5,000 x 5,000 and a 20,000 x 20,000 px RGB GeoTIFF (BigTIFF, tiled, DEFLATE, sparse:
only the blocks with animals are stored, so writing takes a second; GDAL reads the rest as
zeros, and every tile still goes through the model) and counts each with
``ml_engine.stills.StillsRun`` and a real detector (the tiny random-weights RT-DETRv2 unless
--model), each in its own process so that each peak RSS is its own.

    python bench/stills_bench.py                        # 5k and 20k, tiny model, CPU
    python bench/stills_bench.py --sizes 5000 50000     # the default MAX_RASTER_PIXELS' edge
    python bench/stills_bench.py --model PekingU/rtdetr_v2_r18vd --device cuda
    python bench/stills_bench.py --sizes 6000 --grey --threshold 0.01 --tile-batch-size 64   # 10,000 touching boxes

Prints a table and writes JSON to bench/results/. A whole 20k raster as RGB is 1.2 GB; read
in windows, peak RSS should not move with the raster's size, only time does (tiles).
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
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"


def write_sparse_raster(path: Path, size: int, block: int = 512, grey: bool = False) -> None:
    """A size x size GeoTIFF (EPSG:32633, 5 cm) with a white 12 px square in every 8th block row and column;
    ``grey``: every block one grey level instead (the random model then finds boxes everywhere)."""
    import numpy as np
    import rasterio
    from affine import Affine
    from rasterio.windows import Window

    profile = {"driver": "GTiff", "width": size, "height": size, "count": 3, "dtype": "uint8",
               "crs": "EPSG:32633", "transform": Affine(0.05, 0, 499_950.0, 0, -0.05, 5_400_000.0),
               "tiled": True, "blockxsize": block, "blockysize": block, "compress": "deflate",
               "sparse_ok": True, "BIGTIFF": "YES"}
    with rasterio.open(path, "w", **profile) as out:
        if grey:
            out.write(np.full((3, size, size), 90, np.uint8))
            return
        tile = np.zeros((3, block, block), np.uint8)
        tile[:, 250:262, 250:262] = 255
        for y in range(0, size - block + 1, 8 * block):
            for x in range(0, size - block + 1, 8 * block):
                out.write(tile, window=Window(x, y, block, block))


def measure(raster: Path, model: str, device: str, tile_batch_size: int, threshold: float) -> dict[str, Any]:
    """Run in a child process: count one raster; its peak RSS, seconds and tiles."""
    sys.path.insert(0, str(ROOT))
    from ml_engine.detection import DetectionConfig
    from ml_engine.detector import Detector
    from ml_engine.stills import StillsConfig, StillsRun

    detector = Detector.load(model, device=device)
    loaded_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    with tempfile.TemporaryDirectory() as out:
        run = StillsRun(Path(out), detector, StillsConfig(detection=DetectionConfig(threshold=threshold, tile_batch_size=tile_batch_size)))
        started, cpu = time.monotonic(), time.process_time()
        result = run.add_file(raster.name, raster)
        run.finish()
        seconds, cpu = time.monotonic() - started, time.process_time() - cpu
    assert result.ok, result.error
    return {"raster_px": f"{result.width}x{result.height}", "kind": result.kind, "tiles": result.tiles,
            "boxes": result.counts["total"],
            "seconds": round(seconds, 1), "cpu_seconds": round(cpu, 1),
            "tiles_per_s": round(result.tiles / seconds, 1), "rss_after_model_load_mb": round(loaded_rss),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[5000, 20000])
    parser.add_argument("--model", default=None, help="checkpoint (default: a tiny random RT-DETRv2, built here)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--tile-batch-size", type=int, default=16)
    parser.add_argument("--threshold", type=float, default=0.5,
                        help="0.01 makes the random model's boxes cover the raster: memory with many boxes")
    parser.add_argument("--grey", action="store_true", help="a grey raster (written whole: keep it small)")
    parser.add_argument("--child", nargs=2, metavar=("RASTER", "MODEL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(Path(args.child[0]), args.child[1], args.device, args.tile_batch_size,
                                 args.threshold)))
        return 0
    rows = []
    with tempfile.TemporaryDirectory() as work:
        model = args.model
        if model is None:
            sys.path.insert(0, str(ROOT))
            from ml_engine.tiny_model import build_tiny_checkpoint

            model = str(build_tiny_checkpoint(Path(work) / "tiny", arch="rt_detr_v2"))
        for size in args.sizes:
            raster = Path(work) / f"ortho_{size}.tif"
            write_sparse_raster(raster, size, grey=args.grey)
            child = subprocess.run([sys.executable, __file__, "--child", str(raster), model, "--device", args.device,
                                    "--tile-batch-size", str(args.tile_batch_size), "--threshold", str(args.threshold)],
                                   capture_output=True, text=True, check=True, cwd=ROOT)
            row = json.loads(child.stdout.strip().splitlines()[-1])
            row["load_average"] = round(os.getloadavg()[0], 2)
            rows.append(row)
            print(f"{row['raster_px']:>13}  tiles {row['tiles']:>6}  boxes {row['boxes']:>7}  {row['seconds']:>7} s  "
                  f"{row['tiles_per_s']:>6} tiles/s  peak RSS {row['peak_rss_mb']} MB "
                  f"(model loaded: {row['rss_after_model_load_mb']} MB)  load {row['load_average']}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    document = {"benchmark": "stills", "model": args.model or "tiny rt_detr_v2 (random weights)",
                "device": args.device, "tile_batch_size": args.tile_batch_size, "threshold": args.threshold,
                "grey": args.grey, "machine": platform.machine(),
                "cpus": os.cpu_count(), "rows": rows}
    (RESULTS / f"stills_{stamp}.json").write_text(json.dumps(document, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
