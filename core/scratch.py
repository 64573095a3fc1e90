"""Each process's own scratch directory, and the sweep of those a killed process left behind.

Layout under the scratch base (WORK_DIR; else DATA_DIR/tmp for the local API; else the
system temp folder):

    <base>/cattlecounter-worker/p<pid>-<random>/        one per worker process: job-<id>-* dirs
    <base>/cattlecounter-worker/p<pid>-<random>.owner   its lock
    <base>/cattlecounter-api/p<pid>-<random>/           one per API process: upload-* dirs

Each process kind has its own root, so a sweep never looks at another program's files.
A process holds an exclusive ``flock`` on its ``.owner`` file for as long as it lives; the
kernel drops the lock when the process dies, SIGKILL and OOM kill included, so "can I take
the lock?" is an exact "is its owner gone?" (a PID is not: a restarted container reuses
PID 1). At start, ``Scratch.open`` removes the directories whose owner is gone, and those
that never got an owner (a crash between mkdir and lock) once they are older than
``stale_after_s`` (the lease), so a process that is starting at this very moment keeps its.
"""

from __future__ import annotations

import fcntl
import logging
import os
import secrets
import shutil
import tempfile
import time
from pathlib import Path

from core.config import Settings, StorageBackend
from core.errors import ConfigError

log = logging.getLogger(__name__)

PROCESS_DIR_PREFIX = "p"
OWNER_SUFFIX = ".owner"

# Errors that mean the disk, not what was being written: the scratch folder is at fault.


def scratch_base(settings: Settings, kind: str) -> tuple[Path, str]:
    """The folder scratch roots go in, and the setting that chose it (for error messages)."""
    if settings.work_dir is not None:
        return settings.work_dir, "WORK_DIR"
    if kind == "api" and settings.storage_backend is StorageBackend.LOCAL:
        return settings.data_dir / "tmp", "DATA_DIR"
    return Path(tempfile.gettempdir()), "the system temp folder (WORK_DIR unset)"


def open_scratch(settings: Settings, kind: str) -> Scratch:
    """This process's scratch folder for ``kind`` ("worker" or "api"); see ``Scratch.open``."""
    base, setting = scratch_base(settings, kind)
    return Scratch.open(base, kind, settings.lease_seconds, setting)


class Scratch:
    """This process's scratch directory (``path``), owned through a held lock until ``close``."""

    def __init__(self, path: Path, owner_fd: int) -> None:
        self.path = path
        self._owner_fd: int | None = owner_fd

    @classmethod
    def open(cls, base: Path, kind: str, stale_after_s: float, setting: str = "WORK_DIR") -> Scratch:
        """Create ``base/cattlecounter-<kind>/`` if missing, sweep what dead processes left
        there, and make this process's own directory.

        Raises ConfigError naming ``setting`` when the folder cannot be used (a file, not
        writable, ...): a process must refuse to start rather than fail every job later.
        """
        root = base / f"cattlecounter-{kind}"
        try:
            root.mkdir(parents=True, exist_ok=True)
            check_writable(root)
        except OSError as exc:
            raise ConfigError(_unusable(base, setting, exc)) from None
        swept = sweep(root, stale_after_s)
        if swept:
            log.info("removed %d scratch folder(s) left by stopped %s processes in %s", swept, kind, root)
        try:
            return cls._own_directory(root)
        except OSError as exc:
            raise ConfigError(_unusable(base, setting, exc)) from None

    @classmethod
    def _own_directory(cls, root: Path) -> Scratch:
        path = root / f"{PROCESS_DIR_PREFIX}{os.getpid()}-{secrets.token_hex(4)}"
        path.mkdir()  # first the folder, then its lock: a sweep spares a young folder with no lock
        fd = os.open(_owner_file(path), os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a fresh file: nobody else holds it
        return cls(path, fd)

    def close(self) -> None:
        """Remove the directory and give up ownership (a clean stop leaves nothing)."""
        if self._owner_fd is None:
            return
        shutil.rmtree(self.path, ignore_errors=True)
        _owner_file(self.path).unlink(missing_ok=True)
        os.close(self._owner_fd)
        self._owner_fd = None


def _owner_file(directory: Path) -> Path:
    return directory.with_name(directory.name + OWNER_SUFFIX)


def check_writable(directory: Path) -> None:
    """Write, read back and delete a small file in ``directory``; raise OSError if any step fails."""
    probe = directory / f".write-check-{secrets.token_hex(4)}"
    try:
        probe.write_bytes(b"ok")
        if probe.read_bytes() != b"ok":
            raise OSError(f"{directory} does not read back what was written")
    finally:
        probe.unlink(missing_ok=True)


def sweep(root: Path, stale_after_s: float) -> int:
    """Remove the process directories in ``root`` whose owner is gone; returns how many."""
    removed = 0
    for entry in sorted(root.iterdir()):
        if not entry.name.startswith(PROCESS_DIR_PREFIX) or entry.is_symlink():
            continue  # not a process folder: not ours to judge
        if entry.is_dir():
            removed += _remove_if_abandoned(entry, stale_after_s)
        elif entry.name.endswith(OWNER_SUFFIX) and not entry.with_suffix("").exists():
            _remove_if_abandoned(entry.with_suffix(""), stale_after_s)  # a lock whose folder is gone
    return removed


def _remove_if_abandoned(directory: Path, stale_after_s: float) -> bool:
    owner = _owner_file(directory)
    try:
        fd = os.open(owner, os.O_RDWR)
    except FileNotFoundError:  # never got an owner; give a process that is starting now its time
        if not directory.exists() or time.time() - directory.stat().st_mtime < stale_after_s:
            return False
        shutil.rmtree(directory, ignore_errors=True)
        return True
    except OSError as exc:
        log.warning("cannot check scratch folder %s: %s", directory, exc)
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return False  # its process is alive
    try:  # holding the lock: nobody can claim the folder now
        shutil.rmtree(directory, ignore_errors=True)
        owner.unlink(missing_ok=True)
        return True
    finally:
        os.close(fd)


def _unusable(base: Path, setting: str, exc: OSError) -> str:
    reason = exc.strerror or str(exc)
    where = f" ({exc.filename})" if exc.filename else ""
    return (f"{setting}: the scratch folder {base} cannot be used: {reason}{where}. It must be a writable "
            f"directory (it is created if missing) with room for the largest video and its results")
