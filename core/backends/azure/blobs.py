"""Blobs in one Azure Blob Storage container.

Uploads go up as staged blocks of ``AzureOptions.block_size``, a few in parallel (see
``uploads.py``), so memory stays near ``max_concurrency * block_size`` whatever the file
size; iterables of chunks are wrapped in a small file-like reader for the same path.
Downloads are ranged GETs of the same size. Transfers fail when they stall (no byte for
STORAGE_STALL_TIMEOUT_S); every other call, small blobs' reads and writes included
(``read_small``, ``write_small``), answers or fails within STORAGE_DEADLINE_S.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO

from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import (
    BlobClient,
    BlobProperties,
    BlobSasPermissions,
    BlobServiceClient,
    ContentSettings,
    UserDelegationKey,
    generate_blob_sas,
)

from core.backends.azure.clients import AzureOptions
from core.backends.azure.errors import azure_errors
from core.backends.azure.uploads import upload_in_blocks
from core.backends.base import BlobInfo, BlobStore
from core.backends.deadline import DeadlineRunner, bounded
from core.backends.paths import validate_blob_path, validate_blob_prefix
from core.errors import InvalidInput, NotFound, PreconditionFailed, StorageError

SAS_CLOCK_SKEW = timedelta(minutes=5)  # start SAS validity a little in the past
DELEGATION_KEY_MIN_LIFETIME = timedelta(hours=1)
DELEGATION_KEY_MAX_LIFETIME = timedelta(days=7)  # the service's limit


class AzureBlobStore(BlobStore):
    """Blobs in ``container`` of the account ``service`` points at."""

    def __init__(
        self,
        service: BlobServiceClient,
        container: str,
        options: AzureOptions,
        account_key: str | None,
        credential: Any | None = None,
    ) -> None:
        """``account_key`` signs SAS URLs; without it they are signed with a user delegation
        key. ``credential`` (shared by all three stores) is closed with this store."""
        self._service = service
        self._credential = credential
        self._container = service.get_container_client(container)
        self._options = options
        self._account_key = account_key
        self._delegation_key: UserDelegationKey | None = None
        self._delegation_lock = threading.Lock()
        self.endpoint = self._container.url
        self._deadline = DeadlineRunner(options.deadline_s, f"Azure Blob storage at {self.endpoint}")

    @bounded("creating the blob container")
    def create_container(self) -> None:
        """Create the container unless it exists (at start-up)."""
        with azure_errors("creating the blob container", self.endpoint), suppress(ResourceExistsError):
            self._container.create_container()

    # --- writing --------------------------------------------------------------------

    def upload_file(self, path: str, source: Path, content_type: str | None = None) -> BlobInfo:
        """Upload a local file block by block (never read whole)."""
        try:
            stream = open(source, "rb")  # noqa: SIM115 -- opened apart so only its error says "does not exist"
        except FileNotFoundError:
            raise InvalidInput(f"cannot upload {source}: the file does not exist") from None
        with stream:
            return self._upload(path, stream, content_type)

    def upload_stream(
        self, path: str, chunks: BinaryIO | Iterable[bytes], content_type: str | None = None
    ) -> BlobInfo:
        """Upload a file-like object or an iterable of byte chunks, block by block."""
        stream = chunks if hasattr(chunks, "read") else ChunkReader(chunks)
        return self._upload(path, stream, content_type)  # type: ignore[arg-type]

    @bounded("writing a small blob")
    def write_small(self, path: str, data: bytes, content_type: str | None = None) -> BlobInfo:
        return self.upload_stream(path, [data], content_type)

    def _upload(self, path: str, stream: BinaryIO, content_type: str | None) -> BlobInfo:
        blob = self._blob(path)
        with azure_errors(f"uploading blob {path!r}", self.endpoint):
            upload_in_blocks(
                blob,
                stream,
                ContentSettings(content_type=content_type) if content_type else None,
                block_size=self._options.block_size,
                single_put_size=self._options.single_put_size,
                max_concurrency=self._options.max_concurrency,
                request_options=self._options.transfer_kwargs,
            )
        return self.info(path)

    @bounded("writing a blob conditionally")
    def write_if(self, path: str, data: bytes, if_match: str | None, content_type: str | None = None) -> BlobInfo:
        """One PUT with the service's own condition: If-Match on the etag, or If-None-Match: *
        (``overwrite=False``) for a blob that must not exist yet."""
        blob = self._blob(path)
        settings = ContentSettings(content_type=content_type) if content_type else None
        condition: dict[str, Any] = {"overwrite": False}
        if if_match is not None:
            condition = {"overwrite": True, "etag": if_match, "match_condition": MatchConditions.IfNotModified}
        try:
            with azure_errors(f"writing blob {path!r}", self.endpoint):
                try:
                    blob.upload_blob(data, content_settings=settings, **condition, **self._options.transfer_kwargs)
                except ResourceExistsError:
                    raise PreconditionFailed(f"blob {path!r} exists already") from None
        except NotFound:  # an If-Match on a blob deleted since: it changed, too
            raise PreconditionFailed(f"blob {path!r} was deleted since it was read") from None
        return self.info(path)

    # --- reading --------------------------------------------------------------------

    def download_to_file(self, path: str, destination: Path) -> BlobInfo:
        """Download in ranged chunks straight into ``destination``. Raises NotFound."""
        blob = self._blob(path)
        with self._missing_is_not_found(path), azure_errors(f"downloading blob {path!r}", self.endpoint):
            downloader = blob.download_blob(
                max_concurrency=self._options.max_concurrency, **self._options.transfer_kwargs
            )
            with _open_destination(destination) as out:
                downloader.readinto(out)
            return _blob_info(path, downloader.properties)

    def open_range(self, path: str, start: int = 0, length: int | None = None) -> Iterator[bytes]:
        """Start the download now (NotFound is raised here) and return its chunks."""
        _check_range(start, length)
        blob = self._blob(path)
        if length == 0:
            self.info(path)  # still raise NotFound for a missing blob
            return iter(())
        with self._missing_is_not_found(path), azure_errors(f"reading blob {path!r}", self.endpoint):
            try:
                downloader = blob.download_blob(offset=start, length=length, **self._options.transfer_kwargs)
            except HttpResponseError as exc:
                if exc.status_code == 416:  # start is at or past the end: nothing to read
                    return iter(())
                raise
        return self._chunks(path, downloader.chunks())

    @bounded("reading a small blob")
    def read_small(self, path: str) -> bytes:
        return b"".join(self.open_range(path))

    def _chunks(self, path: str, chunks: Iterator[bytes]) -> Iterator[bytes]:
        with azure_errors(f"reading blob {path!r}", self.endpoint):
            yield from chunks

    @bounded("reading a blob's properties")
    def info(self, path: str) -> BlobInfo:
        with self._missing_is_not_found(path), azure_errors(f"reading blob {path!r}", self.endpoint):
            return _blob_info(path, self._blob(path).get_blob_properties())

    @bounded("checking a blob")
    def exists(self, path: str) -> bool:
        with azure_errors(f"checking blob {path!r}", self.endpoint):
            return bool(self._blob(path).exists())

    def list(self, prefix: str = "") -> Iterator[BlobInfo]:
        """Blobs under ``prefix`` in path order (the service lists in that order)."""
        validate_blob_prefix(prefix)
        yield from self._deadline.iterate(f"listing blobs under {prefix!r}", self._list(prefix))

    def _list(self, prefix: str) -> Iterator[BlobInfo]:
        with azure_errors(f"listing blobs under {prefix!r}", self.endpoint):
            for blob in self._container.list_blobs(name_starts_with=prefix or None):
                yield _blob_info(blob.name, blob)

    @bounded("deleting a blob")
    def delete(self, path: str) -> None:
        """Delete a blob and its snapshots; a missing blob is fine."""
        blob = self._blob(path)
        with azure_errors(f"deleting blob {path!r}", self.endpoint), suppress(ResourceNotFoundError):
            blob.delete_blob(delete_snapshots="include")

    # --- URLs -----------------------------------------------------------------------

    @bounded("signing a read URL")
    def read_url(self, path: str, expires_in: timedelta, content_disposition: str | None = None) -> str | None:
        """A SAS URL that allows GET on this one blob until ``expires_in`` from now; the SAS
        itself sets the response's Content-Disposition (a redirect cannot carry headers)."""
        return self._sas_url(path, expires_in, BlobSasPermissions(read=True), content_disposition)

    @bounded("signing a write URL")
    def write_url(self, path: str, expires_in: timedelta) -> str | None:
        """A SAS URL that allows PUT (``x-ms-blob-type: BlockBlob``) of this one blob."""
        return self._sas_url(path, expires_in, BlobSasPermissions(create=True, write=True))

    def _sas_url(self, path: str, expires_in: timedelta, permission: BlobSasPermissions,
                 content_disposition: str | None = None) -> str | None:
        blob = self._blob(path)
        now = datetime.now(UTC)
        expiry = now + expires_in
        signing: dict[str, Any] = {}
        if self._account_key:
            signing["account_key"] = self._account_key
        else:
            signing["user_delegation_key"] = self._user_delegation_key(now, expiry)
        account_name = self._service.account_name
        assert account_name is not None  # parsed from the account URL or connection string
        token = generate_blob_sas(
            account_name=account_name,
            container_name=self._container.container_name,
            blob_name=path,
            permission=permission,
            start=now - SAS_CLOCK_SKEW,
            expiry=expiry,
            content_disposition=content_disposition,
            **signing,
        )
        return f"{blob.url}?{token}"

    def _user_delegation_key(self, now: datetime, expiry: datetime) -> UserDelegationKey:
        """A cached user delegation key (Entra ID auth) valid at least until ``expiry``."""
        with self._delegation_lock:
            key = self._delegation_key
            if key is None or key.signed_expiry is None or _parse_time(key.signed_expiry) < expiry + SAS_CLOCK_SKEW:
                lifetime = min(
                    max(expiry - now + SAS_CLOCK_SKEW, DELEGATION_KEY_MIN_LIFETIME),
                    DELEGATION_KEY_MAX_LIFETIME,
                )
                with azure_errors("getting a user delegation key for SAS URLs", self.endpoint):
                    key = self._service.get_user_delegation_key(now - SAS_CLOCK_SKEW, now + lifetime)
                self._delegation_key = key
            return key

    # --- everything else --------------------------------------------------------------

    @bounded("checking the blob container")
    def ping(self) -> None:
        with azure_errors("checking the blob container", self.endpoint):
            self._container.get_container_properties()

    def close(self) -> None:
        self._deadline.close()
        self._container.close()
        self._service.close()
        if self._credential is not None:
            self._credential.close()

    def _blob(self, path: str) -> BlobClient:
        return self._container.get_blob_client(validate_blob_path(path))

    @staticmethod
    @contextmanager
    def _missing_is_not_found(path: str) -> Iterator[None]:
        """Replace the SDK-flavoured NotFound message with a plain one."""
        try:
            yield
        except NotFound:
            raise NotFound(f"blob {path!r} does not exist") from None


def _open_destination(destination: Path) -> BinaryIO:
    try:
        return open(destination, "wb")
    except OSError as exc:
        raise StorageError(f"cannot write the download to {destination}: {exc.strerror}") from None


class ChunkReader(io.RawIOBase):
    """A read-only file-like view of an iterable of byte chunks, holding one chunk at a time.

    Lets the SDK's block uploader pull ``block_size`` bytes at a time from a generator
    (e.g. an HTTP request body) instead of us collecting the whole upload first.
    """

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self._pending = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        while not self._pending:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            if not isinstance(chunk, (bytes, bytearray, memoryview)):
                raise InvalidInput(f"upload chunks must be bytes, got {type(chunk).__name__}")
            self._pending = memoryview(chunk).cast("B")
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size


def _blob_info(path: str, properties: BlobProperties) -> BlobInfo:
    content_settings = getattr(properties, "content_settings", None)
    return BlobInfo(
        path=path,
        size=properties.size,
        content_type=content_settings.content_type if content_settings else None,
        etag=properties.etag,
        last_modified=properties.last_modified,
    )


def _check_range(start: int, length: int | None) -> None:
    if start < 0:
        raise InvalidInput(f"range start must be >= 0, got {start}")
    if length is not None and length < 0:
        raise InvalidInput(f"range length must be >= 0, got {length}")


def _parse_time(value: str | datetime) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise StorageError(f"unexpected user delegation key expiry {value!r}") from None
