"""Bulk images jobs at submit: unpacking ZIPs safely, naming files, checking each one.

Decisions (docs/api.md, "Images and bulk jobs"):
- ZIPs are unpacked by the API, one entry at a time (scratch file -> probe -> blob -> removed),
  so the worker only ever sees plain files and a ZIP that breaks a rule is refused with a 422
  before anything is queued. Refused whole: a ZIP bomb (MAX_ZIP_RATIO per entry and over the
  whole archive, MAX_ZIP_UNCOMPRESSED_BYTES in all, counted while unpacking too), an entry path that leaves
  the archive (``../x``, ``/x``, ``C:x``), a ZIP inside the ZIP, an encrypted entry, more than
  MAX_ZIP_ENTRIES entries, or no files at all.
- A file that is not a readable image (a .txt among the photos, a corrupt TIFF, 0 bands, too
  many pixels) does not refuse the job: it is listed in the manifest with its typed error and
  the job's results report it (partial results). Only when NO file is usable is the submit
  refused (422 ``no_usable_files``), naming the files and their errors.
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from core.config import Settings
from core.errors import (
    ArchiveRefused,
    EmptyZip,
    ImageError,
    TooManyFiles,
    UnsafeZipPath,
    ZipBomb,
)
from core.jobs import JobError

# macOS and Windows add these to a zipped folder; they are not the user's files
_IGNORED_PARTS = ("__MACOSX",)
_IGNORED_NAMES = (".DS_Store", "Thumbs.db", "desktop.ini")
_CHUNK = 1024 * 1024
# below this an entry's ratio says nothing (a small file of one colour packs 1000:1)
_RATIO_FLOOR_BYTES = 1024 * 1024


@dataclass(frozen=True)
class ZipLimits:
    max_entries: int
    max_total_bytes: int
    max_ratio: float

    @classmethod
    def from_settings(cls, settings: Settings) -> ZipLimits:
        return cls(settings.max_zip_entries, settings.max_zip_uncompressed_bytes, settings.max_zip_ratio)


def _entry_parts(raw: str) -> list[str] | None:
    """The entry's path as parts; None for one to skip (a folder, macOS metadata). Raises
    UnsafeZipPath for a path that leaves the archive."""
    if raw.endswith("/"):
        return None
    path = raw.replace("\\", "/")
    parts = path.split("/")
    if path.startswith("/") or ".." in parts or (parts[0][1:2] == ":"):
        raise UnsafeZipPath(f"the ZIP entry {raw!r} points outside the archive; nothing was stored")
    parts = [part for part in parts if part not in ("", ".")]
    if not parts or any(part in _IGNORED_PARTS for part in parts) or parts[-1] in _IGNORED_NAMES:
        return None
    if parts[-1].startswith("._"):  # AppleDouble resource forks
        return None
    return parts


def check_zip(
    archive: zipfile.ZipFile, limits: ZipLimits, max_files: int, archive_bytes: int
) -> list[tuple[zipfile.ZipInfo, str]]:
    """Everything that can be known from the central directory, before unpacking a byte:
    returns (entry, name in the job) of each file to unpack. ``archive_bytes``: the ZIP's size."""
    entries = archive.infolist()
    if len(entries) > limits.max_entries:
        raise TooManyFiles(f"the ZIP holds {len(entries)} entries; the limit is {limits.max_entries} (MAX_ZIP_ENTRIES)")
    files: list[tuple[zipfile.ZipInfo, str]] = []
    total = 0
    for entry in entries:
        parts = _entry_parts(entry.filename)
        if parts is None:
            continue
        if entry.flag_bits & 0x1:
            raise ArchiveRefused(f"the ZIP entry {entry.filename!r} is encrypted; send it unencrypted")
        if parts[-1].lower().endswith(".zip"):
            raise ArchiveRefused(f"the ZIP holds another ZIP ({entry.filename!r}); ZIPs inside ZIPs are "
                                 "not unpacked: send its images in the outer ZIP")
        _check_ratio(entry, limits)
        total += entry.file_size
        if total > limits.max_total_bytes:
            raise ZipBomb(f"the ZIP unpacks to more than {limits.max_total_bytes} bytes "
                          "(MAX_ZIP_UNCOMPRESSED_BYTES); split it into several jobs")
        files.append((entry, "/".join(parts)))
    if not files:
        raise EmptyZip("the ZIP holds no files")
    _check_archive_ratio(total, archive_bytes, limits)
    if len(files) > max_files:
        raise TooManyFiles(f"the ZIP holds {len(files)} files; one job takes at most {max_files} "
                           "(MAX_FILES_PER_JOB): split it into several jobs")
    return files


def _check_ratio(entry: zipfile.ZipInfo, limits: ZipLimits) -> None:
    if entry.file_size <= _RATIO_FLOOR_BYTES:
        return
    ratio = entry.file_size / max(entry.compress_size, 1)
    if ratio > limits.max_ratio:
        raise ZipBomb(f"the ZIP entry {entry.filename!r} unpacks {ratio:.0f} times larger than it is packed "
                      f"(the limit is {limits.max_ratio:g}, MAX_ZIP_RATIO): a ZIP bomb, refused")


def _check_archive_ratio(unpacked_bytes: int, archive_bytes: int, limits: ZipLimits) -> None:
    """The ratio over the whole archive: many entries, each too small for its own ratio to say
    anything (300 MiB-sized files of zeros), still make a bomb together. Measured against
    the ZIP's own size, which no header can overstate."""
    if unpacked_bytes <= _RATIO_FLOOR_BYTES:
        return
    ratio = unpacked_bytes / max(archive_bytes, 1)
    if ratio > limits.max_ratio:
        raise ZipBomb(f"the ZIP unpacks {ratio:.0f} times larger than it is packed, all entries together "
                      f"(the limit is {limits.max_ratio:g}, MAX_ZIP_RATIO): a ZIP bomb, refused")


def unpack_entry(archive: zipfile.ZipFile, entry: zipfile.ZipInfo, destination: Path, limits: ZipLimits) -> None:
    """Unpack one entry to ``destination``, counting the bytes as they come: a header that
    understates the size (zipfile trusts it) cannot make the file any larger than it says."""
    written = 0
    try:
        with archive.open(entry) as source, destination.open("wb") as sink:
            while chunk := source.read(_CHUNK):
                written += len(chunk)
                if written > max(entry.file_size, 0) or written > limits.max_total_bytes:
                    raise ZipBomb(f"the ZIP entry {entry.filename!r} unpacks to more than its header says; refused")
                sink.write(chunk)
    except (zipfile.BadZipFile, EOFError, NotImplementedError) as exc:
        raise ArchiveRefused(f"the ZIP entry {entry.filename!r} cannot be unpacked ({exc})") from None
    if written >= 4 and destination.open("rb").read(4) == b"PK\x03\x04":
        raise ArchiveRefused(f"the ZIP holds another ZIP ({entry.filename!r}); ZIPs inside ZIPs are not unpacked")


def opened_zip(zip_path: Path) -> zipfile.ZipFile:
    """The ZIP at ``zip_path``, open (use it in a ``with``); ArchiveRefused when it cannot be read."""
    try:
        return zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise ArchiveRefused(f"{zip_path.name}: not a readable ZIP ({exc})") from None


def unpacked_files(zip_path: Path, work_dir: Path, settings: Settings) -> Iterator[tuple[str, Path]]:
    """(name in the job, unpacked file) for each file of the ZIP, one at a time: the caller
    stores each before the next is unpacked, and the file is removed when it asks for the next."""
    limits = ZipLimits.from_settings(settings)
    with opened_zip(zip_path) as archive:
        files = check_zip(archive, limits, settings.max_files_per_job, zip_path.stat().st_size)
        total = 0
        for number, (entry, name) in enumerate(files):
            destination = work_dir / f"entry-{number}"
            unpack_entry(archive, entry, destination, limits)
            total += destination.stat().st_size
            if total > limits.max_total_bytes:
                raise ZipBomb(f"the ZIP unpacks to more than {limits.max_total_bytes} bytes "
                              "(MAX_ZIP_UNCOMPRESSED_BYTES); split it into several jobs")
            try:
                yield name, destination
            finally:
                destination.unlink(missing_ok=True)


class FileNames:
    """Names unique in one job: the name a file arrived with, or with ``-2``, ``-3`` added
    before the extension when two files share it. Slashes (a ZIP's folders) become ``_`` so
    a name is one path segment in downloads (``GET /jobs/{id}/files/{name}``)."""

    def __init__(self) -> None:
        self._seen: set[str] = set()

    def unique(self, name: str) -> str:
        base = PurePosixPath(name.replace("/", "_").replace("\\", "_")).name or "image"
        stem, dot, ext = base.rpartition(".")
        if not dot:
            stem, ext = base, ""
        candidate, n = base, 1
        while candidate.lower() in self._seen:
            n += 1
            candidate = f"{stem}-{n}.{ext}" if dot else f"{stem}-{n}"
        self._seen.add(candidate.lower())
        return candidate


def error_of(exc: ImageError) -> JobError:
    return JobError(code=exc.code, message=str(exc))

