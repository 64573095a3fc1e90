"""How long every API route takes to answer while Azure storage is frozen (figures, not
pass/fail): run `python bench/frozen_storage_bench.py`.

Starts Azurite (in memory, from node_modules) and a real API process against it, stores one
job record and reserves one direct upload, then freezes Azurite with SIGSTOP: its ports
still accept connections but nothing answers, as with a hung storage front end or a network
black hole. Sends one request to each route of the API's OpenAPI schema (a route without a
request here stops the bench: every route is measured), then SIGCONTs Azurite and times how
long until GET /ready and GET /jobs/{id} answer 200 again.

Every route must answer within 5 s (a 503 ``storage_unavailable``, or an answer that needs
no storage) except those that move a user's bytes (``MOVES_BYTES``): they wait for storage
as long as a transfer may stall (STORAGE_STALL_TIMEOUT_S per try, and the SDK's retries).
Uses the STORAGE_* timeouts from the environment (the defaults otherwise). Results are
printed and written to bench/results/frozen_storage.json.
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
from dataclasses import dataclass
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from core.backends import build_backends  # noqa: E402
from core.config import Settings  # noqa: E402
from core.jobs import Job, new_job_id  # noqa: E402
from tests.fixtures_storage import AZURITE_BIN, azurite_connection_string_for  # noqa: E402
from tests.fixtures_video import write_clip  # noqa: E402


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


# --- one request per route --------------------------------------------------------------------

ANSWER_WITHIN_S = 5.0
# routes whose work is a transfer of the user's bytes to or from storage: a blob transfer waits
# for storage as long as it may stall, not the metadata deadline
MOVES_BYTES = {"POST /jobs", "PUT /uploads/{upload_id}"}


@dataclass
class Seeded:
    """What the requests refer to: a stored job, a reserved upload, a small real video."""

    job_id: str
    upload_id: str
    clip: Path


def route_requests(seeded: Seeded) -> dict[str, dict]:
    """httpx.request keywords for each ``METHOD /path`` of the schema. DELETE comes last: it
    removes the job the others read."""
    job = f"/jobs/{seeded.job_id}"
    video = seeded.clip.read_bytes()
    requests: dict[str, dict] = {
        "GET /health": {}, "GET /ready": {}, "GET /metrics": {}, "GET /model": {}, "GET /openapi.json": {},
        "GET /docs": {}, "GET /redoc": {}, "GET /docs/oauth2-redirect": {},
        "GET /jobs": {}, "GET /jobs/{job_id}": {},
        "POST /jobs": {"files": {"file": ("clip.mp4", video)}},
        "POST /submit-job": {"json": {"upload_id": seeded.upload_id}},
        "POST /jobs/{job_id}/links": {"json": {}},
        "POST /streams": {"json": {"source_url": "rtsp://192.0.2.10/cam"}},
        "POST /uploads": {"json": {"filename": "big.mp4"}},
        "PUT /uploads/{upload_id}": {"content": video},
        "GET /jobs/{job_id}/files/{name}": {}, "GET /jobs/{job_id}/live/{name}": {},
    }
    for output in ("result", "detections", "exports/coco", "exports/mot", "results", "exports/geojson", "windows",
                   "gaps", "video"):
        requests[f"GET /jobs/{{job_id}}/{output}"] = {}
    requests["DELETE /jobs/{job_id}"] = {}
    names = {"{job_id}": seeded.job_id, "{upload_id}": seeded.upload_id}
    for route, keywords in requests.items():
        method, template = route.split(" ", 1)
        url = template.replace("{job_id}", names["{job_id}"]).replace("{upload_id}", names["{upload_id}"])
        url = url.replace("/files/{name}", "/files/a.png").replace("/live/{name}", "/live/index.m3u8")
        keywords.update(method=method, url=url)
    assert job in requests["GET /jobs/{job_id}"]["url"]
    return requests


def schema_routes(client: httpx.Client) -> list[str]:
    paths = client.get("/openapi.json").json()["paths"]
    return [f"{method.upper()} {path}" for path, operations in paths.items() for method in operations]


def time_every_route(client: httpx.Client, requests: dict[str, dict], routes: list[str]) -> dict[str, dict]:
    missing = sorted(set(routes) - set(requests))
    if missing:
        raise SystemExit(f"no request for {missing}: add one to route_requests")
    figures = {}
    for route, keywords in requests.items():
        started = time.monotonic()
        try:
            status: int | str = client.request(**keywords).status_code
        except httpx.HTTPError as exc:
            status = type(exc).__name__
        seconds = round(time.monotonic() - started, 2)
        moves_bytes = route in MOVES_BYTES
        within = moves_bytes or seconds < ANSWER_WITHIN_S
        figures[route] = {"status": status, "seconds": seconds, "moves_user_bytes": moves_bytes,
                          "within_limit": within}
        flag = "bytes" if moves_bytes else ("ok" if within else f"OVER {ANSWER_WITHIN_S:g} s")
        print(f"{route:<40} {status!s:>5} {seconds:7.2f} s  {flag}", flush=True)
    return figures


def seed(client: httpx.Client, settings: Settings, workdir: Path) -> Seeded:
    backends = build_backends(settings)
    try:
        job = backends.jobs.create(Job(id=new_job_id(), input_blob="uploads/bench/data"))
    finally:
        backends.close()
    upload = client.post("/uploads", json={"filename": "clip.mp4"})
    upload.raise_for_status()
    return Seeded(job.id, upload.json()["upload_id"], write_clip(workdir / "clip.mp4", frames=20))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="requests of each kind while frozen (recovery GETs)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="frozen-storage-") as work:
        workdir = Path(work)
        azurite, ports = start_azurite(workdir)
        api = None
        try:
            settings = Settings(_env_file=None, storage_backend="azure",  # type: ignore[call-arg]
                                azure_storage_connection_string=azurite_connection_string_for(*ports))
            wait_for(lambda: all(_listening(port) for port in ports), 30, "Azurite listening")
            port = free_port()
            env = {**os.environ, "STORAGE_BACKEND": "azure", "LOG_FORMAT": "text",
                   "STREAM_ALLOWED_NETWORKS": "192.0.2.0/24",
                   "AZURE_STORAGE_CONNECTION_STRING": settings.azure_storage_connection_string}
            api = subprocess.Popen([sys.executable, "-m", "uvicorn", "api.main:app", "--port", str(port)], cwd=REPO,
                                   env=env, stdout=(workdir / "api.log").open("wb"), stderr=subprocess.STDOUT)
            client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=600)
            wait_for(lambda: status_of(client, "/ready") == 200, 60, "the API ready")
            seeded = seed(client, settings, workdir)
            paths = {"GET /jobs/{id}": f"/jobs/{seeded.job_id}", "GET /jobs": "/jobs", "GET /ready": "/ready"}
            results = {"machine": f"{os.cpu_count()} CPU cores", "answering": time_requests(client, paths, 3)}
            routes = schema_routes(client)

            azurite.send_signal(signal.SIGSTOP)
            print("Azurite frozen (SIGSTOP)", flush=True)
            results["frozen"] = time_requests(client, paths, args.rounds)
            results["every_route"] = time_every_route(client, route_requests(seeded), routes)
            azurite.send_signal(signal.SIGCONT)
            print("Azurite resumed (SIGCONT)", flush=True)
            results["recovered_after_s"] = {
                "GET /ready": round(wait_for(lambda: status_of(client, "/ready") == 200, 120, "/ready 200"), 2),
                "GET /jobs": round(wait_for(lambda: status_of(client, "/jobs") == 200, 120, "GET /jobs 200"), 2),
            }
            print("recovered after:", results["recovered_after_s"], flush=True)
            over = [route for route, figure in results["every_route"].items() if not figure["within_limit"]]
            print(f"routes over {ANSWER_WITHIN_S:g} s (not moving a user's bytes): {over or 'none'}", flush=True)
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
