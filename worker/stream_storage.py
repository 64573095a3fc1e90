"""A stream run's files and resume state, stored best effort (``StreamStorage``).

The engine reports files as it writes them and hands over resume states; a storage blip must
not end a stream that runs for days. So what could not be stored waits on the local disk and
is tried again at the next callback, in order: the files (segments before the playlist that
names them), the retired segments' deletions, then the newest resume state (it names only
stored files). Only storage that keeps failing for ``outage_limit_s``, or a non-transient
error, ends the run (it is retried, and resumes from the last state stored).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from core.backends import Backends
from core.errors import CattleCounterError
from core.jobs import output_blob_path, stream_state_path
from core.outputs import GAPS, LIVE_PLAYLIST, STATS, WINDOWS, media_type

if TYPE_CHECKING:  # the engine is imported when a stream runs: a file-only worker never loads it
    from ml_engine.live import StreamState

log = logging.getLogger(__name__)

# the outputs the record lists (the segments are many: the live route finds them by name)
LISTED_OUTPUTS = (WINDOWS, GAPS, LIVE_PLAYLIST, STATS)


class StreamStorage:
    """What one run of one stream has to store, and what the record lists of it (``outputs``:
    {output name: blob path}, starting from the job's). Callbacks may come from the engine's
    threads: ``outputs`` is read and taken under a lock."""

    def __init__(self, backends: Backends, job_id: str, outputs: dict[str, str], clock: Callable[[], float],
                 outage_limit_s: float) -> None:
        self.backends = backends
        self.job_id = job_id
        self.clock = clock
        self.outage_limit_s = outage_limit_s
        self.outputs: dict[str, str] = {k: v for k, v in outputs.items() if k in LISTED_OUTPUTS}
        self._outputs_changed = False
        self._pending_files: dict[str, Path] = {}  # not stored yet (storage failed): tried again
        self._pending_removals: set[str] = set()
        self._pending_state: StreamState | None = None  # the newest resume state not stored yet
        self._failing_since: float | None = None  # when storing files started failing
        self._last_segment = ""  # the newest segment uploaded (names sort in order)
        self._lock = threading.Lock()

    @property
    def pending(self) -> bool:
        """Something a storage blip left is waiting."""
        return bool(self._pending_files or self._pending_removals or self._pending_state is not None)

    @property
    def files_pending(self) -> int:
        return len(self._pending_files)

    def add_files(self, changed: dict[str, Path], removed: list[str]) -> None:
        """Store the files the engine wrote, and delete those it retired (then what was pending)."""
        self._pending_files.update(changed)
        for name in removed:  # segments past STREAM_SEGMENT_RETENTION_S
            self._pending_files.pop(name, None)  # retired before it could be stored: never mind
            self._pending_removals.add(name)
        self.store_pending()

    def add_state(self, state: StreamState) -> None:
        """Store a resume state (the newest wins; an older one that failed is not needed)."""
        self._pending_state = state
        self.store_pending()

    def not_uploaded(self, files: dict[str, Path]) -> dict[str, Path]:
        """Of the engine's final files, those to upload now: every small one (stats.json, the
        playlist, windows.jsonl: final versions) and the segments not uploaded yet (their
        zero-padded names sort in order), not the hours of segments already stored."""
        return {name: path for name, path in files.items()
                if not name.endswith(".ts") or name > self._last_segment}

    def take_outputs(self) -> dict[str, str] | None:
        """The listed outputs, if one was added since they were last taken."""
        with self._lock:
            if not self._outputs_changed:
                return None
            self._outputs_changed = False
            return dict(self.outputs)

    def outputs_not_written(self) -> None:
        """The outputs taken could not be written to the record: take them again next time."""
        with self._lock:
            self._outputs_changed = True

    def store_pending(self) -> None:
        """Store what is pending: the files in order (segments before the playlist that names
        them), the retired segments' deletions, then the resume state (it names only stored
        files). A transient failure leaves the rest pending for the next callback.

        Raises:
            CattleCounterError: a non-transient storage error, or storage failing for
                ``outage_limit_s``: the run ends (and is retried).
        """
        try:
            self._upload_pending_files()
            for name in sorted(self._pending_removals):
                self.backends.blobs.delete(output_blob_path(self.job_id, name))
                self._pending_removals.discard(name)
            if self._pending_state is not None:
                self.backends.blobs.write_small(stream_state_path(self.job_id),
                                                self._pending_state.to_json().encode(), "application/json")
                self._pending_state = None
        except CattleCounterError as exc:
            if not exc.transient:
                raise
            self._storage_failed(exc)
            return
        self._failing_since = None

    def _upload_pending_files(self) -> None:
        for name in sorted(self._pending_files, key=lambda n: (n == LIVE_PLAYLIST, n)):
            path = self._pending_files[name]
            if not path.is_file():  # the engine retired it meanwhile
                del self._pending_files[name]
                continue
            blob = output_blob_path(self.job_id, name)
            self.backends.blobs.upload_file(blob, path, media_type(name))
            del self._pending_files[name]
            if name.endswith(".ts"):
                self._last_segment = max(self._last_segment, name)
            if name in LISTED_OUTPUTS and self.outputs.get(name) != blob:
                with self._lock:
                    self.outputs[name] = blob
                    self._outputs_changed = True

    def _storage_failed(self, error: CattleCounterError) -> None:
        now = self.clock()
        if self._failing_since is None:
            self._failing_since = now
        failing_for = now - self._failing_since
        if failing_for >= self.outage_limit_s:
            log.error("storing the stream's files has failed for %.0f s; ending this run (it is retried)",
                      failing_for)
            raise error
        log.warning("could not store the stream's files (%d waiting); trying again at the next report: %s",
                    len(self._pending_files), error)
