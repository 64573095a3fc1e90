"""The worker loop: WORKER_CONCURRENCY job threads polling the file queue, STREAM_CONCURRENCY
stream threads polling the stream queue (worker/streams.py), and graceful shutdown.

Streams never end by themselves, so the first shutdown request hands them back at once
(they resume on another worker) instead of waiting out SHUTDOWN_GRACE_S.

Shutdown: the first ``request_shutdown()`` (SIGTERM) stops taking new jobs and lets the
running ones finish for SHUTDOWN_GRACE_S; past that they are stopped at their next batch
and their messages released, so another worker takes them at once. A second request
stops them right away.

Nothing ends a job thread silently: an unexpected error is logged and the loop goes on.
If a thread dies anyway, or the scratch folder fails, ``problem`` says why (the worker's
/health answers 503 with it) and the worker takes no more work.
"""

from __future__ import annotations

import logging
import threading
from datetime import timedelta
from pathlib import Path

from core.backends import Backends
from core.config import Settings
from core.errors import CattleCounterError
from core.logging import start_thread_in_context
from core.webhooks import WebhookSender
from worker.models import DetectorCache
from worker.runner import JobRunner
from worker.streams import StreamRunner

log = logging.getLogger(__name__)


class Worker:
    def __init__(
        self,
        settings: Settings,
        backends: Backends,
        detectors: DetectorCache | None = None,
        webhooks: WebhookSender | None = None,
        scratch_dir: Path | None = None,
    ) -> None:
        self.settings = settings
        self.backends = backends
        self.draining = threading.Event()  # no new jobs
        self.stopping = threading.Event()  # running jobs stop at their next batch
        self.webhooks = webhooks or WebhookSender(settings, backends.outbox)
        detectors = detectors or DetectorCache(settings, backends.blobs)
        self.runner = JobRunner(settings, backends, detectors, self.stopping, scratch_dir)
        self.stream_runner = StreamRunner(settings, backends, detectors, self.draining, scratch_dir)
        self._threads: list[threading.Thread] = []
        self._grace_timer: threading.Timer | None = None
        self._problem: str | None = None

    def start(self, burst: bool = False) -> None:
        """Start the job threads (WORKER_CONCURRENCY of them use the model at once, and one more
        takes the next job while a video renders: ``ModelSlots``) and the webhook sender.
        ``burst``: each job thread exits once the queue is empty."""
        self.webhooks.start()
        for index in range(self.settings.worker_concurrency + (1 if self.settings.worker_concurrency else 0)):
            self._threads.append(start_thread_in_context(self._guarded_loop, burst, self.runner,
                                                         name=f"job-loop-{index}"))
        for index in range(self.settings.stream_concurrency):
            self._threads.append(start_thread_in_context(self._guarded_loop, burst, self.stream_runner,
                                                         name=f"stream-loop-{index}"))

    @property
    def problem(self) -> str | None:
        """Why this worker takes no work (a job thread died, the scratch folder failed, the
        model could not be used), or None while it is healthy."""
        return self._problem

    def healthy(self) -> bool:
        """What the worker's /health reports: False once running jobs are being stopped
        (shutdown) or the worker takes no work because of a ``problem``."""
        return not self.stopping.is_set() and self._problem is None

    def refuse_work(self, problem: str) -> None:
        """Take no more jobs (running ones finish) and report ``problem`` as unhealthy."""
        if self._problem is None:
            self._problem = problem
            log.error("this worker takes no more jobs: %s", problem)
        self.draining.set()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the job threads to end; True if they all did."""
        for thread in self._threads:
            thread.join(timeout)
        return not any(thread.is_alive() for thread in self._threads)

    def run(self, burst: bool = False) -> None:
        self.start(burst)
        while not self.join(timeout=0.5):
            pass
        self.close()

    def close(self) -> None:
        if self._grace_timer is not None:
            self._grace_timer.cancel()
        self.webhooks.close()

    def request_shutdown(self) -> None:
        if not self.draining.is_set():
            log.info("shutting down: no new jobs; running jobs get %.0f s to finish", self.settings.shutdown_grace_s)
            self.draining.set()
            self._grace_timer = threading.Timer(self.settings.shutdown_grace_s, self._stop_running_jobs)
            self._grace_timer.daemon = True
            self._grace_timer.start()
        else:
            self._stop_running_jobs()

    def stop_now(self) -> None:
        """Take no new jobs and stop running ones at their next batch, without a grace period:
        their messages go back to the queue, so they resume on the next start."""
        self.draining.set()
        self._stop_running_jobs()

    def _stop_running_jobs(self) -> None:
        if not self.stopping.is_set():
            log.info("stopping running jobs now; their messages go back to the queue")
            self.stopping.set()

    def _guarded_loop(self, burst: bool, runner: JobRunner) -> None:
        """The job loop; should it ever end by an exception, /health says so."""
        try:
            self._loop(burst, runner)
        except BaseException as exc:  # noqa: BLE001 - the thread ends here: report it, never silently
            log.critical("job thread %s died", threading.current_thread().name, exc_info=exc)
            self.refuse_work(f"job thread {threading.current_thread().name} died: {exc!r}")

    def _loop(self, burst: bool, runner: JobRunner) -> None:
        while runner.slots.take(self.draining, self.settings.poll_interval_s):
            try:
                if not self._take_one(burst, runner):
                    return
            finally:
                runner.slots.give_back()

    def _take_one(self, burst: bool, runner: JobRunner) -> bool:
        """Receive one message and handle it (the thread holds a model slot); False when the
        loop is to end (burst mode and the queue empty, or the worker draining: the slot may
        have come from a job thread that just refused more work)."""
        if self.draining.is_set():
            return False
        try:
            runner.queue_depth.set(runner.queue.approximate_length())
            message = runner.queue.receive(timedelta(seconds=self.settings.lease_seconds))
        except Exception as exc:  # storage down (or a bug): wait and try again, no restart needed
            if not isinstance(exc, CattleCounterError):
                log.error("reading the queue failed unexpectedly", exc_info=exc)
            log.warning("cannot read the queue (%s); retrying in %.0f s", exc, self.settings.retry_backoff_s)
            self.draining.wait(self.settings.retry_backoff_s)
            return True
        if message is None:
            if burst:
                return False
            self.draining.wait(self.settings.poll_interval_s)
            return True
        try:
            runner.handle(message)
        except Exception:  # handle() settles its own failures; this is the last resort
            log.exception("handling message %s failed; it comes back when its lease expires", message.id)
        if runner.scratch_problem is not None:
            self.refuse_work(runner.scratch_problem)
        return True
