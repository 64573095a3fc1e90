"""Storage that stops answering: a peer that accepts connections and never replies (a frozen
process, a hung front end, a network black hole) must cost a caller seconds, not minutes.

Azurite sits behind a holding TCP proxy (tests/tcp_proxy.py); the local backend's SQLite is
locked by another process. The stores, the lease keeper, and the real API and worker
processes are checked against them, and again once the peer answers.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from core import metrics
from core.backends import Backends, build_backends
from core.backends.azure.clients import AzureOptions
from core.backends.deadline import DEFAULT_MAX_THREADS
from core.backends.local import DATABASE_FILE
from core.config import Settings, load_settings
from core.errors import ConfigError, StorageUnavailable
from core.jobs import Job, JobMessage, JobStatus, new_job_id
from tests.faults import FailingMethod
from tests.fixtures_video import write_clip
from tests.waiting import wait_until
from worker.lease import LeaseKeeper
from worker.models import DetectorCache
from worker.runner import JobRunner, Outcome

DEADLINE_S = 1.5
TIGHT = {"storage_connect_timeout_s": 1.0, "storage_read_timeout_s": 1.0,
         "storage_deadline_s": DEADLINE_S}
SLACK_S = 0.75  # thread hand-offs and a loaded 2-core machine


def elapsed(call: Callable[[], object]) -> tuple[float, object]:
    """Seconds ``call`` took, and what it returned or raised."""
    started = time.monotonic()
    try:
        outcome = call()
    except Exception as exc:  # the error is the result under test
        outcome = exc
    return time.monotonic() - started, outcome


def proxied_settings(make_settings, proxied_azurite, **overrides) -> Settings:
    """Azure settings whose every connection goes through ``proxied_azurite``."""
    settings = make_settings("azure", **overrides)  # registers the resources to drop afterwards
    return settings.model_copy(update={"azure_storage_connection_string": proxied_azurite.connection_string})


def proxied_backends(make_settings, proxied_azurite, **overrides) -> Backends:
    return build_backends(proxied_settings(make_settings, proxied_azurite, **overrides))


def timed_get(client: httpx.Client, path: str) -> tuple[float, httpx.Response]:
    started = time.monotonic()
    response = client.get(path)
    return time.monotonic() - started, response


def stored_job(backends: Backends) -> Job:
    job = backends.jobs.create(Job(id=new_job_id(), input_blob="uploads/x/data"))
    backends.blobs.upload_stream("uploads/x/data", [b"video bytes"])
    backends.queue.send(JobMessage(job_id=job.id, input_blob=job.input_blob).encode())
    return job


# --- settings ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["STORAGE_CONNECT_TIMEOUT_S", "STORAGE_READ_TIMEOUT_S"])
def test_a_per_try_timeout_longer_than_the_deadline_is_refused_naming_both(name):
    with pytest.raises(ConfigError) as error:
        load_settings(env={name: "10", "STORAGE_DEADLINE_S": "4"}, env_file=None)
    assert name in str(error.value) and "STORAGE_DEADLINE_S" in str(error.value)


# --- the Azure stores ---------------------------------------------------------------------


@pytest.mark.azurite
def test_every_azure_store_call_fails_within_the_deadline_and_works_again_once_storage_answers(
    make_settings, proxied_azurite
):
    backends = proxied_backends(make_settings, proxied_azurite, **TIGHT)
    try:
        job = stored_job(backends)
        calls = {
            "jobs.get": lambda: backends.jobs.get(job.id),
            "jobs.list": lambda: backends.jobs.list(),
            "jobs.modify": lambda: backends.jobs.modify(job.id, lambda record: None),
            "queue.receive": lambda: backends.queue.receive(timedelta(seconds=30)),
            "queue.send": lambda: backends.queue.send("{}"),
            "queue.approximate_length": backends.queue.approximate_length,
            "blobs.info": lambda: backends.blobs.info(job.input_blob),
            "blobs.list": lambda: list(backends.blobs.list("uploads/")),
            "blobs.ping": backends.blobs.ping,
        }
        proxied_azurite.hold()
        for name, call in calls.items():
            seconds, outcome = elapsed(call)
            assert isinstance(outcome, StorageUnavailable), f"{name}: {outcome!r}"
            assert "did not answer within 1.5 s" in str(outcome), f"{name}: {outcome}"
            assert seconds < DEADLINE_S + SLACK_S, f"{name} took {seconds:.1f} s"

        proxied_azurite.restore()
        answered = wait_until(lambda: _answers(lambda: backends.jobs.get(job.id)), 30, "the store to answer")
        assert answered.id == job.id
        assert backends.blobs.info(job.input_blob).size == len(b"video bytes")
        assert backends.queue.receive(timedelta(seconds=30)) is not None
    finally:
        proxied_azurite.restore()
        backends.close()


def _answers(call: Callable[[], object]) -> object:
    try:
        return call()
    except StorageUnavailable:
        return None


@pytest.mark.azurite
def test_calls_piling_up_on_a_silent_peer_each_fail_at_the_deadline_on_a_bounded_set_of_threads(
    make_settings, proxied_azurite
):
    backends = proxied_backends(make_settings, proxied_azurite, **TIGHT)
    try:
        job = stored_job(backends)
        threads_before = _storage_call_threads()
        proxied_azurite.hold()
        callers = DEFAULT_MAX_THREADS + 36  # more than the store runs at once
        results: list[tuple[float, object]] = []
        threads = [threading.Thread(target=lambda: results.append(elapsed(lambda: backends.jobs.get(job.id))))
                   for _ in range(callers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert len(results) == callers
        assert all(isinstance(outcome, StorageUnavailable) for _, outcome in results), results[:3]
        slowest = max(seconds for seconds, _ in results)
        assert slowest < DEADLINE_S + 2 * SLACK_S, f"the slowest caller waited {slowest:.1f} s"
        # the calls still stuck in the SDK hold at most the store's threads, not one per caller
        assert _storage_call_threads() - threads_before <= DEFAULT_MAX_THREADS
    finally:
        proxied_azurite.restore()
        backends.close()


def _storage_call_threads() -> int:
    return sum(1 for thread in threading.enumerate() if thread.name == "storage-call")


@pytest.mark.azurite
def test_a_blob_transfer_outlasts_a_pause_longer_than_the_deadline_but_fails_once_it_stalls(
    make_settings, proxied_azurite, tmp_path
):
    stall_s = 2.5
    backends = proxied_backends(make_settings, proxied_azurite, **TIGHT, storage_stall_timeout_s=stall_s)
    try:
        content = bytes(range(256)) * 4096  # 1 MiB
        backends.blobs.upload_stream("videos/big", [content])

        # storage goes quiet for longer than the deadline, then answers: a transfer waits it out
        proxied_azurite.hold()
        pause = threading.Timer(DEADLINE_S + 0.5, proxied_azurite.restore)
        pause.start()
        seconds, outcome = elapsed(lambda: backends.blobs.download_to_file("videos/big", tmp_path / "paused"))
        pause.join()
        assert not isinstance(outcome, Exception), outcome
        assert seconds > DEADLINE_S and (tmp_path / "paused").read_bytes() == content

        # storage stays quiet: the transfer fails once no byte has come for the stall timeout
        # (on each of the SDK's three tries), not after the SDK's default of minutes
        proxied_azurite.hold()
        stalled = tmp_path / "stalled"
        seconds, outcome = elapsed(lambda: backends.blobs.download_to_file("videos/big", stalled))
        assert isinstance(outcome, StorageUnavailable), outcome
        assert seconds < 3 * stall_s + 2 * 1.5 + 2.0, f"the stalled download took {seconds:.1f} s"
    finally:
        proxied_azurite.restore()
        backends.close()


# --- the local backend's SQLite -------------------------------------------------------------


def test_a_sqlite_lock_held_by_another_process_fails_a_write_at_the_storage_deadline(make_settings):
    settings = make_settings("local", **TIGHT)
    backends = build_backends(settings)
    locker = subprocess.Popen(
        [sys.executable, "-c",
         "import sqlite3, sys\n"
         "conn = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
         "conn.execute('BEGIN IMMEDIATE')\n"
         "print('locked', flush=True)\n"
         "sys.stdin.readline()\n"
         "conn.execute('COMMIT')\n",
         str(Path(settings.data_dir).resolve() / DATABASE_FILE)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert locker.stdout.readline().strip() == "locked"
        seconds, outcome = elapsed(lambda: backends.queue.send("{}"))
        assert isinstance(outcome, StorageUnavailable) and "locked" in str(outcome), outcome
        assert DEADLINE_S - 0.2 < seconds < DEADLINE_S + SLACK_S, seconds
        locker.communicate("done\n", timeout=10)  # the other process commits and lets go
        assert backends.queue.send("{}")
    finally:
        if locker.poll() is None:
            locker.kill()
            locker.wait(10)
        backends.close()


# --- the worker's lease ----------------------------------------------------------------------


@pytest.mark.azurite
def test_the_lease_keeper_gives_up_when_renewals_hang_and_the_message_comes_back(
    make_settings, proxied_azurite
):
    # the store's deadline (4 s) is longer than the lease (2 s): a renewal that hangs must not
    # hide the lease running out
    backends = proxied_backends(make_settings, proxied_azurite)
    try:
        stored_job(backends)
        lease_s = 2.0
        message = backends.queue.receive(timedelta(seconds=lease_s))
        with LeaseKeeper(backends.queue, message, lease_s=lease_s, renew_every_s=0.5) as keeper:
            wait_until(lambda: keeper.message.pop_receipt != message.pop_receipt, 10, "a first renewal")
            proxied_azurite.hold()
            held_at = time.monotonic()
            wait_until(keeper.lost.is_set, 10, "the keeper to notice")
            noticed_after = time.monotonic() - held_at
            assert noticed_after < lease_s + SLACK_S, f"noticed {noticed_after:.1f} s after storage stopped"
            stopping = time.monotonic()
        assert time.monotonic() - stopping < SLACK_S  # leaving does not wait for the stuck renewal

        proxied_azurite.restore()
        again = wait_until(lambda: _answers(lambda: backends.queue.receive(timedelta(seconds=30))), 30,
                           "the message to come back once its lease ran out")
        assert again.id == message.id and again.dequeue_count == 2
    finally:
        proxied_azurite.restore()
        backends.close()


class DownloadOutlivingTheLease:
    """A blob store whose download hangs until the worker has given its lease up and another
    worker has taken the job over, then fails the way storage that stopped answering does."""

    def __init__(self, backends: Backends) -> None:
        self._backends = backends

    def __getattr__(self, name: str):
        return getattr(self._backends.blobs, name)

    def download_to_file(self, path: str, destination: Path):
        lost_before = lease_lost_count()
        wait_until(lambda: lease_lost_count() > lost_before, 10, "the lease keeper to give the lease up")
        taken = wait_until(lambda: self._backends.queue.receive(timedelta(seconds=30)), 10, "the message")
        self._backends.jobs.modify(JobMessage.decode(taken.body).job_id, take_over(taken.dequeue_count))
        raise StorageUnavailable("Azure Blob storage did not answer within 4 s while downloading")


def lease_lost_count() -> float:
    return metrics.REGISTRY.get_sample_value(f"{metrics.NAMESPACE}_lease_lost_total") or 0.0


def take_over(delivery: int) -> Callable[[Job], None]:
    def apply(job: Job) -> None:  # what another worker's JobRunner._start writes
        job.status, job.attempts = JobStatus.PROCESSING, delivery

    return apply


def test_an_attempt_that_fails_after_its_lease_ran_out_leaves_the_job_to_whoever_holds_it(make_settings):
    settings = make_settings("local", lease_seconds=1.0, lease_renew_seconds=0.2)
    backends = build_backends(settings)
    try:
        job = stored_job(backends)
        renewals_failing = FailingMethod(backends.queue, "extend_lease", StorageUnavailable("no answer"))
        stores = Backends(blobs=DownloadOutlivingTheLease(backends), queue=renewals_failing, jobs=backends.jobs,
                          outbox=backends.outbox, stream_queue=backends.stream_queue)
        runner = JobRunner(settings, stores, DetectorCache(settings), threading.Event())
        message = backends.queue.receive(timedelta(seconds=settings.lease_seconds))
        assert runner.handle(message) is Outcome.LOST
        record = backends.jobs.get(job.id)  # as the worker that took over left it: not requeued
        assert (record.status, record.attempts, record.error) == (JobStatus.PROCESSING, 2, None)
    finally:
        backends.close()


# --- the API ----------------------------------------------------------------------------------


def api_bound_s(settings: Settings) -> float:
    """How long GET /jobs/{id} may take while storage does not answer: the deadline, and 75 % of
    it again because a loaded machine (load 8 and more on 2 cores) may leave the request's threads
    unscheduled for seconds (4.0 s took 5.9 s beside load 20). The bound stays below what the
    SDK's own timeouts and retries take to give up, so a missing deadline still fails."""
    bound_s = 1.75 * settings.storage_deadline_s
    sdk_gives_up_after_s = (AzureOptions().retry_total + 1) * settings.storage_read_timeout_s
    assert bound_s < sdk_gives_up_after_s, (bound_s, sdk_gives_up_after_s)
    return bound_s


@pytest.mark.azurite
def test_the_api_answers_503_in_time_while_azure_storage_stops_answering(make_settings, proxied_azurite):
    settings = proxied_settings(make_settings, proxied_azurite)  # default timeouts: the promise is theirs
    backends = build_backends(settings)
    try:
        job = stored_job(backends)
        with TestClient(create_app(settings, backends)) as client:
            proxied_azurite.hold()
            seconds, response = timed_get(client, f"/jobs/{job.id}")
            assert response.status_code == 503, response.text
            assert response.json()["error"]["code"] == "storage_unavailable", response.text
            assert seconds < api_bound_s(settings), f"GET /jobs/{{id}} took {seconds:.1f} s"
            seconds, response = timed_get(client, "/ready")
            assert response.status_code == 503, response.text
            assert set(response.json()["checks"].values()) == {"no answer within 1.5 s"}
            assert seconds < 2.0, f"GET /ready took {seconds:.1f} s"

            proxied_azurite.restore()
            wait_until(lambda: client.get("/ready").status_code == 200, 30, "/ready to turn ready")
            assert client.get(f"/jobs/{job.id}").json()["job_id"] == job.id
    finally:
        proxied_azurite.restore()
        backends.close()


@pytest.mark.azurite
@pytest.mark.parametrize("path, body", [
    ("/streams", {"source_url": "rtsp://203.0.113.7/cam"}),  # writes the URL's secret blob
    ("/uploads", {"filename": "big.mp4"}),  # writes the upload's reservation
], ids=["streams", "uploads"])
def test_small_writes_answer_503_within_the_deadline_while_azure_storage_stops_answering(
    make_settings, proxied_azurite, path, body
):
    # default timeouts: a small write is metadata (STORAGE_DEADLINE_S), not a transfer that
    # may wait STORAGE_STALL_TIMEOUT_S, retried, for a byte (it took ~92 s)
    settings = proxied_settings(make_settings, proxied_azurite, stream_allowed_networks=["203.0.113.0/24"])
    backends = build_backends(settings)
    try:
        with TestClient(create_app(settings, backends)) as client:
            assert client.post(path, json=body).status_code in (201, 202)  # storage answering: accepted
            proxied_azurite.hold()
            started = time.monotonic()
            response = client.post(path, json=body)
            seconds = time.monotonic() - started
            assert response.status_code == 503, response.text
            assert response.json()["error"]["code"] == "storage_unavailable", response.text
            assert seconds < 5.0, f"POST {path} took {seconds:.1f} s"
    finally:
        proxied_azurite.restore()
        backends.close()


# --- the real API and worker ------------------------------------------------------------------


@pytest.fixture(scope="module")
def clip_of_30_seconds(tmp_path_factory) -> Path:
    """Long enough that storage can stop answering while the worker is mid-job."""
    return write_clip(tmp_path_factory.mktemp("frozen") / "long.mp4", frames=300)


@pytest.mark.slow
@pytest.mark.azurite
def test_api_and_worker_stay_responsive_while_azure_storage_stops_answering(
    start_service, proxied_azurite, clip_of_30_seconds
):
    # default storage timeouts: the API's promise (503 within 5 s, /ready within 2 s) is theirs
    service = start_service("azure", azure_storage_connection_string=proxied_azurite.connection_string)
    worker = service.workers[0]
    job_id = service.submit(clip_of_30_seconds)["job_id"]
    wait_until(lambda: service.job(job_id).get("frames_done", 0) > 0, 120, "the worker to be mid-job")

    proxied_azurite.hold()
    try:
        seconds, response = timed_get(service.client, f"/jobs/{job_id}")
        assert response.status_code == 503, response.text
        assert response.json()["error"]["code"] == "storage_unavailable", response.text
        assert seconds < 5.0, f"GET /jobs/{{id}} took {seconds:.1f} s"
        assert response.headers["retry-after"]
        seconds, response = timed_get(service.client, "/ready")
        assert response.status_code == 503 and response.json()["status"] == "unavailable", response.text
        assert seconds < 2.0, f"GET /ready took {seconds:.1f} s"
        assert timed_get(service.client, "/health")[1].status_code == 200  # the process itself is fine
        wait_until(lambda: "lease may have expired" in worker.log(), 20,
                   "the worker to notice that its lease ran out")
    finally:
        proxied_azurite.restore()

    wait_until(lambda: timed_get(service.client, "/ready")[1].status_code == 200, 30, "/ready to turn ready")
    done = service.wait_for_status(job_id, {"completed", "failed"}, timeout=240)
    assert done["status"] == "completed", done
    assert done["attempts"] == 2  # the stopped attempt, then a full one once storage answered
    assert worker.popen.poll() is None  # the same worker process, no restart
