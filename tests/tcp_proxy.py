"""A loopback TCP forwarder that a test can cut, hold and restore: a real network fault between
our processes and a real storage service (Azurite), with no mock on either side.

``cut`` fails fast (connections reset, as a vanished host's port answers); ``hold`` is the
slow kind: connections stay open and new ones are accepted, but nothing comes back, which is
how a frozen process, a hung storage front end or a network black hole looks."""

from __future__ import annotations

import contextlib
import socket
import threading


class TcpProxy:
    def __init__(self, upstream_port: int, host: str = "127.0.0.1") -> None:
        self._upstream = (host, upstream_port)
        self._listener = socket.create_server((host, 0))
        self.port = self._listener.getsockname()[1]
        self._cut = threading.Event()
        self._flowing = threading.Event()  # cleared while held
        self._flowing.set()
        self._closed = threading.Event()
        self._connections: set[socket.socket] = set()
        self._lock = threading.Lock()
        threading.Thread(target=self._accept_loop, daemon=True, name=f"proxy-{self.port}").start()

    def cut(self) -> None:
        """Drop every open connection and refuse new ones until ``restore``."""
        self._cut.set()
        with self._lock:
            for connection in self._connections:
                _close(connection)
            self._connections.clear()

    def hold(self) -> None:
        """Pass no more bytes either way until ``restore``; connections stay open and new ones
        are accepted, so callers wait for answers that do not come (what they hold back is
        delivered on ``restore``, as a resumed process would answer)."""
        self._flowing.clear()

    def restore(self) -> None:
        self._cut.clear()
        self._flowing.set()

    def close(self) -> None:
        self._closed.set()
        self.cut()
        self._flowing.set()  # held pipes wake up, find their sockets closed, and end
        _close(self._listener)

    def _accept_loop(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self._cut.is_set():
                _reset(client)
                continue
            try:
                upstream = socket.create_connection(self._upstream, timeout=5)
            except OSError:
                _reset(client)
                continue
            upstream.settimeout(None)  # the 5 s were for connecting: a quiet connection is no error
            with self._lock:
                self._connections.update((client, upstream))
            for source, target in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(source, target), daemon=True).start()

    def _pipe(self, source: socket.socket, target: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                self._flowing.wait()
                target.sendall(data)
            self._flowing.wait()  # a held peer does not hang up either
        except OSError:
            pass
        finally:
            _close(source)
            _close(target)
            with self._lock:
                self._connections.discard(source)
                self._connections.discard(target)


def _reset(connection: socket.socket) -> None:
    """Close with RST, as a vanished host's port would answer."""
    with contextlib.suppress(OSError):
        connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    _close(connection)


def _close(connection: socket.socket) -> None:
    with contextlib.suppress(OSError):
        connection.shutdown(socket.SHUT_RDWR)
    connection.close()


class ProxiedAzurite:
    """A TcpProxy in front of each of Azurite's three endpoints, and the connection string that
    goes through them: ``hold()``, ``cut()`` and ``restore()`` act on all three at once."""

    ENDPOINTS = ("BlobEndpoint", "QueueEndpoint", "TableEndpoint")

    def __init__(self, connection_string: str) -> None:
        parts = dict(part.split("=", 1) for part in connection_string.split(";") if part)
        self.proxies: list[TcpProxy] = []
        proxied = connection_string
        for name in self.ENDPOINTS:
            url = parts[name]  # http://127.0.0.1:<port>/<account>
            port = int(url.rsplit(":", 1)[1].split("/")[0])
            proxy = TcpProxy(port)
            self.proxies.append(proxy)
            through_proxy = url.replace(f":{port}/", f":{proxy.port}/")
            proxied = proxied.replace(f"{name}={url}", f"{name}={through_proxy}")
        self.connection_string = proxied

    def hold(self) -> None:
        for proxy in self.proxies:
            proxy.hold()

    def cut(self) -> None:
        for proxy in self.proxies:
            proxy.cut()

    def restore(self) -> None:
        for proxy in self.proxies:
            proxy.restore()

    def close(self) -> None:
        for proxy in self.proxies:
            proxy.close()
