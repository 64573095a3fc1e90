"""An HTTP forward proxy on loopback that checks where every request of a stream goes.

Checking a stream's URL once is not enough for HLS: the playlist names the segments, the
variant playlists and the keys, any of them on another host, and any request may be
redirected (302) anywhere. FFmpeg follows all of that itself. So the worker runs this proxy
for each HTTP(S) stream and hands it to FFmpeg (its ``http_proxy`` option, which the HLS
demuxer passes on to every segment, playlist and key request it makes, redirects included):

- ``GET http://host:port/path``: the host is resolved and every address checked by the
  ``check`` it was given (``core.netpolicy.stream_addresses``: public, or inside
  STREAM_ALLOWED_NETWORKS); the request goes to a checked address (never a fresh DNS answer)
  with ``Connection: close``, so one connection carries one checked request;
- ``CONNECT host:port`` (https): the same check, then a tunnel to the checked address; what
  goes through it is TLS to that one host;
- anything refused is answered 403 and never leaves the machine; a name that does not
  resolve is a 502.

Not covered here: RTSP (its own protocol; the worker checks the host before every connect),
and a ``no_proxy`` environment variable, which makes FFmpeg bypass any proxy for the hosts it
names (the proxy logs a warning when it is set).
"""

from __future__ import annotations

import contextlib
import logging
import os
import selectors
import socket
import socketserver
import threading
from collections.abc import Callable
from urllib.parse import urlsplit

from core.errors import CattleCounterError

log = logging.getLogger(__name__)

MAX_HEAD = 64 * 1024  # request line and headers
IDLE_TIMEOUT_S = 60.0
MAX_WARNED = 100  # destinations whose refusal was logged as a warning (then: debug)  # a connection (or tunnel) with no traffic for this long is closed
_HOP_BY_HOP = {b"connection", b"keep-alive", b"proxy-connection", b"proxy-authorization", b"te", b"upgrade"}

Check = Callable[[str, int], list[str]]  # (host, port) -> addresses allowed, or raises CattleCounterError


class _Refused(Exception):
    def __init__(self, status: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status


class EgressProxy:
    """Start with ``start()`` (or ``with``); ``url`` is what FFmpeg's ``http_proxy`` takes.
    ``refusals`` counts the requests refused so far, ``last_refused`` names the latest
    (``host:port``): the source turns a new refusal into a gap."""

    def __init__(self, check: Check) -> None:
        self.check = check
        self.refusals = 0
        self.last_refused: str | None = None
        self._lock = threading.Lock()  # handlers run on threads of their own
        self._warned: set[str] = set()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.proxy = self
        self._thread = threading.Thread(target=self._server.serve_forever, name="egress-proxy", daemon=True)

    @property
    def url(self) -> str:
        port = self._server.server_address[1]
        return f"http://127.0.0.1:{port}/"

    def start(self) -> EgressProxy:
        if os.environ.get("no_proxy"):  # FFmpeg's http and tls read this one (lower case) themselves
            log.warning("no_proxy is set in the worker's environment: FFmpeg connects to the hosts it names "
                        "directly, without the stream egress checks; unset it on stream workers")
        self._thread.start()
        return self

    def close(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> EgressProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def connect(self, host: str, port: int) -> socket.socket:
        """A connection to a checked address of ``host``; raises _Refused."""
        try:
            addresses = self.check(host, port)
        except CattleCounterError as exc:
            destination = f"{host}:{port}"
            with self._lock:
                self.refusals += 1
                self.last_refused = destination
                first = destination not in self._warned and len(self._warned) < MAX_WARNED
                self._warned.add(destination)
            # once per destination: a playlist may name a refused host every segment, for days
            log.log(logging.WARNING if first else logging.DEBUG, "stream egress to %s refused: %s", destination, exc)
            raise _Refused("502 Bad Gateway" if exc.transient else "403 Forbidden", str(exc)) from None
        error: OSError | None = None
        for address in addresses:  # as a plain connect tries each address the name has
            try:
                return socket.create_connection((address, port), timeout=IDLE_TIMEOUT_S)
            except OSError as exc:
                error = exc
        raise _Refused("502 Bad Gateway", f"cannot connect to {host}:{port} ({error})")


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    proxy: EgressProxy


class _Handler(socketserver.BaseRequestHandler):
    server: _Server

    def handle(self) -> None:
        client: socket.socket = self.request
        client.settimeout(IDLE_TIMEOUT_S)
        try:
            head, rest = _read_head(client)
            method, target, headers = _parse_head(head)
            if method == b"CONNECT":
                host, port = _split_host_port(target.decode("ascii", "replace"), 443)
                upstream = self.server.proxy.connect(host, port)
                client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                _pipe(client, upstream, rest)
            else:
                host, port, path = _split_absolute_url(target.decode("ascii", "replace"))
                upstream = self.server.proxy.connect(host, port)
                upstream.sendall(_origin_request(method, path, headers) + rest)
                _pipe(client, upstream, b"")
        except _Refused as exc:
            _answer(client, exc.status, str(exc))
        except (OSError, ValueError) as exc:
            log.debug("egress proxy: %s", exc)
            with contextlib.suppress(OSError):
                _answer(client, "400 Bad Request", "not a proxy request")


def _read_head(client: socket.socket) -> tuple[bytes, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = client.recv(4096)
        if not chunk or len(data) > MAX_HEAD:
            raise ValueError("no complete request head")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest


def _parse_head(head: bytes) -> tuple[bytes, bytes, list[bytes]]:
    request_line, *headers = head.split(b"\r\n")
    method, target, _version = request_line.split(b" ", 2)
    return method.upper(), target, headers


def _split_host_port(authority: str, default_port: int) -> tuple[str, int]:
    parts = urlsplit(f"//{authority}")
    if not parts.hostname:
        raise ValueError("no host")
    return parts.hostname, parts.port or default_port


def _split_absolute_url(target: str) -> tuple[str, int, str]:
    """(host, port, origin-form path) of ``http://host[:port]/path?query``; only http: an
    https URL comes as CONNECT."""
    parts = urlsplit(target)
    if parts.scheme.lower() != "http" or not parts.hostname:
        raise _Refused("400 Bad Request", "only absolute http:// URLs (and CONNECT for https)")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return parts.hostname, parts.port or 80, path


def _origin_request(method: bytes, path: str, headers: list[bytes]) -> bytes:
    kept = [line for line in headers if line.split(b":", 1)[0].strip().lower() not in _HOP_BY_HOP]
    lines = [method + b" " + path.encode("ascii", "replace") + b" HTTP/1.1", *kept, b"Connection: close"]
    return b"\r\n".join(lines) + b"\r\n\r\n"


def _answer(client: socket.socket, status: str, reason: str) -> None:
    body = f"refused by the stream egress policy: {reason}\n".encode()
    client.sendall(f"HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}\r\n"
                   "Connection: close\r\n\r\n".encode() + body)


def _pipe(client: socket.socket, upstream: socket.socket, first: bytes) -> None:
    """Copy both ways until either side closes or both are idle for IDLE_TIMEOUT_S."""
    with upstream, selectors.DefaultSelector() as selector:
        if first:
            upstream.sendall(first)
        selector.register(client, selectors.EVENT_READ, upstream)
        selector.register(upstream, selectors.EVENT_READ, client)
        while True:
            ready = selector.select(IDLE_TIMEOUT_S)
            if not ready:
                return
            for key, _ in ready:
                data = key.fileobj.recv(65536)  # type: ignore[union-attr]
                if not data:
                    return
                key.data.sendall(data)
