"""The project's one error tree.

Every backend converts its library's exceptions (azure.core, sqlite3, av, ...) into
these at the boundary, so callers never see third-party exception types. Each error
carries a stable machine-readable ``code`` (shown to API users and stored on failed
jobs), the HTTP status the API answers with, and whether retrying can ever help.
"""

from __future__ import annotations

import errno
import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

# OSError numbers that mean the disk (full, read-only, failing), not the job's input: a job
# that meets one is handed back rather than failed (see worker.runner and ml_engine.media.video).
DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO})


class CattleCounterError(Exception):
    """Root of the tree. ``str(err)`` is a message a user can act on."""

    code = "internal_error"
    http_status = 500
    transient = False  # True: the same call may succeed later (network, throttling)

    def __init__(self, message: str = "") -> None:
        super().__init__(message or self.__class__.__doc__ or self.code)

    @property
    def message(self) -> str:
        return str(self)


# --- configuration ---------------------------------------------------------------


class ConfigError(CattleCounterError):
    """The service's settings are invalid."""

    code = "config_error"


# --- access ---------------------------------------------------------------------------


class Unauthorized(CattleCounterError):
    """A valid API key is required: send it in the X-API-Key header."""

    code = "unauthorized"
    http_status = 401

    def __init__(self, message: str = "", challenge: str | None = None) -> None:
        super().__init__(message)
        if challenge is not None:  # RFC 9110: how to authenticate, for clients that speak a standard scheme
            self.headers = {"WWW-Authenticate": challenge}


class Forbidden(CattleCounterError):
    """This key may not do that: it takes an admin key."""

    code = "forbidden"
    http_status = 403


# --- quotas per tenant --------------------------------------------------------------------


class QuotaExceeded(CattleCounterError):
    """The tenant is at one of its limits for now: try again after Retry-After seconds."""

    code = "quota_exceeded"
    http_status = 429

    def __init__(self, message: str, retry_after_s: float, quota: str = "") -> None:
        super().__init__(message)
        self.headers = {"Retry-After": str(max(1, math.ceil(retry_after_s)))}
        self.quota = quota  # which one: queued_jobs, stream_hours, ...


# --- storage (blobs, queue, job records) ---------------------------------------


class StorageError(CattleCounterError):
    """A storage backend failed."""

    code = "storage_error"


class CorruptRecord(StorageError):
    """A stored record does not parse (written by another version, or damaged)."""

    code = "corrupt_record"


class NotFound(StorageError):
    """The requested blob, message or job does not exist."""

    code = "not_found"
    http_status = 404


class AlreadyExists(StorageError):
    """Something with that name already exists."""

    code = "already_exists"
    http_status = 409


class PreconditionFailed(StorageError):
    """Someone else changed the record since it was read (ETag/version mismatch)."""

    code = "precondition_failed"
    http_status = 409


class LeaseLost(StorageError):
    """The queue message's lease expired or was taken over (stale pop receipt)."""

    code = "lease_lost"
    http_status = 409


class StorageUnavailable(StorageError):
    """The storage service cannot be reached or is throttling; try again later."""

    code = "storage_unavailable"
    http_status = 503
    transient = True


class InvalidMessage(CattleCounterError):
    """A queue message is not a well-formed job message."""

    code = "invalid_message"
    http_status = 422


# --- jobs, uploads and their downloads (API) ----------------------------------------------


class JobNotReady(CattleCounterError):
    """The job has not completed yet."""

    code = "job_not_ready"
    http_status = 409


class UploadAlreadyUsed(CattleCounterError):
    """The upload has already become a job."""

    code = "upload_already_used"
    http_status = 409


class ModelNotLoaded(CattleCounterError):
    """No worker has loaded the model yet."""

    code = "model_not_loaded"
    http_status = 404


class RangeNotSatisfiable(CattleCounterError):
    """The requested byte range is outside the file."""

    code = "range_not_satisfiable"
    http_status = 416

    def __init__(self, message: str, size: int) -> None:
        super().__init__(message)
        self.headers = {"Content-Range": f"bytes */{size}"}  # RFC 9110: the size, so a client can retry


# --- input validation -------------------------------------------------------------


class InvalidInput(CattleCounterError):
    """A request or job parameter is invalid."""

    code = "invalid_input"
    http_status = 422


class UploadTooLarge(InvalidInput):
    """The upload is larger than the configured maximum."""

    code = "upload_too_large"
    http_status = 413


class UploadStalled(InvalidInput):
    """The client stopped sending the request body."""

    code = "upload_stalled"
    http_status = 408
    headers = {"Connection": "close"}  # the rest of the body may still come: never read it as a request


class InvalidTelemetry(InvalidInput):
    """Flight telemetry that cannot go with the job: a file that is not a drone's .SRT (not text,
    no subtitle timing line), or telemetry sent with images or with a video that has some already."""

    code = "invalid_telemetry"


class ShuttingDown(CattleCounterError):
    """The API stopped (SIGTERM) while the request was still open after SHUTDOWN_GRACE_S;
    nothing was made of it, send it again."""

    code = "shutting_down"
    http_status = 503
    transient = True


class InputChanged(InvalidInput):
    """The job's input was replaced after the API had checked it."""

    code = "input_changed"
    http_status = 409


class RequestExceedsQuota(InvalidInput):
    """The request does not fit in the tenant's quota, and waiting will not change that: delete
    finished jobs, or ask for less."""

    code = "request_exceeds_quota"
    http_status = 422

    def __init__(self, message: str, quota: str = "") -> None:
        super().__init__(message)
        self.quota = quota  # which one: stored_bytes, stream_hours


class IdempotencyKeyReused(InvalidInput):
    """The Idempotency-Key was used before for a different request: use a new key for a new request."""

    code = "idempotency_key_reused"
    http_status = 422


# --- video ------------------------------------------------------------------------


class VideoError(CattleCounterError):
    """The file cannot be processed as a video."""

    code = "video_error"
    http_status = 415


class EmptyVideo(VideoError):
    """The file is empty."""

    code = "empty_file"
    http_status = 422


class NotAVideo(VideoError):
    """The file is not a video container that can be decoded."""

    code = "not_a_video"


class NoVideoStream(VideoError):
    """The file has no video stream (audio only, or an image)."""

    code = "no_video_stream"


class CorruptVideo(VideoError):
    """The video is truncated or corrupt and cannot be decoded."""

    code = "corrupt_video"


class InvalidFrameRate(VideoError):
    """The video declares no usable frame rate."""

    code = "invalid_frame_rate"


class VideoTooLarge(VideoError):
    """The video's frames have more pixels than this service accepts (MAX_VIDEO_PIXELS)."""

    code = "video_too_large"
    http_status = 422


class VideoTooLong(VideoError):
    """The video is longer than this service accepts (MAX_VIDEO_SECONDS)."""

    code = "video_too_long"
    http_status = 422


# --- stills, rasters and bulk jobs ----------------------------------------------------------
# A bad file of a bulk job is not the job's failure: it is listed in results.jsonl with one
# of these codes and the job goes on (see JobStatus.COMPLETED_WITH_ERRORS).


class ArchiveRefused(InvalidInput):
    """The ZIP cannot be accepted (corrupt, or breaking one of the ZIP limits)."""

    code = "bad_zip"


class ZipBomb(ArchiveRefused):
    """The ZIP unpacks to far more than it holds (MAX_ZIP_RATIO, MAX_ZIP_UNCOMPRESSED_BYTES)."""

    code = "zip_bomb"


class UnsafeZipPath(ArchiveRefused):
    """A ZIP entry's path leaves the archive (``../x``, ``/etc/x``, a drive letter)."""

    code = "unsafe_zip_path"


class EmptyZip(ArchiveRefused):
    """The ZIP holds no files."""

    code = "empty_zip"


class TooManyFiles(InvalidInput):
    """More files than one job may hold (MAX_FILES_PER_JOB, MAX_ZIP_ENTRIES)."""

    code = "too_many_files"


class JobTooLarge(InvalidInput):
    """One job's images hold more pixels than one job may count (MAX_JOB_PIXELS)."""

    code = "job_too_large"


class NoUsableFiles(InvalidInput):
    """None of a bulk job's files is an image this service can read."""

    code = "no_usable_files"


# --- live streams ------------------------------------------------------------------------


class StreamUnavailable(CattleCounterError):
    """The live stream could not be read: it never answered, or it was lost and every
    reconnect failed. The message names the URL without its credentials, and the cause."""

    code = "stream_unavailable"
    http_status = 502  # the camera (upstream) failed, not the request
    # permanent: the source already had its configured retries (ml_engine.live.source)


class StreamSourceNotAllowed(InvalidInput):
    """A stream's source address is private (loopback, LAN, link-local) and outside the
    operator's STREAM_ALLOWED_NETWORKS (server-side request forgery)."""

    code = "stream_source_not_allowed"


class SourceHostUnresolved(InvalidInput):
    """A stream source's host name did not resolve. At submit that is a 422 (a typo is the
    likeliest cause); to a worker re-checking a running stream it is a DNS outage: transient,
    the stream is retried rather than failed."""

    transient = True


class TooManySnapshots(CattleCounterError):
    """An API process is already taking as many stream snapshots as it allows at once
    (each holds a thread and a connection to a camera). Try again in a few seconds."""

    code = "too_many_snapshots"
    http_status = 429
    transient = True


class EncoderError(CattleCounterError):
    """The annotated video could not be encoded (the service's failure, not the input's)."""

    code = "encoder_error"


# --- stills and orthomosaics (ml_engine.media.raster): one file of a job, never the whole job ---------


class ImageError(CattleCounterError):
    """The file cannot be processed as an image."""

    code = "image_error"
    http_status = 415


class EmptyImage(ImageError):
    """The file is empty."""

    code = "empty_file"
    http_status = 422


class UnsupportedImage(ImageError):
    """The file is not an image format (or pixel layout) this service reads."""

    code = "unsupported_image"


class CorruptImage(ImageError):
    """The image is damaged or truncated and cannot be read."""

    code = "corrupt_image"


class RasterNoBands(ImageError):
    """The raster has no image bands."""

    code = "raster_no_bands"


class RasterTooLarge(ImageError):
    """The image has more pixels than this service accepts (MAX_RASTER_PIXELS)."""

    code = "raster_too_large"
    http_status = 422


# --- model and processing ----------------------------------------------------------


class ModelError(CattleCounterError):
    """The detection model could not be loaded or run."""

    code = "model_error"


class JobCancelled(CattleCounterError):
    """The job was cancelled while it was being processed."""

    code = "cancelled"
    http_status = 409


class GaveUp(CattleCounterError):
    """The job failed on every attempt."""

    code = "max_attempts_exceeded"


# --- messages -----------------------------------------------------------------------------


def dotted(location: Iterable[Any], skip: Iterable[str] = ()) -> str:
    """A pydantic error location as ``lines.0.start`` (the parts in ``skip`` left out)."""
    skipped = set(skip)
    return ".".join(str(part) for part in location if part not in skipped)


def describe_validation_error(errors: Iterable[Mapping[str, Any]],
                              name: Callable[[tuple[Any, ...]], str] = dotted) -> str:
    """pydantic's errors (``ValidationError.errors()``) as one line a user can act on:
    ``name: problem; name: problem``. ``name`` turns an error's location into the name the
    user knows it by (a form field, an environment variable); an empty name leaves just the
    problem."""
    problems = []
    for error in errors:
        label = name(tuple(error["loc"]))
        text = error["msg"].removeprefix("Value error, ")
        problems.append(f"{label}: {text}" if label else text)
    return "; ".join(problems)
