"""Storage backends. ``build_backends`` is the one place that picks an implementation."""

from __future__ import annotations

from core.backends.base import Backends, BlobInfo, BlobStore, JobPage, JobQueue, JobStore, QueueMessage
from core.config import Settings, StorageBackend

__all__ = [
    "Backends",
    "BlobInfo",
    "BlobStore",
    "JobPage",
    "JobQueue",
    "JobStore",
    "QueueMessage",
    "build_backends",
]


def build_backends(settings: Settings) -> Backends:
    """Create the blob store, queue and job store the settings ask for (creating containers,
    queues and tables if needed). Raises ConfigError or StorageUnavailable."""
    if settings.storage_backend is StorageBackend.AZURE:
        from core.backends.azure import build_azure_backends

        return build_azure_backends(settings)
    from core.backends.local import build_local_backends

    return build_local_backends(settings)
