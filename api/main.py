"""The FastAPI application. ``uvicorn api.main:app`` serves it.

Settings and storage clients are built in the lifespan (at start-up), never at import,
so tests build apps with their own settings via ``create_app(settings=...)``.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import fastapi_offline
import uvicorn
from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import BaseRoute, Match, Mount
from starlette.types import Receive, Scope, Send

from api.deps import MetricsReaderDep
from api.routes import health, jobs, model, review, streams, tenants, uploads
from api.schemas import ERROR_MEANINGS
from api.submission import Submitter
from core.backends import Backends, build_backends
from core.config import Settings, load_settings
from core.errors import (
    CattleCounterError,
    ShuttingDown,
    StorageUnavailable,
    StreamUnavailable,
    describe_validation_error,
    dotted,
)
from core.logging import configure_logging
from core.metrics import HttpMetricsMiddleware, metrics_response
from core.scratch import open_scratch

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent / "static"
# Swagger UI's and ReDoc's bundles as the fastapi-offline package installs them (requirements-api.txt)
DOCS_ASSETS_DIR = Path(fastapi_offline.__file__).parent / "static"
DOCS_ASSETS_URL = "/docs/assets"
# the documentation pages may load nothing from another host: no CDN, no tracking logo (ReDoc
# shows one from its makers' site), no validator badge; the browser does not even ask
DOCS_PAGE_POLICY = ("default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
                    "img-src 'self' data:; worker-src 'self' blob:; connect-src 'self'")
UPLOAD_SWEEP_INTERVAL_S = 3600
FASTAPI_422 = {"$ref": "#/components/schemas/HTTPValidationError"}
HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


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
        if settings is None:
            _bound_graceful_shutdown(app.state.settings.shutdown_grace_s)
        sweeper = asyncio.create_task(_sweep_uploads_forever(app.state.submitter))
        try:
            yield
        finally:
            sweeper.cancel()
            scratch.close()
            if backends is None:  # we built them, we close them
                app.state.backends.close()
            if settings is None:
                _exit_cleanly_after_sigterm()

    app = FastAPI(
        title="CattleCounter",
        version="0.1.0",
        description="Count and track animals (or any objects) in video. Upload a video, poll the job, "
        "fetch the annotated video, counts and detections.",
        lifespan=lifespan,
        docs_url=None,  # served by _add_docs_pages, from installed files
        redoc_url=None,
    )
    app.state.liveness = liveness
    _add_docs_pages(app)
    _document_validation_errors_as_ours(app)
    _add_error_handlers(app)
    app.add_middleware(_AnswerRequestsCutAtShutdown)  # inside the metrics: they count its 503
    app.add_middleware(HttpMetricsMiddleware)
    app.add_api_route("/metrics", _metrics, include_in_schema=False, dependencies=[MetricsReaderDep])
    app.include_router(health.router)
    app.include_router(jobs.router)
    app.include_router(review.router)
    app.include_router(streams.router)
    app.include_router(uploads.router)
    app.include_router(model.router)
    app.include_router(tenants.router)
    if (STATIC_DIR / "index.html").exists():  # the dashboard, at /
        app.mount("/", DashboardFiles(app.router.routes, directory=STATIC_DIR, html=True), name="dashboard")
    return app


class _AnswerRequestsCutAtShutdown:
    """uvicorn cancels the requests still open SHUTDOWN_GRACE_S after SIGTERM (a stalled
    upload, say). Answer those 503 (send it again: another replica, or this one restarted,
    takes it) with one log line, rather than a traceback and a 500. Only that shutdown
    cancels a request's task from outside, so a cancellation reaching here is it."""

    def __init__(self, app: Callable[..., Any]) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        answered = False

        async def send_and_note(message: dict[str, Any]) -> None:
            nonlocal answered
            answered = answered or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        except asyncio.CancelledError:
            log.warning("%s %s was cut: still open when the shutdown grace (SHUTDOWN_GRACE_S) ended",
                        scope["method"], scope["path"])
            if not answered:
                error = ShuttingDown("the server is shutting down; send the request again")
                await _error_response(error.http_status, error.code, str(error))(scope, receive, send)


def _bound_graceful_shutdown(grace_s: float) -> None:
    """Give open requests (an upload, say) SHUTDOWN_GRACE_S to finish after SIGTERM, then
    cancel them, so the process ends before the container runtime's SIGKILL and removes its
    scratch. uvicorn waits for ever unless told; ``uvicorn api.main:app`` is told here, by the
    server whose handler holds the signal, unless --timeout-graceful-shutdown already did."""
    server = getattr(signal.getsignal(signal.SIGTERM), "__self__", None)
    if isinstance(server, uvicorn.Server) and server.config.timeout_graceful_shutdown is None:
        server.config.timeout_graceful_shutdown = max(1, round(grace_s))


def _exit_cleanly_after_sigterm() -> None:
    """Let ``uvicorn api.main:app`` end with status 0 after a SIGTERM.

    Once it has shut down (open requests done, this lifespan's cleanup run), uvicorn raises
    the signal it handled again with the default handler, and the process dies by it (143 in
    Docker): a clean stop that looks like a kill. Everything is handed back by now, so the
    signal is blocked in this thread: it stays pending, and the process exits normally."""
    if threading.current_thread() is threading.main_thread():  # where uvicorn raises it
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})


class DashboardFiles(StaticFiles):
    """The dashboard's files at /. Mounted after every API route, it gets every request that no
    route took, and so a known API path asked with a method it does not take (GET /uploads):
    that is a 405 naming the path's methods in ``Allow``, not the files' 404."""

    def __init__(self, api_routes: list[BaseRoute], **options: Any) -> None:
        super().__init__(**options)
        self.api_routes = api_routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        allowed = _methods_of_path(self.api_routes, scope)
        if allowed:
            listed = ", ".join(sorted(allowed))
            raise StarletteHTTPException(405, f"method not allowed here; this path takes {listed}",
                                         headers={"Allow": listed})
        await super().__call__(scope, receive, send)


def _methods_of_path(routes: list[BaseRoute], scope: Scope) -> set[str]:
    """The methods the API's routes take at the request's path (none: not an API path). Asked
    through each route's own matching, so included routers and path parameters count as they
    do for dispatch."""
    return {method for method in HTTP_METHODS
            if any(route.matches({**scope, "method": method})[0] is Match.FULL
                   for route in routes if not isinstance(route, Mount))}


def _add_docs_pages(app: FastAPI) -> None:
    """Swagger UI at /docs and ReDoc at /redoc, from installed files rather than a CDN: they work
    offline and on closed farm networks, as the dashboard does."""
    app.mount(DOCS_ASSETS_URL, StaticFiles(directory=DOCS_ASSETS_DIR), name="docs-assets")

    def assets(request: Request) -> str:
        return f"{request.scope.get('root_path', '')}{DOCS_ASSETS_URL}"

    def openapi_url(request: Request) -> str:
        return f"{request.scope.get('root_path', '')}{app.openapi_url}"

    @app.get("/docs", include_in_schema=False)
    def swagger_ui(request: Request) -> HTMLResponse:
        page = get_swagger_ui_html(openapi_url=openapi_url(request), title=f"{app.title} - Swagger UI",
                                   swagger_js_url=f"{assets(request)}/swagger-ui-bundle.js",
                                   swagger_css_url=f"{assets(request)}/swagger-ui.css",
                                   swagger_favicon_url=f"{assets(request)}/favicon.png")
        return _with_docs_policy(page)

    @app.get("/redoc", include_in_schema=False)
    def redoc(request: Request) -> HTMLResponse:
        page = get_redoc_html(openapi_url=openapi_url(request), title=f"{app.title} - ReDoc",
                              redoc_js_url=f"{assets(request)}/redoc.standalone.js",
                              redoc_favicon_url=f"{assets(request)}/favicon.png", with_google_fonts=False)
        return _with_docs_policy(page)


def _document_validation_errors_as_ours(app: FastAPI) -> None:
    """FastAPI documents a 422 of its own shape (HTTPValidationError) on every route with
    parameters; this API answers every 422 as ErrorBody (see invalid_request below), so the
    published schema says so."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        first = app.openapi_schema is None
        schema = generate()  # built once, then cached in app.openapi_schema
        if first:
            for operations in schema.get("paths", {}).values():
                for operation in operations.values():
                    answer = operation.get("responses", {}).get("422", {})
                    if answer.get("content", {}).get("application/json", {}).get("schema") == FASTAPI_422:
                        answer["content"]["application/json"]["schema"] = {"$ref": "#/components/schemas/ErrorBody"}
                        answer["description"] = ERROR_MEANINGS[422]
            for name in ("HTTPValidationError", "ValidationError"):
                schema.get("components", {}).get("schemas", {}).pop(name, None)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def _with_docs_policy(page: HTMLResponse) -> HTMLResponse:
    page.headers["Content-Security-Policy"] = DOCS_PAGE_POLICY
    return page


async def _sweep_uploads_forever(submitter: Submitter) -> None:
    """Hourly, delete direct uploads nobody made a job of (they would fill the disk)."""
    while True:
        try:
            await run_in_threadpool(submitter.uploads.sweep_abandoned)
        except CattleCounterError as exc:  # storage away for now: try again next hour
            log.warning("could not sweep abandoned uploads: %s", exc)
        except Exception:  # a bug: log it, and keep sweeping
            log.exception("sweeping abandoned uploads failed")
        await asyncio.sleep(UPLOAD_SWEEP_INTERVAL_S)


def _metrics(request: Request) -> Response:
    """Prometheus exposition for this API process (METRICS_KEY or an admin key, once keys are set)."""
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
        if isinstance(exc, StreamUnavailable):  # the camera failed; the message shows its URL redacted
            log.warning("%s during %s %s: %s", exc.code, request.method, request.url.path, exc)
            return _error_response(exc.http_status, exc.code, str(exc))
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
