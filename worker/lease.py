"""Keeps a queue message leased while a job runs.

Videos take longer than any fixed visibility timeout, so a heartbeat thread extends the
lease every LEASE_RENEW_SECONDS. Each extension returns a new pop receipt (Azure's
update_message); only the newest is valid, so this class is the one holder of it.

A watchdog thread counts from the last renewal that succeeded: once a whole lease has
passed without one (renewals failing, or one stuck on a storage service that stopped
answering) the lease may have expired and another worker may hold the message, so ``lost``
is set and the job stops at its next batch, leaving the message to come back. Neither
thread waits on the other, so a renewal that never returns cannot hide the expiry.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta

from core import metrics
from core.backends import JobQueue, QueueMessage
from core.errors import LeaseLost
from core.logging import start_thread_in_context

log = logging.getLogger(__name__)


class LeaseKeeper:
    def __init__(self, queue: JobQueue, message: QueueMessage, lease_s: float, renew_every_s: float) -> None:
        self._queue = queue
        self._message = message
        self._lease_s = lease_s
        self._renew_every_s = renew_every_s
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self.lost = threading.Event()
        # when the newest lease was asked for: it runs out no earlier than lease_s after this
        self._leased_at = time.monotonic()
        self._threads: list[threading.Thread] = []

    @property
    def message(self) -> QueueMessage:
        """The message with the newest pop receipt."""
        with self._lock:
            return self._message

    def __enter__(self) -> LeaseKeeper:
        self._threads = [
            start_thread_in_context(self._heartbeat, name="lease-keeper"),
            start_thread_in_context(self._watchdog, name="lease-watchdog"),
        ]
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop renewing. Waits for a renewal in flight, so ``message`` is final afterwards,
        but never past the lease: a renewal still stuck then cannot matter any more."""
        self._stopped.set()
        for thread in self._threads:
            thread.join(timeout=max(0.0, self._expires_in()))
        if any(thread.is_alive() for thread in self._threads):
            self._give_up("a lease renewal on message %s was still stuck when the lease ran out",
                          self._message.id)

    def _expires_in(self) -> float:
        return self._leased_at + self._lease_s - time.monotonic()

    def _heartbeat(self) -> None:
        while not self._stopped.wait(self._renew_every_s) and not self.lost.is_set():
            asked_at = time.monotonic()
            try:
                renewed = self._queue.extend_lease(self.message, timedelta(seconds=self._lease_s))
            except LeaseLost:
                self._give_up("lease on message %s lost; another worker may take the job", self._message.id)
                return
            except Exception as exc:  # any failure: keep trying while the lease may still be ours
                log.warning("could not renew lease (%s); retrying", exc)
                continue
            if self.lost.is_set():  # too late: the watchdog has already given the message up
                return
            with self._lock:
                self._message, self._leased_at = renewed, asked_at
            metrics.LEASE_RENEWALS.inc()

    def _watchdog(self) -> None:
        while not self._stopped.wait(max(0.0, self._expires_in())):
            if self._expires_in() <= 0:
                self._give_up("no lease renewal on message %s succeeded for %.0f s, so the lease may have "
                              "expired; stopping the job (another worker may take it)",
                              self._message.id, self._lease_s)
                return

    def _give_up(self, message: str, *args: object) -> None:
        """The job stops at its next batch and leaves the message to whoever holds it now."""
        with self._lock:
            if self.lost.is_set():
                return
            self.lost.set()
        log.warning(message, *args)
        metrics.LEASE_LOST.inc()
