"""A ZIP that holds a video rather than images: one video and its ``.SRT`` (the flight's
telemetry, which a drone records beside each video), zipped together.

A ZIP's entries have only names until they are unpacked, so the ZIP is told apart by them: one
holding a ``.SRT`` or a file named like a video (``VIDEO_SUFFIXES``) is a video ZIP, and must
hold exactly one video, at most one ``.SRT`` and nothing else (a mix is refused whole, 422,
rather than counted as something the client did not mean). Any other ZIP is a ZIP of images
(``api.bulk``). The video is then checked by its bytes like any other, and the ``.SRT`` like
any telemetry (``api.telemetry_input``). The same limits as a ZIP of images apply.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from api.bulk import ZipLimits, check_zip, opened_zip, unpack_entry
from api.media import LocalMedia, VideoInfo, sniff_media
from api.telemetry_input import TelemetryInput, local_telemetry
from core.config import Settings
from core.errors import InvalidInput, InvalidTelemetry, NotAVideo, UploadTooLarge
from ml_engine.media.telemetry import SRT_SUFFIX

VIDEO_SUFFIXES = (".mp4", ".mov", ".m4v", ".mkv", ".avi", ".webm", ".mpg", ".mpeg", ".ts", ".mts", ".m2ts")
ZIP_RULE = "a ZIP holds either images, or one video with its .SRT telemetry"
_NAMES_SHOWN = 5


@dataclass(frozen=True)
class UnpackedFile:
    name: str  # the entry's file name, without its folders
    path: Path


@dataclass(frozen=True)
class VideoZip:
    video: UnpackedFile
    telemetry: UnpackedFile | None


def video_in_zip(zip_path: Path, work_dir: Path, settings: Settings) -> VideoZip | None:
    """The video (and ``.SRT``) of a video ZIP, unpacked into ``work_dir``; None for a ZIP of
    images. Raises InvalidInput (naming the field ``file``) for a ZIP that mixes a video with
    other files, holds two videos or two ``.SRT``, or a ``.SRT`` without a video; and the ZIP
    errors of ``api.bulk`` for a ZIP that breaks their rules."""
    limits = ZipLimits.from_settings(settings)
    with opened_zip(zip_path) as archive:
        entries = check_zip(archive, limits, settings.max_files_per_job, zip_path.stat().st_size)
        videos = [entry for entry in entries if _named_like(entry[1], VIDEO_SUFFIXES)]
        subtitles = [entry for entry in entries if _named_like(entry[1], (SRT_SUFFIX,))]
        if not videos and not subtitles:
            return None
        others = [name for entry, name in entries if (entry, name) not in videos + subtitles]
        _check_one_video([name for _, name in videos], [name for _, name in subtitles], others)
        if subtitles and subtitles[0][0].file_size > settings.max_telemetry_bytes:
            raise UploadTooLarge(f"file: the ZIP's {subtitles[0][1]} is {subtitles[0][0].file_size} bytes; "
                                 f"telemetry is at most {settings.max_telemetry_bytes} (MAX_TELEMETRY_BYTES)")
        unpacked = work_dir / "unpacked"
        unpacked.mkdir(exist_ok=True)
        video = _unpacked(archive, *videos[0], unpacked, limits)
        telemetry = _unpacked(archive, *subtitles[0], unpacked, limits) if subtitles else None
    return VideoZip(video, telemetry)


def _named_like(name: str, suffixes: tuple[str, ...]) -> bool:
    return name.lower().endswith(suffixes)


def _check_one_video(videos: list[str], subtitles: list[str], others: list[str]) -> None:
    if len(videos) > 1:
        raise InvalidInput(f"file: the ZIP holds {len(videos)} videos ({_listed(videos)}); {ZIP_RULE}: "
                           "send each video as a job of its own")
    if not videos:
        raise InvalidInput(f"file: the ZIP holds the telemetry {_listed(subtitles)} but no video "
                           f"({', '.join(VIDEO_SUFFIXES)}); {ZIP_RULE}")
    if len(subtitles) > 1:
        raise InvalidInput(f"file: the ZIP holds {len(subtitles)} .SRT files ({_listed(subtitles)}); {ZIP_RULE}")
    if others:
        raise InvalidInput(f"file: the ZIP holds the video {videos[0]} and {len(others)} other "
                           f"file{'s' if len(others) > 1 else ''} ({_listed(others)}); {ZIP_RULE}")


def _listed(names: list[str]) -> str:
    shown = ", ".join(names[:_NAMES_SHOWN])
    return shown + (", ..." if len(names) > _NAMES_SHOWN else "")


def _unpacked(archive: zipfile.ZipFile, entry: zipfile.ZipInfo, name: str, folder: Path,
              limits: ZipLimits) -> UnpackedFile:
    """One entry, unpacked under its own file name (probing's messages then name it)."""
    file_name = PurePosixPath(name).name
    destination = folder / file_name
    unpack_entry(archive, entry, destination, limits)
    return UnpackedFile(file_name, destination)


def checked_video_zip(zipped: VideoZip, sent: TelemetryInput | None, settings: Settings) -> tuple[
        UnpackedFile, VideoInfo, TelemetryInput | None]:
    """The ZIP's video, checked by its bytes and probed, and the job's telemetry: the ZIP's
    ``.SRT`` (checked) or the one sent beside the ZIP, never both."""
    sniffed = sniff_media(LocalMedia(zipped.video.path), settings)
    if sniffed.video is None:
        raise NotAVideo(f"{zipped.video.name} in the ZIP is not a video ({sniffed.kind.value}); {ZIP_RULE}")
    if zipped.telemetry is None:
        return zipped.video, sniffed.video, sent
    if sent is not None:
        raise InvalidTelemetry(f"{sent.field}: the ZIP holds the video's telemetry already "
                               f"({zipped.telemetry.name}); send it once")
    telemetry = local_telemetry(zipped.telemetry.path, zipped.telemetry.name, settings, "file")
    return zipped.video, sniffed.video, telemetry
