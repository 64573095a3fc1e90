"""Job webhooks: when a job ends, POST its public record to the user's ``callback_url``.

Durable: the event is written to the outbox (``core.backends.outbox``) in the same
transaction as the job's final state, and ``WebhookSender`` (run by every worker process and
by the all-in-one) delivers it: it claims due events with a lease, POSTs them, and stores
the outcome. A failed attempt is retried with exponential backoff until the receiver answers
2xx or the event is WEBHOOK_MAX_AGE_S old; a killed worker's event is picked up by another
sender once its lease runs out. Deliveries to one destination run one at a time and every
request has a timeout, so a receiver that hangs delays only its own webhooks. A failing
webhook never fails the job.

Signed as the Standard Webhooks spec says (https://www.standardwebhooks.com): headers
``webhook-id`` (the same on every retry of an event), ``webhook-timestamp`` (of this
attempt) and ``webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">`` keyed by
WEBHOOK_SECRET, so a receiver can reject forgeries, replays and duplicates.

Only http/https URLs are accepted, and URLs whose host resolves to a loopback, private,
link-local or otherwise non-public address are refused (server-side request forgery)
unless WEBHOOK_ALLOW_PRIVATE=true. The request then goes to the very addresses that were
checked, never to a fresh DNS answer (DNS rebinding).
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import logging
import socket
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
from standardwebhooks import Webhook

from core import metrics
from core.backends.outbox import FINAL_SEQUENCE, DeliveryStatus, OutboxStore, WebhookEvent, event_id
from core.config import Settings
from core.errors import CattleCounterError, ConfigError, InvalidInput, LeaseLost
from core.jobs import Job, utcnow
from core.logging import start_thread_in_context
from core.netpolicy import is_public_address  # the address rule streams share

log = logging.getLogger(__name__)

EVENT_HEADER = "X-CattleCounter-Event"
SECRET_PREFIX = "whsec_"
FIRST_RETRY_S = 1.0  # then doubling per failed attempt ...
MAX_RETRY_INTERVAL_S = 3600.0  # ... up to an hour between attempts


def signing_key(secret: str) -> bytes:
    """The HMAC key of WEBHOOK_SECRET: the spec's ``whsec_<base64>`` form is decoded; any other
    secret is used as it is (its UTF-8 bytes), as the X-Signature scheme before it did.
    Raises ConfigError for a ``whsec_`` secret that is not base64."""
    if not secret.startswith(SECRET_PREFIX):
        return secret.encode("utf-8")
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX):], validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if not key:
        raise ConfigError("WEBHOOK_SECRET starts with whsec_ but the rest is not base64 (as in whsec_MfKQ9r8G...)")
    return key


def signed_headers(event: WebhookEvent, secret: str | None, now: datetime) -> dict[str, str]:
    """The Standard Webhooks headers of one attempt to deliver ``event`` (unsigned without a
    secret: the id and timestamp still let a receiver drop duplicates)."""
    headers = {
        "Content-Type": "application/json",
        "webhook-id": event.id,
        "webhook-timestamp": str(int(now.timestamp())),
        EVENT_HEADER: event.type,
    }
    if secret:
        headers["webhook-signature"] = Webhook(signing_key(secret)).sign(event.id, now, event.body)
    return headers


def final_event(job: Job, public_job: dict[str, Any]) -> WebhookEvent | None:
    """The event reporting ``job``'s final state, or None without a callback_url. The body
    is the Standard Webhooks payload shape: ``{"type", "timestamp", "data"}`` with the public
    job (as GET /jobs/{id} shows it) as ``data``."""
    if job.params.callback_url is None:
        return None
    event_type = f"job.{job.status.value}"
    body = {"type": event_type, "timestamp": job.updated_at.isoformat(), "data": public_job}
    return WebhookEvent(
        id=event_id(job.id, FINAL_SEQUENCE),
        job_id=job.id,
        sequence=FINAL_SEQUENCE,
        type=event_type,
        url=str(job.params.callback_url),
        body=json.dumps(body),
        created_at=utcnow(),
    )


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


def pinned_request(url: str, address: str) -> tuple[httpx.URL, dict[str, str], dict[str, str]]:
    """(URL with the host replaced by ``address``, the Host header, httpx extensions): the
    request goes to that address while the server still sees, and TLS still verifies, the
    name in the URL."""
    original = httpx.URL(url)
    extensions = {"sni_hostname": original.host} if original.scheme == "https" else {}
    return original.copy_with(host=address), {"Host": original.netloc.decode("ascii")}, extensions


class WebhookSender:
    """Delivers the outbox's events from a background thread: ``start()``, then ``close()``.

    Up to WEBHOOK_CONCURRENCY deliveries run at once, at most one per destination, each
    request bounded by WEBHOOK_TIMEOUT_S: a destination that hangs holds one slot, never
    the others' turns.
    """

    def __init__(self, settings: Settings, outbox: OutboxStore, client: httpx.Client | None = None) -> None:
        self._settings = settings
        self._outbox = outbox
        self._client = client or httpx.Client(timeout=settings.webhook_timeout_s, follow_redirects=False)
        self._slots = settings.webhook_concurrency
        self._pool = ThreadPoolExecutor(max_workers=self._slots, thread_name_prefix="webhook")
        self._busy: dict[str, Future[WebhookEvent | None]] = {}  # destination -> its delivery in flight
        self._lock = threading.Lock()
        self._wake = threading.Event()  # a slot came free, or we are stopping
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        # a claim must outlast the attempt it covers (each address tried may take the timeout)
        self.lease = timedelta(seconds=3 * settings.webhook_timeout_s + 5)

    def start(self) -> None:
        self._thread = start_thread_in_context(self._loop, name="webhook-sender")

    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                self.claim_and_send()
            except CattleCounterError as exc:  # storage down: the events wait in the outbox
                log.warning("cannot read the webhook outbox (%s); retrying", exc)
            except Exception:  # a bug must not end the loop: no webhook would go out any more
                log.exception("webhook sender: unexpected error; retrying")
            self._wake.wait(self._settings.poll_interval_s)
            self._wake.clear()

    def claim_and_send(self) -> list[Future[WebhookEvent | None]]:
        """Claim what free slots allow and start delivering it; returns the deliveries started."""
        with self._lock:
            busy = set(self._busy)
        if len(busy) >= self._slots:
            return []
        events = self._outbox.claim(utcnow(), self.lease, self._slots - len(busy), busy)
        started = []
        with self._lock:
            for event in events:
                self._busy[event.destination] = future = self._pool.submit(self._deliver_and_save, event)
                started.append(future)
        return started

    def _deliver_and_save(self, event: WebhookEvent) -> WebhookEvent | None:
        try:
            return self._outbox.save(self.attempt(event))
        except LeaseLost as exc:  # we overran the lease and another sender took it over
            log.warning("webhook %s: %s", event.id, exc)
        except CattleCounterError as exc:  # the lease runs out and the attempt is repeated
            log.warning("webhook %s: could not record the attempt: %s", event.id, exc)
        except Exception:
            log.exception("webhook %s: unexpected error", event.id)
        finally:
            with self._lock:
                self._busy.pop(event.destination, None)
            self._wake.set()
        return None

    def attempt(self, event: WebhookEvent) -> WebhookEvent:
        """POST ``event`` once; returns it with the outcome (not yet saved)."""
        now = utcnow()
        error = self._post(event, now)
        attempts = event.attempts + 1
        if error is None:
            log.info("webhook %s delivered to %s (attempt %d)", event.id, event.destination, attempts)
            return event.with_outcome(DeliveryStatus.DELIVERED, attempts=attempts, last_attempt_at=now,
                                 delivered_at=now, last_error=None, next_attempt_at=None)
        expires_at = event.created_at + timedelta(seconds=self._settings.webhook_max_age_s)
        if now >= expires_at:
            log.warning("webhook %s failed for good after %d attempts: %s", event.id, attempts, error)
            metrics.WEBHOOK_FAILURES.inc()
            return event.with_outcome(DeliveryStatus.FAILED, attempts=attempts, last_attempt_at=now,
                                 last_error=error, next_attempt_at=None)
        backoff = min(MAX_RETRY_INTERVAL_S, FIRST_RETRY_S * 2 ** (attempts - 1))
        next_attempt = min(now + timedelta(seconds=backoff), expires_at)  # a last try as it expires
        log.warning("webhook %s attempt %d failed (%s); next at %s", event.id, attempts, error, next_attempt)
        return event.with_outcome(DeliveryStatus.RETRYING, attempts=attempts, last_attempt_at=now,
                             last_error=error, next_attempt_at=next_attempt)

    def _post(self, event: WebhookEvent, now: datetime) -> str | None:
        """None once the receiver answers 2xx, else what went wrong (for the job's status)."""
        try:
            addresses = check_callback_url(event.url, self._settings.webhook_allow_private)
        except InvalidInput as exc:
            return str(exc)
        headers = signed_headers(event, self._settings.webhook_secret, now)
        try:
            status = self._post_to_first_address(event.url, addresses, event.body.encode(), headers)
        except httpx.HTTPError as exc:
            return f"{type(exc).__name__}: {exc}"[:500]
        if 200 <= status < 300:
            return None
        return f"the receiver answered HTTP {status}"

    def _post_to_first_address(self, url: str, addresses: list[str], body: bytes, headers: dict[str, str]) -> int:
        """POST to the first of the checked addresses that accepts a connection (as a plain
        connect would try each address the name resolves to); returns the status code. The
        answer's body is never read: a receiver cannot make us hold a big one in memory."""
        refused: httpx.ConnectError | None = None
        for address in addresses:  # check_callback_url returns at least one
            request_url, host, extensions = pinned_request(url, address)
            try:
                with self._client.stream("POST", request_url, content=body, headers={**headers, **host},
                                         extensions=extensions) as response:
                    return response.status_code
            except httpx.ConnectError as exc:
                refused = exc
        assert refused is not None  # the loop ran at least once, and every try was refused
        raise refused

    def close(self, wait: bool = True) -> None:
        """Stop claiming. With ``wait``, first send what is due now (the webhook of the job
        that just ended, in a worker run with --burst) and let the deliveries in flight finish
        (each is bounded by the timeout). Unsent events stay in the outbox for the next sender."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
        if wait:
            try:
                self.claim_and_send()
            except CattleCounterError as exc:
                log.warning("cannot read the webhook outbox (%s); its events wait for the next sender", exc)
        self._pool.shutdown(wait=wait, cancel_futures=not wait)
        self._client.close()
