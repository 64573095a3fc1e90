"""The stream egress policy on the wire: real HLS servers on two loopback addresses
(127.0.0.2 is loopback too on Linux), FFmpeg (PyAV) reading through core.egress_proxy, and an
allowlist of 127.0.0.1/32 only. A segment, or a redirect, that leads to 127.0.0.2 must never
arrive there (its access log says), and the source must show a gap, not bridge it; a
reconnect after the policy changed must not happen at all."""

from __future__ import annotations

import functools
import http.server
import re
import socket
import ssl
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import pytest

from core.backends import build_backends
from core.egress_proxy import EgressProxy
from core.errors import SourceHostUnresolved, StreamSourceNotAllowed, StreamUnavailable
from core.jobs import Job, JobKind, JobParams, JobStatus, StreamOptions, source_secret_path
from core.netpolicy import check_stream_url, pinned_rtsp_url, stream_addresses
from ml_engine.live import Gap, LiveFrame, LiveSource, SourceOptions
from tests.fixtures_hls import HlsCamera
from tests.fixtures_rtsp import FFMPEG, HlsStream, RtspServer
from tests.waiting import wait_until
from worker.models import DetectorCache
from worker.runner import Outcome
from worker.streams import StreamRunner

ALLOWED = ["127.0.0.1/32"]
FAST = SourceOptions(read_timeout_s=3.0, open_timeout_s=3.0, backoff_initial_s=0.1, backoff_max_s=0.3)
TIMEOUT_S = 20.0


@dataclass
class Server:
    """A threaded HTTP file server with an access log; ``/redirect/NAME`` answers 302 to
    ``redirect_to`` + NAME; ``/cross.m3u8`` is the live ``index.m3u8`` with every third segment's URI
    pointing at ``cross_to`` (another host)."""

    host: str
    directory: Path
    log: list[str] = field(default_factory=list)
    redirect_to: str = ""
    cross_to: str = ""
    tls: ssl.SSLContext | None = None  # https with this context

    def __post_init__(self) -> None:
        server = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                server.log.append(self.path)

            def do_GET(self) -> None:
                if self.path.startswith("/redirect"):
                    server.log.append(self.path)
                    self.send_response(302)
                    self.send_header("Location", server.redirect_to + self.path.removeprefix("/redirect/"))
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if self.path == "/cross.m3u8":
                    server.log.append(self.path)
                    body = server.crossed_playlist().encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "application/vnd.apple.mpegurl")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                super().do_GET()

        self.httpd = http.server.ThreadingHTTPServer((self.host, 0),
                                                     functools.partial(Handler, directory=str(self.directory)))
        if self.tls is not None:
            self.httpd.socket = self.tls.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def crossed_playlist(self) -> str:
        return re.sub(r"^index(\d*[147])\.ts$", lambda found: f"{self.cross_to}index{found.group(1)}.ts",
                      (self.directory / "index.m3u8").read_text(), flags=re.MULTILINE)

    def url(self, path: str) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}/{path}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def segments(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 3-segment VOD playlist of ffmpeg's test pattern (index0.ts .. index2.ts, 1 s each)."""
    if not Path(FFMPEG).exists():
        pytest.skip(f"{FFMPEG} is missing: install Debian's ffmpeg (make rtsp)")
    directory = tmp_path_factory.mktemp("hls")
    subprocess.run([FFMPEG, "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i",
                    "testsrc2=size=160x120:rate=10", "-t", "3", "-c:v", "libx264", "-preset", "ultrafast",
                    "-g", "10", "-f", "hls", "-hls_time", "1", "-hls_list_size", "0", "-hls_playlist_type", "vod",
                    str(directory / "index.m3u8")], check=True, timeout=60)
    return directory


@pytest.fixture
def servers(segments: Path) -> Iterator[tuple[Server, Server]]:
    allowed, other = Server("127.0.0.1", segments), Server("127.0.0.2", segments)
    yield allowed, other
    allowed.close()
    other.close()


@pytest.fixture
def proxy() -> Iterator[EgressProxy]:
    with EgressProxy(functools.partial(stream_addresses, allowed_networks=ALLOWED)) as running:
        yield running


def playlist_with(segments: Path, name: str, second_segment: str) -> str:
    text = (segments / "index.m3u8").read_text().replace("index1.ts", second_segment)
    (segments / name).write_text(text)
    return name


def policed(proxy: EgressProxy, check: Callable[[str], object] | None = None) -> SourceOptions:
    return SourceOptions(**{**FAST.__dict__, "http_proxy": proxy.url, "egress_refusals": lambda: proxy.refusals,
                            "check": check or functools.partial(check_stream_url, allowed_networks=ALLOWED)})


def read_until_refused(source: LiveSource, frames_before: int = 1) -> tuple[list[LiveFrame], Gap]:
    """Frames until a refusal gap that follows at least ``frames_before`` frames."""
    frames: list[LiveFrame] = []
    found: list[Gap] = []

    def refused_after_frames() -> bool:
        item = source.next(0.5)
        if isinstance(item, LiveFrame):
            frames.append(item)
        elif isinstance(item, Gap) and "refused" in item.reason and len(frames) >= frames_before:
            found.append(item)
        return bool(found)

    wait_until(refused_after_frames, TIMEOUT_S, "a gap from the refused request")
    return frames, found[0]


def test_without_the_proxy_ffmpeg_fetches_a_segment_from_any_host(segments, servers) -> None:
    """The hole the proxy closes (if this fails, FFmpeg stopped following such URIs)."""
    allowed, other = servers
    name = playlist_with(segments, "vod-cross.m3u8", other.url("index1.ts"))
    with LiveSource(allowed.url(name), FAST) as source:
        wait_until(lambda: source.next(0.5) is not None and "/index1.ts" in other.log, TIMEOUT_S,
                   "FFmpeg fetching the other host's segment")


def test_a_live_segment_on_a_refused_host_is_never_fetched_and_leaves_a_gap(hls_stream: HlsStream, proxy) -> None:
    """A live playlist (ffmpeg writing it now) whose every third segment is on 127.0.0.2: the
    source reads the others, never reaches 127.0.0.2, and a gap separates the frames on
    either side of each refused segment."""
    allowed, other = Server("127.0.0.1", hls_stream.directory), Server("127.0.0.2", hls_stream.directory)
    allowed.cross_to = other.url("")
    try:
        with LiveSource(allowed.url("cross.m3u8"), policed(proxy)) as source:
            frames, gap = read_until_refused(source, frames_before=5)
            after = [item for item in (source.next(5.0) for _ in range(5)) if isinstance(item, LiveFrame)]
    finally:
        allowed.close()
        other.close()
    assert gap.reason == "error: a request was refused by the egress policy"
    assert gap.started_at <= gap.ended_at and frames[-1].received_at <= gap.ended_at
    assert after, "frames go on after the refused segment"
    assert other.log == [], "no request may arrive at 127.0.0.2"
    assert proxy.last_refused == f"127.0.0.2:{other.port}"
    assert any(path.startswith("/index") for path in allowed.log)  # the allowed segments went through


def test_a_redirect_to_a_refused_host_is_not_followed(hls_stream: HlsStream, proxy) -> None:
    """Every third live segment is a 302 from the allowed host to 127.0.0.2: never followed."""
    allowed, other = Server("127.0.0.1", hls_stream.directory), Server("127.0.0.2", hls_stream.directory)
    allowed.cross_to, allowed.redirect_to = allowed.url("redirect/"), other.url("")
    try:
        with LiveSource(allowed.url("cross.m3u8"), policed(proxy)) as source:
            _, gap = read_until_refused(source, frames_before=5)
    finally:
        allowed.close()
        other.close()
    assert any(path.startswith("/redirect/") for path in allowed.log)  # the 302 was given ...
    assert other.log == [], "... and not followed to 127.0.0.2"
    assert gap.reason == "error: a request was refused by the egress policy"


def test_a_playlist_on_a_refused_host_is_refused_before_any_connect(segments, servers, proxy) -> None:
    _, other = servers
    with LiveSource(other.url("index.m3u8"), policed(proxy)) as source, \
            pytest.raises(StreamUnavailable, match="is refused: .*STREAM_ALLOWED_NETWORKS"):
        source.next(TIMEOUT_S)
    assert other.log == []


def test_a_reconnect_is_checked_again_and_refused_once_the_policy_refuses(segments, servers, proxy) -> None:
    """The VOD playlist ends after 3 s, so the source reconnects: by then the policy (e.g. a
    changed allowlist, or a host that resolves elsewhere now) refuses, and no request is made."""
    allowed, _ = servers
    calls: list[str] = []
    requested_before_refusal: list[str] = []

    def check(url: str) -> None:
        calls.append(url)
        if len(calls) > 1:
            requested_before_refusal.extend(allowed.log)
            raise StreamSourceNotAllowed("source_url: '127.0.0.1' is outside STREAM_ALLOWED_NETWORKS now")

    with LiveSource(allowed.url("index.m3u8"), policed(proxy, check)) as source, \
            pytest.raises(StreamUnavailable, match="is refused"):
        wait_until(lambda: source.next(0.5) is None and False, TIMEOUT_S, "the refusal")
    assert len(calls) == 2
    assert "/index.m3u8" in requested_before_refusal
    # the source reads the playlist beside FFmpeg for its dates: still, nothing after the refusal
    assert allowed.log == requested_before_refusal, "no second connection to the refused source"


def test_the_playlist_is_read_for_its_dates_through_the_proxy_only(hls_camera: HlsCamera, proxy) -> None:
    """The source reads an HLS playlist beside FFmpeg for EXT-X-PROGRAM-DATE-TIME: through the
    proxy, so it checks that request too; where a policy applies and no proxy is given, the
    request is not made at all (the frames have no capture time)."""
    with LiveSource(hls_camera.url, policed(proxy)) as source:
        frame = wait_until(lambda: source.next(0.5), TIMEOUT_S, "a frame")
    assert isinstance(frame, LiveFrame) and frame.captured_at is not None
    unproxied = SourceOptions(**{**policed(proxy).__dict__, "http_proxy": None})
    with LiveSource(hls_camera.url, unproxied) as source:
        frame = wait_until(lambda: source.next(0.5), TIMEOUT_S, "a frame")
    assert isinstance(frame, LiveFrame) and frame.captured_at is None


def test_a_dns_failure_at_a_connect_is_retried_not_final(segments, servers, proxy) -> None:
    allowed, _ = servers
    calls: list[str] = []

    def check(url: str) -> None:
        calls.append(url)
        if len(calls) <= 2:
            raise SourceHostUnresolved("source_url: cannot resolve host 'camera.example'")

    with LiveSource(allowed.url("index.m3u8"), policed(proxy, check)) as source:
        wait_until(lambda: isinstance(source.next(0.5), LiveFrame), TIMEOUT_S, "frames after DNS came back")
    assert len(calls) >= 3


def test_the_proxy_refuses_a_connect_tunnel_to_a_refused_host_and_tunnels_an_allowed_one(servers, proxy) -> None:
    allowed, other = servers
    proxy_port = int(proxy.url.rsplit(":", 1)[1].strip("/"))
    with socket.create_connection(("127.0.0.1", proxy_port), timeout=5) as client:
        client.sendall(f"CONNECT 127.0.0.2:{other.port} HTTP/1.1\r\nHost: 127.0.0.2\r\n\r\n".encode())
        assert client.recv(1024).startswith(b"HTTP/1.1 403")
    with socket.create_connection(("127.0.0.1", proxy_port), timeout=5) as client:
        client.sendall(f"CONNECT 127.0.0.1:{allowed.port} HTTP/1.1\r\n\r\n".encode())
        assert client.recv(1024).startswith(b"HTTP/1.1 200")
        client.sendall(b"GET /index.m3u8 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        answer = b""
        while chunk := client.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.0 200") and b"#EXTM3U" in answer
    assert other.log == []



def test_an_rtsp_connection_goes_to_the_address_the_check_returned(rtsp_server: RtspServer) -> None:
    """The URL names 127.0.0.2, where nothing listens; the check answers 127.0.0.1, where the
    camera is: frames prove FFmpeg connected to the checked address, not to a fresh lookup."""
    url = f"rtsp://viewer:pw@127.0.0.2:{rtsp_server.port}/cam"
    assert pinned_rtsp_url(url, ["127.0.0.1"]) == f"rtsp://viewer:pw@127.0.0.1:{rtsp_server.port}/cam"
    assert pinned_rtsp_url("rtsps://cam.example/x", ["10.0.0.1"]) == "rtsps://cam.example/x"  # TLS keeps its name
    options = SourceOptions(**{**FAST.__dict__, "check": lambda _url: ["127.0.0.1"]})
    with LiveSource(url, options) as source:
        wait_until(lambda: isinstance(source.next(0.5), LiveFrame), TIMEOUT_S, "a frame from the pinned address")



@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> ssl.SSLContext:
    """A server context with a self-signed certificate (FFmpeg does not verify by default)."""
    directory = tmp_path_factory.mktemp("tls")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test",
                    "-keyout", str(directory / "key.pem"), "-out", str(directory / "cert.pem")],
                   check=True, capture_output=True, timeout=60)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(directory / "cert.pem", directory / "key.pem")
    return context


def test_https_goes_through_the_proxy_as_connect_and_a_refused_host_gets_no_tunnel(
        segments: Path, tls: ssl.SSLContext, proxy: EgressProxy) -> None:
    """FFmpeg tunnels https through ``http_proxy`` with CONNECT, segments included."""
    allowed, other = Server("127.0.0.1", segments, tls=tls), Server("127.0.0.2", segments, tls=tls)
    try:
        name = playlist_with(segments, "tls-cross.m3u8", other.url("index1.ts"))
        with LiveSource(allowed.url(name), policed(proxy)) as source:
            _, gap = read_until_refused(source, frames_before=0)
    finally:
        allowed.close()
        other.close()
    assert gap.reason == "error: a request was refused by the egress policy"
    assert f"/{name}" in allowed.log  # the allowed host was reached, through the tunnel
    assert other.log == [] and proxy.last_refused == f"127.0.0.2:{other.port}"


# --- the worker ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("host", "outcome", "status"), [
    ("no-such-camera.invalid", Outcome.RETRY, JobStatus.QUEUED),  # DNS down, or not yet: retried
    ("10.9.8.7", Outcome.DONE, JobStatus.FAILED),  # outside STREAM_ALLOWED_NETWORKS: final
])
def test_the_workers_recheck_retries_a_dns_failure_and_fails_a_refused_source(
        make_settings, tmp_path: Path, host: str, outcome: Outcome, status: JobStatus) -> None:
    settings = make_settings("local", stream_allowed_networks=["127.0.0.1/32"])
    backends = build_backends(settings)
    try:
        job = backends.jobs.create(Job(id="0000stream" + "0" * 16, kind=JobKind.STREAM,
                                       input_blob=source_secret_path("x"), params=JobParams(),
                                       stream=StreamOptions(), status=JobStatus.PROCESSING, attempts=1))
        backends.blobs.upload_stream(source_secret_path(job.id), [f"rtsp://viewer:pw@{host}/cam".encode()])
        runner = StreamRunner(settings, backends, DetectorCache(settings), threading.Event(), tmp_path)
        keeper = SimpleNamespace(lost=threading.Event())  # the lease stays ours: no renewals needed
        assert runner._process_and_record(job, 1, keeper) is outcome  # noqa: SLF001 - one run, no queue
        assert backends.jobs.get(job.id).status is status
    finally:
        backends.close()
