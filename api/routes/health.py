"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from api.deps import BackendsDep
from core.errors import CattleCounterError

router = APIRouter(tags=["health"])


@router.get("/health", summary="Liveness: the process answers (and, in the all-in-one, its worker runs)")
def health(request: Request) -> JSONResponse:
    liveness = getattr(request.app.state, "liveness", None)
    problem = liveness() if liveness is not None else None
    if problem is not None:
        return JSONResponse({"status": "unhealthy", "problem": problem}, status_code=503)
    return JSONResponse({"status": "ok"})


@router.get("/ready", summary="Readiness: blob store, queue and job store all answer")
def ready(backends: BackendsDep) -> JSONResponse:
    checks: dict[str, str] = {}
    for name, store in (("blobs", backends.blobs), ("queue", backends.queue), ("jobs", backends.jobs)):
        try:
            store.ping()
            checks[name] = "ok"
        except CattleCounterError as exc:
            checks[name] = str(exc)
    ok = all(value == "ok" for value in checks.values())
    return JSONResponse({"status": "ready" if ok else "unavailable", "checks": checks}, status_code=200 if ok else 503)
