"""The webhook outbox in Azure Table storage: one entity per event, in the jobs table.

Events live in the jobs' own partition (see ``jobs.py``), so an event and the job state it
reports are written in one entity-group transaction: both or neither. RowKeys::

    ~evt-<job id>-<sequence, 6 digits>     unsettled (pending or retrying)
    ~evs-<job id>-<sequence, 6 digits>     settled (delivered or failed)

``~`` sorts after every job RowKey (hex), so events never appear in job listings, and a
job's events sort in sequence order. Settling an event moves it (delete + insert, one
transaction) to the settled range, so a claim scans only the events still to deliver, not
every event ever sent. The claim lease is the entity's ETag: a claim is a conditional
update, so of two senders racing for an event only one wins, and an outcome is saved only
by the sender holding the newest claim.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import TableClient, TableServiceClient, TableTransactionError, UpdateMode

from core.backends.azure.clients import AzureOptions
from core.backends.azure.errors import azure_errors
from core.backends.deadline import DeadlineRunner, bounded
from core.backends.outbox import OutboxStore, WebhookEvent, claimable, from_record, to_record
from core.errors import InvalidInput, LeaseLost, PreconditionFailed

PARTITION = "jobs"  # the jobs' partition: one transaction can write a job and its event
UNSETTLED_PREFIX = "~evt-"
SETTLED_PREFIX = "~evs-"
RECORD_PART_CHARS = 16_000  # a string property holds at most 64 KiB
MAX_RECORD_PARTS = 60  # ~1 MiB: the service's limit for a whole entity


def event_row_key(event: WebhookEvent, settled: bool | None = None) -> str:
    settled = event.status.is_settled if settled is None else settled
    prefix = SETTLED_PREFIX if settled else UNSETTLED_PREFIX
    return f"{prefix}{event.job_id}-{event.sequence:06d}"


def event_entity(event: WebhookEvent) -> dict[str, Any]:
    record = to_record(event)
    parts = [record[i : i + RECORD_PART_CHARS] for i in range(0, len(record), RECORD_PART_CHARS)]
    if len(parts) > MAX_RECORD_PARTS:
        raise InvalidInput(f"webhook event {event.id} is {len(record)} characters, too large for Azure Table storage")
    entity: dict[str, Any] = {
        "PartitionKey": PARTITION,
        "RowKey": event_row_key(event),
        "job_id": event.job_id,
        "status": event.status.value,
        "record_parts": len(parts),
        "record": parts[0],
    }
    for index, part in enumerate(parts[1:], start=1):
        entity[f"record_{index}"] = part
    return entity


def event_from_entity(entity: Any) -> WebhookEvent:
    parts = int(entity.get("record_parts", 1))
    record = entity["record"] + "".join(entity[f"record_{i}"] for i in range(1, parts))
    return from_record(record, entity.metadata["etag"])


def range_filter(prefix: str) -> tuple[str, dict[str, str]]:
    """The query for the RowKeys that start with ``prefix`` (ending in "-"), in key order."""
    return (
        "PartitionKey eq @partition and RowKey gt @start and RowKey lt @end",
        {"partition": PARTITION, "start": prefix, "end": prefix[:-1] + "."},  # "." sorts right after "-"
    )


def job_event_ranges(job_id: str) -> list[str]:
    """The key prefixes of one job's unsettled and settled events."""
    return [f"{UNSETTLED_PREFIX}{job_id}-", f"{SETTLED_PREFIX}{job_id}-"]


def is_settled(table: TableClient, event: WebhookEvent, endpoint: str) -> bool:
    """Whether ``event`` (by job and sequence) was delivered or given up on already."""
    with azure_errors(f"reading webhook event {event.id}", endpoint):
        try:
            table.get_entity(PARTITION, event_row_key(event, settled=True), select=["RowKey"])
        except ResourceNotFoundError:
            return False
    return True


class AzureOutbox(OutboxStore):
    """Every public method answers or fails within ``options.deadline_s`` (see core/backends/deadline.py)."""

    def __init__(self, service: TableServiceClient, table_name: str, options: AzureOptions | None = None) -> None:
        self._table: TableClient = service.get_table_client(table_name)
        self.endpoint = self._table.url
        deadline_s = (options or AzureOptions()).deadline_s
        self._deadline = DeadlineRunner(deadline_s, f"Azure Table storage at {self.endpoint}")

    @bounded("storing a webhook event")
    def add(self, event: WebhookEvent) -> bool:
        if is_settled(self._table, event, self.endpoint):
            return False  # sent already: storing it again would send it again
        with azure_errors(f"storing webhook event {event.id}", self.endpoint):
            try:
                self._table.create_entity(event_entity(event))
            except ResourceExistsError:
                return False
        return True

    @bounded("reading the webhook outbox")
    def claim(self, now: datetime, lease: timedelta, limit: int, busy: Collection[str] = ()) -> list[WebhookEvent]:
        query, parameters = range_filter(UNSETTLED_PREFIX)
        with azure_errors("reading the webhook outbox", self.endpoint):
            events = [event_from_entity(e) for e in self._table.query_entities(query, parameters=parameters)]
        claimed = []
        for event in claimable(events, now, limit, busy):  # events are in (job, sequence) order
            leased = replace(event, leased_until=now + lease)
            try:
                claimed.append(self._write(leased, f"claiming webhook event {event.id}"))
            except PreconditionFailed:
                continue  # another sender claimed or saved it first: it is theirs
        return claimed

    @bounded("saving a webhook event")
    def save(self, event: WebhookEvent) -> WebhookEvent:
        outcome = replace(event, leased_until=None)
        try:
            if not outcome.status.is_settled:
                return self._write(outcome, f"saving webhook event {event.id}")
            return self._move_to_settled(outcome)
        except PreconditionFailed:
            raise LeaseLost(f"webhook event {event.id} was claimed by another sender since") from None

    def _move_to_settled(self, event: WebhookEvent) -> WebhookEvent:
        """Delete the unsettled entity (if we still hold its lease) and insert the settled one,
        in one transaction."""
        unsettled = {"PartitionKey": PARTITION, "RowKey": event_row_key(event, settled=False)}
        condition = {"etag": event.lease, "match_condition": MatchConditions.IfNotModified}
        with azure_errors(f"saving webhook event {event.id}", self.endpoint):
            try:
                results = self._table.submit_transaction(
                    [("delete", unsettled, condition), ("upsert", event_entity(event), {"mode": UpdateMode.REPLACE})]
                )
            except TableTransactionError as exc:
                # the SDK sets error_code at run time without declaring it, hence getattr
                if exc.status_code in (404, 412) or "condition" in str(getattr(exc, "error_code", None)).lower():
                    raise PreconditionFailed(f"webhook event {event.id} changed or was deleted meanwhile") from None
                raise
        return replace(event, lease=results[1]["etag"])

    def _write(self, event: WebhookEvent, doing: str) -> WebhookEvent:
        """Replace the entity if its ETag is still ``event.lease``; returns it with the new one."""
        with azure_errors(doing, self.endpoint):
            try:
                metadata = self._table.update_entity(
                    event_entity(event), mode=UpdateMode.REPLACE,
                    etag=event.lease, match_condition=MatchConditions.IfNotModified,
                )
            except (ResourceModifiedError, ResourceNotFoundError):
                raise PreconditionFailed(f"webhook event {event.id} changed or was deleted meanwhile") from None
        return replace(event, lease=metadata["etag"])

    @bounded("reading a job's webhook status")
    def latest(self, job_id: str) -> WebhookEvent | None:
        events = self.events(job_id)
        return events[-1] if events else None

    @bounded("reading a job's webhook events")
    def events(self, job_id: str) -> list[WebhookEvent]:
        events = []
        with azure_errors(f"reading the webhook events of job {job_id}", self.endpoint):
            for prefix in job_event_ranges(job_id):
                query, parameters = range_filter(prefix)
                events += [event_from_entity(e) for e in self._table.query_entities(query, parameters=parameters)]
        return sorted(events, key=lambda event: event.sequence)

    def close(self) -> None:
        self._deadline.close()
        self._table.close()
