"""Blobs as plain files under ``<data_dir>/blobs``.

A write goes to a hidden temp file in the blob's own directory, is fsynced, then renamed
over the target with ``os.replace``: readers see the old blob or the new one, never half a
blob. Content types live in the shared SQLite database (files have nowhere to keep them).
"""

from __future__ import annotations

import mimetypes
import os
import shutil
import sqlite3
import stat as stat_module
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import BinaryIO, cast

from core.backends.base import BlobInfo, BlobStore
from core.backends.local.database import Database
from core.backends.paths import validate_blob_path, validate_blob_prefix
from core.errors import (
    DISK_ERRNOS,
    AlreadyExists,
    InvalidInput,
    NotFound,
    PreconditionFailed,
    StorageError,
    StorageUnavailable,
)

CHUNK_BYTES = 1024 * 1024
TEMP_SUFFIX = ".partial"


@contextmanager
def _os_errors(doing: str) -> Iterator[None]:
    """Convert OS errors from file operations into core.errors."""
    try:
        yield
    except FileNotFoundError as exc:
        raise NotFound(f"cannot {doing}: {exc.strerror}: {exc.filename}") from None
    except (NotADirectoryError, IsADirectoryError, FileExistsError) as exc:
        raise AlreadyExists(f"cannot {doing}: a blob and a folder would share a name ({exc})") from None
    except PermissionError as exc:
        raise StorageUnavailable(f"cannot {doing}: permission denied ({exc})") from None
    except OSError as exc:
        if exc.errno in DISK_ERRNOS:
            raise StorageUnavailable(f"cannot {doing}: {exc.strerror}") from None
        raise StorageError(f"cannot {doing}: {exc}") from None


class LocalBlobStore(BlobStore):
    """Files under ``root``; see the module docstring."""

    def __init__(self, root: Path, database: Database) -> None:
        self.root = Path(root)
        self._db = database
        with _os_errors(f"create the blob folder {self.root}"):
            self.root.mkdir(parents=True, exist_ok=True)

    # --- writing --------------------------------------------------------------------

    def upload_file(self, path: str, source: Path, content_type: str | None = None) -> BlobInfo:
        """Copy ``source`` into the store (the kernel copies; nothing is read into memory)."""
        try:
            src = open(source, "rb")  # noqa: SIM115 -- opened apart so only its error says "does not exist"
        except FileNotFoundError:
            raise InvalidInput(f"cannot upload {source}: the file does not exist") from None
        with src:
            return self._write(path, lambda dst: shutil.copyfileobj(src, dst, CHUNK_BYTES), content_type)

    def upload_stream(
        self, path: str, chunks: BinaryIO | Iterable[bytes], content_type: str | None = None
    ) -> BlobInfo:
        """Store a file-like object or an iterable of byte chunks, one chunk at a time."""
        return self._write(path, lambda dst: _copy_chunks(chunks, dst), content_type)

    def write_if(self, path: str, data: bytes, if_match: str | None, content_type: str | None = None) -> BlobInfo:
        """The database's write lock (shared by every process of this data folder) makes the
        compare and the write one step. The new file's mtime is pushed past the old one's, so
        the etag (mtime and size) changes even when two writes land in one clock tick."""
        target = self._file(validate_blob_path(path))
        with self._db.write() as conn:
            before = self._stat_or_none(target)
            current = _etag(before) if before is not None else None
            if current != if_match:
                raise PreconditionFailed(f"blob {path!r} changed since it was read (etag {if_match}, now {current})")
            self._write_file(path, lambda dst: dst.write(data))
            if before is not None:
                with _os_errors(f"write blob {path!r}"):
                    after = target.stat()
                    if after.st_mtime_ns <= before.st_mtime_ns:
                        os.utime(target, ns=(after.st_atime_ns, before.st_mtime_ns + 1))
            self._store_content_type(conn, path, content_type)
        return self.info(path)

    @staticmethod
    def _stat_or_none(file: Path) -> os.stat_result | None:
        try:
            stat = file.stat()
        except (FileNotFoundError, NotADirectoryError):
            return None
        return stat if stat_module.S_ISREG(stat.st_mode) else None

    def _write(self, path: str, fill: Callable[[_ConvertingWriter], object], content_type: str | None) -> BlobInfo:
        self._write_file(path, fill)
        self._set_content_type(path, content_type)
        return self.info(path)

    def _write_file(self, path: str, fill: Callable[[_ConvertingWriter], object]) -> None:
        """Fill a temp file, make it durable, rename it over the blob. Errors from the source
        (e.g. a client that disconnects) propagate unchanged; file-system errors are converted."""
        target = self._file(validate_blob_path(path))
        doing = f"write blob {path!r}"
        with _os_errors(doing):
            temp = self._open_temp(target)
        try:
            with temp:
                fill(_ConvertingWriter(temp, doing))
                with _os_errors(doing):
                    temp.flush()
                    os.fsync(temp.fileno())
            with _os_errors(doing):
                os.replace(temp.name, target)
        except BaseException:
            Path(temp.name).unlink(missing_ok=True)
            raise
        _fsync_directory(target.parent)

    def _open_temp(self, target: Path) -> BinaryIO:
        """A new hidden file beside ``target``. Retried because a concurrent delete_prefix
        may remove the freshly made (still empty) folder before the file is created."""
        for attempt in range(5):
            target.parent.mkdir(parents=True, exist_ok=True)
            temp = target.parent / f".{target.name}.{os.urandom(6).hex()}{TEMP_SUFFIX}"
            try:
                return open(temp, "xb")
            except FileNotFoundError:
                if attempt == 4:
                    raise
        raise AssertionError("unreachable")

    def _set_content_type(self, path: str, content_type: str | None) -> None:
        with self._db.write() as conn:
            self._store_content_type(conn, path, content_type)

    @staticmethod
    def _store_content_type(conn: sqlite3.Connection, path: str, content_type: str | None) -> None:
        if content_type:
            conn.execute(
                "INSERT INTO blob_meta (path, content_type) VALUES (?, ?) "
                "ON CONFLICT (path) DO UPDATE SET content_type = excluded.content_type",
                (path, content_type),
            )
        else:
            conn.execute("DELETE FROM blob_meta WHERE path = ?", (path,))

    # --- reading --------------------------------------------------------------------

    def download_to_file(self, path: str, destination: Path) -> BlobInfo:
        """Copy the blob to ``destination`` in chunks. Raises NotFound."""
        with self._open(path) as src:
            try:
                dst = open(destination, "wb")  # noqa: SIM115 -- opened apart for its own error message
            except OSError as exc:
                raise StorageError(f"cannot write the download to {destination}: {exc.strerror}") from None
            with dst, _os_errors(f"write {destination}"):
                shutil.copyfileobj(src, dst, CHUNK_BYTES)
        return self.info(path)

    def open_range(self, path: str, start: int = 0, length: int | None = None) -> Iterator[bytes]:
        """Open the blob now (so NotFound is raised here, not on first iteration) and return
        an iterator over ``[start, start+length)`` in chunks of at most 1 MiB."""
        _check_range(start, length)
        src = self._open(path)
        src.seek(start)
        return _read_range(src, length)

    def _open(self, path: str) -> BinaryIO:
        try:
            with _os_errors(f"read blob {path!r}"):
                return open(self._file(validate_blob_path(path)), "rb")
        except (NotFound, AlreadyExists):
            raise NotFound(f"blob {path!r} does not exist") from None

    def info(self, path: str) -> BlobInfo:
        file = self._file(validate_blob_path(path))
        try:
            with _os_errors(f"read blob {path!r}"):
                stat = file.stat()
        except (NotFound, AlreadyExists):
            raise NotFound(f"blob {path!r} does not exist") from None
        if not stat_module.S_ISREG(stat.st_mode):
            raise NotFound(f"blob {path!r} does not exist (it is a folder of blobs)")
        return self._blob_info(path, stat)

    def _blob_info(self, path: str, stat: os.stat_result, content_type: str | None = None) -> BlobInfo:
        return BlobInfo(
            path=path,
            size=stat.st_size,
            content_type=content_type or self._content_type(path),
            etag=_etag(stat),
            last_modified=datetime.fromtimestamp(stat.st_mtime, UTC),
        )

    def _content_type(self, path: str) -> str | None:
        with self._db.read() as conn:
            row = conn.execute("SELECT content_type FROM blob_meta WHERE path = ?", (path,)).fetchone()
        return row[0] if row else mimetypes.guess_type(path)[0]

    def exists(self, path: str) -> bool:
        return self._file(validate_blob_path(path)).is_file()

    def list(self, prefix: str = "") -> Iterator[BlobInfo]:
        """Blobs whose path starts with ``prefix``, in path order (temp files are skipped)."""
        validate_blob_prefix(prefix)
        folder = self.root / prefix.rpartition("/")[0]
        paths = sorted(path for path in self._walk(folder) if path.startswith(prefix))
        for path in paths:
            try:
                stat = self._file(path).stat()
            except FileNotFoundError:
                continue  # deleted while we were listing
            yield self._blob_info(path, stat)

    def _walk(self, folder: Path) -> Iterator[str]:
        for dirpath, dirnames, filenames in os.walk(folder):
            dirnames[:] = [name for name in dirnames if not name.startswith(".")]
            relative = Path(dirpath).relative_to(self.root).as_posix()
            for name in filenames:
                if not name.startswith("."):
                    yield name if relative == "." else f"{relative}/{name}"

    # --- deleting ---------------------------------------------------------------------

    def delete(self, path: str) -> None:
        """Delete a blob (missing is fine) and the folders it leaves empty."""
        file = self._file(validate_blob_path(path))
        with _os_errors(f"delete blob {path!r}"):
            try:
                file.unlink()
            except (FileNotFoundError, NotADirectoryError):
                pass
            except IsADirectoryError:
                return  # a folder of blobs, not a blob
        with self._db.write() as conn:
            conn.execute("DELETE FROM blob_meta WHERE path = ?", (path,))
        self._prune_empty_folders(file.parent)

    def _prune_empty_folders(self, folder: Path) -> None:
        while folder != self.root and self.root in folder.parents:
            try:
                folder.rmdir()
            except OSError:
                return  # not empty (or already gone, or a writer just made it): stop
            folder = folder.parent

    # --- everything else --------------------------------------------------------------

    def read_url(self, path: str, expires_in: timedelta, content_disposition: str | None = None) -> str | None:
        return None  # the API streams local blobs itself

    def write_url(self, path: str, expires_in: timedelta) -> str | None:
        return None  # the API serves an upload endpoint instead

    def ping(self) -> None:
        if not self.root.is_dir() or not os.access(self.root, os.W_OK | os.X_OK):
            raise StorageUnavailable(f"blob folder {self.root} is missing or not writable")
        self._db.ping()

    def close(self) -> None:
        """Close the shared database connections (Backends.close calls this once per store)."""
        self._db.close()

    def _file(self, path: str) -> Path:
        return self.root / path


class _ConvertingWriter:
    """Wraps the temp file so a failed write (disk full) becomes a core.errors type, while
    exceptions raised by the data source pass through untouched."""

    def __init__(self, file: BinaryIO, doing: str) -> None:
        self._file, self._doing = file, doing

    def write(self, data: bytes | bytearray | memoryview) -> int:
        with _os_errors(self._doing):
            return self._file.write(data)


def _copy_chunks(chunks: BinaryIO | Iterable[bytes], dst: _ConvertingWriter) -> None:
    if hasattr(chunks, "read"):
        shutil.copyfileobj(cast(BinaryIO, chunks), dst, CHUNK_BYTES)
        return
    for chunk in chunks:
        if not isinstance(chunk, (bytes, bytearray, memoryview)):
            raise InvalidInput(f"upload chunks must be bytes, got {type(chunk).__name__}")
        dst.write(chunk)


def _etag(stat: os.stat_result) -> str:
    return f'"{stat.st_mtime_ns:x}-{stat.st_size:x}"'


def _check_range(start: int, length: int | None) -> None:
    if start < 0:
        raise InvalidInput(f"range start must be >= 0, got {start}")
    if length is not None and length < 0:
        raise InvalidInput(f"range length must be >= 0, got {length}")


def _read_range(src: BinaryIO, length: int | None) -> Iterator[bytes]:
    with src:
        remaining = length
        while remaining is None or remaining > 0:
            chunk = src.read(CHUNK_BYTES if remaining is None else min(CHUNK_BYTES, remaining))
            if not chunk:
                return
            if remaining is not None:
                remaining -= len(chunk)
            yield chunk


def _fsync_directory(folder: Path) -> None:
    """Make the rename itself durable (POSIX); harmless to skip where unsupported."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
