"""Reports a running job's progress to its record, and answers "should we stop?".

The pipeline calls ``on_progress`` often; the record is written at most every
PROGRESS_INTERVAL_S so a busy worker does not hammer the job store. ``should_cancel`` is
checked between batches: a user's cancel (read from the record), a lost lease, or the
worker shutting down all stop the job.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable
from enum import Enum

from core import lifecycle, metrics
from core.backends import JobStore
from core.errors import CattleCounterError
from core.jobs import JobStatus
from ml_engine.pipeline import Progress

log = logging.getLogger(__name__)


class StopReason(str, Enum):
    CANCELLED = "cancelled"  # a user asked
    LEASE_LOST = "lease_lost"  # another worker may own the message now
    SHUTDOWN = "shutdown"  # this worker is going away


class JobReporter:
    def __init__(
        self,
        jobs: JobStore,
        job_id: str,
        interval_s: float,
        lease_lost: threading.Event,
        shutting_down: threading.Event,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._jobs = jobs
        self._job_id = job_id
        self._interval_s = interval_s
        self._lease_lost = lease_lost
        self._shutting_down = shutting_down
        self._clock = clock
        self._last_write = clock()
        self._last_cancel_check = clock()
        self._frames_reported = 0
        self._files: tuple[int, int, int] = (0, 0, 0)  # images jobs: done, failed, total
        self._tiles: tuple[int, int | None] = (0, None)
        self.stop_reason: StopReason | None = None

    def on_progress(self, progress: Progress) -> None:
        metrics.FRAMES_PROCESSED.inc(max(0, progress.frames_done - self._frames_reported))
        self._frames_reported = progress.frames_done
        metrics.PROCESSING_FPS.set(progress.fps)
        now = self._clock()
        if now - self._last_write < self._interval_s:
            return
        self._last_write = now
        self._write(progress)

    # --- images jobs: files, and the tiles of the raster in progress -------------------------

    def on_files(self, done: int, failed: int, total: int) -> None:
        """After each file of an images job: progress is the share of files settled."""
        self._files = (done, failed, total)
        self._tiles = (0, None)
        self._write_images_soon()

    def on_tiles(self, done: int, total: int) -> None:
        """Between tile batches of a large raster (hours for an orthomosaic: it shows it moves)."""
        self._tiles = (done, total)
        self._write_images_soon()

    def _write_images_soon(self) -> None:
        now = self._clock()
        if now - self._last_write < self._interval_s:
            return
        self._last_write = now
        (done, failed, total), (tiles_done, tiles_total) = self._files, self._tiles
        self._report(lifecycle.FileProgress(done, failed, total, tiles_done, tiles_total))

    def _write(self, progress: Progress) -> None:
        self._report(lifecycle.FrameProgress(progress))

    def _report(self, report: lifecycle.Report) -> None:
        try:
            job = self._jobs.modify(self._job_id, functools.partial(lifecycle.progress, report=report))
        except lifecycle.TransitionRefused as refused:  # no longer processing: a late report is dropped
            job = refused.job
        except CattleCounterError as exc:  # progress is best effort; the job goes on
            log.warning("could not record progress: %s", exc)
            return
        self._last_cancel_check = self._clock()
        if job.cancel_requested:
            self.stop_reason = self.stop_reason or StopReason.CANCELLED

    def should_cancel(self) -> bool:
        if self.stop_reason is None:
            self.stop_reason = self._check()
        return self.stop_reason is not None

    def _check(self) -> StopReason | None:
        if self._lease_lost.is_set():
            return StopReason.LEASE_LOST
        if self._shutting_down.is_set():
            return StopReason.SHUTDOWN
        now = self._clock()
        if now - self._last_cancel_check < min(1.0, self._interval_s):
            return None
        self._last_cancel_check = now
        try:
            job = self._jobs.get(self._job_id)
        except CattleCounterError as exc:
            log.warning("could not check for cancellation: %s", exc)
            return None
        if job.cancel_requested or job.status is JobStatus.CANCELLED:
            return StopReason.CANCELLED
        if job.status.is_final:  # another worker, redelivered our message, has already finished it
            return StopReason.LEASE_LOST
        return None
