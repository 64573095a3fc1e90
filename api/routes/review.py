"""A person's review of a completed video job's count: corrections, their undoing, and the
reviewed exports.

The automatic outputs are never changed. The corrections live in one small JSON document
beside them (``review.json``, see core.review), written with ``BlobStore.write_if`` so that
two writers who read the same version cannot both succeed. Clients see that version as the
``ETag`` and must send it back as ``If-Match`` with every change: a change made from a page
that has not seen the latest correction is refused (412) instead of silently dropping it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Header, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from api.deps import BackendsDep, Caller, CallerDep, MediaAccessDep, SettingsDep
from api.job_access import downloadable_job, visible_job
from api.schemas import ErrorBody
from core.backends import Backends
from core.backends.outbox import WebhookEvent, event_id
from core.errors import CattleCounterError, JobNotReady, NotFound, PreconditionFailed
from core.jobs import Job, JobKind, output_blob_path, utcnow
from core.outputs import COCO, CSV_MEDIA_TYPE, DETECTIONS, STATS, TRACKS_CSV
from core.public_job import public_job
from core.review import (
    REVIEW_FILE,
    Correction,
    Review,
    ReviewConflict,
    ReviewedCount,
    reviewed,
    reviewed_coco,
    reviewed_tracks_csv,
)
from core.tables import json_lines

router = APIRouter(tags=["review"])

MAX_CORRECTIONS = 1000  # far more than one herd needs; keeps the document small
# job.reviewed events sit below the final event's sequence (the outbox's keys have 6 digits)
REVIEW_EVENT_SEQUENCE = 900_000
COCO_HEAD_BYTES = 256 * 1024  # coco.json begins with its categories: this much holds them

_ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorBody} for code in (401, 404, 409, 412, 422, 428)}


class ReviewChanged(CattleCounterError):
    """The review changed since the client read it (its If-Match is not the current ETag)."""

    code = "review_changed"
    http_status = 412

    def __init__(self, message: str, current_etag: str | None = None) -> None:
        super().__init__(message)
        self.headers = {"ETag": current_etag} if current_etag else {}  # what to read again


class PreconditionRequired(CattleCounterError):
    code = "precondition_required"
    http_status = 428


# --- the request bodies ----------------------------------------------------------------------


class NotAnimal(BaseModel):
    """#``track`` is not an animal: it is not counted."""

    model_config = ConfigDict(extra="forbid")
    action: Literal["not_animal"]
    track: int = Field(ge=0, description="a final track id (stats.json tracks[].id)")


class SameAs(BaseModel):
    """#``track`` is the same animal as #``into``: counted once, as #``into``, with its class."""

    model_config = ConfigDict(extra="forbid")
    action: Literal["merge"]
    track: int = Field(ge=0)
    into: int = Field(ge=0, description="the track it is the same animal as")


class ClassIs(BaseModel):
    """#``track`` is of class ``class``, one the model knows (coco.json's categories)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    action: Literal["class"]
    track: int = Field(ge=0)
    class_name: str = Field(alias="class", min_length=1, max_length=100)


CorrectionIn = Annotated[NotAnimal | SameAs | ClassIs, Field(discriminator="action")]


# --- reading a job's review ----------------------------------------------------------------------


@dataclass(frozen=True)
class Reviewing:
    """What a review is computed from, read once per request."""

    job: Job
    tracks: list[dict[str, Any]]
    categories: list[dict[str, Any]]
    review: Review
    blob_etag: str | None  # None: no correction was ever made
    video_size: tuple[int, int]

    @property
    def etag(self) -> str:
        return f'"{self.review.version}"'

    def count(self, corrections: list[Correction] | None = None) -> ReviewedCount:
        known = [str(c["name"]) for c in self.categories]
        return reviewed(self.tracks, self.review.active if corrections is None else corrections, known)


def _review_blob(job_id: str) -> str:
    return output_blob_path(job_id, REVIEW_FILE)


def _reviewable(backends: Backends, caller: Caller, job_id: str) -> Reviewing:
    job = visible_job(backends, caller, job_id)
    return _read(backends, job)


def _read(backends: Backends, job: Job) -> Reviewing:
    if job.kind is not JobKind.VIDEO:
        raise JobNotReady(f"job {job.id} is a {job.kind.value} job; only a video job's count can be reviewed")
    if not job.status.has_results or STATS not in job.outputs:
        raise JobNotReady(f"job {job.id} is {job.status.value}; its count can be reviewed once it has completed")
    stats = json.loads(b"".join(backends.blobs.open_range(job.outputs[STATS])))
    review, blob_etag = _stored_review(backends, job.id)
    video = stats.get("video", {})
    return Reviewing(job, stats.get("tracks", []), _categories(backends, job, stats), review, blob_etag,
                     (int(video.get("width", 0)), int(video.get("height", 0))))


def _stored_review(backends: Backends, job_id: str) -> tuple[Review, str | None]:
    """The document and its blob's etag, read together: the etag is taken first, so a write
    between the two reads makes the later conditional write fail rather than pass."""
    blob = _review_blob(job_id)
    try:
        etag = backends.blobs.info(blob).etag
        data = b"".join(backends.blobs.open_range(blob))
    except NotFound:
        return Review(), None
    return Review.from_bytes(data), etag


def _categories(backends: Backends, job: Job, stats: dict[str, Any]) -> list[dict[str, Any]]:
    """The model's classes, as coco.json's categories (every class the model knows, not only
    the job's). A job without them: the classes its tracks have."""
    head = b""
    if COCO in job.outputs:
        head = b"".join(backends.blobs.open_range(job.outputs[COCO], 0, COCO_HEAD_BYTES))
    text = head.decode("utf-8", errors="replace")
    start = text.find('"categories": ')
    if start >= 0:
        try:
            categories, _ = json.JSONDecoder().raw_decode(text, start + len('"categories": '))
            if isinstance(categories, list) and categories:
                return categories
        except ValueError:
            pass
    names = sorted({str(t["class"]) for t in stats.get("tracks", [])})
    return [{"id": i, "name": name, "supercategory": "object"} for i, name in enumerate(names)]


# --- the answer ----------------------------------------------------------------------------------


def _summary(reviewing: Reviewing, count: ReviewedCount) -> dict[str, Any]:
    automatic = reviewed(reviewing.tracks, [])
    return {
        "job_id": reviewing.job.id,
        "version": reviewing.review.version,
        "automatic": {"total_unique": automatic.total_unique, "by_class": automatic.by_class},
        "reviewed": {"total_unique": count.total_unique, "by_class": count.by_class},
        "classes": [str(c["name"]) for c in reviewing.categories],
        "tracks": [_track_fate(int(t["id"]), str(t["class"]), count) for t in reviewing.tracks],
        "corrections": [c.to_json() for c in reviewing.review.corrections],
    }


def _track_fate(track: int, automatic_class: str, count: ReviewedCount) -> dict[str, Any]:
    """One automatic track after the review: the animal it counts as (None: not an animal)."""
    final = count.final_id(track)
    return {"id": track, "automatic_class": automatic_class, "final_id": final,
            "class": count.counted[final] if final is not None else None}


def _answer(reviewing: Reviewing, status_code: int = 200) -> JSONResponse:
    headers = {"ETag": reviewing.etag, "Cache-Control": "no-store"}
    return JSONResponse(_summary(reviewing, reviewing.count()), status_code=status_code, headers=headers)


def _check_if_match(reviewing: Reviewing, if_match: str | None) -> None:
    if not if_match:
        raise PreconditionRequired("send the review's ETag (from GET /jobs/{id}/review) in an If-Match header, "
                                   "so a correction made elsewhere meanwhile is not lost")
    if if_match.strip() != reviewing.etag:
        raise ReviewChanged(f"the review changed since it was read (If-Match {if_match}, now {reviewing.etag}); "
                            "read it again (GET /jobs/{id}/review) and repeat the correction if still needed",
                            reviewing.etag)


def _save(backends: Backends, reviewing: Reviewing, review: Review, change: Correction, caller: Caller,
          undone: bool) -> Reviewing:
    """Write the new document if nobody else wrote since it was read; then its webhook."""
    try:
        backends.blobs.write_if(_review_blob(reviewing.job.id), review.to_bytes(), reviewing.blob_etag,
                                content_type="application/json")
    except PreconditionFailed:
        raise ReviewChanged("the review changed while this correction was being saved; read it again "
                            "(GET /jobs/{id}/review) and repeat the correction if still needed") from None
    saved = replace(reviewing, review=review)
    _send_webhook(backends, saved, change, undone)
    return saved


def _send_webhook(backends: Backends, reviewing: Reviewing, change: Correction, undone: bool) -> None:
    job = reviewing.job
    if job.params.callback_url is None:
        return
    count = reviewing.count()
    sequence = REVIEW_EVENT_SEQUENCE + reviewing.review.version
    now = utcnow()
    data = {**public_job(job), "review": {
        "version": reviewing.review.version,
        "reviewed": {"total_unique": count.total_unique, "by_class": count.by_class},
        "change": {"undone" if undone else "made": change.to_json()},
    }}
    body = {"type": "job.reviewed", "timestamp": now.isoformat(), "data": data}
    backends.outbox.add(WebhookEvent(id=event_id(job.id, sequence), job_id=job.id, sequence=sequence,
                                     type="job.reviewed", url=str(job.params.callback_url),
                                     body=json.dumps(body), created_at=now))


def _stamp(caller: Caller) -> dict[str, Any]:
    """Who made a change: the key's name (its tenant), and whether it was an admin key."""
    return {"by": caller.owner, "admin": caller.sees_all, "at": utcnow().isoformat()}


# --- routes --------------------------------------------------------------------------------------


@router.get("/jobs/{job_id}/review", responses=_ERRORS,
            summary="A completed video job's review: automatic and reviewed counts, every correction")
def get_review(job_id: str, backends: BackendsDep, caller: CallerDep) -> JSONResponse:
    return _answer(_reviewable(backends, caller, job_id))


@router.post(
    "/jobs/{job_id}/review",
    status_code=201,
    responses={**_ERRORS, 201: {"description": "the correction is made; the review as it now stands"}},
    summary="Correct the count: not an animal, same as #N, or class is X",
    description="Send the `ETag` of GET /jobs/{id}/review as `If-Match` (428 without it, 412 if the review "
    "changed since). The body is one correction; see docs/api.md.",
)
def add_correction(
    job_id: str,
    backends: BackendsDep,
    caller: CallerDep,
    correction: Annotated[CorrectionIn, Body()],
    if_match: Annotated[str | None, Header(alias="If-Match")] = None,
) -> JSONResponse:
    reviewing = _reviewable(backends, caller, job_id)
    _check_if_match(reviewing, if_match)
    corrections = reviewing.review.corrections
    if len(corrections) >= MAX_CORRECTIONS:
        raise ReviewConflict(f"job {job_id} has {MAX_CORRECTIONS} corrections, the most one review keeps")
    new = Correction(n=len(corrections) + 1, action=correction.action, track=correction.track,
                     into=getattr(correction, "into", None), class_name=getattr(correction, "class_name", None),
                     **_stamp(caller))
    reviewing.count([*reviewing.review.active, new])  # refuses a correction that cannot apply
    review = Review(version=reviewing.review.version + 1, corrections=(*corrections, new))
    saved = _save(backends, reviewing, review, new, caller, undone=False)
    response = _answer(saved, 201)
    response.headers["Location"] = f"/jobs/{job_id}/review/{new.n}"
    return response


@router.get("/jobs/{job_id}/review/{n}", responses=_ERRORS, summary="One correction (the Location of a POST's answer)")
def get_correction(job_id: str, n: int, backends: BackendsDep, caller: CallerDep) -> JSONResponse:
    reviewing = _reviewable(backends, caller, job_id)
    return JSONResponse(_correction(reviewing, n).to_json(), headers={"ETag": reviewing.etag, "Cache-Control": "no-store"})


def _correction(reviewing: Reviewing, n: int) -> Correction:
    found = next((c for c in reviewing.review.corrections if c.n == n), None)
    if found is None:
        raise NotFound(f"job {reviewing.job.id}'s review has no correction {n}")
    return found


@router.delete(
    "/jobs/{job_id}/review/{n}",
    responses=_ERRORS,
    summary="Undo correction number n (the count goes back as if it had never been made)",
    description="Needs `If-Match` as POST does. The correction stays in the list, marked `undone` (who, when). "
    "Refused (409) if a later correction depends on it: undo that one first.",
)
def undo_correction(
    job_id: str,
    n: int,
    backends: BackendsDep,
    caller: CallerDep,
    if_match: Annotated[str | None, Header(alias="If-Match")] = None,
) -> JSONResponse:
    reviewing = _reviewable(backends, caller, job_id)
    _check_if_match(reviewing, if_match)
    target = _correction(reviewing, n)
    if target.undone is not None:
        raise ReviewConflict(f"correction {n} is undone already")
    undone = replace(target, undone=_stamp(caller))
    corrections = tuple(undone if c.n == n else c for c in reviewing.review.corrections)
    review = Review(version=reviewing.review.version + 1, corrections=corrections)
    reviewing.count(review.active)  # a later correction may need this one (e.g. a merge into what it merged)
    return _answer(_save(backends, reviewing, review, undone, caller, undone=True))


@router.get("/jobs/{job_id}/review/exports/" + TRACKS_CSV, responses=_ERRORS,
            summary="tracks.csv as reviewed: one row per animal after the corrections")
def get_reviewed_tracks_csv(job_id: str, request: Request, backends: BackendsDep, settings: SettingsDep,
                            access: MediaAccessDep, download: bool = False) -> Response:
    reviewing = _read(backends, downloadable_job(backends, settings, access, request, job_id))
    text = (part.encode("utf-8") for part in reviewed_tracks_csv(reviewing.tracks, reviewing.count()))
    return _file(text, CSV_MEDIA_TYPE, f"{job_id}-reviewed-{TRACKS_CSV}", download, reviewing.etag)


@router.get("/jobs/{job_id}/review/exports/coco", responses=_ERRORS,
            summary="COCO export as reviewed: the counted animals' boxes with their corrected ids and classes")
def get_reviewed_coco(job_id: str, request: Request, backends: BackendsDep, settings: SettingsDep,
                      access: MediaAccessDep, download: bool = False) -> Response:
    reviewing = _read(backends, downloadable_job(backends, settings, access, request, job_id))
    if DETECTIONS not in reviewing.job.outputs:
        raise JobNotReady(f"job {job_id} has no {DETECTIONS}")
    detections = reviewing.job.outputs[DETECTIONS]

    def frames() -> Iterator[dict[str, Any]]:
        return json_lines(backends.blobs.open_range(detections))

    text = (part.encode("utf-8") for part in reviewed_coco(frames, reviewing.categories, reviewing.video_size, reviewing.count()))
    return _file(text, "application/json", f"{job_id}-reviewed-{COCO}", download, reviewing.etag)


def _file(body: Iterator[bytes], media_type: str, filename: str, attachment: bool, etag: str) -> StreamingResponse:
    disposition = f'{"attachment" if attachment else "inline"}; filename="{filename}"'
    return StreamingResponse(body, media_type=media_type,
                             headers={"Content-Disposition": disposition, "ETag": etag, "Cache-Control": "no-store"})
