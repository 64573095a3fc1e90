"""A seekable, read-only file object over a blob, built on ranged reads.

PyAV (and anything else that wants a file) can probe a video in blob storage without
downloading it: only the byte ranges it actually reads travel.
"""

from __future__ import annotations

import io

from core.backends.base import BlobStore


class BlobReader(io.RawIOBase):
    def __init__(self, store: BlobStore, path: str) -> None:
        super().__init__()
        self._store = store
        self._path = path
        self._size = store.info(path).size  # raises NotFound before anyone reads
        self._position = 0

    @property
    def size(self) -> int:
        return self._size

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._size}[whence]
        self._position = max(0, base + offset)
        return self._position

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        wanted = min(len(buffer), self._size - self._position)
        if wanted <= 0:
            return 0
        filled = 0
        for chunk in self._store.open_range(self._path, self._position, wanted):
            buffer[filled : filled + len(chunk)] = chunk
            filled += len(chunk)
        self._position += filled
        return filled


def open_blob(store: BlobStore, path: str, buffer_size: int = 1024 * 1024) -> io.BufferedReader:
    """A buffered reader over the blob (1 MiB reads by default: few round trips)."""
    return io.BufferedReader(BlobReader(store, path), buffer_size=buffer_size)
