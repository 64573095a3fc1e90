"""Service benchmarks (figures, not pass/fail): run `python bench/api_bench.py`.

1. Upload a 1 GB video through POST /jobs and watch the API process's RSS (it must not
   grow with the upload: the body is streamed to disk).
2. 50 concurrent clients polling GET /jobs/{id} for 30 s: p50/p99 latency and errors, back
   to back (saturation) and at fixed intervals (0.25 s, and the dashboard's 1.5 s). The load
   generator is wrk (`apt-get install wrk`), driven by bench/poll.lua.
3. An idle worker's pick-up time: submission → status "processing".

Everything runs as real processes on the local backend in a temp directory. The video for
(1) is a real small MP4 followed by a 1 GB MP4 `free` atom, so it probes as a valid video.
Results are printed and written to bench/results/api_bench.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import av
import httpx
import numpy as np
import psutil

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def make_clip(path: Path, frames: int = 20) -> Path:
    with av.open(str(path), "w", format="mp4", options={"movflags": "+faststart"}) as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
        for index in range(frames):
            image = np.full((240, 320, 3), (index * 12) % 255, dtype=np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode(None))
    return path


def make_big_video(path: Path, total_bytes: int) -> Path:
    """A valid MP4 padded with a `free` atom (players skip it) up to ``total_bytes``."""
    make_clip(path)
    padding = total_bytes - path.stat().st_size - 8
    chunk = b"\0" * (8 << 20)
    with path.open("ab") as handle:
        handle.write(struct.pack(">I4s", padding + 8, b"free"))
        for _ in range(padding // len(chunk)):
            handle.write(chunk)
        handle.write(b"\0" * (padding % len(chunk)))
    return path


def start(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(argv, cwd=REPO, env={**os.environ, **env}, stdout=log.open("wb"),
                            stderr=subprocess.STDOUT)


def wait_for(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"{url} did not answer within {timeout} s")


class PeakRss:
    """Samples a process's RSS every 20 ms in a thread."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.baseline = self.process.memory_info().rss
        self.peak = self.baseline
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self.process.memory_info().rss)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak - self.baseline


def bench_upload(base: str, api_pid: int, video: Path) -> dict:
    rss = PeakRss(api_pid)
    started = time.perf_counter()
    with video.open("rb") as handle, httpx.Client(timeout=600) as client:
        response = client.post(f"{base}/jobs", files={"file": (video.name, handle, "video/mp4")})
    seconds = time.perf_counter() - started
    growth = rss.stop()
    assert response.status_code == 202, response.text
    size = video.stat().st_size
    return {"bytes": size, "seconds": round(seconds, 2), "MB_per_s": round(size / seconds / 1e6, 1),
            "api_rss_growth_MB": round(growth / 1e6, 1), "job_id": response.json()["job_id"]}


def bench_polling(base: str, api_pid: int, job_id: str, clients: int, seconds: float, interval: float) -> dict:
    """``clients`` connections GET /jobs/{id} for ``seconds``: back to back when ``interval`` is
    0 (the API's saturation point), else each about every ``interval`` s (what dashboards and
    scripts do; the dashboard polls every 1.5 s).

    The load comes from wrk, not from Python threads: on a 2-core machine, 50 Python clients
    burn the CPU the API needs and their own GIL queueing shows up as API latency.
    """
    wrk = shutil.which("wrk")
    if wrk is None:
        raise SystemExit("the polling benchmark needs wrk: sudo apt-get install -y wrk")
    api = psutil.Process(api_pid)
    cpu_before = sum(api.cpu_times()[:2])
    result = subprocess.run(
        [wrk, f"-t{min(clients, 2)}", f"-c{clients}", f"-d{seconds:g}s", "-s", str(REPO / "bench" / "poll.lua"),
         f"{base}/jobs/{job_id}"],
        env={**os.environ, "POLL_INTERVAL_MS": str(round(interval * 1000))},
        capture_output=True, text=True, check=True,
    )
    api_cpu = sum(api.cpu_times()[:2]) - cpu_before
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    requests = figures["requests"]
    return {"clients": clients, "interval_s": interval, "seconds": seconds, "requests": requests,
            "errors": figures["errors"] + figures["non_2xx"], "requests_per_s": round(requests / seconds, 1),
            "p50_ms": figures["p50_us"] / 1000, "p99_ms": figures["p99_us"] / 1000,
            "api_cpu_ms_per_request": round(1000 * api_cpu / max(requests, 1), 2)}


def bench_pickup(base: str, clip: Path, rounds: int) -> dict:
    delays = []
    with httpx.Client(base_url=base, timeout=30) as client:
        for _ in range(rounds):
            with clip.open("rb") as handle:
                submitted = time.perf_counter()
                job_id = client.post("/jobs", files={"file": (clip.name, handle)}).json()["job_id"]
            while client.get(f"/jobs/{job_id}").json()["status"] == "queued":
                time.sleep(0.01)
            delays.append(time.perf_counter() - submitted)
            while client.get(f"/jobs/{job_id}").json()["status"] == "processing":
                time.sleep(0.05)  # let the worker go idle again before the next round
    return {"rounds": rounds, "median_s": round(statistics.median(delays), 3), "max_s": round(max(delays), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--upload-gb", type=float, default=1.0)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--poll-seconds", type=float, default=30.0)
    parser.add_argument("--poll-intervals", default="0,0.25,1.5",
                        help="seconds between one client's polls, one run each; 0 = back to back")
    parser.add_argument("--pickup-rounds", type=int, default=5)
    args = parser.parse_args()

    from ml_engine.tiny_model import build_tiny_checkpoint

    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        env = {"DATA_DIR": str(tmp_path / "data"), "MODEL_ID": str(build_tiny_checkpoint(tmp_path / "model")),
               "DEVICE": "cpu", "LOG_LEVEL": "WARNING", "POLL_INTERVAL_S": "1.0", }
        api = start([sys.executable, "-m", "uvicorn", "api.main:app", "--port", "8765", "--log-level", "warning"],
                    env, tmp_path / "api.log")
        worker = None
        try:
            base = "http://127.0.0.1:8765"
            wait_for(f"{base}/health", 60)
            big = make_big_video(tmp_path / "big.mp4", int(args.upload_gb * 1e9))
            results = {"machine": f"{os.cpu_count()} CPU cores, no GPU", "upload": bench_upload(base, api.pid, big)}
            big.unlink()
            print("upload:", results["upload"], flush=True)
            results["polling"] = []
            for interval in (float(text) for text in args.poll_intervals.split(",")):
                results["polling"].append(bench_polling(base, api.pid, results["upload"]["job_id"], args.clients,
                                                        args.poll_seconds, interval))
                print("polling:", results["polling"][-1], flush=True)
            with httpx.Client(base_url=base) as client:  # cancel the big job: the worker starts idle
                client.delete(f"/jobs/{results['upload']['job_id']}")
            worker = start([sys.executable, "-m", "worker.main"], {**env, "WORKER_METRICS_PORT": "8766"},
                           tmp_path / "worker.log")
            wait_for("http://127.0.0.1:8766/health", 120)  # answers once the model is loaded
            clip = make_clip(tmp_path / "clip.mp4")
            results["pickup"] = bench_pickup(base, clip, args.pickup_rounds)
            print("idle worker pick-up:", results["pickup"], flush=True)
        finally:
            for process in (api, worker):
                if process is not None:
                    process.terminate()
                    process.wait(30)
    out = REPO / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "api_bench.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
