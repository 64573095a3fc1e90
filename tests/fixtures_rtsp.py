"""A real RTSP server (``tests/rtsp_server.py``, GStreamer) as a process the tests control.

Fixtures and helpers (registered in tests/conftest.py):

- ``rtsp_server``: one function-scoped server of the synthetic live pattern, 160x120 at 10 fps,
  a key frame every 0.5 s. ``rtsp_server.url`` is ``rtsp://127.0.0.1:PORT/cam``.
- ``rtsp_server_factory(**options)``: start more, or other, servers in a test, e.g.
  ``rtsp_server_factory(video=VTEST_PATH, fps=100, width=320, height=240)`` (a looped file sent
  at 100 fps) or ``rtsp_server_factory(resize_after=2, resize="320x240")`` (the frame size
  changes mid-stream). Options: width, height, fps, gop_s, video, resize_after, resize, port.
  Every server started is stopped when the test ends.
- ``RtspServer``: ``.url``, ``.port``, ``.kill()`` (SIGKILL, as a camera or its power dies: no
  end-of-stream sent), ``.restart(**changed_options)`` (start again on the same port and wait
  until it listens), ``.pause()``/``.resume()`` (SIGSTOP/SIGCONT: the connection stays open but
  nothing comes, a stall), ``.stop()`` (clean shutdown), ``.log()``.
- ``start_rtsp_server(log_dir, **options)``: the same outside pytest's fixtures (the bench).
- ``rtsp_unavailable_reason()``: why the server cannot run here, or None.
- ``hls_stream``: an HLS live playlist, ``hls_stream.url`` = ``http://127.0.0.1:PORT/index.m3u8``:
  Debian's ffmpeg encodes a 160x120 10 fps test pattern into 1 s segments (the last 6 listed,
  older ones deleted) and ``python -m http.server`` serves them. ``.stop()`` ends both. Skips
  without ``/usr/bin/ffmpeg`` (fails on CI).
- ``silent_server``: a loopback TCP server that accepts and never answers (``.url("rtsp")``);
  ``dead_segments_playlist``: an HLS live playlist whose segments are on a port that refuses
  connections (``.url``). Sources that never deliver a frame; no GStreamer or ffmpeg needed.

The server runs under Debian's ``/usr/bin/python3`` (``RTSP_PYTHON`` overrides): only it has
``gi`` and GStreamer's RTSP server. Without them the fixtures skip with the reason (``make rtsp``
installs them), and fail instead when CI=true. Readiness is polled with a deadline: the
server's ``READY`` line, then a TCP connect.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.waiting import answers, wait_until

REPO = Path(__file__).resolve().parent.parent
SERVER_SCRIPT = REPO / "tests" / "rtsp_server.py"
RTSP_PYTHON = os.environ.get("RTSP_PYTHON", "/usr/bin/python3")
START_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 5.0
_READY = re.compile(rb"^READY (rtsp://\S+)$", re.MULTILINE)

DEFAULT_OPTIONS: dict[str, Any] = {"width": 160, "height": 120, "fps": 10, "gop_s": 0.5}


@functools.cache
def rtsp_unavailable_reason() -> str | None:
    """None when ``RTSP_PYTHON`` can import GStreamer's RTSP server, else why not."""
    probe = ("import gi; gi.require_version('Gst', '1.0'); gi.require_version('GstRtspServer', '1.0'); "
             "from gi.repository import Gst, GstRtspServer; Gst.init(None); "
             "assert Gst.ElementFactory.find('x264enc'), 'x264enc (gstreamer1.0-plugins-ugly) is missing'")
    try:
        result = subprocess.run([RTSP_PYTHON, "-c", probe], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{RTSP_PYTHON} cannot run ({exc})"
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["?"])[-1]
        return (f"{RTSP_PYTHON} cannot import GStreamer's RTSP server ({last}): "
                "install the Debian packages with `make rtsp`")
    return None


def require_rtsp() -> None:
    """Skip the test (fail it on CI) when the RTSP server cannot run here."""
    reason = rtsp_unavailable_reason()
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)


def _server_argv(options: dict[str, Any]) -> list[str]:
    argv = [RTSP_PYTHON, str(SERVER_SCRIPT)]
    for name, value in options.items():
        if value is not None:
            argv += [f"--{name.replace('_', '-')}", str(value)]
    return argv


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


@dataclass
class RtspServer:
    """One ``tests/rtsp_server.py`` process; see the module docstring."""

    log_dir: Path
    options: dict[str, Any]
    port: int = 0
    url: str = ""
    starts: int = 0
    _popen: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def log_path(self) -> Path:
        return self.log_dir / f"rtsp-server-{id(self)}-{self.starts}.log"

    def log(self) -> str:
        return "\n".join(self.log_dir.joinpath(f"rtsp-server-{id(self)}-{n}.log").read_text(errors="replace")
                         for n in range(1, self.starts + 1))

    def start(self) -> None:
        """Start the process (on ``self.port``; 0 the first time: a free port) and wait until
        it listens."""
        self.starts += 1
        with self.log_path().open("wb") as log:
            self._popen = subprocess.Popen(_server_argv({**self.options, "port": self.port}), cwd=REPO,
                                           stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            self._wait_ready(self._popen)
        except BaseException:
            self.kill()  # never leave a half-started server behind
            raise

    def _wait_ready(self, popen: subprocess.Popen[bytes]) -> None:
        ready = wait_until(lambda: _READY.search(self.log_path().read_bytes()) or popen.poll() is not None,
                           START_TIMEOUT_S, "the RTSP server's READY line")
        if popen.poll() is not None:
            raise AssertionError(f"the RTSP server exited ({popen.returncode}):\n{self.log()}")
        assert isinstance(ready, re.Match)
        self.url = ready.group(1).decode()
        self.port = int(self.url.rsplit(":", 1)[1].split("/", 1)[0])
        wait_until(lambda: _port_open(self.port), START_TIMEOUT_S, f"the RTSP server on port {self.port}")

    def kill(self) -> None:
        """SIGKILL: the connection drops without an RTSP TEARDOWN or end-of-stream."""
        if self._popen is not None and self._popen.poll() is None:
            os.killpg(self._popen.pid, signal.SIGKILL)
            self._popen.wait(STOP_TIMEOUT_S)

    def pause(self) -> None:
        """SIGSTOP: the connection stays open but nothing comes (a stalled camera)."""
        if self.running:
            os.killpg(self._popen.pid, signal.SIGSTOP)  # type: ignore[union-attr]

    def resume(self) -> None:
        """SIGCONT after ``pause``."""
        if self.running:
            os.killpg(self._popen.pid, signal.SIGCONT)  # type: ignore[union-attr]

    def restart(self, **changed: Any) -> None:
        """Start again on the same port (killing it first if it still runs), e.g. with another size."""
        self.kill()
        self.options.update(changed)
        self.start()

    def stop(self) -> None:
        """SIGTERM (the server quits its main loop), SIGKILL if it has not ended in time."""
        if self._popen is None or self._popen.poll() is not None:
            return
        self.resume()  # a paused process would not see SIGTERM
        self._popen.send_signal(signal.SIGTERM)
        try:
            self._popen.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.kill()

    @property
    def running(self) -> bool:
        return self._popen is not None and self._popen.poll() is None


def start_rtsp_server(log_dir: Path, **options: Any) -> RtspServer:
    """Start a server with ``DEFAULT_OPTIONS`` overridden by ``options`` (see rtsp_server.py's --help)."""
    port = int(options.pop("port", 0))
    server = RtspServer(log_dir, {**DEFAULT_OPTIONS, **options}, port=port)
    server.start()
    return server


@pytest.fixture
def rtsp_server_factory(tmp_path: Path) -> Iterator[Callable[..., RtspServer]]:
    require_rtsp()
    servers: list[RtspServer] = []

    def start(**options: Any) -> RtspServer:
        server = start_rtsp_server(tmp_path, **options)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def rtsp_server(rtsp_server_factory: Callable[..., RtspServer]) -> RtspServer:
    return rtsp_server_factory()


# --- HLS: ffmpeg writes a live playlist, http.server serves it --------------------------------

FFMPEG = os.environ.get("FFMPEG", "/usr/bin/ffmpeg")


@dataclass
class HlsStream:
    url: str
    directory: Path
    processes: list[subprocess.Popen[bytes]]

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(STOP_TIMEOUT_S)


def start_hls_stream(directory: Path, width: int = 160, height: int = 120, fps: int = 10) -> HlsStream:
    """ffmpeg's live test pattern as HLS (a key frame per second, so each 1 s segment starts
    with one), served over HTTP on a free port."""
    segments = directory / "hls"
    segments.mkdir()
    with (directory / "hls.log").open("wb") as log:  # the children keep their own descriptors
        return _start_hls(segments, log, width, height, fps)


def _start_hls(segments: Path, log: Any, width: int, height: int, fps: int) -> HlsStream:
    port = _free_port()
    encoder = subprocess.Popen(
        [FFMPEG, "-hide_banner", "-loglevel", "error", "-re", "-f", "lavfi",
         "-i", f"testsrc2=size={width}x{height}:rate={fps}", "-c:v", "libx264", "-preset", "ultrafast",
         "-tune", "zerolatency", "-g", str(fps), "-f", "hls", "-hls_time", "1", "-hls_list_size", "6",
         "-hls_flags", "delete_segments+omit_endlist+independent_segments", str(segments / "index.m3u8")],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    http = subprocess.Popen([sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port),
                             "--directory", str(segments)],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    stream = HlsStream(f"http://127.0.0.1:{port}/index.m3u8", segments, [encoder, http])
    try:
        wait_until(lambda: answers(stream.url), START_TIMEOUT_S, "the HLS playlist")
    except BaseException:
        stream.stop()
        raise
    return stream


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def hls_stream(tmp_path: Path) -> Iterator[HlsStream]:
    if not Path(FFMPEG).exists():
        message = f"{FFMPEG} is missing: install Debian's ffmpeg (make rtsp) for the HLS tests"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    stream = start_hls_stream(tmp_path)
    yield stream
    stream.stop()


# --- sources that never deliver a frame ------------------------------------------------------


class SilentServer:
    """A loopback TCP server that accepts every connection and never answers: a camera (or a
    black-holing middlebox) that hangs after the TCP handshake. ``url(scheme)`` names it;
    ``accepted`` counts the connections taken."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._held: list[socket.socket] = []  # kept open (and unread) until close()
        self._closed = threading.Event()
        threading.Thread(target=self._accept_loop, daemon=True, name=f"silent-{self.port}").start()

    @property
    def accepted(self) -> int:
        return len(self._held)

    def url(self, scheme: str = "rtsp") -> str:
        return f"{scheme}://127.0.0.1:{self.port}/cam"

    def _accept_loop(self) -> None:
        while not self._closed.is_set():
            try:
                connection, _ = self._listener.accept()
            except OSError:
                return
            self._held.append(connection)

    def close(self) -> None:
        self._closed.set()
        for connection in [self._listener, *self._held]:
            with contextlib.suppress(OSError):
                connection.close()


class DeadSegmentsPlaylist:
    """An HLS live playlist that answers, whose segments all live on a port that refuses
    connections: ``url``. The sequence moves on every second, as a live playlist's does."""

    def __init__(self) -> None:
        refused_port = _free_port()  # nothing listens there

        class Playlist(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                sequence = int(time.time())
                lines = ["#EXTM3U", "#EXT-X-VERSION:3", "#EXT-X-TARGETDURATION:1", f"#EXT-X-MEDIA-SEQUENCE:{sequence}"]
                for number in range(sequence, sequence + 3):
                    lines += ["#EXTINF:1.0,", f"http://127.0.0.1:{refused_port}/seg-{number}.ts"]
                body = ("\n".join(lines) + "\n").encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/vnd.apple.mpegurl")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
                return None

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Playlist)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/index.m3u8"
        threading.Thread(target=self._server.serve_forever, daemon=True, name="dead-segments").start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def silent_server() -> Iterator[SilentServer]:
    server = SilentServer()
    yield server
    server.close()


@pytest.fixture
def dead_segments_playlist() -> Iterator[DeadSegmentsPlaylist]:
    playlist = DeadSegmentsPlaylist()
    yield playlist
    playlist.close()
