"""Building the Blob, Queue and Table service clients from Settings.

Two ways in: a connection string (Azure or Azurite; account-key auth) or an account URL
with ``DefaultAzureCredential`` (managed identity, workload identity, az login) for
production. Retries and timeouts are kept short on purpose: an unreachable account must
fail within seconds so the API can answer 503, and the worker retries jobs itself.

Timeouts come in three kinds (STORAGE_* settings): every request has a connect timeout; a
metadata, table or queue request has a read timeout per try, and the stores bound the whole
call, retries included, with a deadline (``core/backends/deadline.py``); a blob transfer
instead passes ``transfer_kwargs`` per call, whose read timeout is the stall timeout (the
SDK's socket read timeout is "no byte for N seconds", not a total).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from azure.data.tables import TableServiceClient
from azure.storage.blob import BlobServiceClient
from azure.storage.blob import LinearRetry as BlobRetry
from azure.storage.queue import LinearRetry as QueueRetry
from azure.storage.queue import QueueServiceClient

from core.config import Settings
from core.errors import ConfigError

MIB = 1024 * 1024


@dataclass(frozen=True)
class AzureOptions:
    """Client tuning. The defaults suit both the API and the worker."""

    retry_total: int = 2  # retries after the first try (connection errors, 5xx, 429)
    retry_backoff_s: float = 1.0  # pause before each retry (callers back off further themselves)
    connection_timeout_s: float = 3.0
    read_timeout_s: float = 3.0  # per try, metadata/table/queue requests
    deadline_s: float = 4.0  # a whole metadata/table/queue call, retries included
    stall_timeout_s: float = 30.0  # blob transfers: no byte for this long
    max_concurrency: int = 4  # parallel block uploads / range downloads per blob
    block_size: int = 4 * MIB  # one staged block / one download chunk (bounds memory)
    single_put_size: int = 8 * MIB  # smaller files go up in one request

    @classmethod
    def from_settings(cls, settings: Settings) -> AzureOptions:
        return cls(
            connection_timeout_s=settings.storage_connect_timeout_s,
            read_timeout_s=settings.storage_read_timeout_s,
            deadline_s=settings.storage_deadline_s,
            stall_timeout_s=settings.storage_stall_timeout_s,
        )

    @property
    def transfer_kwargs(self) -> dict[str, Any]:
        """Per-call keywords of a blob upload or download: a stall timeout, no deadline."""
        return {"read_timeout": self.stall_timeout_s}


@dataclass
class AzureClients:
    blob_service: BlobServiceClient
    queue_service: QueueServiceClient
    table_service: TableServiceClient
    credential: Any | None  # DefaultAzureCredential (None with a connection string)
    account_key: str | None  # for account-key SAS; None with DefaultAzureCredential

    def close(self) -> None:
        for client in (self.blob_service, self.queue_service, self.table_service, self.credential):
            if client is not None:
                client.close()


def build_clients(settings: Settings, options: AzureOptions) -> AzureClients:
    """Clients for the account in ``settings``. Raises ConfigError for unusable settings."""
    if settings.azure_storage_connection_string:
        return _from_connection_string(settings.azure_storage_connection_string, options)
    if settings.azure_storage_account_url:
        return _from_account_url(settings, options)
    raise ConfigError(
        "STORAGE_BACKEND=azure needs AZURE_STORAGE_CONNECTION_STRING or AZURE_STORAGE_ACCOUNT_URL"
    )


def _storage_kwargs(options: AzureOptions, retry_class: type) -> dict[str, Any]:
    retry = retry_class(
        backoff=options.retry_backoff_s,
        retry_total=options.retry_total,
        random_jitter_range=options.retry_backoff_s / 2,
    )
    return {
        "retry_policy": retry,
        "connection_timeout": options.connection_timeout_s,
        "read_timeout": options.read_timeout_s,
    }


def _blob_kwargs(options: AzureOptions) -> dict[str, Any]:
    return {
        **_storage_kwargs(options, BlobRetry),
        "max_block_size": options.block_size,
        "max_single_put_size": options.single_put_size,
        "max_single_get_size": options.block_size,
        "max_chunk_get_size": options.block_size,
    }


def _table_kwargs(options: AzureOptions) -> dict[str, Any]:
    return {
        "retry_total": options.retry_total,
        "retry_backoff_factor": options.retry_backoff_s,
        "connection_timeout": options.connection_timeout_s,
        "read_timeout": options.read_timeout_s,
    }


def _from_connection_string(connection_string: str, options: AzureOptions) -> AzureClients:
    try:
        blob_service = BlobServiceClient.from_connection_string(connection_string, **_blob_kwargs(options))
        queue_service = QueueServiceClient.from_connection_string(
            connection_string, **_storage_kwargs(options, QueueRetry)
        )
        table_service = TableServiceClient.from_connection_string(connection_string, **_table_kwargs(options))
    except ValueError as exc:
        raise ConfigError(
            f"AZURE_STORAGE_CONNECTION_STRING is not a usable connection string ({exc}); expected "
            "'DefaultEndpointsProtocol=https;AccountName=...;AccountKey=...;EndpointSuffix=core.windows.net' "
            "or Azurite's with BlobEndpoint/QueueEndpoint/TableEndpoint"
        ) from None
    account_key = getattr(blob_service.credential, "account_key", None)
    return AzureClients(blob_service, queue_service, table_service, credential=None, account_key=account_key)


def _from_account_url(settings: Settings, options: AzureOptions) -> AzureClients:
    from azure.identity import DefaultAzureCredential  # only production needs azure-identity's start-up cost

    blob_url, queue_url, table_url = (
        settings.azure_storage_account_url, settings.queue_account_url, settings.table_account_url
    )
    # the caller checked the blob URL; the queue and table URLs default to siblings of it
    assert blob_url and queue_url and table_url
    credential = DefaultAzureCredential()
    try:
        blob_service = BlobServiceClient(blob_url, credential, **_blob_kwargs(options))
        queue_service = QueueServiceClient(queue_url, credential, **_storage_kwargs(options, QueueRetry))
        table_service = TableServiceClient(table_url, credential=credential, **_table_kwargs(options))
    except ValueError as exc:
        credential.close()
        raise ConfigError(
            f"AZURE_STORAGE_ACCOUNT_URL / AZURE_QUEUE_ACCOUNT_URL / AZURE_TABLE_ACCOUNT_URL are not usable "
            f"account URLs ({exc}); expected https://<account>.blob.core.windows.net"
        ) from None
    return AzureClients(blob_service, queue_service, table_service, credential=credential, account_key=None)
