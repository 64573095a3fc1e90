"""The job queue on Azure Queue Storage; the lease is the message's visibility timeout.

Azure counts visibility timeouts in whole seconds (at least 1 to hide a message), so leases
are rounded up. Every ``update_message`` returns a new pop receipt and invalidates the old
one, which is exactly the LeaseLost contract. Bodies are stored as plain text (our bodies
are JSON from ``JobMessage.encode``), so a foreign, malformed body still reaches the worker
as text and is poisoned there instead of failing inside the SDK's decoder.
"""

from __future__ import annotations

import math
from contextlib import suppress
from datetime import timedelta

from azure.core.exceptions import ResourceExistsError
from azure.storage.queue import QueueClient, QueueServiceClient

from core.backends.azure.clients import AzureOptions
from core.backends.azure.errors import azure_errors, lease_errors
from core.backends.base import JobQueue, QueueMessage
from core.backends.deadline import DeadlineRunner, bounded
from core.errors import InvalidInput

MAX_VISIBILITY_S = 7 * 24 * 3600  # the service's limit
NEVER_EXPIRE = -1  # message time-to-live: the default (7 days) would silently drop old jobs
POISON_HANDOFF_S = 30  # how long we hold a message while copying it to the poison queue


class AzureJobQueue(JobQueue):
    """Queue ``name`` and its poison queue ``poison_name`` in the account ``service`` points at.
    Every public method answers or fails within ``options.deadline_s``."""

    def __init__(
        self, service: QueueServiceClient, name: str, poison_name: str, options: AzureOptions | None = None
    ) -> None:
        if name == poison_name:
            raise InvalidInput("the queue and its poison queue need different names")
        self._service = service
        self._queue: QueueClient = service.get_queue_client(name)
        self._poison: QueueClient = service.get_queue_client(poison_name)
        self.endpoint = self._queue.url
        deadline_s = (options or AzureOptions()).deadline_s
        self._deadline = DeadlineRunner(deadline_s, f"Azure Queue storage at {self.endpoint}")

    @bounded("creating the queues")
    def create_queues(self) -> None:
        """Create both queues unless they exist (at start-up)."""
        for client in (self._queue, self._poison):
            with azure_errors(f"creating queue {client.queue_name!r}", client.url), suppress(ResourceExistsError):
                client.create_queue()

    @bounded("sending a queue message")
    def send(self, body: str) -> str:
        """Enqueue ``body`` (at most 64 KiB); returns the message id."""
        if not isinstance(body, str):
            raise InvalidInput(f"a queue message body must be text, got {type(body).__name__}")
        with azure_errors("sending a queue message", self.endpoint):
            return self._queue.send_message(body, time_to_live=NEVER_EXPIRE).id

    @bounded("receiving a queue message")
    def receive(self, lease: timedelta) -> QueueMessage | None:
        """Take the next visible message and hide it for ``lease`` (rounded up to seconds)."""
        with azure_errors("receiving a queue message", self.endpoint):
            message = self._queue.receive_message(visibility_timeout=_visibility(lease))
        if message is None:
            return None
        # the SDK types these optional; a received message always carries them
        assert message.pop_receipt is not None and message.dequeue_count is not None
        return QueueMessage(
            id=message.id,
            body=message.content if message.content is not None else "",
            pop_receipt=message.pop_receipt,
            dequeue_count=message.dequeue_count,
            visible_at=message.next_visible_on,
        )

    @bounded("extending a message lease")
    def extend_lease(self, message: QueueMessage, lease: timedelta) -> QueueMessage:
        """Hide the message for ``lease`` from now; returns it with the new pop receipt."""
        return self._set_visibility(message, _visibility(lease), "extending a message lease")

    def _set_visibility(self, message: QueueMessage, seconds: int, doing: str) -> QueueMessage:
        with lease_errors(message.id, doing, self.endpoint):
            updated = self._queue.update_message(
                message.id, pop_receipt=message.pop_receipt, visibility_timeout=seconds
            )
        assert updated.pop_receipt is not None  # an update always hands back the new receipt
        return QueueMessage(
            message.id, message.body, updated.pop_receipt, message.dequeue_count, updated.next_visible_on
        )

    @bounded("completing a message")
    def complete(self, message: QueueMessage) -> None:
        """Delete the message for good."""
        with lease_errors(message.id, "completing a message", self.endpoint):
            self._queue.delete_message(message.id, message.pop_receipt)

    @bounded("releasing a message")
    def release(self, message: QueueMessage) -> None:
        """Make the message visible again now."""
        self._set_visibility(message, 0, "releasing a message")

    @bounded("moving a message to the poison queue")
    def move_to_poison(self, message: QueueMessage) -> None:
        """Copy the message to the poison queue, then delete it here.

        The lease is checked (and renewed) first, so a stale receipt raises LeaseLost without
        leaving a copy behind. Azure has no cross-queue transaction: a crash between the copy
        and the delete leaves the message in both queues (at least once, never lost).
        """
        held = self._set_visibility(message, POISON_HANDOFF_S, "moving a message to the poison queue")
        with azure_errors("copying a message to the poison queue", self._poison.url):
            self._poison.send_message(message.body, time_to_live=NEVER_EXPIRE)
        self.complete(held)

    @bounded("reading the queue length")
    def approximate_length(self) -> int:
        """Messages in the queue, visible or leased (the service's estimate)."""
        with azure_errors("reading the queue length", self.endpoint):
            return self._queue.get_queue_properties().approximate_message_count or 0

    @bounded("peeking at the poison queue")
    def peek_poison(self, max_messages: int = 32) -> list[str]:
        """Bodies at the front of the poison queue (the service peeks at most 32)."""
        if max_messages <= 0:
            return []
        count = min(max_messages, 32)
        with azure_errors("peeking at the poison queue", self._poison.url):
            return [message.content for message in self._poison.peek_messages(max_messages=count)]

    @bounded("checking the queue")
    def ping(self) -> None:
        with azure_errors("checking the queue", self.endpoint):
            self._queue.get_queue_properties()

    def close(self) -> None:
        self._deadline.close()
        self._queue.close()
        self._poison.close()
        self._service.close()


def _visibility(lease: timedelta) -> int:
    seconds = lease.total_seconds()
    if seconds <= 0:
        raise InvalidInput(f"a lease must be longer than zero, got {lease}")
    if seconds > MAX_VISIBILITY_S:
        raise InvalidInput(f"a lease can be at most 7 days, got {lease}")
    return max(1, math.ceil(seconds))
