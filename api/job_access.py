"""How the routes find a job and answer with one: the lookups that keep tenants apart (another
tenant's job is as missing as one that does not exist) and the answer to a submission."""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import JSONResponse

from api.deps import Caller
from api.schemas import JobOut
from api.signed_urls import Signature, has_expired, is_valid
from core.backends import Backends
from core.config import Settings
from core.errors import NotFound, Unauthorized
from core.jobs import Job


def job_response(job: Job, status_code: int, replayed: bool = False) -> JSONResponse:
    headers = {"Location": f"/jobs/{job.id}"}
    if replayed:
        headers["Idempotent-Replayed"] = "true"
    return JSONResponse(JobOut.from_job(job).model_dump(mode="json"), status_code=status_code, headers=headers)


def submitted(job: Job, created: bool) -> JSONResponse:
    """202 for a new job; 200 for the one an earlier request with the same Idempotency-Key made."""
    return job_response(job, 202 if created else 200, replayed=not created)



def visible_job(backends: Backends, caller: Caller, job_id: str) -> Job:
    """The job, if the caller may see it. Another tenant's job is NotFound with the very
    message a missing one gets: its existence is not the caller's business."""
    job = backends.jobs.get(job_id)
    if not caller.can_see(job.owner):
        raise NotFound(f"job {job_id} does not exist")
    return job


def downloadable_job(backends: Backends, settings: Settings, access: Caller | Signature, request: Request,
                      job_id: str, signed_path: str | None = None) -> Job:
    """The job behind a download: visible to the caller's key, or the URL is signed for it."""
    if isinstance(access, Caller):
        return visible_job(backends, access, job_id)
    # a link that has expired is refused before the job is looked up, and an unknown id is
    # answered as a bad signature: without a key, no answer tells whether a job exists
    if has_expired(access):
        raise bad_link()
    try:
        job = backends.jobs.get(job_id)
    except NotFound:
        raise bad_link() from None
    # the route's own path, as JobOut.links names it: without the prefix a proxy may add (root_path)
    path = signed_path or request.scope["route"].path.format(job_id=job_id)
    if not is_valid(settings, path, job.owner, access):
        raise bad_link()
    return job


def bad_link() -> Unauthorized:
    return Unauthorized("this link is not valid or has expired; open the job again for a fresh one "
                        "(POST /jobs/{id}/links), or send an API key")


