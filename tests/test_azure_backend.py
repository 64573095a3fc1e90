"""What only the Azure backend promises, beyond the shared contract: SAS URLs that work,
clear failures for bad settings, staged block uploads, and its Table Storage layout.
Runs against the real Azurite (tests/fixtures_storage.py)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.data.tables import TableClient
from azure.storage.blob import BlobServiceClient
from azure.storage.queue import QueueClient

from core.backends import build_backends
from core.backends.azure import AzureOptions, build_azure_backends
from core.backends.azure.errors import convert
from core.backends.azure.jobs import (
    OWNER_ROWS_MIGRATED,
    PARTITION,
    idempotency_row_key,
    owner_row_key,
    row_key,
)
from core.config import Settings
from core.errors import (
    AlreadyExists,
    ConfigError,
    InvalidInput,
    NotFound,
    PreconditionFailed,
    StorageError,
    StorageUnavailable,
)
from core.jobs import DEFAULT_OWNER, Job, new_job_id
from tests.fixtures_storage import azurite_connection_string_for

pytestmark = pytest.mark.timeout(120)
azurite = pytest.mark.azurite


@pytest.fixture
def azure(make_settings):
    built = build_backends(make_settings("azure"))
    yield built
    built.close()


# --- the harness itself ----------------------------------------------------------------------


@pytest.mark.parametrize(("ci", "outcome"), [("true", pytest.fail.Exception), ("", pytest.skip.Exception)])
def test_missing_azurite_fails_under_ci_and_skips_locally(
    monkeypatch, tmp_path: Path, ci: str, outcome
) -> None:
    import tests.fixtures_storage as harness

    monkeypatch.setattr(harness, "AZURITE_BIN", tmp_path / "no-azurite-here")
    monkeypatch.setenv("CI", ci)
    with pytest.raises(outcome, match="npm ci"):
        harness._require_azurite()


# --- SAS URLs ----------------------------------------------------------------------------------


@azurite
def test_write_url_accepts_a_put_and_read_url_serves_it(azure) -> None:
    body = b"uploaded straight to storage by the client" * 1000
    write_url = azure.blobs.write_url("jobs/j1/input", timedelta(minutes=5))
    put = httpx.put(write_url, content=body, headers={"x-ms-blob-type": "BlockBlob"})
    assert put.status_code == 201, put.text

    read_url = azure.blobs.read_url("jobs/j1/input", timedelta(minutes=5))
    got = httpx.get(read_url)
    assert got.status_code == 200, got.text
    assert got.content == body
    assert azure.blobs.info("jobs/j1/input").size == len(body)


@azurite
def test_sas_urls_grant_only_what_they_say(azure) -> None:
    azure.blobs.upload_stream("jobs/j1/input", [b"original"])
    read_url = azure.blobs.read_url("jobs/j1/input", timedelta(minutes=5))
    # a read URL cannot overwrite the blob...
    denied = httpx.put(read_url, content=b"tampered", headers={"x-ms-blob-type": "BlockBlob"})
    assert denied.status_code == 403
    # ...nor read a different blob
    other = read_url.replace("jobs/j1/input", "jobs/j2/input")
    assert httpx.get(other).status_code == 403
    assert b"".join(azure.blobs.open_range("jobs/j1/input")) == b"original"


# --- bad settings fail at build time, clearly --------------------------------------------------


def test_garbage_connection_string_is_a_config_error() -> None:
    settings = Settings(_env_file=None, storage_backend="azure", azure_storage_connection_string="not one")
    with pytest.raises(ConfigError, match="AZURE_STORAGE_CONNECTION_STRING"):
        build_azure_backends(settings)


@azurite
def test_unreachable_account_fails_within_seconds_naming_the_endpoint(make_settings) -> None:
    closed_port = _closed_port()
    settings = make_settings(
        "azure", azure_storage_connection_string=azurite_connection_string_for(*[closed_port] * 3)
    )
    started = time.monotonic()
    with pytest.raises(StorageUnavailable, match=f"127.0.0.1:{closed_port}"):
        build_backends(settings)
    assert time.monotonic() - started < 10


@azurite
def test_wrong_account_key_is_a_config_error(make_settings, azurite_connection_string: str) -> None:
    from tests.fixtures_storage import AZURITE_KEY

    wrong = azurite_connection_string.replace(AZURITE_KEY, "A" * 86 + "==")
    with pytest.raises(ConfigError, match="AZURE_STORAGE_CONNECTION_STRING"):
        build_backends(make_settings("azure", azure_storage_connection_string=wrong))


@azurite
@pytest.mark.parametrize(
    ("field", "value", "named"),
    [
        ("blob_container", "Not_A_Container", "BLOB_CONTAINER"),
        ("queue_name", "Not_A_Queue", "QUEUE_NAME"),
        ("jobs_table", "not-a-table", "JOBS_TABLE"),
    ],
)
def test_invalid_resource_names_are_config_errors(make_settings, field: str, value: str, named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        build_backends(make_settings("azure", **{field: value}))


def test_account_url_without_an_identity_is_a_config_error(monkeypatch) -> None:
    """Production auth (DefaultAzureCredential) with no identity available anywhere."""
    for variable in (
        "AZURE_CLIENT_ID",
        "AZURE_TENANT_ID",
        "AZURE_CLIENT_SECRET",
        "AZURE_FEDERATED_TOKEN_FILE",
    ):
        monkeypatch.delenv(variable, raising=False)
    settings = Settings(
        _env_file=None,
        storage_backend="azure",
        azure_storage_account_url=f"https://127.0.0.1:{_closed_port()}/acct",
    )
    with pytest.raises(ConfigError, match="credentials"):
        build_azure_backends(settings, AzureOptions(retry_total=0))


def _closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # nothing listens once the socket closes


# --- uploads are staged in blocks ----------------------------------------------------------------


@azurite
def test_streamed_upload_is_staged_in_blocks_and_committed_in_order(make_settings) -> None:
    settings = make_settings("azure")
    options = AzureOptions(block_size=64 * 1024, single_put_size=100 * 1024, max_concurrency=3)
    built = build_azure_backends(settings, options)
    odd_chunks = [bytes([i % 251]) * (1000 + 37 * i) for i in range(60)]  # ~126 KB.. uneven sizes
    data = b"".join(odd_chunks * 4)

    info = built.blobs.upload_stream("x/blocks", iter(odd_chunks * 4))
    assert info.size == len(data)
    assert b"".join(built.blobs.open_range("x/blocks")) == data

    service = BlobServiceClient.from_connection_string(settings.azure_storage_connection_string)
    committed, _ = service.get_blob_client(settings.blob_container, "x/blocks").get_block_list()
    assert len(committed) == -(-len(data) // options.block_size)
    assert all(block.size == options.block_size for block in committed[:-1])

    small = built.blobs.upload_stream("x/small", [b"fits in one request"])
    assert small.size == 19
    built.close()


@azurite
def test_failing_source_leaves_the_old_blob(azure) -> None:
    azure.blobs.upload_stream("x/kept", [b"old"])

    def broken_source():
        yield b"x" * (9 * 1024 * 1024)  # past the single-put size: blocks get staged
        raise ConnectionResetError("client went away")

    with pytest.raises(ConnectionResetError):
        azure.blobs.upload_stream("x/kept", broken_source())
    assert b"".join(azure.blobs.open_range("x/kept")) == b"old"


@azurite
def test_non_bytes_chunks_are_rejected(azure) -> None:
    with pytest.raises(InvalidInput):
        azure.blobs.upload_stream("x/strings", ["text, not bytes"])  # type: ignore[list-item]


# --- queue details -----------------------------------------------------------------------------


@azurite
def test_messages_never_expire(make_settings) -> None:
    settings = make_settings("azure")
    built = build_backends(settings)
    built.queue.send("a job that waits a long time")
    raw = QueueClient.from_connection_string(settings.azure_storage_connection_string, settings.queue_name)
    [peeked] = raw.peek_messages()
    # the default time-to-live (7 days) would silently drop jobs queued behind a long backlog
    assert peeked.expires_on > datetime.now(UTC) + timedelta(days=365)
    built.close()


@azurite
def test_sub_second_lease_is_rounded_up_not_rejected(azure) -> None:
    azure.queue.send("m")
    first = azure.queue.receive(timedelta(milliseconds=200))
    assert azure.queue.receive(timedelta(seconds=30)) is None  # hidden for a whole second
    deadline = time.monotonic() + 10
    while (again := azure.queue.receive(timedelta(seconds=30))) is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert again is not None and (again.id, again.dequeue_count) == (first.id, 2)


# --- job records in Table Storage --------------------------------------------------------------


def test_row_keys_sort_newest_first() -> None:
    ids = [new_job_id() for _ in range(50)] + ["0" * 26, "f" * 26]
    assert sorted(ids, key=row_key) == sorted(ids, reverse=True)
    assert all(row_key(row_key(job_id)) == job_id for job_id in ids)


@azurite
def test_orphaned_idempotency_key_is_reclaimed(make_settings) -> None:
    """A delete that removed the job but crashed before its key must not block the key."""
    settings = make_settings("azure")
    built = build_backends(settings)
    first = built.jobs.create(Job(id=new_job_id(), input_blob="x", idempotency_key="retry-7"))
    table = TableClient.from_connection_string(settings.azure_storage_connection_string, settings.jobs_table)
    table.delete_entity(PARTITION, row_key(first.id))  # the job row only: the key is orphaned

    second = built.jobs.create(Job(id=new_job_id(), input_blob="x", idempotency_key="retry-7"))
    assert second.id != first.id
    assert built.jobs.get(second.id).idempotency_key == "retry-7"
    again = built.jobs.create(Job(id=new_job_id(), input_blob="x", idempotency_key="retry-7"))
    assert again.id == second.id

    # the first delete now finishes its second step: the key belongs to the second job
    # and must stay, or a replay would make a duplicate job
    built.jobs._delete_key_of(first)
    assert built.jobs.create(Job(id=new_job_id(), input_blob="x", idempotency_key="retry-7")).id == second.id
    built.close()


@azurite
def test_large_record_is_split_across_properties(azure) -> None:
    counts = {f"class-{i}": {"in": i, "out": i * 2, "note": "é🐄" * 20} for i in range(1500)}
    job = azure.jobs.create(Job(id=new_job_id(), input_blob="x", counts=counts))
    assert len(job.to_record()) > 100_000
    loaded = azure.jobs.get(job.id)
    assert loaded.counts == counts
    loaded.counts = {"cow": 3}
    shrunk = azure.jobs.update(loaded)
    assert azure.jobs.get(job.id).counts == {"cow": 3} and shrunk.etag != loaded.etag


@azurite
def test_ids_that_are_not_ours_are_handled(azure) -> None:
    with pytest.raises(NotFound):
        azure.jobs.get("../../etc")
    with pytest.raises(InvalidInput):
        azure.jobs.create(Job(id="not/hex", input_blob="x"))
    with pytest.raises(InvalidInput):
        azure.jobs.list(cursor="!!garbage!!")


# --- every azure.core exception has a core error -------------------------------------------------


def _http_error(status: int, error_type: type[HttpResponseError] = HttpResponseError) -> HttpResponseError:
    error = error_type(message=f"HTTP {status}")
    error.status_code = status
    return error


@pytest.mark.parametrize(
    ("exception", "expected"),
    [
        (ServiceRequestError("connection refused"), StorageUnavailable),
        (ServiceResponseError("read timed out"), StorageUnavailable),
        (_http_error(503), StorageUnavailable),
        (_http_error(500), StorageUnavailable),
        (_http_error(429), StorageUnavailable),
        (_http_error(412), PreconditionFailed),
        (_http_error(412, ResourceModifiedError), PreconditionFailed),
        (_http_error(404, ResourceNotFoundError), NotFound),
        (_http_error(409, ResourceExistsError), AlreadyExists),
        (_http_error(403, ClientAuthenticationError), ConfigError),
        (_http_error(403), ConfigError),
        (_http_error(400), InvalidInput),
        (_http_error(418), StorageError),
    ],
)
def test_sdk_errors_become_core_errors(exception, expected) -> None:
    converted = convert(exception, "doing something", "https://acct.blob.core.windows.net")
    assert type(converted) is expected
    if expected is StorageUnavailable:
        assert "https://acct.blob.core.windows.net" in str(converted)


@azurite
def test_jobs_recorded_before_owners_belong_to_the_default_tenant(make_settings) -> None:
    settings = make_settings("azure")
    build_backends(settings).close()  # creates the table (and marks the owner rows as done)
    table = TableClient.from_connection_string(settings.azure_storage_connection_string, settings.jobs_table)
    old = Job(id=new_job_id(), input_blob="x", idempotency_key="k1")
    table.create_entity({"PartitionKey": PARTITION, "RowKey": row_key(old.id), "status": "queued",
                         "record": old.model_dump_json(exclude={"owner"}), "record_parts": 1})
    table.create_entity({"PartitionKey": PARTITION, "RowKey": idempotency_row_key("k1"), "job_id": old.id})
    table.delete_entity(PARTITION, OWNER_ROWS_MIGRATED)  # as if this table predated owners

    built = build_backends(settings)  # start-up adds the owner rows the old jobs lack
    try:
        assert built.jobs.get(old.id).owner == DEFAULT_OWNER
        assert [job.id for job in built.jobs.list(owner=DEFAULT_OWNER).jobs] == [old.id]
        assert built.jobs.create(Job(id=new_job_id(), input_blob="x", idempotency_key="k1")).id == old.id
        assert built.jobs.create(Job(id=new_job_id(), input_blob="x", idempotency_key="k1", owner="bob")).id != old.id
        built.jobs.delete(old.id)
        assert built.jobs.list(owner=DEFAULT_OWNER).jobs == []
    finally:
        built.close()


@azurite
def test_an_owner_row_left_by_an_interrupted_delete_is_cleared_by_the_next_listing(make_settings) -> None:
    settings = make_settings("azure")
    built = build_backends(settings)
    kept = built.jobs.create(Job(id=new_job_id(), input_blob="x", owner="alice"))
    gone = built.jobs.create(Job(id=new_job_id(), input_blob="x", owner="alice"))
    table = TableClient.from_connection_string(settings.azure_storage_connection_string, settings.jobs_table)
    table.delete_entity(PARTITION, row_key(gone.id))  # the job row only, as a crashed delete leaves it

    assert [job.id for job in built.jobs.list(owner="alice").jobs] == [kept.id]
    with pytest.raises(ResourceNotFoundError):
        table.get_entity(PARTITION, owner_row_key("alice", gone.id))
    built.close()
