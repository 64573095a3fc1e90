"""Prometheus metrics for the API and the worker, and the two ways they are served.

Every metric lives in this module's own ``REGISTRY`` rather than prometheus-client's global
default registry: importing the module a second time (a reload, or the same file imported
under another name in tests) builds a fresh registry instead of failing with "Duplicated
timeseries". The process/platform/GC collectors are added to it so ``/metrics`` still shows
CPU, memory and open file descriptors.

Serving:
- the API serves ``/metrics`` from a route that returns ``metrics_response()`` (api/main.py)
  and adds ``HttpMetricsMiddleware`` to count requests by route *template*. ``metrics_app()``
  is the same as a mountable ASGI app, for an app that would rather ``app.mount`` it;
- the worker calls ``start_metrics_server(port)``, a small threaded HTTP server answering
  ``/metrics`` and ``/health`` on WORKER_METRICS_PORT, and ``stop()``s it on shutdown.

All metric names carry the ``cattlecounter_`` prefix (e.g. ``cattlecounter_jobs_submitted_total``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    make_asgi_app,
)
from prometheus_client.exposition import choose_encoder

from core.errors import CattleCounterError, ConfigError

if TYPE_CHECKING:
    from starlette.responses import Response

NAMESPACE = "cattlecounter"

# Videos take seconds to hours; the buckets cover a quick clip up to a four-hour recording.
JOB_SECONDS_BUCKETS = (5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400)
# Uploads stream gigabytes, so the upper buckets reach well past the usual web latencies.
HTTP_SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800)

# The route label for requests no route matched: one value, however many paths are probed.
UNMATCHED_ROUTE = "<unmatched>"

REGISTRY = CollectorRegistry()
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)
GCCollector(registry=REGISTRY)


def _counter(name: str, documentation: str, labels: tuple[str, ...] = ()) -> Counter:
    return Counter(name, documentation, labels, namespace=NAMESPACE, registry=REGISTRY)


def _gauge(name: str, documentation: str) -> Gauge:
    return Gauge(name, documentation, namespace=NAMESPACE, registry=REGISTRY)


# --- jobs (API: submitted; worker: everything else) -------------------------------------
# ``owner``: the tenant (API key name; "default" for bare keys) where METRICS_TENANT_LABELS
# asks for names, else ALL_OWNERS for every tenant, so that whoever scrapes the metrics does
# not learn who the tenants are. Either way its values are a short list set by the operator.
ALL_OWNERS = "*"  # outside the tenant names' alphabet: never a tenant's own series
JOBS_SUBMITTED = _counter("jobs_submitted", "Jobs accepted by the API and queued, by owner.", ("owner",))
JOBS_COMPLETED = _counter("jobs_completed", "Jobs that finished successfully.")
JOBS_FAILED = _counter("jobs_failed", "Jobs that failed for good, by error code.", ("reason",))
JOBS_CANCELLED = _counter("jobs_cancelled", "Jobs cancelled by a user.")
JOBS_RETRIED = _counter("jobs_retried", "Attempts that failed with a transient error and were requeued.")
JOBS_POISONED = _counter("jobs_poisoned", "Queue messages moved to the poison queue.")
JOBS_IN_PROGRESS = _gauge("jobs_in_progress", "Jobs this process is working on right now.")
JOB_PROCESSING_SECONDS = Histogram(
    "job_processing_seconds",
    "Wall-clock time of one processing attempt, from lease to final status.",
    namespace=NAMESPACE,
    registry=REGISTRY,
    buckets=JOB_SECONDS_BUCKETS,
)

# --- video pipeline (worker) --------------------------------------------------------------
FRAMES_PROCESSED = _counter(
    "frames_processed", "Video frames decoded, annotated and encoded (the detector sees one in FRAME_STRIDE)."
)
PROCESSING_FPS = _gauge("processing_fps", "Frames per second of the job in progress (last report).")

# --- queue and leases (worker) -------------------------------------------------------------
QUEUE_DEPTH = _gauge("queue_depth", "Approximate number of messages in the job queue (last poll).")
LEASE_RENEWALS = _counter("lease_renewals", "Queue message leases renewed while a job ran.")
LEASE_LOST = _counter("lease_lost", "Leases lost mid-job (expired or taken over by another worker).")

# --- webhooks (worker) ------------------------------------------------------------------------
WEBHOOK_FAILURES = _counter("webhook_failures", "Webhooks given up on: still undelivered at WEBHOOK_MAX_AGE_S.")

# --- live streams (worker) ------------------------------------------------------------------
# capture (frame decoded) -> counted: the live lag a user sees in the counts
STREAM_LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 1.5, 2, 3, 5, 10, 30)
STREAM_LATENCY = Histogram(
    "stream_latency_seconds",
    "Live streams: seconds from a frame's capture (decoded) to its detections being counted.",
    namespace=NAMESPACE,
    registry=REGISTRY,
    buckets=STREAM_LATENCY_BUCKETS,
)
STREAM_FRAMES_DROPPED = _counter(
    "stream_frames_dropped", "Live-stream frames skipped because inference was slower than the source (newest kept)."
)
STREAM_GAPS = _counter("stream_gaps", "Gaps in live streams (stalls, disconnects, resolution changes, resumes).")
STREAM_RECONNECTS = _counter("stream_reconnects", "Reconnections to live-stream sources.")
STREAMS_ACTIVE = _gauge("streams_active", "Live streams this process is counting right now.")
STREAM_QUEUE_DEPTH = _gauge("stream_queue_depth", "Approximate number of messages in the stream queue (last poll).")
# a job's event webhooks are numbered below its final webhook's sequence: past that, none are sent
STREAM_EVENTS_UNSENT = _counter(
    "stream_events_unsent", "Live-stream count events not sent: their job has used up its event webhook numbers."
)

# --- HTTP (API) -------------------------------------------------------------------------------
UPLOAD_BYTES = _counter("upload_bytes", "Bytes of video received by the API, by owner.", ("owner",))
# --- quotas per tenant (API: refusals; worker: hand-backs) -------------------------------------
QUOTA_REFUSALS = _counter("quota_refusals", "Submissions a tenant quota refused, by quota and owner.", ("quota", "owner"))
QUOTA_HAND_BACKS = _counter(
    "quota_hand_backs", "Jobs a worker handed back because their tenant ran QUOTA_MAX_PROCESSING_JOBS already."
)
QUOTA_LIMIT = Gauge("quota_limit", "The quotas every tenant without its own (TENANT_QUOTAS) has; 0: none.",
                    ("quota",), namespace=NAMESPACE, registry=REGISTRY)
HTTP_REQUESTS = _counter(
    "http_requests",
    "HTTP requests answered, by method, route template and status.",
    ("method", "route", "status"),
)
HTTP_REQUEST_SECONDS = Histogram(
    "http_request_seconds",
    "Time to answer an HTTP request, by method and route template.",
    ("method", "route"),
    namespace=NAMESPACE,
    registry=REGISTRY,
    buckets=HTTP_SECONDS_BUCKETS,
)


def owner_label(owner: str, named: bool) -> str:
    """The ``owner`` label of a tenant's activity: its name only where the operator asked
    (METRICS_TENANT_LABELS), else ALL_OWNERS."""
    return owner if named else ALL_OWNERS


def count_submission(owner: str, size: int, named: bool) -> None:
    """A job accepted and queued for ``owner``, with ``size`` bytes of input received."""
    label = owner_label(owner, named)
    JOBS_SUBMITTED.labels(owner=label).inc()
    UPLOAD_BYTES.labels(owner=label).inc(size)


def record_job_failure(error: BaseException) -> str:
    """Count a job that failed for good and return the ``reason`` label used.

    The reason is the error's stable code (``corrupt_video``, ``model_error``...), so the
    label's values stay a short fixed list; anything outside the error tree counts as
    ``internal_error``.
    """
    reason = error.code if isinstance(error, CattleCounterError) else CattleCounterError.code
    JOBS_FAILED.labels(reason=reason).inc()
    return reason


def metrics_payload(accept: str | None = None) -> tuple[bytes, str]:
    """The current exposition text and its content type (OpenMetrics if ``accept`` asks for it)."""
    encoder, content_type = choose_encoder(accept or "")
    return encoder(REGISTRY), content_type


def metrics_response(accept: str | None = None) -> Response:
    """A Starlette/FastAPI response for a ``GET /metrics`` route."""
    from starlette.responses import Response  # lazy: the core package does not need a web framework

    body, content_type = metrics_payload(accept)
    return Response(content=body, media_type=content_type)


def metrics_app() -> Callable[..., Any]:
    """An ASGI app serving this registry; mount it with ``app.mount("/metrics", metrics_app())``."""
    return make_asgi_app(registry=REGISTRY)


# --- HTTP request metrics for the API -------------------------------------------------------


def route_label(scope: dict[str, Any]) -> str:
    """The route template a request matched (``/jobs/{job_id}``), never the raw path.

    Starlette stores the matched route in ``scope["route"]`` while routing; requests that
    matched nothing share one label so probing random URLs cannot blow up cardinality.
    """
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) and path else UNMATCHED_ROUTE


class HttpMetricsMiddleware:
    """Pure ASGI middleware counting ``http_requests_total`` and timing ``http_request_seconds``.

    ``app.add_middleware(HttpMetricsMiddleware)``. Pure ASGI (not BaseHTTPMiddleware) so
    streamed upload bodies and streamed responses pass through untouched. A request whose
    app raised is counted with status 500, as the server answers it.
    """

    def __init__(self, app: Callable[..., Any]) -> None:
        self.app = app

    async def __call__(
        self, scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]
    ) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = {"code": 500}

        async def send_and_note_status(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        started = time.perf_counter()
        try:
            await self.app(scope, receive, send_and_note_status)
        finally:
            elapsed = time.perf_counter() - started
            observe_http_request(scope["method"], route_label(scope), status["code"], elapsed)


def observe_http_request(method: str, route: str, status: int, seconds: float) -> None:
    """Record one answered request (for servers that do not use HttpMetricsMiddleware)."""
    HTTP_REQUESTS.labels(method=method, route=route, status=str(status)).inc()
    HTTP_REQUEST_SECONDS.labels(method=method, route=route).observe(seconds)


# --- the worker's metrics + health server ----------------------------------------------------


class MetricsServer:
    """A threaded HTTP server answering ``GET /metrics`` and ``GET /health``; ``stop()`` ends it.

    ``/health`` answers 200 while ``health_check()`` returns True and 503 otherwise, so a
    container healthcheck or a Kubernetes liveness probe can restart a stuck worker.
    """

    def __init__(self, host: str, port: int, health_check: Callable[[], bool]) -> None:
        handler = _handler_class(health_check)
        try:
            self._server = ThreadingHTTPServer((host, port), handler)
        except OSError as exc:
            raise ConfigError(
                f"cannot serve metrics on {host}:{port} ({exc.strerror or exc}); "
                "set WORKER_METRICS_PORT to a free port, or 0 to turn the server off"
            ) from exc
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="metrics-server", daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        """The port actually bound (useful when started with port 0)."""
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        host = str(self._server.server_address[0])
        return f"http://{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{self.port}"

    def stop(self, timeout: float = 5.0) -> None:
        """Stop answering, close the socket and join the serving thread. Safe to call twice."""
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join(timeout)
        self._server.server_close()

    def __enter__(self) -> MetricsServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def start_metrics_server(
    port: int, host: str = "0.0.0.0", health_check: Callable[[], bool] | None = None
) -> MetricsServer:
    """Serve ``/metrics`` and ``/health`` on ``host:port`` from a daemon thread.

    ``port=0`` binds a free port (read it back from ``server.port``). Raises ConfigError
    when the port cannot be bound.
    """
    return MetricsServer(host, port, health_check or (lambda: True))


def _handler_class(health_check: Callable[[], bool]) -> type[BaseHTTPRequestHandler]:
    class MetricsHandler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                body, content_type = metrics_payload(self.headers.get("Accept"))
                self._answer(200, body, content_type)
            elif path == "/health":
                healthy = _safe_health(health_check)
                self._answer(200 if healthy else 503, b"ok\n" if healthy else b"unhealthy\n", "text/plain")
            else:
                self._answer(404, b"not found: try /metrics or /health\n", "text/plain")

        def _answer(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass  # scrapes every few seconds would drown the worker's own logs

    return MetricsHandler


def _safe_health(health_check: Callable[[], bool]) -> bool:
    try:
        return bool(health_check())
    except Exception:  # a crashing check means unhealthy, not a dead metrics thread
        return False
