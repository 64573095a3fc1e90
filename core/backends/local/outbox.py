"""The webhook outbox in the local SQLite database: one ``webhook_events`` row per event.

An event is inserted in the same transaction as the job change it reports (``insert_event``,
called by ``LocalJobStore.update``). A claim reads the candidates (the earliest due event of
each destination that is first in its job) and leases the chosen ones in one write
transaction, so two worker processes never claim the same event; the lease token is the
row's version, which every write bumps.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection
from dataclasses import replace
from datetime import datetime, timedelta

from core.backends.local.database import Database
from core.backends.outbox import OutboxStore, WebhookEvent, claimable, from_record, to_record
from core.errors import LeaseLost


def insert_event(conn: sqlite3.Connection, event: WebhookEvent) -> bool:
    """Insert ``event`` in the caller's transaction unless its id exists; True if inserted."""
    cursor = conn.execute(
        "INSERT INTO webhook_events (id, job_id, sequence, destination, settled, due_at, record) "
        "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        (event.id, event.job_id, event.sequence, event.destination, int(event.status.is_settled),
         _due_at(event), to_record(event)),
    )
    return cursor.rowcount == 1


def delete_events(conn: sqlite3.Connection, job_id: str) -> None:
    conn.execute("DELETE FROM webhook_events WHERE job_id = ?", (job_id,))


def _due_at(event: WebhookEvent) -> float:
    """When the event may next be claimed: its next attempt, or the end of its lease."""
    times = [event.next_attempt_at or event.created_at, event.leased_until or event.created_at]
    return max(times).timestamp()


# The earliest due event of each destination, if it is its job's first unsettled one: at most
# one candidate per destination, so a destination with a long backlog hides no one else's.
CANDIDATES = """
SELECT record, version, MIN(due_at) FROM webhook_events AS event
WHERE settled = 0 AND due_at <= :now AND NOT EXISTS (
    SELECT 1 FROM webhook_events AS earlier
    WHERE earlier.job_id = event.job_id AND earlier.settled = 0 AND earlier.sequence < event.sequence)
GROUP BY destination
"""


class LocalOutbox(OutboxStore):
    def __init__(self, database: Database) -> None:
        self._db = database

    def add(self, event: WebhookEvent) -> bool:
        with self._db.write() as conn:
            return insert_event(conn, event)

    def claim(self, now: datetime, lease: timedelta, limit: int, busy: Collection[str] = ()) -> list[WebhookEvent]:
        leased_until = now + lease
        with self._db.write() as conn:  # read and lease in one transaction: no other claimer between
            rows = conn.execute(CANDIDATES, {"now": now.timestamp()}).fetchall()
            chosen = claimable((from_record(r, str(v)) for r, v, _ in rows), now, limit, busy)
            claimed = []
            for event in chosen:
                assert event.lease is not None  # from_record gave it the row's version
                leased = replace(event, leased_until=leased_until)
                conn.execute(
                    "UPDATE webhook_events SET record = ?, due_at = ?, version = version + 1 WHERE id = ?",
                    (to_record(leased), _due_at(leased), event.id),
                )
                claimed.append(replace(leased, lease=str(int(event.lease) + 1)))
        return claimed

    def save(self, event: WebhookEvent) -> WebhookEvent:
        stored = replace(event, leased_until=None)
        with self._db.write() as conn:
            row = conn.execute(
                "UPDATE webhook_events SET record = ?, settled = ?, due_at = ?, version = version + 1 "
                "WHERE id = ? AND version = ? RETURNING version",
                (to_record(stored), int(stored.status.is_settled), _due_at(stored), event.id, _version(event)),
            ).fetchone()
        if row is None:
            raise LeaseLost(f"webhook event {event.id} was claimed by another sender (or deleted)")
        return replace(stored, lease=str(row[0]))

    def latest(self, job_id: str) -> WebhookEvent | None:
        with self._db.read() as conn:
            row = conn.execute(
                "SELECT record, version FROM webhook_events WHERE job_id = ? ORDER BY sequence DESC LIMIT 1",
                (job_id,),
            ).fetchone()
        return None if row is None else from_record(row[0], str(row[1]))

    def events(self, job_id: str) -> list[WebhookEvent]:
        with self._db.read() as conn:
            rows = conn.execute(
                "SELECT record, version FROM webhook_events WHERE job_id = ? ORDER BY sequence", (job_id,)
            ).fetchall()
        return [from_record(record, str(version)) for record, version in rows]

    def close(self) -> None:
        """Close the shared database connections (Backends.close calls this once per store)."""
        self._db.close()


def _version(event: WebhookEvent) -> int:
    try:
        return int(event.lease)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise LeaseLost(f"webhook event {event.id} is not claimed: claim it before saving") from None
