"""Streaming block-blob uploads: stage fixed-size blocks (a few in parallel), then commit.

We stage blocks ourselves instead of handing the stream to ``upload_blob`` because the
SDK (azure-storage-blob 12.31) spins forever when a parallel upload of an unknown-length
stream turns out to be empty, and because doing it here makes the memory bound explicit:
at most ``max_concurrency`` blocks in flight plus the one being read.
"""

from __future__ import annotations

import base64
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any, BinaryIO, Protocol

from azure.storage.blob import BlobBlock, BlobClient, ContentSettings


class Readable(Protocol):
    def read(self, size: int, /) -> bytes: ...


def read_block(stream: Readable, size: int) -> bytes:
    """Read up to ``size`` bytes, looping over short reads; fewer only at end of stream."""
    parts, remaining = [], size
    while remaining > 0:
        part = stream.read(remaining)
        if not part:
            break
        parts.append(part)
        remaining -= len(part)
    return parts[0] if len(parts) == 1 else b"".join(parts)


def block_id(index: int) -> str:
    """Block ids must all have the same length within a blob."""
    return base64.b64encode(f"block-{index:08d}".encode()).decode()


def upload_in_blocks(
    blob: BlobClient,
    stream: BinaryIO,
    content_settings: ContentSettings | None,
    block_size: int,
    single_put_size: int,
    max_concurrency: int,
    request_options: dict[str, Any] | None = None,
) -> None:
    """Upload ``stream`` to ``blob`` (overwriting). Small streams go up in one request.
    ``request_options`` go with every request (the stall timeout)."""
    options = request_options or {}
    first = read_block(stream, single_put_size + 1)
    if len(first) <= single_put_size:
        blob.upload_blob(first, overwrite=True, content_settings=content_settings, **options)
        return
    blocks = _Prefixed(first, stream)
    ids: list[str] = []
    running: set[Future[dict[str, Any]]] = set()
    with ThreadPoolExecutor(max_workers=max_concurrency, thread_name_prefix="blob-upload") as pool:
        while data := read_block(blocks, block_size):
            if len(running) >= max_concurrency:  # bound memory: wait for a slot first
                done, running = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    future.result()  # re-raise a failed block now
            ids.append(block_id(len(ids)))
            running.add(pool.submit(blob.stage_block, ids[-1], data, length=len(data), **options))
        for future in running:
            future.result()
    blob.commit_block_list([BlobBlock(block_id) for block_id in ids], content_settings=content_settings, **options)


class _Prefixed:
    """Reads ``prefix`` first, then ``rest`` (the bytes we already read to size the upload)."""

    def __init__(self, prefix: bytes, rest: BinaryIO) -> None:
        self._prefix = memoryview(prefix)
        self._rest = rest

    def read(self, size: int) -> bytes:
        if self._prefix:
            part, self._prefix = bytes(self._prefix[:size]), self._prefix[size:]
            return part
        return self._rest.read(size)
