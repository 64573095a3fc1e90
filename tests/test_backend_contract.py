"""One contract, two backends: every test here runs against the local backend (files +
SQLite) and against the Azure backend on a real Azurite (see tests/fixtures_storage.py)."""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import resource
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from core.backends import Backends, build_backends
from core.backends.base import QueueMessage
from core.config import Settings
from core.errors import AlreadyExists, InvalidMessage, LeaseLost, NotFound, PreconditionFailed, StorageError
from core.jobs import Job, JobMessage, JobParams, JobStatus, new_job_id

pytestmark = pytest.mark.timeout(120)  # a hung SDK call fails its test instead of the session

LEASE = timedelta(seconds=1)
LONG_LEASE = timedelta(seconds=30)


def payload(size: int, seed: int = 0) -> bytes:
    """Bytes that differ at every offset, so an off-by-one range read cannot pass."""
    block = hashlib.sha256(str(seed).encode()).digest()
    pattern = bytes((i * 7 + block[i % 32]) % 251 for i in range(251 * 32))
    return (pattern * (size // len(pattern) + 1))[:size]


def read_all(chunks: Iterator[bytes]) -> bytes:
    return b"".join(chunks)


# --- blobs ---------------------------------------------------------------------------------


def test_upload_file_download_and_info(backends: Backends, tmp_path: Path) -> None:
    data = payload(3 * 1024 * 1024 + 17)
    source = tmp_path / "source.bin"
    source.write_bytes(data)

    uploaded = backends.blobs.upload_file("jobs/a/input", source, content_type="video/mp4")
    assert (uploaded.path, uploaded.size, uploaded.content_type) == ("jobs/a/input", len(data), "video/mp4")

    info = backends.blobs.info("jobs/a/input")
    assert (info.size, info.content_type) == (len(data), "video/mp4")
    assert info.etag and info.last_modified is not None

    destination = tmp_path / "downloaded.bin"
    downloaded = backends.blobs.download_to_file("jobs/a/input", destination)
    assert downloaded.size == len(data)
    assert destination.read_bytes() == data
    assert source.read_bytes() == data  # the source file is copied, not moved


def test_upload_stream_from_file_object(backends: Backends, tmp_path: Path) -> None:
    data = payload(2 * 1024 * 1024 + 5, seed=1)
    source = tmp_path / "source.bin"
    source.write_bytes(data)
    with open(source, "rb") as stream:
        info = backends.blobs.upload_stream("x/from-file-object", stream)
    assert info.size == len(data)
    assert read_all(backends.blobs.open_range("x/from-file-object")) == data


def test_upload_stream_from_iterable_of_chunks(backends: Backends) -> None:
    parts = [payload(100_000, seed=i) for i in range(30)] + [b"", b"tail"]
    info = backends.blobs.upload_stream("x/from-chunks", iter(parts), content_type="application/json")
    assert info.size == sum(map(len, parts))
    assert backends.blobs.info("x/from-chunks").content_type == "application/json"
    assert read_all(backends.blobs.open_range("x/from-chunks")) == b"".join(parts)


def test_upload_overwrites(backends: Backends) -> None:
    backends.blobs.upload_stream("x/blob", [b"first version, longer"])
    backends.blobs.upload_stream("x/blob", [b"second"])
    assert read_all(backends.blobs.open_range("x/blob")) == b"second"


def test_empty_blob(backends: Backends, tmp_path: Path) -> None:
    assert backends.blobs.upload_stream("x/empty", []).size == 0
    assert backends.blobs.info("x/empty").size == 0
    assert read_all(backends.blobs.open_range("x/empty")) == b""
    assert backends.blobs.download_to_file("x/empty", tmp_path / "empty").size == 0
    assert (tmp_path / "empty").read_bytes() == b""


@pytest.mark.parametrize(
    ("start", "length"),
    [
        (0, None),
        (1, None),
        (5_000_000, None),
        (123_456, 1_000_000),
        (4_999_999, 10),
        (17, 0),
        (6_000_000, None),
    ],
)
def test_open_range_returns_exactly_the_requested_bytes(
    backends: Backends, start: int, length: int | None
) -> None:
    data = payload(5_000_001, seed=2)
    backends.blobs.upload_stream("x/ranged", [data])
    expected = data[start:] if length is None else data[start : start + length]
    assert read_all(backends.blobs.open_range("x/ranged", start, length)) == expected


def test_exists_and_delete(backends: Backends) -> None:
    backends.blobs.upload_stream("x/doomed", [b"bytes"])
    assert backends.blobs.exists("x/doomed")
    backends.blobs.delete("x/doomed")
    assert not backends.blobs.exists("x/doomed")
    backends.blobs.delete("x/doomed")  # deleting a missing blob is not an error


def test_missing_blob_raises_not_found(backends: Backends, tmp_path: Path) -> None:
    with pytest.raises(NotFound):
        backends.blobs.info("jobs/nope/input")
    with pytest.raises(NotFound):
        backends.blobs.download_to_file("jobs/nope/input", tmp_path / "out")
    with pytest.raises(NotFound):
        backends.blobs.open_range("jobs/nope/input")  # raised on the call, not on iteration
    assert not backends.blobs.exists("jobs/nope/input")
    with pytest.raises(NotFound):
        backends.blobs.read_small("jobs/nope/input")


def test_small_blobs_round_trip_and_overwrite(backends: Backends) -> None:
    stored = backends.blobs.write_small("uploads/u/meta.json", b'{"a": 1}', "application/json")
    assert (stored.size, stored.content_type) == (8, "application/json")
    backends.blobs.write_small("uploads/u/meta.json", b"{}")
    assert backends.blobs.read_small("uploads/u/meta.json") == b"{}"
    backends.blobs.write_small("uploads/u/empty", b"")
    assert backends.blobs.read_small("uploads/u/empty") == b""


def test_unwritable_download_destination_is_not_mistaken_for_a_missing_blob(
    backends: Backends, tmp_path: Path
) -> None:
    backends.blobs.upload_stream("x/here", [b"bytes"])
    with pytest.raises(StorageError) as error:
        backends.blobs.download_to_file("x/here", tmp_path / "no-such-folder" / "out")
    assert not isinstance(error.value, NotFound)


def test_list_by_prefix_in_path_order_and_delete_prefix(backends: Backends) -> None:
    paths = [
        "jobs/a/input",
        "jobs/a/outputs/stats.json",
        "jobs/a/outputs/video.mp4",
        "jobs/a-b/input",
        "jobs/b/input",
    ]
    for path in reversed(paths):
        backends.blobs.upload_stream(path, [path.encode()])

    assert [blob.path for blob in backends.blobs.list("jobs/")] == sorted(paths)
    assert [blob.path for blob in backends.blobs.list("jobs/a/")] == sorted(paths[:3])
    assert [blob.path for blob in backends.blobs.list("jobs/a")] == sorted(paths[:4])
    listed = {blob.path: blob.size for blob in backends.blobs.list("jobs/a/outputs/")}
    assert listed == {p: len(p) for p in paths[1:3]}
    assert list(backends.blobs.list("nothing/here/")) == []

    assert backends.blobs.delete_prefix("jobs/a/") == 3
    assert [blob.path for blob in backends.blobs.list("")] == ["jobs/a-b/input", "jobs/b/input"]
    assert backends.blobs.delete_prefix("jobs/a/") == 0


def test_write_if_creates_only_a_missing_blob_and_replaces_only_the_version_read(backends: Backends) -> None:
    blobs = backends.blobs
    first = blobs.write_if("jobs/r/review.json", b'{"v": 1}', None, content_type="application/json")
    with pytest.raises(PreconditionFailed):  # a second "create" finds it there
        blobs.write_if("jobs/r/review.json", b'{"v": 9}', None)

    second = blobs.write_if("jobs/r/review.json", b'{"v": 2}', first.etag, content_type="application/json")
    # the same size at once: still a new etag
    assert second.etag != first.etag
    with pytest.raises(PreconditionFailed):  # the version read first is gone
        blobs.write_if("jobs/r/review.json", b'{"v": 3}', first.etag)
    assert read_all(blobs.open_range("jobs/r/review.json")) == b'{"v": 2}'
    assert blobs.info("jobs/r/review.json").content_type == "application/json"

    blobs.delete("jobs/r/review.json")
    with pytest.raises(PreconditionFailed):  # deleted since it was read
        blobs.write_if("jobs/r/review.json", b'{"v": 4}', second.etag)
    assert not blobs.exists("jobs/r/review.json")


def test_write_if_lets_exactly_one_of_two_racing_writers_through(backends: Backends) -> None:
    base = backends.blobs.write_if("jobs/r/race.json", b"0", None)
    outcomes: list[str] = []
    barrier = threading.Barrier(8)

    def write(n: int) -> None:
        barrier.wait()
        try:
            backends.blobs.write_if("jobs/r/race.json", str(n).encode(), base.etag)
            outcomes.append(str(n))
        except PreconditionFailed:
            outcomes.append("refused")

    threads = [threading.Thread(target=write, args=(n,)) for n in range(1, 9)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    winners = [outcome for outcome in outcomes if outcome != "refused"]
    assert len(winners) == 1 and len(outcomes) == 8
    assert read_all(backends.blobs.open_range("jobs/r/race.json")) == winners[0].encode()


def test_ping_answers(backends: Backends) -> None:
    backends.blobs.ping()
    backends.queue.ping()
    backends.jobs.ping()


# --- queue -----------------------------------------------------------------------------------


def receive_within(backends: Backends, seconds: float, lease: timedelta = LEASE) -> QueueMessage | None:
    """Poll until a message is received or the deadline passes."""
    deadline = time.monotonic() + seconds
    while True:
        message = backends.queue.receive(lease)
        if message is not None or time.monotonic() >= deadline:
            return message
        time.sleep(0.1)


def test_send_receive_complete(backends: Backends) -> None:
    assert backends.queue.receive(LEASE) is None
    sent_id = backends.queue.send("hello")
    assert backends.queue.approximate_length() == 1

    message = backends.queue.receive(LONG_LEASE)
    assert message is not None
    assert (message.id, message.body, message.dequeue_count) == (sent_id, "hello", 1)
    assert backends.queue.receive(LEASE) is None  # leased: invisible to others
    assert backends.queue.approximate_length() == 1  # ...but still counted

    backends.queue.complete(message)
    assert backends.queue.approximate_length() == 0
    assert backends.queue.receive(LEASE) is None


def test_every_message_is_received_once(backends: Backends) -> None:
    bodies = {f"message-{i}" for i in range(10)}
    for body in sorted(bodies):
        backends.queue.send(body)
    received = []
    while (message := backends.queue.receive(LONG_LEASE)) is not None:
        received.append(message.body)
        backends.queue.complete(message)
    assert sorted(received) == sorted(bodies)


def test_extend_lease_issues_a_new_receipt_and_the_old_one_goes_stale(backends: Backends) -> None:
    backends.queue.send("work")
    message = backends.queue.receive(LONG_LEASE)
    extended = backends.queue.extend_lease(message, LONG_LEASE)
    assert extended.pop_receipt != message.pop_receipt
    assert (extended.id, extended.body, extended.dequeue_count) == (message.id, "work", 1)

    with pytest.raises(LeaseLost):
        backends.queue.complete(message)
    backends.queue.complete(extended)
    assert backends.queue.approximate_length() == 0


def test_release_makes_the_message_visible_again_now(backends: Backends) -> None:
    backends.queue.send("retry me")
    first = backends.queue.receive(LONG_LEASE)
    backends.queue.release(first)
    second = receive_within(backends, 5, LONG_LEASE)
    assert second is not None
    assert (second.id, second.dequeue_count) == (first.id, 2)
    with pytest.raises(LeaseLost):
        backends.queue.release(first)
    backends.queue.complete(second)


def test_move_to_poison(backends: Backends) -> None:
    backends.queue.send("bad job")
    message = backends.queue.receive(LONG_LEASE)
    backends.queue.move_to_poison(message)
    assert backends.queue.approximate_length() == 0
    assert backends.queue.peek_poison() == ["bad job"]
    with pytest.raises(LeaseLost):
        backends.queue.move_to_poison(message)
    assert backends.queue.peek_poison() == ["bad job"]  # a stale receipt poisons nothing


def test_the_stream_queue_is_its_own_queue_with_its_own_poison_queue(backends: Backends) -> None:
    """Streams run for hours: their messages must never be taken by a file-job thread, nor
    file jobs wait behind them, so each kind has its own queue."""
    backends.stream_queue.send("a stream")
    backends.queue.send("a video")
    assert backends.stream_queue.approximate_length() == 1 and backends.queue.approximate_length() == 1
    video = backends.queue.receive(LONG_LEASE)
    assert video is not None and video.body == "a video"
    assert backends.queue.receive(LEASE) is None  # the stream's message is not on the file queue
    stream = backends.stream_queue.receive(LONG_LEASE)
    assert stream is not None and stream.body == "a stream"
    backends.stream_queue.move_to_poison(stream)
    assert backends.stream_queue.peek_poison() == ["a stream"]
    assert backends.queue.peek_poison() == []
    assert backends.stream_queue.approximate_length() == 0 and backends.queue.approximate_length() == 1
    backends.stream_queue.ping()


def test_expired_lease_redelivers_with_higher_dequeue_count(backends: Backends) -> None:
    backends.queue.send("slow job")
    first = backends.queue.receive(LEASE)
    second = receive_within(backends, 10)  # comes back once the 1 s lease runs out
    assert second is not None
    assert (second.id, second.dequeue_count) == (first.id, 2)
    assert second.pop_receipt != first.pop_receipt

    # The first consumer's receipt is stale now that the lease was re-taken.
    with pytest.raises(LeaseLost):
        backends.queue.complete(first)
    with pytest.raises(LeaseLost):
        backends.queue.extend_lease(first, LEASE)
    backends.queue.complete(second)


def test_extended_lease_keeps_the_message_hidden(backends: Backends) -> None:
    backends.queue.send("long job")
    message = backends.queue.receive(LEASE)
    extended = backends.queue.extend_lease(message, timedelta(seconds=5))
    # Poll until well past the original 1 s lease: nobody may receive it.
    assert receive_within(backends, 2.5) is None
    backends.queue.complete(extended)


def test_malformed_message_body_raises_invalid_message_and_can_be_poisoned(backends: Backends) -> None:
    backends.queue.send("{not json")
    backends.queue.send(JobMessage(job_id="abc", input_blob="jobs/abc/input").encode())
    decoded, poisoned = [], []
    while (message := backends.queue.receive(LONG_LEASE)) is not None:
        try:
            decoded.append(JobMessage.decode(message.body))
        except InvalidMessage:
            backends.queue.move_to_poison(message)
            poisoned.append(message.body)
        else:
            backends.queue.complete(message)
    assert [m.job_id for m in decoded] == ["abc"]
    assert poisoned == ["{not json"] == backends.queue.peek_poison()


# --- job records ---------------------------------------------------------------------------


def make_job(status: JobStatus = JobStatus.QUEUED, **fields) -> Job:
    job_id = fields.pop("id", None) or new_job_id()
    return Job(id=job_id, status=status, input_blob=f"jobs/{job_id}/input", **fields)


def test_create_and_get_round_trip(backends: Backends) -> None:
    job = make_job(
        params=JobParams(classes=["Cow", "sheep"], threshold=0.4), filename="field.mp4", size_bytes=99
    )
    created = backends.jobs.create(job)
    assert created.etag

    loaded = backends.jobs.get(job.id)
    assert loaded.model_dump() == job.model_dump()
    assert loaded.etag == created.etag

    with pytest.raises(AlreadyExists):
        backends.jobs.create(make_job(id=job.id))
    with pytest.raises(NotFound):
        backends.jobs.get(new_job_id())


def test_update_is_conditional_on_the_etag(backends: Backends) -> None:
    created = backends.jobs.create(make_job())
    reader_a = backends.jobs.get(created.id)
    reader_b = backends.jobs.get(created.id)

    reader_a.status, reader_a.progress = JobStatus.PROCESSING, 0.5
    updated = backends.jobs.update(reader_a)
    assert updated.etag != created.etag
    assert updated.updated_at > created.updated_at

    reader_b.cancel_requested = True
    with pytest.raises(PreconditionFailed):
        backends.jobs.update(reader_b)  # stale etag: B must re-read and retry

    stored = backends.jobs.get(created.id)
    assert (stored.status, stored.progress, stored.cancel_requested) == (JobStatus.PROCESSING, 0.5, False)
    assert stored.etag == updated.etag

    missing = make_job()
    missing.etag = updated.etag
    with pytest.raises(NotFound):
        backends.jobs.update(missing)


def test_concurrent_modify_loses_no_update(backends: Backends) -> None:
    """Two writers race on one record; conditional updates make every change land."""
    job = backends.jobs.create(make_job())
    rounds = 8

    def bump(stored: Job) -> None:
        stored.frames_done += 1

    def writer() -> None:
        for _ in range(rounds):
            backends.jobs.modify(job.id, bump, attempts=50)

    threads = [threading.Thread(target=writer) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert backends.jobs.get(job.id).frames_done == 2 * rounds


def test_list_newest_first_with_status_filter_and_cursor(backends: Backends) -> None:
    statuses = [JobStatus.QUEUED, JobStatus.COMPLETED, JobStatus.FAILED] * 4 + [JobStatus.QUEUED]
    jobs = [backends.jobs.create(make_job(status)) for status in statuses]
    newest_first = sorted((job.id for job in jobs), reverse=True)

    assert collect_pages(backends, status=None, limit=5) == [
        newest_first[:5],
        newest_first[5:10],
        newest_first[10:],
    ]

    queued = sorted((job.id for job in jobs if job.status is JobStatus.QUEUED), reverse=True)
    assert collect_pages(backends, status=JobStatus.QUEUED, limit=2) == [queued[:2], queued[2:4], queued[4:]]
    assert collect_pages(backends, status=JobStatus.CANCELLED, limit=10) == [[]]
    assert collect_pages(backends, status=None, limit=13) == [newest_first]

    page = backends.jobs.list(status=JobStatus.FAILED, limit=50)
    assert all(job.status is JobStatus.FAILED and job.etag for job in page.jobs)


def collect_pages(backends: Backends, status: JobStatus | None, limit: int) -> list[list[str]]:
    """Follow next_cursor to the end; returns the ids on each page."""
    pages, cursor = [], None
    while True:
        page = backends.jobs.list(status=status, limit=limit, cursor=cursor)
        pages.append([job.id for job in page.jobs])
        if page.next_cursor is None:
            return pages
        cursor = page.next_cursor
        assert len(pages) < 20, "pagination does not end"


def test_delete(backends: Backends) -> None:
    job = backends.jobs.create(make_job())
    backends.jobs.delete(job.id)
    with pytest.raises(NotFound):
        backends.jobs.get(job.id)
    backends.jobs.delete(job.id)  # missing is not an error
    assert backends.jobs.list().jobs == []


def test_idempotency_key_returns_the_existing_job(backends: Backends) -> None:
    first = backends.jobs.create(make_job(idempotency_key="upload-42"))
    again = backends.jobs.create(make_job(idempotency_key="upload-42"))
    assert again.id == first.id and again.etag == first.etag
    assert [job.id for job in backends.jobs.list().jobs] == [first.id]

    other = backends.jobs.create(make_job(idempotency_key="upload-43"))
    assert other.id != first.id

    backends.jobs.delete(first.id)  # the key is released with its job
    reused = backends.jobs.create(make_job(idempotency_key="upload-42"))
    assert reused.id not in (first.id, other.id)
    assert backends.jobs.get(reused.id).idempotency_key == "upload-42"


# --- owners (tenants) ------------------------------------------------------------------------


def test_idempotency_keys_are_per_owner(backends: Backends) -> None:
    alice = backends.jobs.create(make_job(owner="alice", idempotency_key="nightly"))
    bob = backends.jobs.create(make_job(owner="bob", idempotency_key="nightly"))
    legacy = backends.jobs.create(make_job(idempotency_key="nightly"))  # the default tenant
    assert len({alice.id, bob.id, legacy.id}) == 3, "one owner's key must never return another's job"
    assert backends.jobs.create(make_job(owner="bob", idempotency_key="nightly")).id == bob.id
    assert backends.jobs.create(make_job(owner="alice", idempotency_key="nightly")).id == alice.id

    backends.jobs.delete(alice.id)  # frees alice's key only
    assert backends.jobs.create(make_job(owner="bob", idempotency_key="nightly")).id == bob.id
    assert backends.jobs.create(make_job(owner="alice", idempotency_key="nightly")).id not in (alice.id, bob.id)


def test_list_by_owner_pages_newest_first_and_follows_status_changes(backends: Backends) -> None:
    mine = [backends.jobs.create(make_job(owner="alice")) for _ in range(5)]
    theirs = [backends.jobs.create(make_job(owner=owner)) for owner in ("bob", "default", "alice-2")]
    newest_first = sorted((job.id for job in mine), reverse=True)

    pages = []
    cursor = None
    while True:
        page = backends.jobs.list(limit=2, cursor=cursor, owner="alice")
        assert all(job.owner == "alice" and job.etag for job in page.jobs)
        pages.append([job.id for job in page.jobs])
        if (cursor := page.next_cursor) is None:
            break
    assert pages == [newest_first[:2], newest_first[2:4], newest_first[4:]]
    assert {job.id for job in backends.jobs.list(limit=50).jobs} == {job.id for job in mine + theirs}
    assert [job.id for job in backends.jobs.list(owner="default").jobs] == [theirs[1].id]

    backends.jobs.modify(mine[0].id, lambda job: setattr(job, "status", JobStatus.FAILED))
    failed = backends.jobs.list(status=JobStatus.FAILED, owner="alice").jobs
    assert [job.id for job in failed] == [mine[0].id]
    queued = backends.jobs.list(status=JobStatus.QUEUED, owner="alice").jobs
    assert mine[0].id not in {job.id for job in queued} and len(queued) == 4
    assert backends.jobs.list(status=JobStatus.FAILED, owner="bob").jobs == []

    backends.jobs.delete(mine[1].id)
    assert mine[1].id not in {job.id for job in backends.jobs.list(owner="alice").jobs}
    assert backends.jobs.get(mine[2].id).owner == "alice"


# --- streaming: memory must not grow with the blob ---------------------------------------------

BIG_BLOB_MB = 300
MAX_RSS_GROWTH_MB = 100


def stream_big_blob_and_measure(settings: Settings, source: Path, destination: Path) -> dict:
    """Run in a fresh process: upload and download a big file every way the API and the
    worker do, and report how far the process's peak RSS rose above its warmed-up level."""
    built = build_backends(settings)
    try:
        built.blobs.upload_stream("warm/up", [b"x" * 1024])  # first-use imports and pools
        read_all(built.blobs.open_range("warm/up"))
        baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

        built.blobs.upload_file("big/from-file", source)
        built.blobs.download_to_file("big/from-file", destination)
        with open(source, "rb") as stream:
            built.blobs.upload_stream("big/from-stream", iter(lambda: stream.read(1024 * 1024), b""))
        streamed = hashlib.sha256()
        for chunk in built.blobs.open_range("big/from-stream"):
            streamed.update(chunk)

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        built.blobs.delete_prefix("big/")
        return {"growth_mb": (peak - baseline) / 1024, "streamed_sha256": streamed.hexdigest()}
    finally:
        built.close()


def write_big_file(path: Path, megabytes: int) -> str:
    digest = hashlib.sha256()
    block = os.urandom(1024 * 1024)
    with open(path, "wb") as out:
        for i in range(megabytes):
            chunk = i.to_bytes(8, "big") + block[8:]
            digest.update(chunk)
            out.write(chunk)
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(1024 * 1024), b""):
            digest.update(chunk)
    return digest.hexdigest()


@pytest.mark.parametrize("backend", ["local", pytest.param("azure", marks=pytest.mark.azurite)])
def test_big_blob_streams_without_growing_memory(backend: str, make_settings, tmp_path: Path) -> None:
    settings = make_settings(backend)
    source, destination = tmp_path / "big.bin", tmp_path / "big-downloaded.bin"
    expected = write_big_file(source, BIG_BLOB_MB)

    with multiprocessing.get_context("spawn").Pool(1) as pool:
        result = pool.apply(stream_big_blob_and_measure, (settings, source, destination))

    assert file_sha256(destination) == expected
    assert result["streamed_sha256"] == expected
    print(f"{backend}: peak RSS growth streaming {BIG_BLOB_MB} MB blobs: {result['growth_mb']:.1f} MB")
    assert result["growth_mb"] < MAX_RSS_GROWTH_MB
