"""The all-in-one server as a real process: ``python -m allinone`` (API + dashboard + worker)
on the embedded local backend with the tiny random test model, exactly as ``make run`` starts it.

``allinone_server`` is one module-scoped server (a module sets ``ALLINONE_ENV`` for more settings);
``launch_allinone(directory, model_dir, **env)`` starts one anywhere else. When a test fails, the
log of every server still running is attached to its report.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fixtures_service import Process, free_port
from tests.waiting import answers, get_job, wait_for_job_status, wait_until

START_TIMEOUT_S = 90.0  # importing torch on a busy 2-core machine takes a while
STOP_TIMEOUT_S = 15.0
LOG_TAIL_CHARS = 8000

_running: list[AllInOneServer] = []  # for attaching logs to failed tests' reports

SERVER_ENV = {  # fast polling and progress so tests see state changes within a second
    "STORAGE_BACKEND": "local",
    "DEVICE": "cpu",
    "BATCH_SIZE": "4",
    "POLL_INTERVAL_S": "0.2",
    "PROGRESS_INTERVAL_S": "0.3",
    "WORKER_METRICS_PORT": "0",
    "LOG_FORMAT": "text",
    "SHUTDOWN_GRACE_S": "5",
    "API_KEYS": "",  # no keys unless a test asks: overrides any developer .env
}


class AllInOneServer:
    """A running ``python -m allinone``: its base URL, an HTTP client and its log."""

    def __init__(self, url: str, data_dir: Path, process: Process, api_key: str | None) -> None:
        self.url = url
        self.data_dir = data_dir
        self.process = process
        headers = {"X-API-Key": api_key} if api_key else {}
        self.client = httpx.Client(base_url=url, timeout=30, headers=headers)

    def log_tail(self) -> str:
        return self.process.log()[-LOG_TAIL_CHARS:]

    def job(self, job_id: str) -> dict[str, Any]:
        return get_job(self.client, job_id)

    def wait_for_status(self, job_id: str, statuses: set[str], timeout: float = 60) -> dict[str, Any]:
        return wait_for_job_status(self.client, job_id, statuses, timeout, self.log_tail)

    def stop(self) -> None:
        """SIGTERM (the worker hands its running job back), then SIGKILL if it lingers."""
        self.client.close()
        self.process.signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):  # process.stop() kills it
            self.process.wait(STOP_TIMEOUT_S)
        self.process.stop()
        if self in _running:
            _running.remove(self)


def launch_allinone(directory: Path, model_dir: Path, started_path: str = "/health", **env: str) -> AllInOneServer:
    """Start ``python -m allinone`` with DATA_DIR under ``directory`` and wait for ``started_path``
    to answer 200 (``/openapi.json`` for a server whose /health is to fail at once)."""
    port = free_port()
    data_dir = directory / f"data-{port}"
    settings = {**SERVER_ENV, "DATA_DIR": str(data_dir), "MODEL_ID": str(model_dir), **env}
    process = Process(
        f"allinone-{port}",
        [sys.executable, "-m", "allinone", "--port", str(port)],
        settings,
        directory / f"allinone-{port}.log",
    )
    url = f"http://127.0.0.1:{port}"
    first_key = settings["API_KEYS"].split(",")[0]
    server = AllInOneServer(url, data_dir, process, first_key.partition(":")[2] or first_key or None)  # name:key
    _running.append(server)
    try:
        wait_until(
            lambda: answers(f"{url}{started_path}") or process.popen.poll() is not None,
            START_TIMEOUT_S,
            f"python -m allinone to answer {url}{started_path}",
        )
        assert process.popen.poll() is None, f"allinone exited at start:\n{process.log()}"
    except AssertionError as exc:
        server.stop()
        raise AssertionError(f"{exc}\n----- server log -----\n{process.log()[-LOG_TAIL_CHARS:]}") from None
    return server


# Dashboard modules that need only an API key of their own share one server, each key its own
# tenant, so a module sees only its own jobs: one torch-importing start instead of one per module
# (tests/xdist_scopes.py keeps them on one xdist worker). A module names its tenant with
# ``ALLINONE_TENANT = "<name>"`` and takes its key from here.
TENANT_KEYS = {"gallery": "gallery-key-5d20a1", "review": "review-key-2b77f0", "survey": "survey-key-41c9a2",
               "drawing": "drawing-key-93be4d", "dashboard": "dashboard-key-7c41e9"}
TENANTS_ENV = {
    "STREAM_ALLOWED_NETWORKS": "127.0.0.0/8",  # the test cameras are on loopback
    # tiles of 1600 px leave the clips whole and cut big stills and a 24 MP orthomosaic into a
    # dozen views each, not the hundreds of the tiny model's 320 px tiles: the same pages, for a
    # fraction of the CPU
    "TILING": "1600x1600",
}


@pytest.fixture(scope="session")
def tenants_server(tmp_path_factory: pytest.TempPathFactory, tiny_rtdetr_dir: Path) -> Iterator[AllInOneServer]:
    keys = ",".join(f"{name}:{key}" for name, key in TENANT_KEYS.items())
    server = launch_allinone(tmp_path_factory.mktemp("allinone-tenants"), tiny_rtdetr_dir, API_KEYS=keys, **TENANTS_ENV)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def allinone_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, tiny_rtdetr_dir: Path
) -> Iterator[AllInOneServer]:
    """One all-in-one server for a test module. A module may set ``ALLINONE_ENV = {...}`` (e.g.
    ``{"API_KEYS": "secret"}``) to start its own with more settings, or ``ALLINONE_TENANT`` to
    be one tenant of the shared ``tenants_server``."""
    tenant = getattr(request.module, "ALLINONE_TENANT", None)
    if tenant is not None:
        shared = request.getfixturevalue("tenants_server")
        view = AllInOneServer(shared.url, shared.data_dir, shared.process, TENANT_KEYS[tenant])
        yield view
        view.client.close()
        return
    extra_env = getattr(request.module, "ALLINONE_ENV", {})
    server = launch_allinone(tmp_path_factory.mktemp("allinone"), tiny_rtdetr_dir, **extra_env)
    yield server
    server.stop()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator:
    """Attach the log of every running server to a failed test's report (shown under the failure)."""
    report = yield
    if report.failed:
        for server in _running:
            report.sections.append((f"allinone log ({server.url})", server.log_tail()))
    return report
