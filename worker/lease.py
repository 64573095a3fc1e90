"""Keeps a queue message leased while a job runs.

Videos take longer than any fixed visibility timeout, so a heartbeat thread extends the
lease every LEASE_RENEW_SECONDS. Each extension returns a new pop receipt (Azure's
update_message); only the newest is valid, so this class is the one holder of it.
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
        self._lease = timedelta(seconds=lease_s)
        self._renew_every_s = renew_every_s
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self.lost = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def message(self) -> QueueMessage:
        """The message with the newest pop receipt."""
        with self._lock:
            return self._message

    def __enter__(self) -> "LeaseKeeper":
        self._thread = start_thread_in_context(self._heartbeat, name="lease-keeper")
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop renewing. Waits for a renewal in flight, so ``message`` is final afterwards."""
        self._stopped.set()
        if self._thread is not None:
            self._thread.join()

    def _heartbeat(self) -> None:
        renewed_at = time.monotonic()
        while not self._stopped.wait(self._renew_every_s):
            with self._lock:
                try:
                    self._message = self._queue.extend_lease(self._message, self._lease)
                except LeaseLost:
                    self._give_up("lease on message %s lost; another worker may take the job", self._message.id)
                    return
                except Exception as exc:  # any failure: keep trying while the lease may still be ours
                    if time.monotonic() - renewed_at >= self._lease.total_seconds():
                        self._give_up("could not renew the lease on message %s before it expired (%s); "
                                      "another worker may take the job", self._message.id, exc)
                        return
                    log.warning("could not renew lease (%s); retrying", exc)
                    continue
            renewed_at = time.monotonic()
            metrics.LEASE_RENEWALS.inc()

    def _give_up(self, message: str, *args: object) -> None:
        """The job stops at its next batch and leaves the message to whoever holds it now."""
        log.warning(message, *args)
        metrics.LEASE_LOST.inc()
        self.lost.set()
