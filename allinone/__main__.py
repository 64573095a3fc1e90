"""``python -m allinone``: the API and a worker in one process, on one machine.

This is what ``make run`` starts: the embedded local backend (files + SQLite under
DATA_DIR) unless STORAGE_BACKEND says otherwise. The model loads in the background, so the
API (and the dashboard) answer at once; jobs wait in the queue until it has loaded and
passed the worker's start-up check. If it cannot be used, no job is taken (none is failed
for it) and /health answers 503 with the reason.

It is a composition root, so it lives beside ``api`` and ``worker`` rather than in either:
it imports both, and neither imports the other (tests/test_import_rules.py). The worker
image carries it (it has both stacks); the API image does not.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from types import FrameType
from typing import TYPE_CHECKING

import uvicorn

from api.main import create_app
from core.backends import build_backends
from core.config import load_settings
from core.errors import CattleCounterError
from core.logging import configure_logging
from core.scratch import open_scratch

if TYPE_CHECKING:
    from worker.models import DetectorCache
    from worker.service import Worker

log = logging.getLogger("allinone")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m allinone", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
        configure_logging(settings.log_level, settings.log_format.value)
        scratch = open_scratch(settings, "worker")  # a bad WORK_DIR stops us here, not every job
    except CattleCounterError as exc:
        print(f"cattlecounter: {exc}", file=sys.stderr)
        return 2
    try:
        backends = build_backends(settings)
    except CattleCounterError as exc:
        scratch.close()
        print(f"cattlecounter: {exc}", file=sys.stderr)
        return 2
    # the worker's imports (torch, transformers: seconds of CPU) wait until the settings and
    # WORK_DIR have passed, so those are refused at once
    from worker.models import DetectorCache
    from worker.service import Worker

    detectors = DetectorCache(settings, backends.blobs)
    worker = Worker(settings, backends, detectors, scratch_dir=scratch.path)
    threading.Thread(target=_load_model_then_work, args=(detectors, worker), name="model-loader",
                     daemon=True).start()
    log.info("dashboard and API on http://%s:%d (Swagger at /docs)", args.host, args.port)
    try:
        app = create_app(settings, backends, liveness=lambda: worker.problem)
        # open requests get SHUTDOWN_GRACE_S to finish, as running jobs do in a worker
        config = uvicorn.Config(app, host=args.host, port=args.port, log_config=None,
                                timeout_graceful_shutdown=max(1, round(settings.shutdown_grace_s)))
        server = _HandBackOnSignal(config, worker)
        # uvicorn re-raises the signal it handled once it has stopped, with the handler that was
        # there before it: were that the default one, it would kill the process before the
        # cleanup below runs (the job would stay leased, its scratch on disk). A signal before
        # uvicorn listens stops it as soon as it has started.
        for stop_signal in (signal.SIGTERM, signal.SIGINT):
            signal.signal(stop_signal, server.handle_exit)
        server.run()
    finally:
        # stop running jobs at their next batch and release their messages, so they resume
        # on the next start instead of waiting for a lease
        worker.stop_now()
        if not worker.join(timeout=settings.shutdown_grace_s):
            log.warning("a job did not stop within SHUTDOWN_GRACE_S; its message comes back when its lease ends")
        worker.close()
        backends.close()
        scratch.close()
        log.info("stopped")
    return 0


class _HandBackOnSignal(uvicorn.Server):
    """uvicorn that also stops the worker on the first signal: running jobs go back to the
    queue while open requests finish, rather than after them."""

    def __init__(self, config: uvicorn.Config, worker: Worker) -> None:
        super().__init__(config)
        self.worker = worker

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.worker.stop_now()
        super().handle_exit(sig, frame)


def _load_model_then_work(detectors: DetectorCache, worker: Worker) -> None:
    """Load MODEL_ID now rather than on the first job: the dashboard then learns its class
    names (the model card) at once. Jobs are taken only once it has passed the start-up
    check, so a bad MODEL_ID or CLASSES leaves them queued instead of failing each one."""
    try:
        detectors.load_default()
    except CattleCounterError as exc:
        worker.refuse_work(f"the model cannot be used, so no job is taken until this is fixed: {exc}")
        return
    if not worker.draining.is_set():  # not shutting down meanwhile
        worker.start()


if __name__ == "__main__":
    sys.exit(main())
