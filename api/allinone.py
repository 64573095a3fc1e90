"""``python -m api.allinone``: the API and a worker in one process, on one machine.

This is what ``make run`` starts: the embedded local backend (files + SQLite under
DATA_DIR) unless STORAGE_BACKEND says otherwise. The model loads in the background, so the
API (and the dashboard) answer at once; a job that comes first waits for it.
"""

from __future__ import annotations

import argparse
import logging
import sys
import threading

import uvicorn

from api.main import create_app
from core.backends import build_backends
from core.config import load_settings
from core.errors import CattleCounterError
from core.logging import configure_logging
from worker.models import DetectorCache
from worker.service import Worker

log = logging.getLogger("allinone")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m api.allinone", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
        configure_logging(settings.log_level, settings.log_format.value)
        backends = build_backends(settings)
    except CattleCounterError as exc:
        print(f"cattlecounter: {exc}", file=sys.stderr)
        return 2
    detectors = DetectorCache(settings, backends.blobs)
    threading.Thread(target=_load_model, args=(detectors,), name="model-loader", daemon=True).start()
    worker = Worker(settings, backends, detectors)
    worker.start()
    log.info("dashboard and API on http://%s:%d (Swagger at /docs)", args.host, args.port)
    try:
        uvicorn.run(create_app(settings, backends), host=args.host, port=args.port, log_config=None)
    finally:
        # uvicorn has handled the signal: stop running jobs at their next batch and release
        # their messages, so they resume on the next start instead of waiting for a lease
        worker.request_shutdown()
        worker.request_shutdown()
        worker.join(timeout=settings.shutdown_grace_s)
        worker.close()
        backends.close()
    return 0


def _load_model(detectors: DetectorCache) -> None:
    """Load MODEL_ID now rather than on the first job: the dashboard then learns its class
    names (the model card) at once, and a bad MODEL_ID is reported before anyone uploads."""
    try:
        detectors.get()
    except CattleCounterError as exc:
        log.error("cannot load the model: %s (jobs will fail with this error until it is fixed)", exc)


if __name__ == "__main__":
    sys.exit(main())
