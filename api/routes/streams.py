"""Live streams: start one (``POST /streams``) and play it (``GET /jobs/{id}/live/{name}``);
before it starts, see what the camera shows (``POST /streams/snapshot``) to draw lines on.

A stream is a job like any other once created: GET, list and DELETE go through /jobs. The
first DELETE of a running stream stops it (it ends ``completed`` with its outputs), the
second removes it. The source URL, credentials included, goes to a secret blob: no answer,
record, queue message or log line holds more than its redacted form (``source``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response, StreamingResponse

from api.deps import BackendsDep, CallerDep, MediaAccessDep, SettingsDep, SubmitterDep
from api.job_access import downloadable_job, submitted
from api.params import MAX_SOURCE_URL, check_idempotency_key, check_stream_request, parse_json
from api.schemas import (
    STREAM_URL_PATTERN,
    ErrorBody,
    IdempotencyKey,
    JobOut,
    error_responses,
    stream_request_body,
)
from api.snapshot import DEADLINE_S, MAX_SNAPSHOTS_AT_ONCE, OPEN_TIMEOUT_S, take_snapshot
from api.upload_stream import receive_small_body
from core.errors import InvalidInput, JobNotReady, NotFound
from core.jobs import JobKind, output_blob_path
from core.outputs import LIVE_DIR, is_live_file, media_type

router = APIRouter(tags=["streams"])

MAX_STREAM_BODY_BYTES = 256 * 1024
# a segment never changes once written; the playlist changes every segment
SEGMENT_CACHE = "public, max-age=86400, immutable"
SEGMENT_LINE = re.compile(r"^(seg-\d{1,12}\.ts)$", re.MULTILINE)

@router.post(
    "/streams",
    status_code=202,
    response_model=JobOut,
    responses={**error_responses(401, 408, 413, 422, 429, 503),
               200: {"model": JobOut, "description": "the job an earlier request with the same Idempotency-Key "
                     "made (Idempotent-Replayed: true)"}},
    openapi_extra=stream_request_body(),
    summary="Start counting a live camera stream",
    description=(
        "Creates a `stream` job (202) that a worker counts until `duration_s` or `end_at`, the service's "
        "MAX_STREAM_SECONDS, or `DELETE /jobs/{id}` (which ends it `completed`, its outputs final). "
        "Poll `GET /jobs/{id}` for `live` and `counts`; play `links.live` (HLS). 422 "
        "`stream_source_not_allowed` for a private address outside STREAM_ALLOWED_NETWORKS. "
        "With an `Idempotency-Key` header a repeated request returns the same job (200)."
    ),
)
async def create_stream(
    request: Request,
    settings: SettingsDep,
    submitter: SubmitterDep,
    caller: CallerDep,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    key = check_idempotency_key(idempotency_key)
    data = await receive_small_body(request, MAX_STREAM_BODY_BYTES, settings.upload_stall_timeout_s,
                                    f"the JSON body is larger than {MAX_STREAM_BODY_BYTES} bytes")
    body: dict[str, Any] = parse_json("the JSON body", data, expect=dict)
    # in a thread: checking the source (and a callback_url) resolves host names
    url, params, stream = await run_in_threadpool(check_stream_request, body, settings)
    job, created = await run_in_threadpool(submitter.submit_stream, url, params, stream, key, caller.owner)
    return submitted(job, created)


@router.post(
    "/streams/snapshot",
    response_class=Response,
    responses={**error_responses(401, 408, 413, 422),
               429: {"model": ErrorBody, "description": "too_many_snapshots: this API process is taking "
                     f"{MAX_SNAPSHOTS_AT_ONCE} snapshots already; try again in a few seconds"},
               502: {"model": ErrorBody, "description": "stream_unavailable: the camera sent no picture in time"},
               200: {"content": {"image/jpeg": {}}, "description": "the stream's next picture, at its own size"}},
    openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
        "schema": {"type": "object", "required": ["source_url"], "additionalProperties": False,
                   "properties": {"source_url": {"type": "string", "minLength": 1, "maxLength": MAX_SOURCE_URL,
                                                 "pattern": STREAM_URL_PATTERN}}},
        "example": {"source_url": "rtsp://user:password@10.20.0.31:554/stream1"}}}}},
    summary="One picture of a live camera, to draw counting lines and zones on",
    description=(
        "Connects to `source_url` as a stream job would (the same URL checks and "
        "STREAM_ALLOWED_NETWORKS: 422 `stream_source_not_allowed`; HLS requests through the checking "
        "proxy), decodes one frame and answers it as a JPEG in the source's own pixels, the pixels "
        "`lines` and `zones` are given in. 502 `stream_unavailable` when the camera sends no picture "
        f"within the open timeout ({OPEN_TIMEOUT_S:g} s) or the {DEADLINE_S:g} s deadline; 429 "
        f"`too_many_snapshots` when this API process is taking {MAX_SNAPSHOTS_AT_ONCE} already. Nothing is stored."
    ),
)
async def stream_snapshot(request: Request, settings: SettingsDep, caller: CallerDep) -> Response:
    data = await receive_small_body(request, MAX_STREAM_BODY_BYTES, settings.upload_stall_timeout_s,
                                    f"the JSON body is larger than {MAX_STREAM_BODY_BYTES} bytes")
    body: dict[str, Any] = parse_json("the JSON body", data, expect=dict)
    others = sorted(set(body) - {"source_url"})
    if others:
        raise InvalidInput(f"{', '.join(others)}: a snapshot takes only source_url")
    # the URL as POST /streams checks it; in a thread, as checking resolves the host name
    url = (await run_in_threadpool(check_stream_request, {"source_url": body.get("source_url")}, settings))[0]
    picture = await run_in_threadpool(take_snapshot, url, settings.stream_allowed_networks,
                                      settings.stream_read_timeout_s)
    return Response(picture, media_type="image/jpeg", headers={"Cache-Control": "no-store"})


@router.get(
    "/jobs/{job_id}/live/{name}",
    response_class=StreamingResponse,
    responses={**error_responses(401, 404, 409, 422, 503),  # 409: no segment yet
               200: {"content": {media_type("index.m3u8"): {}, media_type("seg-000001.ts"): {}}}},
    summary="A stream's live HLS playlist (index.m3u8) or one of its segments (seg-NNNNNN.ts)",
    description="Served while the stream runs and after it ended (retention permitting). The playlist is "
    "never cached. A signed `live` link (POST /jobs/{id}/links) opens the playlist, and the playlist "
    "served through it names its segments with the same signature, so a player needs no API key.",
)
def get_live_file(job_id: str, name: str, request: Request, backends: BackendsDep, settings: SettingsDep,
                  access: MediaAccessDep) -> Response:
    job = downloadable_job(backends, settings, access, request, job_id, signed_path=f"/jobs/{job_id}/{LIVE_DIR}/")
    if job.kind is not JobKind.STREAM:
        raise NotFound(f"job {job_id} is a {job.kind.value} job; only streams have live files")
    if not is_live_file(name):
        raise NotFound(f"{name!r} is not a live file: index.m3u8 or seg-NNNNNN.ts")
    blob = output_blob_path(job.id, f"{LIVE_DIR}/{name}")
    if name == "index.m3u8":
        try:
            playlist = b"".join(backends.blobs.open_range(blob)).decode()
        except NotFound:
            raise JobNotReady(f"stream {job_id} has no segment yet; try again in a few seconds") from None
        return Response(_with_access(playlist, request), media_type=media_type(name),
                        headers={"Cache-Control": "no-cache, no-store"})
    size = backends.blobs.info(blob).size  # NotFound: never written, or past retention
    body: Iterator[bytes] = backends.blobs.open_range(blob)
    return StreamingResponse(body, media_type=media_type(name),
                             headers={"Content-Length": str(size), "Cache-Control": SEGMENT_CACHE})


def _with_access(playlist: str, request: Request) -> str:
    """The playlist with the request's own access (a signature, or ?api_key=) added to every
    segment: a player resolves ``seg-000001.ts`` against the playlist's path and drops its query."""
    query = "&".join(f"{name}={quote(request.query_params[name], safe='')}" for name in ("exp", "sig", "api_key")
                     if name in request.query_params)
    if not query:
        return playlist
    return SEGMENT_LINE.sub(lambda match: f"{match.group(1)}?{query}", playlist)
