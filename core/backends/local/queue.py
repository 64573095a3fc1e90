"""The job queue and its poison queue as rows of one SQLite table.

A lease is a ``visible_at`` in the future plus a random pop receipt. Receiving claims the
oldest visible row with a single ``UPDATE ... WHERE seq = (SELECT ...) RETURNING``, which
SQLite runs under its one write lock, so two processes can never claim the same message.
Every receive and extension writes a new receipt; an operation carrying an older receipt
matches no row and raises LeaseLost (as Azure does). Times are wall-clock unix seconds
because several processes share them.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

from core.backends.base import JobQueue, QueueMessage
from core.backends.local.database import Database
from core.errors import InvalidInput, LeaseLost

DRAIN_POLL_S = 0.05


class LocalJobQueue(JobQueue):
    """A queue named ``name`` with its poison queue ``poison_name``, in ``database``."""

    def __init__(self, database: Database, name: str, poison_name: str) -> None:
        if name == poison_name:
            raise InvalidInput("the queue and its poison queue need different names")
        self._db = database
        self.name = name
        self.poison_name = poison_name
        self._settled = threading.Condition()  # wakes wait_drained() in this process

    def send(self, body: str) -> str:
        """Enqueue ``body``; returns the new message's id."""
        if not isinstance(body, str):
            raise InvalidInput(f"a queue message body must be text, got {type(body).__name__}")
        with self._db.write() as conn:
            return _insert_message(conn, self.name, body)

    def receive(self, lease: timedelta) -> QueueMessage | None:
        """Claim the oldest visible message for ``lease``; None when none is visible."""
        seconds = _lease_seconds(lease)
        with self._db.write() as conn:
            now = time.time()  # read after taking the lock: waiting for it must not shorten the lease
            row = conn.execute(
                """
                UPDATE queue_messages
                   SET visible_at = :now + :lease, dequeue_count = dequeue_count + 1, pop_receipt = :receipt
                 WHERE seq = (SELECT seq FROM queue_messages
                               WHERE queue = :queue AND visible_at <= :now
                               ORDER BY seq LIMIT 1)
             RETURNING id, body, pop_receipt, dequeue_count, visible_at
                """,
                {"now": now, "lease": seconds, "receipt": _new_receipt(), "queue": self.name},
            ).fetchone()
        return _message(*row) if row else None

    def extend_lease(self, message: QueueMessage, lease: timedelta) -> QueueMessage:
        """Hide the message for ``lease`` from now, under a new pop receipt."""
        seconds = _lease_seconds(lease)
        receipt = _new_receipt()
        with self._db.write() as conn:
            visible_at = time.time() + seconds
            row = conn.execute(
                """
                UPDATE queue_messages SET visible_at = ?, pop_receipt = ?
                 WHERE queue = ? AND id = ? AND pop_receipt = ?
             RETURNING visible_at
                """,
                (visible_at, receipt, self.name, message.id, message.pop_receipt),
            ).fetchone()
        if row is None:
            raise _lease_lost(message)
        return QueueMessage(message.id, message.body, receipt, message.dequeue_count, _to_datetime(row[0]))

    def complete(self, message: QueueMessage) -> None:
        """Delete the message for good."""
        with self._db.write() as conn:
            self._delete_leased(conn, message)
        self._notify_settled()

    def release(self, message: QueueMessage) -> None:
        """Make the message visible again now (its receipt becomes stale)."""
        with self._db.write() as conn:
            updated = conn.execute(
                "UPDATE queue_messages SET visible_at = ?, pop_receipt = NULL "
                "WHERE queue = ? AND id = ? AND pop_receipt = ?",
                (time.time(), self.name, message.id, message.pop_receipt),
            ).rowcount
        if updated != 1:
            raise _lease_lost(message)

    def move_to_poison(self, message: QueueMessage) -> None:
        """Move the message to the poison queue in one transaction (never both, never neither)."""
        with self._db.write() as conn:
            self._delete_leased(conn, message)
            _insert_message(conn, self.poison_name, message.body)
        self._notify_settled()

    def _delete_leased(self, conn: sqlite3.Connection, message: QueueMessage) -> None:
        deleted = conn.execute(
            "DELETE FROM queue_messages WHERE queue = ? AND id = ? AND pop_receipt = ?",
            (self.name, message.id, message.pop_receipt),
        ).rowcount
        if deleted != 1:
            raise _lease_lost(message)

    def approximate_length(self) -> int:
        """Messages in the queue, visible or leased (exact here)."""
        with self._db.read() as conn:
            row = conn.execute("SELECT count(*) FROM queue_messages WHERE queue = ?", (self.name,)).fetchone()
        return int(row[0])

    def peek_poison(self, max_messages: int = 32) -> list[str]:
        """Bodies in the poison queue, oldest first."""
        with self._db.read() as conn:
            rows = conn.execute(
                "SELECT body FROM queue_messages WHERE queue = ? ORDER BY seq LIMIT ?",
                (self.poison_name, max(0, max_messages)),
            ).fetchall()
        return [row[0] for row in rows]

    def wait_drained(self, timeout: float) -> bool:
        """Block until the queue holds no message (visible or leased) or ``timeout`` seconds
        pass; returns whether it drained. For tests and burst runs: it wakes as soon as a
        consumer in this process settles a message, and polls for consumers elsewhere."""
        deadline = time.monotonic() + timeout
        with self._settled:
            while self.approximate_length() > 0:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._settled.wait(min(remaining, DRAIN_POLL_S))
        return True

    def _notify_settled(self) -> None:
        with self._settled:
            self._settled.notify_all()

    def ping(self) -> None:
        self._db.ping()

    def close(self) -> None:
        """Close the shared database connections (Backends.close calls this once per store)."""
        self._db.close()


def _insert_message(conn: sqlite3.Connection, queue: str, body: str) -> str:
    """Add a visible message to ``queue`` inside the caller's transaction; returns its id."""
    message_id, now = str(uuid.uuid4()), time.time()
    conn.execute(
        "INSERT INTO queue_messages (queue, id, body, visible_at, inserted_at) VALUES (?, ?, ?, ?, ?)",
        (queue, message_id, body, now, now),
    )
    return message_id


def _lease_seconds(lease: timedelta) -> float:
    seconds = lease.total_seconds()
    if seconds <= 0:
        raise InvalidInput(f"a lease must be longer than zero, got {lease}")
    return seconds


def _new_receipt() -> str:
    return os.urandom(16).hex()


def _to_datetime(unix_seconds: float) -> datetime:
    return datetime.fromtimestamp(unix_seconds, UTC)


def _message(message_id: str, body: str, receipt: str, dequeue_count: int, visible_at: float) -> QueueMessage:
    return QueueMessage(message_id, body, receipt, dequeue_count, _to_datetime(visible_at))


def _lease_lost(message: QueueMessage) -> LeaseLost:
    return LeaseLost(
        f"queue message {message.id} is no longer ours: it was completed, released, or its lease "
        "expired and another consumer took it"
    )
