"""Job webhooks: POST the final job record to the user's ``callback_url``, signed.

The body is signed with HMAC-SHA256 over the raw bytes (header ``X-Signature:
sha256=<hex>``) using WEBHOOK_SECRET, so receivers can check it came from us. Deliveries
are retried with exponential backoff on a small thread pool; a failing webhook is
counted and logged but never fails the job.

Only http/https URLs are accepted, and URLs whose host resolves to a loopback, private,
link-local or otherwise non-public address are refused (server-side request forgery)
unless WEBHOOK_ALLOW_PRIVATE=true. The request then goes to the very addresses that were
checked, never to a fresh DNS answer (DNS rebinding).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import socket
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from urllib.parse import urlsplit

import httpx

from core import metrics
from core.config import Settings
from core.errors import InvalidInput

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Signature"
EVENT_HEADER = "X-CattleCounter-Event"


def sign(body: bytes, secret: str) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(body: bytes, secret: str, signature: str) -> bool:
    """For receivers (and tests): constant-time check of an X-Signature header."""
    return hmac.compare_digest(sign(body, secret), signature)


def check_callback_url(url: str, allow_private: bool) -> list[str]:
    """Raise InvalidInput unless ``url`` is http(s), resolves, and (unless allowed) resolves
    to public addresses only. Returns the addresses to connect to: the ones checked here, so
    a DNS answer that changes afterwards (DNS rebinding) cannot send the request elsewhere."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput(f"callback_url: only http and https URLs are allowed, got {url!r}")
    try:
        port = parts.port or 443
        infos = socket.getaddrinfo(parts.hostname, port, proto=socket.IPPROTO_TCP)
    except socket.gaierror:
        raise InvalidInput(f"callback_url: cannot resolve host {parts.hostname!r}") from None
    except (UnicodeError, ValueError):  # IDNA: a label over 63 characters, an empty label; a bad port
        raise InvalidInput(f"callback_url: {parts.netloc!r} is not a valid host name and port") from None
    addresses = [ipaddress.ip_address(info[4][0]) for info in infos]
    for address in addresses:
        if not allow_private and not is_public_address(address):
            raise InvalidInput(
                f"callback_url: {parts.hostname!r} resolves to a non-public address ({address}); "
                "set WEBHOOK_ALLOW_PRIVATE=true to allow it"
            )
    return list(dict.fromkeys(str(address) for address in addresses))  # in order, once each


# IPv6 ranges that carry an IPv4 address in their last 32 bits: NAT64's well-known prefix
# (RFC 6052) and the deprecated IPv4-compatible addresses (::a.b.c.d).
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")
# NAT64's local-use prefix (RFC 8215): translated inside one network, never public.
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")


def is_public_address(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """True when a webhook may be sent to ``address``: global unicast, and, for an IPv6
    address that carries an IPv4 one (mapped, IPv4-compatible, 6to4, Teredo, NAT64), that
    IPv4 address is public too. ``is_global`` alone (Python 3.11) calls 64:ff9b::7f00:1,
    2002:7f00:1:: and ::7f00:1, all ways of reaching 127.0.0.1, global, and multicast too."""
    if address.is_multicast or not address.is_global:
        return False
    if address.version == 6 and address in _NAT64_LOCAL:
        return False
    return all(is_public_address(inner) for inner in _embedded_ipv4(address))


def _embedded_ipv4(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address leads to (none for IPv4 or a plain IPv6 address)."""
    if address.version == 4:
        return []
    if address.ipv4_mapped is not None:
        return [address.ipv4_mapped]
    if address.sixtofour is not None:
        return [address.sixtofour]
    if address.teredo is not None:
        return list(address.teredo)  # (server, client)
    if address in _NAT64 or address in _IPV4_COMPATIBLE:
        return [ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)]
    return []


def pinned_request(url: str, address: str) -> tuple[httpx.URL, dict[str, str], dict[str, str]]:
    """(URL with the host replaced by ``address``, the Host header, httpx extensions): the
    request goes to that address while the server still sees, and TLS still verifies, the
    name in the URL."""
    original = httpx.URL(url)
    extensions = {"sni_hostname": original.host} if original.scheme == "https" else {}
    return original.copy_with(host=address), {"Host": original.netloc.decode("ascii")}, extensions


class WebhookSender:
    """Delivers webhooks in the background. ``close()`` waits for deliveries in flight."""

    def __init__(
        self,
        settings: Settings,
        client: httpx.Client | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._settings = settings
        self._client = client or httpx.Client(timeout=settings.webhook_timeout_s, follow_redirects=False)
        self._sleep = sleep
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="webhook")

    def send(self, url: str, event: str, body: bytes) -> Future[bool]:
        return self._pool.submit(self._deliver, url, event, body)

    def _deliver(self, url: str, event: str, body: bytes) -> bool:
        try:
            addresses = check_callback_url(url, self._settings.webhook_allow_private)
        except InvalidInput as exc:
            log.warning("webhook not sent: %s", exc)
            metrics.WEBHOOK_FAILURES.inc()
            return False
        headers = {"Content-Type": "application/json", EVENT_HEADER: event}
        if self._settings.webhook_secret:
            headers[SIGNATURE_HEADER] = sign(body, self._settings.webhook_secret)
        attempts = self._settings.webhook_max_retries + 1
        for attempt in range(attempts):
            try:
                response = self._post(url, addresses, body, headers)
                if response.status_code < 300:
                    return True
                log.warning("webhook %s answered %d (attempt %d/%d)", url, response.status_code, attempt + 1, attempts)
            except httpx.HTTPError as exc:
                log.warning("webhook %s failed: %s (attempt %d/%d)", url, exc, attempt + 1, attempts)
            if attempt + 1 < attempts:
                self._sleep(min(60.0, 0.5 * 2**attempt))
        metrics.WEBHOOK_FAILURES.inc()
        return False

    def _post(self, url: str, addresses: list[str], body: bytes, headers: dict[str, str]) -> httpx.Response:
        """POST to the first of the checked addresses that accepts a connection (as a plain
        connect would try each address the name resolves to)."""
        refused: httpx.ConnectError | None = None
        for address in addresses:  # check_callback_url returns at least one
            request_url, host, extensions = pinned_request(url, address)
            try:
                return self._client.post(request_url, content=body, headers={**headers, **host}, extensions=extensions)
            except httpx.ConnectError as exc:
                refused = exc
        raise refused

    def close(self, wait: bool = True) -> None:
        self._pool.shutdown(wait=wait, cancel_futures=not wait)
        self._client.close()
