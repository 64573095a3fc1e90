"""Job records in Azure Table Storage.

Why Tables rather than one JSON blob per job with ETag-conditional writes:

* listing: the API lists jobs newest first, filtered by status, a page at a time. Tables
  return rows in key order and filter on the server (``status eq 'failed'``); with blobs we
  would download every record to filter and sort it.
* concurrency: every entity has an ETag and updates can be conditional on it
  (``If-Match``), the same optimistic concurrency blobs offer, so nothing is lost there.
* cheap point reads by key, and entity-group transactions within a partition, which make
  "insert the job and claim its idempotency key" one atomic step.

Layout, all in one partition (a few thousand jobs a day is far below a partition's
limits, and one partition is what makes the transaction and the ordered scan possible):

* a job: ``RowKey = complement of its id`` (each hex digit d becomes f-d). Ids are
  time-ordered, so complemented ids sort newest first and a plain ascending scan is the
  listing. Properties: ``status`` (for the filter) and the record JSON split over
  ``record``, ``record_1``, ... (a string property holds at most 64 KiB).
* an idempotency key: ``RowKey = "~idem-" + sha256(key)`` with the job's id; keys are per
  owner, so other owners hash "owner\nkey" (the default tenant keeps the bare key, so keys
  recorded before owners existed stay its own). ``~`` sorts after every hex digit, so key
  rows never appear in job listings (``RowKey lt '~'``).
* an owner's listing row: ``RowKey = "~own-<owner>|" + the job's RowKey`` with ``job_id`` and
  ``status``, written in the same transaction as every write of the job, so one owner's
  listing is a key-range scan of that owner's rows (not of every job) followed by point
  reads of at most one page of jobs. Jobs recorded before owners get theirs once, at start-up
  (``create_table``), as the default tenant's.
* a webhook event: ``RowKey = "~evt-<job id>-<sequence>"``, ``"~evs-..."`` once settled (see
  ``outbox.py``); in this partition so that a job's final state and its event are written in
  one transaction.

The page cursor is the last id of the previous page (base64url), so pages are always full
and cursors stay valid whatever the service's own continuation tokens do.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import TableClient, TableServiceClient, TableTransactionError, UpdateMode

from core.backends.azure.clients import AzureOptions
from core.backends.azure.errors import azure_errors
from core.backends.azure.outbox import event_entity, is_settled, job_event_ranges, range_filter
from core.backends.base import JobPage, JobStore
from core.backends.deadline import DeadlineRunner, bounded
from core.backends.outbox import EventFactory
from core.backends.paging import check_page_size, decode_cursor, encode_cursor
from core.errors import AlreadyExists, InvalidInput, NotFound, PreconditionFailed
from core.jobs import DEFAULT_OWNER, Job, JobStatus, utcnow

PARTITION = "jobs"
KEY_ROW_PREFIX = "~idem-"
OWNER_ROW_PREFIX = "~own-"
OWNER_ROWS_MIGRATED = "~meta-owner-rows-v1"  # marks the one-time back-fill of owner rows as done
PARALLEL_READS = 8  # point reads in flight while one listing page is fetched
JOB_ROWS_END = "~"  # job RowKeys are hex, all sorting before this
RECORD_PART_CHARS = 16_000  # <= 64 KiB even if every character needed 4 bytes of UTF-16
MAX_RECORD_PARTS = 60  # ~1 MiB: the service's limit for a whole entity
HEX = "0123456789abcdef"
COMPLEMENT = str.maketrans(HEX, HEX[::-1])


def row_key(job_id: str) -> str:
    """The RowKey of a job: its id with every hex digit complemented (newest sorts first)."""
    return job_id.translate(COMPLEMENT)


def job_id_from_row_key(key: str) -> str:
    return key.translate(COMPLEMENT)  # complementing twice is the identity


def is_job_id(job_id: str) -> bool:
    return bool(job_id) and all(ch in HEX for ch in job_id)


def idempotency_row_key(key: str, owner: str = DEFAULT_OWNER) -> str:
    scoped = key if owner == DEFAULT_OWNER else f"{owner}\n{key}"  # keys are printable: no newline
    return KEY_ROW_PREFIX + hashlib.sha256(scoped.encode("utf-8")).hexdigest()


def owner_rows_prefix(owner: str) -> str:
    """Owner names are letters, digits, '.', '_' and '-' (core.config), so '|' ends the name."""
    return f"{OWNER_ROW_PREFIX}{owner}|"


def owner_row_key(owner: str, job_id: str) -> str:
    return owner_rows_prefix(owner) + row_key(job_id)


class AzureJobStore(JobStore):
    """Job records in ``table_name`` of the account ``service`` points at. Every public method
    answers or fails within ``options.deadline_s``."""

    def __init__(
        self, service: TableServiceClient, table_name: str, options: AzureOptions | None = None
    ) -> None:
        self._service = service
        self._table: TableClient = service.get_table_client(table_name)
        self.endpoint = self._table.url
        deadline_s = (options or AzureOptions()).deadline_s
        self._deadline = DeadlineRunner(deadline_s, f"Azure Table storage at {self.endpoint}")

    @bounded("creating the jobs table")
    def create_table(self) -> None:
        """Create the table unless it exists (at start-up)."""
        with azure_errors(f"creating table {self._table.table_name!r}", self.endpoint):
            self._service.create_table_if_not_exists(self._table.table_name)
        self._add_missing_owner_rows()

    def _add_missing_owner_rows(self) -> None:
        """Once per table: give jobs recorded before owners existed (no ``owner`` property)
        their listing row as the default tenant's. Reads every job's key once, then never again."""
        if self._get_entity(OWNER_ROWS_MIGRATED) is not None:
            return
        with azure_errors("adding owner rows to jobs recorded before owners", self.endpoint):
            rows = self._table.query_entities(
                "PartitionKey eq @partition and RowKey lt @end",
                parameters={"partition": PARTITION, "end": JOB_ROWS_END},
                select=["RowKey", "status", "owner"],
            )
            for row in rows:
                if row.get("owner") is None:
                    job_id = job_id_from_row_key(row["RowKey"])
                    # a row that exists already: the job was updated meanwhile, which wrote it
                    with suppress(ResourceExistsError):
                        self._table.create_entity(_owner_entity(DEFAULT_OWNER, job_id, row["status"]))
            self._table.upsert_entity({"PartitionKey": PARTITION, "RowKey": OWNER_ROWS_MIGRATED})

    # --- create ---------------------------------------------------------------------

    @bounded("creating a job record")
    def create(self, job: Job) -> Job:
        """Insert the job (and its idempotency key, atomically); an existing key returns its job."""
        if not is_job_id(job.id):
            raise InvalidInput(f"job id {job.id!r} is not a lowercase hex id from new_job_id()")
        if job.idempotency_key is None:
            return self._insert_without_key(job)
        for _ in range(2):  # a second try only after clearing an orphaned key
            stored = self._insert_with_key(job)
            if stored is not None:
                return stored
        raise AlreadyExists(f"idempotency key of job {job.id} is in use and could not be cleared")

    def _insert_without_key(self, job: Job) -> Job:
        with azure_errors(f"creating job {job.id}", self.endpoint):
            try:
                results = self._table.submit_transaction([("create", _job_entity(job)), ("create", _owner_row(job))])
            except TableTransactionError as exc:
                if _is_already_exists(exc):
                    raise AlreadyExists(f"a job with id {job.id} already exists") from None
                raise
        return _with_etag(job, results[0]["etag"])

    def _insert_with_key(self, job: Job) -> Job | None:
        """Insert key + job in one transaction. Returns the stored job, the job that already
        holds the key, or None after removing an orphaned key (whose job was deleted)."""
        assert job.idempotency_key is not None  # the caller checked
        key_entity = {
            "PartitionKey": PARTITION,
            "RowKey": idempotency_row_key(job.idempotency_key, job.owner),
            "job_id": job.id,
        }
        with azure_errors(f"creating job {job.id}", self.endpoint):
            try:
                results = self._table.submit_transaction(
                    [("create", key_entity), ("create", _job_entity(job)), ("create", _owner_row(job))]
                )
            except TableTransactionError as exc:
                if not _is_already_exists(exc):
                    raise
                return self._job_holding_key(job)
        return _with_etag(job, results[1]["etag"])

    def _job_holding_key(self, job: Job) -> Job | None:
        assert job.idempotency_key is not None  # only a job with a key gets here
        key_row = self._get_entity(idempotency_row_key(job.idempotency_key, job.owner))
        if key_row is None:
            raise AlreadyExists(f"a job with id {job.id} already exists")
        holder = self._get_or_none(key_row["job_id"])
        if holder is not None:
            return holder
        # The key outlived its job (a delete stopped half-way): free it, if nobody else did.
        # someone else re-used the key meanwhile; the retry will find their job
        with suppress(ResourceModifiedError):
            self._table.delete_entity(
                key_row, etag=key_row.metadata["etag"], match_condition=MatchConditions.IfNotModified
            )
        return None

    # --- read -----------------------------------------------------------------------

    @bounded("reading a job record")
    def get(self, job_id: str) -> Job:
        job = self._get_or_none(job_id)
        if job is None:
            raise NotFound(f"job {job_id} does not exist")
        return job

    def _get_or_none(self, job_id: str) -> Job | None:
        if not is_job_id(job_id):
            return None
        entity = self._get_entity(row_key(job_id))
        return None if entity is None else _job_from_entity(entity)

    def _get_entity(self, key: str) -> Any | None:
        with azure_errors("reading a job record", self.endpoint):
            try:
                return self._table.get_entity(PARTITION, key)
            except ResourceNotFoundError:
                return None

    @bounded("listing jobs")
    def list(
        self, status: JobStatus | None = None, limit: int = 50, cursor: str | None = None, owner: str | None = None
    ) -> JobPage:
        """Jobs newest first (optionally one status, one owner), ``limit`` per page."""
        check_page_size(limit)
        if owner is not None:
            return self._list_owner(owner, status, limit, cursor)
        query, parameters = _list_filter(status, cursor)
        jobs: list[Job] = []
        with azure_errors("listing jobs", self.endpoint):
            entities = self._table.query_entities(
                query, parameters=parameters, results_per_page=min(limit + 1, 1000)
            )
            for entity in entities:
                if len(jobs) == limit:
                    return JobPage(jobs=jobs, next_cursor=encode_cursor(jobs[-1].id))
                jobs.append(_job_from_entity(entity))
        return JobPage(jobs=jobs, next_cursor=None)

    def _list_owner(self, owner: str, status: JobStatus | None, limit: int, cursor: str | None) -> JobPage:
        """Scan the owner's listing rows for one page of ids, then read those jobs."""
        query, parameters = _owner_list_filter(owner, status, cursor)
        ids: list[str] = []
        more = False
        with azure_errors("listing jobs", self.endpoint):
            rows = self._table.query_entities(
                query, parameters=parameters, select=["job_id"], results_per_page=min(limit + 1, 1000)
            )
            for row in rows:
                if len(ids) == limit:
                    more = True
                    break
                ids.append(row["job_id"])
        with ThreadPoolExecutor(PARALLEL_READS, thread_name_prefix="job-list") as pool:
            found = list(pool.map(self._get_or_none, ids))
        for job_id, job in zip(ids, found, strict=True):
            if job is None:  # a delete stopped between the job's row and its owner row: finish it
                self._delete_owner_row(owner, job_id)
        # a job deleted, or moved on to another status, since its row was read is left out
        wanted = None if status is None else JobStatus(status)
        jobs = [job for job in found if job is not None and wanted in (None, job.status)]
        return JobPage(jobs=jobs, next_cursor=encode_cursor(ids[-1]) if more else None)

    # --- update / delete ------------------------------------------------------------

    @bounded("updating a job record")
    def update(self, job: Job, event: EventFactory | None = None) -> Job:
        """Replace the record if its ETag is unchanged (If-Match), and add ``event``'s webhook
        event in the same transaction (events live in the jobs' partition: see outbox.py)."""
        if not job.etag:
            raise PreconditionFailed(f"job {job.id} has no etag: read it from the store before updating")
        if not is_job_id(job.id):
            raise NotFound(f"job {job.id} does not exist")
        updated = job.model_copy(update={"updated_at": utcnow()})
        replace_if_unchanged = {
            "mode": UpdateMode.REPLACE, "etag": job.etag, "match_condition": MatchConditions.IfNotModified,
        }
        # the owner row carries the status the owner's listing filters on: same transaction
        operations = [("update", _job_entity(updated), replace_if_unchanged), ("upsert", _owner_row(updated))]
        new_event = event(updated) if event is not None else None
        if new_event is not None and not is_settled(self._table, new_event, self.endpoint):
            stored = self._submit_update(job.id, [*operations, ("create", event_entity(new_event))])
            if stored is not None:
                return _with_etag(updated, stored)
            # the event is stored (or sent) already: a redelivery re-settling the job; update it alone
        etag = self._submit_update(job.id, operations, event_may_exist=False)
        assert etag is not None  # None only where the event may exist already
        return _with_etag(updated, etag)

    def _submit_update(self, job_id: str, operations: Sequence[Any], event_may_exist: bool = True) -> str | None:
        """Run an update transaction (the job's row first); the job's new ETag, or None when its
        webhook event exists already."""
        with azure_errors(f"updating job {job_id}", self.endpoint):
            try:
                results = self._table.submit_transaction(operations)
            except TableTransactionError as exc:
                if event_may_exist and "entityalreadyexists" in _error_code(exc):
                    return None
                raise _update_error(exc, job_id) from None
        etag: str = results[0]["etag"]
        return etag

    @bounded("deleting a job record")
    def delete(self, job_id: str) -> None:
        """Delete the job, then its idempotency key (a crash in between leaves an orphaned key,
        which the next create with that key clears), then its webhook events."""
        job = self._get_or_none(job_id)
        if job is None:
            return
        with azure_errors(f"deleting job {job_id}", self.endpoint):
            self._table.delete_entity(PARTITION, row_key(job_id))
            self._delete_owner_row(job.owner, job_id)
            if job.idempotency_key is not None:
                self._delete_key_of(job)
            for prefix in job_event_ranges(job_id):
                query, parameters = range_filter(prefix)
                for entity in list(self._table.query_entities(query, parameters=parameters, select=["RowKey"])):
                    self._table.delete_entity(PARTITION, entity["RowKey"])

    def _delete_owner_row(self, owner: str, job_id: str) -> None:
        # a row already gone is fine
        with azure_errors(f"deleting the owner row of job {job_id}", self.endpoint), suppress(
            ResourceNotFoundError
        ):
            self._table.delete_entity(PARTITION, owner_row_key(owner, job_id))

    def _delete_key_of(self, job: Job) -> None:
        """Delete the job's idempotency key row, unless a newer job has claimed that key since
        (once this job's record was gone, a create with the key could clear and re-use it)."""
        assert job.idempotency_key is not None  # the caller checked
        key_row = self._get_entity(idempotency_row_key(job.idempotency_key, job.owner))
        if key_row is None or key_row["job_id"] != job.id:
            return
        # claimed or cleared meanwhile: not ours any more
        with suppress(ResourceModifiedError, ResourceNotFoundError):
            self._table.delete_entity(
                key_row, etag=key_row.metadata["etag"], match_condition=MatchConditions.IfNotModified
            )

    @bounded("checking the jobs table")
    def ping(self) -> None:
        with azure_errors("checking the jobs table", self.endpoint):
            next(iter(self._table.query_entities("PartitionKey eq 'ping'", results_per_page=1)), None)

    def close(self) -> None:
        self._deadline.close()
        self._table.close()
        self._service.close()


def _is_already_exists(exc: TableTransactionError) -> bool:
    return "entityalreadyexists" in _error_code(exc)


def _error_code(exc: TableTransactionError) -> str:
    # error_code is a TableErrorCode enum or a plain string, depending on the SDK's path; the
    # SDK sets it at run time without declaring it, hence getattr
    return str(getattr(exc, "error_code", None)).lower().replace("_", "")


def _update_error(exc: TableTransactionError, job_id: str) -> Exception:
    """A failed update transaction as a core error (the job row is its first operation)."""
    code = _error_code(exc)
    if "notfound" in code:
        return NotFound(f"job {job_id} does not exist")
    if "conditionnotsatisfied" in code or exc.status_code == 412:
        return PreconditionFailed(f"job {job_id} was changed by someone else since it was read")
    return exc  # azure_errors converts the rest


def _owner_list_filter(owner: str, status: JobStatus | None, cursor: str | None) -> tuple[str, dict[str, str]]:
    prefix = owner_rows_prefix(owner)
    clauses = ["PartitionKey eq @partition", "RowKey gt @after", "RowKey lt @end"]
    parameters = {"partition": PARTITION, "after": prefix, "end": prefix + JOB_ROWS_END}
    if cursor:
        last_id = decode_cursor(cursor)
        if not is_job_id(last_id):
            raise InvalidInput(f"invalid page cursor {cursor[:64]!r}")
        parameters["after"] = owner_row_key(owner, last_id)
    if status is not None:
        clauses.append("status eq @status")
        parameters["status"] = JobStatus(status).value
    return " and ".join(clauses), parameters


def _owner_entity(owner: str, job_id: str, status: str) -> dict[str, Any]:
    return {"PartitionKey": PARTITION, "RowKey": owner_row_key(owner, job_id), "job_id": job_id, "status": status}


def _owner_row(job: Job) -> dict[str, Any]:
    return _owner_entity(job.owner, job.id, job.status.value)


def _list_filter(status: JobStatus | None, cursor: str | None) -> tuple[str, dict[str, str]]:
    clauses = ["PartitionKey eq @partition", "RowKey lt @end"]
    parameters = {"partition": PARTITION, "end": JOB_ROWS_END}
    if cursor:
        last_id = decode_cursor(cursor)
        if not is_job_id(last_id):
            raise InvalidInput(f"invalid page cursor {cursor[:64]!r}")
        clauses.append("RowKey gt @after")
        parameters["after"] = row_key(last_id)
    if status is not None:
        clauses.append("status eq @status")
        parameters["status"] = JobStatus(status).value
    return " and ".join(clauses), parameters


def _job_entity(job: Job) -> dict[str, Any]:
    record = job.to_record()
    parts = [record[i : i + RECORD_PART_CHARS] for i in range(0, len(record), RECORD_PART_CHARS)] or [""]
    if len(parts) > MAX_RECORD_PARTS:
        raise InvalidInput(
            f"job {job.id} record is {len(record)} characters, too large for Azure Table storage"
        )
    entity: dict[str, Any] = {
        "PartitionKey": PARTITION,
        "RowKey": row_key(job.id),
        "status": job.status.value,
        "owner": job.owner,
    }
    entity["record"] = parts[0]
    for index, part in enumerate(parts[1:], start=1):
        entity[f"record_{index}"] = part
    entity["record_parts"] = len(parts)
    return entity


def _job_from_entity(entity: Any) -> Job:
    parts = int(entity.get("record_parts", 1))
    record = entity["record"] + "".join(entity[f"record_{i}"] for i in range(1, parts))
    return Job.from_record(record, entity.metadata["etag"])


def _with_etag(job: Job, etag: str) -> Job:
    stored = job.model_copy()
    stored.etag = etag
    return stored
