"""core.metrics: exposition, the worker's metrics server over real HTTP, and route-template
labels from a real FastAPI app."""

from __future__ import annotations

import importlib.util
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from core import metrics
from core.errors import ConfigError, CorruptVideo, StorageUnavailable

EXPECTED_METRICS = [
    "jobs_submitted_total",
    "jobs_completed_total",
    "jobs_failed_total",
    "jobs_cancelled_total",
    "job_processing_seconds_bucket",
    "frames_processed_total",
    "processing_fps",
    "queue_depth",
    "lease_renewals_total",
    "lease_lost_total",
    "webhook_failures_total",
    "upload_bytes_total",
    "http_requests_total",
    "http_request_seconds_bucket",
]


def sample(name: str, **labels: str) -> float:
    value = metrics.REGISTRY.get_sample_value(f"{metrics.NAMESPACE}_{name}", labels)
    return 0.0 if value is None else value


def fetch(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.headers["Content-Type"], err.read().decode()


def test_exposition_lists_every_metric_with_prefix() -> None:
    metrics.JOBS_FAILED.labels(reason="corrupt_video")  # labelled metrics appear once a child exists
    metrics.JOBS_SUBMITTED.labels(owner="default")
    metrics.UPLOAD_BYTES.labels(owner="default")
    metrics.HTTP_REQUESTS.labels(method="GET", route="/x", status="200")
    metrics.HTTP_REQUEST_SECONDS.labels(method="GET", route="/x")
    body, content_type = metrics.metrics_payload()
    text = body.decode()
    assert content_type.startswith("text/plain")
    for name in EXPECTED_METRICS:
        assert f"\n{metrics.NAMESPACE}_{name}" in text, name
    assert "process_resident_memory_bytes" in text  # process collector is on our registry too
    bucket = 'cattlecounter_job_processing_seconds_bucket{le="3600.0"}'
    assert bucket in text, "job histogram must have buckets for hour-long videos"


def test_openmetrics_when_asked() -> None:
    body, content_type = metrics.metrics_payload("application/openmetrics-text; version=1.0.0")
    assert content_type.startswith("application/openmetrics-text")
    assert body.decode().rstrip().endswith("# EOF")


def test_module_imports_twice_without_duplicate_registration() -> None:
    spec = importlib.util.spec_from_file_location("core_metrics_again", Path(metrics.__file__))
    assert spec and spec.loader
    again = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(again)  # would raise "Duplicated timeseries" on a shared registry
    again.JOBS_SUBMITTED.labels(owner="default").inc()
    assert again.REGISTRY is not metrics.REGISTRY


def test_job_failure_reason_is_the_error_code() -> None:
    before_corrupt = sample("jobs_failed_total", reason="corrupt_video")
    before_internal = sample("jobs_failed_total", reason="internal_error")
    assert metrics.record_job_failure(CorruptVideo("truncated")) == "corrupt_video"
    assert metrics.record_job_failure(StorageUnavailable()) == "storage_unavailable"
    assert metrics.record_job_failure(ZeroDivisionError()) == "internal_error"
    assert sample("jobs_failed_total", reason="corrupt_video") == before_corrupt + 1
    assert sample("jobs_failed_total", reason="internal_error") == before_internal + 1


def test_metrics_server_serves_metrics_and_health_then_stops() -> None:
    healthy = threading.Event()
    healthy.set()
    server = metrics.start_metrics_server(0, host="127.0.0.1", health_check=healthy.is_set)
    try:
        metrics.FRAMES_PROCESSED.inc(7)
        status, content_type, body = fetch(server.url + "/metrics")
        assert status == 200 and content_type.startswith("text/plain")
        assert "cattlecounter_frames_processed_total" in body
        assert fetch(server.url + "/health")[0] == 200
        healthy.clear()
        assert fetch(server.url + "/health")[0] == 503
        assert fetch(server.url + "/nope")[0] == 404
    finally:
        server.stop()
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(server.url + "/health", timeout=2)
    server.stop()  # idempotent


def test_metrics_server_health_check_that_raises_is_unhealthy() -> None:
    def broken() -> bool:
        raise RuntimeError("boom")

    with metrics.start_metrics_server(0, host="127.0.0.1", health_check=broken) as server:
        assert fetch(server.url + "/health")[0] == 503
        assert fetch(server.url + "/metrics")[0] == 200


def test_metrics_server_on_busy_port_is_a_config_error() -> None:
    with metrics.start_metrics_server(0, host="127.0.0.1") as server, \
            pytest.raises(ConfigError, match="WORKER_METRICS_PORT"):
            metrics.start_metrics_server(server.port, host="127.0.0.1")


def _api() -> FastAPI:
    app = FastAPI()
    app.add_middleware(metrics.HttpMetricsMiddleware)

    @app.get("/things/{thing_id}")
    def get_thing(thing_id: str) -> dict[str, str]:
        return {"id": thing_id}

    @app.get("/crash")
    def crash() -> None:
        raise CorruptVideo("fails on purpose")

    @app.get("/metrics")
    def get_metrics() -> object:
        return metrics.metrics_response()

    app.mount("/mounted-metrics", metrics.metrics_app())
    return app


def test_http_metrics_use_route_templates_not_raw_paths() -> None:
    before = sample("http_requests_total", method="GET", route="/things/{thing_id}", status="200")
    unmatched = metrics.UNMATCHED_ROUTE
    unmatched_before = sample("http_requests_total", method="GET", route=unmatched, status="404")
    crash_before = sample("http_requests_total", method="GET", route="/crash", status="500")
    with TestClient(_api(), raise_server_exceptions=False) as client:
        for thing in ("a", "b", "c"):
            assert client.get(f"/things/{thing}").status_code == 200
        assert client.get("/no/such/page").status_code == 404
        assert client.get("/crash").status_code == 500
        scraped = client.get("/metrics")
        mounted = client.get("/mounted-metrics/")
    assert sample("http_requests_total", method="GET", route="/things/{thing_id}", status="200") == before + 3
    assert sample("http_requests_total", method="GET", route=unmatched, status="404") == unmatched_before + 1
    assert sample("http_requests_total", method="GET", route="/crash", status="500") == crash_before + 1
    assert 'route="/things/a"' not in metrics.metrics_payload()[0].decode()
    assert scraped.status_code == 200 and "cattlecounter_http_requests_total" in scraped.text
    assert mounted.status_code == 200 and "cattlecounter_http_request_seconds_bucket" in mounted.text
