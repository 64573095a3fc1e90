"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api.deps import BackendsDep
from core.errors import CattleCounterError

router = APIRouter(tags=["health"])


@router.get("/health", summary="Liveness: the process answers")
def health() -> dict[str, str]:
    return {"status": "ok"}


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
