"""core/lifecycle.py: the named transitions of a job record and the table of those allowed.

Each transition is tried from every status: allowed, it leads to a status its row names;
refused, it raises TransitionRefused and leaves the record as it was. Through the real local
job store, a refused transition writes nothing.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest

from core import lifecycle
from core.backends import build_backends
from core.backends.outbox import FINAL_SEQUENCE
from core.jobs import Job, JobError, JobKind, JobStatus, LiveInfo
from core.lifecycle import ALLOWED, TransitionRefused

FINAL = [status for status in JobStatus if status.is_final]
RESULTS = lifecycle.Results({"stats.json": "jobs/j/outputs/stats.json"}, {"total_unique": 3},
                            lifecycle.FramesCounted(90))

# every transition with arguments, as the worker and the API apply them
TRANSITIONS: dict[str, lifecycle.Transition] = {
    "request_cancel": lifecycle.request_cancel,
    "start": functools.partial(lifecycle.start, delivery=2),
    "progress": functools.partial(lifecycle.progress, report=lifecycle.FileProgress(1, 0, 4)),
    "complete": functools.partial(lifecycle.complete, results=RESULTS),
    "complete_with_errors": functools.partial(lifecycle.complete_with_errors, results=RESULTS),
    "fail": functools.partial(lifecycle.fail, error=JobError(code="not_a_video", message="no video stream")),
    "cancel": lifecycle.cancel,
    "requeue": functools.partial(lifecycle.requeue, error=JobError(code="storage_unavailable", message="will retry")),
    "hand_back": lifecycle.hand_back,
}


def a_job(status: JobStatus, kind: JobKind = JobKind.VIDEO, job_id: str = "0000lifecycle00000000000000",
          **fields: Any) -> Job:
    return Job(id=job_id, kind=kind, input_blob="jobs/j/input", status=status, **fields)


def test_every_transition_has_a_row_and_a_function():
    assert set(TRANSITIONS) == set(ALLOWED)


def test_no_row_starts_from_a_final_status():
    assert not [name for name, row in ALLOWED.items() if set(row) & set(FINAL)]


@pytest.mark.parametrize("name", sorted(ALLOWED))
@pytest.mark.parametrize("status", list(JobStatus))
def test_each_transition_from_each_status(name: str, status: JobStatus):
    job = a_job(status)
    before = job.model_dump()
    if status in ALLOWED[name]:
        assert TRANSITIONS[name](job) is True
        assert job.status in ALLOWED[name][status], (name, status, job.status)
    else:
        with pytest.raises(TransitionRefused) as refused:
            TRANSITIONS[name](job)
        assert job.model_dump() == before  # nothing changed
        assert refused.value.job is job
        assert f"is {status.value}: {name} is allowed only from" in str(refused.value)


@pytest.mark.parametrize("final", FINAL)
def test_a_final_job_stays_final_whatever_is_asked(final: JobStatus):
    for name, transition in TRANSITIONS.items():
        job = a_job(final)
        with pytest.raises(TransitionRefused):
            transition(job)
        assert job.status is final, name


def test_a_refused_transition_writes_nothing_to_the_store(make_settings):
    backends = build_backends(make_settings("local"))
    try:
        job = backends.jobs.create(a_job(JobStatus.COMPLETED, outputs={"stats.json": "jobs/j/outputs/stats.json"}))
        for name, transition in TRANSITIONS.items():
            with pytest.raises(TransitionRefused):
                backends.jobs.modify(job.id, transition)
            stored = backends.jobs.get(job.id)
            assert (stored.status, stored.etag, stored.outputs) == (JobStatus.COMPLETED, job.etag, job.outputs), name
        started = backends.jobs.modify(backends.jobs.create(a_job(JobStatus.QUEUED, kind=JobKind.IMAGES, job_id="0000queued")).id,
                                       TRANSITIONS["start"])
        assert backends.jobs.get(started.id).status is JobStatus.PROCESSING
    finally:
        backends.close()


# --- what each transition writes -------------------------------------------------------------


def test_request_cancel_cancels_a_queued_job_and_flags_a_running_one():
    queued, running = a_job(JobStatus.QUEUED), a_job(JobStatus.PROCESSING)
    assert lifecycle.request_cancel(queued) and lifecycle.request_cancel(running)
    assert (queued.status, queued.cancel_requested, queued.finished_at is not None) == (JobStatus.CANCELLED, True, True)
    assert (running.status, running.cancel_requested) == (JobStatus.PROCESSING, True)
    assert lifecycle.request_cancel(running) is False  # asked again: nothing to write


def test_a_handed_back_file_job_asked_to_cancel_again_is_cancelled_at_once():
    """Flagged while it ran, then handed back by a worker shutting down: queued, flagged."""
    job = a_job(JobStatus.QUEUED, cancel_requested=True, started_at=datetime.now(UTC))
    assert lifecycle.request_cancel(job) is True
    assert job.status is JobStatus.CANCELLED


def test_a_stream_waiting_for_its_next_run_stays_queued_flagged():
    job = a_job(JobStatus.QUEUED, kind=JobKind.STREAM, started_at=datetime.now(UTC))
    assert lifecycle.request_cancel(job) is True
    assert (job.status, job.cancel_requested) == (JobStatus.QUEUED, True)
    assert lifecycle.request_cancel(job) is False
    never_ran = a_job(JobStatus.QUEUED, kind=JobKind.STREAM)
    lifecycle.request_cancel(never_ran)
    assert never_ran.status is JobStatus.CANCELLED


def test_start_counts_the_delivery_and_clears_the_last_attempts_figures():
    job = a_job(JobStatus.QUEUED, progress=0.4, frames_done=50, error=JobError(code="x", message="will retry: x"))
    lifecycle.start(job, delivery=3)
    assert (job.status, job.attempts, job.progress, job.frames_done, job.error) == (JobStatus.PROCESSING, 3, 0, 0, None)
    first_start = job.started_at
    lifecycle.start(job, delivery=4)  # redelivered after a worker died: its first start stands
    assert job.started_at == first_start and job.attempts == 4


def test_requeue_keeps_the_error_and_hand_back_counts_no_failed_attempt():
    retried, handed = a_job(JobStatus.PROCESSING, fps=12.0), a_job(JobStatus.PROCESSING, eta_seconds=3.0)
    lifecycle.requeue(retried, JobError(code="storage_unavailable", message="will retry: down"))
    lifecycle.hand_back(handed)
    assert (retried.status, retried.fps, retried.error.code, retried.handed_back) == \
        (JobStatus.QUEUED, None, "storage_unavailable", 0)
    assert (handed.status, handed.eta_seconds, handed.handed_back) == (JobStatus.QUEUED, None, 1)


def test_complete_records_the_results_and_the_kinds_final_figures():
    job = a_job(JobStatus.PROCESSING, frames_total=100, counts={"total_unique": 1})
    lifecycle.complete(job, RESULTS)
    assert (job.status, job.progress, job.eta_seconds, job.frames_done, job.frames_total) == \
        (JobStatus.COMPLETED, 1.0, 0.0, 90, 90)
    assert job.outputs == RESULTS.outputs and job.counts == {"total_unique": 3} and job.finished_at is not None
    kept = a_job(JobStatus.PROCESSING, counts={"total_unique": 1})
    lifecycle.complete(kept, lifecycle.Results({}, None, lifecycle.StreamStopped()))
    assert kept.counts == {"total_unique": 1} and kept.live == LiveInfo(connected=False)


def test_an_images_job_whose_every_file_failed_fails_with_its_results():
    job = a_job(JobStatus.PROCESSING, kind=JobKind.IMAGES, tiles_total=4)
    results = lifecycle.Results({"results.jsonl": "jobs/j/outputs/results.jsonl"}, None, lifecycle.FilesCounted(0, 3))
    lifecycle.fail(job, JobError(code="no_usable_files", message="all 3 files failed"), results)
    assert (job.status, job.files_total, job.files_failed, job.tiles_total, job.progress) == \
        (JobStatus.FAILED, 3, 3, None, 1.0)
    assert job.results_ready  # its results.jsonl says why for each file


def test_fail_without_results_keeps_no_eta():
    job = a_job(JobStatus.PROCESSING, eta_seconds=10.0, progress=0.5)
    lifecycle.fail(job, JobError(code="not_a_video", message="no video stream"))
    assert (job.status, job.eta_seconds, job.progress, job.error.code) == (JobStatus.FAILED, None, 0.5, "not_a_video")


# --- the figures a running job reports ---------------------------------------------------------


@dataclass(frozen=True)
class Frames:
    frames_done: int = 40
    frames_total: int | None = 100
    fps: float = 12.345
    eta_s: float | None = 4.44
    fraction: float | None = 0.4


def test_frame_progress_stops_short_of_done_until_the_outputs_are_stored():
    job = a_job(JobStatus.PROCESSING)
    lifecycle.progress(job, lifecycle.FrameProgress(Frames(fraction=1.0)))
    assert (job.frames_done, job.fps, job.eta_seconds, job.progress) == (40, 12.35, 4.4, 0.99)


def test_file_progress_counts_the_raster_in_progress_for_its_share():
    job = a_job(JobStatus.PROCESSING, kind=JobKind.IMAGES)
    lifecycle.progress(job, lifecycle.FileProgress(done=1, failed=0, total=4, tiles_done=1, tiles_total=2))
    assert job.progress == pytest.approx(1.5 / 4)


def test_event_webhooks_past_their_numbers_are_counted_as_not_sent():
    job = a_job(JobStatus.PROCESSING, kind=JobKind.STREAM, live=LiveInfo(events_sent=FINAL_SEQUENCE - 1))
    report = lifecycle.EventsSent(7)
    lifecycle.progress(job, report)
    assert (report.unsent, job.live.events_unsent, job.live.events_sent) == (7, 7, FINAL_SEQUENCE - 1)
    sending = a_job(JobStatus.PROCESSING, kind=JobKind.STREAM)
    report = lifecycle.EventsSent(7)
    lifecycle.progress(sending, report)
    assert (report.unsent, sending.live.events_sent) == (0, 1)
