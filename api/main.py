"""The FastAPI application. ``uvicorn api.main:app`` serves it.

Settings and storage clients are built in the lifespan (at start-up), never at import,
so tests build apps with their own settings via ``create_app(settings=...)``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.routes import health, jobs, model, review, streams, uploads
from api.submission import Submitter
from core.backends import Backends, build_backends
from core.config import Settings, load_settings
from core.errors import CattleCounterError, StorageUnavailable, describe_validation_error, dotted
from core.logging import configure_logging
from core.metrics import HttpMetricsMiddleware, metrics_response
from core.scratch import open_scratch

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent / "static"
UPLOAD_SWEEP_INTERVAL_S = 3600


def create_app(settings: Settings | None = None, backends: Backends | None = None,
               liveness: Callable[[], str | None] | None = None) -> FastAPI:
    """Build the app. Anything not given is created from the environment at start-up.

    ``liveness``: returns why the process is unhealthy, or None; /health answers 503 with it
    (the all-in-one passes its worker's, so a dead job thread shows).
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.settings = settings or load_settings()
        if settings is None:  # a real server process, not a test's app
            configure_logging(app.state.settings.log_level, app.state.settings.log_format.value)
        app.state.backends = backends or build_backends(app.state.settings)
        app.state.submitter = Submitter(app.state.settings, app.state.backends)
        # uploads land here while they are checked: on the data disk, not in memory; what a
        # killed API process left here is removed now
        try:
            scratch = open_scratch(app.state.settings, "api")
        except CattleCounterError as exc:  # one clear line before uvicorn's traceback
            log.error("cannot start: %s", exc)
            raise
        app.state.scratch_dir = scratch.path
        sweeper = asyncio.create_task(_sweep_uploads_forever(app.state.submitter))
        try:
            yield
        finally:
            sweeper.cancel()
            scratch.close()
            if backends is None:  # we built them, we close them
                app.state.backends.close()

    app = FastAPI(
        title="CattleCounter",
        version="0.1.0",
        description="Count and track animals (or any objects) in video. Upload a video, poll the job, "
        "fetch the annotated video, counts and detections.",
        lifespan=lifespan,
    )
    app.state.liveness = liveness
    _add_error_handlers(app)
    app.add_middleware(HttpMetricsMiddleware)
    app.add_api_route("/metrics", _metrics, include_in_schema=False)
    app.include_router(health.router)
    app.include_router(jobs.router)
    app.include_router(review.router)
    app.include_router(streams.router)
    app.include_router(uploads.router)
    app.include_router(model.router)
    if (STATIC_DIR / "index.html").exists():  # the dashboard, at /
        app.mount("/", StaticFiles(directory=STATIC_DIR, html=True), name="dashboard")
    return app


async def _sweep_uploads_forever(submitter: Submitter) -> None:
    """Hourly, delete direct uploads nobody made a job of (they would fill the disk)."""
    while True:
        try:
            await run_in_threadpool(submitter.sweep_abandoned_uploads)
        except CattleCounterError as exc:  # storage away for now: try again next hour
            log.warning("could not sweep abandoned uploads: %s", exc)
        except Exception:  # a bug: log it, and keep sweeping
            log.exception("sweeping abandoned uploads failed")
        await asyncio.sleep(UPLOAD_SWEEP_INTERVAL_S)


def _metrics(request: Request) -> Response:
    """Prometheus exposition for this API process."""
    return metrics_response(request.headers.get("accept"))


def _error_response(status: int, code: str, message: str, headers: Mapping[str, str] | None = None,
                    **extra) -> JSONResponse:
    headers = {**(headers or {}), **({"Retry-After": "5"} if status == 503 else {})}
    return JSONResponse({"error": {"code": code, "message": message, **extra}}, status_code=status, headers=headers)


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(CattleCounterError)
    async def project_error(request: Request, exc: CattleCounterError) -> JSONResponse:
        if isinstance(exc, StorageUnavailable):
            log.warning("storage unavailable during %s %s: %s", request.method, request.url.path, exc)
            return _error_response(503, exc.code, "storage is unavailable, try again shortly")
        if exc.http_status >= 500:
            # the server's own failure: its message may name server paths or hosts, so it goes
            # to the log and the client gets the code alone
            log.error("%s during %s %s: %s", exc.code, request.method, request.url.path, exc)
            return _error_response(exc.http_status, exc.code,
                                   "the server could not complete the request; it has been logged")
        return _error_response(exc.http_status, exc.code, str(exc), getattr(exc, "headers", None))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        """Starlette's own answers (unknown path, wrong method) in the same shape as ours."""
        message = f"{request.method} {request.url.path}: {exc.detail}"
        if exc.status_code == 400:  # FastAPI could not parse a body (JSON nested too deeply, ...):
            return _error_response(422, "invalid_input", message)  # the same answer as malformed JSON
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, f"http_{exc.status_code}")
        return _error_response(exc.status_code, code, message, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        fields = [_request_field(err["loc"]) for err in exc.errors()]
        message = describe_validation_error(exc.errors(), name=_request_field)
        return _error_response(422, "invalid_input", message, fields=fields)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error during %s %s", request.method, request.url.path)
        return _error_response(500, "internal_error", "an unexpected error occurred; it has been logged")


def _request_field(location: tuple) -> str:
    """A request validation error's field, without FastAPI's "where" part (body, query...)."""
    return dotted(location, skip=("body", "query", "path", "header"))


app = create_app()
