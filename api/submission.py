"""Turning an upload into a queued job: validate, store, record, enqueue.

The order matters for losing nothing: the video is stored first, then the job record,
then the queue message. If enqueueing fails the record and blob are removed again and
the client gets a 503 it can retry, so no job is left queued without a message.
"""

from __future__ import annotations

import json
import logging
import secrets
import tempfile
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from api.bulk import FileNames, error_of
from api.idempotency import check_same_params, check_same_request, request_fingerprint
from core import metrics
from core.backends import Backends, BlobStore
from core.blob_io import open_blob
from core.config import Settings
from core.errors import (
    AlreadyExists,
    CattleCounterError,
    ImageError,
    InvalidInput,
    JobTooLarge,
    NotFound,
    NoUsableFiles,
    TooManyFiles,
    UploadAlreadyUsed,
    UploadTooLarge,
    VideoError,
    describe_validation_error,
    dotted,
)
from core.jobs import (
    DEFAULT_OWNER,
    Job,
    JobKind,
    JobMessage,
    JobParams,
    ManifestEntry,
    StreamOptions,
    file_input_blob_path,
    has_relative_units,
    in_frame_pixels,
    input_blob_path,
    job_blob_prefix,
    manifest_blob_path,
    new_job_id,
    source_secret_path,
    utcnow,
)
from core.model_card import public_model_id, read_card
from core.netpolicy import check_stream_url, redact_url
from core.quotas import QuotaKeeper
from core.webhooks import check_callback_url
from ml_engine.image_probe import ImageInfo, probe_image
from ml_engine.video import VideoInfo, VideoLimits, probe

log = logging.getLogger(__name__)

UPLOAD_PREFIX = "uploads/"
# an upload left this long after its write URL expired, and not a job's input, is deleted
ABANDONED_AFTER = timedelta(days=1)
MAX_IDEMPOTENCY_KEY = 200
MAX_UPLOAD_ID = 64


# --- parameters -------------------------------------------------------------------------


def parse_params(fields: Mapping[str, str], settings: Settings) -> JobParams:
    """Build JobParams from form fields: an optional JSON ``params`` object, overridden by
    individual fields (``classes=cow,sheep``, ``threshold=0.4``, ``lines=[...]`` ...).
    Raises InvalidInput naming each bad field."""
    raw: dict[str, Any] = {}
    if fields.get("params", "").strip():
        raw.update(parse_json("params", fields["params"], expect=dict))
    for name, value in fields.items():
        if name in ("params", "upload_id") or not value.strip():
            continue
        raw[name] = _field_value(name, value)
    return check_params(raw, settings)


def check_params(raw: dict[str, Any], settings: Settings) -> JobParams:
    """Everything the worker would refuse in a job's parameters, refused now with a 422 (only
    class names wait for a model card: see ``Submitter.check_classes``). The rules live with
    JobParams, which the worker reads the job with, so both ends apply the same ones."""
    try:
        params = JobParams.model_validate(raw)
    except ValidationError as exc:
        raise InvalidInput(describe_params_error(exc)) from None
    if params.model_id and not settings.allow_model_override:
        raise InvalidInput("model_id: this service does not allow choosing the model (ALLOW_MODEL_OVERRIDE=false)")
    if params.callback_url is not None:
        check_callback_url(str(params.callback_url), settings.webhook_allow_private)
    return params


# counting parameters of a video that mean nothing on a live stream: refused, not ignored
NOT_FOR_STREAMS = {
    "frame_stride": "a stream processes the newest frame whenever the detector is free",
    "frame_interval_seconds": "a stream processes the newest frame whenever the detector is free",
    "stitching": "offline stitching needs the whole video; streams are counted live",
}
MAX_SOURCE_URL = 2048


def check_stream_request(body: dict[str, Any], settings: Settings) -> tuple[str, JobParams, StreamOptions]:
    """``POST /streams``'s JSON body as (source URL, counting parameters, stream options),
    refusing with a 422 what the worker would refuse, and a private source address outside
    STREAM_ALLOWED_NETWORKS (stream_source_not_allowed). No message repeats the URL."""
    url = body.get("source_url")
    if not isinstance(url, str) or not url.strip():
        raise InvalidInput("source_url: required, the camera's rtsp://, rtsps:// or http(s):// (HLS) URL")
    url = url.strip()
    if len(url) > MAX_SOURCE_URL or not url.isprintable():
        raise InvalidInput(f"source_url: at most {MAX_SOURCE_URL} printable characters")
    refused = sorted(set(body) & set(NOT_FOR_STREAMS))
    if refused:
        raise InvalidInput("; ".join(f"{name}: not for streams ({NOT_FOR_STREAMS[name]})" for name in refused))
    option_names = set(StreamOptions.model_fields)
    try:
        stream = StreamOptions.model_validate({k: v for k, v in body.items() if k in option_names})
    except ValidationError as exc:
        raise InvalidInput(describe_params_error(exc)) from None
    params = check_params({k: v for k, v in body.items() if k not in option_names and k != "source_url"}, settings)
    if has_relative_units(params):  # nothing has seen a frame yet to turn 0..1 into pixels
        raise InvalidInput('lines, zones: "units": "relative" is for videos only; a stream takes the '
                           "camera's pixels (draw them on a snapshot: see docs/api.md)")
    _check_stream_limits(stream, params, settings)
    check_stream_url(url, settings.stream_allowed_networks)
    return url, params, stream


def _check_stream_limits(stream: StreamOptions, params: JobParams, settings: Settings) -> None:
    cap = settings.max_stream_seconds
    if cap is not None and stream.duration_s is not None and stream.duration_s > cap:
        raise InvalidInput(f"duration_s: at most {cap:g} s on this service (MAX_STREAM_SECONDS)")
    if stream.end_at is not None and stream.end_at <= utcnow():
        raise InvalidInput("end_at: already past")
    if stream.events and params.callback_url is None:
        raise InvalidInput("events: needs a callback_url to send the stream.events webhooks to")


def _field_value(name: str, value: str) -> Any:
    value = value.strip()
    if name == "classes" and not value.startswith("["):
        return [item for item in value.split(",")]
    if name == "lines" and not value.startswith("["):
        return [_line_from_csv(part) for part in value.split(";") if part.strip()]
    if name in ("lines", "zones", "classes"):
        return parse_json(name, value, expect=list)
    return value


def _line_from_csv(text: str) -> dict[str, Any]:
    try:
        x1, y1, x2, y2 = (float(v) for v in text.split(","))
    except ValueError:
        raise InvalidInput(f"lines: expected 'x1,y1,x2,y2' (or a JSON list), got {text!r}") from None
    return {"start": (x1, y1), "end": (x2, y2)}


def parse_json(name: str, value: str | bytes, expect: type) -> Any:
    """Parse a client's JSON, refusing with a 422 what is malformed, of the wrong type, or
    nested deeper than the parser can follow (which would otherwise be a 500)."""
    try:
        parsed = json.loads(value)
    except RecursionError:
        raise InvalidInput(f"{name}: JSON nested too deeply") from None
    except ValueError:
        raise InvalidInput(f"{name}: not valid JSON") from None
    if not isinstance(parsed, expect):
        raise InvalidInput(f"{name}: expected a JSON {'object' if expect is dict else 'list'}")
    return parsed


def describe_params_error(exc: ValidationError) -> str:
    """pydantic's errors about a request's parameters as one line: ``field: problem; ...``."""
    return describe_validation_error(exc.errors(), name=lambda location: dotted(location) or "params")


def check_idempotency_key(key: str | None) -> str | None:
    if key is None:
        return None
    key = key.strip()
    if not key or len(key) > MAX_IDEMPOTENCY_KEY or not key.isprintable():
        raise InvalidInput(f"Idempotency-Key must be 1-{MAX_IDEMPOTENCY_KEY} printable characters")
    return key


# --- video checks ------------------------------------------------------------------------


def video_limits(settings: Settings) -> VideoLimits:
    return VideoLimits(max_pixels=settings.max_video_pixels, max_seconds=settings.max_video_seconds)


def probe_file(path: Path, settings: Settings) -> VideoInfo:
    """Check the bytes, not the name: raises a VideoError subclass for anything not a video,
    and VideoTooLarge / VideoTooLong (422) past MAX_VIDEO_PIXELS / MAX_VIDEO_SECONDS."""
    return probe(path, video_limits(settings))


def probe_blob(backends: Backends, blob_path: str, settings: Settings) -> VideoInfo:
    """Probe a video already in blob storage through ranged reads (no full download)."""
    with open_blob(backends.blobs, blob_path) as reader:
        return probe(reader, video_limits(settings))


def placed_in_frame(params: JobParams, info: VideoInfo) -> JobParams:
    """The job's lines and zones in pixels of the video's frames as decoded (rotation applied),
    refusing any outside them (422)."""
    return in_frame_pixels(params, *info.display_size)


def probe_image_file(path: Path, settings: Settings, name: str | None = None) -> ImageInfo:
    """Raises a typed ImageError for anything not a readable image within MAX_RASTER_PIXELS,
    its message naming the file as the client knows it (``name``; a scratch file's otherwise)."""
    return probe_image(path, settings.max_raster_pixels, name)


# --- work: how many pixels one job may make a worker count ------------------------------------


class PixelBudget:
    """The pixels of one images job's files, counted as each is probed, so a job past
    ``limit`` is refused before the rest of its files are stored. Pixels, not bytes: a few
    hundred KB of sparse GeoTIFF can hold gigapixels, hours of a worker's time."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.spent = 0

    def spend(self, name: str, image: ImageInfo) -> None:
        pixels = image.width * image.height
        self.spent += pixels
        if self.spent <= self.limit:
            return
        if pixels > self.limit:
            raise JobTooLarge(f"{name} is {image.width:,} x {image.height:,} px, more pixels than one job may "
                              f"count ({self.limit:,}, MAX_JOB_PIXELS); an operator can raise the limit")
        raise JobTooLarge(f"the job's images hold more than {self.limit:,} pixels together (MAX_JOB_PIXELS), "
                          f"past it at {name}: split them into several jobs")


# --- submission --------------------------------------------------------------------------


class Submitter:
    """Creates jobs. One per app; safe to call from several threads."""

    def __init__(self, settings: Settings, backends: Backends) -> None:
        self.settings = settings
        self.backends = backends
        self.quotas = QuotaKeeper(settings, backends.jobs)

    def submit_file(
        self, video: Path, filename: str, params: JobParams, idempotency_key: str | None,
        owner: str = DEFAULT_OWNER, info: VideoInfo | None = None,
    ) -> tuple[Job, bool]:
        """Store a probed local file (``info``: its probe, if the caller has it) as a new job's
        input and enqueue it. Returns (job, created); created is False when the idempotency key matched."""
        self.check_classes(params)
        params = placed_in_frame(params, info or probe_file(video, self.settings))
        job_id = new_job_id()
        blob = input_blob_path(job_id)
        self.backends.blobs.upload_file(blob, video)
        return self._record_and_enqueue(job_id, blob, filename, video.stat().st_size, params, idempotency_key,
                                        owns_input=True, owner=owner)

    def submit_upload(
        self, upload_id: str, params: JobParams, idempotency_key: str | None, owner: str = DEFAULT_OWNER
    ) -> tuple[Job, bool]:
        """Create the job of a finished direct upload (``POST /uploads``, then PUT).

        An upload becomes one job, never two: the job's id was fixed when the upload was
        reserved, so posting the same upload again returns that job (created False) instead
        of a second job sharing, and later deleting, the same input."""
        self.check_classes(params)
        meta = self._upload_meta(upload_id, owner)
        existing = self._job_of_upload(meta)
        if existing is not None:
            if has_relative_units(params):  # compared as the job was made: in pixels
                params = placed_in_frame(params, probe_blob(self.backends, upload_data_path(upload_id), self.settings))
            check_same_params(existing, idempotency_key, params)
            return existing, False
        job_id = meta.get("job_id") or new_job_id()
        blob = upload_data_path(upload_id)
        try:
            stored = self.backends.blobs.info(blob)
        except NotFound:
            raise InvalidInput(f"upload_id: nothing was uploaded for {upload_id!r} (PUT the video first)") from None
        if stored.size > self.settings.max_upload_bytes:  # a SAS URL cannot cap the size; refuse it here
            self.backends.blobs.delete_prefix(upload_prefix(upload_id))
            raise UploadTooLarge(f"the upload is {stored.size} bytes; the limit is "
                                 f"{self.settings.max_upload_bytes} (MAX_UPLOAD_BYTES)")
        try:
            info = probe_blob(self.backends, blob, self.settings)
        except VideoError:
            if self._upload_is_an_image(blob):  # one big orthomosaic, say: an images job of one file
                return self.submit_uploads([upload_id], params, idempotency_key, owner)
            self.backends.blobs.delete_prefix(upload_prefix(upload_id))
            raise
        params = placed_in_frame(params, info)
        # a SAS write URL stays valid until it expires: the etag pins the version checked here
        return self._record_and_enqueue(job_id, blob, meta.get("filename", "video"), stored.size, params,
                                        idempotency_key, owns_input=False, input_etag=stored.etag, owner=owner)

    def pixel_budget(self, owner: str) -> PixelBudget:
        """What one images job of ``owner`` may count: MAX_JOB_PIXELS. The one place a tenant's
        own quota would lower it."""
        return PixelBudget(self.settings.max_job_pixels)

    def _job_or_none(self, job_id: str) -> Job | None:
        try:
            return self.backends.jobs.get(job_id)
        except NotFound:
            return None

    def _job_of_upload(self, meta: dict[str, Any]) -> Job | None:
        """The job an upload (its reservation ``meta``) has become, if it has."""
        return self._job_or_none(meta["job_id"]) if meta.get("job_id") else None

    def check_classes(self, params: JobParams) -> None:
        """Refuse class names the job's model does not know, before anything is stored.

        Only possible once a worker has published that model's card; until then the worker
        checks them and fails the job with the same message."""
        if not params.classes:
            return
        model_id = params.model_id or self.settings.model_id
        card = read_card(self.backends.blobs, model_id)
        if card is None:  # no card published yet: the worker checks the names
            return
        unknown = card.unknown_classes(params.classes)
        if unknown:
            raise InvalidInput(
                f"classes: {', '.join(repr(name) for name in unknown)} not known to model "
                f"{public_model_id(card.model_id)}; "
                f"valid names: {', '.join(card.classes)}"
            )

    def _record_and_enqueue(
        self, job_id: str, blob: str, filename: str, size: int, params: JobParams, key: str | None,
        owns_input: bool, input_etag: str | None = None, owner: str = DEFAULT_OWNER,
        kind: JobKind = JobKind.VIDEO, files_total: int = 0, files_failed: int = 0,
        source: str | None = None, stream: StreamOptions | None = None,
    ) -> tuple[Job, bool]:
        """``owns_input``: the input blob was stored for this request alone (``submit_file``),
        so it goes when no job is made of it. A direct upload's blob belongs to the client's
        upload: it stays, so that a retry after a 503 finds it."""

        def discard_input() -> None:
            if owns_input and kind is JobKind.IMAGES:
                self.backends.blobs.delete_prefix(job_blob_prefix(job_id))  # the manifest and the files
            elif owns_input:
                self.backends.blobs.delete(blob)

        job = Job(id=job_id, kind=kind, input_blob=blob, input_etag=input_etag, filename=filename, size_bytes=size,
                  params=params, idempotency_key=key, owner=owner, files_total=files_total, files_failed=files_failed,
                  source=source, stream=stream)
        job.idempotency_fingerprint = request_fingerprint(job) if key else None
        try:
            stored = self.backends.jobs.create(job)
        except AlreadyExists:
            existing = self._job_or_none(job_id)
            if existing is None:
                discard_input()
                raise
            return existing, False  # the same upload, posted twice at once: the other request made the job
        except CattleCounterError:
            discard_input()
            raise
        if stored.id != job_id:  # the idempotency key matched an earlier job
            discard_input()
            check_same_request(stored, job.idempotency_fingerprint)
            return stored, False
        try:
            self.quotas.check_new_job(stored)  # recorded first, so two submissions at once see each other
            self.backends.queue_for(kind).send(JobMessage(job_id=job_id, input_blob=blob).encode())
        except CattleCounterError:
            self.backends.jobs.delete(job_id)
            discard_input()
            raise
        metrics.count_submission(owner, size, named=self.settings.metrics_tenant_labels)
        log.info("job %s queued (%s, %d bytes)", job_id, filename, size)
        return stored, True

    # --- live streams: the URL goes to a secret blob, the record shows it redacted ----------

    def submit_stream(
        self, url: str, params: JobParams, stream: StreamOptions, idempotency_key: str | None,
        owner: str = DEFAULT_OWNER,
    ) -> tuple[Job, bool]:
        """Store a checked source URL as a new stream job's secret and enqueue it on the stream
        queue. The URL (it may carry credentials) is in no record, message, answer or log."""
        self.check_classes(params)
        job_id = new_job_id()
        blob = source_secret_path(job_id)
        self.backends.blobs.write_small(blob, url.encode(), "application/octet-stream")
        shown = redact_url(url)
        return self._record_and_enqueue(job_id, blob, shown, 0, params, idempotency_key, owns_input=True,
                                        owner=owner, kind=JobKind.STREAM, source=shown, stream=stream)

    # --- images jobs: many files, one manifest -----------------------------------------

    def submit_images(
        self, files: Iterable[tuple[str, Path]], filename: str, params: JobParams, idempotency_key: str | None,
        owner: str = DEFAULT_OWNER,
    ) -> tuple[Job, bool]:
        """Check and store each local file (name in the request, scratch path) as an input of a
        new images job, write its manifest and enqueue it. ``files`` may be a generator that
        unpacks a ZIP: each file is stored before the next is asked for."""
        self.check_classes(params)
        job_id = new_job_id()
        try:
            entries = self._store_files(job_id, files, self.pixel_budget(owner))
            return self._record_images_job(job_id, entries, filename, params, idempotency_key, owner)
        except BaseException:
            self.backends.blobs.delete_prefix(job_blob_prefix(job_id))
            raise

    def _store_files(
        self, job_id: str, files: Iterable[tuple[str, Path]], budget: PixelBudget
    ) -> list[ManifestEntry]:
        names = FileNames()
        entries: list[ManifestEntry] = []
        for number, (raw_name, path) in enumerate(files):
            if number >= self.settings.max_files_per_job:
                raise TooManyFiles(f"one job takes at most {self.settings.max_files_per_job} files "
                                   "(MAX_FILES_PER_JOB): split the set into several jobs")
            name = names.unique(raw_name)
            try:
                image = probe_image_file(path, self.settings, name)
            except ImageError as exc:
                entries.append(ManifestEntry(name=name, size=path.stat().st_size, error=error_of(exc)))
                continue
            budget.spend(name, image)
            stored = self.backends.blobs.upload_file(file_input_blob_path(job_id, number), path)
            entries.append(ManifestEntry(name=name, blob=stored.path, size=stored.size, etag=stored.etag))
        return entries

    def submit_uploads(
        self, upload_ids: list[str], params: JobParams, idempotency_key: str | None, owner: str = DEFAULT_OWNER
    ) -> tuple[Job, bool]:
        """An images job of finished direct uploads (the path for big sets): each upload is
        checked where it lies, and stays there; the job's manifest points at it."""
        self.check_classes(params)
        if len(upload_ids) > self.settings.max_files_per_job:
            raise TooManyFiles(f"{len(upload_ids)} uploads; one job takes at most "
                               f"{self.settings.max_files_per_job} files (MAX_FILES_PER_JOB)")
        if len(set(upload_ids)) != len(upload_ids):
            raise InvalidInput("upload_ids: an upload is listed twice")
        earlier = {self._job_id_of_upload(upload_id, owner) for upload_id in upload_ids}
        if len(earlier) == 1 and None not in earlier:  # the same set posted again: the job it became
            existing = self._job_or_none(earlier.pop() or "")
            if existing is not None:
                check_same_params(existing, idempotency_key, params)
                return existing, False
        job_id = new_job_id()
        names, budget = FileNames(), self.pixel_budget(owner)
        entries = [self._checked_upload(upload_id, owner, names, budget) for upload_id in upload_ids]
        # each upload is pointed at the job BEFORE the job exists: should the API stop between
        # the two, an upload points at no job (free to use again) rather than a job at an upload
        # the hourly sweep may delete
        for upload_id in upload_ids:
            self._point_upload_at(upload_id, job_id)
        job, created = self._record_images_job(job_id, entries, f"{len(entries)} files", params,
                                               idempotency_key, owner)
        if job.id != job_id:  # the Idempotency-Key matched an earlier job: the uploads are its
            for upload_id in upload_ids:
                self._point_upload_at(upload_id, job.id)
        return job, created

    def _job_id_of_upload(self, upload_id: str, owner: str) -> str | None:
        """The id of the job an upload has become, or None while it is no job's input."""
        meta = self._upload_meta(upload_id, owner)
        job = self._job_of_upload(meta)
        return job.id if job is not None else None

    def _checked_upload(self, upload_id: str, owner: str, names: FileNames, budget: PixelBudget) -> ManifestEntry:
        meta = self._upload_meta(upload_id, owner)
        if self._job_of_upload(meta) is not None:
            raise UploadAlreadyUsed(f"upload {upload_id!r} is already job {meta['job_id']}'s input")
        blob = upload_data_path(upload_id)
        try:
            stored = self.backends.blobs.info(blob)
        except NotFound:
            raise InvalidInput(f"upload_ids: nothing was uploaded for {upload_id!r} (PUT the file first)") from None
        name = names.unique(meta.get("filename", "image"))
        with tempfile.TemporaryDirectory(prefix="probe-", dir=self.settings.work_dir) as work:
            local = Path(work) / name
            self.backends.blobs.download_to_file(blob, local)
            try:
                image = probe_image_file(local, self.settings, name)
            except ImageError as exc:
                return ManifestEntry(name=name, size=stored.size, error=error_of(exc))
        budget.spend(name, image)
        return ManifestEntry(name=name, blob=blob, size=stored.size, etag=stored.etag)

    def _upload_is_an_image(self, blob: str) -> bool:
        with tempfile.TemporaryDirectory(prefix="probe-", dir=self.settings.work_dir) as work:
            local = Path(work) / "upload"
            self.backends.blobs.download_to_file(blob, local)
            try:
                probe_image_file(local, self.settings)
            except ImageError:
                return False
        return True

    def _point_upload_at(self, upload_id: str, job_id: str) -> None:
        meta = self._upload_meta(upload_id)
        meta["job_id"] = job_id
        self.backends.blobs.write_small(upload_meta_path(upload_id), json.dumps(meta).encode(), "application/json")

    def _record_images_job(
        self, job_id: str, entries: list[ManifestEntry], filename: str, params: JobParams, key: str | None,
        owner: str,
    ) -> tuple[Job, bool]:
        failed = [entry for entry in entries if entry.error is not None]
        if not entries:
            raise InvalidInput("send at least one image")
        if len(failed) == len(entries):
            raise NoUsableFiles("none of the files is an image this service can read: " + "; ".join(
                entry.error.message for entry in failed[:20] if entry.error) + ("; ..." if len(failed) > 20 else ""))
        manifest = manifest_blob_path(job_id)
        self.backends.blobs.write_small(manifest, b"".join(entry.to_line() for entry in entries), "application/x-ndjson")
        size = sum(entry.size for entry in entries)
        return self._record_and_enqueue(
            job_id, manifest, filename, size, params, key, owns_input=True, owner=owner, kind=JobKind.IMAGES,
            files_total=len(entries), files_failed=len(failed),
        )

    # --- direct uploads --------------------------------------------------------------

    def new_upload(self, filename: str, owner: str = DEFAULT_OWNER) -> tuple[str, str | None, Any]:
        """Reserve an upload id; returns (id, backend write URL or None, expiry time)."""
        upload_id = secrets.token_urlsafe(24)
        ttl = timedelta(seconds=self.settings.upload_url_ttl_s)
        expires_at = utcnow() + ttl
        # the id of the one job this upload can become (see submit_upload); time-ordered like
        # every job id, so that job is listed by when its upload began
        meta = {"filename": filename, "expires_at": expires_at.isoformat(), "job_id": new_job_id(), "owner": owner}
        self.backends.blobs.write_small(upload_meta_path(upload_id), json.dumps(meta).encode(), "application/json")
        return upload_id, self.backends.blobs.write_url(upload_data_path(upload_id), ttl), expires_at

    def _upload_meta(self, upload_id: str, owner: str | None = None) -> dict[str, Any]:
        """The upload's reservation; with ``owner``, only if it is that tenant's (another
        tenant's upload is as unknown as a missing one)."""
        try:
            text = self.backends.blobs.read_small(upload_meta_path(upload_id))
        except NotFound:
            raise InvalidInput(f"upload_id: unknown upload {upload_id!r}") from None
        meta = json.loads(text)
        if owner is not None and meta.get("owner", DEFAULT_OWNER) != owner:
            raise InvalidInput(f"upload_id: unknown upload {upload_id!r}")
        return meta

    def sweep_abandoned_uploads(self, now: datetime | None = None) -> int:
        """Delete direct uploads nobody made a job of (never finished, never posted, or left
        after a refused submission); returns how many. The API runs this every hour."""
        now = now or utcnow()
        keep_for = timedelta(seconds=self.settings.upload_url_ttl_s) + ABANDONED_AFTER
        removed = 0
        for upload_id, written in _uploads_last_written(self.backends.blobs, now).items():
            if written + keep_for < now and not self._upload_became_a_job(upload_id):
                self.backends.blobs.delete_prefix(upload_prefix(upload_id))
                removed += 1
        if removed:
            log.info("removed %d abandoned upload(s)", removed)
        return removed

    def check_upload_open(self, upload_id: str, owner: str = DEFAULT_OWNER) -> None:
        """For the local PUT endpoint: the upload exists and is ``owner``'s, has not expired, and
        has not become a job yet (whose input, already checked, must not change under it)."""
        try:
            meta = self._upload_meta(upload_id, owner)
        except InvalidInput as exc:  # the PUT names the upload in its path: an unknown one is not found
            raise NotFound(str(exc)) from None
        if datetime.fromisoformat(meta["expires_at"]) < utcnow():
            raise InvalidInput(f"upload {upload_id!r} has expired; ask for a new one")
        job = self._job_of_upload(meta)
        if job is not None:
            raise UploadAlreadyUsed(f"upload {upload_id!r} is already job {job.id}; "
                                    "ask for a new upload to send another video")

    def _upload_became_a_job(self, upload_id: str) -> bool:
        try:
            meta = self._upload_meta(upload_id)
        except (InvalidInput, ValueError):
            return False  # no readable reservation: nothing can refer to it
        return self._job_of_upload(meta) is not None


def _uploads_last_written(blobs: BlobStore, now: datetime) -> dict[str, datetime]:
    """Each upload's id and the time its newest blob was written."""
    newest: dict[str, datetime] = {}
    for blob in blobs.list(UPLOAD_PREFIX):
        upload_id = blob.path[len(UPLOAD_PREFIX):].split("/", 1)[0]
        if not _is_upload_id(upload_id):
            continue  # not ours to judge
        written = blob.last_modified or now
        newest[upload_id] = max(written, newest.get(upload_id, written))
    return newest


def _is_upload_id(text: str) -> bool:
    # ids are made by new_upload (32 characters); the length cap keeps a client's id from
    # becoming a file name longer than the file system allows (an error naming server paths)
    return 0 < len(text) <= MAX_UPLOAD_ID and all(c.isascii() and (c.isalnum() or c in "-_") for c in text)


def upload_prefix(upload_id: str) -> str:
    if not _is_upload_id(upload_id):
        raise InvalidInput("upload_id: not a valid upload id")
    return f"{UPLOAD_PREFIX}{upload_id}/"


def upload_data_path(upload_id: str) -> str:
    return upload_prefix(upload_id) + "data"


def upload_meta_path(upload_id: str) -> str:
    return upload_prefix(upload_id) + "meta.json"
