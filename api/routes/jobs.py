"""Jobs: submit, inspect, list, cancel/delete, and download results.

Every job belongs to the tenant of the key that created it. A caller sees only its own
tenant's jobs (an admin key sees all); another tenant's job answers 404, exactly like a job
that does not exist, so ids reveal nothing. Downloads also open with a signed URL
(``POST /jobs/{id}/links``) or ``?api_key=``, for browsers' <video> and links.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path, PurePosixPath
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, RedirectResponse, StreamingResponse

from api.bulk import unpacked_files
from api.deps import (
    BackendsDep,
    CallerDep,
    MediaAccessDep,
    ScratchDirDep,
    SettingsDep,
    SubmitterDep,
)
from api.job_access import downloadable_job, job_response, submitted, visible_job
from api.media import LocalMedia, MediaKind, Sniffed, sniff_media
from api.params import check_idempotency_key, check_params, parse_json, parse_params
from api.ranges import parse_range
from api.schemas import IdempotencyKey, JobList, JobOut, SignedLinks, error_responses, job_request_body
from api.signed_urls import expiry, signed_path
from api.telemetry_input import TELEMETRY_UPLOAD_FIELD, requested_telemetry
from api.upload_stream import ReceivedForm, receive_multipart, receive_small_body
from api.video_zip import checked_video_zip, video_in_zip
from core import lifecycle
from core.backends import Backends
from core.config import Settings
from core.errors import (
    EmptyVideo,
    InvalidInput,
    InvalidTelemetry,
    JobNotReady,
    NotAVideo,
    NotFound,
)
from core.jobs import (
    Job,
    JobKind,
    JobStatus,
    ManifestEntry,
    job_blob_prefix,
    manifest_blob_path,
    output_blob_path,
    source_secret_path,
)
from core.outputs import (
    DOWNLOADS,
    GALLERY_CROP,
    GALLERY_CROPS_DIR,
    LIVE_DIR,
    WINDOW_GALLERY_DIR,
    WINDOWS_CSV,
    annotated_overview,
    annotated_still,
    media_type,
    window_gallery,
)
from core.tables import json_lines, windows_csv
from ml_engine.media.image_probe import looks_like_zip

router = APIRouter(tags=["jobs"])

MAX_JSON_BODY_BYTES = 1024 * 1024  # {"upload_id", "params"}: far less in practice

_SUBMIT_ERRORS = error_responses(401, 404, 408, 409, 413, 415, 422, 429, 503)
_READ_ERRORS = error_responses(401, 404, 422, 503)  # a job's record: GET, links, DELETE
_DOWNLOAD_ERRORS = error_responses(401, 404, 409, 422, 503)  # 409: not ready yet


async def _submit(request: Request, settings, submitter, scratch, idempotency_key: str | None,
                  owner: str) -> JSONResponse:
    key = check_idempotency_key(idempotency_key)
    if key is None:  # refused before the upload is read; with a key it may be a replay, which no quota refuses
        await run_in_threadpool(submitter.quotas.check_room, owner)
    if request.headers.get("content-type", "").startswith("application/json"):
        body = await _json_body(request, settings.upload_stall_timeout_s)
        # in a thread: checking a callback_url resolves its host name, which may take seconds
        params = await run_in_threadpool(check_params, body["params"], settings)
        if body.get("upload_ids") is not None:
            job, created = await run_in_threadpool(submitter.submit_uploads, body["upload_ids"], params, key, owner)
            return submitted(job, created)
        telemetry = await run_in_threadpool(requested_telemetry, None, body[TELEMETRY_UPLOAD_FIELD], submitter.uploads,
                                            owner, settings)
        job, created = await run_in_threadpool(submitter.submit_upload, body["upload_id"], params, key, owner,
                                               telemetry)
        return submitted(job, created)

    form = await receive_multipart(request, scratch, settings.max_upload_bytes,
                                   settings.upload_stall_timeout_s, max_files=settings.max_files_per_job,
                                   max_telemetry_bytes=settings.max_telemetry_bytes)
    try:
        params = await run_in_threadpool(parse_params, form.fields, settings)
        if form.file is None:
            if form.fields.get("upload_id"):
                telemetry = await run_in_threadpool(requested_telemetry, form.telemetry,
                                                    form.fields.get(TELEMETRY_UPLOAD_FIELD), submitter.uploads,
                                                    owner, settings)
                job, created = await run_in_threadpool(
                    submitter.submit_upload, form.fields["upload_id"], params, key, owner, telemetry
                )
                return submitted(job, created)
            raise InvalidInput("send the video or images in the multipart field 'file' (or an upload_id)")
        if len(form.files) == 1 and form.file.size == 0:
            raise EmptyVideo("the uploaded file is empty")
        job, created = await run_in_threadpool(_submit_form_files, form, params, key, owner, settings, submitter)
    finally:
        form.discard()
    return submitted(job, created)


def _submit_form_files(form: ReceivedForm, params, key: str | None, owner: str, settings: Settings,
                       submitter) -> tuple[Job, bool]:
    """One video (or a ZIP of one video and its .SRT): a video job, with its telemetry if any.
    One image, several files, or a ZIP of images: an images job."""
    first = form.file
    assert first is not None, "the caller checked that a file was sent"
    telemetry = requested_telemetry(form.telemetry, form.fields.get(TELEMETRY_UPLOAD_FIELD), submitter.uploads,
                                    owner, settings)
    if len(form.files) == 1:
        sniffed = _sniffed(first.path, settings)
        if sniffed.kind is MediaKind.VIDEO:
            return submitter.submit_file(first.path, first.filename, params, key, owner, info=sniffed.video,
                                         telemetry=telemetry)
        zipped = video_in_zip(first.path, first.path.parent, settings) if sniffed.kind is MediaKind.ZIP else None
        if zipped is not None:
            video, info, telemetry = checked_video_zip(zipped, telemetry, settings)
            return submitter.submit_file(video.path, video.name, params, key, owner, info=info, telemetry=telemetry)
    if telemetry is not None:
        raise telemetry.refuse_for_images()
    label = first.filename if len(form.files) == 1 else f"{len(form.files)} files"
    return submitter.submit_images(_form_images(form, settings), label, params, key, owner)


def _sniffed(path: Path, settings: Settings) -> Sniffed:
    try:
        return sniff_media(LocalMedia(path), settings)
    except NotAVideo as exc:
        raise NotAVideo(f"{exc}, or an image (JPEG, PNG, TIFF/GeoTIFF) or a ZIP of images") from None


def _form_images(form: ReceivedForm, settings: Settings) -> Iterator[tuple[str, Path]]:
    """Each file of the form, a ZIP's files in its place (unpacked one at a time beside it)."""
    for received in form.files:
        if looks_like_zip(received.path):
            yield from unpacked_files(received.path, received.path.parent, settings)
        else:
            yield received.filename, received.path


async def _json_body(request: Request, stall_timeout_s: float) -> dict:
    """The small JSON body of a direct-upload submission, read up to MAX_JSON_BODY_BYTES only:
    ``{"upload_id": str, "params": {...}}``."""
    data = await receive_small_body(request, MAX_JSON_BODY_BYTES, stall_timeout_s,
                                    f"the JSON body is larger than {MAX_JSON_BODY_BYTES} bytes; "
                                    "videos go in a multipart 'file' field or through POST /uploads")
    body = parse_json("the JSON body", data, expect=dict)
    params = body.get("params") or {}
    if not isinstance(params, dict):
        raise InvalidInput("params: expected a JSON object")
    if "upload_ids" in body:  # an images job of many direct uploads
        ids = body["upload_ids"]
        if not isinstance(ids, list) or not ids or not all(isinstance(i, str) and i for i in ids):
            raise InvalidInput("upload_ids: expected a non-empty JSON list of upload ids")
        if TELEMETRY_UPLOAD_FIELD in body:
            raise InvalidTelemetry(f"{TELEMETRY_UPLOAD_FIELD}: flight telemetry goes with one video (upload_id); "
                                   "upload_ids make an images job")
        return {"upload_ids": ids, "params": params}
    if not isinstance(body.get("upload_id"), str) or not body["upload_id"]:
        raise InvalidInput("upload_id: required when posting JSON (upload the video with POST /uploads first)")
    params = body.get("params") or {}
    if not isinstance(params, dict):
        raise InvalidInput("params: expected a JSON object")
    telemetry = body.get(TELEMETRY_UPLOAD_FIELD)
    if telemetry is not None and (not isinstance(telemetry, str) or not telemetry):
        raise InvalidInput(f"{TELEMETRY_UPLOAD_FIELD}: expected the id of the .SRT's direct upload (a string)")
    return {"upload_id": body["upload_id"], "params": params, TELEMETRY_UPLOAD_FIELD: telemetry}


_SUBMIT_ROUTE: dict[str, Any] = {
    "status_code": 202, "response_model": JobOut, "openapi_extra": job_request_body(),
    "responses": {**_SUBMIT_ERRORS, 200: {"model": JobOut, "description": "the job an earlier request with the "
                                          "same Idempotency-Key made (Idempotent-Replayed: true)"}},
}


@router.post(
    "/jobs",
    **_SUBMIT_ROUTE,
    summary="Submit a video, images or a ZIP of images for counting",
    description=(
        "Upload a video, an image or a ZIP (multipart field `file`; several files: `files`) with optional "
        "parameters. The body is streamed to storage; the answer comes at once with the job id (202). With "
        "an `Idempotency-Key` header, repeating the request returns the same job (200, "
        "`Idempotent-Replayed: true`). For big files, upload with `POST /uploads` first and post "
        "`{\"upload_id\": ...}` (or `{\"upload_ids\": [...]}`) as JSON. A video's flight telemetry (a drone's "
        ".SRT) goes in `telemetry`, as `telemetry_upload_id`, or in a ZIP holding the video and its .SRT."
    ),
)
async def create_job(
    request: Request,
    settings: SettingsDep,
    submitter: SubmitterDep,
    scratch: ScratchDirDep,
    caller: CallerDep,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    return await _submit(request, settings, submitter, scratch, idempotency_key, caller.owner)


router.add_api_route("/submit-job", create_job, methods=["POST"], name="submit_job_alias", **_SUBMIT_ROUTE,
                     summary="Alias of POST /jobs (kept for existing scripts)")


@router.get("/jobs", response_model=JobList, responses=error_responses(401, 422, 503),
            summary="List jobs, newest first")
def list_jobs(
    backends: BackendsDep,
    caller: CallerDep,
    status: JobStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: str | None = None,
) -> JobList:
    page = backends.jobs.list(status=status, limit=limit, cursor=cursor, owner=caller.listing_owner)
    return JobList(jobs=[JobOut.from_job(job) for job in page.jobs], next_cursor=page.next_cursor)


@router.get("/jobs/{job_id}", response_model=JobOut, responses=_READ_ERRORS, summary="A job's status and progress")
def get_job(job_id: str, backends: BackendsDep, caller: CallerDep) -> JobOut:
    job = visible_job(backends, caller, job_id)
    return JobOut.from_job(job, webhook=backends.outbox.latest(job.id) if job.params.callback_url else None)


@router.post(
    "/jobs/{job_id}/links",
    response_model=SignedLinks,
    responses=_READ_ERRORS,
    summary="Short-lived signed URLs of a job's downloads (no API key needed to open them)",
    description="For `<video src>` and download links, which cannot send the X-API-Key header. Each URL "
    "opens its one download until `expires_at` (READ_URL_TTL_S); add `&download=true` for an attachment.",
)
def create_links(job_id: str, backends: BackendsDep, settings: SettingsDep, caller: CallerDep) -> SignedLinks:
    job = visible_job(backends, caller, job_id)
    expires = expiry(settings.read_url_ttl_s)
    downloads = {name: path for name, path in JobOut.from_job(job).links.items() if name != "self"}
    return SignedLinks(
        links={name: _signed_link(settings, path, job.owner, expires) for name, path in downloads.items()},
        expires_at=datetime.fromtimestamp(expires, tz=UTC),
    )


def _signed_link(settings: Settings, path: str, owner: str, expires: int) -> str:
    """A download's signed URL. A stream's live playlist is signed for its whole folder
    (``/jobs/{id}/live/``), so the same signature opens the segments the playlist names."""
    folder, _, name = path.rpartition("/")
    if folder.endswith(f"/{LIVE_DIR}"):
        signed = signed_path(settings, f"{folder}/", owner, expires)
        return f"{folder}/{name}{signed[len(folder) + 1:]}"
    return signed_path(settings, path, owner, expires)


@router.delete(
    "/jobs/{job_id}",
    status_code=202,
    response_model=JobOut,
    responses={**_READ_ERRORS, 202: {"model": JobOut, "description": "queued or running: cancelled, or asked "
                                     "to stop (a running stream ends completed)"},
               204: {"description": "finished job and its files deleted"}},
    summary="Cancel a queued or running job; delete a finished one",
)
def delete_job(job_id: str, backends: BackendsDep, caller: CallerDep) -> Response:
    job = visible_job(backends, caller, job_id)
    if job.status.is_final:
        _delete_job_files(backends, job)
        backends.jobs.delete(job_id)
        return Response(status_code=204)
    try:
        job = backends.jobs.modify(job_id, lifecycle.request_cancel)
    except lifecycle.TransitionRefused as refused:  # it ended meanwhile: nothing to cancel
        job = refused.job
    if job.kind is JobKind.STREAM and job.status.is_final:  # cancelled before it ever ran: its URL is not needed
        backends.blobs.delete(source_secret_path(job.id))
    return job_response(job, 202)


def _delete_job_files(backends: Backends, job: Job) -> None:
    if job.kind is JobKind.IMAGES:  # its direct uploads (the manifest names them) go with it
        for upload_folder in _upload_folders_of(backends, job):
            backends.blobs.delete_prefix(upload_folder)
    backends.blobs.delete_prefix(job_blob_prefix(job.id))
    if not job.input_blob.startswith(job_blob_prefix(job.id)):  # a direct upload lives elsewhere
        backends.blobs.delete_prefix(job.input_blob.rsplit("/", 1)[0] + "/")


def _upload_folders_of(backends: Backends, job: Job) -> set[str]:
    try:
        lines = backends.blobs.read_small(manifest_blob_path(job.id)).splitlines()
    except NotFound:
        return set()
    blobs = (ManifestEntry.from_line(line).blob for line in lines if line.strip())
    return {blob.rsplit("/", 1)[0] + "/" for blob in blobs if blob and not blob.startswith(job_blob_prefix(job.id))}


def _completed_output(job: Job, download: str) -> str:
    job_id = job.id
    grows_while_running = job.kind is JobKind.STREAM and download in ("windows", "gaps", "windows_csv")
    if not job.results_ready and not grows_while_running:
        raise JobNotReady(f"job {job_id} is {job.status.value}; results are available once it has completed")
    filename = DOWNLOADS[download].filename
    try:
        return job.outputs[filename]
    except KeyError:
        raise JobNotReady(f"job {job_id} has no {filename}") from None


def _stream(backends: Backends, blob: str, media_type: str, filename: str, attachment: bool) -> StreamingResponse:
    size = backends.blobs.info(blob).size
    return StreamingResponse(backends.blobs.open_range(blob), media_type=media_type,
                             headers=_file_headers(size, filename, attachment))


def _file_headers(size: int, filename: str, attachment: bool) -> dict[str, str]:
    disposition = "attachment" if attachment else "inline"
    return {"Content-Length": str(size), "Content-Disposition": f'{disposition}; filename="{filename}"'}


def _download(job: Job, download: str, backends: Backends, attachment: bool) -> StreamingResponse:
    output = DOWNLOADS[download]
    if _ended_without_gaps(job, download):
        return StreamingResponse(iter([b""]), media_type=output.media_type,
                                 headers=_file_headers(0, f"{job.id}-{output.filename}", attachment))
    blob = _completed_output(job, download)
    return _stream(backends, blob, output.media_type, f"{job.id}-{output.filename}", attachment)


def _ended_without_gaps(job: Job, download: str) -> bool:
    """A stream that ended without a gap (or without ever connecting, or cancelled before it
    ran) has an empty gaps file: every ended stream has one."""
    return (download == "gaps" and job.kind is JobKind.STREAM and job.status.is_final
            and DOWNLOADS[download].filename not in job.outputs)


def _add_file_download(name: str) -> None:
    """``GET /jobs/{job_id}<route>``: one of the job's files, streamed whole (see core.outputs)."""
    def download_file(job_id: str, request: Request, backends: BackendsDep, settings: SettingsDep,
                      access: MediaAccessDep, download: bool = False) -> StreamingResponse:
        return _download(downloadable_job(backends, settings, access, request, job_id), name, backends, download)

    output = DOWNLOADS[name]
    router.add_api_route("/jobs/{job_id}" + output.route, download_file, methods=["GET"], name=f"get_{name}",
                         response_class=StreamingResponse, summary=output.summary,
                         responses={**_DOWNLOAD_ERRORS, 200: {"content": {output.media_type: {}}}})


for _name in ("result", "detections", "coco", "mot", "results", "geojson", "windows", "gaps",  # the video: below
              "tracks_csv", "timeline_csv", "lines_csv", "results_csv", "gallery", "gallery_zip"):
    _add_file_download(_name)


@router.get("/jobs/{job_id}" + DOWNLOADS["windows_csv"].route, response_class=StreamingResponse,
            responses={**_DOWNLOAD_ERRORS, 200: {"content": {DOWNLOADS["windows_csv"].media_type: {}}}},
            summary=DOWNLOADS["windows_csv"].summary)
def get_windows_csv(job_id: str, request: Request, backends: BackendsDep, settings: SettingsDep,
                    access: MediaAccessDep, download: bool = False) -> StreamingResponse:
    """Converted from windows.jsonl as it is read: that file grows while the stream runs. Both
    readings stop at the size it had when the download began, so header and rows agree."""
    blob = _completed_output(downloadable_job(backends, settings, access, request, job_id), "windows_csv")
    size = backends.blobs.info(blob).size

    def records() -> Iterator[dict[str, Any]]:
        return json_lines(backends.blobs.open_range(blob, 0, size) if size else iter(()))

    disposition = f'{"attachment" if download else "inline"}; filename="{job_id}-{WINDOWS_CSV}"'
    text = (part.encode("utf-8") for part in windows_csv(records))
    return StreamingResponse(text, media_type=DOWNLOADS["windows_csv"].media_type,
                             headers={"Content-Disposition": disposition})


@router.get(
    "/jobs/{job_id}/files/{name}",
    response_class=StreamingResponse,
    responses={**_DOWNLOAD_ERRORS, 200: {"content": {"image/jpeg": {}, "image/png": {}}}},
    summary="One file's annotated image of an images job (a large raster: its overview)",
    description="`name` is the file's name in the job, as results.jsonl lists it. A signed `files` link "
    "(POST /jobs/{id}/links) opens every file of the job: append the name to its path.",
)
def get_file_image(job_id: str, name: str, request: Request, backends: BackendsDep, settings: SettingsDep,
                   access: MediaAccessDep, download: bool = False) -> StreamingResponse:
    job = downloadable_job(backends, settings, access, request, job_id, signed_path=f"/jobs/{job_id}/files/")
    if not job.results_ready:
        raise JobNotReady(f"job {job_id} is {job.status.value}; images are available once it has completed")
    for candidate in (annotated_still(name), annotated_overview(name)):  # stored by name, not listed
        blob = output_blob_path(job.id, candidate)
        if backends.blobs.exists(blob):
            return _stream(backends, blob, media_type(candidate) or "image/jpeg",
                           f"{job_id}-{PurePosixPath(candidate).name}", download)
    raise NotFound(f"job {job_id} has no annotated image for {name!r} (see results.jsonl for its error)")


@router.get(
    "/jobs/{job_id}/" + GALLERY_CROPS_DIR + "/{name}",
    response_class=StreamingResponse,
    responses={**_DOWNLOAD_ERRORS, 200: {"content": {"image/jpeg": {}}}},
    summary="One counted animal's picture (gallery.json's `crop`: crops/<id>.jpg)",
    description="A JPEG of at most 256 px on its longest side. A signed `crops` link (POST /jobs/{id}/links) "
    "opens every picture of the job: append `<id>.jpg` to its path.",
)
def get_gallery_crop(job_id: str, name: str, request: Request, backends: BackendsDep, settings: SettingsDep,
                     access: MediaAccessDep, download: bool = False) -> StreamingResponse:
    job = downloadable_job(backends, settings, access, request, job_id,
                            signed_path=f"/jobs/{job_id}/{GALLERY_CROPS_DIR}/")
    if not job.results_ready and job.kind is not JobKind.STREAM:  # a stream's come with each window
        raise JobNotReady(f"job {job_id} is {job.status.value}; pictures are available once it has completed")
    if GALLERY_CROP.fullmatch(name) is None:
        raise NotFound(f"no picture {name!r}: pictures are named <id>.jpg, as gallery.json's items list them")
    blob = output_blob_path(job.id, f"{GALLERY_CROPS_DIR}/{name}")
    if not backends.blobs.exists(blob):
        raise NotFound(f"job {job_id} has no picture of animal #{name.removesuffix('.jpg')} (see gallery.json)")
    return _stream(backends, blob, "image/jpeg", f"{job_id}-{name}", download)


@router.get(
    "/jobs/{job_id}/" + WINDOW_GALLERY_DIR + "/windows/{window}",
    response_class=StreamingResponse,
    responses={**_DOWNLOAD_ERRORS, 200: {"content": {"application/json": {}}}},
    summary="A stream's new animals of one closed window, each with its best picture",
    description="The animals first counted in window `window` (its number in windows.jsonl; `live.last_window` "
    "is the newest), written when the window closes and readable while the stream runs: `count` equals the "
    "window's `unique`, each item has its id, class, times and `crop` (crops/<id>.jpg). A signed "
    "`gallery_windows` link (POST /jobs/{id}/links) opens every window's: append the number to its path.",
)
def get_window_gallery(job_id: str, window: int, request: Request, backends: BackendsDep, settings: SettingsDep,
                       access: MediaAccessDep, download: bool = False) -> StreamingResponse:
    job = downloadable_job(backends, settings, access, request, job_id,
                           signed_path=f"/jobs/{job_id}/{WINDOW_GALLERY_DIR}/windows/")
    if job.kind is not JobKind.STREAM:
        raise NotFound(f"job {job_id} is a {job.kind.value} job: its gallery is GET /jobs/{job_id}/gallery")
    blob = output_blob_path(job.id, window_gallery(window))
    if window < 1 or not backends.blobs.exists(blob):
        raise NotFound(f"job {job_id} has no gallery of window {window} (yet): a window's gallery is written "
                       "when the window closes (live.last_window is the newest)")
    return _stream(backends, blob, "application/json", f"{job_id}-gallery-window-{window}.json", download)


@router.get(
    "/jobs/{job_id}" + DOWNLOADS["video"].route,
    response_class=StreamingResponse,
    responses={**_DOWNLOAD_ERRORS, **error_responses(416),
               200: {"content": {DOWNLOADS["video"].media_type: {}}},
               206: {"description": "the Range asked for", "content": {DOWNLOADS["video"].media_type: {}}},
               307: {"description": "redirect to a short-lived storage URL (Azure)"}},
    summary=DOWNLOADS["video"].summary,
)
def get_video(
    job_id: str,
    request: Request,
    backends: BackendsDep,
    settings: SettingsDep,
    access: MediaAccessDep,
    range_header: Annotated[str | None, Header(alias="Range")] = None,
    download: bool = False,
) -> Response:
    output = DOWNLOADS["video"]
    blob = _completed_output(downloadable_job(backends, settings, access, request, job_id), "video")
    disposition = f'{"attachment" if download else "inline"}; filename="{job_id}-{output.filename}"'
    url = backends.blobs.read_url(blob, timedelta(seconds=settings.read_url_ttl_s), disposition)
    if url is not None:
        return RedirectResponse(url, status_code=307)
    size = backends.blobs.info(blob).size
    byte_range = parse_range(range_header, size)
    headers = {"Accept-Ranges": "bytes", "Content-Disposition": disposition}
    if byte_range is None:
        headers["Content-Length"] = str(size)
        return StreamingResponse(backends.blobs.open_range(blob), media_type=output.media_type, headers=headers)
    first, last = byte_range
    headers["Content-Length"] = str(last - first + 1)
    headers["Content-Range"] = f"bytes {first}-{last}/{size}"
    body: Iterator[bytes] = backends.blobs.open_range(blob, first, last - first + 1)
    return StreamingResponse(body, status_code=206, media_type=output.media_type, headers=headers)
