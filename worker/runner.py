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

The runner only receives, runs and settles: each kind of job runs in its processor
(worker/processors.py, worker/streams.py), and the record changes through the named
transitions of core/lifecycle.py.
"""

from __future__ import annotations

import functools
import json
import logging
import tempfile
import threading
import time
from collections.abc import Mapping
from datetime import timedelta
from enum import Enum
from pathlib import Path

from core import lifecycle, metrics
from core.backends import Backends, QueueMessage
from core.backends.outbox import WebhookEvent
from core.config import Settings
from core.errors import (
    DISK_ERRNOS,
    CattleCounterError,
    GaveUp,
    InvalidMessage,
    JobCancelled,
    LeaseLost,
    NotFound,
    NoUsableFiles,
)
from core.jobs import Job, JobError, JobKind, JobMessage, JobStatus
from core.lifecycle import TransitionRefused
from core.logging import job_context
from core.public_job import public_job
from core.quotas import QuotaKeeper
from core.scratch import check_writable
from core.webhooks import final_event
from worker.lease import LeaseKeeper
from worker.models import DetectorCache
from worker.processors import Finished, Processor, file_processors
from worker.progress import JobReporter, StopReason

log = logging.getLogger(__name__)

# Transient failures (storage down) retry for as long as they last; the pause between
# deliveries doubles up to this (Azure also caps a message's invisibility at 7 days).
MAX_RETRY_BACKOFF_S = 15 * 60
# A job whose tenant runs its QUOTA_MAX_PROCESSING_JOBS already stays hidden this long: short
# enough that it starts soon after a slot frees, long enough that a tenant with many queued
# jobs does not keep the workers busy handing them back instead of running others' jobs.
QUOTA_WAIT_S = 10.0


class ModelSlots:
    """Which job threads may use the model now: ``slots`` at once (WORKER_CONCURRENCY).

    A video job needs the model only for its counting pass; its rendering pass (decode, draw,
    encode: ``ml_engine.render``) needs none. So a job's thread hands its model slot on as its
    counting pass ends (``counted``), taking a render slot instead (as many of those), and the
    worker runs one job thread more than it has model slots: the next job's inference overlaps
    this job's rendering, and at most one job more than before is in the worker. Each thread
    still receives, runs and settles its own job, so its lease, progress, failure and shutdown
    are handled as for any job. A thread holding a render slot never waits for a model slot
    (``give_back`` returns both first), so no two threads wait on each other.
    """

    def __init__(self, slots: int) -> None:
        self._model = threading.Semaphore(slots)
        self._render = threading.Semaphore(slots)
        self._held = threading.local()  # this thread's: "model", "render"

    def take(self, stop: threading.Event, poll_s: float) -> bool:
        """Wait for a model slot for this thread; False once ``stop`` is set first."""
        while not stop.is_set():
            if self._model.acquire(timeout=poll_s):
                self._held.model = True
                return True
        return False

    def counted(self) -> None:
        """This thread's job is done with the model: once a render slot is free, its model slot
        goes to the next job."""
        if not getattr(self._held, "model", False):
            return
        self._render.acquire()
        self._held.render, self._held.model = True, False
        self._model.release()

    def give_back(self) -> None:
        """This thread's job has ended: whatever slot it holds goes back."""
        if getattr(self._held, "model", False):
            self._held.model = False
            self._model.release()
        if getattr(self._held, "render", False):
            self._held.render = False
            self._render.release()


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
        self.slots = ModelSlots(settings.worker_concurrency)
        # the kinds of job this runner's queue carries, each with what runs it (streams: their own)
        self.processors: Mapping[JobKind, Processor] = file_processors(settings, backends, detectors,
                                                                        self.scratch_dir, self.slots.counted)

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
        if job.kind not in self.processors:
            self._fail(job.id, InvalidMessage(f"a {job.kind.value} job's message came on a queue for "
                                              f"{', '.join(kind.value for kind in self.processors)} jobs"))
            return Outcome.POISON
        if self.quotas.at_processing_limit(job):
            log.info("tenant %r runs QUOTA_MAX_PROCESSING_JOBS jobs already: the job waits its turn", job.owner)
            self._hand_back(job.id)  # like a hand-back at shutdown: no failed attempt
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
        processor = self.processors[job.kind]
        started = time.monotonic()
        processor.busy.inc()
        try:
            finished = processor.run(job, reporter)
        except Exception as exc:
            if keeper.lost.is_set():  # another worker may be running the job: its record is not ours
                log.warning("attempt ended after its lease was lost (%s); leaving the job as it is", exc)
                return Outcome.LOST
            if isinstance(exc, JobCancelled):
                return self._stopped(job.id, reporter.stop_reason)
            return self._failed_attempt(job.id, exc, attempt)
        finally:
            processor.busy.dec()
        if keeper.lost.is_set():
            return Outcome.LOST  # another worker has the message; let it record the result
        self._complete(job.id, finished)
        if processor.duration is not None:
            processor.duration.observe(time.monotonic() - started)
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
        self._hand_back(job_id)  # like a hand-back at shutdown: no failed attempt
        return Outcome.RELEASE

    # --- job record transitions ------------------------------------------------------------

    def _start(self, job_id: str, delivery: int) -> Job:
        """Mark the job processing, unless it became final meanwhile (then returned as it is)."""
        try:
            job = self.backends.jobs.modify(job_id, functools.partial(lifecycle.start, delivery=delivery))
        except TransitionRefused as refused:
            return refused.job
        log.info("processing delivery %d (attempt limit %d)", delivery, self.settings.max_attempts)
        return job

    def _complete(self, job_id: str, finished: Finished) -> None:
        try:
            job = self.backends.jobs.modify(job_id, finished.ending(), event=_final_event)
        except TransitionRefused as refused:  # another worker has recorded its end meanwhile
            log.warning("the job was %s already; this run's result is not recorded", refused.job.status.value)
            return
        if job.status is JobStatus.FAILED:
            metrics.record_job_failure(NoUsableFiles(job.error.message if job.error else ""))
        else:
            metrics.JOBS_COMPLETED.inc()
        log.info("%s: %s", job.status.value, json.dumps(job.counts))
        self._ended(job)

    def _try_to_fail(self, job_id: str, error: BaseException) -> None:
        """Record the failure if the job store lets us; the message is poisoned either way."""
        try:
            self._fail(job_id, error)
        except Exception as exc:
            log.error("could not record the failure (%s); the job record stays unfinished", exc)

    def _fail(self, job_id: str, error: BaseException) -> None:
        code = getattr(error, "code", "internal_error")
        message = str(error) if isinstance(error, CattleCounterError) else f"unexpected error: {error}"
        failure = functools.partial(lifecycle.fail, error=JobError(code=code, message=message))
        try:
            job = self.backends.jobs.modify(job_id, failure, event=_final_event)
        except TransitionRefused as refused:
            log.warning("the job was %s already; not failed with %s: %s", refused.job.status.value, code, message)
            return
        metrics.record_job_failure(error)
        log.warning("failed: %s: %s", code, message)
        self._ended(job)

    def _stopped(self, job_id: str, reason: StopReason | None) -> Outcome:
        if reason is StopReason.LEASE_LOST:
            return Outcome.LOST
        if reason is StopReason.SHUTDOWN:
            log.info("worker shutting down: the job goes back to the queue and resumes elsewhere")
            self._hand_back(job_id)
            return Outcome.RELEASE
        try:
            job = self.backends.jobs.modify(job_id, lifecycle.cancel, event=_final_event)
        except TransitionRefused as refused:
            log.warning("the job was %s already; not cancelled", refused.job.status.value)
            return Outcome.DONE
        metrics.JOBS_CANCELLED.inc()
        log.info("cancelled by request")
        self._ended(job)
        return Outcome.DONE

    def _ended(self, job: Job) -> None:
        processor = self.processors.get(job.kind)
        if processor is not None:
            processor.ended(job.id)

    def _transient_failure(self, job_id: str, error: BaseException, attempt: int) -> Outcome:
        if attempt >= self.settings.max_attempts:
            self._fail(job_id, GaveUp(f"failed on all {attempt} attempts; last error: {error}"))
            return Outcome.POISON
        self._requeue(job_id, error)
        return Outcome.RETRY

    def _requeue(self, job_id: str, error: BaseException) -> None:
        """Back to queued after a failed attempt: another delivery (here or on another worker)
        will pick it up."""
        retry = JobError(code=getattr(error, "code", "internal_error"), message=f"will retry: {error}")
        self._modify_unless_final(job_id, functools.partial(lifecycle.requeue, error=retry))

    def _hand_back(self, job_id: str) -> None:
        """Back to queued with no failed attempt: a worker shutting down, its scratch folder
        failing, or the tenant at its quota of running jobs."""
        self._modify_unless_final(job_id, lifecycle.hand_back)

    def _modify_unless_final(self, job_id: str, transition: lifecycle.Transition) -> None:
        try:
            self.backends.jobs.modify(job_id, transition)
        except TransitionRefused as refused:  # it ended meanwhile (a DELETE): nothing to give back
            log.info("the job was %s already; it stays so", refused.job.status.value)

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


def _final_event(job: Job) -> WebhookEvent | None:
    """The webhook event of a job's final state, written with it (None without callback_url)."""
    return final_event(job, public_job(job))
