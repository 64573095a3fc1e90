"""A total deadline for blocking storage calls, SDK retries included.

A storage service that accepts connections and never answers (a hung front end, a frozen
process, a network black hole) leaves an SDK call blocked for as long as its socket timeouts
and retries allow, and DNS or a TLS handshake can block outside them altogether. The SDK's
own timeouts bound each try; ``DeadlineRunner`` bounds the whole call: the call runs on one
of a few threads and the caller stops waiting at the deadline with StorageUnavailable. The
thread it leaves behind finishes when the SDK's timeouts end the call; at most
``max_threads`` calls run at once and calls still waiting for a thread are dropped at their
deadline, so a storage outage cannot pile up threads or work without bound.

Only calls that move little data get a deadline. Blob transfers (gigabytes at times) get a
stall timeout in the SDK instead: no byte for N seconds.
"""

from __future__ import annotations

import contextvars
import functools
import queue
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, TypeVar

from core.errors import StorageUnavailable

T = TypeVar("T")

DEFAULT_MAX_THREADS = 64  # stuck calls at once; more than API and worker threads ever wait on
_DONE = object()


class DeadlineRunner:
    """Runs storage calls on a bounded set of daemon threads, waiting ``deadline_s`` for each."""

    def __init__(self, deadline_s: float, service: str, max_threads: int = DEFAULT_MAX_THREADS) -> None:
        """``service`` names what did not answer in the error, e.g. an endpoint."""
        self.deadline_s = deadline_s
        self._service = service
        self._max_threads = max_threads
        self._tasks: queue.SimpleQueue[tuple[Future[Any], Callable[[], Any]] | None] = queue.SimpleQueue()
        self._idle = threading.Semaphore(0)
        self._lock = threading.Lock()
        self._threads = 0
        self._local = threading.local()  # marks our own threads

    def call(self, doing: str, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``function(*args, **kwargs)``, or StorageUnavailable once ``deadline_s`` has passed.
        Called from one of our own threads (a bounded call inside another), it runs inline:
        the outer call's deadline already covers it."""
        if getattr(self._local, "ours", False):
            return function(*args, **kwargs)
        context = contextvars.copy_context()  # log lines keep their job id
        future: Future[T] = Future()
        self._tasks.put((future, functools.partial(context.run, function, *args, **kwargs)))
        self._make_sure_a_thread_is_free()
        try:
            return future.result(timeout=self.deadline_s)
        except FutureTimeout:
            future.cancel()  # still waiting for a thread: it will never run
            raise StorageUnavailable(
                f"{self._service} did not answer within {self.deadline_s:g} s while {doing}"
            ) from None

    def iterate(self, doing: str, items: Iterator[T]) -> Iterator[T]:
        """Yield from ``items``, each step under the deadline (a paged listing fetches pages
        as it goes)."""
        while (item := self.call(doing, next, items, _DONE)) is not _DONE:
            yield item

    def _make_sure_a_thread_is_free(self) -> None:
        if self._idle.acquire(blocking=False):
            return
        with self._lock:
            if self._threads >= self._max_threads:
                return  # the task waits for a thread, and is dropped at its deadline
            self._threads += 1
        threading.Thread(target=self._work, name="storage-call", daemon=True).start()

    def close(self) -> None:
        """Let idle threads end (a thread still stuck in a call ends when the call does)."""
        with self._lock:
            for _ in range(self._threads):
                self._tasks.put(None)

    def _work(self) -> None:
        self._local.ours = True
        while (work := self._tasks.get()) is not None:
            future, task = work
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(task())
                except BaseException as exc:  # handed to the caller, who re-raises it
                    future.set_exception(exc)
            self._idle.release()
        with self._lock:
            self._threads -= 1

    @property
    def threads(self) -> int:
        """Threads running now, idle or not."""
        return self._threads


def bounded(doing: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
    """Decorate a store method to run under the store's ``self._deadline`` (a DeadlineRunner)."""

    def decorate(method: Callable[..., T]) -> Callable[..., T]:
        @functools.wraps(method)
        def run(self: Any, *args: Any, **kwargs: Any) -> T:
            runner: DeadlineRunner = self._deadline
            return runner.call(doing, method, self, *args, **kwargs)

        return run

    return decorate
