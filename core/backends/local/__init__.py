"""The embedded local backend: blobs as files, queue and job records in SQLite (WAL).

Everything lives under ``settings.data_dir``::

    data_dir/
      blobs/<path>          one file per blob
      cattlecounter.db      queue, poison queue, job records, webhook outbox, blob content types

Safe for several threads and several worker processes on one machine. Not for several
machines: SQLite's locking does not work over network file systems (use Azure there).
"""

from __future__ import annotations

from core.backends.base import Backends
from core.backends.local.blobs import LocalBlobStore
from core.backends.local.database import Database
from core.backends.local.jobs import LocalJobStore
from core.backends.local.outbox import LocalOutbox
from core.backends.local.queue import LocalJobQueue
from core.config import Settings

DATABASE_FILE = "cattlecounter.db"
BLOBS_FOLDER = "blobs"

__all__ = ["LocalBlobStore", "LocalJobQueue", "LocalJobStore", "LocalOutbox", "Database", "build_local_backends"]


def build_local_backends(settings: Settings) -> Backends:
    """Open (creating if needed) the data folder and database named by ``settings.data_dir``.

    Raises StorageUnavailable if the folder or database cannot be created or opened.
    """
    data_dir = settings.data_dir.expanduser().resolve()
    # a lock held elsewhere (another process mid-write) fails a call at the storage deadline,
    # like a storage service that stops answering, instead of blocking the API
    database = Database(data_dir / DATABASE_FILE, busy_timeout_s=settings.storage_deadline_s)
    database.create_schema()
    return Backends(
        blobs=LocalBlobStore(data_dir / BLOBS_FOLDER, database),
        queue=LocalJobQueue(database, settings.queue_name, settings.poison_queue_name),
        jobs=LocalJobStore(database),
        outbox=LocalOutbox(database),
        stream_queue=LocalJobQueue(database, settings.stream_queue, settings.stream_poison_queue),
    )
