"""What a submitted file is, checked by its bytes, not its name: a video, an image or a ZIP.

``sniff_media`` is the one answer for both ways a file arrives: in the multipart form (a
scratch file: ``LocalMedia``) and as a direct upload (a blob: ``StoredMedia``, whose video is
probed through ranged reads, and downloaded only when it starts like an image). The order: a
ZIP by its first bytes, then an image (only a file that starts like one), then a video.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from core.backends import Backends, BlobStore
from core.blob_io import open_blob
from core.config import Settings
from core.errors import EmptyImage, UnsupportedImage
from core.jobs import JobParams, in_frame_pixels
from ml_engine.media.image_probe import ZIP_HEAD, ImageInfo, probe_image, starts_like_zip
from ml_engine.media.raster import IMAGE_HEAD, starts_like_image
from ml_engine.media.video import VideoInfo, VideoLimits, probe


def video_limits(settings: Settings) -> VideoLimits:
    return VideoLimits(max_pixels=settings.max_video_pixels, max_seconds=settings.max_video_seconds)


def probe_file(path: Path, settings: Settings) -> VideoInfo:
    """Check the bytes, not the name: raises a VideoError subclass for anything not a video,
    and VideoTooLarge / VideoTooLong (422) past MAX_VIDEO_PIXELS / MAX_VIDEO_SECONDS."""
    return probe(path, video_limits(settings))


def probe_blob(backends: Backends, blob_path: str, settings: Settings) -> VideoInfo:
    """Probe a video already in blob storage through ranged reads (no full download)."""
    return StoredMedia(backends.blobs, blob_path).probe_video(settings)


def placed_in_frame(params: JobParams, info: VideoInfo) -> JobParams:
    """The job's lines and zones in pixels of the video's frames as decoded (rotation applied),
    refusing any outside them (422)."""
    return in_frame_pixels(params, *info.display_size)


def probe_image_file(path: Path, settings: Settings, name: str | None = None) -> ImageInfo:
    """Raises a typed ImageError for anything not a readable image within MAX_RASTER_PIXELS,
    its message naming the file as the client knows it (``name``; a scratch file's otherwise)."""
    return probe_image(path, settings.max_raster_pixels, name)


# --- video, image or ZIP? ---------------------------------------------------------------------


class MediaKind(Enum):
    VIDEO = "video"
    IMAGE = "image"
    ZIP = "zip"


@dataclass(frozen=True)
class Sniffed:
    kind: MediaKind
    video: VideoInfo | None = None  # a video's probe, for the job's lines and zones


@dataclass(frozen=True)
class LocalMedia:
    """A file of the multipart form, on scratch disk."""

    path: Path

    def head(self, size: int) -> bytes:
        with self.path.open("rb") as stream:
            return stream.read(size)

    def probe_video(self, settings: Settings) -> VideoInfo:
        return probe_file(self.path, settings)

    @contextmanager
    def local_file(self, settings: Settings) -> Iterator[Path]:
        yield self.path


@dataclass(frozen=True)
class StoredMedia:
    """A direct upload, in blob storage."""

    blobs: BlobStore
    blob: str
    filename: str = "upload"  # of its local copy: some image formats are told by the name

    def head(self, size: int) -> bytes:
        return b"".join(self.blobs.open_range(self.blob, 0, size))

    def probe_video(self, settings: Settings) -> VideoInfo:
        with open_blob(self.blobs, self.blob) as reader:
            return probe(reader, video_limits(settings))

    @contextmanager
    def local_file(self, settings: Settings) -> Iterator[Path]:
        with tempfile.TemporaryDirectory(prefix="probe-", dir=settings.work_dir) as work:
            local = Path(work) / self.filename
            self.blobs.download_to_file(self.blob, local)
            yield local


def sniff_media(media: LocalMedia | StoredMedia, settings: Settings) -> Sniffed:
    """A ZIP, an image or a video (with its probe). Raises the video's own error for a file that
    is none of them (NotAVideo, CorruptVideo, VideoTooLong ...), and the image's own error for
    an image this service refuses (a corrupt TIFF is told it is a corrupt image, not no video).

    Only a file that starts like an image is probed as one (a direct upload is downloaded for
    it); any other is probed as a video, a direct upload through ranged reads."""
    head = media.head(max(ZIP_HEAD, IMAGE_HEAD))
    if starts_like_zip(head):
        return Sniffed(MediaKind.ZIP)
    if starts_like_image(head):
        with media.local_file(settings) as path:
            if _is_image(path, settings):
                return Sniffed(MediaKind.IMAGE)
    return Sniffed(MediaKind.VIDEO, media.probe_video(settings))


def _is_image(path: Path, settings: Settings) -> bool:
    """An image (True), not one at all (False), or an image this service refuses: that error, raised."""
    try:
        probe_image_file(path, settings)
    except (UnsupportedImage, EmptyImage):
        return False
    return True

