"""Public request and response models (separate from the stored Job record)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from core.jobs import Job, JobError, JobParams, JobStatus


class JobOut(BaseModel):
    """A job as API users see it."""

    job_id: str
    status: JobStatus
    filename: str
    size_bytes: int
    params: JobParams
    progress: float = Field(description="0..1")
    frames_done: int
    frames_total: int | None
    fps: float | None = Field(description="processing speed, frames per second")
    eta_seconds: float | None
    attempts: int
    cancel_requested: bool
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    error: JobError | None
    counts: dict[str, Any] | None = Field(description="headline counts once completed")
    links: dict[str, str]

    @classmethod
    def from_job(cls, job: Job) -> "JobOut":
        fields = job.model_dump(
            include={
                "status", "filename", "size_bytes", "params", "progress", "frames_done",
                "frames_total", "fps", "eta_seconds", "attempts", "cancel_requested",
                "created_at", "updated_at", "started_at", "finished_at", "error", "counts",
            }
        )
        # shown as stored: rules added since (unique line names) must not hide an older job
        return cls.model_validate({"job_id": job.id, "links": _links(job), **fields}, context={"stored": True})


def _links(job: Job) -> dict[str, str]:
    base = f"/jobs/{job.id}"
    links = {"self": base}
    if job.status is JobStatus.COMPLETED:
        links.update(
            result=f"{base}/result",
            video=f"{base}/video",
            detections=f"{base}/detections",
            coco=f"{base}/exports/coco",
            mot=f"{base}/exports/mot",
        )
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
