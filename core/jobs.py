"""The job model: what a job asks for, where it stands, and the queue message that carries it."""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from datetime import UTC, datetime
from enum import Enum
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    HttpUrl,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from core.errors import CorruptRecord, InvalidInput, InvalidMessage
from core.tiling import TILING_PATTERN, parse_tiling

MESSAGE_VERSION = 1

# The tenant of bare API keys (no ``name:``), of the no-keys local mode, and of every job
# recorded before jobs had owners (their records carry no owner field).
DEFAULT_OWNER = "default"


class JobStatus(str, Enum):
    QUEUED = "queued"
    PROCESSING = "processing"
    COMPLETED = "completed"
    # an images job whose good files completed while some files failed: the results cover the
    # good ones, and results.jsonl and stats.json list each failed file with its typed error.
    # Never used when every file failed (that job is ``failed``) nor for a video job.
    COMPLETED_WITH_ERRORS = "completed_with_errors"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        return self in (JobStatus.COMPLETED, JobStatus.COMPLETED_WITH_ERRORS, JobStatus.FAILED, JobStatus.CANCELLED)

    @property
    def has_results(self) -> bool:
        """Whether the job's outputs can be downloaded."""
        return self in (JobStatus.COMPLETED, JobStatus.COMPLETED_WITH_ERRORS)


class JobKind(str, Enum):
    """What a job's input is. Records written before images existed have no kind: video."""

    VIDEO = "video"  # one video: input_blob is the video
    IMAGES = "images"  # stills and rasters: input_blob is the manifest (manifest_blob_path)
    STREAM = "stream"  # a live camera: input_blob is the secret blob holding its URL (source_secret_path)


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_job_id() -> str:
    """A 26-character id whose lexical order is creation order (ms timestamp, then randomness).

    Time-ordered ids let every backend list jobs newest first with a plain key scan.
    """
    millis = time.time_ns() // 1_000_000
    return f"{millis:012x}{os.urandom(7).hex()}"


# Pixel coordinates. Finite and bounded: NaN or infinity would pass as floats, then the stored
# record (JSON has no NaN) could no longer be read back.
Coordinate = Annotated[float, Field(ge=-1e6, le=1e6, allow_inf_nan=False)]
Point = tuple[Coordinate, Coordinate]
Name = Annotated[str, Field(min_length=1, max_length=100)]
ClassName = Annotated[str, Field(max_length=100)]  # blanks are dropped by JobParams
MAX_LINES = MAX_ZONES = 32
MAX_POLYGON_POINTS = 256
MAX_CLASSES = 200


class Tracker(str, Enum):
    """The live tracker: ``botsort`` compensates camera motion (drone footage);
    ``bytetrack`` matches boxes alone (a fixed camera; cheaper)."""

    BOTSORT = "botsort"
    BYTETRACK = "bytetrack"


# "pixels": the source video's pixels (x right, y down, after rotation). "relative": 0..1 of
# the frame's width and height, turned into pixels at submit (see ``in_frame_pixels``), so a
# stored job, the worker and the outputs only ever see pixels: a pixel item never shows the field.
Units = Literal["pixels", "relative"]
UNITS_DESCRIPTION = "pixels (default): the source video's pixels; relative: 0..1 of its width and height."


def _is_pixels(units: Units) -> bool:
    return units == "pixels"


def _check_relative(units: Units, points: list[Point], what: str) -> None:
    if units == "relative" and not all(0 <= c <= 1 for point in points for c in point):
        raise ValueError(f'{what} with "units": "relative" has its coordinates between 0 and 1')


class CountingLine(BaseModel):
    """A line across the frame; objects crossing it are counted in/out per class.
    Unnamed lines are named by their place in the list (see ``with_default_names``)."""

    model_config = ConfigDict(extra="forbid")
    name: Name | None = None
    start: Point
    end: Point
    units: Units = Field(default="pixels", exclude_if=_is_pixels, description=UNITS_DESCRIPTION)

    @model_validator(mode="after")
    def _relative_in_range(self) -> CountingLine:
        _check_relative(self.units, [self.start, self.end], "a line")
        return self

    @field_validator("end")
    @classmethod
    def _not_degenerate(cls, end: Point, info: Any) -> Point:
        if info.data.get("start") == end:
            raise ValueError("a counting line needs two different points")
        return end


class CountingZone(BaseModel):
    """A polygon; objects inside it are counted per frame and per class.
    Unnamed zones are named by their place in the list (see ``with_default_names``)."""

    model_config = ConfigDict(extra="forbid")
    name: Name | None = None
    polygon: Annotated[list[Point], Field(min_length=3, max_length=MAX_POLYGON_POINTS)]
    units: Units = Field(default="pixels", exclude_if=_is_pixels, description=UNITS_DESCRIPTION)

    @model_validator(mode="after")
    def _relative_in_range(self) -> CountingZone:
        _check_relative(self.units, self.polygon, "a zone")
        return self


Named = TypeVar("Named", CountingLine, CountingZone)


def with_default_names(items: list[Named], kind: str) -> list[Named]:
    """Name each unnamed line or zone by its place in the list: ``line-1``, ``line-2``, ...

    The one naming scheme: the API (JobParams), the pipeline and the CLI all name them here,
    so the same request gets the same names in stats.json whichever way it ran."""
    return [item if item.name else item.model_copy(update={"name": f"{kind}-{number}"})
            for number, item in enumerate(items, 1)]


def check_unique_names(kind: str, names: list[str | None]) -> None:
    """Counts are reported by name, so two lines (zones) may not share one. Checked when a job
    is submitted and again by the tracker, through this one function."""
    duplicates = sorted(str(name) for name, n in Counter(names).items() if n > 1)
    if duplicates:
        raise InvalidInput(f"{kind} names must be unique; repeated: {', '.join(duplicates)}")


class JobParams(BaseModel):
    """What a user may ask of one job. Unset fields fall back to the service's settings."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    classes: list[ClassName] | None = Field(
        default=None, max_length=MAX_CLASSES, description="Class names to count (e.g. cow, sheep); default all."
    )
    threshold: float | None = Field(default=None, ge=0.0, le=1.0, description="Confidence threshold.")
    frame_stride: int | None = Field(default=None, ge=1, le=1000, description="Process every Nth frame.")
    frame_interval_seconds: float | None = Field(
        default=None, gt=0, le=3600, description="Process one frame every N seconds (overrides frame_stride)."
    )
    lines: list[CountingLine] = Field(default_factory=list, max_length=MAX_LINES)
    zones: list[CountingZone] = Field(default_factory=list, max_length=MAX_ZONES)
    callback_url: HttpUrl | None = Field(default=None, description="Webhook called when the job ends.")
    model_id: str | None = Field(default=None, description="Model to use, if the service allows overrides.")
    tiling: str | None = Field(
        default=None,
        max_length=32,
        description="Tiled inference for frames much larger than the model's input: auto, off or a tile size WxH.",
        json_schema_extra={"pattern": TILING_PATTERN},  # documents parse_tiling's rule (which checks it)
    )

    @field_validator("tiling")
    @classmethod
    def _known_tiling(cls, tiling: str | None) -> str | None:
        if tiling is None:
            return None
        try:
            return parse_tiling(tiling).text
        except InvalidInput as exc:
            raise ValueError(str(exc)) from None  # pydantic reports it under the field's name
    # tracking; unset: the service's TRACKER / STITCHING
    tracker: Tracker | None = Field(
        default=None, description="Live tracker: botsort (camera-motion compensated) or bytetrack."
    )
    stitching: bool | None = Field(
        default=None, description="Re-link tracks broken by long gaps (an animal under a tree) after the video."
    )

    @field_validator("classes")
    @classmethod
    def _clean_classes(cls, classes: list[str] | None) -> list[str] | None:
        if classes is None:
            return None
        cleaned = [c.strip().lower() for c in classes if c.strip()]
        return cleaned or None

    @field_validator("lines", "zones")
    @classmethod
    def _named_and_unique(cls, items: list[Named], info: ValidationInfo) -> list[Named]:
        kind = "line" if info.field_name == "lines" else "zone"
        items = with_default_names(items, kind)
        # a stored record is read back as it was written: one saved before this rule (its
        # job failed in the worker) must still list and delete, not become unreadable
        if not (info.context or {}).get("stored"):
            try:
                check_unique_names(kind, [item.name for item in items])
            except InvalidInput as exc:
                raise ValueError(str(exc)) from None  # pydantic reports it under the field's name
        return items


def has_relative_units(params: JobParams) -> bool:
    """Whether a line or zone still needs the frame's size to become pixels."""
    items: list[CountingLine | CountingZone] = [*params.lines, *params.zones]
    return any(item.units == "relative" for item in items)


def in_frame_pixels(params: JobParams, width: int, height: int) -> JobParams:
    """``params`` with every relative line and zone turned into pixels of a ``width`` x ``height``
    frame; raises InvalidInput naming the first line or zone with a point outside that frame
    (counted on nothing, it would complete with zero crossings and no warning)."""

    def pixels(item: CountingLine | CountingZone, points: list[Point]) -> list[Point]:
        if item.units == "relative":
            points = [(x * width, y * height) for x, y in points]
        outside = [point for point in points if not (0 <= point[0] <= width and 0 <= point[1] <= height)]
        if outside:
            kind = "line" if isinstance(item, CountingLine) else "zone"
            x, y = outside[0]
            raise InvalidInput(
                f"{kind}s: {kind} {item.name!r} has the point ({x:g}, {y:g}) outside the video's frame, "
                f"{width}x{height} pixels (x from 0 to {width}, y from 0 to {height}); "
                'or send coordinates from 0 to 1 with "units": "relative"'
            )
        return points

    lines = [line.model_copy(update=dict(zip(("start", "end"), pixels(line, [line.start, line.end]),
                                              strict=True), units="pixels")) for line in params.lines]
    zones = [zone.model_copy(update={"polygon": pixels(zone, zone.polygon), "units": "pixels"})
             for zone in params.zones]
    return params.model_copy(update={"lines": lines, "zones": zones})


# --- live streams: what a stream job asks for beyond JobParams, and how it runs ---

MAX_STREAM_GAPS_SHOWN = 20  # the record keeps the newest gaps only (it stays small); gaps_total counts all


class StreamOptions(BaseModel):
    """A stream job's own settings (the counting ones are its JobParams). Stored in the record:
    never the source URL, which lives in a secret blob (``source_secret_path``)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    duration_s: float | None = Field(default=None, gt=0, le=366 * 86400,
                                     description="Stop (completed) after this much streaming time; default: "
                                     "run until DELETE (or the service's MAX_STREAM_SECONDS)")
    end_at: datetime | None = Field(default=None, description="Stop (completed) at this time (ISO 8601, with zone)")
    window_s: float = Field(default=60.0, ge=5, le=3600, description="Length of a counting window (windows.jsonl)")
    events: bool = Field(default=False, description="Send line crossings and zone entries/exits to callback_url "
                         "as `stream.events` webhooks (aggregated: cooldown and per-minute cap)")

    @field_validator("end_at")
    @classmethod
    def _zoned(cls, end_at: datetime | None) -> datetime | None:
        if end_at is not None and end_at.tzinfo is None:
            raise ValueError("give a time zone (e.g. 2026-12-01T18:00:00Z)")
        return end_at


class LiveInfo(BaseModel):
    """How a running stream stands (small: the running totals are ``Job.counts``, the windows
    are in windows.jsonl). Written by the worker every PROGRESS_INTERVAL_S."""

    connected: bool = False
    frames_received: int = 0
    frames_processed: int = 0
    frames_dropped: int = 0  # inference slower than the source: the newest frame is kept
    latency_p50_s: float | None = None  # latency_from -> counted, over the last window
    latency_p95_s: float | None = None
    # "capture": from when the camera took the frame (HLS program date-time); "arrival": from
    # when it left the decoder (the source does not say when it was taken); None: no frame yet
    latency_from: str | None = None
    reconnects: int = 0
    streaming_s: float = 0.0  # in all, resumes included
    last_window: dict[str, Any] | None = None
    gaps: list[dict[str, Any]] = Field(default_factory=list)  # the newest MAX_STREAM_GAPS_SHOWN: from, to, reason
    gaps_total: int = 0
    stream_started_at: datetime | None = None  # the first connection of the first run
    run_started_at: datetime | None = None  # this run (delivery): the attempts rule counts from it
    events_sent: int = 0  # stream.events webhooks written so far: the next one's sequence
    events_unsent: int = 0  # count events not sent: the job used up its event webhook numbers (~999,998)


class JobError(BaseModel):
    code: str
    message: str


class TelemetryFile(BaseModel):
    """A video job's flight telemetry (a drone's ``.SRT``), stored beside its input by the API;
    the worker reads it from ``blob`` (``telemetry_blob_path``)."""

    blob: str
    filename: str
    size_bytes: int = 0


class Job(BaseModel):
    """A job record as stored by a JobStore.

    ``etag`` is the store's concurrency token: it is set by the store on every read and
    write, and an update with a stale etag fails with PreconditionFailed.
    """

    id: str
    kind: JobKind = JobKind.VIDEO
    status: JobStatus = JobStatus.QUEUED
    params: JobParams = Field(default_factory=JobParams)
    input_blob: str
    input_etag: str | None = None  # the version the API checked; the worker refuses any other
    telemetry: TelemetryFile | None = None  # video jobs: the flight's .SRT, when one came with the video
    filename: str = "video"
    size_bytes: int = 0
    idempotency_key: str | None = None  # unique per owner, not globally
    # what the request with that key asked for (api/idempotency.py): a replay must ask the same
    idempotency_fingerprint: str | None = None
    owner: str = DEFAULT_OWNER  # the tenant (API key name) the job belongs to

    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    started_at: datetime | None = None
    finished_at: datetime | None = None

    attempts: int = 0  # deliveries of its message so far
    # deliveries that are no failed attempts: given back by a shutting-down worker, and for a
    # stream, every delivery before a run that stayed up STREAM_STABLE_AFTER_S
    handed_back: int = 0
    progress: float = 0.0
    frames_done: int = 0
    frames_total: int | None = None
    fps: float | None = None
    eta_seconds: float | None = None
    # images jobs: the files (the manifest lists them), and the tiles of the raster in progress
    files_total: int = 0
    files_done: int = 0  # processed, with a result
    files_failed: int = 0  # refused at submit or failed in the worker, each with a typed error
    tiles_done: int = 0
    tiles_total: int | None = None

    cancel_requested: bool = False
    error: JobError | None = None
    outputs: dict[str, str] = Field(default_factory=dict)  # output name -> blob path
    counts: dict[str, Any] | None = None  # headline counts copied from stats.json (a stream: its running totals)
    # live streams: the URL without credentials or query (for people), the stream's options, its live state
    source: str | None = None
    stream: StreamOptions | None = None
    live: LiveInfo | None = None

    etag: str | None = Field(default=None, exclude=True)

    @property
    def results_ready(self) -> bool:
        """Whether its outputs can be downloaded: completed (with or without errors), or an
        images job that failed on every file, whose results.jsonl says why for each."""
        return self.status.has_results or (self.status is JobStatus.FAILED and bool(self.outputs))

    def to_record(self) -> str:
        """JSON text for storage (the etag is the store's business, not part of the record)."""
        return self.model_dump_json()

    @classmethod
    def from_record(cls, text: str | bytes, etag: str | None) -> Job:
        """Raises CorruptRecord (a StorageError) rather than pydantic's error, so a record that
        cannot be read fails that one job, never the worker thread or process reading it."""
        try:
            job = cls.model_validate_json(text, context={"stored": True})
        except ValidationError as exc:
            raise CorruptRecord(f"a job record cannot be read: {exc.errors()[0]['msg']}") from None
        job.etag = etag
        return job


# What a queue message may name. Checked when it is read, so that a message no store can take
# (a lone surrogate cannot be encoded, a megabyte id fills the logs) is poisoned at once
# instead of failing in the job store on each of MAX_ATTEMPTS deliveries.
MESSAGE_JOB_ID = r"^[A-Za-z0-9_-]{1,64}$"
MAX_MESSAGE_BLOB_PATH = 1024


class JobMessage(BaseModel):
    """The queue message: ids and blob paths only (Azure's limit is 64 KiB)."""

    model_config = ConfigDict(extra="forbid")
    v: int = MESSAGE_VERSION
    job_id: str = Field(pattern=MESSAGE_JOB_ID)
    input_blob: str = Field(min_length=1, max_length=MAX_MESSAGE_BLOB_PATH)

    @field_validator("input_blob")
    @classmethod
    def _storable_path(cls, path: str) -> str:
        if not path.isprintable():
            raise ValueError("not a printable blob path")
        path.encode("utf-8")  # a lone surrogate raises UnicodeEncodeError, a ValueError
        return path

    def encode(self) -> str:
        return self.model_dump_json()

    @classmethod
    def decode(cls, text: str) -> JobMessage:
        """Parse a message body, raising InvalidMessage for anything malformed."""
        try:
            data = json.loads(text)
            message = cls.model_validate(data)
        except (ValueError, TypeError, ValidationError, RecursionError):
            # RecursionError: deeply nested JSON ('[' * 5000) is too deep for the parser. Not
            # catching it killed the job thread on every delivery of such a message.
            raise InvalidMessage(f"queue message is not a valid job message: {text[:200]!r}") from None
        if message.v != MESSAGE_VERSION:
            raise InvalidMessage(f"unsupported job message version {message.v}")
        return message


def job_blob_prefix(job_id: str) -> str:
    return f"jobs/{job_id}/"


def input_blob_path(job_id: str) -> str:
    return f"{job_blob_prefix(job_id)}input"


def output_blob_path(job_id: str, name: str) -> str:
    return f"{job_blob_prefix(job_id)}outputs/{name}"


def telemetry_blob_path(job_id: str) -> str:
    """Where the API stores a video job's telemetry file (deleted with the job's folder)."""
    return f"{job_blob_prefix(job_id)}telemetry.srt"


# --- stream jobs: the source URL (with its credentials) and the resume state, never outputs ---


def source_secret_path(job_id: str) -> str:
    """The blob holding a stream's source URL. Never an output, never served, never logged;
    deleted when the stream ends and with the job."""
    return f"{job_blob_prefix(job_id)}source.secret"


def stream_state_path(job_id: str) -> str:
    """The blob of a stream's resume state (running totals, window and segment numbers)."""
    return f"{job_blob_prefix(job_id)}stream-state.json"


# --- images jobs: the file list lives in a manifest blob, never in the record or message ---


def manifest_blob_path(job_id: str) -> str:
    return f"{job_blob_prefix(job_id)}manifest.jsonl"


def file_input_blob_path(job_id: str, number: int) -> str:
    """Where the API stores file ``number`` of an images job (direct uploads stay where they are)."""
    return f"{job_blob_prefix(job_id)}inputs/{number}"


class ManifestEntry(BaseModel):
    """One line of an images job's manifest.jsonl: one file of the job.

    ``blob`` is None for a file the API refused at submit (not an image, too large, ...): it
    is kept in the manifest with its ``error`` so the job's results list it, never dropped."""

    model_config = ConfigDict(extra="ignore")
    name: str  # unique in the job; the name results and downloads use
    blob: str | None = None
    size: int = 0
    etag: str | None = None  # the version the API checked; the worker refuses any other
    error: JobError | None = None

    def to_line(self) -> bytes:
        return (self.model_dump_json() + "\n").encode()

    @classmethod
    def from_line(cls, line: str | bytes) -> ManifestEntry:
        try:
            return cls.model_validate_json(line)
        except ValidationError as exc:
            raise CorruptRecord(f"a manifest line cannot be read: {exc.errors()[0]['msg']}") from None
