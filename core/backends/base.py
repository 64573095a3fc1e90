"""The storage interfaces every backend implements: blobs, the job queue, job records (and
the webhook outbox, in ``outbox.py``).

Two implementations of each live beside this file: ``local`` (files + SQLite, for one
machine) and ``azure`` (Blob, Queue and Table storage). All methods are synchronous and
thread-safe; they raise only errors from ``core.errors``.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import BinaryIO

from core.backends.outbox import EventFactory, OutboxStore
from core.errors import PreconditionFailed
from core.jobs import Job, JobKind, JobStatus

# --- blobs ---------------------------------------------------------------------------


@dataclass(frozen=True)
class BlobInfo:
    path: str
    size: int
    content_type: str | None = None
    etag: str | None = None
    last_modified: datetime | None = None


class BlobStore(abc.ABC):
    """Named byte objects ("blobs") addressed by '/'-separated paths, e.g. ``jobs/<id>/input``.

    Implementations must never hold a whole blob in memory: uploads and downloads are
    streamed in chunks.
    """

    @abc.abstractmethod
    def upload_file(self, path: str, source: Path, content_type: str | None = None) -> BlobInfo:
        """Store the local file ``source`` at ``path`` (overwriting)."""

    @abc.abstractmethod
    def upload_stream(
        self, path: str, chunks: BinaryIO | Iterable[bytes], content_type: str | None = None
    ) -> BlobInfo:
        """Store a file-like object or an iterable of byte chunks at ``path`` (overwriting)."""

    def write_small(self, path: str, data: bytes, content_type: str | None = None) -> BlobInfo:
        """Store a small blob (a stream's secret, an upload's reservation, a manifest, a model
        card, a stream's state): a few KB, written like metadata, so a store that stops
        answering fails it within STORAGE_DEADLINE_S, not a transfer's stall timeout."""
        return self.upload_stream(path, [data], content_type)

    def read_small(self, path: str) -> bytes:
        """A small blob's bytes (see ``write_small``), within STORAGE_DEADLINE_S. Raises NotFound."""
        return b"".join(self.open_range(path))

    @abc.abstractmethod
    def write_if(self, path: str, data: bytes, if_match: str | None, content_type: str | None = None) -> BlobInfo:
        """Store the small document ``data`` at ``path`` only if the blob is still as the caller
        read it: its etag equals ``if_match``, or, with ``if_match`` None, there is no blob there
        yet. Check and write are one atomic step against every other ``write_if``, and a blob's
        etag never comes back after it changed, so of two writers that read the same version
        exactly one succeeds. Raises PreconditionFailed for the other (read again, retry)."""

    @abc.abstractmethod
    def download_to_file(self, path: str, destination: Path) -> BlobInfo:
        """Write the blob to ``destination``. Raises NotFound."""

    @abc.abstractmethod
    def open_range(self, path: str, start: int = 0, length: int | None = None) -> Iterator[bytes]:
        """Yield the bytes ``[start, start+length)`` of the blob in chunks. Raises NotFound."""

    @abc.abstractmethod
    def info(self, path: str) -> BlobInfo:
        """Size and metadata of a blob. Raises NotFound."""

    @abc.abstractmethod
    def exists(self, path: str) -> bool: ...

    @abc.abstractmethod
    def delete(self, path: str) -> None:
        """Delete a blob; deleting a missing blob is not an error."""

    @abc.abstractmethod
    def list(self, prefix: str = "") -> Iterator[BlobInfo]:
        """Blobs whose path starts with ``prefix``, in path order."""

    def delete_prefix(self, prefix: str) -> int:
        """Delete every blob under ``prefix``; returns how many were deleted."""
        paths = [blob.path for blob in self.list(prefix)]
        for path in paths:
            self.delete(path)
        return len(paths)

    @abc.abstractmethod
    def read_url(self, path: str, expires_in: timedelta, content_disposition: str | None = None) -> str | None:
        """A time-limited URL a client can GET the blob from, or None if the backend has
        none (the local backend: the API streams the blob itself). ``content_disposition``:
        the Content-Disposition the response is to carry (e.g. an attachment's file name)."""

    @abc.abstractmethod
    def write_url(self, path: str, expires_in: timedelta) -> str | None:
        """A time-limited URL a client can PUT the blob to, or None (local backend: the
        API serves an upload endpoint instead)."""

    @abc.abstractmethod
    def ping(self) -> None:
        """Raise StorageUnavailable unless the store answers."""


# --- queue -----------------------------------------------------------------------------


@dataclass(frozen=True)
class QueueMessage:
    """A received message. ``pop_receipt`` proves we hold the lease; every lease extension
    returns a new message with a new receipt, and only the newest one is valid."""

    id: str
    body: str
    pop_receipt: str
    dequeue_count: int
    visible_at: datetime | None = None


class JobQueue(abc.ABC):
    """An at-least-once queue with leases (Azure's visibility timeout)."""

    @abc.abstractmethod
    def send(self, body: str) -> str:
        """Enqueue a message; returns its id."""

    @abc.abstractmethod
    def receive(self, lease: timedelta) -> QueueMessage | None:
        """Take the next visible message and hide it for ``lease``; None if the queue is empty.
        ``dequeue_count`` counts deliveries, this one included."""

    @abc.abstractmethod
    def extend_lease(self, message: QueueMessage, lease: timedelta) -> QueueMessage:
        """Hide the message for another ``lease`` from now. Returns the message with its new
        pop receipt. Raises LeaseLost if the receipt is stale."""

    @abc.abstractmethod
    def complete(self, message: QueueMessage) -> None:
        """Delete the message for good. Raises LeaseLost if the receipt is stale."""

    @abc.abstractmethod
    def release(self, message: QueueMessage) -> None:
        """Make the message visible again now. Raises LeaseLost if the receipt is stale."""

    @abc.abstractmethod
    def move_to_poison(self, message: QueueMessage) -> None:
        """Copy the message to the poison queue and delete it here. Raises LeaseLost."""

    @abc.abstractmethod
    def approximate_length(self) -> int:
        """Messages in the queue, visible or leased (what KEDA scales on)."""

    @abc.abstractmethod
    def peek_poison(self, max_messages: int = 32) -> list[str]:
        """Bodies of messages in the poison queue (for operators and tests)."""

    @abc.abstractmethod
    def ping(self) -> None:
        """Raise StorageUnavailable unless the queue answers."""


# --- job records ---------------------------------------------------------------------


@dataclass(frozen=True)
class JobPage:
    jobs: list[Job]
    next_cursor: str | None


class JobStore(abc.ABC):
    """Job records with optimistic concurrency: every read returns ``job.etag`` and every
    update is conditional on it, so two writers never silently overwrite each other."""

    @abc.abstractmethod
    def create(self, job: Job) -> Job:
        """Insert a new job and return it with its etag.

        If ``job.idempotency_key`` is set and a job of the same ``job.owner`` with that key
        already exists, nothing is inserted and the existing job is returned (compare ids to
        tell). Two owners may use the same key and get two jobs. Raises AlreadyExists
        if a job with the same id exists."""

    @abc.abstractmethod
    def get(self, job_id: str) -> Job:
        """Raises NotFound."""

    @abc.abstractmethod
    def update(self, job: Job, event: EventFactory | None = None) -> Job:
        """Replace the record if its stored etag still equals ``job.etag``; returns the job with
        its new etag and ``updated_at`` set to now. Raises PreconditionFailed or NotFound.

        ``event``: called with the job as it is about to be stored; the webhook event it
        returns (if any) is added to the outbox in the same atomic write, so the event exists
        if and only if the state it reports does. An event whose id is stored already is
        left as it is (the job is still updated)."""

    @abc.abstractmethod
    def list(
        self, status: JobStatus | None = None, limit: int = 50, cursor: str | None = None, owner: str | None = None
    ) -> JobPage:
        """Jobs newest first, optionally only one status and only one ``owner``'s (None: every
        owner's). ``cursor`` is the opaque ``next_cursor`` of the previous page. Listing one
        owner's jobs reads that owner's jobs only, not every job."""

    @abc.abstractmethod
    def delete(self, job_id: str) -> None:
        """Delete the record (and its idempotency key and webhook events); missing is not an error."""

    @abc.abstractmethod
    def ping(self) -> None:
        """Raise StorageUnavailable unless the store answers."""

    def modify(
        self, job_id: str, change: Callable[[Job], bool | None], attempts: int = 8, event: EventFactory | None = None
    ) -> Job:
        """Read-modify-write with optimistic concurrency.

        ``change`` mutates the job it is given; returning False means "nothing to write".
        On a concurrent update the record is read again and ``change`` re-applied, so the
        change is never lost and never overwrites someone else's. ``event``: as in
        ``update``. Raises NotFound, or PreconditionFailed if the record kept changing for
        ``attempts`` tries.
        """
        for _ in range(attempts):
            job = self.get(job_id)
            if change(job) is False:
                return job
            try:
                return self.update(job, event)
            except PreconditionFailed:
                continue
        raise PreconditionFailed(f"job {job_id} kept changing; gave up after {attempts} attempts")


@dataclass(frozen=True)
class Backends:
    """The stores a process works with, built once at start-up by ``build_backends``."""

    blobs: BlobStore
    queue: JobQueue  # file jobs (video, images)
    jobs: JobStore
    outbox: OutboxStore  # webhook events; shares the job store's database or table
    stream_queue: JobQueue  # live streams: their own queue, so hours-long streams never hold up files

    def queue_for(self, kind: JobKind) -> JobQueue:
        """The queue a job of ``kind`` is sent to."""
        return self.stream_queue if kind is JobKind.STREAM else self.queue

    def close(self) -> None:
        for store in (self.blobs, self.queue, self.stream_queue, self.jobs, self.outbox):
            close = getattr(store, "close", None)
            if close is not None:
                close()
