"""Bulk images benchmark (figures, not pass/fail): one job of 1,000 stills through the real service.

    python bench/bulk_bench.py                 # 1,000 stills, 640x480 JPEG, ZIP upload
    python bench/bulk_bench.py --stills 200 --via files

Starts ``python -m allinone`` (API + worker in one process, local backend, the tiny random
model built by ml_engine.tiny_model, CPU) in a temp directory, submits ONE images job of
``--stills`` JPEGs (as a ZIP, or as files in one multipart request), and measures:

- submit: the POST /jobs round trip (upload, unpacking, probing and storing every file);
- processing: from the job's start to its final state (download, detection, annotated image,
  upload, per file), and images/s;
- the record's size and the largest progress gap seen while polling (per-file progress);
- the API process's peak RSS (it must not grow with the number of files).

Results are printed and written to bench/results/bulk_bench.json.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import httpx
import numpy as np
import psutil

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def jpeg(seed: int, width: int, height: int) -> bytes:
    import cv2

    rng = np.random.default_rng(seed)
    image = np.full((height, width, 3), 90, dtype=np.uint8)
    for _ in range(6):  # a few blobs, so JPEG sizes are realistic rather than flat
        x, y = int(rng.integers(0, width - 60)), int(rng.integers(0, height - 40))
        image[y:y + 40, x:x + 60] = rng.integers(0, 255, 3)
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 85])
    assert ok
    return data.tobytes()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stills", type=int, default=1000)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--via", choices=["zip", "files"], default="zip")
    parser.add_argument("--timeout", type=float, default=3600)
    args = parser.parse_args()

    from ml_engine.tiny_model import build_tiny_checkpoint

    work = Path(tempfile.mkdtemp(prefix="bulk-bench-"))
    model_dir = build_tiny_checkpoint(work / "tiny")
    stills = {f"flight/IMG_{i:05d}.jpg": jpeg(i, args.width, args.height) for i in range(args.stills)}
    port = free_port()
    env = {**os.environ, "STORAGE_BACKEND": "local", "DATA_DIR": str(work / "data"), "MODEL_ID": str(model_dir),
           "DEVICE": "cpu", "WORKER_METRICS_PORT": "0", "LOG_FORMAT": "text", "API_KEYS": "",
           "PROGRESS_INTERVAL_S": "1", "POLL_INTERVAL_S": "0.2"}
    log = (work / "allinone.log").open("w")
    server = subprocess.Popen([sys.executable, "-m", "allinone", "--port", str(port)], cwd=REPO, env=env,
                              stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=url, timeout=600) as client:
            deadline = time.monotonic() + 120
            while True:
                try:
                    if client.get("/model").status_code == 200:  # the worker has loaded the model
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit(f"the all-in-one did not start; see {log.name}")
                time.sleep(0.5)
            process = psutil.Process(server.pid)
            rss_before = process.memory_info().rss
            started = time.monotonic()
            if args.via == "zip":
                buffer = io.BytesIO()
                with zipfile.ZipFile(buffer, "w") as archive:
                    for name, data in stills.items():
                        archive.writestr(name, data)
                files = {"file": ("flight.zip", buffer.getvalue())}
                response = client.post("/jobs", files=files)
            else:
                response = client.post("/jobs", files=[("files", (n.split("/")[-1], d)) for n, d in stills.items()])
            submit_s = time.monotonic() - started
            assert response.status_code == 202, response.text
            job_id = response.json()["job_id"]
            peak_rss, largest_gap, last_progress = rss_before, 0.0, 0.0
            while True:
                job = client.get(f"/jobs/{job_id}").json()
                peak_rss = max(peak_rss, process.memory_info().rss)
                largest_gap = max(largest_gap, job["progress"] - last_progress)
                last_progress = job["progress"]
                if job["status"] not in ("queued", "processing"):
                    break
                if time.monotonic() - started > args.timeout:
                    raise SystemExit("timed out")
                time.sleep(1)
            started_at, finished_at = (job["started_at"], job["finished_at"])
            from datetime import datetime

            processing_s = (datetime.fromisoformat(finished_at) - datetime.fromisoformat(started_at)).total_seconds()
            record_bytes = len(json.dumps(job))  # GET /jobs/{id}: the record's fields, whatever the file count
            result = {
                "stills": args.stills, "size": f"{args.width}x{args.height}", "via": args.via,
                "status": job["status"], "files_done": job["files_done"], "files_failed": job["files_failed"],
                "upload_mb": round(sum(map(len, stills.values())) / 1e6, 1),
                "submit_s": round(submit_s, 1),
                "processing_s": round(processing_s, 1),
                "images_per_s": round(args.stills / processing_s, 2),
                "end_to_end_images_per_s": round(args.stills / (time.monotonic() - started), 2),
                "job_record_json_bytes": record_bytes,
                "largest_progress_step": round(largest_gap, 4),
                "allinone_rss_mb": {"before": round(rss_before / 2**20), "peak": round(peak_rss / 2**20)},
                "cpu": f"{os.cpu_count()} cores", "model": "tiny random RT-DETR (ml_engine.tiny_model), CPU",
            }
    finally:
        server.terminate()
        server.wait(30)
        log.close()
    print(json.dumps(result, indent=2))
    out = REPO / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "bulk_bench.json").write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
