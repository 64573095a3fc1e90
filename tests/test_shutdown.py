"""SIGTERM, as Docker and Kubernetes stop a container, sent to each real process while it works:
the all-in-one (``python -m allinone``), the API (``uvicorn api.main:app``) and a worker
(``python -m worker.main``) running a file job and a live stream. Each must hand its work back
(the job queued again, its message visible at once rather than when its lease ends), remove
its scratch, and exit 0 within SHUTDOWN_GRACE_S plus a margin."""

from __future__ import annotations

import signal
import socket
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest

from core.backends import Backends, JobQueue, build_backends
from core.config import Settings
from core.jobs import JobMessage, JobStatus
from tests.fixtures_server import launch_allinone
from tests.fixtures_service import Process
from tests.fixtures_video import write_clip
from tests.waiting import wait_until

pytestmark = pytest.mark.slow

GRACE_S = 2.0  # SHUTDOWN_GRACE_S here: short, so that running jobs are handed back
# Beyond SHUTDOWN_GRACE_S: stop at the next batch, release, close the stores; generous because
# the test machine is shared. A process still running past it was going to be SIGKILLed.
EXIT_MARGIN_S = 30.0
LEASE_S = 120.0  # far longer than the test: a message seen again was released, not expired
STREAM_SETTINGS = {"stream_allowed_networks": ["127.0.0.0/8"], "stream_read_timeout_s": 3.0}


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """90 s at 10 fps: still running when the signal comes, even on a fast machine (the job is
    handed back long before its end, so its length costs little)."""
    return write_clip(tmp_path_factory.mktemp("long") / "long.mp4", frames=900)


def terminate(process: Process) -> int:
    """SIGTERM ``process``; its exit status, or fail if it outlives SHUTDOWN_GRACE_S plus the margin."""
    process.signal(signal.SIGTERM)
    try:
        status = process.wait(GRACE_S + EXIT_MARGIN_S)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"{process.name} still runs {GRACE_S + EXIT_MARGIN_S:.0f} s after SIGTERM:\n"
                             f"{process.log()[-6000:]}") from None
    assert "Traceback" not in process.log(), process.log()[-6000:]
    return status


def scratch_left(work_dir: Path, kinds: tuple[str, ...] = ("worker", "api")) -> list[Path]:
    """What is left in WORK_DIR under the scratch roots of ``kinds`` of process."""
    return [path for kind in kinds for path in (work_dir / f"cattlecounter-{kind}").rglob("*")]


def assert_handed_back(backends: Backends, queue: JobQueue, job_id: str) -> None:
    """Queued again with no failed attempt, and its message can be taken now (released, not leased)."""
    job = backends.jobs.get(job_id)
    assert (job.status, job.handed_back, job.error) == (JobStatus.QUEUED, 1, None), job
    message = queue.receive(timedelta(seconds=LEASE_S))
    assert message is not None, "the job's message is still leased: the process did not release it"
    assert JobMessage.decode(message.body).job_id == job_id


def test_sigterm_on_the_allinone_hands_the_running_job_back_and_removes_its_scratch(tmp_path, tiny_rtdetr_dir,
                                                                                   long_clip):
    work_dir = tmp_path / "scratch"
    server = launch_allinone(tmp_path, tiny_rtdetr_dir, WORK_DIR=str(work_dir), SHUTDOWN_GRACE_S=str(GRACE_S),
                             LEASE_SECONDS=str(LEASE_S))
    try:
        with long_clip.open("rb") as handle:
            job_id = server.client.post("/jobs", files={"file": ("long.mp4", handle)}).json()["job_id"]
        wait_until(lambda: server.job(job_id)["frames_done"] > 0, 90, "the job to run")
        assert any(path.name == "input" for path in scratch_left(work_dir))  # the video being counted
        assert terminate(server.process) == 0
    finally:
        server.stop()
    assert scratch_left(work_dir) == []
    backends = build_backends(Settings(_env_file=None, storage_backend="local",  # type: ignore[call-arg]
                                       data_dir=server.data_dir))
    try:
        assert_handed_back(backends, backends.queue, job_id)
    finally:
        backends.close()


def test_sigterm_on_a_worker_hands_back_its_file_job_and_its_stream_and_removes_its_scratch(
        start_service, long_clip, rtsp_server, tmp_path):
    """The file worker and the stream worker are one program (WORKER_CONCURRENCY, STREAM_CONCURRENCY):
    one process running both covers both."""
    work_dir = tmp_path / "scratch"
    service = start_service("local", workers=0, work_dir=work_dir, shutdown_grace_s=GRACE_S,
                            lease_seconds=LEASE_S, **STREAM_SETTINGS)
    worker = service.start_worker(WORKER_CONCURRENCY="1", STREAM_CONCURRENCY="1")
    response = service.client.post("/streams", json={"source_url": rtsp_server.url, "window_s": 5})
    assert response.status_code == 202, response.text
    stream_id = response.json()["job_id"]
    wait_until(lambda: service.job(stream_id)["status"] == "processing", 60, "the stream to run")
    file_id = service.submit(long_clip)["job_id"]
    wait_until(lambda: service.job(file_id)["frames_done"] > 0, 90, "the file job to run")
    names = {path.name.split("-")[0] for path in scratch_left(work_dir, ("worker",))}
    assert {"job", "stream"} <= names, names  # both are using the scratch folder

    assert terminate(worker) == 0, service.logs()
    assert scratch_left(work_dir, ("worker",)) == []
    assert_handed_back(service.backends, service.backends.queue, file_id)
    assert_handed_back(service.backends, service.backends.stream_queue, stream_id)


def test_sigterm_on_the_api_stops_an_upload_that_does_not_finish_and_removes_its_scratch(start_service,
                                                                                        tmp_path):
    """uvicorn waits for open requests; a stalled upload gets SHUTDOWN_GRACE_S, then is cut."""
    work_dir = tmp_path / "scratch"
    service = start_service("local", workers=0, work_dir=work_dir, shutdown_grace_s=GRACE_S)
    with start_upload(service.api_url) as upload:
        wait_until(lambda: any(path.name.startswith("upload-") for path in scratch_left(work_dir, ("api",))), 30,
                   "the upload to reach the API's scratch folder")
        (api,) = service.processes
        assert terminate(api) == 0
        upload.settimeout(5)
        answer = upload.recv(65536)
    assert answer.startswith(b"HTTP/1.1 503") and b"shutting_down" in answer, answer  # send it again
    assert "POST /jobs was cut" in api.log()
    assert scratch_left(work_dir, ("api",)) == []


def start_upload(api_url: str) -> socket.socket:
    """A POST /jobs that sends the first 2 MiB of a 10 MB video (the API writes in 1 MiB batches),
    then nothing more."""
    boundary = "cattlecounter-shutdown-test"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.mp4\"\r\n"
            f"Content-Type: video/mp4\r\n\r\n").encode()
    length = len(head) + 10_000_000 + len(f"\r\n--{boundary}--\r\n")
    upload = socket.create_connection(("127.0.0.1", int(api_url.rsplit(":", 1)[1])))
    upload.sendall(f"POST /jobs HTTP/1.1\r\nHost: localhost\r\nContent-Length: {length}\r\n"
                   f"Content-Type: multipart/form-data; boundary={boundary}\r\n\r\n".encode() + head + b"\0" * 2 * 2**20)
    return upload
