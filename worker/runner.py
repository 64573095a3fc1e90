"""Processing one queue delivery: receive → run → settle.

At-least-once delivery is made safe here:
- the attempt is counted on the job before any work (a crash still counts);
- a redelivered message for a job that is already final is acknowledged and dropped;
- outputs go to the job's own blob paths, so a retry overwrites instead of duplicating;
- the message is deleted only after the outputs are stored and the record says completed;
- permanent errors fail the job at once; transient ones come back after a backoff, and
  after MAX_ATTEMPTS deliveries the job fails and the message goes to the poison queue
  (deliveries a shutting-down worker handed back do not count);
- when the job store itself is unreachable nothing can be recorded, so the message just
  comes back later, however many deliveries that takes;
- a failure of the worker's own scratch folder (disk full, folder gone) is not the job's:
  the job is handed back (no attempt counted) and the worker takes no more work;
- an unexpected error anywhere in here is logged and the message settled like a transient
  failure: nothing ends the job thread.
"""

from __future__ import annotations

import json
import logging
import tempfile
import threading
import time
from datetime import timedelta
from enum import Enum
from pathlib import Path
from typing import Any

from core import metrics
from core.backends import Backends, QueueMessage
from core.backends.outbox import WebhookEvent
from core.config import Settings
from core.errors import (
    DISK_ERRNOS,
    CattleCounterError,
    GaveUp,
    InputChanged,
    InvalidMessage,
    JobCancelled,
    LeaseLost,
    NotFound,
    NoUsableFiles,
)
from core.jobs import Job, JobError, JobKind, JobMessage, JobStatus, LiveInfo, output_blob_path, utcnow
from core.logging import job_context
from core.outputs import media_type
from core.public_job import public_job
from core.quotas import QuotaKeeper
from core.scratch import check_writable
from core.webhooks import final_event
from ml_engine.pipeline import process_video
from worker.images import process_images
from worker.job_settings import pipeline_config
from worker.lease import LeaseKeeper
from worker.models import DetectorCache
from worker.progress import JobReporter, StopReason

log = logging.getLogger(__name__)

# Transient failures (storage down) retry for as long as they last; the pause between
# deliveries doubles up to this (Azure also caps a message's invisibility at 7 days).
MAX_RETRY_BACKOFF_S = 15 * 60
# A job whose tenant runs its QUOTA_MAX_PROCESSING_JOBS already stays hidden this long: short
# enough that it starts soon after a slot frees, long enough that a tenant with many queued
# jobs does not keep the workers busy handing them back instead of running others' jobs.
QUOTA_WAIT_S = 10.0


class Outcome(str, Enum):
    DONE = "done"  # delete the message
    RETRY = "retry"  # hide it for a backoff, then it comes back
    POISON = "poison"  # move it to the poison queue
    RELEASE = "release"  # make it visible again now (shutting down)
    LATER = "later"  # hide it for QUOTA_WAIT_S, no failed attempt: its tenant runs its quota of jobs
    LOST = "lost"  # the lease is gone; the message is not ours to touch


class JobRunner:
    def __init__(
        self,
        settings: Settings,
        backends: Backends,
        detectors: DetectorCache,
        shutting_down: threading.Event,
        scratch_dir: Path | None = None,
    ) -> None:
        """``scratch_dir``: where jobs unpack (this process's own folder, see core.scratch);
        default WORK_DIR, else the system temp folder."""
        self.settings = settings
        self.backends = backends
        self.detectors = detectors
        self.shutting_down = shutting_down
        self.scratch_dir = scratch_dir or settings.work_dir or Path(tempfile.gettempdir())
        self.scratch_problem: str | None = None  # set once the scratch folder fails: take no more work
        self.queue = backends.queue  # the queue this runner's messages come from (streams: their own)
        self.queue_depth = metrics.QUEUE_DEPTH
        self.quotas = QuotaKeeper(settings, backends.jobs)

    # --- receive ---------------------------------------------------------------------

    def handle(self, message: QueueMessage) -> Outcome:
        """Process one delivery and settle its message. Never raises for a job's own failure."""
        try:
            job_message = JobMessage.decode(message.body)
        except InvalidMessage as exc:
            log.error("%s; moving message %s to the poison queue", exc, message.id)
            self._settle(message, Outcome.POISON, 0)
            return Outcome.POISON
        with job_context(job_message.job_id, attempt=message.dequeue_count):
            with LeaseKeeper(self.queue, message, self.settings.lease_seconds,
                             self.settings.lease_renew_seconds) as keeper:
                outcome = self._attempt(job_message, message.dequeue_count, keeper)
            self._settle(keeper.message, outcome, message.dequeue_count)
            return outcome

    def _attempt(self, job_message: JobMessage, delivery: int, keeper: LeaseKeeper) -> Outcome:
        try:
            return self._run(job_message, delivery, keeper)
        except CattleCounterError as exc:  # the bookkeeping itself failed (storage down, ...)
            log.warning("attempt %d could not be recorded: %s", delivery, exc)
            if exc.transient or delivery < self.settings.max_attempts:
                # once storage answers again, a later delivery records the outcome (and fails
                # the job past MAX_ATTEMPTS): poisoning now would leave the record unfinished
                return Outcome.RETRY
            self._try_to_fail(job_message.job_id, exc)
            return Outcome.POISON
        except Exception as exc:  # a bug in the bookkeeping: it must not end the job thread
            log.exception("attempt %d failed unexpectedly", delivery)
            if delivery < self.settings.max_attempts:
                return Outcome.RETRY
            self._try_to_fail(job_message.job_id, exc)
            return Outcome.POISON

    # --- run -----------------------------------------------------------------------------

    def _run(self, job_message: JobMessage, delivery: int, keeper: LeaseKeeper) -> Outcome:
        try:
            job = self.backends.jobs.get(job_message.job_id)
        except NotFound:
            log.warning("job record is gone (deleted?); dropping its message")
            return Outcome.DONE
        if job.status.is_final:
            log.info("job is already %s; redelivered message acknowledged", job.status.value)
            self._notify_if_cancelled_while_queued(job)
            return Outcome.DONE
        attempt = delivery - job.handed_back  # hand-backs at shutdown are not failed attempts
        if attempt > self.settings.max_attempts:
            self._fail(job.id, GaveUp(f"the job failed on all {self.settings.max_attempts} attempts "
                                      f"(the last one stopped without recording why)"))
            return Outcome.POISON
        if self.quotas.at_processing_limit(job):
            log.info("tenant %r runs QUOTA_MAX_PROCESSING_JOBS jobs already: the job waits its turn", job.owner)
            self._requeue(job.id, None)  # like a hand-back at shutdown: no failed attempt
            metrics.QUOTA_HAND_BACKS.inc()
            return Outcome.LATER
        job = self._start(job.id, delivery)
        if job.status.is_final:
            log.info("job was %s before it started", job.status.value)
            self._notify_if_cancelled_while_queued(job)
            return Outcome.DONE
        return self._process_and_record(job, attempt, keeper)

    def _notify_if_cancelled_while_queued(self, job: Job) -> None:
        """The API cancels a queued job itself; its webhook event is written here, when the
        message comes up (its id is derived from the job, so a redelivery adds no second one).
        A run cancelled mid-way writes it with its final state, in ``_stopped``."""
        if job.status is JobStatus.CANCELLED and job.started_at is None:
            event = _final_event(job)
            if event is not None:
                self.backends.outbox.add(event)

    def _process_and_record(self, job: Job, attempt: int, keeper: LeaseKeeper) -> Outcome:
        reporter = JobReporter(self.backends.jobs, job.id, self.settings.progress_interval_s,
                               keeper.lost, self.shutting_down)
        started = time.monotonic()
        metrics.JOBS_IN_PROGRESS.inc()
        try:
            stats, outputs = self._process(job, reporter)
        except JobCancelled:
            return self._stopped(job.id, reporter.stop_reason)
        except Exception as exc:
            if keeper.lost.is_set():  # another worker may be running the job: its record is not ours
                log.warning("attempt ended after its lease was lost (%s); leaving the job as it is", exc)
                return Outcome.LOST
            return self._failed_attempt(job.id, exc, attempt)
        finally:
            metrics.JOBS_IN_PROGRESS.dec()
        if keeper.lost.is_set():
            return Outcome.LOST  # another worker has the message; let it record the result
        self._complete(job.id, stats, outputs)
        metrics.JOB_PROCESSING_SECONDS.observe(time.monotonic() - started)
        return Outcome.DONE

    def _failed_attempt(self, job_id: str, error: Exception, attempt: int) -> Outcome:
        if self._scratch_at_fault(error):
            return self._hand_back_for_scratch(job_id, error)
        if not isinstance(error, CattleCounterError):  # a bug or an unexpected library error
            log.error("unexpected error while processing", exc_info=error)
            return self._transient_failure(job_id, error, attempt)
        if error.transient:
            return self._transient_failure(job_id, error, attempt)
        self._fail(job_id, error)
        return Outcome.DONE

    def _scratch_at_fault(self, error: Exception) -> bool:
        """Whether the worker's scratch folder, not the job, caused ``error``: a disk error
        (full, read-only, failing), or any error once the folder no longer takes a write
        (storage wraps a failed write of the download in a StorageError, for instance)."""
        if isinstance(error, OSError) and error.errno in DISK_ERRNOS:
            return True
        try:
            check_writable(self.scratch_dir)
        except OSError:
            return True
        return False

    def _hand_back_for_scratch(self, job_id: str, error: Exception) -> Outcome:
        self.scratch_problem = f"the scratch folder {self.scratch_dir} failed ({error})"
        log.error("%s: the job goes back to the queue for another worker and this worker takes no more "
                  "work; check WORK_DIR's disk", self.scratch_problem)
        self._requeue(job_id, None)  # like a hand-back at shutdown: no failed attempt
        return Outcome.RELEASE

    def _process(self, job: Job, reporter: JobReporter) -> tuple[dict[str, Any], dict[str, str]]:
        # ignore_cleanup_errors: when the scratch folder fails, the error that says so is
        # the one to keep, not a second one from removing the folder
        with tempfile.TemporaryDirectory(prefix=f"job-{job.id}-", dir=self.scratch_dir,
                                         ignore_cleanup_errors=True) as work:
            if job.kind is JobKind.IMAGES:
                detector = self.detectors.get(job.params.model_id)
                return process_images(job, self.backends, detector, self.settings, Path(work), reporter)
            video = Path(work) / "input"
            downloaded = self.backends.blobs.download_to_file(job.input_blob, video)
            if job.input_etag is not None and downloaded.etag != job.input_etag:
                raise InputChanged("the uploaded video was replaced after it was checked; "
                                   "upload it again as a new job")
            if reporter.should_cancel():
                raise JobCancelled()
            detector = self.detectors.get(job.params.model_id)
            result = process_video(
                video, Path(work) / "outputs", detector, pipeline_config(job.params, self.settings),
                progress=reporter.on_progress, should_cancel=reporter.should_cancel,
            )
            for name, path in result.crops.items():  # stored by name, not listed: one per counted animal
                self.backends.blobs.upload_file(output_blob_path(job.id, name), path, media_type(name))
            outputs = {}
            for path in result.outputs.values():
                blob = output_blob_path(job.id, path.name)
                self.backends.blobs.upload_file(blob, path, media_type(path.name))
                outputs[path.name] = blob
            return result.stats, outputs

    # --- job record transitions ------------------------------------------------------------

    def _start(self, job_id: str, delivery: int) -> Job:
        """Mark the job processing, unless it became final meanwhile (then returned as it is)."""

        def apply(job: Job) -> bool:
            if job.status.is_final:
                return False
            job.status = JobStatus.PROCESSING
            job.attempts = delivery
            job.started_at = job.started_at or utcnow()
            job.progress, job.frames_done, job.error = 0.0, 0, None
            return True

        job = self.backends.jobs.modify(job_id, apply)
        if not job.status.is_final:
            log.info("processing delivery %d (attempt limit %d)", delivery, self.settings.max_attempts)
        return job

    def _complete(self, job_id: str, stats: dict[str, Any], outputs: dict[str, str]) -> None:
        def apply(job: Job) -> None:
            job.status = JobStatus.COMPLETED
            job.progress = 1.0
            if job.kind is JobKind.IMAGES:
                _settle_images(job, stats)
            elif job.kind is JobKind.STREAM:
                job.live = _final_live(job.live)  # its frames are counted in job.live as it ran
            else:
                # the exact count (the last progress report may have been throttled, and the
                # total was an estimate when the container did not say)
                job.frames_done = job.frames_total = stats["video"]["frames"]
            job.eta_seconds = 0.0
            job.outputs = outputs
            job.counts = stats.get("counts", job.counts)
            job.finished_at = utcnow()

        job = self.backends.jobs.modify(job_id, apply, event=_final_event)
        if job.status is JobStatus.FAILED:
            metrics.record_job_failure(NoUsableFiles(job.error.message if job.error else ""))
        else:
            metrics.JOBS_COMPLETED.inc()
        log.info("%s: %s", job.status.value, json.dumps(job.counts))

    def _try_to_fail(self, job_id: str, error: BaseException) -> None:
        """Record the failure if the job store lets us; the message is poisoned either way."""
        try:
            self._fail(job_id, error)
        except Exception as exc:
            log.error("could not record the failure (%s); the job record stays unfinished", exc)

    def _fail(self, job_id: str, error: BaseException) -> None:
        code = getattr(error, "code", "internal_error")
        message = str(error) if isinstance(error, CattleCounterError) else f"unexpected error: {error}"

        def apply(job: Job) -> None:
            job.status = JobStatus.FAILED
            job.error = JobError(code=code, message=message)
            job.finished_at = utcnow()
            job.eta_seconds = None

        self.backends.jobs.modify(job_id, apply, event=_final_event)
        metrics.record_job_failure(error)
        log.warning("failed: %s: %s", code, message)

    def _stopped(self, job_id: str, reason: StopReason | None) -> Outcome:
        if reason is StopReason.LEASE_LOST:
            return Outcome.LOST
        if reason is StopReason.SHUTDOWN:
            self._requeue(job_id, None)
            return Outcome.RELEASE

        def apply(job: Job) -> None:
            job.status = JobStatus.CANCELLED
            job.finished_at = utcnow()
            job.eta_seconds = None

        self.backends.jobs.modify(job_id, apply, event=_final_event)
        metrics.JOBS_CANCELLED.inc()
        log.info("cancelled by request")
        return Outcome.DONE

    def _transient_failure(self, job_id: str, error: BaseException, attempt: int) -> Outcome:
        if attempt >= self.settings.max_attempts:
            self._fail(job_id, GaveUp(f"failed on all {attempt} attempts; last error: {error}"))
            return Outcome.POISON
        self._requeue(job_id, error)
        return Outcome.RETRY

    def _requeue(self, job_id: str, error: BaseException | None) -> None:
        """Back to queued: another delivery (here or on another worker) will pick it up.
        ``error`` None: handed back by a worker shutting down, which is no failed attempt."""

        def apply(job: Job) -> bool:
            if job.status.is_final:
                return False
            job.status = JobStatus.QUEUED
            job.fps, job.eta_seconds = None, None
            if error is None:
                job.handed_back += 1
            else:
                job.error = JobError(code=getattr(error, "code", "internal_error"), message=f"will retry: {error}")
            return True

        self.backends.jobs.modify(job_id, apply)

    # --- settle ------------------------------------------------------------------------

    def _retry_backoff_s(self, delivery: int) -> float:
        """How long a retried message stays hidden: doubling with each delivery, up to the cap."""
        return min(self.settings.retry_backoff_s * 2 ** max(0, delivery - 1), MAX_RETRY_BACKOFF_S)

    def _settle(self, message: QueueMessage, outcome: Outcome, delivery: int) -> None:
        queue = self.queue
        try:
            if outcome is Outcome.DONE:
                queue.complete(message)
            elif outcome is Outcome.POISON:
                queue.move_to_poison(message)
                metrics.JOBS_POISONED.inc()
            elif outcome is Outcome.RETRY:
                queue.extend_lease(message, timedelta(seconds=self._retry_backoff_s(delivery)))
                metrics.JOBS_RETRIED.inc()
            elif outcome is Outcome.RELEASE:
                queue.release(message)
            elif outcome is Outcome.LATER:
                queue.extend_lease(message, timedelta(seconds=QUOTA_WAIT_S))
        except LeaseLost:
            log.warning("lease lost before the message could be settled (%s)", outcome.value)
        except CattleCounterError as exc:  # the lease will expire and the message come back
            log.warning("could not settle message (%s): %s", outcome.value, exc)


def _settle_images(job: Job, stats: dict[str, Any]) -> None:
    """An images job's final status, from its files: every file good is ``completed``; some
    failed is ``completed_with_errors`` (the good ones' results stand); all failed is
    ``failed`` (its results.jsonl still lists each file's error)."""
    images = stats.get("images", {})
    job.files_failed = int(images.get("failed", 0))
    job.files_done = int(images.get("total", 0)) - job.files_failed
    job.files_total = job.files_done + job.files_failed
    job.tiles_done, job.tiles_total = 0, None
    if job.files_failed and not job.files_done:
        job.status = JobStatus.FAILED
        first = stats.get("failed", [{}])[0].get("error") or {}
        job.error = JobError(code=NoUsableFiles.code, message=f"all {job.files_failed} files failed; the first: "
                             f"{first.get('message', 'see results.jsonl')}")
    elif job.files_failed:
        job.status = JobStatus.COMPLETED_WITH_ERRORS


def _final_live(live: LiveInfo | None) -> LiveInfo:
    """A stopped stream is no longer connected; everything else stays as its last report said."""
    live = live.model_copy() if live is not None else LiveInfo()
    live.connected = False
    return live


def _final_event(job: Job) -> WebhookEvent | None:
    """The webhook event of a job's final state, written with it (None without callback_url)."""
    return final_event(job, public_job(job))
