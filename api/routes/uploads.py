"""Direct uploads for big files: the API hands out a write URL and never proxies the bytes
(on Azure the URL is a short-lived SAS; on the local backend it is the PUT route below)."""

from __future__ import annotations

import pathlib
import tempfile
from typing import Annotated

from fastapi import APIRouter, Path, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field, ValidationError

from api.deps import BackendsDep, CallerDep, ScratchDirDep, SettingsDep, SubmitterDep
from api.params import describe_params_error, parse_json
from api.schemas import UPLOAD_ID_PATTERN, UploadReceived, UploadTicket, error_responses
from api.upload_stream import receive_raw_body, receive_small_body, safe_filename
from api.uploads import MAX_UPLOAD_ID, upload_data_path
from core.errors import InvalidInput

router = APIRouter(tags=["uploads"])

# the bytes themselves, as the client's PUT sends them (on Azure, to the SAS URL instead)
_UPLOAD_BYTES_BODY = {"requestBody": {"required": True, "content": {
    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}}


MAX_UPLOAD_REQUEST_BYTES = 16 * 1024  # {"filename": ...}


class UploadRequest(BaseModel):
    filename: str = Field(default="video", max_length=1024)


_UPLOAD_REQUEST_BODY = {"requestBody": {"required": False, "content": {
    "application/json": {"schema": UploadRequest.model_json_schema()}}}}


@router.post("/uploads", response_model=UploadTicket, status_code=201, responses=error_responses(401, 408, 413, 422, 503),
             openapi_extra=_UPLOAD_REQUEST_BODY, summary="Get a short-lived URL to upload a big video to")
async def create_upload(request: Request, settings: SettingsDep, submitter: SubmitterDep,
                        caller: CallerDep) -> UploadTicket:
    # read here rather than by FastAPI, so a body that stalls gets the uploads' stall timeout
    data = await receive_small_body(request, MAX_UPLOAD_REQUEST_BYTES, settings.upload_stall_timeout_s,
                                    f"the JSON body is larger than {MAX_UPLOAD_REQUEST_BYTES} bytes")
    body = _upload_request(data)
    filename = safe_filename(body.filename)
    upload_id, url, expires_at = await run_in_threadpool(submitter.uploads.reserve, filename, caller.owner)
    if url is not None:
        return UploadTicket(upload_id=upload_id, upload_url=url, headers={"x-ms-blob-type": "BlockBlob"},
                            expires_at=expires_at)
    local_url = str(request.url_for("put_upload", upload_id=upload_id))
    return UploadTicket(upload_id=upload_id, upload_url=local_url, expires_at=expires_at)


def _upload_request(data: bytes) -> UploadRequest:
    if not data.strip():
        return UploadRequest()  # the body is optional
    try:
        return UploadRequest.model_validate(parse_json("the JSON body", data, expect=dict))
    except ValidationError as exc:
        raise InvalidInput(describe_params_error(exc)) from None


@router.put("/uploads/{upload_id}", status_code=201, response_model=UploadReceived,
            responses=error_responses(401, 404, 408, 409, 413, 422, 503), openapi_extra=_UPLOAD_BYTES_BODY,
            summary="Upload the video bytes (local backend; on Azure PUT to the SAS URL instead)")
async def put_upload(
    upload_id: Annotated[str, Path(max_length=MAX_UPLOAD_ID, pattern=UPLOAD_ID_PATTERN)], request: Request,
    settings: SettingsDep, backends: BackendsDep,
    submitter: SubmitterDep, scratch: ScratchDirDep, caller: CallerDep,
) -> dict[str, int | str]:
    await run_in_threadpool(submitter.uploads.check_open, upload_id, caller.owner)
    with tempfile.TemporaryDirectory(dir=scratch) as work:
        destination = pathlib.Path(work) / "data"
        size = await receive_raw_body(request, destination, settings.max_upload_bytes,
                                      settings.upload_stall_timeout_s)
        await run_in_threadpool(backends.blobs.upload_file, upload_data_path(upload_id), destination)
    return {"upload_id": upload_id, "size_bytes": size}
