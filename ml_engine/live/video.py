"""The live run's annotated video on its own thread: drawing and x264 overlap the next detection.

The counting loop hands each processed frame over (``frame``) with its tracks and the counts to
draw; the thread draws them and encodes the frame into the open HLS segment. The queue holds
at most ``_QUEUE_FRAMES`` frames and a full queue makes the loop wait, so an encoder slower
than inference slows the loop (and the source drops more frames) instead of frames piling up:
memory stays bounded, and every processed frame is in the video.

A failure on the thread (the encoder, a full disk) is raised in the loop's thread at its next
call here. ``snapshot`` hands over, atomically, the files changed since the last one and the
segments' resume state, so a state never names a segment that was not reported.
"""

from __future__ import annotations

import contextvars
import logging
import queue
import threading
from pathlib import Path
from typing import Any

import numpy as np
import supervision as sv

from ml_engine.annotate import FrameAnnotator
from ml_engine.live.segments import HlsWriter

log = logging.getLogger(__name__)

_QUEUE_FRAMES = 2  # one being encoded, one waiting: overlap without a backlog
_POLL_S = 0.1  # how often a blocked put/get looks at the stop flag and the thread's failure
_JOIN_TIMEOUT_S = 30.0
_END = object()
_CUT = object()


class LiveVideo:
    """``HlsWriter`` + ``FrameAnnotator`` behind a small queue and one thread (see the module)."""

    def __init__(self, hls: HlsWriter, annotator: FrameAnnotator) -> None:
        self.hls, self.annotator = hls, annotator
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=_QUEUE_FRAMES)
        self._lock = threading.Lock()  # the writer's state: between the thread and snapshot()
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._segments_state = hls.state()
        # in a copy of the caller's context, so its log lines keep the job's id
        self._thread = threading.Thread(
            target=contextvars.copy_context().run, args=(self._work,), name="cattlecounter-live-video", daemon=True
        )
        self._thread.start()

    # --- the loop's side -----------------------------------------------------------------------

    def frame(self, image: np.ndarray, tracked: sv.Detections, counts: dict[str, Any], received_at: float) -> None:
        """Draw ``tracked`` and ``counts`` on ``image`` (which the caller no longer uses) and encode it."""
        self._put((image, tracked, counts, received_at))

    def cut(self) -> None:
        """A gap: end the open segment after the frames already handed over."""
        self._put(_CUT)

    def snapshot(self) -> tuple[dict[str, Path], list[str], dict[str, Any]]:
        """(changed files, removed files, the segments' resume state), all as of the same moment."""
        self._raise_failure()
        with self._lock:
            changed, removed = self.hls.take_changes()
            self._segments_state = self.hls.state()
        return changed, removed, self._segments_state

    @property
    def segments_state(self) -> dict[str, Any]:
        """The segments' state as of the last ``snapshot``: what has been reported."""
        return self._segments_state

    def finish(self, end: bool = True) -> None:
        """Encode what is queued and close the last segment; ``end``: end the playlist too
        (not when the stream goes on elsewhere)."""
        self._put(_END)
        self._thread.join()
        self._raise_failure()
        if end:
            self.hls.finish()
        else:
            self.hls.pause()

    def close(self) -> None:
        """Stop the thread; a half-written segment (after a failure) is dropped. After
        ``finish`` there is nothing left to do."""
        self._stop.set()
        self._thread.join(_JOIN_TIMEOUT_S)
        if self._thread.is_alive():
            log.warning("the live video thread did not stop within %.0f s", _JOIN_TIMEOUT_S)
            return
        self.hls.abandon()

    def _put(self, item: Any) -> None:
        while True:
            self._raise_failure()
            try:
                self._queue.put(item, timeout=_POLL_S)
                return
            except queue.Full:
                continue

    def _raise_failure(self) -> None:
        if self._error is not None:
            raise self._error

    # --- the thread -------------------------------------------------------------------------------

    def _work(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    item = self._queue.get(timeout=_POLL_S)
                except queue.Empty:
                    continue
                if item is _END:
                    return
                with self._lock:
                    if item is _CUT:
                        self.hls.cut(discontinuity=True)
                    else:
                        self._draw_and_encode(*item)
        except BaseException as exc:  # noqa: BLE001 - raised in the loop's thread
            self._error = exc

    def _draw_and_encode(self, image: np.ndarray, tracked: sv.Detections, counts: dict[str, Any],
                         received_at: float) -> None:
        self.annotator.annotate(image, tracked, counts)
        self.hls.write(image, received_at)
