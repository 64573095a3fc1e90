"""The service side of a running stream (worker/streams.py's StreamSession) over the real local
backend, fed the engine's callbacks directly: the live record (small, gaps capped), uploads and
retired segments, the resume state, the attempts rule, DELETE noticed, and event webhooks
written to the outbox in order; storage blips survived, the record read on the run's thread only,
Prometheus fed only what a run adds. (A real camera through real processes: test_streams_e2e.py.)"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from core import metrics
from core.backends import Backends, build_backends
from core.backends.outbox import FINAL_SEQUENCE
from core.errors import InvalidInput, StorageError, StorageUnavailable
from core.jobs import (
    MAX_STREAM_GAPS_SHOWN,
    Job,
    JobKind,
    JobMessage,
    JobParams,
    JobStatus,
    LiveInfo,
    StreamOptions,
    output_blob_path,
    source_secret_path,
    stream_state_path,
)
from core.outputs import LIVE_PLAYLIST, WINDOWS
from ml_engine.live.state import StreamState
from tests.faults import FailingMethod
from tests.fixtures_rtsp import SilentServer
from tests.waiting import wait_until
from worker.models import DetectorCache
from worker.progress import JobReporter
from worker.runner import JobRunner, Outcome
from worker.streams import StreamProcessor, StreamRunner, StreamSession, stream_config


@dataclass
class Status:  # the engine's LiveStatus, field for field
    counts: dict = field(default_factory=lambda: {"total_unique": 2, "by_class": {"cow": 2}})
    frames_received: int = 100
    frames_processed: int = 60
    frames_dropped: int = 40
    latency_p50_s: float | None = 0.2
    latency_p95_s: float | None = 0.5
    latencies_s: list = field(default_factory=lambda: [0.2, 0.5])
    gaps: list = field(default_factory=list)
    reconnects: int = 0
    streaming_s: float = 12.0
    connected: bool = True
    latency_from: str | None = "capture"


@dataclass
class Event:  # the engine's CountEvent
    kind: str = "line_crossing"
    name: str = "gate"
    direction: str | None = "in"
    class_name: str = "cow"
    track_id: int = 1
    at: str = "2026-12-01T08:00:00+00:00"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def stores(make_settings):
    settings = make_settings("local", stream_stable_after_s=600, stream_event_cooldown_s=30,
                             stream_events_per_minute=2, progress_interval_s=0.1)
    backends = build_backends(settings)
    yield settings, backends
    backends.close()


def processing_stream(backends, events: bool = False, attempts: int = 3) -> Job:
    params = JobParams(callback_url="http://127.0.0.1:9/hook" if events else None)
    job = Job(id="0000stream" + "0" * 16, kind=JobKind.STREAM, input_blob=source_secret_path("x"), params=params,
              stream=StreamOptions(events=events), status=JobStatus.PROCESSING, attempts=attempts)
    return backends.jobs.create(job)


def stored_state(backends, job) -> StreamState | None:
    return StreamState.from_json(b"".join(backends.blobs.open_range(stream_state_path(job.id))))


def session_for(settings, backends, job, clock=None, **options) -> StreamSession:
    reporter = JobReporter(backends.jobs, job.id, 0.1, threading.Event(), threading.Event())
    session = StreamSession(settings, backends, job, reporter, clock or Clock(), **options)
    session.begin()
    return session


def test_status_reports_go_to_the_record_small_with_the_newest_gaps(stores):
    settings, backends = stores
    job = processing_stream(backends)
    session = session_for(settings, backends, job)
    for number in range(30):
        gap = {"from": f"2026-12-01T08:{number:02d}:00Z", "to": f"2026-12-01T08:{number:02d}:05Z", "reason": "stall"}
        session.on_status(Status(gaps=[gap], reconnects=number + 1))
    stored = backends.jobs.get(job.id)
    assert stored.counts == {"total_unique": 2, "by_class": {"cow": 2}}
    live = stored.live
    assert live.connected and live.frames_dropped == 40 and live.latency_p95_s == 0.5 and live.reconnects == 30
    assert live.latency_from == "capture"
    assert live.gaps_total == 30 and len(live.gaps) == MAX_STREAM_GAPS_SHOWN
    assert live.gaps[-1]["from"] == "2026-12-01T08:29:00Z"  # the newest kept
    assert live.stream_started_at is not None and live.run_started_at is not None
    assert len(stored.to_record()) < 8_000  # however long it runs


def test_files_are_uploaded_segments_retired_and_only_small_outputs_listed(stores, tmp_path: Path):
    settings, backends = stores
    job = processing_stream(backends)
    session = session_for(settings, backends, job)
    files = {}
    for name, text in ((WINDOWS, '{"window": 1}\n'), (LIVE_PLAYLIST, "#EXTM3U\nseg-000001.ts\n"),
                       ("live/seg-000001.ts", "TS1"), ("live/seg-000002.ts", "TS2")):
        path = tmp_path / name.replace("/", "_")
        path.write_text(text)
        files[name] = path
    session.on_files(files, [])
    session.on_files({}, ["live/seg-000001.ts"])  # past the retention
    assert not backends.blobs.exists(output_blob_path(job.id, "live/seg-000001.ts"))
    assert backends.blobs.exists(output_blob_path(job.id, "live/seg-000002.ts"))
    session.on_status(Status())
    assert set(backends.jobs.get(job.id).outputs) == {WINDOWS, LIVE_PLAYLIST}  # not the segments
    # the final upload skips the segments already stored, not the newer ones
    assert set(session.not_uploaded({**files, "live/seg-000003.ts": tmp_path / "x"})) == \
        {WINDOWS, LIVE_PLAYLIST, "live/seg-000003.ts"}


def test_every_window_stores_the_resume_state_and_shows_the_window(stores):
    settings, backends = stores
    job = processing_stream(backends)
    session = session_for(settings, backends, job)
    window = {"window": 4, "unique": 3, "by_class": {"cow": 3}}
    handed = StreamState(window=4, next_window=5, totals={"total_unique": 9})
    session.on_window(window, handed)
    assert stored_state(backends, job) == handed
    assert backends.jobs.get(job.id).live.last_window == window


def test_a_run_up_for_stream_stable_after_s_forgives_the_deliveries_before_it(stores):
    settings, backends = stores
    job = processing_stream(backends, attempts=3)  # the third delivery: MAX_ATTEMPTS is 3
    clock = Clock()
    session = session_for(settings, backends, job, clock)
    clock.now = 599
    session.on_status(Status())
    assert backends.jobs.get(job.id).handed_back == 0  # not yet: a death now still counts
    clock.now = 601
    session.on_status(Status())
    assert backends.jobs.get(job.id).handed_back == 3  # the next delivery is attempt 1 again


def test_delete_of_a_running_stream_makes_it_stop(stores):
    settings, backends = stores
    job = processing_stream(backends)
    session = session_for(settings, backends, job)
    assert session.should_stop() is False

    def cancel(job: Job) -> None:
        job.cancel_requested = True

    backends.jobs.modify(job.id, cancel)
    session.on_status(Status())
    assert session.should_stop() is True


def test_events_go_to_the_outbox_aggregated_in_order_before_the_final_webhook(stores):
    settings, backends = stores
    job = processing_stream(backends, events=True)
    clock = Clock()
    session = session_for(settings, backends, job, clock)
    for second in range(120):  # two minutes of a herd through the gate, reported every second
        session.on_event(Event(track_id=second))
        clock.now += 1
        session.on_status(Status())
    session.send_events(final=True)
    events = backends.outbox.events(job.id)
    assert 2 <= len(events) <= 6  # one at once, then one per cooldown: not 120
    assert [e.sequence for e in events] == list(range(1, len(events) + 1))
    assert all(e.sequence < FINAL_SEQUENCE and e.type == "stream.events" for e in events)
    summaries = [s for e in events for s in json.loads(e.body)["data"]["summaries"]]
    assert sum(s["events"] for s in summaries) == 120 and sum(s["in"]["cow"] for s in summaries) == 120
    assert backends.jobs.get(job.id).live.events_sent == len(events)


def test_no_event_webhooks_without_events_asked_for(stores):
    settings, backends = stores
    job = processing_stream(backends, events=False)
    session = session_for(settings, backends, job)
    session.on_event(Event())
    session.on_status(Status())
    session.send_events(final=True)
    assert backends.outbox.events(job.id) == []


def test_after_its_lease_is_lost_a_run_writes_nothing_more(stores, tmp_path: Path):
    """Another worker may be running the stream by then: the stopping engine's final files
    (a playlist that ends, stats.json) must not overwrite that worker's."""
    settings, backends = stores
    job = processing_stream(backends)
    lost = threading.Event()
    reporter = JobReporter(backends.jobs, job.id, 0.1, lost, threading.Event())
    session = StreamSession(settings, backends, job, reporter, Clock())
    lost.set()
    assert session.should_stop() is True
    playlist = tmp_path / "index.m3u8"
    playlist.write_text("#EXTM3U\n#EXT-X-ENDLIST\n")
    session.on_files({LIVE_PLAYLIST: playlist}, [])
    session.on_window({"window": 9}, StreamState(window=9, next_window=10))
    session.on_status(Status(frames_processed=999))
    assert not backends.blobs.exists(output_blob_path(job.id, LIVE_PLAYLIST))
    assert not backends.blobs.exists(stream_state_path(job.id))
    assert backends.jobs.get(job.id).live is None


@pytest.mark.parametrize(("asked", "cap", "expected"), [(None, None, None), (600, None, 600), (None, 3600, 3600),
                                                        (600, 3600, 600), (7200, 3600, 3600)])
def test_a_streams_duration_is_its_own_within_max_stream_seconds(make_settings, asked, cap, expected):
    settings = make_settings("local", max_stream_seconds=cap, stream_read_timeout_s=4, stream_connect_attempts=2)
    job = Job(id="x", kind=JobKind.STREAM, input_blob="x", stream=StreamOptions(duration_s=asked, window_s=30))
    config = stream_config(job, settings)
    assert config.duration_s == expected and config.window_s == 30
    assert config.source.read_timeout_s == 4 and config.source.first_connect_attempts == 2


def test_a_stream_stops_at_its_end_at(stores):
    settings, backends = stores
    job = processing_stream(backends)
    job.stream = StreamOptions(end_at=datetime.now(UTC) + timedelta(seconds=0.5))
    session = session_for(settings, backends, job)
    assert session.should_stop() is False
    wait_until(session.should_stop, 5, "end_at to pass")


def test_a_resume_keeps_only_the_windows_its_state_knows_of(stores, tmp_path: Path):
    """A worker killed between uploading windows.jsonl and storing the state: the resumed run
    writes that window again, so the copy it appends to must not hold it already."""
    settings, backends = stores
    job = processing_stream(backends)
    windows = "".join(json.dumps({"window": n, "unique": n}) + "\n" for n in (1, 2, 3)) + '{"window": 4, "uni'
    backends.blobs.upload_stream(output_blob_path(job.id, WINDOWS), [windows.encode()])
    backends.blobs.upload_stream(stream_state_path(job.id), [StreamState(window=2, next_window=3).to_json().encode()])
    job.outputs = {WINDOWS: output_blob_path(job.id, WINDOWS)}
    processor = StreamProcessor(settings, backends, DetectorCache(settings), tmp_path)
    state = processor._resume(job, tmp_path)  # noqa: SLF001 - the resume step alone, without a camera
    assert state == StreamState(window=2, next_window=3)
    kept = [json.loads(line)["window"] for line in (tmp_path / WINDOWS).read_text().splitlines()]
    assert kept == [1, 2]


def test_a_first_run_has_nothing_to_resume(stores, tmp_path: Path):
    settings, backends = stores
    job = processing_stream(backends)
    processor = StreamProcessor(settings, backends, DetectorCache(settings), tmp_path)
    assert processor._resume(job, tmp_path) is None  # noqa: SLF001
    assert not (tmp_path / WINDOWS).exists()


def test_a_state_of_another_version_is_refused_before_the_run_starts(stores, tmp_path: Path):
    """The engine and the service read a state through one StreamState: a state written by a
    newer worker fails the run with a clear error, instead of being misread."""
    settings, backends = stores
    job = processing_stream(backends)
    stored = {**StreamState(next_window=3).to_dict(), "version": 2}
    backends.blobs.upload_stream(stream_state_path(job.id), [json.dumps(stored).encode()])
    processor = StreamProcessor(settings, backends, DetectorCache(settings), tmp_path)
    with pytest.raises(InvalidInput, match="has version 2, this worker reads version 1"):
        processor._resume(job, tmp_path)  # noqa: SLF001


def blobs_failing(backends, method: str, error: Exception) -> Backends:
    """``backends`` with one blob method failing as an outage (or a refusal) does."""
    return Backends(blobs=FailingMethod(backends.blobs, method, error), queue=backends.queue, jobs=backends.jobs,
                    outbox=backends.outbox, stream_queue=backends.stream_queue)


def stream_files(tmp_path: Path) -> dict[str, Path]:
    files = {}
    for name, text in ((WINDOWS, '{"window": 1}\n'), (LIVE_PLAYLIST, "#EXTM3U\nseg-000001.ts\n"),
                       ("live/seg-000001.ts", "TS1")):
        path = tmp_path / name.replace("/", "_")
        path.write_text(text)
        files[name] = path
    return files


def test_a_storage_blip_leaves_the_files_and_state_pending_and_the_run_goes_on(stores, tmp_path: Path):
    settings, backends = stores
    job = processing_stream(backends)
    clock = Clock()
    session = session_for(settings, backends, job, clock)
    up = session.storage.backends
    session.storage.backends = blobs_failing(
        backends, "upload_file", StorageUnavailable("blob service unreachable"))
    session.on_files(stream_files(tmp_path), [])  # no error: the run goes on
    session.on_window({"window": 1}, StreamState(window=1, next_window=2))
    session.on_status(Status())
    assert list(backends.blobs.list(f"jobs/{job.id}/")) == []  # the state waits for the files it names
    clock.now = 120
    session.storage.backends = up  # storage is back: the next callback stores everything
    session.on_status(Status())
    for name in (WINDOWS, LIVE_PLAYLIST, "live/seg-000001.ts"):
        assert backends.blobs.exists(output_blob_path(job.id, name)), name
    assert stored_state(backends, job) == StreamState(window=1, next_window=2)
    session.on_status(Status())
    assert set(backends.jobs.get(job.id).outputs) == {WINDOWS, LIVE_PLAYLIST}


def test_storage_down_for_the_outage_limit_or_refusing_ends_the_run(stores, tmp_path: Path):
    settings, backends = stores
    job = processing_stream(backends)
    clock = Clock()
    session = session_for(settings, backends, job, clock, outage_limit_s=300)
    session.storage.backends = blobs_failing(
        backends, "upload_file", StorageUnavailable("blob service unreachable"))
    session.on_files(stream_files(tmp_path), [])
    clock.now = 299
    session.on_status(Status())
    clock.now = 300
    with pytest.raises(StorageUnavailable):  # the run ends: retried, it resumes from the last state
        session.on_status(Status())
    refused = session_for(settings, backends, job, Clock())
    refused.storage.backends = blobs_failing(
        backends, "upload_file", StorageError("the account refused the write (403)"))
    with pytest.raises(StorageError):  # not transient: no use waiting
        refused.on_files(stream_files(tmp_path), [])


def test_a_run_completes_only_with_its_final_files_stored(stores, tmp_path: Path):
    settings, backends = stores
    job = processing_stream(backends)
    session = session_for(settings, backends, job)
    session.storage.backends = blobs_failing(
        backends, "upload_file", StorageUnavailable("blob service unreachable"))
    with pytest.raises(StorageUnavailable, match="final files"):
        session.store_final(stream_files(tmp_path))


def test_a_retried_stream_comes_back_soon_however_many_deliveries_it_has_had(stores, tmp_path: Path):
    """A stream that has run for weeks has had many deliveries (hand-backs, forgiven runs): its
    retry must not wait the 15 minutes a file job's ninth delivery would."""
    settings, backends = stores
    settings = settings.model_copy(update={"retry_backoff_s": 0.2})
    backends.stream_queue.send(JobMessage(job_id="j", input_blob="x").encode())
    for _ in range(8):
        backends.stream_queue.release(backends.stream_queue.receive(timedelta(seconds=30)))
    message = backends.stream_queue.receive(timedelta(seconds=30))
    assert message.dequeue_count == 9
    runner = StreamRunner(settings, backends, DetectorCache(settings), threading.Event(), tmp_path)
    runner._settle(message, Outcome.RETRY, message.dequeue_count)  # noqa: SLF001
    wait_until(lambda: backends.stream_queue.receive(timedelta(seconds=30)) is not None, 10, "the stream's retry")
    files = JobRunner(settings, backends, DetectorCache(settings), threading.Event(), tmp_path)
    assert files._retry_backoff_s(9) == pytest.approx(0.2 * 2 ** 8)  # noqa: SLF001 - file jobs unchanged


def test_only_the_runs_own_thread_reads_the_record_to_decide_a_stop(stores):
    """The engine's decode thread asking must never wait on the job store (a slow read stalls
    the camera's packets): it gets the flag the run's thread sets."""
    settings, backends = stores
    job = processing_stream(backends)
    session = session_for(settings, backends, job)

    def cancel(job: Job) -> None:
        job.cancel_requested = True

    backends.jobs.modify(job.id, cancel)
    answers: list[bool] = []

    def ask_from_another_thread() -> None:
        answers.append(session.should_stop())

    def asked_from_another_thread() -> bool:
        thread = threading.Thread(target=ask_from_another_thread)
        thread.start()
        thread.join()
        return answers[-1]

    wait_until(lambda: session.reporter._clock() - session.reporter._last_cancel_check >= 0.1, 5,  # noqa: SLF001
               "the reporter's next record check to be due")
    assert asked_from_another_thread() is False  # the record says stop, but it is not read there
    assert session.should_stop() is True  # the run's thread reads it, and sets the flag
    assert asked_from_another_thread() is True and session.stop.is_set()


def test_a_stream_deleted_between_two_runs_stops_from_the_start(stores):
    settings, backends = stores
    job = processing_stream(backends)
    job.cancel_requested = True
    session = StreamSession(settings, backends, job,
                            JobReporter(backends.jobs, job.id, 60, threading.Event(), threading.Event()), Clock())
    answers: list[bool] = []
    thread = threading.Thread(target=lambda: answers.append(session.should_stop()))
    thread.start()
    thread.join()
    assert answers == [True] and session.should_stop() is True  # the engine's source never connects


def sample(name: str) -> float:
    return metrics.REGISTRY.get_sample_value(name) or 0.0


def test_a_resumed_run_feeds_prometheus_only_what_it_adds(stores):
    settings, backends = stores
    job = processing_stream(backends)
    session = session_for(settings, backends, job, resume=StreamState(frames_dropped=400, reconnects=7))
    dropped, reconnects = (sample("cattlecounter_stream_frames_dropped_total"),
                           sample("cattlecounter_stream_reconnects_total"))
    session.on_status(Status(frames_dropped=403, reconnects=8))  # the totals include the earlier runs
    assert sample("cattlecounter_stream_frames_dropped_total") - dropped == pytest.approx(3)
    assert sample("cattlecounter_stream_reconnects_total") - reconnects == pytest.approx(1)


def test_a_resume_reads_windows_jsonl_even_before_the_record_listed_it(stores, tmp_path: Path):
    """Killed in window 1 between storing the state and writing the record: window 1 is kept."""
    settings, backends = stores
    job = processing_stream(backends)
    backends.blobs.upload_stream(output_blob_path(job.id, WINDOWS), [b'{"window": 1, "unique": 4}\n'])
    backends.blobs.upload_stream(stream_state_path(job.id), [StreamState(window=1, next_window=2).to_json().encode()])
    assert WINDOWS not in job.outputs
    processor = StreamProcessor(settings, backends, DetectorCache(settings), tmp_path)
    assert processor._resume(job, tmp_path) == StreamState(window=1, next_window=2)  # noqa: SLF001
    assert [json.loads(line)["window"] for line in (tmp_path / WINDOWS).read_text().splitlines()] == [1]


def test_a_stream_out_of_event_numbers_says_so_in_its_record_and_metrics(stores):
    settings, backends = stores
    job = processing_stream(backends, events=True)

    def nearly_out(job: Job) -> None:
        job.live = LiveInfo(events_sent=FINAL_SEQUENCE - 1)

    job = backends.jobs.modify(job.id, nearly_out)
    session = session_for(settings, backends, job)
    before = sample("cattlecounter_stream_events_unsent_total")
    for track in range(3):
        session.on_event(Event(track_id=track))
    session.send_events(final=True)
    assert backends.outbox.events(job.id) == []  # the final webhook stays the job's last
    live = backends.jobs.get(job.id).live
    assert live.events_unsent == 3 and live.events_sent == FINAL_SEQUENCE - 1
    assert sample("cattlecounter_stream_events_unsent_total") - before == pytest.approx(3)


def test_the_next_worker_finalises_a_stream_deleted_between_two_runs(make_settings, tiny_rtdetr_dir, tmp_path: Path):
    """DELETE left it queued and flagged (test_streams_api.py): the worker that takes its
    message stops at once, without connecting, and completes it with final outputs."""
    settings = make_settings("local", model_id=str(tiny_rtdetr_dir), stream_allowed_networks=[])
    backends = build_backends(settings)
    job_id = "0000stopped" + "0" * 15
    job = Job(id=job_id, kind=JobKind.STREAM, input_blob=source_secret_path(job_id), status=JobStatus.QUEUED,
              params=JobParams(model_id=str(tiny_rtdetr_dir)), stream=StreamOptions(window_s=60),
              started_at=datetime.now(UTC) - timedelta(hours=3), cancel_requested=True, handed_back=1, attempts=1)
    backends.jobs.create(job)
    # the camera is on a network the worker no longer allows: a stopping stream never connects
    backends.blobs.upload_stream(source_secret_path(job_id), [b"rtsp://viewer:pw@10.1.2.3:554/cam"])
    backends.blobs.upload_stream(output_blob_path(job_id, WINDOWS), [b'{"window": 1, "unique": 4}\n'])
    saved_at = time.time() - 60
    # as a hand-back stores it: window 2 unfinished (one cow so far), carried to the next run
    state = {"version": 1, "saved_at_s": saved_at, "next_window": 2, "streaming_s": 10800.0,
             "totals": {"total_unique": 4, "by_class": {"cow": 4}},
             "open_window": {"number": 2, "started_at": saved_at - 30, "length_s": 60, "unique": 1,
                             "by_class": {"cow": 1}}}
    backends.blobs.upload_stream(stream_state_path(job_id), [json.dumps(state).encode()])
    backends.stream_queue.send(JobMessage(job_id=job_id, input_blob=source_secret_path(job_id)).encode())
    runner = StreamRunner(settings, backends, DetectorCache(settings), threading.Event(), tmp_path)
    started = time.monotonic()
    assert runner.handle(backends.stream_queue.receive(timedelta(seconds=30))) is Outcome.DONE
    assert time.monotonic() - started < 30  # at once: no connection attempts, no stream to wait for
    done = backends.jobs.get(job_id)
    assert done.status is JobStatus.COMPLETED and done.counts["total_unique"] == 4, done
    stats = json.loads(b"".join(backends.blobs.open_range(done.outputs["stats.json"])))
    assert stats["counts"]["total_unique"] == 4 and stats["streaming_s"] >= 10800
    windows = b"".join(backends.blobs.open_range(done.outputs[WINDOWS])).decode().splitlines()
    closed = [json.loads(line) for line in windows]
    assert [w["window"] for w in closed] == [1, 2] and closed[1]["unique"] == 1  # the carried window, as it was
    assert not backends.blobs.exists(source_secret_path(job_id))
    assert backends.stream_queue.receive(timedelta(seconds=1)) is None
    backends.close()


@pytest.mark.parametrize("ends", ["duration_s", "end_at"])
def test_a_source_that_never_answers_fails_the_stream_instead_of_completing_it(
        make_settings, tiny_rtdetr_dir, silent_server: SilentServer, tmp_path: Path, ends: str):
    """A camera that accepts the connection and never answers, and a duration_s (or an end_at)
    that comes before the connect attempts are spent. Fails without the fix: the job ended
    ``completed`` when duration_s ran out (or end_at came), with no frame and no error, and its
    gaps answered 409."""
    settings = make_settings("local", model_id=str(tiny_rtdetr_dir), stream_allowed_networks=["127.0.0.1/32"],
                             stream_connect_attempts=1, stream_read_timeout_s=1.0)
    backends = build_backends(settings)
    detectors = DetectorCache(settings)
    detectors.get(str(tiny_rtdetr_dir))  # loaded first, as in a warm worker: the end time is the connect's
    job_id = "0000silent" + "0" * 16
    # end_at half-way through the connect attempt's 10 s: it comes after the worker has connected
    # even when a loaded machine delays the connect by seconds, and well before the attempt times out
    end_in_5_s = {"duration_s": 5, "end_at": datetime.now(UTC) + timedelta(seconds=5)}
    backends.jobs.create(Job(id=job_id, kind=JobKind.STREAM, input_blob=source_secret_path(job_id),
                             status=JobStatus.QUEUED, params=JobParams(model_id=str(tiny_rtdetr_dir)),
                             stream=StreamOptions(window_s=60, **{ends: end_in_5_s[ends]})))
    backends.blobs.upload_stream(source_secret_path(job_id), [silent_server.url("rtsp").encode()])
    backends.stream_queue.send(JobMessage(job_id=job_id, input_blob=source_secret_path(job_id)).encode())
    runner = StreamRunner(settings, backends, detectors, threading.Event(), tmp_path)
    try:
        assert runner.handle(backends.stream_queue.receive(timedelta(seconds=60))) is Outcome.DONE
        failed = backends.jobs.get(job_id)
        assert failed.status is JobStatus.FAILED, failed
        assert failed.error.code == "stream_unavailable", failed.error
        # the connect attempt's timeout (10 s) comes after end_at (5 s), not after duration_s (never)
        expected = "timed out" if ends == "duration_s" else "delivered no frame before its end_at"
        assert expected in failed.error.message, failed.error
        assert failed.live.streaming_s == 0 and failed.live.frames_received == 0
        assert silent_server.accepted == 1
        with TestClient(create_app(settings, backends)) as api:  # what a client then reads
            job = api.get(f"/jobs/{job_id}").json()
            gaps = api.get(job["links"]["gaps"])
        assert gaps.status_code == 200 and gaps.content == b"", gaps.text
    finally:
        backends.close()
