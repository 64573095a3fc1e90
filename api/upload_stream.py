"""Receive a multipart upload straight to a scratch file, never holding it in memory.

Starlette's own form parser spools files too, but it cannot stop at a size limit while
reading, so we drive python-multipart ourselves: the file part goes to disk chunk by
chunk, small text fields are kept, and reading stops the moment the file is too large.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import TYPE_CHECKING, BinaryIO

import anyio
from python_multipart import MultipartParser
from python_multipart.multipart import parse_options_header
from starlette.requests import Request

from core.errors import (
    DISK_ERRNOS,
    InvalidInput,
    StorageError,
    StorageUnavailable,
    TooManyFiles,
    UploadStalled,
    UploadTooLarge,
)

if TYPE_CHECKING:  # the TypedDict exists for type checkers only
    from python_multipart.multipart import MultipartCallbacks

log = logging.getLogger(__name__)

FILE_FIELD = "file"
FILES_FIELD = "files"  # the same: several file parts may use either name (a bulk images job)
TELEMETRY_FIELD = "telemetry"  # a flight's .SRT beside its video: a file of its own, with its own limit
MAX_FIELD_BYTES = 64 * 1024
MAX_FIELDS = 32
MAX_NAME_BYTES = 255
WRITE_BATCH_BYTES = 1024 * 1024  # hand the parser ~1 MiB at a time, off the event loop


@dataclass
class ReceivedFile:
    path: Path
    filename: str
    size: int


@dataclass
class ReceivedForm:
    fields: dict[str, str] = field(default_factory=dict)
    files: list[ReceivedFile] = field(default_factory=list)
    telemetry: ReceivedFile | None = None  # the part named TELEMETRY_FIELD, never among ``files``

    @property
    def file(self) -> ReceivedFile | None:
        """The first file part (the one of a video job); None when there is none."""
        return self.files[0] if self.files else None

    @property
    def size(self) -> int:
        return sum(received.size for received in self.files)

    def discard(self) -> None:
        for received in self.files + ([self.telemetry] if self.telemetry else []):
            shutil.rmtree(received.path.parent, ignore_errors=True)


def safe_filename(raw: str) -> str:
    """The last path component of a client-supplied name, for display only.

    Names never become paths (blobs are stored under the job id), but a name such as
    ``../../x.mp4`` or ``C:\\x.mp4`` is still reduced to ``x.mp4`` so nothing downstream is
    tempted."""
    name = PureWindowsPath(PurePosixPath(raw.replace("\x00", "")).name).name.strip()
    if name in ("", ".", ".."):
        return "video"
    # file systems limit a name to 255 bytes, not characters (an accented or CJK name is longer)
    return name.encode("utf-8")[:MAX_NAME_BYTES].decode("utf-8", "ignore") or "video"


class _FormCollector:
    """python-multipart callbacks that route each part to a field or the scratch file."""

    def __init__(self, scratch_dir: Path, max_file_bytes: int, max_files: int = 1,
                 max_telemetry_bytes: int = 0) -> None:
        self.scratch_dir = scratch_dir
        self.max_file_bytes = max_file_bytes  # all file parts together, the telemetry's aside
        self.max_files = max_files
        self.max_telemetry_bytes = max_telemetry_bytes
        self.form = ReceivedForm()
        self._header_name = b""
        self._header_value = b""
        self._headers: dict[bytes, bytes] = {}
        self._part_name = ""
        self._field_value = bytearray()
        self._sink: BinaryIO | None = None
        self._receiving: ReceivedFile | None = None  # the file part being written to _sink

    def callbacks(self) -> MultipartCallbacks:
        return {
            "on_part_begin": self._part_begin,
            "on_header_field": lambda data, start, end: self._add(data, start, end, "_header_name"),
            "on_header_value": lambda data, start, end: self._add(data, start, end, "_header_value"),
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
        }

    def _add(self, data: bytes, start: int, end: int, attr: str) -> None:
        setattr(self, attr, getattr(self, attr) + data[start:end])

    def _part_begin(self) -> None:
        self._headers = {}
        self._field_value = bytearray()

    def _header_end(self) -> None:
        self._headers[self._header_name.lower()] = self._header_value
        self._header_name = b""
        self._header_value = b""

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        self._part_name = options.get(b"name", b"").decode("utf-8", "replace")
        if self._part_name == TELEMETRY_FIELD:  # a file, even when sent without a file name
            self._receive_telemetry(options.get(b"filename", b"").decode("utf-8", "replace"))
            return
        if b"filename" not in options:
            if len(self.form.fields) >= MAX_FIELDS:
                raise InvalidInput(f"too many form fields (at most {MAX_FIELDS})")
            return
        if self._part_name not in (FILE_FIELD, FILES_FIELD):
            raise InvalidInput(f"send the video or images in the form field '{FILE_FIELD}', not '{self._part_name}'")
        if len(self.form.files) >= self.max_files:
            raise TooManyFiles("send one video per job" if self.max_files == 1 else
                               f"one job takes at most {self.max_files} files (MAX_FILES_PER_JOB); "
                               "split the set into several jobs")
        self._scratch_file(safe_filename(options[b"filename"].decode("utf-8", "replace")), self.form.files.append)

    def _receive_telemetry(self, raw_name: str) -> None:
        if self.form.telemetry is not None:
            raise InvalidInput(f"{TELEMETRY_FIELD}: send one telemetry file (the video's .SRT)")
        self._scratch_file(safe_filename(raw_name) if raw_name else "telemetry.srt", self._keep_telemetry)

    def _keep_telemetry(self, received: ReceivedFile) -> None:
        self.form.telemetry = received

    def _scratch_file(self, filename: str, keep: Callable[[ReceivedFile], None]) -> None:
        """Open a file part's scratch file as the sink of its bytes; ``keep`` puts it in the form
        first, so that discard() removes it whatever happens next."""
        # a private directory per upload, so the file can keep the user's (sanitised) name:
        # error messages from probing then name the file the user knows
        path = Path(tempfile.mkdtemp(prefix="upload-", dir=self.scratch_dir)) / filename
        self._receiving = ReceivedFile(path=path, filename=filename, size=0)
        keep(self._receiving)
        self._sink = path.open("wb")

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._sink is None or self._receiving is None:
            self._field_value += data[start:end]
            if len(self._field_value) > MAX_FIELD_BYTES:
                raise InvalidInput(f"form field '{self._part_name}' is longer than {MAX_FIELD_BYTES} bytes")
            return
        self._receiving.size += end - start
        if self._receiving is self.form.telemetry:
            if self._receiving.size > self.max_telemetry_bytes:
                raise UploadTooLarge(f"{TELEMETRY_FIELD}: the file is larger than the limit of "
                                     f"{self.max_telemetry_bytes} bytes (MAX_TELEMETRY_BYTES)")
        elif self.form.size > self.max_file_bytes:
            raise UploadTooLarge(f"the upload is larger than the limit of {self.max_file_bytes} bytes")
        self._sink.write(data[start:end])

    def _part_end(self) -> None:
        if self._sink is not None:
            self._sink.close()
            self._sink = None
            self._receiving = None
        else:
            self.form.fields[self._part_name] = self._field_value.decode("utf-8", "replace")

    def close(self) -> None:
        if self._sink is not None:
            self._sink.close()
            self._sink = None


async def body_chunks(request: Request, stall_timeout_s: float) -> AsyncIterator[bytes]:
    """The request body as the server receives it, raising UploadStalled when nothing arrives
    for ``stall_timeout_s`` (the server itself would wait for ever on a silent client).
    Only silence counts: a slow upload that keeps sending is never cut off."""
    chunks = request.stream().__aiter__()
    while True:
        try:
            with anyio.fail_after(stall_timeout_s):
                chunk = await chunks.__anext__()
        except StopAsyncIteration:
            return
        except TimeoutError:
            raise UploadStalled(f"the request body stalled: nothing arrived for {stall_timeout_s:g} s "
                                "(UPLOAD_STALL_TIMEOUT_S); nothing was stored, send it again") from None
        yield chunk


async def receive_small_body(request: Request, max_bytes: int, stall_timeout_s: float, too_large: str) -> bytes:
    """A small request body (JSON), read whole: up to ``max_bytes`` (else UploadTooLarge with
    the message ``too_large``) and with the same stall timeout as an upload."""
    reject_declared_oversize(request, max_bytes, slack=0)
    data = bytearray()
    async for chunk in body_chunks(request, stall_timeout_s):
        data += chunk
        if len(data) > max_bytes:
            raise UploadTooLarge(too_large)
    return bytes(data)


async def _batches(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """Regroup the server's small body chunks (~64 KiB) into ~1 MiB batches, so the disk
    writes handed to worker threads are few and large."""
    pending = bytearray()
    async for chunk in chunks:
        pending += chunk
        if len(pending) >= WRITE_BATCH_BYTES:
            yield bytes(pending)
            pending.clear()
    if pending:
        yield bytes(pending)


def multipart_boundary(request: Request) -> bytes:
    content_type, options = parse_options_header(request.headers.get("content-type", ""))
    if content_type != b"multipart/form-data" or b"boundary" not in options:
        raise InvalidInput("send the video as multipart/form-data with the file in the field 'file'")
    return options[b"boundary"]


def reject_declared_oversize(request: Request, max_bytes: int, slack: int = MAX_FIELD_BYTES * 4) -> None:
    """Answer 413 from the Content-Length header alone, before reading any of the body."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes + slack:
        raise UploadTooLarge(f"the upload ({declared} bytes) is larger than the limit of {max_bytes} bytes")


async def receive_multipart(
    request: Request, scratch_dir: Path, max_file_bytes: int, stall_timeout_s: float, max_files: int = 1,
    max_telemetry_bytes: int = 0,
) -> ReceivedForm:
    """Parse the request body, streaming the file parts into ``scratch_dir``.

    Raises InvalidInput for a malformed form, UploadTooLarge as soon as the files pass
    ``max_file_bytes`` (the telemetry part: ``max_telemetry_bytes``) and UploadStalled when the
    client stops sending; in each case the partial scratch files are removed.
    """
    reject_declared_oversize(request, max_file_bytes + max_telemetry_bytes)
    boundary = multipart_boundary(request)
    collector = _FormCollector(scratch_dir, max_file_bytes, max_files, max_telemetry_bytes)
    try:
        # inside the try: python-multipart refuses some boundaries (over 256 bytes) right here
        parser = MultipartParser(boundary, collector.callbacks())
        async for batch in _batches(body_chunks(request, stall_timeout_s)):
            await anyio.to_thread.run_sync(parser.write, batch)
        parser.finalize()
    except Exception as exc:
        collector.close()
        collector.form.discard()
        if isinstance(exc, InvalidInput):  # ours, UploadTooLarge included: already says what is wrong
            raise
        if isinstance(exc, OSError):  # the scratch disk, not the client: full, read-only, ...
            log.error("cannot write an upload to %s: %s", scratch_dir, exc)
            if exc.errno in DISK_ERRNOS:  # full or failing: may pass, so 503 (retry), not 500
                raise StorageUnavailable("the server's scratch disk is full or failing; try again later") from None
            raise StorageError("the server could not store the upload (scratch disk); try again later") from None
        # python-multipart raises its own error types for malformed bodies
        raise InvalidInput(f"malformed multipart body: {exc}") from None
    collector.close()
    return collector.form


async def receive_raw_body(
    request: Request, destination: Path, max_bytes: int, stall_timeout_s: float
) -> int:
    """Stream a raw request body (a PUT) to ``destination``; returns its size. Nothing is
    left at ``destination`` when it fails (too large, stalled, disconnected)."""
    reject_declared_oversize(request, max_bytes, slack=0)
    size = 0
    try:
        with destination.open("wb") as sink:
            async for batch in _batches(body_chunks(request, stall_timeout_s)):
                size += len(batch)
                if size > max_bytes:
                    raise UploadTooLarge(f"the upload is larger than the limit of {max_bytes} bytes")
                await anyio.to_thread.run_sync(sink.write, batch)
    except BaseException:
        destination.unlink(missing_ok=True)
        raise
    return size
