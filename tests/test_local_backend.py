"""What only the local backend (files + SQLite) promises, beyond the shared contract:
safe paths, atomic blob writes, several processes on one queue, and clear failures."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import sqlite3
import threading
from datetime import timedelta
from pathlib import Path

import psutil
import pytest

from core.backends import build_backends
from core.backends.local import DATABASE_FILE, Database, LocalJobQueue
from core.config import Settings
from core.errors import InvalidInput, NotFound, PreconditionFailed, StorageUnavailable
from core.jobs import DEFAULT_OWNER, Job, new_job_id

LONG_LEASE = timedelta(seconds=30)


@pytest.fixture
def local(make_settings):
    built = build_backends(make_settings("local"))
    yield built
    built.close()


# --- paths -------------------------------------------------------------------------------------

UNSAFE_PATHS = [
    "",
    "../outside",
    "jobs/../../outside",
    "jobs/./input",
    "/etc/passwd",
    "jobs\\..\\outside",
    "jobs/a\x00b",
    "jobs//input",
    "jobs/input/",
    "jobs/.hidden",
]


@pytest.mark.parametrize("path", UNSAFE_PATHS)
def test_paths_that_could_escape_the_root_are_rejected(local, path: str, tmp_path: Path) -> None:
    with pytest.raises(InvalidInput):
        local.blobs.upload_stream(path, [b"x"])
    with pytest.raises(InvalidInput):
        local.blobs.info(path)
    with pytest.raises(InvalidInput):
        local.blobs.open_range(path)
    with pytest.raises(InvalidInput):
        local.blobs.delete(path)
    assert not (tmp_path / "outside").exists()


@pytest.mark.parametrize("prefix", ["../", "/", "jobs/../", "a\\b"])
def test_list_rejects_unsafe_prefixes(local, prefix: str) -> None:
    with pytest.raises(InvalidInput):
        list(local.blobs.list(prefix))


def test_blobs_are_plain_files_under_data_dir_blobs(make_settings) -> None:
    settings = make_settings("local")
    built = build_backends(settings)
    built.blobs.upload_stream("jobs/x/outputs/stats.json", [b"{}"])
    assert (settings.data_dir / "blobs" / "jobs" / "x" / "outputs" / "stats.json").read_bytes() == b"{}"
    assert (settings.data_dir / DATABASE_FILE).exists()
    # content type falls back to the file extension when none was given
    assert built.blobs.info("jobs/x/outputs/stats.json").content_type == "application/json"
    built.close()


# --- atomic writes ---------------------------------------------------------------------------


def test_readers_never_see_half_a_blob(local) -> None:
    versions = [b"a" * 3_000_000, b"b" * 1_000_000]
    local.blobs.upload_stream("x/hot", [versions[0]])
    stop = threading.Event()
    errors: list[BaseException] = []

    def overwrite_forever() -> None:
        try:
            i = 0
            while not stop.is_set():
                i += 1
                local.blobs.upload_stream("x/hot", [versions[i % 2][:500_000], versions[i % 2][500_000:]])
        except BaseException as exc:  # surfaced to the test thread below
            errors.append(exc)

    writer = threading.Thread(target=overwrite_forever)
    writer.start()
    try:
        for _ in range(150):
            assert b"".join(local.blobs.open_range("x/hot")) in versions
    finally:
        stop.set()
        writer.join()
    assert not errors


def test_write_if_never_gives_an_etag_back_even_when_the_clock_does_not_move_forward(local) -> None:
    """The etag is the file's mtime and size: within one clock tick (or after the clock stepped
    back) a write of the same size would repeat an old etag, and a client holding that old one
    would pass If-Match. write_if pushes each new mtime past the one it replaces."""
    first = local.blobs.write_if("jobs/r/review.json", b"AAAA", None)
    file = local.blobs.root / "jobs/r/review.json"
    future = file.stat().st_mtime_ns + 3600 * 10**9  # as if the next writes came an hour "earlier"
    os.utime(file, ns=(future, future))
    held = local.blobs.info("jobs/r/review.json").etag
    second = local.blobs.write_if("jobs/r/review.json", b"BBBB", held)
    third = local.blobs.write_if("jobs/r/review.json", b"AAAA", second.etag)
    assert len({first.etag, held, second.etag, third.etag}) == 4
    assert file.stat().st_mtime_ns > future
    with pytest.raises(PreconditionFailed):
        local.blobs.write_if("jobs/r/review.json", b"CCCC", held)


def test_failed_upload_keeps_the_old_blob_and_leaves_no_temp_file(local) -> None:
    local.blobs.upload_stream("x/kept", [b"old"])

    def broken_source():
        yield b"new bytes..."
        raise ConnectionResetError("client went away")

    with pytest.raises(ConnectionResetError):
        local.blobs.upload_stream("x/kept", broken_source())
    assert b"".join(local.blobs.open_range("x/kept")) == b"old"
    folder = local.blobs.root / "x"
    assert sorted(p.name for p in folder.iterdir()) == ["kept"]
    assert [blob.path for blob in local.blobs.list("")] == ["x/kept"]


def test_non_bytes_chunks_are_rejected(local) -> None:
    with pytest.raises(InvalidInput):
        local.blobs.upload_stream("x/strings", ["text, not bytes"])  # type: ignore[list-item]
    assert not local.blobs.exists("x/strings")


def test_delete_prefix_removes_the_emptied_folders(local) -> None:
    local.blobs.upload_stream("jobs/j1/input", [b"1"])
    local.blobs.upload_stream("jobs/j1/outputs/video.mp4", [b"2"])
    local.blobs.upload_stream("jobs/j2/input", [b"3"])
    assert local.blobs.delete_prefix("jobs/j1/") == 2
    assert not (local.blobs.root / "jobs" / "j1").exists()
    assert (local.blobs.root / "jobs" / "j2" / "input").exists()


def test_folder_is_not_a_blob(local) -> None:
    local.blobs.upload_stream("jobs/j1/input", [b"1"])
    assert not local.blobs.exists("jobs/j1")
    with pytest.raises(NotFound):
        local.blobs.info("jobs/j1")
    with pytest.raises(NotFound):
        local.blobs.open_range("jobs/j1")


def test_urls_are_none_so_the_api_serves_bytes_itself(local) -> None:
    assert local.blobs.read_url("x", timedelta(minutes=5)) is None
    assert local.blobs.write_url("x", timedelta(minutes=5)) is None


# --- several processes on one queue -----------------------------------------------------------

MESSAGES_PER_CONSUMER = 200


def consume_until_empty(settings: Settings, barrier, results_path: str) -> None:
    """A consumer process: take messages until none is left, recording what it got."""
    built = build_backends(settings)
    received = []
    barrier.wait(timeout=60)
    while (message := built.queue.receive(LONG_LEASE)) is not None:
        received.append({"id": message.id, "body": message.body, "dequeue_count": message.dequeue_count})
        hashlib.sha256(bytes(1_000_000)).digest()  # a little "work" while holding the lease
        built.queue.complete(message)
    built.close()
    Path(results_path).write_text(json.dumps(received))


def test_two_processes_never_receive_the_same_message(make_settings, tmp_path: Path) -> None:
    settings = make_settings("local")
    built = build_backends(settings)
    sent = {built.queue.send(f"job-{i}") for i in range(2 * MESSAGES_PER_CONSUMER)}

    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(2)
    paths = [tmp_path / f"consumer-{n}.json" for n in range(2)]
    consumers = [
        ctx.Process(target=consume_until_empty, args=(settings, barrier, str(path))) for path in paths
    ]
    for process in consumers:
        process.start()
    for process in consumers:
        process.join(timeout=120)
        assert process.exitcode == 0

    per_consumer = [json.loads(path.read_text()) for path in paths]
    ids = [record["id"] for records in per_consumer for record in records]
    print(f"messages per consumer: {[len(records) for records in per_consumer]}")
    assert min(len(records) for records in per_consumer) >= MESSAGES_PER_CONSUMER // 10, "no real contention"
    assert len(ids) == len(set(ids)), "a message was delivered twice within its lease"
    assert set(ids) == sent
    assert all(record["dequeue_count"] == 1 for records in per_consumer for record in records)
    assert built.queue.approximate_length() == 0
    built.close()


def test_wait_drained_wakes_when_a_consumer_empties_the_queue(local) -> None:
    queue: LocalJobQueue = local.queue
    for i in range(20):
        queue.send(f"m{i}")
    assert queue.wait_drained(timeout=0.2) is False  # nobody consumes yet

    def consume() -> None:
        while (message := queue.receive(LONG_LEASE)) is not None:
            queue.complete(message)

    consumer = threading.Thread(target=consume)
    consumer.start()
    assert queue.wait_drained(timeout=30) is True
    consumer.join()


def test_connections_of_finished_threads_are_closed(local) -> None:
    """API thread pools retire idle threads; their SQLite connections must not pile up."""
    process = psutil.Process()

    def one_query() -> None:
        local.jobs.list(limit=1)

    def run_in_fresh_threads(count: int) -> None:
        for _ in range(count):
            thread = threading.Thread(target=one_query)
            thread.start()
            thread.join()

    run_in_fresh_threads(5)
    before = process.num_fds()
    run_in_fresh_threads(100)
    assert process.num_fds() - before < 10


# --- failures are typed and say what went wrong -----------------------------------------------


def test_database_locked_beyond_busy_timeout_is_storage_unavailable(make_settings) -> None:
    settings = make_settings("local")
    build_backends(settings).close()
    database = Database(settings.data_dir / DATABASE_FILE, busy_timeout_s=0.2)
    queue = LocalJobQueue(database, "jobs", "jobs-poison")

    holder = sqlite3.connect(settings.data_dir / DATABASE_FILE, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(StorageUnavailable, match="locked"):
            queue.send("blocked")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    queue.send("fine once the lock is gone")
    assert queue.approximate_length() == 1
    database.close()


def test_unusable_data_dir_fails_at_build_time(make_settings, tmp_path: Path) -> None:
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("I am a file")
    with pytest.raises(StorageUnavailable, match=str(not_a_folder)):
        build_backends(make_settings("local", data_dir=not_a_folder))


def test_closed_backend_refuses_work(make_settings) -> None:
    built = build_backends(make_settings("local"))
    built.close()
    with pytest.raises(StorageUnavailable, match="closed"):
        built.queue.send("late")


def test_everything_survives_a_restart(make_settings) -> None:
    settings = make_settings("local")
    first = build_backends(settings)
    first.blobs.upload_stream("jobs/j/input", [b"video"], content_type="video/mp4")
    job = first.jobs.create(Job(id=new_job_id(), input_blob="jobs/j/input"))
    first.queue.send("queued before the restart")
    first.close()

    second = build_backends(settings)
    assert second.blobs.info("jobs/j/input").content_type == "video/mp4"
    assert second.jobs.get(job.id).etag == job.etag
    assert second.queue.receive(LONG_LEASE).body == "queued before the restart"
    second.close()


def test_bad_page_requests_are_invalid_input(local) -> None:
    with pytest.raises(InvalidInput):
        local.jobs.list(cursor="!!not a cursor!!")
    with pytest.raises(InvalidInput):
        local.jobs.list(limit=0)


def test_update_without_an_etag_is_refused(local) -> None:
    job = local.jobs.create(Job(id=new_job_id(), input_blob="x"))
    job.etag = None
    with pytest.raises(PreconditionFailed, match="etag"):
        local.jobs.update(job)


def test_zero_lease_is_invalid(local) -> None:
    local.queue.send("m")
    with pytest.raises(InvalidInput):
        local.queue.receive(timedelta(0))


OLD_JOBS_TABLE = """CREATE TABLE jobs (id TEXT PRIMARY KEY, status TEXT NOT NULL, idempotency_key TEXT UNIQUE,
                                  version INTEGER NOT NULL, record TEXT NOT NULL)"""


def test_a_database_from_before_owners_gives_its_jobs_and_keys_to_the_default_tenant(make_settings) -> None:
    settings = make_settings("local")
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    old = Job(id=new_job_id(), input_blob="x", idempotency_key="k1")
    record = old.model_dump_json(exclude={"owner"})  # written before jobs had owners
    with sqlite3.connect(settings.data_dir / DATABASE_FILE) as conn:
        conn.execute(OLD_JOBS_TABLE)
        conn.execute("INSERT INTO jobs VALUES (?, 'queued', 'k1', 1, ?)", (old.id, record))

    built = build_backends(settings)
    try:
        assert built.jobs.get(old.id).owner == DEFAULT_OWNER
        assert [job.id for job in built.jobs.list(owner=DEFAULT_OWNER).jobs] == [old.id]
        assert built.jobs.list(owner="alice").jobs == []
        assert built.jobs.create(Job(id=new_job_id(), input_blob="x", idempotency_key="k1")).id == old.id
        assert built.jobs.create(Job(id=new_job_id(), input_blob="x", idempotency_key="k1", owner="alice")).id != old.id
    finally:
        built.close()
