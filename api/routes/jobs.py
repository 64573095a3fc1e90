"""Jobs: submit, inspect, list, cancel/delete, and download results."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, RedirectResponse, StreamingResponse

from api.deps import ApiKeyDep, BackendsDep, ScratchDirDep, SettingsDep, SubmitterDep
from api.ranges import parse_range
from api.schemas import ErrorBody, JobList, JobOut
from api.submission import check_idempotency_key, parse_params, probe_file
from api.upload_stream import receive_multipart, reject_declared_oversize
from core.backends import Backends
from core.errors import CattleCounterError, EmptyVideo, InvalidInput, UploadTooLarge
from core.jobs import Job, JobStatus, job_blob_prefix, utcnow

router = APIRouter(tags=["jobs"], dependencies=[ApiKeyDep])

MAX_JSON_BODY_BYTES = 1024 * 1024  # {"upload_id", "params"}: far less in practice

# route name -> (file the worker wrote, media type)
DOWNLOADS = {
    "result": ("stats.json", "application/json"),
    "video": ("annotated.mp4", "video/mp4"),
    "detections": ("detections.jsonl", "application/x-ndjson"),
    "coco": ("coco.json", "application/json"),
    "mot": ("mot.txt", "text/plain; charset=utf-8"),
}

_ERRORS = {code: {"model": ErrorBody} for code in (401, 404, 409, 413, 415, 422, 503)}

_UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {"type": "string", "format": "binary", "description": "the video"},
                        "classes": {"type": "string", "description": "comma-separated class names, e.g. cow,sheep"},
                        "threshold": {"type": "number", "description": "confidence threshold 0..1"},
                        "frame_stride": {"type": "integer", "description": "process every Nth frame"},
                        "frame_interval_seconds": {"type": "number"},
                        "lines": {"type": "string", "description": "x1,y1,x2,y2[;...] or a JSON list of lines"},
                        "zones": {"type": "string", "description": "JSON list of {name, polygon}"},
                        "callback_url": {"type": "string", "description": "webhook called when the job ends"},
                        "model_id": {"type": "string"},
                        "params": {"type": "string", "description": "all parameters as one JSON object"},
                    },
                }
            },
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["upload_id"],
                    "properties": {"upload_id": {"type": "string"}, "params": {"type": "object"}},
                }
            },
        },
    }
}


class JobNotReady(CattleCounterError):
    """The job has not completed yet."""

    code = "job_not_ready"
    http_status = 409


def _job_response(job: Job, status_code: int, replayed: bool = False) -> JSONResponse:
    headers = {"Location": f"/jobs/{job.id}"}
    if replayed:
        headers["Idempotent-Replayed"] = "true"
    return JSONResponse(JobOut.from_job(job).model_dump(mode="json"), status_code=status_code, headers=headers)


async def _submit(request: Request, settings, submitter, scratch, idempotency_key: str | None) -> JSONResponse:
    key = check_idempotency_key(idempotency_key)
    if request.headers.get("content-type", "").startswith("application/json"):
        body = await _json_body(request)
        # in a thread: checking a callback_url resolves its host name, which may take seconds
        params = await run_in_threadpool(parse_params, {"params": json.dumps(body.get("params") or {})}, settings)
        job, created = await run_in_threadpool(submitter.submit_upload, str(body.get("upload_id", "")), params, key)
        return _job_response(job, 202 if created else 200, replayed=not created)

    form = await receive_multipart(request, scratch, settings.max_upload_bytes)
    try:
        params = await run_in_threadpool(parse_params, form.fields, settings)
        if form.file is None:
            if form.fields.get("upload_id"):
                job, created = await run_in_threadpool(submitter.submit_upload, form.fields["upload_id"], params, key)
                return _job_response(job, 202 if created else 200, replayed=not created)
            raise InvalidInput("send the video in the multipart field 'file' (or an upload_id)")
        if form.file.size == 0:
            raise EmptyVideo("the uploaded file is empty")
        await run_in_threadpool(probe_file, form.file.path, settings)
        job, created = await run_in_threadpool(
            submitter.submit_file, form.file.path, form.file.filename, params, key
        )
    finally:
        form.discard()
    return _job_response(job, 202 if created else 200, replayed=not created)


async def _json_body(request: Request) -> dict:
    """The small JSON body of a direct-upload submission, read up to MAX_JSON_BODY_BYTES only."""
    reject_declared_oversize(request, MAX_JSON_BODY_BYTES, slack=0)
    data = bytearray()
    async for chunk in request.stream():
        data += chunk
        if len(data) > MAX_JSON_BODY_BYTES:
            raise UploadTooLarge(f"the JSON body is larger than {MAX_JSON_BODY_BYTES} bytes; "
                                 "videos go in a multipart 'file' field or through POST /uploads")
    try:
        body = json.loads(data)
    except ValueError:
        raise InvalidInput("the JSON body is not valid JSON") from None
    if not isinstance(body, dict) or not body.get("upload_id"):
        raise InvalidInput("upload_id: required when posting JSON (upload the video with POST /uploads first)")
    return body


@router.post(
    "/jobs",
    status_code=202,
    response_model=JobOut,
    responses=_ERRORS,
    openapi_extra=_UPLOAD_BODY,
    summary="Submit a video for counting",
    description=(
        "Upload a video (multipart field `file`) with optional parameters. The body is streamed to "
        "storage; the answer comes at once with the job id (202). With an `Idempotency-Key` header, "
        "repeating the request returns the same job (200, `Idempotent-Replayed: true`). For big files, "
        "upload with `POST /uploads` first and post `{\"upload_id\": ...}` as JSON."
    ),
)
async def create_job(
    request: Request,
    settings: SettingsDep,
    submitter: SubmitterDep,
    scratch: ScratchDirDep,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> JSONResponse:
    return await _submit(request, settings, submitter, scratch, idempotency_key)


@router.post(
    "/submit-job",
    status_code=202,
    response_model=JobOut,
    responses=_ERRORS,
    openapi_extra=_UPLOAD_BODY,
    summary="Alias of POST /jobs (kept for existing scripts)",
)
async def submit_job_alias(
    request: Request,
    settings: SettingsDep,
    submitter: SubmitterDep,
    scratch: ScratchDirDep,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> JSONResponse:
    return await _submit(request, settings, submitter, scratch, idempotency_key)


@router.get("/jobs", response_model=JobList, responses=_ERRORS, summary="List jobs, newest first")
def list_jobs(
    backends: BackendsDep,
    status: JobStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: str | None = None,
) -> JobList:
    page = backends.jobs.list(status=status, limit=limit, cursor=cursor)
    return JobList(jobs=[JobOut.from_job(job) for job in page.jobs], next_cursor=page.next_cursor)


@router.get("/jobs/{job_id}", response_model=JobOut, responses=_ERRORS, summary="A job's status and progress")
def get_job(job_id: str, backends: BackendsDep) -> JobOut:
    return JobOut.from_job(backends.jobs.get(job_id))


@router.delete(
    "/jobs/{job_id}",
    responses={**_ERRORS, 204: {"description": "finished job and its files deleted"}},
    summary="Cancel a queued or running job; delete a finished one",
)
def delete_job(job_id: str, backends: BackendsDep) -> Response:
    job = backends.jobs.get(job_id)
    if job.status.is_final:
        _delete_job_files(backends, job)
        backends.jobs.delete(job_id)
        return Response(status_code=204)
    return _job_response(backends.jobs.modify(job_id, _request_cancel), 202)


def _request_cancel(job: Job) -> bool:
    """Queued: cancelled now (the worker will skip its message). Processing: flagged, and
    the worker stops at its next batch. Already final: nothing to do."""
    if job.status is JobStatus.QUEUED:
        job.status = JobStatus.CANCELLED
        job.finished_at = utcnow()
        job.cancel_requested = True
        return True
    if job.status is JobStatus.PROCESSING and not job.cancel_requested:
        job.cancel_requested = True
        return True
    return False


def _delete_job_files(backends: Backends, job: Job) -> None:
    backends.blobs.delete_prefix(job_blob_prefix(job.id))
    if not job.input_blob.startswith(job_blob_prefix(job.id)):  # a direct upload lives elsewhere
        backends.blobs.delete_prefix(job.input_blob.rsplit("/", 1)[0] + "/")


def _completed_output(backends: Backends, job_id: str, download: str) -> str:
    job = backends.jobs.get(job_id)
    if job.status is not JobStatus.COMPLETED:
        raise JobNotReady(f"job {job_id} is {job.status.value}; results are available once it has completed")
    filename, _ = DOWNLOADS[download]
    try:
        return job.outputs[filename]
    except KeyError:
        raise JobNotReady(f"job {job_id} has no {filename}") from None


def _stream(backends: Backends, blob: str, media_type: str, filename: str, attachment: bool) -> StreamingResponse:
    size = backends.blobs.info(blob).size
    disposition = "attachment" if attachment else "inline"
    headers = {"Content-Length": str(size), "Content-Disposition": f'{disposition}; filename="{filename}"'}
    return StreamingResponse(backends.blobs.open_range(blob), media_type=media_type, headers=headers)


def _download(job_id: str, download: str, backends: Backends, attachment: bool) -> StreamingResponse:
    blob = _completed_output(backends, job_id, download)
    filename, media_type = DOWNLOADS[download]
    return _stream(backends, blob, media_type, f"{job_id}-{filename}", attachment)


@router.get("/jobs/{job_id}/result", responses=_ERRORS, summary="stats.json: counts, tracks, timeline")
def get_result(job_id: str, backends: BackendsDep, download: bool = False) -> StreamingResponse:
    return _download(job_id, "result", backends, download)


@router.get("/jobs/{job_id}/detections", responses=_ERRORS, summary="detections.jsonl: one line per processed frame")
def get_detections(job_id: str, backends: BackendsDep, download: bool = False) -> StreamingResponse:
    return _download(job_id, "detections", backends, download)


@router.get("/jobs/{job_id}/exports/coco", responses=_ERRORS, summary="COCO export with track ids")
def get_coco(job_id: str, backends: BackendsDep, download: bool = False) -> StreamingResponse:
    return _download(job_id, "coco", backends, download)


@router.get("/jobs/{job_id}/exports/mot", responses=_ERRORS, summary="MOTChallenge export")
def get_mot(job_id: str, backends: BackendsDep, download: bool = False) -> StreamingResponse:
    return _download(job_id, "mot", backends, download)


@router.get(
    "/jobs/{job_id}/video",
    responses={**_ERRORS, 206: {"description": "partial content"}, 307: {"description": "redirect to storage"}},
    summary="The annotated H.264 MP4 (Range requests supported)",
)
def get_video(
    job_id: str,
    backends: BackendsDep,
    settings: SettingsDep,
    range_header: Annotated[str | None, Header(alias="Range")] = None,
    download: bool = False,
) -> Response:
    blob = _completed_output(backends, job_id, "video")
    disposition = f'{"attachment" if download else "inline"}; filename="{job_id}-annotated.mp4"'
    url = backends.blobs.read_url(blob, timedelta(seconds=settings.read_url_ttl_s), disposition)
    if url is not None:
        return RedirectResponse(url, status_code=307)
    size = backends.blobs.info(blob).size
    byte_range = parse_range(range_header, size)
    headers = {"Accept-Ranges": "bytes", "Content-Disposition": disposition}
    if byte_range is None:
        headers["Content-Length"] = str(size)
        return StreamingResponse(backends.blobs.open_range(blob), media_type="video/mp4", headers=headers)
    first, last = byte_range
    headers["Content-Length"] = str(last - first + 1)
    headers["Content-Range"] = f"bytes {first}-{last}/{size}"
    body: Iterator[bytes] = backends.blobs.open_range(blob, first, last - first + 1)
    return StreamingResponse(body, status_code=206, media_type="video/mp4", headers=headers)
