"""A flight's telemetry (a drone's ``.SRT``) sent beside its video: checked at submit, then
stored beside the job's input (``core.jobs.telemetry_blob_path``) for the worker to read.

It comes one of three ways: the multipart field ``telemetry``, a direct upload named by
``telemetry_upload_id``, or inside a ZIP with the video (``api.video_zip``). Each is checked
the same way, from its first bytes: at most MAX_TELEMETRY_BYTES, text, with a subtitle timing
line. What its records hold is the worker's to judge: records it cannot use never fail a
job, and stats.json says what was not used and why.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from api.upload_stream import TELEMETRY_FIELD, ReceivedFile
from api.uploads import UploadBook, is_upload_id, upload_data_path
from core.backends import BlobStore
from core.config import Settings
from core.errors import InvalidInput, InvalidTelemetry, NotFound, UploadTooLarge
from core.jobs import TelemetryFile
from ml_engine.media.telemetry import SRT_HEAD_BYTES, srt_problem

TELEMETRY_UPLOAD_FIELD = "telemetry_upload_id"
SRT_MEDIA_TYPE = "application/x-subrip"


@dataclass(frozen=True)
class TelemetryInput:
    """A checked telemetry file waiting to be stored with its job: on the API's scratch disk
    (``path``) or in a direct upload (``blob``). ``field``: the request's field it came in, for
    the messages that refuse it."""

    field: str
    filename: str
    size: int
    path: Path | None = None
    blob: str | None = None

    def store(self, blobs: BlobStore, destination: str) -> TelemetryFile:
        """Copy it to ``destination``, streamed (a direct upload stays where it is: the hourly
        sweep removes it, as it is no job's input)."""
        if self.path is not None:
            blobs.upload_file(destination, self.path, SRT_MEDIA_TYPE)
        elif self.blob is not None:
            blobs.upload_stream(destination, blobs.open_range(self.blob), SRT_MEDIA_TYPE)
        return TelemetryFile(blob=destination, filename=self.filename, size_bytes=self.size)

    def refuse_for_images(self) -> InvalidTelemetry:
        return InvalidTelemetry(f"{self.field}: flight telemetry goes with one video; this request makes an "
                                "images job (send the video in 'file', or leave the telemetry out)")


def requested_telemetry(form_file: ReceivedFile | None, upload_id: str | None, uploads: UploadBook, owner: str,
                        settings: Settings) -> TelemetryInput | None:
    """The request's telemetry, checked: the multipart ``telemetry`` file or the upload named by
    ``telemetry_upload_id`` (one of them at most); None without any."""
    if form_file is not None and upload_id:
        raise InvalidTelemetry(f"{TELEMETRY_FIELD}, {TELEMETRY_UPLOAD_FIELD}: send the telemetry one way, not both")
    if form_file is not None:
        return local_telemetry(form_file.path, form_file.filename, settings, TELEMETRY_FIELD)
    if upload_id:
        return uploaded_telemetry(uploads, upload_id, owner, settings)
    return None


def local_telemetry(path: Path, filename: str, settings: Settings, field: str) -> TelemetryInput:
    """A telemetry file on scratch disk, checked. Raises UploadTooLarge or InvalidTelemetry."""
    size = path.stat().st_size
    _check_size(size, settings, field)
    with path.open("rb") as stream:
        _check_shape(stream.read(SRT_HEAD_BYTES), filename, field)
    return TelemetryInput(field, filename, size, path=path)


def uploaded_telemetry(uploads: UploadBook, upload_id: str, owner: str, settings: Settings) -> TelemetryInput:
    """The telemetry of a finished direct upload of ``owner``, checked where it lies (only its
    first bytes are read). Raises InvalidInput naming ``telemetry_upload_id``."""
    field = TELEMETRY_UPLOAD_FIELD
    if not is_upload_id(upload_id):
        raise InvalidInput(f"{field}: not a valid upload id")
    try:
        upload = uploads.get(upload_id, owner)
    except InvalidInput:
        raise InvalidInput(f"{field}: unknown upload {upload_id!r}") from None
    blob = upload_data_path(upload_id)
    try:
        size = uploads.backends.blobs.info(blob).size
    except NotFound:
        raise InvalidInput(f"{field}: nothing was uploaded for {upload_id!r} (PUT the .SRT first)") from None
    _check_size(size, settings, field)
    filename = upload.filename or "telemetry.srt"
    head = b"".join(uploads.backends.blobs.open_range(blob, 0, min(size, SRT_HEAD_BYTES))) if size else b""
    _check_shape(head, filename, field)
    return TelemetryInput(field, filename, size, blob=blob)


def _check_size(size: int, settings: Settings, field: str) -> None:
    if size > settings.max_telemetry_bytes:
        raise UploadTooLarge(f"{field}: the telemetry file is {size} bytes; the limit is "
                             f"{settings.max_telemetry_bytes} (MAX_TELEMETRY_BYTES)")


def _check_shape(head: bytes, filename: str, field: str) -> None:
    problem = srt_problem(head)
    if problem is not None:
        raise InvalidTelemetry(f"{field}: {filename}: {problem}")
