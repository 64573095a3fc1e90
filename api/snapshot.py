"""One frame of a live stream, as a JPEG, for drawing counting lines on before the stream starts.

The API connects to the camera here, so the connection passes the egress policy a stream job
passes: the URL was checked as ``POST /streams`` checks it (``check_stream_request``), an
rtsp:// connection goes to the address that check returned (no second DNS answer), and every
HTTP(S) request of an HLS source (playlist, segments, redirects) goes through the worker's
checking proxy (``core.egress_proxy``). The open is bounded by the stream source's open
timeout, the whole snapshot by a deadline, and only a few run at once in one API process.
Nothing said back repeats the URL: FFmpeg's messages quote it, so they are never passed on.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from fractions import Fraction
from urllib.parse import urlsplit

import av
import av.error

from core.egress_proxy import EgressProxy
from core.errors import StreamUnavailable, TooManySnapshots
from core.netpolicy import check_stream_url, pinned_rtsp_url, redact_url, stream_addresses

OPEN_TIMEOUT_S = 10.0  # as a stream's source (ml_engine.live.SourceOptions.open_timeout_s)
DEADLINE_S = 20.0  # open, then packets until one decodes into a picture
MAX_SNAPSHOTS_AT_ONCE = 4  # snapshots in flight per API process: each holds a thread and a connection
JPEG_QUALITY = "3"  # mjpeg's qscale: 2 (best) to 31
_RTSP_OPTIONS = {"rtsp_transport": "tcp", "fflags": "nobuffer"}
_HLS_OPTIONS = {"live_start_index": "-1"}  # the newest segment: what the camera shows now

_in_flight = threading.BoundedSemaphore(MAX_SNAPSHOTS_AT_ONCE)


def take_snapshot(url: str, allowed_networks: list[str], read_timeout_s: float) -> bytes:
    """The stream's next picture as JPEG bytes, at the source's own size.

    Raises:
        TooManySnapshots: MAX_SNAPSHOTS_AT_ONCE snapshots are already being taken here.
        InvalidInput, StreamSourceNotAllowed, SourceHostUnresolved: the policy refused the URL.
        StreamUnavailable: the camera did not answer, or sent no picture, within the limits.
    """
    if not _in_flight.acquire(blocking=False):
        raise TooManySnapshots(f"{MAX_SNAPSHOTS_AT_ONCE} snapshots are being taken already; try again in a few seconds")
    try:
        addresses = check_stream_url(url, allowed_networks)  # again: DNS may answer differently now
        with _ffmpeg_options(url, allowed_networks) as options:
            return _first_picture(pinned_rtsp_url(url, addresses), redact_url(url), options, read_timeout_s)
    finally:
        _in_flight.release()


@contextmanager
def _ffmpeg_options(url: str, allowed_networks: list[str]) -> Iterator[dict[str, str]]:
    """FFmpeg's options for the source; for HTTP(S), with the checking proxy running."""
    if urlsplit(url).scheme.lower() in ("rtsp", "rtsps"):
        yield dict(_RTSP_OPTIONS)
        return
    with EgressProxy(functools.partial(stream_addresses, allowed_networks=allowed_networks)) as proxy:
        yield {**_HLS_OPTIONS, "http_proxy": proxy.url}


def _first_picture(url: str, shown: str, options: dict[str, str], read_timeout_s: float) -> bytes:
    started = time.monotonic()
    try:
        container = av.open(url, options=options, timeout=(OPEN_TIMEOUT_S, min(read_timeout_s, DEADLINE_S)))
    except (av.error.FFmpegError, OSError) as exc:
        raise StreamUnavailable(f"no picture from {shown}: {_open_failure(exc, started)}") from None
    try:
        if not container.streams.video:
            raise StreamUnavailable(f"no picture from {shown}: the stream has no video")
        for packet in container.demux(container.streams.video[0]):
            for frame in packet.decode():
                return jpeg(frame)
            if time.monotonic() - started > DEADLINE_S:
                break
    except (av.error.FFmpegError, OSError):
        pass  # a read that timed out or a connection cut: no picture, said below
    finally:
        container.close()
    raise StreamUnavailable(f"no picture from {shown} within {DEADLINE_S:g} s")


def _open_failure(exc: BaseException, started: float) -> str:
    """Why the open failed, without FFmpeg's message (it quotes the URL, credentials and all).
    PyAV's timeout interrupts the open, which FFmpeg reports as anything ("Invalid data", an exit)."""
    if isinstance(exc, av.error.ExitError) or time.monotonic() - started >= OPEN_TIMEOUT_S:
        return f"timed out: no video within {OPEN_TIMEOUT_S:g} s"
    strerror = getattr(exc, "strerror", None)
    return str(strerror) if strerror else type(exc).__name__


def jpeg(frame: av.VideoFrame) -> bytes:
    """``frame`` as one baseline JPEG of the same size."""
    encoder = av.CodecContext.create("mjpeg", "w")
    encoder.width, encoder.height = frame.width, frame.height
    encoder.pix_fmt = "yuvj420p"
    encoder.time_base = Fraction(1, 1)
    encoder.options = {"qmin": JPEG_QUALITY, "qmax": JPEG_QUALITY}
    packets = encoder.encode(frame.reformat(format="yuvj420p")) + encoder.encode(None)
    return b"".join(bytes(packet) for packet in packets)
