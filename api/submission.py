"""Turning checked parameters and an upload into a queued job: store, record, enqueue.

The parameters come checked from ``api.params``, what a file is from ``api.media``, and
direct uploads' reservations from ``api.uploads``.

The order matters for losing nothing: the video is stored first, then the job record,
then the queue message. If enqueueing fails the record and blob are removed again and
the client gets a 503 it can retry, so no job is left queued without a message.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

from api.bulk import FileNames, error_of
from api.idempotency import check_same_params, check_same_request, request_fingerprint
from api.media import (
    ImageInfo,
    MediaKind,
    StoredMedia,
    VideoInfo,
    placed_in_frame,
    probe_blob,
    probe_file,
    probe_image_file,
    sniff_media,
)
from api.telemetry_input import TelemetryInput
from api.uploads import Upload, UploadBook, upload_data_path
from core import metrics
from core.backends import Backends
from core.config import Settings
from core.errors import (
    AlreadyExists,
    CattleCounterError,
    ImageError,
    InvalidInput,
    JobTooLarge,
    NotAVideo,
    NotFound,
    NoUsableFiles,
    TooManyFiles,
    UploadAlreadyUsed,
    UploadTooLarge,
    VideoError,
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
    input_blob_path,
    job_blob_prefix,
    manifest_blob_path,
    new_job_id,
    source_secret_path,
    telemetry_blob_path,
)
from core.model_card import public_model_id, read_card
from core.netpolicy import redact_url
from core.quotas import QuotaKeeper

log = logging.getLogger(__name__)


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
        self.uploads = UploadBook(settings, backends)

    def submit_file(
        self, video: Path, filename: str, params: JobParams, idempotency_key: str | None,
        owner: str = DEFAULT_OWNER, info: VideoInfo | None = None, telemetry: TelemetryInput | None = None,
    ) -> tuple[Job, bool]:
        """Store a probed local file (``info``: its probe, if the caller has it) as a new job's
        input, with the flight's ``telemetry`` if any, and enqueue it. Returns (job, created);
        created is False when the idempotency key matched."""
        self.check_classes(params)
        params = placed_in_frame(params, info or probe_file(video, self.settings))
        job_id = new_job_id()
        blob = input_blob_path(job_id)
        self.backends.blobs.upload_file(blob, video)
        return self._record_and_enqueue(job_id, blob, filename, video.stat().st_size, params, idempotency_key,
                                        owns_input=True, owner=owner, telemetry=telemetry)

    def submit_upload(
        self, upload_id: str, params: JobParams, idempotency_key: str | None, owner: str = DEFAULT_OWNER,
        telemetry: TelemetryInput | None = None,
    ) -> tuple[Job, bool]:
        """Create the job of a finished direct upload (``POST /uploads``, then PUT).

        An upload becomes one job, never two: the job's id was fixed when the upload was
        reserved, so posting the same upload again returns that job (created False) instead
        of a second job sharing, and later deleting, the same input."""
        self.check_classes(params)
        upload = self.uploads.get(upload_id, owner)
        existing = self.uploads.job_of(upload)
        if existing is not None:
            if has_relative_units(params):  # compared as the job was made: in pixels
                params = placed_in_frame(params, probe_blob(self.backends, upload_data_path(upload_id), self.settings))
            check_same_params(existing, idempotency_key, params)
            return existing, False
        blob = upload_data_path(upload_id)
        try:
            stored = self.backends.blobs.info(blob)
        except NotFound:
            raise InvalidInput(f"upload_id: nothing was uploaded for {upload_id!r} (PUT the video first)") from None
        if stored.size > self.settings.max_upload_bytes:  # a SAS URL cannot cap the size; refuse it here
            self.uploads.delete(upload_id)
            raise UploadTooLarge(f"the upload is {stored.size} bytes; the limit is "
                                 f"{self.settings.max_upload_bytes} (MAX_UPLOAD_BYTES)")
        info = self._sniffed_video(upload)
        if info is None:  # an image (one big orthomosaic, say): an images job of one file
            if telemetry is not None:
                raise telemetry.refuse_for_images()
            return self.submit_uploads([upload_id], params, idempotency_key, owner)
        params = placed_in_frame(params, info)
        # a SAS write URL stays valid until it expires: the etag pins the version checked here
        return self._record_and_enqueue(upload.job_id or new_job_id(), blob, upload.filename or "video", stored.size,
                                        params, idempotency_key, owns_input=False, input_etag=stored.etag, owner=owner,
                                        telemetry=telemetry)

    def _sniffed_video(self, upload: Upload) -> VideoInfo | None:
        """The upload's video probe, or None for an image; anything else is refused, and the
        upload deleted."""
        try:
            sniffed = sniff_media(StoredMedia(self.backends.blobs, upload_data_path(upload.id)), self.settings)
            if sniffed.kind is MediaKind.ZIP:
                raise NotAVideo("a direct upload is a video or an image; send a ZIP of images in the multipart "
                                "field 'file' of POST /jobs, or its images as uploads (upload_ids)")
        except (VideoError, ImageError):
            self.uploads.delete(upload.id)
            raise
        return sniffed.video

    def pixel_budget(self, owner: str) -> PixelBudget:
        """What one images job of ``owner`` may count: MAX_JOB_PIXELS. The one place a tenant's
        own quota would lower it."""
        return PixelBudget(self.settings.max_job_pixels)

    def _job_or_none(self, job_id: str) -> Job | None:
        try:
            return self.backends.jobs.get(job_id)
        except NotFound:
            return None

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
        source: str | None = None, stream: StreamOptions | None = None, telemetry: TelemetryInput | None = None,
    ) -> tuple[Job, bool]:
        """``owns_input``: the input blob was stored for this request alone (``submit_file``),
        so it goes when no job is made of it. A direct upload's blob belongs to the client's
        upload: it stays, so that a retry after a 503 finds it. ``telemetry`` is stored beside
        the input, for this request alone whichever way it came."""

        def discard_input() -> None:
            if telemetry is not None:
                self.backends.blobs.delete(telemetry_blob_path(job_id))
            if owns_input and kind is JobKind.IMAGES:
                self.backends.blobs.delete_prefix(job_blob_prefix(job_id))  # the manifest and the files
            elif owns_input:
                self.backends.blobs.delete(blob)

        try:
            stored_telemetry = telemetry.store(self.backends.blobs, telemetry_blob_path(job_id)) if telemetry else None
        except CattleCounterError:
            discard_input()
            raise
        job = Job(id=job_id, kind=kind, input_blob=blob, input_etag=input_etag, filename=filename, size_bytes=size,
                  params=params, idempotency_key=key, owner=owner, files_total=files_total, files_failed=files_failed,
                  source=source, stream=stream, telemetry=stored_telemetry)
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
            self.uploads.point_at(upload_id, job_id)
        job, created = self._record_images_job(job_id, entries, f"{len(entries)} files", params,
                                               idempotency_key, owner)
        if job.id != job_id:  # the Idempotency-Key matched an earlier job: the uploads are its
            for upload_id in upload_ids:
                self.uploads.point_at(upload_id, job.id)
        return job, created

    def _job_id_of_upload(self, upload_id: str, owner: str) -> str | None:
        """The id of the job an upload has become, or None while it is no job's input."""
        job = self.uploads.job_of(self.uploads.get(upload_id, owner))
        return job.id if job is not None else None

    def _checked_upload(self, upload_id: str, owner: str, names: FileNames, budget: PixelBudget) -> ManifestEntry:
        upload = self.uploads.get(upload_id, owner)
        if self.uploads.job_of(upload) is not None:
            raise UploadAlreadyUsed(f"upload {upload_id!r} is already job {upload.job_id}'s input")
        blob = upload_data_path(upload_id)
        try:
            stored = self.backends.blobs.info(blob)
        except NotFound:
            raise InvalidInput(f"upload_ids: nothing was uploaded for {upload_id!r} (PUT the file first)") from None
        name = names.unique(upload.filename or "image")
        with StoredMedia(self.backends.blobs, blob, name).local_file(self.settings) as local:
            try:
                image = probe_image_file(local, self.settings, name)
            except ImageError as exc:
                return ManifestEntry(name=name, size=stored.size, error=error_of(exc))
        budget.spend(name, image)
        return ManifestEntry(name=name, blob=blob, size=stored.size, etag=stored.etag)

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
