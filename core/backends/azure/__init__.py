"""The Azure backend: Blob Storage for blobs, Queue Storage for the queue (and poison
queue), Table Storage for job records and the webhook outbox (see ``jobs.py`` for why Tables).

Works against Azure and against Azurite. Authentication is a connection string
(``AZURE_STORAGE_CONNECTION_STRING``) or an account URL (``AZURE_STORAGE_ACCOUNT_URL``)
with ``DefaultAzureCredential``. No azure.core exception leaves this package.
"""

from __future__ import annotations

from collections.abc import Callable

from core.backends.azure.blobs import AzureBlobStore
from core.backends.azure.clients import AzureOptions, build_clients
from core.backends.azure.jobs import AzureJobStore
from core.backends.azure.outbox import AzureOutbox
from core.backends.azure.queue import AzureJobQueue
from core.backends.base import Backends
from core.config import Settings
from core.errors import ConfigError, InvalidInput

__all__ = ["AzureBlobStore", "AzureJobQueue", "AzureJobStore", "AzureOptions", "AzureOutbox", "build_azure_backends"]


def build_azure_backends(settings: Settings, options: AzureOptions | None = None) -> Backends:
    """Connect to the account in ``settings`` and create the container, queues and table if
    missing. Raises ConfigError (bad connection string, credentials or resource names) or
    StorageUnavailable (the account cannot be reached), each naming what to fix."""
    options = options or AzureOptions.from_settings(settings)
    clients = build_clients(settings, options)
    blobs = AzureBlobStore(
        clients.blob_service, settings.blob_container, options, clients.account_key, clients.credential
    )
    queue = AzureJobQueue(clients.queue_service, settings.queue_name, settings.poison_queue_name, options)
    stream_queue = AzureJobQueue(clients.queue_service, settings.stream_queue, settings.stream_poison_queue, options)
    jobs = AzureJobStore(clients.table_service, settings.jobs_table, options)
    try:
        _create(blobs.create_container, "BLOB_CONTAINER")
        _create(queue.create_queues, "QUEUE_NAME / POISON_QUEUE_NAME")
        _create(stream_queue.create_queues, "STREAM_QUEUE_NAME")
        _create(jobs.create_table, "JOBS_TABLE")
    except BaseException:
        clients.close()
        raise
    outbox = AzureOutbox(clients.table_service, settings.jobs_table, options)  # events share the jobs table
    return Backends(blobs=blobs, queue=queue, jobs=jobs, outbox=outbox, stream_queue=stream_queue)  # each store closes its own client


def _create(create: Callable[[], object], setting: str) -> None:
    try:
        create()
    except InvalidInput as exc:  # the service rejected the name
        raise ConfigError(f"{setting} is not a valid Azure Storage name: {exc}") from None
