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
* an idempotency key: ``RowKey = "~idem-" + sha256(key)`` with the job's id. ``~`` sorts
  after every hex digit, so key rows never appear in job listings (``RowKey lt '~'``).

The page cursor is the last id of the previous page (base64url), so pages are always full
and cursors stay valid whatever the service's own continuation tokens do.
"""

from __future__ import annotations

import hashlib
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import TableClient, TableServiceClient, TableTransactionError, UpdateMode

from core.backends.azure.clients import AzureOptions
from core.backends.azure.errors import azure_errors
from core.backends.base import JobPage, JobStore
from core.backends.deadline import DeadlineRunner, bounded
from core.backends.local.jobs import MAX_PAGE_SIZE, decode_cursor, encode_cursor
from core.errors import AlreadyExists, InvalidInput, NotFound, PreconditionFailed
from core.jobs import Job, JobStatus, utcnow

PARTITION = "jobs"
KEY_ROW_PREFIX = "~idem-"
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


def idempotency_row_key(key: str) -> str:
    return KEY_ROW_PREFIX + hashlib.sha256(key.encode("utf-8")).hexdigest()


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
                metadata = self._table.create_entity(_job_entity(job))
            except ResourceExistsError:
                raise AlreadyExists(f"a job with id {job.id} already exists") from None
        return _with_etag(job, metadata["etag"])

    def _insert_with_key(self, job: Job) -> Job | None:
        """Insert key + job in one transaction. Returns the stored job, the job that already
        holds the key, or None after removing an orphaned key (whose job was deleted)."""
        key_entity = {
            "PartitionKey": PARTITION,
            "RowKey": idempotency_row_key(job.idempotency_key),
            "job_id": job.id,
        }
        with azure_errors(f"creating job {job.id}", self.endpoint):
            try:
                results = self._table.submit_transaction(
                    [("create", key_entity), ("create", _job_entity(job))]
                )
            except TableTransactionError as exc:
                if not _is_already_exists(exc):
                    raise
                return self._job_holding_key(job)
        return _with_etag(job, results[1]["etag"])

    def _job_holding_key(self, job: Job) -> Job | None:
        key_row = self._get_entity(idempotency_row_key(job.idempotency_key))
        if key_row is None:
            raise AlreadyExists(f"a job with id {job.id} already exists")
        holder = self._get_or_none(key_row["job_id"])
        if holder is not None:
            return holder
        # The key outlived its job (a delete stopped half-way): free it, if nobody else did.
        try:
            self._table.delete_entity(
                key_row, etag=key_row.metadata["etag"], match_condition=MatchConditions.IfNotModified
            )
        except ResourceModifiedError:
            pass  # someone else re-used the key meanwhile; the retry will find their job
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
    def list(self, status: JobStatus | None = None, limit: int = 50, cursor: str | None = None) -> JobPage:
        """Jobs newest first (optionally one status), ``limit`` per page."""
        if not 1 <= limit <= MAX_PAGE_SIZE:
            raise InvalidInput(f"limit must be between 1 and {MAX_PAGE_SIZE}, got {limit}")
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

    # --- update / delete ------------------------------------------------------------

    @bounded("updating a job record")
    def update(self, job: Job) -> Job:
        """Replace the record if its ETag is unchanged (If-Match)."""
        if not job.etag:
            raise PreconditionFailed(f"job {job.id} has no etag: read it from the store before updating")
        if not is_job_id(job.id):
            raise NotFound(f"job {job.id} does not exist")
        updated = job.model_copy(update={"updated_at": utcnow()})
        with azure_errors(f"updating job {job.id}", self.endpoint):
            try:
                metadata = self._table.update_entity(
                    _job_entity(updated),
                    mode=UpdateMode.REPLACE,
                    etag=job.etag,
                    match_condition=MatchConditions.IfNotModified,
                )
            except ResourceNotFoundError:
                raise NotFound(f"job {job.id} does not exist") from None
        return _with_etag(updated, metadata["etag"])

    @bounded("deleting a job record")
    def delete(self, job_id: str) -> None:
        """Delete the job, then its idempotency key (a crash in between leaves an orphaned key,
        which the next create with that key clears)."""
        job = self._get_or_none(job_id)
        if job is None:
            return
        with azure_errors(f"deleting job {job_id}", self.endpoint):
            self._table.delete_entity(PARTITION, row_key(job_id))
            if job.idempotency_key is not None:
                self._delete_key_of(job)

    def _delete_key_of(self, job: Job) -> None:
        """Delete the job's idempotency key row, unless a newer job has claimed that key since
        (once this job's record was gone, a create with the key could clear and re-use it)."""
        key_row = self._get_entity(idempotency_row_key(job.idempotency_key))
        if key_row is None or key_row["job_id"] != job.id:
            return
        try:
            self._table.delete_entity(
                key_row, etag=key_row.metadata["etag"], match_condition=MatchConditions.IfNotModified
            )
        except (ResourceModifiedError, ResourceNotFoundError):
            pass  # claimed or cleared meanwhile: not ours any more

    @bounded("checking the jobs table")
    def ping(self) -> None:
        with azure_errors("checking the jobs table", self.endpoint):
            next(iter(self._table.query_entities("PartitionKey eq 'ping'", results_per_page=1)), None)

    def close(self) -> None:
        self._deadline.close()
        self._table.close()
        self._service.close()


def _is_already_exists(exc: TableTransactionError) -> bool:
    # error_code is a TableErrorCode enum or a plain string, depending on the SDK's path
    return "entityalreadyexists" in str(exc.error_code).lower().replace("_", "")


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
