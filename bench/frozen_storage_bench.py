"""How long the API takes to answer while Azure storage is frozen (figures, not pass/fail):
run `python bench/frozen_storage_bench.py`.

Starts Azurite (in memory, from node_modules) and a real API process against it, stores one
job record, then freezes Azurite with SIGSTOP: its ports still accept connections but nothing
answers, as with a hung storage front end or a network black hole. Times GET /jobs/{id},
GET /jobs and GET /ready while it is frozen (each must be a 503, within 5 s and 2 s), then
SIGCONTs it and times how long until both answer 200 again. Uses the STORAGE_* timeouts
from the environment (the defaults otherwise). Results are printed and written to
bench/results/frozen_storage.json.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from core.backends import build_backends  # noqa: E402
from core.config import Settings  # noqa: E402
from core.jobs import Job, new_job_id  # noqa: E402
from tests.fixtures_storage import AZURITE_BIN, azurite_connection_string_for  # noqa: E402


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(check, timeout: float, what: str) -> float:
    """Poll ``check`` until it is true; returns the seconds it took."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if check():
            return time.monotonic() - started
        time.sleep(0.05)
    raise SystemExit(f"{what} did not happen within {timeout} s")


def status_of(client: httpx.Client, path: str) -> int | None:
    try:
        return client.get(path).status_code
    except httpx.HTTPError:
        return None


def start_azurite(workdir: Path) -> tuple[subprocess.Popen, list[int]]:
    ports = [free_port() for _ in range(3)]
    command = [str(AZURITE_BIN)]
    for service, port in zip(("blob", "queue", "table"), ports, strict=True):
        command += [f"--{service}Host", "127.0.0.1", f"--{service}Port", str(port)]
    command += ["--inMemoryPersistence", "--skipApiVersionCheck", "--loose", "--disableTelemetry", "--silent"]
    azurite = subprocess.Popen(command, cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    return azurite, ports


def time_requests(client: httpx.Client, paths: dict[str, str], rounds: int) -> dict[str, dict]:
    figures = {}
    for name, path in paths.items():
        seconds, statuses = [], set()
        for _ in range(rounds):
            started = time.monotonic()
            try:
                statuses.add(client.get(path).status_code)
            except httpx.HTTPError as exc:
                statuses.add(type(exc).__name__)
            seconds.append(time.monotonic() - started)
        figures[name] = {"statuses": sorted(map(str, statuses)), "median_s": round(statistics.median(seconds), 2),
                         "max_s": round(max(seconds), 2)}
        print(f"{name}: {figures[name]}", flush=True)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="requests of each kind while frozen")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="frozen-storage-") as work:
        workdir = Path(work)
        azurite, ports = start_azurite(workdir)
        api = None
        try:
            settings = Settings(_env_file=None, storage_backend="azure",  # type: ignore[call-arg]
                                azure_storage_connection_string=azurite_connection_string_for(*ports))
            wait_for(lambda: all(_listening(port) for port in ports), 30, "Azurite listening")
            backends = build_backends(settings)
            job = backends.jobs.create(Job(id=new_job_id(), input_blob="uploads/bench/data"))
            backends.close()
            port = free_port()
            env = {**os.environ, "STORAGE_BACKEND": "azure", "LOG_FORMAT": "text",
                   "AZURE_STORAGE_CONNECTION_STRING": settings.azure_storage_connection_string}
            api = subprocess.Popen([sys.executable, "-m", "uvicorn", "api.main:app", "--port", str(port)], cwd=REPO,
                                   env=env, stdout=(workdir / "api.log").open("wb"), stderr=subprocess.STDOUT)
            client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=300)
            wait_for(lambda: status_of(client, "/ready") == 200, 60, "the API ready")
            paths = {"GET /jobs/{id}": f"/jobs/{job.id}", "GET /jobs": "/jobs", "GET /ready": "/ready"}
            results = {"machine": f"{os.cpu_count()} CPU cores", "answering": time_requests(client, paths, 3)}

            azurite.send_signal(signal.SIGSTOP)
            print("Azurite frozen (SIGSTOP)", flush=True)
            results["frozen"] = time_requests(client, paths, args.rounds)
            azurite.send_signal(signal.SIGCONT)
            print("Azurite resumed (SIGCONT)", flush=True)
            results["recovered_after_s"] = {
                "GET /ready": round(wait_for(lambda: status_of(client, "/ready") == 200, 120, "/ready 200"), 2),
                "GET /jobs/{id}": round(wait_for(lambda: status_of(client, f"/jobs/{job.id}") == 200, 120,
                                                 "GET /jobs/{id} 200"), 2),
            }
            print("recovered after:", results["recovered_after_s"], flush=True)
        finally:
            if azurite.poll() is None:
                azurite.send_signal(signal.SIGCONT)
                azurite.terminate()
                azurite.wait(10)
            if api is not None:
                api.terminate()
                api.wait(10)
    out = REPO / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "frozen_storage.json").write_text(json.dumps(results, indent=2))


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


if __name__ == "__main__":
    main()
