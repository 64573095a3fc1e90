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
        infos = socket.getaddrinfo(parts.hostname, parts.port or 443, proto=socket.IPPROTO_TCP)
    except socket.gaierror:
        raise InvalidInput(f"callback_url: cannot resolve host {parts.hostname!r}") from None
    addresses = [ipaddress.ip_address(info[4][0]) for info in infos]
    for address in addresses:
        if not allow_private and not address.is_global:
            raise InvalidInput(
                f"callback_url: {parts.hostname!r} resolves to a non-public address ({address}); "
                "set WEBHOOK_ALLOW_PRIVATE=true to allow it"
            )
    return list(dict.fromkeys(str(address) for address in addresses))  # in order, once each


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
