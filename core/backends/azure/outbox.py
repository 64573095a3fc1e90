"""The webhook outbox in Azure Table storage: one entity per event, in the jobs table.

Events live in the jobs' own partition (see ``jobs.py``), so an event and the job state it
reports are written in one entity-group transaction: both or neither. RowKeys::

    ~evt-<job id>-<sequence, 6 digits>

``~`` sorts after every job RowKey (hex), so events never appear in job listings, and a
job's events sort in sequence order. The claim lease is the entity's ETag: a claim is a
conditional update, so of two senders racing for an event only one wins, and an outcome is
saved only by the sender holding the newest claim.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import TableClient, TableServiceClient, UpdateMode

from core.backends.azure.errors import azure_errors
from core.backends.outbox import OutboxStore, WebhookEvent, claimable, from_record, to_record
from core.errors import InvalidInput, LeaseLost, PreconditionFailed

PARTITION = "jobs"  # the jobs' partition: one transaction can write a job and its event
EVENT_PREFIX = "~evt-"
EVENTS_END = "~evt."  # "." sorts right after "-": every event RowKey is below this
UNSETTLED = "(status eq 'pending' or status eq 'retrying')"
RECORD_PART_CHARS = 16_000  # a string property holds at most 64 KiB
MAX_RECORD_PARTS = 60  # ~1 MiB: the service's limit for a whole entity


def event_row_key(job_id: str, sequence: int) -> str:
    return f"{EVENT_PREFIX}{job_id}-{sequence:06d}"


def event_entity(event: WebhookEvent) -> dict[str, Any]:
    record = to_record(event)
    parts = [record[i : i + RECORD_PART_CHARS] for i in range(0, len(record), RECORD_PART_CHARS)]
    if len(parts) > MAX_RECORD_PARTS:
        raise InvalidInput(f"webhook event {event.id} is {len(record)} characters, too large for Azure Table storage")
    entity: dict[str, Any] = {
        "PartitionKey": PARTITION,
        "RowKey": event_row_key(event.job_id, event.sequence),
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


def job_events_filter(job_id: str) -> tuple[str, dict[str, str]]:
    """The query for one job's events, in sequence order."""
    return (
        "PartitionKey eq @partition and RowKey gt @start and RowKey lt @end",
        {"partition": PARTITION, "start": f"{EVENT_PREFIX}{job_id}-", "end": f"{EVENT_PREFIX}{job_id}."},
    )


class AzureOutbox(OutboxStore):
    def __init__(self, service: TableServiceClient, table_name: str) -> None:
        self._table: TableClient = service.get_table_client(table_name)
        self.endpoint = self._table.url

    def add(self, event: WebhookEvent) -> bool:
        with azure_errors(f"storing webhook event {event.id}", self.endpoint):
            try:
                self._table.create_entity(event_entity(event))
            except ResourceExistsError:
                return False
        return True

    def claim(self, now: datetime, lease: timedelta, limit: int, busy: Collection[str] = ()) -> list[WebhookEvent]:
        with azure_errors("reading the webhook outbox", self.endpoint):
            unsettled = self._table.query_entities(
                f"PartitionKey eq @partition and RowKey gt @start and RowKey lt @end and {UNSETTLED}",
                parameters={"partition": PARTITION, "start": EVENT_PREFIX, "end": EVENTS_END},
            )
            events = [event_from_entity(entity) for entity in unsettled]  # in (job, sequence) order
        claimed = []
        for event in claimable(events, now, limit, busy):
            leased = replace(event, leased_until=now + lease)
            try:
                claimed.append(self._write(leased, f"claiming webhook event {event.id}"))
            except PreconditionFailed:
                continue  # another sender claimed or saved it first: it is theirs
        return claimed

    def save(self, event: WebhookEvent) -> WebhookEvent:
        try:
            return self._write(replace(event, leased_until=None), f"saving webhook event {event.id}")
        except PreconditionFailed:
            raise LeaseLost(f"webhook event {event.id} was claimed by another sender since") from None

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

    def latest(self, job_id: str) -> WebhookEvent | None:
        events = self.events(job_id)
        return events[-1] if events else None

    def events(self, job_id: str) -> list[WebhookEvent]:
        query, parameters = job_events_filter(job_id)
        with azure_errors(f"reading the webhook events of job {job_id}", self.endpoint):
            return [event_from_entity(entity) for entity in self._table.query_entities(query, parameters=parameters)]

    def close(self) -> None:
        self._table.close()
