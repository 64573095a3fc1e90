"""Liveness and readiness."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from api.deps import BackendsDep
from core.errors import CattleCounterError

router = APIRouter(tags=["health"])

# A Kubernetes probe gives up after timeoutSeconds (1 s by default, 2 s in deploy/k8s/api.yaml): answer
# before that, with "not ready", rather than after it with nothing.
READY_BUDGET_S = 1.5
_late_pings: set[asyncio.Future] = set()  # pings still running after their answer has gone


class Health(BaseModel):
    status: str = Field(description="ok, or unhealthy (503)")
    problem: str | None = Field(default=None, description="why not, when unhealthy")


class Readiness(BaseModel):
    status: str = Field(description="ready, or unavailable (503)")
    checks: dict[str, str] = Field(description="blobs, queue, jobs: ok or why not")


@router.get("/health", response_model=Health, responses={503: {"model": Health, "description": "unhealthy"}},
            summary="Liveness: the process answers (and, in the all-in-one, its worker runs)")
def health(request: Request) -> JSONResponse:
    liveness = getattr(request.app.state, "liveness", None)
    problem = liveness() if liveness is not None else None
    if problem is not None:
        return JSONResponse({"status": "unhealthy", "problem": problem}, status_code=503)
    return JSONResponse({"status": "ok"})


@router.get("/ready", response_model=Readiness,
            responses={503: {"model": Readiness, "description": "a store does not answer"}},
            summary="Readiness: blob store, queue and job store all answer")
async def ready(backends: BackendsDep) -> JSONResponse:
    """The three stores are pinged at once; one that has not answered within READY_BUDGET_S
    counts as down. Its ping is left to end at the storage deadline (STORAGE_DEADLINE_S),
    so a hung store holds a thread for a few seconds at most."""
    stores = {"blobs": backends.blobs, "queue": backends.queue, "jobs": backends.jobs}
    pings = {name: asyncio.ensure_future(run_in_threadpool(_ping, store)) for name, store in stores.items()}
    for ping in pings.values():  # the loop keeps only weak references to tasks
        _late_pings.add(ping)
        ping.add_done_callback(_late_pings.discard)
    await asyncio.wait(pings.values(), timeout=READY_BUDGET_S)
    checks = {
        name: ping.result() if ping.done() else f"no answer within {READY_BUDGET_S:g} s"
        for name, ping in pings.items()
    }
    ok = all(value == "ok" for value in checks.values())
    body = {"status": "ready" if ok else "unavailable", "checks": checks}
    return JSONResponse(body, status_code=200 if ok else 503)


def _ping(store) -> str:
    """"ok", or why not (never raises: a late answer has nobody left to raise to)."""
    try:
        store.ping()
        return "ok"
    except CattleCounterError as exc:
        return str(exc)
