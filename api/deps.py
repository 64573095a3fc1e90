"""Typed dependencies the routes ask for. Tests swap them with app.dependency_overrides.

They are ``async def`` although they never await: FastAPI runs a plain ``def`` dependency in
its thread pool, and three thread hops per request (settings, backends, API key) cost more
than the job lookup they guard. They only read app state, so they cannot block the loop.
"""

from __future__ import annotations

import hmac
from pathlib import Path
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, APIKeyQuery

from api.submission import Submitter
from core.backends import Backends
from core.config import Settings
from core.errors import CattleCounterError


class Unauthorized(CattleCounterError):
    """A valid API key is required: send it in the X-API-Key header."""

    code = "unauthorized"
    http_status = 401


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_backends(request: Request) -> Backends:
    return request.app.state.backends


async def get_submitter(request: Request) -> Submitter:
    return request.app.state.submitter


async def get_scratch_dir(request: Request) -> Path:
    return request.app.state.scratch_dir


SettingsDep = Annotated[Settings, Depends(get_settings)]
BackendsDep = Annotated[Backends, Depends(get_backends)]
SubmitterDep = Annotated[Submitter, Depends(get_submitter)]
ScratchDirDep = Annotated[Path, Depends(get_scratch_dir)]

_header_key = APIKeyHeader(name="X-API-Key", auto_error=False)
# A <video> element cannot send headers, so downloads also accept ?api_key=.
_query_key = APIKeyQuery(name="api_key", auto_error=False)


async def require_api_key(
    settings: SettingsDep,
    header_key: Annotated[str | None, Depends(_header_key)],
    query_key: Annotated[str | None, Depends(_query_key)],
) -> None:
    """Checks X-API-Key against API_KEYS (no-op when none are configured)."""
    if not settings.api_keys:
        return
    presented = (header_key or query_key or "").encode()
    # compare against every key, always, so timing does not reveal which prefix matched
    matches = [hmac.compare_digest(presented, key.encode()) for key in settings.api_keys]
    if not any(matches):
        raise Unauthorized()


ApiKeyDep = Depends(require_api_key)
