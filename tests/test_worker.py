"""The worker's settle logic in-process, over the real local backend's queue and job store:
malformed messages, redeliveries of finished jobs, attempts past the limit, transient
failures and lease renewal. (Real processes and real models: tests/test_service_e2e.py.)"""

from __future__ import annotations

import re
import threading
import time
from datetime import timedelta

import httpx
import pytest

from core.backends import Backends, build_backends
from core.errors import ConfigError, LeaseLost, ModelError, NotAVideo, StorageUnavailable
from core.jobs import (
    Job,
    JobKind,
    JobMessage,
    JobParams,
    JobStatus,
    TelemetryFile,
    Tracker,
    input_blob_path,
    new_job_id,
    telemetry_blob_path,
)
from core.metrics import start_metrics_server
from core.model_card import read_card
from core.tiling import TilingSetting
from ml_engine.pipeline import Progress
from tests.faults import FailingMethod
from tests.fixtures_telemetry import dji_srt
from tests.waiting import wait_until
from worker.job_settings import pipeline_config
from worker.lease import LeaseKeeper
from worker.models import DetectorCache
from worker.progress import JobReporter, StopReason
from worker.runner import JobRunner, Outcome
from worker.service import Worker
from worker.telemetry import flight_telemetry

LEASE = timedelta(seconds=30)


@pytest.fixture
def stores(make_settings):
    settings = make_settings("local", max_attempts=3, retry_backoff_s=0.2, lease_seconds=2.0,
                             lease_renew_seconds=0.5)
    backends = build_backends(settings)
    yield settings, backends
    backends.close()


class UnreachableModelStore:
    """A model loader that fails the way an unreachable model store does (transient)."""

    def __call__(self, *args, **kwargs):
        raise StorageUnavailable("model store unreachable")


def make_runner(settings, backends, loader=None) -> JobRunner:
    return JobRunner(settings, backends, DetectorCache(settings, loader=loader), threading.Event())


def queue_job(backends, **fields) -> Job:
    job_id = new_job_id()
    backends.blobs.upload_stream(input_blob_path(job_id), [b"video bytes"])
    job = backends.jobs.create(Job(id=job_id, input_blob=input_blob_path(job_id), **fields))
    backends.queue.send(JobMessage(job_id=job_id, input_blob=job.input_blob).encode())
    return job


def test_malformed_message_goes_to_the_poison_queue(stores):
    settings, backends = stores
    backends.queue.send("this is not json")
    outcome = make_runner(settings, backends).handle(backends.queue.receive(LEASE))
    assert outcome is Outcome.POISON
    assert backends.queue.peek_poison() == ["this is not json"]
    assert backends.queue.approximate_length() == 0


@pytest.mark.parametrize("body", [
    '{"v": 1, "job_id": "\\ud800", "input_blob": "jobs/x/input"}',  # no store can encode the id
    '{"v": 1, "job_id": "abc", "input_blob": "jobs/\\udfff/input"}',
    '{"v": 1, "job_id": "' + "a" * 100_000 + '", "input_blob": "jobs/x/input"}',
    '{"v": 1, "job_id": "../../etc", "input_blob": "jobs/x/input"}',
], ids=["surrogate-id", "surrogate-path", "huge-id", "path-id"])
def test_a_message_naming_an_impossible_job_is_poisoned_on_its_first_delivery(stores, body, caplog):
    settings, backends = stores
    backends.queue.send(body)
    message = backends.queue.receive(LEASE)
    assert message.dequeue_count == 1
    assert make_runner(settings, backends).handle(message) is Outcome.POISON
    assert backends.queue.peek_poison() == [body]
    assert backends.queue.approximate_length() == 0


def test_redelivered_message_of_a_finished_job_is_acknowledged_and_nothing_changes(stores):
    settings, backends = stores
    job = queue_job(backends)
    backends.jobs.modify(job.id, lambda j: setattr(j, "status", JobStatus.COMPLETED))
    before = backends.jobs.get(job.id)
    assert make_runner(settings, backends).handle(backends.queue.receive(LEASE)) is Outcome.DONE
    after = backends.jobs.get(job.id)
    assert after.etag == before.etag and after.attempts == 0
    assert backends.queue.approximate_length() == 0


def test_message_for_a_deleted_job_is_dropped(stores):
    settings, backends = stores
    job = queue_job(backends)
    backends.jobs.delete(job.id)
    assert make_runner(settings, backends).handle(backends.queue.receive(LEASE)) is Outcome.DONE
    assert backends.queue.approximate_length() == 0


def test_delivery_past_max_attempts_fails_the_job_and_poisons_the_message(stores):
    settings, backends = stores
    job = queue_job(backends)
    short = timedelta(milliseconds=200)
    for delivery in range(1, settings.max_attempts + 1):  # workers that died without settling
        message = wait_until(lambda: backends.queue.receive(short), 5, f"delivery {delivery}")
        assert message.dequeue_count == delivery
    message = wait_until(lambda: backends.queue.receive(LEASE), 5, "the last delivery")
    assert make_runner(settings, backends).handle(message) is Outcome.POISON
    failed = backends.jobs.get(job.id)
    assert failed.status is JobStatus.FAILED and failed.error.code == "max_attempts_exceeded"
    assert len(backends.queue.peek_poison()) == 1
    assert backends.queue.approximate_length() == 0


def test_transient_failure_requeues_with_backoff_then_gives_up(stores):
    settings, backends = stores
    job = queue_job(backends)
    runner = make_runner(settings, backends, UnreachableModelStore())
    outcomes = []
    for _ in range(settings.max_attempts):
        message = wait_until(lambda: backends.queue.receive(LEASE), 10, "the retried message")
        outcomes.append(runner.handle(message))
        if outcomes[-1] is Outcome.RETRY:
            record = backends.jobs.get(job.id)
            assert record.status is JobStatus.QUEUED and "will retry" in record.error.message
    assert outcomes == [Outcome.RETRY, Outcome.RETRY, Outcome.POISON]
    final = backends.jobs.get(job.id)
    assert final.status is JobStatus.FAILED and final.attempts == settings.max_attempts
    assert "model store unreachable" in final.error.message


def test_lease_keeper_renews_so_the_message_never_reappears(stores):
    settings, backends = stores
    queue_job(backends)
    message = backends.queue.receive(timedelta(seconds=1))
    with LeaseKeeper(backends.queue, message, lease_s=1.0, renew_every_s=0.3) as keeper:
        wait_until(lambda: keeper.message.pop_receipt != message.pop_receipt, 5, "a renewal")
        watch_until = time.monotonic() + 2.5  # observe well past the original 1 s lease
        while time.monotonic() < watch_until:
            assert backends.queue.receive(LEASE) is None, "the leased message was delivered again"
            time.sleep(0.1)
        assert not keeper.lost.is_set()
    backends.queue.complete(keeper.message)  # the newest receipt is the valid one
    assert backends.queue.approximate_length() == 0


def test_stale_receipt_after_renewal_cannot_complete(stores):
    settings, backends = stores
    queue_job(backends)
    message = backends.queue.receive(timedelta(seconds=5))
    renewed = backends.queue.extend_lease(message, timedelta(seconds=5))
    with pytest.raises(LeaseLost):
        backends.queue.complete(message)
    backends.queue.complete(renewed)


def test_pipeline_config_takes_the_jobs_params_and_the_settings_for_the_rest(make_settings):
    settings = make_settings("local", confidence_threshold=0.6, frame_stride=2, batch_size=2,
                             video_preset="ultrafast", video_crf=30, video_encoder="libx264")
    inherited = pipeline_config(JobParams(), settings)
    assert (inherited.detection.threshold, inherited.frame_stride, inherited.batch_size) == (0.6, 2, 2)
    assert (inherited.preset, inherited.crf, inherited.encoder) == ("ultrafast", 30, "libx264")
    detection = inherited.detection
    assert (detection.tiling, detection.full_frame, detection.tile_batch_size) == (TilingSetting("auto"), True, 64)
    own = pipeline_config(JobParams(threshold=0.3, frame_stride=5, tiling="960x540"), settings)
    assert (own.detection.threshold, own.frame_stride, own.detection.tiling.size) == (0.3, 5, (960, 540))
    assert (inherited.tracker, inherited.stitching) == (Tracker.BOTSORT, True)
    fixed_camera = make_settings("local", tracker="bytetrack", stitching=False)
    assert (pipeline_config(JobParams(), fixed_camera).tracker, pipeline_config(JobParams(), fixed_camera).stitching) \
        == ("bytetrack", False)
    drone = pipeline_config(JobParams(tracker="botsort", stitching=True), fixed_camera)
    assert (drone.tracker, drone.stitching) == ("botsort", True)


def test_loading_a_model_publishes_its_card_for_the_api(make_settings, tiny_rtdetr_dir):
    settings = make_settings("local", model_id=str(tiny_rtdetr_dir))
    backends = build_backends(settings)
    try:
        assert read_card(backends.blobs, settings.model_id) is None
        detector = DetectorCache(settings, backends.blobs).get()
        card = read_card(backends.blobs, settings.model_id)
        assert card is not None
        assert card.classes == detector.label_names() == ["cow", "sheep", "horse", "person"]
        assert card.random_weights is True and card.architecture == "rt_detr_v2" and card.device == "cpu"
        assert card.model_id == f"local:{tiny_rtdetr_dir.name}"  # never the server's path to it
    finally:
        backends.close()


def test_at_most_max_loaded_models_stay_loaded_least_recently_used_first(make_settings, tiny_rtdetr_dir,
                                                                         tiny_detr_dir):
    settings = make_settings("local", max_loaded_models=1)
    detectors = DetectorCache(settings)
    rtdetr = detectors.get(str(tiny_rtdetr_dir))
    assert detectors.get(str(tiny_rtdetr_dir)) is rtdetr  # loaded once
    detr = detectors.get(str(tiny_detr_dir))  # unloads the RT-DETR
    assert detectors.get(str(tiny_detr_dir)) is detr
    assert detectors.get(str(tiny_rtdetr_dir)) is not rtdetr  # loaded again

    two = DetectorCache(make_settings("local", max_loaded_models=2))
    first = two.get(str(tiny_rtdetr_dir))
    two.get(str(tiny_detr_dir))
    assert two.get(str(tiny_rtdetr_dir)) is first  # both fit


def make_reporter(backends, job_id: str) -> JobReporter:
    return JobReporter(backends.jobs, job_id, 0.0, threading.Event(), threading.Event(), clock=FakeClock())


class FakeClock:
    """Advances a second per reading, so every report and cancel check is due at once."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


def test_progress_of_a_video_with_no_known_frame_count_is_recorded_without_a_fraction(stores):
    _, backends = stores
    job = queue_job(backends, status=JobStatus.PROCESSING)
    reporter = make_reporter(backends, job.id)
    reporter.on_progress(Progress(frames_done=40, frames_total=None, fps=10.0, eta_s=None))
    stored = backends.jobs.get(job.id)
    assert (stored.frames_done, stored.frames_total, stored.fps, stored.progress) == (40, None, 10.0, 0.0)
    # counted to the end, the rendering pass still to come: half way (RENDER_SHARE)
    reporter.on_progress(Progress(frames_done=100, frames_total=100, fps=10.0, eta_s=5.0))
    assert backends.jobs.get(job.id).progress == 0.5
    reporter.on_progress(Progress(frames_done=100, frames_total=100, fps=10.0, eta_s=1.0, frames_rendered=80))
    assert backends.jobs.get(job.id).progress == 0.9


def test_a_job_another_worker_finished_stops_this_run(stores):
    _, backends = stores
    job = queue_job(backends, status=JobStatus.PROCESSING)
    reporter = make_reporter(backends, job.id)
    assert not reporter.should_cancel()
    backends.jobs.modify(job.id, lambda record: setattr(record, "status", JobStatus.COMPLETED))
    assert reporter.should_cancel() and reporter.stop_reason is StopReason.LEASE_LOST


def test_lease_keeper_that_cannot_renew_reports_the_lease_lost_once_it_has_expired(stores):
    _, backends = stores
    queue_job(backends)
    message = backends.queue.receive(timedelta(seconds=1))
    # renewing fails the way a revoked credential does: neither LeaseLost nor StorageUnavailable
    refusing_renewals = FailingMethod(backends.queue, "extend_lease",
                                      ConfigError("the storage account refused the credential (403)"))
    started = time.monotonic()
    with LeaseKeeper(refusing_renewals, message, lease_s=1.0, renew_every_s=0.1) as keeper:
        wait_until(keeper.lost.is_set, 10, "the keeper to give the lease up")
        assert time.monotonic() - started >= 1.0  # not before the lease could have run out


def deliver(backends, times: int):
    """Receive the job's message ``times`` times (releasing it in between); returns the last."""
    for _ in range(times - 1):
        backends.queue.release(backends.queue.receive(LEASE))
    return backends.queue.receive(LEASE)


def test_hand_backs_at_shutdown_are_not_counted_as_failed_attempts(stores):
    settings, backends = stores  # MAX_ATTEMPTS 3
    job = queue_job(backends)
    runner = make_runner(settings, backends, UnreachableModelStore())
    for _ in range(3):  # three rolling restarts caught the job mid-run
        message = backends.queue.receive(LEASE)
        runner._stopped(job.id, StopReason.SHUTDOWN)
        backends.queue.release(message)
    assert backends.jobs.get(job.id).handed_back == 3

    message = backends.queue.receive(LEASE)
    assert message.dequeue_count == 4
    assert runner.handle(message) is Outcome.RETRY  # the first real failure, not "all 3 attempts failed"
    record = backends.jobs.get(job.id)
    assert record.status is JobStatus.QUEUED and record.error.code == "storage_unavailable"


def test_job_store_down_on_the_last_delivery_retries_rather_than_poisoning(stores):
    settings, backends = stores
    job = queue_job(backends)
    table_down = FailingMethod(backends.jobs, "get", StorageUnavailable("job table unreachable"))
    down = Backends(blobs=backends.blobs, queue=backends.queue, jobs=table_down, outbox=backends.outbox,
                    stream_queue=backends.stream_queue)
    message = deliver(backends, settings.max_attempts)
    assert make_runner(settings, down).handle(message) is Outcome.RETRY
    assert backends.queue.peek_poison() == []

    # storage is back: the next delivery is past the limit and fails the job for good
    assert backends.jobs.get(job.id).status is JobStatus.QUEUED
    again = wait_until(lambda: backends.queue.receive(LEASE), 10, "the message to come back after its backoff")
    assert make_runner(settings, backends).handle(again) is Outcome.POISON
    record = backends.jobs.get(job.id)
    assert record.status is JobStatus.FAILED and record.error.code == "max_attempts_exceeded"


# --- robustness: nothing ends a job thread silently -------------------------------------------------


@pytest.mark.parametrize("body", ["[" * 5000 + "]" * 5000, '{"job_id":' * 5000, "\x00\xff", "[]", "null"])
def test_any_unparseable_message_goes_to_the_poison_queue(stores, body):
    settings, backends = stores
    backends.queue.send(body)
    assert make_runner(settings, backends).handle(backends.queue.receive(LEASE)) is Outcome.POISON
    assert backends.queue.peek_poison() == [body]
    assert backends.queue.approximate_length() == 0


class Bug(Exception):
    """An error no code path expects (a bug), unlike the project's typed errors."""


def test_an_unexpected_error_in_the_bookkeeping_is_settled_and_does_not_raise(stores):
    settings, backends = stores
    job = queue_job(backends)
    buggy = Backends(blobs=backends.blobs, queue=backends.queue, outbox=backends.outbox,
                     jobs=FailingMethod(backends.jobs, "modify", Bug("a bug in modify")),
                     stream_queue=backends.stream_queue)
    assert make_runner(settings, buggy).handle(backends.queue.receive(LEASE)) is Outcome.RETRY
    # the message comes back after its backoff, and then the job runs normally
    assert backends.queue.receive(LEASE) is None
    wait_until(lambda: backends.queue.receive(LEASE), 10, "the message to come back after its backoff")
    assert backends.jobs.get(job.id).status is JobStatus.QUEUED


class ThreadKilled(BaseException):
    """Escapes every ``except Exception``: the one way left for a job thread to end."""


def test_a_job_thread_that_dies_turns_the_workers_health_red(stores):
    settings, backends = stores
    dying = Backends(blobs=backends.blobs, jobs=backends.jobs, outbox=backends.outbox,
                     queue=FailingMethod(backends.queue, "receive", ThreadKilled("killed")),
                     stream_queue=backends.stream_queue)
    worker = Worker(settings, dying, DetectorCache(settings))
    server = start_metrics_server(0, host="127.0.0.1", health_check=worker.healthy)
    try:
        assert httpx.get(f"http://127.0.0.1:{server.port}/health").status_code == 200
        worker.start()
        assert worker.join(timeout=10), "the job thread should have ended"
        assert re.search(r"job-loop-\d died", worker.problem) and "ThreadKilled" in worker.problem
        assert httpx.get(f"http://127.0.0.1:{server.port}/health").status_code == 503
    finally:
        server.stop()
        worker.close()


def test_a_broken_scratch_folder_hands_the_job_back_and_the_worker_takes_no_more(stores, tmp_path):
    settings, backends = stores
    scratch = tmp_path / "scratch"
    scratch.write_text("the folder was replaced by a file")  # as if the disk had gone away
    job = queue_job(backends)
    worker = Worker(settings, backends, DetectorCache(settings), scratch_dir=scratch)
    worker.start()
    assert worker.join(timeout=30), "the worker should stop taking work"
    assert "scratch folder" in worker.problem and not worker.healthy()
    record = backends.jobs.get(job.id)
    assert record.status is JobStatus.QUEUED and record.error is None  # not the job's fault
    assert record.handed_back == 1  # so it is no failed attempt
    again = wait_until(lambda: backends.queue.receive(LEASE), 5, "the message, handed back at once")
    assert JobMessage.decode(again.body).job_id == job.id


def test_a_model_that_loads_but_cannot_run_fails_the_job_with_a_model_error(make_settings, small_clip,
                                                                            mismatched_checkpoint_dir):
    settings = make_settings("local", model_id=str(mismatched_checkpoint_dir), max_attempts=3)
    backends = build_backends(settings)
    try:
        job = queue_job_with_video(backends, small_clip)
        assert make_runner(settings, backends).handle(backends.queue.receive(LEASE)) is Outcome.DONE
        record = backends.jobs.get(job.id)
        assert record.status is JobStatus.FAILED and record.attempts == 1  # at once: retrying cannot help
        assert record.error.code == "model_error"
        assert str(mismatched_checkpoint_dir) in record.error.message and "config.json" in record.error.message
    finally:
        backends.close()


def test_a_video_over_max_video_pixels_is_refused_by_the_worker(make_settings, small_clip, tiny_rtdetr_dir):
    # a direct upload or a message queued before the limit was lowered: the API never checked it
    settings = make_settings("local", model_id=str(tiny_rtdetr_dir), max_video_pixels=320 * 240 - 1)
    backends = build_backends(settings)
    try:
        job = queue_job_with_video(backends, small_clip)
        assert make_runner(settings, backends).handle(backends.queue.receive(LEASE)) is Outcome.DONE
        record = backends.jobs.get(job.id)
        assert record.status is JobStatus.FAILED and record.error.code == "video_too_large"
        assert "320x240" in record.error.message and "MAX_VIDEO_PIXELS" in record.error.message
    finally:
        backends.close()


def queue_job_with_video(backends, video) -> Job:
    job_id = new_job_id()
    backends.blobs.upload_file(input_blob_path(job_id), video)
    job = backends.jobs.create(Job(id=job_id, input_blob=input_blob_path(job_id)))
    backends.queue.send(JobMessage(job_id=job_id, input_blob=job.input_blob).encode())
    return job


def test_start_up_check_refuses_classes_the_model_does_not_know(make_settings, tiny_rtdetr_dir):
    settings = make_settings("local", model_id=str(tiny_rtdetr_dir), classes="cow,giraffe")
    with pytest.raises(ConfigError, match="CLASSES.*giraffe"):
        DetectorCache(settings).load_default()


def test_start_up_check_runs_the_model_once(make_settings, mismatched_checkpoint_dir):
    settings = make_settings("local", model_id=str(mismatched_checkpoint_dir))
    with pytest.raises(ModelError, match="failed to run"):
        DetectorCache(settings).load_default()


def test_a_late_failure_leaves_a_job_another_worker_completed_as_it_ended(stores):
    """A worker whose lease lapsed unnoticed records a failure after another worker completed
    the job: the job stays completed (the failure used to overwrite it)."""
    settings, backends = stores
    job = queue_job(backends)
    backends.jobs.modify(job.id, lambda j: setattr(j, "status", JobStatus.COMPLETED))
    make_runner(settings, backends)._fail(job.id, NotAVideo("no video stream"))  # noqa: SLF001 - the late write alone
    after = backends.jobs.get(job.id)
    assert (after.status, after.error) == (JobStatus.COMPLETED, None)


def test_a_stream_jobs_message_on_the_file_queue_fails_the_job_with_a_clear_error(stores):
    """Each queue's runner runs the kinds its processors know: a stream is not run as a video."""
    settings, backends = stores
    job = queue_job(backends, kind=JobKind.STREAM)
    assert make_runner(settings, backends).handle(backends.queue.receive(LEASE)) is Outcome.POISON
    failed = backends.jobs.get(job.id)
    assert (failed.status, failed.error.code) == (JobStatus.FAILED, "invalid_message")
    assert "a stream job's message came on a queue for video, images jobs" in failed.error.message


def test_a_jobs_telemetry_is_read_for_the_engine_and_never_fails_it(stores, small_clip, tmp_path):
    """The .SRT the API stored beside the video, read and checked against the video; one that is
    gone from storage or cut short still gives a Telemetry that says what went wrong."""
    _, backends = stores
    job_id = new_job_id()
    stored = TelemetryFile(blob=telemetry_blob_path(job_id), filename="DJI_0001.SRT")
    job = Job(id=job_id, input_blob=input_blob_path(job_id), telemetry=stored)
    assert flight_telemetry(job.model_copy(update={"telemetry": None}), backends.blobs, tmp_path, small_clip) is None

    gone = flight_telemetry(job, backends.blobs, tmp_path, small_clip)
    assert gone is not None and gone.samples == [] and gone.source == "DJI_0001.SRT"
    assert gone.problems == ["the telemetry file is no longer in storage"]

    backends.blobs.upload_stream(stored.blob, [dji_srt(frames=20, fps=10.0).encode()])  # the clip: 20 frames
    whole = flight_telemetry(job, backends.blobs, tmp_path, small_clip)
    assert whole is not None and len(whole.samples) == 20 and whole.problems == []
    config = pipeline_config(JobParams(), stores[0], whole)
    assert config.telemetry is whole  # what process_video is handed

    backends.blobs.upload_stream(stored.blob, [dji_srt(frames=15, fps=10.0).encode()])
    short = flight_telemetry(job, backends.blobs, tmp_path, small_clip)
    assert short is not None and short.problems == [
        "the telemetry has 15 records for 20 video frames: records are matched to frames by time"]
