"""Public request and response models (separate from the stored Job record)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, get_args, get_origin

from fastapi import Header
from pydantic import BaseModel, ConfigDict, Field, create_model

from api.params import MAX_IDEMPOTENCY_KEY, MAX_SOURCE_URL, NOT_FOR_STREAMS
from api.uploads import MAX_UPLOAD_ID
from core.backends.outbox import DeliveryStatus, WebhookEvent
from core.jobs import Job, JobError, JobKind, JobParams, JobStatus, LiveInfo, StreamOptions
from core.outputs import DOWNLOADS, GALLERY, GALLERY_CROPS_DIR, LIVE_PLAYLIST, STATS


class WebhookStatus(BaseModel):
    """How the delivery of the job's latest webhook stands."""

    event_id: str = Field(description="the webhook-id header it is sent with (the same on every retry)")
    type: str = Field(description="e.g. job.completed")
    status: DeliveryStatus = Field(description="pending, retrying, delivered, or failed (given up)")
    attempts: int
    last_attempt_at: datetime | None
    last_error: str | None = Field(description="why the last attempt failed")
    next_attempt_at: datetime | None = Field(description="when it is tried again, while retrying")
    delivered_at: datetime | None

    @classmethod
    def from_event(cls, event: WebhookEvent) -> WebhookStatus:
        return cls(
            event_id=event.id, type=event.type, status=event.status, attempts=event.attempts,
            last_attempt_at=event.last_attempt_at, last_error=event.last_error,
            next_attempt_at=event.next_attempt_at, delivered_at=event.delivered_at,
        )


class JobOut(BaseModel):
    """A job as API users see it."""

    job_id: str
    kind: JobKind = Field(description="video, images (stills, ZIPs, rasters), or stream (a live camera)")
    status: JobStatus = Field(description="completed_with_errors: an images job whose good files completed "
                              "while some failed (files_failed > 0; results.jsonl lists each error)")
    filename: str
    size_bytes: int
    params: JobParams
    progress: float = Field(description="0..1")
    frames_done: int
    frames_total: int | None
    fps: float | None = Field(description="processing speed, frames per second")
    eta_seconds: float | None
    files_total: int = Field(description="images jobs: files in the job")
    files_done: int = Field(description="images jobs: files processed, each with its result")
    files_failed: int = Field(description="images jobs: files refused at submit or failed, each with a typed error")
    tiles_done: int = Field(description="images jobs: tiles done of the raster in progress")
    tiles_total: int | None
    attempts: int
    cancel_requested: bool
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    error: JobError | None
    counts: dict[str, Any] | None = Field(description="headline counts once completed; a stream's running totals "
                                          "while it runs")
    source: str | None = Field(default=None, description="streams: the source URL without credentials or query")
    stream: StreamOptions | None = Field(default=None, description="streams: duration, end, window, events")
    live: LiveInfo | None = Field(default=None, description="streams: frames, drops, latency, gaps, the last window")
    links: dict[str, str]
    webhook: WebhookStatus | None = Field(
        default=None, description="the latest webhook's delivery (GET /jobs/{id} only; null in lists and in webhooks)"
    )

    @classmethod
    def from_job(cls, job: Job, webhook: WebhookEvent | None = None) -> JobOut:
        fields = job.model_dump(
            include={
                "kind", "status", "filename", "files_total", "files_done", "files_failed", "tiles_done",
                "tiles_total", "size_bytes", "params", "progress", "frames_done",
                "frames_total", "fps", "eta_seconds", "attempts", "cancel_requested",
                "created_at", "updated_at", "started_at", "finished_at", "error", "counts",
                "source", "stream", "live",
            }
        )
        # shown as stored: rules added since (unique line names) must not hide an older job
        status = WebhookStatus.from_event(webhook) if webhook is not None else None
        return cls.model_validate(
            {"job_id": job.id, "links": _links(job), "webhook": status, **fields}, context={"stored": True}
        )


def public_job(job: Job) -> dict[str, Any]:
    """The job as a webhook carries it: GET /jobs/{id}'s shape, without the webhook status (a
    webhook does not report on its own delivery)."""
    return JobOut.from_job(job).model_dump(mode="json", exclude={"webhook"})


# downloads a completed job may lack: GeoJSON without georeferenced images; CSV and the gallery
# for jobs completed before they existed
_OPTIONAL = ("geojson", "tracks_csv", "timeline_csv", "lines_csv", "results_csv", "gallery", "gallery_zip")


def _links(job: Job) -> dict[str, str]:
    base = f"/jobs/{job.id}"
    links = {"self": base}
    if job.kind is JobKind.STREAM:  # its rolling outputs open while it runs, and stay afterwards
        if LIVE_PLAYLIST in job.outputs:
            links["live"] = f"{base}/{LIVE_PLAYLIST}"
        links.update((name, base + DOWNLOADS[name].route) for name in ("windows", "gaps", "windows_csv")
                     if DOWNLOADS[name].filename in job.outputs or (name == "gaps" and job.status.is_final))
        if job.results_ready and STATS in job.outputs:
            links["result"] = base + DOWNLOADS["result"].route
        return links
    if job.results_ready:
        links.update((name, base + output.route) for name, output in DOWNLOADS.items()
                     if job.kind.value in output.kinds and (name not in _OPTIONAL or output.filename in job.outputs))
        if job.kind is JobKind.IMAGES:
            links["files"] = base + "/files/"  # + a file's name: its annotated image
        if GALLERY in job.outputs:
            links["crops"] = f"{base}/{GALLERY_CROPS_DIR}/"  # + <id>.jpg: a counted animal's picture
    return links


class JobList(BaseModel):
    jobs: list[JobOut]
    next_cursor: str | None = Field(description="pass as ?cursor= to get the next page")


class SignedLinks(BaseModel):
    """A job's download URLs, signed: they open without an API key until ``expires_at``."""

    links: dict[str, str] = Field(description="download name -> URL; empty until the job has completed")
    expires_at: datetime


class UploadTicket(BaseModel):
    """Where to PUT a large video before creating the job with ``upload_id``."""

    upload_id: str
    upload_url: str
    method: str = "PUT"
    headers: dict[str, str] = Field(default_factory=dict, description="headers the PUT must carry")
    expires_at: datetime


class ErrorDetail(BaseModel):
    code: str
    message: str
    fields: list[str] | None = None


class ErrorBody(BaseModel):
    error: ErrorDetail


class UploadReceived(BaseModel):
    """A direct upload's bytes, stored (local backend)."""

    upload_id: str
    size_bytes: int


# --- what each route may answer besides success ------------------------------------------------

ERROR_MEANINGS = {
    401: "no API key, or one this service does not know (only when API_KEYS is set)",
    403: "the key is valid but may not do this (an admin key is needed)",
    404: "no such job, upload, file or model (another tenant's answers the same)",
    408: "the request body stalled for longer than UPLOAD_STALL_TIMEOUT_S",
    409: "the job or upload is not in a state that allows it (results not ready, upload already a job)",
    413: "the upload is larger than MAX_UPLOAD_BYTES",
    415: "not a video, image or ZIP this service can read",
    416: "the Range lies outside the file",
    422: "invalid input; the message names each bad field",
    429: "a limit of the tenant is reached; try again after Retry-After",
    503: "storage is unavailable; try again after Retry-After",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The error answers a route documents: the statuses it can really give, each with the one
    error body (``{"error": {"code", "message"}}``) and what it means."""
    return {status: {"model": ErrorBody, "description": ERROR_MEANINGS[status]} for status in statuses}


# --- request bodies: generated from the models that check them ---------------------------------
# The routes read their bodies themselves (streamed to disk, with stall timeouts), so FastAPI
# cannot document them from the handlers' signatures; these schemas come from the same models
# (JobParams, StreamOptions) and constants that check the requests, so they cannot drift apart.

# as check_idempotency_key checks it (which stays the one check): printable, not blank
IdempotencyKey = Annotated[str | None, Header(
    alias="Idempotency-Key",
    description="repeat a request with the same key to get the same job back (200) instead of a second one",
    json_schema_extra={"minLength": 1, "maxLength": MAX_IDEMPOTENCY_KEY, "pattern": r"^[ -~]*[!-~][ -~]*$"},
)]
UPLOAD_ID_PATTERN = r"^[A-Za-z0-9_-]+$"  # as api.uploads checks it
UploadId = Annotated[str, Field(min_length=1, max_length=MAX_UPLOAD_ID, pattern=UPLOAD_ID_PATTERN,
                                description="from POST /uploads")]
STREAM_URL_PATTERN = r"^(rtsps?|https?)://[^\s]+$"


class JobFromUpload(BaseModel):
    """A video job of one finished direct upload (POST /uploads, then PUT its bytes)."""

    model_config = ConfigDict(extra="forbid")
    upload_id: UploadId
    params: JobParams | None = None


class JobFromUploads(BaseModel):
    """An images job of several finished direct uploads."""

    model_config = ConfigDict(extra="forbid")
    upload_ids: list[UploadId] = Field(min_length=1, description="at most MAX_FILES_PER_JOB")
    params: JobParams | None = None


def _copied_fields(model: type[BaseModel], exclude: tuple[str, ...] = ()) -> dict[str, Any]:
    return {name: (info.annotation, info) for name, info in model.model_fields.items() if name not in exclude}


StreamRequest = create_model(
    "StreamRequest",
    __config__=ConfigDict(extra="forbid", allow_inf_nan=False),
    __doc__="A live stream: its source, the counting parameters of a job (less those that mean nothing "
    "live: frame_stride, frame_interval_seconds, stitching) and the stream's own options.",
    source_url=(str, Field(min_length=1, max_length=MAX_SOURCE_URL, pattern=STREAM_URL_PATTERN,
                           description="rtsp://, rtsps:// or http(s):// (HLS). Credentials in it are kept in a "
                           "secret and never shown or logged. A private address must lie in "
                           "STREAM_ALLOWED_NETWORKS.")),
    **_copied_fields(JobParams, exclude=tuple(NOT_FOR_STREAMS)),
    **_copied_fields(StreamOptions),
)


def _sent_as_text_in_a_form(annotation: Any) -> bool:
    """A list or a model: in a multipart form it is one text field holding JSON (or a shorthand)."""
    candidates = [annotation, *get_args(annotation)]
    return any(get_origin(kind) in (list, dict) or (isinstance(kind, type) and issubclass(kind, BaseModel))
               for kind in candidates)


FORM_TEXT_FIELDS = {
    "classes": "comma-separated class names (cow,sheep) or a JSON list",
    "lines": "x1,y1,x2,y2[;x1,y1,x2,y2...] or a JSON list of {name, start, end}",
    "zones": "a JSON list of {name, polygon}",
}


def _job_form_model() -> type[BaseModel]:
    """The multipart form of POST /jobs: the files, or a direct upload, and every job parameter as
    a field of its own (a list as JSON text) or all of them in ``params``."""
    fields: dict[str, Any] = {
        "file": (bytes | None, Field(default=None, description="the video, one image or a ZIP of images")),
        "files": (list[bytes] | None, Field(default=None, min_length=1,
                                            description="images or ZIPs of images (at most MAX_FILES_PER_JOB)")),
        "upload_id": (UploadId | None, None),
        "params": (str | None, Field(default=None, description="every parameter as one JSON object "
                                     "(see JobParams); the fields below override it",
                                     json_schema_extra={"contentMediaType": "application/json"})),
    }
    for name, info in JobParams.model_fields.items():
        if _sent_as_text_in_a_form(info.annotation):
            fields[name] = (str | None, Field(default=None, description=FORM_TEXT_FIELDS[name],
                                              json_schema_extra={"contentMediaType": "application/json"}))
        else:
            fields[name] = (info.annotation, info)
    return create_model("JobForm", __config__=ConfigDict(extra="forbid"), **fields)


def _without_null(schema: dict[str, Any]) -> dict[str, Any]:
    """A property's schema less its ``null`` choice: a form field is left out, never sent as null."""
    choices = [choice for choice in schema.get("anyOf", []) if choice != {"type": "null"}]
    if len(choices) != 1:
        return schema
    rest = {key: value for key, value in schema.items() if key not in ("anyOf", "default")}
    return {**choices[0], **rest}


def request_schema(model: type[BaseModel]) -> dict[str, Any]:
    """``model``'s JSON schema as it validates input, its definitions inlined (an operation's
    request body cannot add components of its own)."""
    schema = model.model_json_schema(mode="validation")
    return _inlined(schema, schema.pop("$defs", {}))


def _inlined(node: Any, definitions: dict[str, Any]) -> Any:
    if isinstance(node, list):
        return [_inlined(item, definitions) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = definitions[node["$ref"].rsplit("/", 1)[-1]]
        rest = {key: value for key, value in node.items() if key != "$ref"}
        return {**_inlined(target, definitions), **_inlined(rest, definitions)}
    return {key: _inlined(value, definitions) for key, value in node.items()}


def job_form_schema() -> dict[str, Any]:
    schema = request_schema(_job_form_model())
    schema["properties"] = {name: _without_null(prop) for name, prop in schema["properties"].items()}
    schema["anyOf"] = [{"required": ["file"]}, {"required": ["files"]}, {"required": ["upload_id"]}]
    return schema


def job_request_body() -> dict[str, Any]:
    """POST /jobs's body: a multipart form with the files, or JSON naming direct uploads."""
    return {"requestBody": {"required": True, "content": {
        "multipart/form-data": {"schema": job_form_schema(),
                                "encoding": {"files": {"contentType": "application/octet-stream"}}},
        "application/json": {"schema": {"oneOf": [request_schema(JobFromUpload), request_schema(JobFromUploads)]}},
    }}}


def stream_request_body() -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {"application/json": {
        "schema": request_schema(StreamRequest),
        "example": {
            "source_url": "rtsp://user:password@10.20.0.31:554/stream1",
            "classes": ["cow"],
            "lines": [{"name": "gate", "start": [0, 360], "end": [1280, 360]}],
            "tracker": "bytetrack",
            "window_s": 60,
            "duration_s": 3600,
        },
    }}}}
