"""Typed dependencies the routes ask for. Tests swap them with app.dependency_overrides.

They are ``async def`` although they never await: FastAPI runs a plain ``def`` dependency in
its thread pool, and three thread hops per request (settings, backends, API key) cost more
than the job lookup they guard. They only read app state, so they cannot block the loop.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, TypeVar

from fastapi import Depends, Query, Request
from fastapi.security import APIKeyHeader, APIKeyQuery, HTTPAuthorizationCredentials, HTTPBearer

from api.signed_urls import Signature
from api.submission import Submitter
from core.backends import Backends
from core.config import Settings
from core.errors import Forbidden, Unauthorized
from core.jobs import DEFAULT_OWNER


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_backends(request: Request) -> Backends:
    return request.app.state.backends


async def get_submitter(request: Request) -> Submitter:
    return request.app.state.submitter


async def get_scratch_dir(request: Request) -> Path:
    return request.app.state.scratch_dir


T = TypeVar("T")

SettingsDep = Annotated[Settings, Depends(get_settings)]
BackendsDep = Annotated[Backends, Depends(get_backends)]
SubmitterDep = Annotated[Submitter, Depends(get_submitter)]
ScratchDirDep = Annotated[Path, Depends(get_scratch_dir)]

_header_key = APIKeyHeader(name="X-API-Key", auto_error=False)
# ?api_key= only where a browser cannot send a header (media and downloads): query strings
# end up in access logs, browser history and Referer headers.
_query_key = APIKeyQuery(name="api_key", auto_error=False)


@dataclass(frozen=True)
class Caller:
    """Who is calling: the tenant whose jobs and uploads they create, and what they may see."""

    owner: str
    sees_all: bool = False  # an admin key, or an open API (no keys configured)

    def can_see(self, owner: str) -> bool:
        return self.sees_all or owner == self.owner

    @property
    def listing_owner(self) -> str | None:
        """The owner to list jobs of (None: every owner's)."""
        return None if self.sees_all else self.owner


OPEN_API = Caller(owner=DEFAULT_OWNER, sees_all=True)  # no API_KEYS: the local mode, as before owners


def caller_for_key(settings: Settings, presented: str | None) -> Caller:
    """The caller a key belongs to. Raises Unauthorized for a missing or unknown key."""
    if not settings.accepted_keys:
        return OPEN_API
    found = _matching(presented, settings.accepted_keys, key=lambda entry: entry.key)
    if found is None:
        raise Unauthorized()
    return Caller(owner=found.owner, sees_all=found.admin)


def _matching(presented: str | None, candidates: Iterable[T], key: Callable[[T], str]) -> T | None:
    """The candidate whose ``key(candidate)`` is ``presented``, or None. Compared against every
    one, always, so timing does not reveal which prefix matched."""
    given = (presented or "").encode()
    found = None
    for candidate in candidates:
        if hmac.compare_digest(given, key(candidate).encode()):
            found = candidate
    return found


async def require_caller(
    settings: SettingsDep,
    header_key: Annotated[str | None, Depends(_header_key)],
    # read only to explain the 401; not a security scheme here, so /docs offers only the header
    query_key: Annotated[str | None, Query(alias="api_key", include_in_schema=False)] = None,
) -> Caller:
    """The caller of an API route: the key must come in the X-API-Key header."""
    if query_key and not header_key and settings.accepted_keys:
        raise Unauthorized("send the API key in the X-API-Key header: ?api_key= is accepted on download "
                           "links only (and signed links, from POST /jobs/{id}/links, need no key at all)")
    return caller_for_key(settings, header_key)


async def media_access(
    settings: SettingsDep,
    header_key: Annotated[str | None, Depends(_header_key)],
    query_key: Annotated[str | None, Depends(_query_key)],
    exp: Annotated[str | None, Query(include_in_schema=False)] = None,
    sig: Annotated[str | None, Query(include_in_schema=False)] = None,
) -> Caller | Signature:
    """Who may fetch a download: a key (header, or ?api_key= since a <video> cannot send
    headers) or a signed URL, which the route checks once it knows the job's owner."""
    if header_key or query_key or not (exp and sig) or not settings.accepted_keys:
        return caller_for_key(settings, header_key or query_key)
    return Signature(expires=exp, sig=sig)


CallerDep = Annotated[Caller, Depends(require_caller)]
MediaAccessDep = Annotated[Caller | Signature, Depends(media_access)]
ApiKeyDep = Depends(require_caller)  # for routes that need a key but not its owner


# /metrics: Prometheus sends a bearer token (its scrape config's ``authorization``)
_bearer = HTTPBearer(auto_error=False)
METRICS_CHALLENGE = 'Bearer realm="metrics"'


async def require_metrics_reader(
    settings: SettingsDep,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    header_key: Annotated[str | None, Depends(_header_key)],
) -> None:
    """Who may read /metrics, which tells how busy each tenant is: with keys configured (or
    METRICS_KEY), METRICS_KEY or an admin key, as ``Authorization: Bearer`` or X-API-Key."""
    if not settings.accepted_keys and not settings.metrics_key:
        return  # the open local mode
    presented = bearer.credentials if bearer is not None else header_key
    readers = [key for key in (settings.metrics_key,) if key] + [e.key for e in settings.accepted_keys if e.admin]
    if presented and _matching(presented, readers, key=str) is not None:
        return
    if presented and _matching(presented, settings.accepted_keys, key=lambda entry: entry.key) is not None:
        raise Forbidden("/metrics is read with METRICS_KEY or an admin key, not a tenant's key")
    raise Unauthorized("/metrics needs METRICS_KEY or an admin key, as Authorization: Bearer <key> or X-API-Key",
                       challenge=METRICS_CHALLENGE)


async def require_admin(caller: CallerDep) -> Caller:
    """An admin key's caller (or the open API's); a tenant's key is Forbidden."""
    if not caller.sees_all:
        raise Forbidden("this takes an admin key (ADMIN_API_KEYS)")
    return caller


MetricsReaderDep = Depends(require_metrics_reader)
AdminDep = Annotated[Caller, Depends(require_admin)]
