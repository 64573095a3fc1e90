"""A live video source (RTSP, HLS): one decode thread, frames paced by their timestamps, reconnects.

Cameras reset without sending end-of-stream, stall, and change resolution. ``LiveSource``
hides that from the counting loop:

- Its decode thread (``connection.py``'s ``Reconnector``) reads the stream with PyAV, decodes
  every packet, reconnects with backoff when the stream stalls or ends, and posts a ``Gap``
  (from, to, reason) before the first frame after it, so the consumer can end its tracks:
  positions on either side of a gap do not match. It gives up (``StreamUnavailable``) after
  ``first_connect_attempts`` on a source that never worked, or ``max_reconnects`` failed
  attempts in a row on one that did.
- Each frame waits until it is due by its timestamps (``pacing``: an HLS segment decoded in one
  burst is handed out at the camera's rate), and the consumer gets the newest due frame: only
  when inference is slower than the source are older frames dropped (and counted). What waits
  is bounded in bytes (``pacing_max_bytes``). RTSP frames are due as they arrive
  (``pacing_max_delay_s``): they come as they are sent.
- Each frame says when it arrived from the decoder and, where the source says when it was
  taken, its capture time: HLS ``EXT-X-PROGRAM-DATE-TIME`` (``hls_clock``). RTSP frames have none.

Before every connect and reconnect the source asks ``SourceOptions.check`` (the worker's
egress policy, STREAM_ALLOWED_NETWORKS): a refusal ends the source with StreamUnavailable, a
transient failure (DNS down) is a failed attempt, retried. HTTP(S) requests go through
``SourceOptions.http_proxy`` when given (the worker's ``core.egress_proxy``, which checks
every segment, key and redirect). RTSP has no such proxy: an rtsp:// connection goes to the address
the check returned (rtsps:// keeps its name for TLS, and FFmpeg resolves it again), and an
RTSP redirect is followed unchecked (see docs/operations.md).

The URL may carry credentials: it goes to PyAV only. Logs and errors name ``redact_url(url)``,
and FFmpeg's error text (which repeats the URL) is never passed on.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from collections.abc import Callable
from types import TracebackType
from urllib.parse import urlsplit

from core.errors import StreamUnavailable
from core.netpolicy import redact_url  # shared with the API and the worker
from ml_engine.live.connection import Reconnector, SourceOptions
from ml_engine.live.frames import DecodedFrame, Gap, LiveFrame
from ml_engine.live.pacing import PacedMailbox

__all__ = ["Gap", "LiveFrame", "LiveSource", "SourceOptions", "redact_url"]

log = logging.getLogger(__name__)


class LiveSource:
    """Frames from a live URL, newest first; see the module docstring.

    Use as a context manager (``close()`` on exit). The decode thread starts at once.
    """

    def __init__(self, url: str, options: SourceOptions | None = None,
                 should_stop: Callable[[], bool] = lambda: False) -> None:
        self._url = url
        self.redacted_url = redact_url(url)
        self._options = options or SourceOptions()
        self._closed = threading.Event()
        self._changed = threading.Condition()
        # frames waiting to be due, and gaps, in order
        self._mailbox: PacedMailbox[DecodedFrame, Gap] = PacedMailbox(self._options.pacing_max_bytes)
        self._error: StreamUnavailable | None = None
        self._reader = Reconnector(url, self._options, self._closed, should_stop, self._post_frame, self._post_gap)
        self._thread = threading.Thread(target=self._run, name="live-source", daemon=True)
        self._thread.start()

    # --- the consumer's side ------------------------------------------------------------

    @property
    def frames_received(self) -> int:
        return self._mailbox.received

    @property
    def frames_dropped(self) -> int:
        return self._mailbox.dropped

    @property
    def reconnects(self) -> int:
        """Reconnections that worked (frames flowed again)."""
        return max(0, self._reader.connections - 1)

    def next(self, timeout: float) -> LiveFrame | Gap | None:
        """The newest frame that is due, or a Gap that came before it, or None after
        ``timeout`` seconds (or at once when the source is closed or was told to stop).

        Raises:
            StreamUnavailable: the source never worked, or its reconnects are spent.
        """
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                if self._closed.is_set():
                    return None  # closed, or told to stop: what is left is not wanted
                now = time.monotonic()
                decoding = self._thread.is_alive()
                item = self._mailbox.take(now if decoding else float("inf"))  # ended: nothing more to pace
                if item is not None:
                    break
                if self._error is not None:
                    raise self._error
                remaining = deadline - now
                if remaining <= 0 or not decoding:
                    return None
                until_due = self._mailbox.seconds_until_due(now)
                self._changed.wait(remaining if until_due is None else min(remaining, until_due))
        return item.to_live_frame() if isinstance(item, DecodedFrame) else item

    def close(self, timeout: float = 2.0) -> None:
        """Stop the decode thread. It ends within ``timeout`` unless it is inside a blocking
        read: then it is left to end by itself (it is a daemon, and the read times out)."""
        self._closed.set()
        with self._changed:
            self._changed.notify_all()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def __enter__(self) -> LiveSource:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # --- the decode thread ---------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._reader.run()
        except StreamUnavailable as exc:
            with self._changed:
                self._error = exc
                self._changed.notify_all()
        except Exception as exc:  # a bug: say so, and fail the consumer rather than leave it waiting
            trace = "".join(traceback.format_exception(exc))
            log.error("live source %s: decode thread failed:\n%s", self.redacted_url, self._scrub(trace))
            with self._changed:
                self._error = StreamUnavailable(
                    f"reading the stream {self.redacted_url} failed unexpectedly ({type(exc).__name__})")
        finally:
            with self._changed:
                self._changed.notify_all()

    def _scrub(self, text: str) -> str:
        """``text`` without the URL or its user name and password (a traceback may quote them)."""
        text = text.replace(self._url, self.redacted_url)
        try:
            secrets = [part for part in (urlsplit(self._url).username, urlsplit(self._url).password) if part]
        except ValueError:
            secrets = []
        for secret in secrets:
            text = text.replace(secret, "***")
        return text

    def _post_frame(self, frame: DecodedFrame, due_at: float) -> None:
        """A frame waits until ``due_at`` (time.monotonic())."""
        with self._changed:
            self._mailbox.put_frame(frame, due_at, frame.size(), time.monotonic())
            self._changed.notify_all()

    def _post_gap(self, gap: Gap) -> None:
        """A gap goes in line after the frames before it."""
        with self._changed:
            self._mailbox.put_gap(gap, time.monotonic())
            self._changed.notify_all()
