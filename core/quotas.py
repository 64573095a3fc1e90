"""Quotas per tenant: what one tenant's jobs may hold at once, so that one cannot crowd out the rest.

Four limits (``Settings.quota_for``; 0 is none, the default, so a single-tenant install sees no
change):

- queued jobs: checked when a job is submitted; one more is a 429 with Retry-After;
- processing jobs: checked by the worker that takes a job; one more is handed back, unstarted,
  for a few seconds (it stays queued: submitting it was fine, only its turn has not come);
- stored bytes: the input bytes of the tenant's jobs in storage; a job that would pass the limit
  is a 422 (waiting frees nothing, deleting finished jobs does);
- stream hours: the streaming time the tenant's unfinished streams have booked (each one's
  ``duration_s`` or ``end_at``, less what it has streamed). Over it: a 429 whose Retry-After
  is when enough running streams will have ended; a stream longer than the limit by itself, or
  with no end at all, is a 422.

A submitted job is counted from its record, written before the check: two submissions at the
same moment both see each other (and may both be refused), never neither. Usage is read from
the job store, one owner's listing at a time; only the stored-bytes limit reads every one of
the tenant's jobs (its finished ones too) at each submission.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime

from core import metrics
from core.backends.base import JobStore
from core.config import Quota, Settings
from core.errors import QuotaExceeded, RequestExceedsQuota
from core.jobs import Job, JobKind, JobStatus, utcnow

# How long a client over a job-count limit is told to wait: jobs take seconds to hours, and
# nothing says which of the tenant's jobs ends first.
RETRY_AFTER_S = 30
PAGE = 200
HOUR_S = 3600.0


@dataclass(frozen=True)
class Usage:
    """What one tenant's jobs hold now (the quantities the quotas limit)."""

    queued_jobs: int = 0
    processing_jobs: int = 0
    stored_bytes: int = 0
    stream_hours_booked: float | None = 0.0  # None while a stream with no end is booked


def owner_jobs(jobs: JobStore, owner: str | None, status: JobStatus | None = None) -> Iterator[Job]:
    """Every job of ``owner`` (None: of everyone), newest first, a page at a time."""
    cursor = None
    while True:
        page = jobs.list(status=status, limit=PAGE, cursor=cursor, owner=owner)
        yield from page.jobs
        if page.next_cursor is None:
            return
        cursor = page.next_cursor


def count_jobs(jobs: JobStore, owner: str, status: JobStatus, up_to: int) -> int:
    """How many of ``owner``'s jobs are ``status``, counted up to ``up_to`` (no further reads)."""
    counted, cursor = 0, None
    while counted < up_to:
        page = jobs.list(status=status, limit=min(PAGE, up_to - counted), cursor=cursor, owner=owner)
        counted += len(page.jobs)
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    return counted


def booked_stream_s(job: Job, settings: Settings, now: datetime) -> float:
    """The streaming time an unfinished stream job still has booked; math.inf with no end."""
    stream = job.stream
    streamed = job.live.streaming_s if job.live is not None else 0.0
    ends = []
    if stream is not None and stream.duration_s is not None:
        ends.append(stream.duration_s - streamed)
    if stream is not None and stream.end_at is not None:
        ends.append((stream.end_at - now).total_seconds())
    if settings.max_stream_seconds is not None:
        ends.append(settings.max_stream_seconds - streamed)
    return max(0.0, min(ends)) if ends else math.inf


def tenant_usage(tenant_jobs: Iterable[Job], settings: Settings, now: datetime | None = None) -> Usage:
    """The usage of one tenant's jobs (all of them: the stored bytes count finished ones too)."""
    now = now or utcnow()
    queued = processing = stored = 0
    booked = 0.0
    for job in tenant_jobs:
        queued += job.status is JobStatus.QUEUED
        processing += job.status is JobStatus.PROCESSING
        stored += job.size_bytes
        if job.kind is JobKind.STREAM and not job.status.is_final:
            booked += booked_stream_s(job, settings, now)
    return Usage(queued, processing, stored, booked / HOUR_S if math.isfinite(booked) else None)


class QuotaKeeper:
    """Checks a new job against its tenant's quotas (the API) and the processing limit (workers)."""

    def __init__(self, settings: Settings, jobs: JobStore) -> None:
        self.settings = settings
        self.jobs = jobs
        defaults = settings.quota_for("")  # "" is no tenant's name: the QUOTA_MAX_* values alone
        for name, value in vars(defaults).items():
            metrics.QUOTA_LIMIT.labels(quota=name.removeprefix("max_")).set(value)

    def check_new_job(self, job: Job) -> None:
        """Raise QuotaExceeded (429) or RequestExceedsQuota (422) if ``job``, already recorded
        but not yet queued, puts its tenant past a limit."""
        self._refuse_past_limits(job, recorded=True)

    def check_room(self, owner: str) -> None:
        """Before a body is read: refuse at once a tenant that is at its queued-jobs or
        stored-bytes limit already, rather than after receiving and storing its upload."""
        quota = self.settings.quota_for(owner)
        if quota.max_queued_jobs or quota.max_stored_bytes:
            self._refuse_past_limits(Job(id="", input_blob="", owner=owner), recorded=False)

    def _refuse_past_limits(self, job: Job, recorded: bool) -> None:
        """``recorded``: the job is in the store already (the listings count it), else it is one
        still to come (of unknown size)."""
        quota = self.settings.quota_for(job.owner)
        try:
            self._check_queued(job, quota, also=0 if recorded else 1)
            self._check_stored_bytes(job, quota, room_needed=0 if recorded else 1)
            if job.kind is JobKind.STREAM:
                self._check_stream_hours(job, quota)
        except (QuotaExceeded, RequestExceedsQuota) as refused:
            label = metrics.owner_label(job.owner, self.settings.metrics_tenant_labels)
            metrics.QUOTA_REFUSALS.labels(quota=refused.quota, owner=label).inc()
            raise

    def _check_queued(self, job: Job, quota: Quota, also: int) -> None:
        limit = quota.max_queued_jobs
        if limit and count_jobs(self.jobs, job.owner, JobStatus.QUEUED, limit + 1) + also > limit:
            raise QuotaExceeded(
                f"tenant {job.owner!r} has {limit} jobs waiting for a worker already, its limit "
                "(QUOTA_MAX_QUEUED_JOBS); submit again once one has started", RETRY_AFTER_S, "queued_jobs")

    def _check_stored_bytes(self, job: Job, quota: Quota, room_needed: int) -> None:
        limit = quota.max_stored_bytes
        if not limit:
            return
        stored = sum(other.size_bytes for other in owner_jobs(self.jobs, job.owner))  # this job's included
        if stored + room_needed > limit:
            holding = f"{stored} bytes with this job" if room_needed == 0 else f"{stored} bytes already"
            raise RequestExceedsQuota(
                f"tenant {job.owner!r} may keep {limit} bytes of input in storage (QUOTA_MAX_STORED_BYTES); "
                f"its jobs hold {holding}: delete finished jobs to make room", "stored_bytes")

    def _check_stream_hours(self, job: Job, quota: Quota) -> None:
        limit_s = quota.max_stream_hours * HOUR_S
        if not limit_s:
            return
        now = utcnow()
        own = booked_stream_s(job, self.settings, now)
        if own > limit_s:
            wanted = "no end" if math.isinf(own) else f"{own / HOUR_S:.2f} h"
            raise RequestExceedsQuota(
                f"this stream books {wanted}; tenant {job.owner!r} may book {quota.max_stream_hours:g} h of "
                "streaming at once (QUOTA_MAX_STREAM_HOURS): give a shorter duration_s or an earlier end_at",
                "stream_hours")
        others = [other for status in (JobStatus.QUEUED, JobStatus.PROCESSING)
                  for other in owner_jobs(self.jobs, job.owner, status)
                  if other.kind is JobKind.STREAM and other.id != job.id]
        booked = {other.id: booked_stream_s(other, self.settings, now) for other in others}
        if sum(booked.values()) + own <= limit_s:
            return
        running = [booked[other.id] for other in others if other.status is JobStatus.PROCESSING]
        waiting = sum(booked[other.id] for other in others if other.status is not JobStatus.PROCESSING)
        raise QuotaExceeded(
            f"tenant {job.owner!r} has {_hours(sum(booked.values()))} of streaming booked; with this stream's "
            f"{_hours(own)} that passes its limit of {quota.max_stream_hours:g} h (QUOTA_MAX_STREAM_HOURS)",
            _wait_for_room(running, waiting + own, limit_s), "stream_hours")

    def at_processing_limit(self, job: Job) -> bool:
        """Whether ``job``'s tenant runs as many jobs as it may (the worker then hands it back)."""
        limit = self.settings.quota_for(job.owner).max_processing_jobs
        return bool(limit) and count_jobs(self.jobs, job.owner, JobStatus.PROCESSING, limit) >= limit


def _wait_for_room(running_s: list[float], fixed_s: float, limit_s: float) -> float:
    """Seconds until the running streams, whose booked time counts down (``running_s``), leave
    room for ``fixed_s`` under ``limit_s``; RETRY_AFTER_S if they never do (one has no end, or
    the queued streams alone fill the limit)."""
    ends = sorted(running_s)
    start = 0.0
    for index, end in enumerate(ends):
        if math.isinf(end):
            break
        active = ends[index:]  # the streams still running from ``start`` on
        over = sum(active) - len(active) * start + fixed_s - limit_s
        if over <= 0:
            return start
        room_at = start + over / len(active)  # the booked total falls by len(active) s a second
        if room_at <= end:
            return room_at
        start = end
    return RETRY_AFTER_S


def _hours(seconds: float) -> str:
    return "streams with no end" if math.isinf(seconds) else f"{seconds / HOUR_S:.2f} h"
