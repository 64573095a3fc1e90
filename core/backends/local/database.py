"""The local backend's one SQLite database (WAL mode), shared by the queue and the job store.

Several threads and several worker processes on one machine use the same file. SQLite
connections must not cross threads or a ``fork``, so every (process, thread) pair opens its
own connection. Writes run in ``BEGIN IMMEDIATE`` transactions: the write lock is taken up
front, so two writers queue on ``busy_timeout`` instead of failing half-way through.
sqlite3 errors never leave this module: they become ``core.errors`` types.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from core.errors import StorageError, StorageUnavailable
from core.jobs import DEFAULT_OWNER

DEFAULT_BUSY_TIMEOUT_S = 4.0  # STORAGE_DEADLINE_S's default

SCHEMA = """
CREATE TABLE IF NOT EXISTS queue_messages (
    seq            INTEGER PRIMARY KEY AUTOINCREMENT,  -- FIFO order
    queue          TEXT    NOT NULL,
    id             TEXT    NOT NULL UNIQUE,
    body           TEXT    NOT NULL,
    visible_at     REAL    NOT NULL,                   -- unix seconds; > now while leased
    dequeue_count  INTEGER NOT NULL DEFAULT 0,
    pop_receipt    TEXT,
    inserted_at    REAL    NOT NULL
);
CREATE INDEX IF NOT EXISTS queue_messages_visible ON queue_messages (queue, visible_at, seq);

CREATE TABLE IF NOT EXISTS jobs (
    id               TEXT    PRIMARY KEY,
    status           TEXT    NOT NULL,
    idempotency_key  TEXT    UNIQUE,                   -- unused since owners: see add_job_owners
    version          INTEGER NOT NULL,                 -- the etag
    record           TEXT    NOT NULL                  -- Job.to_record() JSON
);
CREATE INDEX IF NOT EXISTS jobs_status ON jobs (status, id);

-- The webhook outbox (core/backends/outbox.py): one row per event.
CREATE TABLE IF NOT EXISTS webhook_events (
    id           TEXT    PRIMARY KEY,
    job_id       TEXT    NOT NULL,
    sequence     INTEGER NOT NULL,                    -- a job's events go out in this order
    destination  TEXT    NOT NULL,                    -- scheme://host:port, one delivery at a time
    settled      INTEGER NOT NULL DEFAULT 0,          -- 1: delivered or failed
    due_at       REAL    NOT NULL,                    -- unix seconds: next attempt, or lease end
    version      INTEGER NOT NULL DEFAULT 1,          -- the lease token
    record       TEXT    NOT NULL                     -- outbox.to_record() JSON
);
CREATE INDEX IF NOT EXISTS webhook_events_due ON webhook_events (settled, due_at);
CREATE INDEX IF NOT EXISTS webhook_events_job ON webhook_events (job_id, sequence);

CREATE TABLE IF NOT EXISTS blob_meta (
    path          TEXT PRIMARY KEY,
    content_type  TEXT
);
"""


def add_job_owners(conn: sqlite3.Connection) -> None:
    """Give the jobs table its owner columns (idempotent; run inside a write transaction).

    The first schema made ``idempotency_key`` unique across all jobs, and SQLite cannot drop a
    column's UNIQUE. So keys now live in ``owner_idempotency_key`` ("owner\nkey", unique), the
    old column stays NULL, and keys recorded before owners move over as the default tenant's.
    """
    columns = {row[1] for row in conn.execute("PRAGMA table_info(jobs)")}
    if "owner" not in columns:
        conn.execute(f"ALTER TABLE jobs ADD COLUMN owner TEXT NOT NULL DEFAULT '{DEFAULT_OWNER}'")
    if "owner_idempotency_key" not in columns:
        conn.execute("ALTER TABLE jobs ADD COLUMN owner_idempotency_key TEXT")
    conn.execute(
        "UPDATE jobs SET owner_idempotency_key = owner || char(10) || idempotency_key, idempotency_key = NULL "
        "WHERE idempotency_key IS NOT NULL"
    )
    conn.execute("CREATE UNIQUE INDEX IF NOT EXISTS jobs_owner_key ON jobs (owner_idempotency_key)")
    conn.execute("CREATE INDEX IF NOT EXISTS jobs_owner ON jobs (owner, id)")
    conn.execute("CREATE INDEX IF NOT EXISTS jobs_owner_status ON jobs (owner, status, id)")


class Database:
    """Per-thread SQLite connections to one WAL-mode database file."""

    def __init__(self, path: Path, busy_timeout_s: float = DEFAULT_BUSY_TIMEOUT_S) -> None:
        self.path = Path(path)
        self.busy_timeout_s = busy_timeout_s
        self._local = threading.local()
        self._all: list[_Owned] = []  # every connection opened, and who opened it
        self._all_lock = threading.Lock()
        self._closed = False

    def create_schema(self) -> None:
        """Create the file, switch it to WAL and create the tables (idempotent, race-safe)."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageUnavailable(f"cannot create the data directory {self.path.parent}: {exc}") from None
        with self.errors("switching the database to WAL mode"):
            mode = self.connection().execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StorageError(
                f"SQLite at {self.path} refused WAL mode (got {mode!r}); is it on a network drive?"
            )
        with self.errors("creating the tables"):
            self.connection().executescript("BEGIN IMMEDIATE;" + SCHEMA + "COMMIT;")
        with self.write() as conn:
            add_job_owners(conn)

    def connection(self) -> sqlite3.Connection:
        """This thread's connection, opened on first use (and again after a fork)."""
        if self._closed:
            raise StorageUnavailable("the local storage backend has been closed")
        conn = getattr(self._local, "conn", None)
        if conn is None or self._local.pid != os.getpid():
            conn = self._open()
            self._local.conn, self._local.pid = conn, os.getpid()
        return conn

    def _open(self) -> sqlite3.Connection:
        with self.errors(f"opening {self.path}"):
            # isolation_level=None: we issue BEGIN/COMMIT ourselves.
            conn = sqlite3.connect(
                self.path, timeout=self.busy_timeout_s, isolation_level=None, check_same_thread=False
            )
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_s * 1000)}")
            # WAL + NORMAL survives a crashed process; only a power cut can lose the last commits.
            conn.execute("PRAGMA synchronous = NORMAL")
        with self._all_lock:
            self._all = [owned for owned in self._all if owned.keep()]
            self._all.append(_Owned(conn, threading.current_thread(), os.getpid()))
        return conn

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction holding the database's write lock from the start."""
        conn = self.connection()
        with self.errors("writing to the job database"):
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                if conn.in_transaction:  # SQLite rolls back by itself after some errors
                    conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """A connection for reads (each statement sees one consistent snapshot)."""
        with self.errors("reading the job database"):
            yield self.connection()

    @contextmanager
    def errors(self, doing: str) -> Iterator[None]:
        """Convert sqlite3 errors raised while ``doing`` something into core.errors."""
        try:
            yield
        except sqlite3.OperationalError as exc:
            raise StorageUnavailable(f"SQLite database {self.path} failed while {doing}: {exc}") from None
        except sqlite3.Error as exc:
            raise StorageError(f"SQLite database {self.path} failed while {doing}: {exc}") from None

    def ping(self) -> None:
        with self.read() as conn:
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()

    def close(self) -> None:
        """Close every connection this object opened (from any thread)."""
        self._closed = True
        with self._all_lock:
            owned, self._all = self._all, []
        for entry in owned:
            if entry.pid == os.getpid():
                _close_quietly(entry.conn)


@dataclass(frozen=True)
class _Owned:
    conn: sqlite3.Connection
    thread: threading.Thread
    pid: int

    def keep(self) -> bool:
        """Whether to keep tracking this connection. Thread pools (anyio's, for one) retire idle
        threads and start new ones, so connections of finished threads are closed here or
        they would pile up; ones inherited through fork belong to the parent: left alone."""
        if self.pid != os.getpid():
            return False
        if not self.thread.is_alive():
            _close_quietly(self.conn)
            return False
        return True


def _close_quietly(conn: sqlite3.Connection) -> None:
    # another thread is mid-statement on it; the connection is going away anyway
    with suppress(sqlite3.Error):
        conn.close()
