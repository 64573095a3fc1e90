"""Storage fixtures: a real Azurite emulator, Settings factories, and built backends.

Reuse these from any test module (they are registered in tests/conftest.py):

``azurite_connection_string`` (session)
    Starts the real Azurite from ``node_modules/.bin/azurite`` (``npm ci`` installs it) on
    free loopback ports, in memory, and yields a connection string for the well-known
    ``devstoreaccount1`` account with Blob/Queue/Table endpoints on 127.0.0.1. Stopped at
    the end of the session. Without node/Azurite the test is skipped, except under
    ``CI=true`` where it fails: CI must run the Azure tests.

``make_settings(backend, **overrides) -> Settings`` (function)
    ``backend`` is "local" or "azure". Local settings get a fresh ``data_dir`` under the
    test's tmp_path; Azure settings get the Azurite connection string and fresh container,
    queue, poison queue and table names, so tests never see each other's data (they are
    deleted after the test). ``overrides`` are any Settings fields. ``.env`` is ignored.

``session_settings`` (session)
    The same factory for module-scoped fixtures; Azure resources are deleted at the module's end.

``proxied_azurite`` (function)
    A ``tests.tcp_proxy.ProxiedAzurite`` in front of that Azurite: its ``connection_string``
    goes through proxies a test can ``hold()`` (a peer that stops answering), ``cut()`` and
    ``restore()``. Closed after the test.

``backends`` (function, parametrised over "local" and "azure")
    ``build_backends(make_settings(param))``, closed after the test. Azure runs carry the
    ``azurite`` marker, so ``-m "not azurite"`` runs the local half only.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from core.backends import Backends, build_backends
from core.config import Settings, StorageBackend
from tests.tcp_proxy import ProxiedAzurite

REPO_ROOT = Path(__file__).resolve().parent.parent
AZURITE_BIN = REPO_ROOT / "node_modules" / ".bin" / "azurite"
AZURITE_MISSING = "node or node_modules/.bin/azurite missing: run `npm ci`"
AZURITE_START_TIMEOUT_S = 30.0
AZURITE_START_ATTEMPTS = 3  # a picked port may be taken before Azurite binds it

# Azurite's well-known development account (public, documented by Microsoft).
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="

MakeSettings = Callable[..., Settings]


# --- Azurite -----------------------------------------------------------------------------


def azurite_connection_string_for(blob_port: int, queue_port: int, table_port: int) -> str:
    """The connection string for an Azurite listening on these loopback ports."""
    base = "http://127.0.0.1"
    return (
        f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
        f"BlobEndpoint={base}:{blob_port}/{AZURITE_ACCOUNT};"
        f"QueueEndpoint={base}:{queue_port}/{AZURITE_ACCOUNT};"
        f"TableEndpoint={base}:{table_port}/{AZURITE_ACCOUNT};"
    )


def _require_azurite() -> None:
    if shutil.which("node") and AZURITE_BIN.exists():
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true but {AZURITE_MISSING}: the Azure backend tests must run in CI")
    pytest.skip(AZURITE_MISSING)


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _port_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _wait_until_listening(process: subprocess.Popen, ports: list[int], log: Path) -> bool:
    """Poll until every port accepts connections (True) or Azurite exits (False)."""
    deadline = time.monotonic() + AZURITE_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        if all(_port_answers(port) for port in ports):
            return True
        time.sleep(0.05)
    _stop(process)
    pytest.fail(
        f"Azurite did not listen on {ports} within {AZURITE_START_TIMEOUT_S}s; log:\n{log.read_text()}"
    )


def _start_azurite(workspace: Path) -> tuple[subprocess.Popen, list[int]]:
    log = workspace / "azurite.log"
    for _ in range(AZURITE_START_ATTEMPTS):
        ports = _free_ports(3)
        # No --location: Azurite refuses it together with --inMemoryPersistence. It runs
        # in the temp workspace instead, so nothing it might write lands in the repository.
        command = [str(AZURITE_BIN)]
        for service, port in zip(("blob", "queue", "table"), ports, strict=True):
            command += [f"--{service}Host", "127.0.0.1", f"--{service}Port", str(port)]
        command += [
            "--inMemoryPersistence",
            "--skipApiVersionCheck",
            "--loose",
            "--disableTelemetry",
            "--silent",
        ]
        with open(log, "w") as log_file:
            process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, cwd=workspace)
        if _wait_until_listening(process, ports, log):
            return process, ports
    pytest.fail(f"Azurite failed to start {AZURITE_START_ATTEMPTS} times; last log:\n{log.read_text()}")


def _stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


@pytest.fixture(scope="session")
def azurite_connection_string(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A connection string for a real Azurite started for this test session."""
    _require_azurite()
    workspace = tmp_path_factory.mktemp("azurite")
    process, ports = _start_azurite(workspace)
    try:
        yield azurite_connection_string_for(*ports)
    finally:
        _stop(process)


@pytest.fixture
def proxied_azurite(azurite_connection_string: str) -> Iterator[ProxiedAzurite]:
    """Proxies in front of the session's Azurite that a test can hold, cut and restore."""
    proxies = ProxiedAzurite(azurite_connection_string)
    try:
        yield proxies
    finally:
        proxies.close()


# --- settings and backends -------------------------------------------------------------


def unique_name(prefix: str) -> str:
    """A fresh name valid for a container, a queue and a table (lowercase letters/digits)."""
    return f"{prefix}{uuid.uuid4().hex[:16]}"


def _azure_resource_names() -> dict[str, str]:
    name = unique_name("t")
    return {
        "blob_container": f"{name}-blobs",
        "queue_name": f"{name}-jobs",
        "poison_queue_name": f"{name}-poison",
        "jobs_table": f"{name}jobs",
    }


def _drop_azure_resources(settings: Settings) -> None:
    """Delete a test's container, queues and table so Azurite's memory stays small."""
    from azure.core.exceptions import AzureError
    from azure.data.tables import TableServiceClient
    from azure.storage.blob import BlobServiceClient
    from azure.storage.queue import QueueServiceClient

    conn = settings.azure_storage_connection_string
    blobs = BlobServiceClient.from_connection_string(conn, retry_total=0)
    queues = QueueServiceClient.from_connection_string(conn, retry_total=0)
    tables = TableServiceClient.from_connection_string(conn, retry_total=0)
    drops = [
        lambda: blobs.delete_container(settings.blob_container),
        lambda: queues.delete_queue(settings.queue_name),
        lambda: queues.delete_queue(settings.poison_queue_name),
        lambda: queues.delete_queue(settings.stream_queue),
        lambda: queues.delete_queue(settings.stream_poison_queue),
        lambda: tables.delete_table(settings.jobs_table),
    ]
    for drop in drops:
        with contextlib.suppress(AzureError):  # never created, or already gone
            drop()
    for client in (blobs, queues, tables):
        client.close()


@contextlib.contextmanager
def _settings_factory(request: pytest.FixtureRequest, data_root: Path) -> Iterator[MakeSettings]:
    """``make(backend, **overrides)``: isolated Settings; the Azure resources made are dropped at exit."""

    def make(backend: str | StorageBackend = "local", **overrides) -> Settings:
        backend = StorageBackend(backend)
        fields: dict = {"storage_backend": backend}
        azurite = None
        if backend is StorageBackend.AZURE:
            azurite = request.getfixturevalue("azurite_connection_string")
            fields["azure_storage_connection_string"] = azurite
            fields.update(_azure_resource_names())
        else:
            fields["data_dir"] = data_root / unique_name("data-")
        fields.update(overrides)
        settings = Settings(_env_file=None, **fields)  # type: ignore[call-arg]
        if azurite and settings.azure_storage_connection_string == azurite:
            to_drop.append(settings)
        return settings

    to_drop: list[Settings] = []
    yield make
    for settings in to_drop:
        _drop_azure_resources(settings)


@pytest.fixture
def make_settings(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MakeSettings]:
    """A factory ``make_settings(backend, **overrides)`` of isolated Settings (see module doc)."""
    with _settings_factory(request, tmp_path) as make:
        yield make


@pytest.fixture(scope="session")
def session_settings(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[MakeSettings]:
    """``make_settings`` for a session-scoped fixture (``shared_service``): the same isolated
    Settings, their Azure resources dropped at the session's end."""
    with _settings_factory(request, tmp_path_factory.mktemp("session-settings")) as make:
        yield make


@pytest.fixture(params=["local", pytest.param("azure", marks=pytest.mark.azurite)])
def backends(request: pytest.FixtureRequest, make_settings: MakeSettings) -> Iterator[Backends]:
    """Built backends of each kind, isolated per test."""
    built = build_backends(make_settings(request.param))
    try:
        yield built
    finally:
        built.close()
