"""Job records in SQLite: the record as JSON text, an integer version as the etag.

Job ids are time-ordered (``core.jobs.new_job_id``), so "newest first" is ``ORDER BY id
DESC`` and the pagination cursor is simply the last id of the previous page. One owner's
listing walks the ``(owner, id)`` index, so it reads that owner's rows only. Idempotency keys
are unique per owner: the ``owner_idempotency_key`` column holds "owner\nkey".
"""

from __future__ import annotations

import sqlite3

from core.backends.base import JobPage, JobStore
from core.backends.local.database import Database
from core.backends.local.outbox import delete_events, insert_event
from core.backends.outbox import EventFactory
from core.backends.paging import check_page_size, decode_cursor, encode_cursor
from core.errors import AlreadyExists, NotFound, PreconditionFailed
from core.jobs import Job, JobStatus, utcnow


class LocalJobStore(JobStore):
    """Job records in the ``jobs`` table of ``database``."""

    def __init__(self, database: Database) -> None:
        self._db = database

    def create(self, job: Job) -> Job:
        """Insert ``job``; with an idempotency key already in use, return that job instead."""
        owner_key = _owner_key(job)
        with self._db.write() as conn:
            if owner_key is not None:
                existing = conn.execute(
                    "SELECT record, version FROM jobs WHERE owner_idempotency_key = ?", (owner_key,)
                ).fetchone()
                if existing:
                    return Job.from_record(existing[0], str(existing[1]))
            try:
                conn.execute(
                    "INSERT INTO jobs (id, status, owner, owner_idempotency_key, version, record) "
                    "VALUES (?, ?, ?, ?, 1, ?)",
                    (job.id, job.status.value, job.owner, owner_key, job.to_record()),
                )
            except sqlite3.IntegrityError:
                raise AlreadyExists(f"a job with id {job.id} already exists") from None
        return _with_etag(job, 1)

    def get(self, job_id: str) -> Job:
        with self._db.read() as conn:
            row = conn.execute("SELECT record, version FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise NotFound(f"job {job_id} does not exist")
        return Job.from_record(row[0], str(row[1]))

    def update(self, job: Job, event: EventFactory | None = None) -> Job:
        """Replace the record if its version still equals ``job.etag`` (and add ``event``'s
        webhook event in the same transaction)."""
        expected = _version(job)
        updated = job.model_copy(update={"updated_at": utcnow()})
        new_event = event(updated) if event is not None else None
        with self._db.write() as conn:
            row = conn.execute(
                "UPDATE jobs SET record = ?, status = ?, version = version + 1 "
                "WHERE id = ? AND version = ? RETURNING version",
                (updated.to_record(), updated.status.value, job.id, expected),
            ).fetchone()
            if row is None:
                exists = conn.execute("SELECT 1 FROM jobs WHERE id = ?", (job.id,)).fetchone()
            elif new_event is not None:
                insert_event(conn, new_event)
        if row is None:
            if not exists:
                raise NotFound(f"job {job.id} does not exist")
            raise PreconditionFailed(f"job {job.id} was changed by someone else since it was read")
        return _with_etag(updated, row[0])

    def list(
        self, status: JobStatus | None = None, limit: int = 50, cursor: str | None = None, owner: str | None = None
    ) -> JobPage:
        """Jobs newest first (optionally one status, one owner), ``limit`` per page."""
        check_page_size(limit)
        where, args = ["1 = 1"], []
        if owner is not None:
            where.append("owner = ?")
            args.append(owner)
        if status is not None:
            where.append("status = ?")
            args.append(JobStatus(status).value)
        if cursor:
            where.append("id < ?")
            args.append(decode_cursor(cursor))
        sql = f"SELECT record, version FROM jobs WHERE {' AND '.join(where)} ORDER BY id DESC LIMIT ?"
        with self._db.read() as conn:
            rows = conn.execute(sql, (*args, limit + 1)).fetchall()
        jobs = [Job.from_record(record, str(version)) for record, version in rows[:limit]]
        more = len(rows) > limit
        return JobPage(jobs=jobs, next_cursor=encode_cursor(jobs[-1].id) if more else None)

    def delete(self, job_id: str) -> None:
        """Delete the record; its idempotency key goes with it (same row), and its webhook events."""
        with self._db.write() as conn:
            conn.execute("DELETE FROM jobs WHERE id = ?", (job_id,))
            delete_events(conn, job_id)

    def ping(self) -> None:
        self._db.ping()

    def close(self) -> None:
        """Close the shared database connections (Backends.close calls this once per store)."""
        self._db.close()


def _owner_key(job: Job) -> str | None:
    """The job's idempotency key qualified by its owner (keys are printable: no newline)."""
    return None if job.idempotency_key is None else f"{job.owner}\n{job.idempotency_key}"


def _version(job: Job) -> int:
    try:
        return int(job.etag)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise PreconditionFailed(
            f"job {job.id} has no valid etag ({job.etag!r}): read it from the store before updating"
        ) from None


def _with_etag(job: Job, version: int) -> Job:
    stored = job.model_copy()
    stored.etag = str(version)
    return stored
