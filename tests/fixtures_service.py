"""Real processes for end-to-end tests: ``uvicorn api.main:app`` and ``python -m worker.main``
started as subprocesses with their settings in the environment, exactly as deployed.

``start_service(backend, workers=1, **setting_overrides)`` returns a ``Service`` with the
API's base URL, an httpx client, the worker processes and their logs. Everything is
stopped at the end of the test.

``shared_service(backend)`` returns the same default service (one worker, ``FAST_WORKER``
settings) to every test that asks for it, started once per backend and xdist worker and stopped
at the session's end: each start imports torch in a new worker process, seconds of CPU on the
2-core machine. For tests that only submit jobs and read them back (by their ids: other modules'
jobs are there too); a test that kills, stops or reconfigures a process, or counts what is
queued, starts its own. The modules using it are kept on one xdist worker
(tests/xdist_scopes.py's ``SERVICE_MODULES``), so each service starts once.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from core.backends import Backends, build_backends
from core.config import Settings
from tests.waiting import answers, wait_for_job_status, wait_until

REPO = Path(__file__).resolve().parent.parent
FAST_WORKER = {  # short leases and polls so fault tests finish quickly
    "lease_seconds": 3.0,
    "lease_renew_seconds": 1.0,
    "poll_interval_s": 0.2,
    "progress_interval_s": 0.3,
    "retry_backoff_s": 0.5,
    "batch_size": 4,
    "device": "cpu",
    "log_format": "text",
    "shutdown_grace_s": 30.0,
}


@contextlib.contextmanager
def in_process_api(settings: Settings) -> Iterator[TestClient]:
    """The real app in this process on its own stores, served through a TestClient (lifespan
    run). The stores and settings ride on the client (``client.backends``, ``client.settings``),
    so a test can check what was stored."""
    backends = build_backends(settings)
    try:
        with TestClient(create_app(settings, backends)) as client:
            client.backends = backends  # type: ignore[attr-defined]
            client.settings = settings  # type: ignore[attr-defined]
            yield client
    finally:
        backends.close()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment variables that reproduce ``settings`` in a child process."""
    env = {}
    for name, value in settings.model_dump().items():
        if value is None:
            continue
        if isinstance(value, list):
            value = ",".join(value)
        elif isinstance(value, dict):  # TENANT_QUOTAS: JSON
            value = json.dumps(value)
        elif isinstance(value, Enum):
            value = value.value
        elif isinstance(value, bool):
            value = "true" if value else "false"
        env[name.upper()] = str(value)
    return env


class Process:
    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_path: Path) -> None:
        self.name = name
        self.log_path = log_path
        self._log = log_path.open("wb")
        child_env = {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
        child_env.pop("CI", None)
        self.popen = subprocess.Popen(
            argv, cwd=REPO, env=child_env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def signal(self, sig: int) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(sig)

    def wait(self, timeout: float) -> int:
        return self.popen.wait(timeout)

    def stop(self) -> None:
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(10)
        self._log.close()


@dataclass
class Service:
    settings: Settings
    env: dict[str, str]
    api_url: str
    client: httpx.Client
    backends: Backends
    tmp: Path
    processes: list[Process] = field(default_factory=list)
    workers: list[Process] = field(default_factory=list)

    def start_worker(self, **extra_env: str) -> Process:
        port = free_port()
        worker = Process(
            f"worker-{len(self.workers)}",
            [sys.executable, "-m", "worker.main"],
            {**self.env, "WORKER_METRICS_PORT": str(port), **extra_env},
            self.tmp / f"worker-{len(self.workers)}.log",
        )
        self.processes.append(worker)
        self.workers.append(worker)
        wait_until(
            lambda: answers(f"http://127.0.0.1:{port}/health") or _exited(worker),
            90,
            f"worker health on port {port}",
        )
        assert worker.popen.poll() is None, f"worker exited at start:\n{worker.log()}"
        worker.metrics_url = f"http://127.0.0.1:{port}/metrics"  # type: ignore[attr-defined]
        return worker

    def logs(self) -> str:
        return "\n".join(f"===== {p.name} =====\n{p.log()[-6000:]}" for p in self.processes)

    def submit(self, video: Path, **fields: Any) -> dict[str, Any]:
        headers = fields.pop("headers", {})
        with video.open("rb") as handle:
            response = self.client.post(
                "/jobs", files={"file": (video.name, handle)}, data=fields, headers=headers
            )
        assert response.status_code in (200, 202), response.text
        return response.json()

    def job(self, job_id: str) -> dict[str, Any]:
        return self.client.get(f"/jobs/{job_id}").json()

    def wait_for_status(self, job_id: str, statuses: set[str], timeout: float = 120) -> dict[str, Any]:
        return wait_for_job_status(self.client, job_id, statuses, timeout, self.logs)

    def close(self) -> None:
        for process in self.processes:
            process.stop()
        self.client.close()
        self.backends.close()


def _exited(process: Process) -> bool:
    return process.popen.poll() is not None


def launch_service(settings: Settings, tmp: Path, workers: int, started: list[Service]) -> Service:
    """The API on a free port, then ``workers`` workers, each waited for; appended to ``started``
    (before waiting, so that whoever closes them also closes one that failed to start)."""
    env = settings_env(settings)
    port = free_port()
    api = Process(
        "api",
        [sys.executable, "-m", "uvicorn", "api.main:app", "--host", "127.0.0.1", "--port", str(port)],
        env,
        tmp / f"api-{port}.log",
    )
    url = f"http://127.0.0.1:{port}"
    service = Service(
        settings,
        env,
        url,
        httpx.Client(base_url=url, timeout=30),
        build_backends(settings),
        tmp,
        [api],
    )
    started.append(service)
    wait_until(lambda: answers(f"{url}/health") or _exited(api), 60, "the API to answer /health")
    assert api.popen.poll() is None, f"API exited at start:\n{api.log()}"
    for _ in range(workers):
        service.start_worker()
    return service


@pytest.fixture
def start_service(make_settings, tiny_rtdetr_dir, tmp_path) -> Iterator:
    services: list[Service] = []

    def start(backend: str = "local", workers: int = 1, **overrides: Any) -> Service:
        settings = make_settings(backend, **{"model_id": str(tiny_rtdetr_dir), **FAST_WORKER, **overrides})
        return launch_service(settings, tmp_path, workers, services)

    yield start
    for service in services:
        service.close()


@pytest.fixture(scope="session")
def shared_service(session_settings, tiny_rtdetr_dir, tmp_path_factory) -> Iterator:
    """``shared_service(backend)``: the default service on that backend (module doc)."""
    services: list[Service] = []
    by_backend: dict[str, Service] = {}

    def get(backend: str = "local") -> Service:
        if backend not in by_backend:
            settings = session_settings(backend, **{"model_id": str(tiny_rtdetr_dir), **FAST_WORKER})
            logs = tmp_path_factory.mktemp(f"shared-service-{backend}")  # each its own worker-0.log
            by_backend[backend] = launch_service(settings, logs, 1, services)
        return by_backend[backend]

    yield get
    for service in services:
        service.close()
