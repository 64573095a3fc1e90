"""Direct uploads for big files: the API hands out a write URL and never proxies the bytes
(on Azure the URL is a short-lived SAS; on the local backend it is the PUT route below)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from api.deps import ApiKeyDep, BackendsDep, ScratchDirDep, SettingsDep, SubmitterDep
from api.schemas import ErrorBody, UploadTicket
from api.submission import upload_data_path
from api.upload_stream import receive_raw_body, safe_filename

router = APIRouter(tags=["uploads"], dependencies=[ApiKeyDep])

_ERRORS = {code: {"model": ErrorBody} for code in (401, 404, 413, 422, 503)}


class UploadRequest(BaseModel):
    filename: str = Field(default="video", max_length=1024)


@router.post("/uploads", response_model=UploadTicket, status_code=201, responses=_ERRORS,
             summary="Get a short-lived URL to upload a big video to")
def create_upload(request: Request, submitter: SubmitterDep, body: UploadRequest | None = None) -> UploadTicket:
    filename = safe_filename((body or UploadRequest()).filename)
    upload_id, url, expires_at = submitter.new_upload(filename)
    if url is not None:
        return UploadTicket(upload_id=upload_id, upload_url=url, headers={"x-ms-blob-type": "BlockBlob"},
                            expires_at=expires_at)
    local_url = str(request.url_for("put_upload", upload_id=upload_id))
    return UploadTicket(upload_id=upload_id, upload_url=local_url, expires_at=expires_at)


@router.put("/uploads/{upload_id}", status_code=201, responses=_ERRORS,
            summary="Upload the video bytes (local backend; on Azure PUT to the SAS URL instead)")
async def put_upload(
    upload_id: str, request: Request, settings: SettingsDep, backends: BackendsDep,
    submitter: SubmitterDep, scratch: ScratchDirDep,
) -> dict[str, int | str]:
    await run_in_threadpool(submitter.check_upload_open, upload_id)
    with tempfile.TemporaryDirectory(dir=scratch) as work:
        destination = Path(work) / "data"
        size = await receive_raw_body(request, destination, settings.max_upload_bytes,
                                      settings.upload_stall_timeout_s)
        await run_in_threadpool(backends.blobs.upload_file, upload_data_path(upload_id), destination)
    return {"upload_id": upload_id, "size_bytes": size}
