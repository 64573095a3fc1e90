"""docker compose files: they parse, wire Azurite, API and worker, set only known variables
with valid values, and give the worker time to shut down. No Docker engine runs here."""

from __future__ import annotations

import pytest

from core.config import load_settings
from scripts.config_table import known_variables
from tests.fixtures_deploy import (
    COMPOSE_FILES,
    INTERPOLATION,
    ROOT,
    SHUTDOWN_MARGIN_S,
    Reset,
    compose_environment,
    duration_seconds,
    env_example_entries,
    interpolate_defaults,
    load_compose,
    merged_worker_environment,
)


def test_compose_files_parse_and_wire_azurite_api_and_worker() -> None:
    compose = load_compose("docker-compose.yml")
    services = compose["services"]
    assert {"azurite", "api", "worker"} <= set(services)
    azurite = services["azurite"]
    assert azurite["image"].startswith("mcr.microsoft.com/azure-storage/azurite")
    assert "--skipApiVersionCheck" in azurite["command"] and "--loose" in azurite["command"]
    for name in ("api", "worker"):
        service = services[name]
        assert (ROOT / service["build"]["dockerfile"]).is_file()
        assert service["depends_on"]["azurite"]["condition"] == "service_healthy"
        assert {"path": ".env", "required": False} in service["env_file"]
    assert "8000:8000" in services["api"]["ports"]


def test_compose_worker_reserves_an_nvidia_gpu() -> None:
    worker = load_compose("docker-compose.yml")["services"]["worker"]
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    assert "models:/models" in worker["volumes"]


def test_compose_cpu_override_drops_the_gpu_and_runs_on_cpu() -> None:
    worker = load_compose("docker-compose.cpu.yml")["services"]["worker"]
    assert isinstance(worker["deploy"]["resources"]["reservations"]["devices"], Reset)
    assert merged_worker_environment(*COMPOSE_FILES)["DEVICE"] == "cpu"
    assert worker["build"]["args"]["TORCH_INDEX_URL"].endswith("/cpu")


@pytest.mark.parametrize("name", COMPOSE_FILES)
def test_compose_sets_and_interpolates_only_known_variables(name: str) -> None:
    compose = load_compose(name)
    for service_name, service in compose["services"].items():
        if service_name == "azurite":
            continue  # Azurite's own environment is not ours
        unknown = set(compose_environment(service)) - known_variables()
        assert unknown == set(), f"{name}: service {service_name} sets unknown variables {unknown}"
    interpolated = {m["name"] for m in INTERPOLATION.finditer((ROOT / name).read_text())}
    assert interpolated - known_variables() == set()


@pytest.mark.parametrize("files", [COMPOSE_FILES[:1], COMPOSE_FILES], ids=["gpu", "cpu"])
def test_compose_worker_environment_is_valid_settings_pointing_at_azurite(files: tuple[str, ...]) -> None:
    environment = merged_worker_environment(*files)
    settings = load_settings(environment, env_file=None)
    assert settings.storage_backend.value == "azure"
    endpoints = dict(
        part.split("=", 1) for part in (settings.azure_storage_connection_string or "").split(";") if part
    )
    services = set(load_compose("docker-compose.yml")["services"])
    for key in ("BlobEndpoint", "QueueEndpoint", "TableEndpoint"):
        host = endpoints[key].split("//", 1)[1].split(":", 1)[0]
        assert host in services, f"{key} points at {host!r}, which is not a compose service"


def test_compose_default_connection_string_matches_env_example() -> None:
    api_environment = load_compose("docker-compose.yml")["services"]["api"]["environment"]
    compose_default = interpolate_defaults(api_environment["AZURE_STORAGE_CONNECTION_STRING"])
    example = {entry.name: entry.value for entry in env_example_entries()}
    assert compose_default == example["AZURE_STORAGE_CONNECTION_STRING"]


@pytest.mark.parametrize("service", ["api", "worker", "stream-worker"])
def test_compose_stop_grace_period_outlasts_shutdown_grace(service: str) -> None:
    """Every process hands its work back within SHUTDOWN_GRACE_S plus a margin after SIGTERM;
    compose's SIGKILL (10 s unless stop_grace_period says) must not come first."""
    stop_grace_period = load_compose("docker-compose.yml")["services"][service].get("stop_grace_period", "10s")
    environment = {**merged_environment(service, *COMPOSE_FILES), "AZURE_STORAGE_CONNECTION_STRING": "x"}
    shutdown_grace = load_settings(environment, env_file=None).shutdown_grace_s
    assert duration_seconds(stop_grace_period) >= shutdown_grace + SHUTDOWN_MARGIN_S




def merged_environment(service: str, *files: str) -> dict[str, str]:
    """``service``'s environment after Compose merges the files, with defaults substituted."""
    merged: dict[str, str] = {}
    for name in files:
        merged.update(compose_environment(load_compose(name)["services"].get(service) or {}))
    return {key: interpolate_defaults(value) for key, value in merged.items()}


@pytest.mark.parametrize("files", [COMPOSE_FILES[:1], COMPOSE_FILES], ids=["gpu", "cpu"])
def test_compose_runs_streams_on_their_own_worker_and_file_jobs_on_the_other(files: tuple[str, ...]) -> None:
    """A stream on the file worker would hold one of its threads (and the GPU) for weeks."""
    files_only = load_settings(merged_environment("worker", *files), env_file=None)
    streams_only = load_settings(merged_environment("stream-worker", *files), env_file=None)
    assert (files_only.worker_concurrency, files_only.stream_concurrency) == (1, 0)
    assert (streams_only.worker_concurrency, streams_only.stream_concurrency) == (0, 1)
    assert streams_only.device == files_only.device == ("cpu" if len(files) == 2 else "cuda")
    assert streams_only.azure_storage_connection_string == files_only.azure_storage_connection_string
    stream_worker = load_compose("docker-compose.yml")["services"]["stream-worker"]
    assert stream_worker["image"] == "cattlecounter-worker:latest" and "models:/models" in stream_worker["volumes"]
    if len(files) == 2:  # the CPU override drops the GPU from both
        assert isinstance(load_compose(files[1])["services"]["stream-worker"]["deploy"]["resources"]
                          ["reservations"]["devices"], Reset)
