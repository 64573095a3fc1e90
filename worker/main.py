"""``python -m worker.main``: run a worker process until SIGTERM/SIGINT.

The first signal drains (no new jobs, running ones finish within SHUTDOWN_GRACE_S), the
second stops running jobs at once and releases their messages.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys

from core.backends import build_backends
from core.config import load_settings
from core.errors import CattleCounterError
from core.logging import configure_logging
from core.metrics import start_metrics_server
from core.scratch import open_scratch

log = logging.getLogger("worker")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m worker.main", description="CattleCounter queue worker")
    parser.add_argument("--burst", action="store_true", help="exit once the queue is empty")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        settings = load_settings()
    except CattleCounterError as exc:
        print(f"worker: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_format.value)
    # every setting whose problem would otherwise show only when a job runs is checked here:
    # a misconfigured worker must not drain a shared queue into failed jobs
    try:
        scratch = open_scratch(settings, "worker")
    except CattleCounterError as exc:
        log.error("cannot start: %s", exc)
        return 2
    # torch and transformers are imported only now, seconds of CPU: a bad setting or WORK_DIR
    # above is refused at once
    from worker.models import DetectorCache
    from worker.service import Worker

    try:
        backends = build_backends(settings)
        detectors = DetectorCache(settings, backends.blobs)
        detectors.load_default()  # a bad MODEL_ID, DEVICE, CLASSES or BATCH_SIZE fails here
    except CattleCounterError as exc:
        log.error("cannot start: %s", exc)
        scratch.close()
        return 2
    worker = Worker(settings, backends, detectors, scratch_dir=scratch.path)
    metrics_server = None
    if settings.worker_metrics_port:
        metrics_server = start_metrics_server(settings.worker_metrics_port, health_check=worker.healthy)
    signal.signal(signal.SIGTERM, lambda *_: worker.request_shutdown())
    signal.signal(signal.SIGINT, lambda *_: worker.request_shutdown())
    log.info("worker ready: %d job thread(s) on queue %s, %d stream thread(s) on queue %s",
             settings.worker_concurrency, settings.queue_name, settings.stream_concurrency, settings.stream_queue)
    try:
        worker.run(burst=args.burst)
    finally:
        if metrics_server is not None:
            metrics_server.stop()
        backends.close()
        scratch.close()
    if worker.problem is not None:
        log.error("worker stopped: %s", worker.problem)
        return 1
    log.info("worker stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
