"""Connecting to a live URL and keeping it connected: the work of ``LiveSource``'s decode thread.

``Reconnector`` reads a stream with PyAV and decodes every packet (H.264 needs its reference
frames), handing each frame on with when it is due by its timestamps (``pacing``) and, where the
source says when it was taken, its capture time (HLS ``EXT-X-PROGRAM-DATE-TIME``:
``hls_clock``; PyAV does not expose the RTP timestamp an RTSP sender report dates, so RTSP
frames have none).

- A read that waits longer than ``read_timeout_s`` is a stall; the end of the stream (the
  server closed it, or died) is ``ended``. Either way it reconnects with exponential backoff,
  and once frames flow again it posts a ``Gap`` (from, to, reason) before the next frame.
- A frame size change within a connection is a zero-length ``Gap("resolution_change")``.
- The first connection is tried ``first_connect_attempts`` times; after that it raises
  ``StreamUnavailable``. Once it has worked (here, or before a resume: ``has_worked``) it
  reconnects for ever, or until ``max_reconnects`` attempts in a row have failed.

Before every connect and reconnect it asks ``SourceOptions.check`` (the worker's egress
policy): a refusal ends the source with StreamUnavailable, a transient failure (DNS down) is a
failed attempt, retried. HTTP(S) requests go through ``SourceOptions.http_proxy`` when given.
The URL goes to PyAV only; logs and errors name ``redact_url(url)``, and FFmpeg's error text
(which repeats the URL) is never passed on.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

import av
import av.error

from core.errors import CattleCounterError, StreamUnavailable
from core.netpolicy import pinned_rtsp_url, redact_url
from ml_engine.live.frames import DecodedFrame, Gap
from ml_engine.live.hls_clock import LiveEdge, fetch_live_edge
from ml_engine.live.pacing import MAX_WAIT_S, Pacer

log = logging.getLogger(__name__)


# FFmpeg probes a few seconds of a stream at open to learn its codecs; for RTSP the SDP says
# what it is, and that probing would deliver its buffered frames seconds late. ``nobuffer``
# hands each packet on at once.
_RTSP_SCHEMES = ("rtsp", "rtsps")
_RTSP_OPTIONS = {"fflags": "nobuffer", "analyzeduration": "0", "probesize": "32"}
# HLS starts three segments behind the live edge by default: start at the newest one. FFmpeg
# probes 5 s of a stream at open by default: for a live playlist that is waiting for the next
# segments to be published, and the frames probed then come late and in one burst. Half a
# second of the newest segment (which starts with a key frame) says what it holds.
_HLS_OPTIONS = {"live_start_index": "-1", "analyzeduration": "500000"}
# reading an HLS playlist for its dates may delay a connect by this much at most
_PLAYLIST_TIMEOUT_S = 2.0
# how often the decode thread asks ``should_stop`` at most (it may read a job record)
_STOP_CHECK_INTERVAL_S = 0.25


@dataclass(frozen=True)
class SourceOptions:
    read_timeout_s: float = 10.0  # no packet for this long: a stall, reconnect
    open_timeout_s: float = 10.0  # connecting (RTSP DESCRIBE/SETUP/PLAY, HLS playlist) may take this long
    backoff_initial_s: float = 1.0  # wait before the first reconnect; doubles after each failure
    backoff_max_s: float = 30.0
    max_reconnects: int | None = None  # failed reconnects in a row before giving up; None: for ever
    first_connect_attempts: int = 5  # a source that never worked fails after this many tries
    rtsp_transport: str = "tcp"  # "tcp" passes firewalls and loses nothing; "udp" is FFmpeg's default
    # the egress policy (the worker's: STREAM_ALLOWED_NETWORKS), asked before every connect and
    # reconnect: raises a CattleCounterError to refuse (transient: retried, as DNS may return);
    # returns the addresses it checked: an rtsp:// connection goes to the first of them
    check: Callable[[str], list[str]] | None = None
    # an HTTP proxy FFmpeg sends every HTTP(S) request through (HLS segments, keys, redirects):
    # the worker's core.egress_proxy, which checks each destination against the same policy
    http_proxy: str | None = None
    # how many requests that proxy has refused so far: a refused HLS segment is skipped by
    # FFmpeg, so the source posts a Gap (tracks must not bridge the missing footage)
    egress_refusals: Callable[[], int] | None = None
    # the stream has delivered before (a resumed run): reconnect as after a loss (max_reconnects)
    # from the first attempt, instead of failing after first_connect_attempts
    has_worked: bool = False
    # decoded frames waiting to be due (an HLS segment arrives whole) hold at most this much;
    # past it the oldest is handed out early. 128 MiB: 4 s of 1080p at 10 fps
    pacing_max_bytes: int = 128 << 20
    # the longest a frame waits to be due. None: 10 s for HLS (a segment is decoded in one
    # burst), 0 for RTSP (frames come as they are sent; spreading out the bunches a busy
    # machine makes would add latency to every frame after them)
    pacing_max_delay_s: float | None = None


class _Lost(Exception):
    """The current connection stopped delivering: ``reason`` says how (a Gap reason)."""

    def __init__(self, reason: str, last_frame_at: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.last_frame_at = last_frame_at  # None: the connection delivered no frame


class MediaClock:
    """A connection's media time: 0 at its first frame, then advanced by the frames' own
    timestamps. Where those are missing, go backwards or leap (RTP timestamps wrap after 13 h
    at 90 kHz; cameras reset their clocks) it advances by the wall clock instead, so it never
    stops or runs back."""

    MAX_STEP_S = 10.0  # a larger jump between two frames is a broken clock, not a pause

    def __init__(self) -> None:
        self.media_time = 0.0
        self._last_pts_time: float | None = None
        self._last_wall: float | None = None

    def tick(self, pts_time: float | None) -> float:
        wall = time.monotonic()
        if self._last_wall is not None:
            step = wall - self._last_wall
            if pts_time is not None and self._last_pts_time is not None:
                pts_step = pts_time - self._last_pts_time
                if 0.0 <= pts_step <= self.MAX_STEP_S:
                    step = pts_step
            self.media_time += step
        self._last_pts_time, self._last_wall = pts_time, wall
        return self.media_time


def _short_cause(exc: BaseException) -> str:
    """What went wrong, without FFmpeg's message (it repeats the URL, credentials and all)."""
    strerror = getattr(exc, "strerror", None)
    return str(strerror) if strerror else type(exc).__name__


class Reconnector:
    """The decode thread's loop: connect, read one connection into frames and gaps, reconnect
    (see the module's docstring). ``post_frame(frame, due_at)`` hands a frame, due at ``due_at``
    (``time.monotonic()``), to the consumer's side, ``post_gap`` a gap. ``closed`` is set when the source
    is closed, or here once ``should_stop`` says so (asked every ``_STOP_CHECK_INTERVAL_S`` at most).
    """

    def __init__(self, url: str, options: SourceOptions, closed: threading.Event, should_stop: Callable[[], bool],
                 post_frame: Callable[[DecodedFrame, float], None], post_gap: Callable[[Gap], None]) -> None:
        self._url = url
        self.redacted_url = redact_url(url)
        self._options = options
        self._closed = closed
        self._should_stop = should_stop
        self._post_frame, self._post_gap = post_frame, post_gap
        self.connections = 0  # connections that delivered frames
        self._last_stop_check = 0.0

    def run(self) -> None:
        """Connect and read until the source is closed or told to stop.

        Raises:
            StreamUnavailable: the source never worked, or its reconnects are spent, or the egress
                policy refused it.
        """
        options = self._options
        failures = 0  # connection attempts in a row that delivered no frame
        backoff = options.backoff_initial_s
        lost: tuple[float, str] | None = None  # (last frame's time, reason) while reconnecting
        while not self.stopping():
            try:
                self._stream(lost)
                return  # closed, or told to stop
            except _Lost as exc:
                if exc.last_frame_at is not None:  # this connection delivered: start over
                    failures, backoff = 0, options.backoff_initial_s
                    lost = (exc.last_frame_at, exc.reason)
                    log.warning("live source %s: %s; reconnecting", self.redacted_url, exc.reason)
                    continue  # at once: a camera that reset is usually back already
                failures += 1
                self._give_up_if_spent(failures, exc.reason)
                log.info("live source %s: connection attempt %d failed (%s); next in %.1f s",
                         self.redacted_url, failures, exc.reason, backoff)
                self._sleep(backoff)
                backoff = min(backoff * 2, options.backoff_max_s)

    def stopping(self) -> bool:
        """Whether to stop reading: the source was closed, or was told to stop."""
        if self._closed.is_set():
            return True
        now = time.monotonic()
        if now - self._last_stop_check >= _STOP_CHECK_INTERVAL_S:
            self._last_stop_check = now
            if self._should_stop():
                self._closed.set()
        return self._closed.is_set()

    def _give_up_if_spent(self, failures: int, reason: str) -> None:
        options = self._options
        worked = self.connections > 0 or options.has_worked
        if not worked and failures >= options.first_connect_attempts:
            raise StreamUnavailable(
                f"the stream {self.redacted_url} could not be read after {failures} attempts: {reason}")
        if worked and options.max_reconnects is not None and failures >= options.max_reconnects:
            raise StreamUnavailable(
                f"the stream {self.redacted_url} was lost and {failures} reconnect attempts failed: {reason}")

    def _sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self.stopping() and (remaining := deadline - time.monotonic()) > 0:
            self._closed.wait(min(remaining, _STOP_CHECK_INTERVAL_S))

    def _checked_url(self) -> str:
        """Ask the egress policy before a connect: the allowlist may have changed since the
        last one, and the host may resolve elsewhere now. A refusal ends the source; a
        transient failure (DNS down) is a failed attempt, retried with backoff. Returns the URL
        to open: for rtsp://, pinned to the first address checked (no fresh DNS answer)."""
        if self._options.check is None:
            return self._url
        try:
            addresses = self._options.check(self._url)
        except CattleCounterError as exc:
            if exc.transient:
                raise _Lost(f"error: {exc}") from None
            raise StreamUnavailable(f"the stream {self.redacted_url} is refused: {exc}") from None
        return pinned_rtsp_url(self._url, addresses)

    def _open(self, url: str) -> av.container.InputContainer:
        if urlsplit(self._url).scheme.lower() in _RTSP_SCHEMES:
            options = {**_RTSP_OPTIONS, "rtsp_transport": self._options.rtsp_transport}
        else:
            options = dict(_HLS_OPTIONS)
            if self._options.http_proxy:
                options["http_proxy"] = self._options.http_proxy
        started = time.monotonic()
        try:
            return av.open(url, options=options,
                           timeout=(self._options.open_timeout_s, self._options.read_timeout_s))
        except (av.error.FFmpegError, OSError) as exc:
            # PyAV's timeout interrupts the open, and FFmpeg's RTSP demuxer reports that as
            # "Invalid data" (HLS as an exit): past the timeout, whatever the error, it timed out
            if isinstance(exc, av.error.ExitError) or time.monotonic() - started >= self._options.open_timeout_s:
                raise _Lost(f"timed out: no video within {self._options.open_timeout_s:g} s") from None
            raise _Lost(f"error: {_short_cause(exc)}") from None

    def _stream(self, lost: tuple[float, str] | None) -> None:
        """One connection: read until it stops (raises _Lost) or the source is closed
        (returns). ``lost`` is the gap being reconnected across, posted with the first frame."""
        refusals = self._refusals()  # before the open: FFmpeg's probe may read segments already
        url = self._checked_url()  # nothing is requested before the policy has said yes
        edge_before = self._live_edge()
        container = self._open(url)
        captured_from = self._capture_anchor(edge_before)
        last_frame_at: float | None = None
        try:
            stream = container.streams.video[0] if container.streams.video else None
            if stream is None:
                raise _Lost("error: no video stream")
            connection = self.connections + 1
            clock = MediaClock()
            pacer = Pacer(self._pacing_max_delay_s())
            size: tuple[int, int] | None = None
            for packet in container.demux(stream):
                if self.stopping():
                    return
                if self._refusals() > refusals:  # FFmpeg skipped what was refused: no track may bridge it
                    refusals = self._refusals()
                    now = time.time()
                    self._post_gap(Gap(last_frame_at or now, now, "error: a request was refused by the egress policy"))
                for frame in self._decode(packet):
                    received_at = time.time()
                    if last_frame_at is None:  # frames flow: this connection counts
                        self.connections = connection
                        if lost is not None:
                            self._post_gap(Gap(lost[0], received_at, lost[1]))
                    elif (frame.width, frame.height) != size:
                        self._post_gap(Gap(received_at, received_at, "resolution_change"))
                    size = (frame.width, frame.height)
                    last_frame_at = received_at
                    media_time = clock.tick(frame.time)
                    captured_at = captured_from + media_time if captured_from is not None else None
                    decoded = DecodedFrame(frame, received_at, media_time, connection, captured_at)
                    self._post_frame(decoded, pacer.due_at(time.monotonic(), media_time))
            raise _Lost("ended", last_frame_at)
        except av.error.ExitError:  # the read timed out
            raise _Lost("stall", last_frame_at) from None
        except EOFError:
            raise _Lost("ended", last_frame_at) from None
        except (av.error.FFmpegError, OSError) as exc:
            raise _Lost(f"error: {_short_cause(exc)}", last_frame_at) from None
        finally:
            container.close()

    def _refusals(self) -> int:
        return self._options.egress_refusals() if self._options.egress_refusals else 0

    def _pacing_max_delay_s(self) -> float:
        if self._options.pacing_max_delay_s is not None:
            return self._options.pacing_max_delay_s
        return 0.0 if urlsplit(self._url).scheme.lower() in _RTSP_SCHEMES else MAX_WAIT_S

    def _live_edge(self) -> LiveEdge | None:
        """An HLS playlist's newest segment and its date, read beside FFmpeg (which skips the
        dates). Only through the egress proxy, or where no egress policy applies: this request
        must not go where FFmpeg's could not."""
        options = self._options
        if urlsplit(self._url).scheme.lower() not in ("http", "https"):
            return None
        if options.check is not None and not options.http_proxy:
            return None
        return fetch_live_edge(self._url, options.http_proxy, min(options.open_timeout_s, _PLAYLIST_TIMEOUT_S))

    def _capture_anchor(self, before: LiveEdge | None) -> float | None:
        """When this connection's first frame was taken (epoch seconds), or None: unknown.
        FFmpeg starts at the newest segment it saw; the playlist read before and after its
        open naming the same newest segment means that is the one."""
        if before is None or before.program_date_time is None:
            return None
        after = self._live_edge()
        if after is None or after.sequence != before.sequence:
            return None
        return before.program_date_time

    @staticmethod
    def _decode(packet: av.Packet) -> list[av.VideoFrame]:
        """The packet's frames; a corrupt packet (lost RTP data) is skipped, not the stream."""
        try:
            return [frame for frame in packet.decode() if isinstance(frame, av.VideoFrame)]
        except av.error.InvalidDataError:
            return []

