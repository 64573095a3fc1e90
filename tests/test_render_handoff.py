"""A video's rendering pass needs no model, so the worker takes its next job meanwhile
(``worker.runner.ModelSlots``): a real in-process ``Worker`` with WORKER_CONCURRENCY=1 on the
real local backend and the tiny model, whose inference calls are timed where they happen."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from core.backends import build_backends
from core.jobs import Job, JobMessage, JobStatus, input_blob_path, new_job_id, output_blob_path
from core.outputs import ANNOTATED_VIDEO
from ml_engine.detector import Detector
from tests.fixtures_video import write_clip
from tests.waiting import wait_until
from worker.models import DetectorCache
from worker.runner import ModelSlots
from worker.service import Worker

JOBS_TIMEOUT_S = 240  # two 12 s clips with the tiny model on two busy cores


class InferenceLog:
    """Loads the real detector and notes when each of its inference calls starts (UTC)."""

    def __init__(self) -> None:
        self.started: list[datetime] = []
        self._lock = threading.Lock()

    def load(self, *args, **kwargs) -> Detector:
        detector = Detector.load(*args, **kwargs)
        for name in ("detect", "detect_views"):
            setattr(detector, name, self._timed(getattr(detector, name)))
        return detector

    def _timed(self, call: Callable) -> Callable:
        def timed(*args, **kwargs):
            with self._lock:
                self.started.append(datetime.now(UTC))
            return call(*args, **kwargs)
        return timed


@pytest.fixture
def long_clip(tmp_path):
    """12 s of 320x240 at 10 fps: a rendering pass long enough to overlap, even on a loaded machine."""
    return write_clip(tmp_path / "long.mp4", frames=120)


def queue_video(backends, clip) -> str:
    job_id = new_job_id()
    backends.blobs.upload_file(input_blob_path(job_id), clip)
    backends.jobs.create(Job(id=job_id, input_blob=input_blob_path(job_id)))
    backends.queue.send(JobMessage(job_id=job_id, input_blob=input_blob_path(job_id)).encode())
    return job_id


@pytest.fixture
def worker_with_two_videos(make_settings, tiny_rtdetr_dir, long_clip):
    """A worker (not started) with two video jobs queued, and the log of its model's calls."""
    settings = make_settings("local", model_id=str(tiny_rtdetr_dir), worker_concurrency=1, poll_interval_s=0.1,
                             shutdown_grace_s=JOBS_TIMEOUT_S)
    backends = build_backends(settings)
    calls = InferenceLog()
    jobs = [queue_video(backends, long_clip), queue_video(backends, long_clip)]
    worker = Worker(settings, backends, DetectorCache(settings, loader=calls.load))
    yield worker, backends, jobs, calls
    worker.stop_now()
    worker.join(timeout=60)
    worker.close()
    backends.close()


def in_start_order(backends, jobs: list[str]) -> list[Job]:
    records = [backends.jobs.get(job_id) for job_id in jobs]
    return sorted(records, key=lambda job: job.started_at or datetime.max.replace(tzinfo=UTC))


def test_the_next_job_is_counted_while_a_video_is_rendered(worker_with_two_videos):
    """Fails without the hand-off: with one job thread, the second job starts once the first
    has completed, so no inference call falls inside the first one's rendering."""
    worker, backends, jobs, calls = worker_with_two_videos
    worker.start(burst=True)
    assert worker.join(timeout=JOBS_TIMEOUT_S), "the worker did not finish its two jobs"
    first, second = in_start_order(backends, jobs)
    assert first.status is second.status is JobStatus.COMPLETED, (first.error, second.error)
    assert second.started_at < first.finished_at  # taken while the first was still being rendered
    # and counted then: the model ran for the second job before the first one's video was done
    assert [t for t in calls.started if second.started_at < t < first.finished_at]
    for job in (first, second):  # both videos whole: nothing was cut short
        assert backends.blobs.info(output_blob_path(job.id, ANNOTATED_VIDEO)).size > 0


def test_a_shutdown_lets_the_render_in_flight_finish(worker_with_two_videos):
    worker, backends, jobs, _ = worker_with_two_videos
    worker.start()
    wait_until(lambda: sum(backends.jobs.get(job_id).started_at is not None for job_id in jobs) == 2,
               JOBS_TIMEOUT_S, "the second job to start while the first renders")
    first, _ = in_start_order(backends, jobs)
    rendering_when_asked = not first.status.is_final
    worker.request_shutdown()  # no new jobs; the running ones get SHUTDOWN_GRACE_S
    assert worker.join(timeout=JOBS_TIMEOUT_S), "the worker did not stop"
    first, second = in_start_order(backends, jobs)
    assert rendering_when_asked, "the first job had completed before the second one started"
    assert first.status is second.status is JobStatus.COMPLETED, (first.error, second.error)
    assert backends.blobs.info(output_blob_path(first.id, ANNOTATED_VIDEO)).size > 0


def test_a_job_that_has_counted_keeps_its_model_slot_until_a_render_slot_is_free() -> None:
    """One slot of each: while the first job renders, the second, counted, waits to render
    holding its model slot, so a third job cannot start; all three go on once the first ends."""
    slots, stop = ModelSlots(1), threading.Event()
    assert slots.take(stop, 0.01)
    slots.counted()  # the first job renders: its model slot goes to the next job
    second_counting, second_rendering, third_started = threading.Event(), threading.Event(), threading.Event()

    def second_job() -> None:
        slots.take(stop, 0.01)
        second_counting.set()
        slots.counted()
        second_rendering.set()
        slots.give_back()

    def third_job() -> None:
        if slots.take(stop, 0.01):
            third_started.set()
            slots.give_back()

    threads = [threading.Thread(target=second_job), threading.Thread(target=third_job)]
    threads[0].start()
    assert second_counting.wait(5)
    threads[1].start()
    assert not second_rendering.wait(0.3) and not third_started.is_set()
    slots.give_back()  # the first job has ended
    assert second_rendering.wait(5) and third_started.wait(5)
    for thread in threads:
        thread.join(5)
    assert slots.take(stop, 0.01)  # every slot came back
