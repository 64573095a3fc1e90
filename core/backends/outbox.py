"""The webhook outbox: every event to deliver is its own stored record, so a delivery survives
a killed worker and one job's events (live streams will emit many) never grow its record.

An event is written together with the job state it reports (``JobStore.update(job, event)``,
one transaction), then a sender (``core.webhooks.WebhookSender``) claims due events with a
lease, POSTs them and stores the outcome. Two implementations live beside this file's
neighbours: ``local/outbox.py`` (a table in the local SQLite database) and
``azure/outbox.py`` (entities in the jobs table, in the jobs' partition).
"""

from __future__ import annotations

import abc
import json
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import Enum
from typing import Any
from urllib.parse import urlsplit

from core.errors import CorruptRecord
from core.jobs import Job

# A final state is the last thing that happens to a job: its event is the job's last, after
# any earlier ones (live streams' progress events, later) whatever their sequence numbers.
FINAL_SEQUENCE = 999_999


class DeliveryStatus(str, Enum):
    PENDING = "pending"  # not tried yet
    RETRYING = "retrying"  # tried, failed, will be tried again
    DELIVERED = "delivered"  # the receiver answered 2xx
    FAILED = "failed"  # expired (WEBHOOK_MAX_AGE_S) or undeliverable: given up

    @property
    def is_settled(self) -> bool:
        return self in (DeliveryStatus.DELIVERED, DeliveryStatus.FAILED)


@dataclass(frozen=True)
class WebhookEvent:
    """One webhook to deliver, and how its delivery stands.

    ``body`` is fixed when the event is created, so every retry sends (and signs) the same
    bytes under the same ``id``: a receiver recognises a retry by its ``webhook-id``.
    ``lease`` is the claim token of the sender delivering it now (the backend's etag);
    only the holder of the newest claim may record the outcome.
    """

    id: str
    job_id: str
    sequence: int  # order among the job's events: delivered lowest first
    type: str  # e.g. "job.completed"
    url: str
    body: str
    created_at: datetime
    status: DeliveryStatus = DeliveryStatus.PENDING
    attempts: int = 0
    next_attempt_at: datetime | None = None  # None: now
    leased_until: datetime | None = None
    last_attempt_at: datetime | None = None
    last_error: str | None = None
    delivered_at: datetime | None = None
    lease: str | None = None

    @property
    def destination(self) -> str:
        """Deliveries to one destination (scheme, host and port) run one at a time, so a
        receiver that hangs holds up only its own events."""
        parts = urlsplit(self.url)
        host = parts.hostname or ""  # lowercased, without any user:password@ (this is logged)
        host = f"[{host}]" if ":" in host else host
        return f"{parts.scheme}://{host}" + (f":{parts.port}" if parts.port else "")

    def with_outcome(self, status: DeliveryStatus, **changes: Any) -> WebhookEvent:
        return replace(self, status=status, **changes)


def event_id(job_id: str, sequence: int) -> str:
    """Derived from the job and its place in it, never random: writing the same event twice
    (a redelivered message) finds the first one instead of sending a duplicate."""
    return f"evt_{job_id}_{sequence:06d}"


EventFactory = Callable[[Job], "WebhookEvent | None"]
"""Given the job exactly as it is about to be stored, the event reporting it (or None)."""


class OutboxStore(abc.ABC):
    """Stored webhook events. Methods are synchronous, thread-safe, and raise only
    ``core.errors`` types."""

    @abc.abstractmethod
    def add(self, event: WebhookEvent) -> bool:
        """Store ``event`` unless an event with its id exists already; True if it was new.
        (Use ``JobStore.update(job, event)`` to write an event with a job change.)"""

    @abc.abstractmethod
    def claim(self, now: datetime, lease: timedelta, limit: int, busy: Collection[str] = ()) -> list[WebhookEvent]:
        """Lease up to ``limit`` due events for delivery and return them.

        Only the lowest-sequence unsettled event of each job is eligible (a job's events go
        out in order), none whose lease is still running, at most one per destination and
        none for the destinations in ``busy`` (being delivered to by this sender now)."""

    @abc.abstractmethod
    def save(self, event: WebhookEvent) -> WebhookEvent:
        """Store the outcome of a delivery attempt (status, attempts, errors, next attempt),
        ending the lease. Raises LeaseLost if another sender has claimed the event since."""

    @abc.abstractmethod
    def latest(self, job_id: str) -> WebhookEvent | None:
        """The job's event with the highest sequence (the one GET /jobs/{id} reports)."""

    @abc.abstractmethod
    def events(self, job_id: str) -> list[WebhookEvent]:
        """All of the job's events, in sequence order."""


def claimable(unsettled: Iterable[WebhookEvent], now: datetime, limit: int, busy: Collection[str]) -> list[WebhookEvent]:
    """The events ``claim`` may lease, from every unsettled event in (job, sequence) order."""
    heads: dict[str, WebhookEvent] = {}
    for event in unsettled:
        heads.setdefault(event.job_id, event)  # the first seen of a job is its lowest sequence
    taken: set[str] = set(busy)
    chosen: list[WebhookEvent] = []
    due = (e for e in heads.values() if _is_due(e, now))
    for event in sorted(due, key=lambda e: (e.next_attempt_at or e.created_at, e.created_at)):
        if len(chosen) == limit:
            break
        if event.destination not in taken:
            taken.add(event.destination)
            chosen.append(event)
    return chosen


def _is_due(event: WebhookEvent, now: datetime) -> bool:
    if event.leased_until is not None and event.leased_until > now:
        return False
    return event.next_attempt_at is None or event.next_attempt_at <= now


# --- the stored form (both backends keep the event as one JSON record) ----------------

_TIMES = ("created_at", "next_attempt_at", "leased_until", "last_attempt_at", "delivered_at")


def to_record(event: WebhookEvent) -> str:
    """JSON text of the event (the lease token is the store's business, not part of it)."""
    fields = {name: getattr(event, name) for name in WebhookEvent.__dataclass_fields__ if name != "lease"}
    for name in _TIMES:
        fields[name] = fields[name].isoformat() if fields[name] is not None else None
    fields["status"] = event.status.value
    return json.dumps(fields)


def from_record(text: str, lease: str | None) -> WebhookEvent:
    """Raises CorruptRecord for a record that cannot be read."""
    try:
        fields = json.loads(text)
        for name in _TIMES:
            fields[name] = datetime.fromisoformat(fields[name]) if fields.get(name) else None
        fields["status"] = DeliveryStatus(fields["status"])
        return WebhookEvent(**fields, lease=lease)
    except (ValueError, TypeError, KeyError) as exc:
        raise CorruptRecord(f"a webhook event record cannot be read: {exc}") from None
