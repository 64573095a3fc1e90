"""Public request and response models (separate from the stored Job record). The job itself
as users see it, ``JobOut``, is in ``core.public_job``: the worker's webhooks carry it too."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, get_args, get_origin

from fastapi import Header
from pydantic import BaseModel, ConfigDict, Field, create_model

from api.params import MAX_IDEMPOTENCY_KEY, MAX_SOURCE_URL, NOT_FOR_STREAMS
from api.uploads import MAX_UPLOAD_ID
from core.jobs import JobParams, StreamOptions
from core.public_job import JobOut


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
TELEMETRY_DESCRIPTION = ("the video's flight telemetry: a drone's .SRT subtitle file (DJI), at most "
                         "MAX_TELEMETRY_BYTES; video jobs only")
TELEMETRY_UPLOAD_DESCRIPTION = "the direct upload (POST /uploads) holding the video's .SRT telemetry; video jobs only"
STREAM_URL_PATTERN = r"^(rtsps?|https?)://[^\s]+$"


class JobFromUpload(BaseModel):
    """A video job of one finished direct upload (POST /uploads, then PUT its bytes)."""

    model_config = ConfigDict(extra="forbid")
    upload_id: UploadId
    telemetry_upload_id: UploadId | None = Field(default=None, description=TELEMETRY_UPLOAD_DESCRIPTION)
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
        "file": (bytes | None, Field(default=None, description="the video, one image, a ZIP of images, or a ZIP of "
                                     "one video and its .SRT telemetry")),
        "files": (list[bytes] | None, Field(default=None, min_length=1,
                                            description="images or ZIPs of images (at most MAX_FILES_PER_JOB)")),
        "upload_id": (UploadId | None, None),
        "telemetry": (bytes | None, Field(default=None, description=TELEMETRY_DESCRIPTION)),
        "telemetry_upload_id": (UploadId | None, Field(default=None, description=TELEMETRY_UPLOAD_DESCRIPTION)),
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
