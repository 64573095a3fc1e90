"""Direct uploads (``POST /uploads``, then a PUT of the bytes): their reservations, and the
hourly sweep of those nobody made a job of.

An upload lives under ``uploads/<id>/``: ``data`` (the bytes) and ``meta.json`` (the
reservation, an ``Upload``). A reservation names the one job the upload can become, fixed
when it is reserved, so posting the same upload twice makes one job.
"""

from __future__ import annotations

import json
import logging
import secrets
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timedelta

from core.backends import Backends, BlobStore
from core.config import Settings
from core.errors import InvalidInput, NotFound, UploadAlreadyUsed
from core.jobs import DEFAULT_OWNER, Job, new_job_id, utcnow

log = logging.getLogger(__name__)

UPLOAD_PREFIX = "uploads/"
# an upload left this long after its write URL expired, and not a job's input, is deleted
ABANDONED_AFTER = timedelta(days=1)
MAX_UPLOAD_ID = 64


@dataclass(frozen=True)
class Upload:
    """A direct upload's reservation, as ``meta.json`` holds it."""

    id: str
    filename: str | None
    expires_at: datetime
    owner: str = DEFAULT_OWNER
    job_id: str | None = None  # the one job it can become (reservations of old versions have none)

    def to_json(self) -> bytes:
        fields = asdict(self)
        del fields["id"]  # the folder names it
        return json.dumps({**fields, "expires_at": self.expires_at.isoformat()}).encode()

    @classmethod
    def from_json(cls, upload_id: str, text: bytes) -> Upload:
        """Raises ValueError for a reservation that is not one."""
        meta = json.loads(text)
        if not isinstance(meta, dict) or not isinstance(meta.get("expires_at"), str):
            raise ValueError(f"upload {upload_id!r}: not a reservation")
        return cls(id=upload_id, filename=meta.get("filename"), expires_at=datetime.fromisoformat(meta["expires_at"]),
                   owner=meta.get("owner", DEFAULT_OWNER), job_id=meta.get("job_id"))


class UploadBook:
    """The reservations of direct uploads, kept in blob storage beside their bytes."""

    def __init__(self, settings: Settings, backends: Backends) -> None:
        self.settings = settings
        self.backends = backends

    def reserve(self, filename: str, owner: str = DEFAULT_OWNER) -> tuple[str, str | None, datetime]:
        """Reserve an upload id; returns (id, backend write URL or None, expiry time)."""
        upload_id = secrets.token_urlsafe(24)
        ttl = timedelta(seconds=self.settings.upload_url_ttl_s)
        # the id of the one job this upload can become (see Submitter.submit_upload); time-ordered
        # like every job id, so that job is listed by when its upload began
        upload = Upload(id=upload_id, filename=filename, expires_at=utcnow() + ttl, owner=owner, job_id=new_job_id())
        self._write(upload)
        return upload_id, self.backends.blobs.write_url(upload_data_path(upload_id), ttl), upload.expires_at

    def get(self, upload_id: str, owner: str | None = None) -> Upload:
        """The upload's reservation; with ``owner``, only if it is that tenant's (another
        tenant's upload is as unknown as a missing one)."""
        try:
            text = self.backends.blobs.read_small(upload_meta_path(upload_id))
        except NotFound:
            raise InvalidInput(f"upload_id: unknown upload {upload_id!r}") from None
        upload = Upload.from_json(upload_id, text)
        if owner is not None and upload.owner != owner:
            raise InvalidInput(f"upload_id: unknown upload {upload_id!r}")
        return upload

    def point_at(self, upload_id: str, job_id: str) -> None:
        """Make the upload the input of job ``job_id``."""
        self._write(replace(self.get(upload_id), job_id=job_id))

    def job_of(self, upload: Upload) -> Job | None:
        """The job the upload has become, if it has."""
        if not upload.job_id:
            return None
        try:
            return self.backends.jobs.get(upload.job_id)
        except NotFound:
            return None

    def check_open(self, upload_id: str, owner: str = DEFAULT_OWNER) -> None:
        """For the local PUT endpoint: the upload exists and is ``owner``'s, has not expired, and
        has not become a job yet (whose input, already checked, must not change under it)."""
        try:
            upload = self.get(upload_id, owner)
        except InvalidInput as exc:  # the PUT names the upload in its path: an unknown one is not found
            raise NotFound(str(exc)) from None
        if upload.expires_at < utcnow():
            raise InvalidInput(f"upload {upload_id!r} has expired; ask for a new one")
        job = self.job_of(upload)
        if job is not None:
            raise UploadAlreadyUsed(f"upload {upload_id!r} is already job {job.id}; "
                                    "ask for a new upload to send another video")

    def delete(self, upload_id: str) -> None:
        self.backends.blobs.delete_prefix(upload_prefix(upload_id))

    def sweep_abandoned(self, now: datetime | None = None) -> int:
        """Delete direct uploads nobody made a job of (never finished, never posted, or left
        after a refused submission); returns how many. The API runs this every hour."""
        now = now or utcnow()
        keep_for = timedelta(seconds=self.settings.upload_url_ttl_s) + ABANDONED_AFTER
        removed = 0
        for upload_id, written in _uploads_last_written(self.backends.blobs, now).items():
            if written + keep_for < now and not self._became_a_job(upload_id):
                self.delete(upload_id)
                removed += 1
        if removed:
            log.info("removed %d abandoned upload(s)", removed)
        return removed

    def _became_a_job(self, upload_id: str) -> bool:
        try:
            upload = self.get(upload_id)
        except (InvalidInput, ValueError):
            return False  # no readable reservation: nothing can refer to it
        return self.job_of(upload) is not None

    def _write(self, upload: Upload) -> None:
        self.backends.blobs.write_small(upload_meta_path(upload.id), upload.to_json(), "application/json")


def _uploads_last_written(blobs: BlobStore, now: datetime) -> dict[str, datetime]:
    """Each upload's id and the time its newest blob was written."""
    newest: dict[str, datetime] = {}
    for blob in blobs.list(UPLOAD_PREFIX):
        upload_id = blob.path[len(UPLOAD_PREFIX):].split("/", 1)[0]
        if not is_upload_id(upload_id):
            continue  # not ours to judge
        written = blob.last_modified or now
        newest[upload_id] = max(written, newest.get(upload_id, written))
    return newest


def is_upload_id(text: str) -> bool:
    # ids are made by UploadBook.reserve (32 characters); the length cap keeps a client's id from
    # becoming a file name longer than the file system allows (an error naming server paths)
    return 0 < len(text) <= MAX_UPLOAD_ID and all(c.isascii() and (c.isalnum() or c in "-_") for c in text)


def upload_prefix(upload_id: str) -> str:
    if not is_upload_id(upload_id):
        raise InvalidInput("upload_id: not a valid upload id")
    return f"{UPLOAD_PREFIX}{upload_id}/"


def upload_data_path(upload_id: str) -> str:
    return upload_prefix(upload_id) + "data"


def upload_meta_path(upload_id: str) -> str:
    return upload_prefix(upload_id) + "meta.json"
