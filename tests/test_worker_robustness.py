"""Worker robustness with real processes over real storage (local files + SQLite, and Azurite):
a malformed message never stops a worker, a misconfigured worker refuses to start instead of
failing jobs, a failing scratch folder hands the job back, and killed workers' scratch is swept."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures_server import launch_allinone
from tests.fixtures_service import REPO, Process
from tests.waiting import answers, wait_until

pytestmark = pytest.mark.slow

BACKENDS = ["local", pytest.param("azure", marks=pytest.mark.azurite)]
NESTED_JSON = "[" * 5000 + "]" * 5000  # json.loads raises RecursionError on it


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_deeply_nested_message_is_poisoned_and_the_next_job_completes(start_service, backend, small_clip):
    service = start_service(backend)
    service.backends.queue.send(NESTED_JSON)
    job_id = service.submit(small_clip)["job_id"]
    assert service.wait_for_status(job_id, {"completed", "failed"})["status"] == "completed"
    wait_until(lambda: service.backends.queue.peek_poison() == [NESTED_JSON], 30, "the message in the poison queue")
    worker = service.workers[0]
    assert worker.popen.poll() is None, worker.log()
    assert answers(worker.metrics_url.replace("/metrics", "/health"))
    assert "RecursionError" not in worker.log()


def run_to_exit(name: str, argv: list[str], env: dict[str, str], tmp_path: Path, timeout: float = 120) -> Process:
    process = Process(name, argv, env, tmp_path / f"{name}.log")
    try:
        process.wait(timeout)
    finally:
        process.stop()
    return process


def refused_start(service, tmp_path: Path, **env: str) -> tuple[int, str]:
    """Start ``python -m worker.main`` with ``env`` on top of the service's; its exit status and log."""
    process = run_to_exit("worker", [sys.executable, "-m", "worker.main"],
                          {**service.env, "WORKER_METRICS_PORT": "0", **env}, tmp_path)
    return process.popen.returncode, process.log()


def test_a_misconfigured_worker_refuses_to_start_and_no_job_is_failed(start_service, small_clip, tmp_path,
                                                                     mismatched_checkpoint_dir):
    service = start_service("local", workers=0)
    job_id = service.submit(small_clip)["job_id"]
    a_file = tmp_path / "scratch-file"
    a_file.write_text("not a folder")
    cases = [
        ({"WORK_DIR": str(a_file)}, ["WORK_DIR", str(a_file), "writable directory"]),
        ({"CLASSES": "cow,giraffe"}, ["CLASSES", "'giraffe'", "valid names"]),
        ({"MODEL_ID": str(mismatched_checkpoint_dir)}, ["failed to run", "config.json"]),
    ]
    for env, words in cases:
        status, log = refused_start(service, tmp_path, **env)
        assert status == 2, log
        assert "cannot start" in log and all(word in log for word in words), log
        assert "Traceback" not in log
    record = service.job(job_id)
    assert record["status"] == "queued" and record["attempts"] == 0  # nothing was burnt

    service.start_worker()  # a well-configured one then does the work
    assert service.wait_for_status(job_id, {"completed", "failed"})["status"] == "completed"


def test_the_allinone_refuses_a_work_dir_that_is_a_file(tmp_path, tiny_rtdetr_dir):
    a_file = tmp_path / "scratch-file"
    a_file.write_text("not a folder")
    env = {"STORAGE_BACKEND": "local", "DATA_DIR": str(tmp_path / "data"), "MODEL_ID": str(tiny_rtdetr_dir),
           "WORK_DIR": str(a_file), "API_KEYS": ""}
    process = run_to_exit("allinone", [sys.executable, "-m", "allinone", "--port", "0"], env, tmp_path)
    assert process.popen.returncode == 2
    assert "WORK_DIR" in process.log() and "cannot be used" in process.log()
    assert "Traceback" not in process.log()


def test_the_allinone_with_an_unusable_model_takes_no_job_and_says_so_on_health(tmp_path, small_clip,
                                                                                mismatched_checkpoint_dir):
    server = launch_allinone(tmp_path, mismatched_checkpoint_dir)
    try:
        # submitted while the model still loads: a worker that took jobs regardless would fail it
        with small_clip.open("rb") as handle:
            job_id = server.client.post("/jobs", files={"file": ("a.mp4", handle)}).json()["job_id"]
        health = wait_until(lambda: (r := server.client.get("/health")).status_code == 503 and r, 90,
                            "/health to report the model")
        assert "the model cannot be used" in health.json()["problem"]
        assert "failed to run" in health.json()["problem"]
        record = server.job(job_id)
        assert record["status"] == "queued" and record["attempts"] == 0
    finally:
        server.stop()


def test_a_failing_scratch_folder_hands_the_job_back_and_the_worker_stops(start_service, small_clip, tmp_path):
    work_dir = tmp_path / "scratch"
    service = start_service("local", workers=0, work_dir=work_dir)
    worker = service.start_worker()
    (own,) = [p for p in (work_dir / "cattlecounter-worker").iterdir() if p.is_dir()]
    own.rmdir()
    own.write_text("the disk went away")  # the worker's own folder can no longer hold a job

    job_id = service.submit(small_clip)["job_id"]
    assert worker.wait(60) == 1, worker.log()
    assert "scratch folder" in worker.log() and "takes no more jobs" in worker.log()
    record = service.job(job_id)
    assert record["status"] == "queued" and record["error"] is None  # not the job's fault

    own.unlink()
    service.start_worker()  # another worker (or this one, restarted) takes it over at once
    done = service.wait_for_status(job_id, {"completed", "failed"})
    assert done["status"] == "completed" and done["attempts"] == 2


def test_a_restarted_worker_sweeps_the_scratch_of_the_one_that_was_killed(start_service, tmp_path):
    work_dir = tmp_path / "scratch"
    service = start_service("local", workers=0, work_dir=work_dir)
    root = work_dir / "cattlecounter-worker"
    killed = service.start_worker()
    (killed_dir,) = [p for p in root.iterdir() if p.is_dir()]
    (killed_dir / "job-0123-abcd").mkdir()  # what it was working on
    (killed_dir / "job-0123-abcd" / "input").write_bytes(b"a partial video")
    killed.signal(signal.SIGKILL)  # the OOM killer: nothing is cleaned up
    killed.wait(10)

    service.start_worker()
    assert not killed_dir.exists()
    assert len([p for p in root.iterdir() if p.is_dir()]) == 1  # the new worker's own



@pytest.mark.parametrize(("module", "argv"), [("worker.main", []), ("allinone.__main__", ["--port", "0"])])
def test_a_bad_work_dir_is_refused_before_torch_is_imported(module, argv, tmp_path):
    """A misconfigured pod fails in a moment, not after the seconds of importing the model stack."""
    a_file = tmp_path / "scratch-file"
    a_file.write_text("not a folder")
    env = {**os.environ, "STORAGE_BACKEND": "local", "DATA_DIR": str(tmp_path / "data"), "WORK_DIR": str(a_file),
           "API_KEYS": "", "WORKER_METRICS_PORT": "0"}
    probe = f"import sys; from {module} import main; code = main({argv!r}); print('torch' in sys.modules); sys.exit(code)"
    done = subprocess.run([sys.executable, "-c", probe], cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    said = done.stdout + done.stderr  # the worker logs to stdout, the all-in-one prints to stderr
    assert done.returncode == 2, said
    assert "WORK_DIR" in said and done.stdout.splitlines()[-1] == "False", said
