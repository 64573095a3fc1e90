"""Webhook test helpers: a real HTTP receiver on loopback (``receivers`` fixture), the
spec's example secret, and small builders for jobs and events in the outbox."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from datetime import timedelta

import pytest

from core.backends import Backends
from core.backends.outbox import FINAL_SEQUENCE, WebhookEvent, event_id
from core.jobs import Job, JobParams, JobStatus, new_job_id, utcnow
from core.public_job import public_job
from core.webhooks import WebhookSender, final_event

BACKENDS = ["local", pytest.param("azure", marks=pytest.mark.azurite)]
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # the spec's example secret
LEASE = timedelta(seconds=30)
INTERNAL_FIELDS = ("input_blob", "input_etag", "idempotency_key", "handed_back", '"outputs"', "/input")


# --- a real HTTP receiver ------------------------------------------------------------------


class Receiver:
    """A webhook receiver on a loopback port. It records every request, answers ``status``,
    and holds the first ``hang`` requests open until ``release`` is set."""

    def __init__(self, status: int = 200, hang: int = 0, endless_answer: bool = False) -> None:
        self.status = status
        self.hang = hang
        self.endless_answer = endless_answer  # announce a 10 GB answer, send 1 KiB, then stall
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.holding = 0  # requests being held open right now
        self.release = threading.Event()
        self._lock = threading.Lock()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with receiver._lock:
                    receiver.received.append((dict(self.headers), body))
                    hold = receiver.hang > 0
                    receiver.hang -= hold
                    receiver.holding += hold
                if hold:
                    receiver.release.wait(120)
                    with receiver._lock:
                        receiver.holding -= 1
                try:
                    self.send_response(receiver.status)
                    if receiver.endless_answer:
                        self.send_header("Content-Length", str(10 * 1024**3))
                    self.end_headers()
                    if receiver.endless_answer:
                        self.wfile.write(b"x" * 1024)
                        self.wfile.flush()
                        receiver.release.wait(120)
                except OSError:
                    pass  # the sender gave up on us (or was killed)

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receivers() -> Iterator:
    started: list[Receiver] = []

    def start(**options) -> Receiver:
        started.append(Receiver(**options))
        return started[-1]

    yield start
    for receiver in started:
        receiver.close()


# --- builders -------------------------------------------------------------------------------


def stored_job(backends: Backends, url: str | None = "http://127.0.0.1:9/hook") -> Job:
    job_id = new_job_id()
    params = JobParams(callback_url=url) if url else JobParams()
    return backends.jobs.create(Job(id=job_id, input_blob=f"jobs/{job_id}/input", params=params,
                                    idempotency_key=f"key-{job_id}"))


def settle(backends: Backends, job: Job, status: JobStatus = JobStatus.COMPLETED) -> Job:
    """What the worker does when a job ends: the final state and its event, in one write."""
    return backends.jobs.modify(job.id, lambda j: setattr(j, "status", status),
                                event=lambda j: final_event(j, public_job(j)))


def event_for(job_id: str, url: str, sequence: int = FINAL_SEQUENCE, body: str = '{"n": 1}') -> WebhookEvent:
    return WebhookEvent(id=event_id(job_id, sequence), job_id=job_id, sequence=sequence, type="job.test",
                        url=url, body=body, created_at=utcnow())


def make_sender(make_settings, outbox, **overrides) -> WebhookSender:
    settings = make_settings("local", **{"webhook_allow_private": True, "webhook_secret": SECRET,
                                         "poll_interval_s": 0.1, **overrides})
    return WebhookSender(settings, outbox)
