"""A job as API users see it: GET /jobs/{id}'s answer and the ``data`` of a webhook.

In core, not in the API, because two processes publish it: the API answers with it and the
worker's webhooks carry it (the worker image ships no ``api/``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from core.backends.outbox import DeliveryStatus, WebhookEvent
from core.jobs import Job, JobError, JobKind, JobParams, JobStatus, LiveInfo, StreamOptions
from core.outputs import DOWNLOADS, GALLERY, GALLERY_CROPS_DIR, LIVE_PLAYLIST, STATS, WINDOW_GALLERY_DIR


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
    telemetry: str | None = Field(default=None, description="video jobs: the name of the flight telemetry file "
                                  "(.SRT) that came with the video; stats.json says what was read from it")
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
            {"job_id": job.id, "links": _links(job), "webhook": status, **fields,
             "telemetry": job.telemetry.filename if job.telemetry is not None else None}, context={"stored": True}
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
        if job.live is not None and job.live.last_window is not None:  # each closed window's new animals
            links["gallery_windows"] = f"{base}/{WINDOW_GALLERY_DIR}/windows/"  # + the window's number
            links["crops"] = f"{base}/{GALLERY_CROPS_DIR}/"
        return links
    if job.results_ready:
        links.update((name, base + output.route) for name, output in DOWNLOADS.items()
                     if job.kind.value in output.kinds and (name not in _OPTIONAL or output.filename in job.outputs))
        if job.kind is JobKind.IMAGES:
            links["files"] = base + "/files/"  # + a file's name: its annotated image
        if GALLERY in job.outputs:
            links["crops"] = f"{base}/{GALLERY_CROPS_DIR}/"  # + <id>.jpg: a counted animal's picture
    return links
