"""Webhooks: the durable outbox on both backends (local SQLite and Azurite), the sender
against real HTTP receivers on loopback, Standard Webhooks signatures checked with the
spec's reference library, and the whole path through real API and worker processes."""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from api.schemas import JobOut, public_job
from core.backends import Backends
from core.backends.outbox import FINAL_SEQUENCE, DeliveryStatus, WebhookEvent, event_id
from core.config import load_settings
from core.errors import ConfigError, InvalidInput, LeaseLost, PreconditionFailed
from core.jobs import Job, JobKind, JobParams, JobStatus, manifest_blob_path, new_job_id, utcnow
from core.webhooks import WebhookSender, check_callback_url, final_event, pinned_request, signed_headers
from tests.waiting import wait_until

pytestmark = pytest.mark.timeout(300)

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


# --- helpers -------------------------------------------------------------------------------


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


# --- the outbox contract, on both backends ----------------------------------------------------


def test_a_final_state_and_its_event_are_stored_together_or_not_at_all(backends: Backends) -> None:
    job = stored_job(backends)
    stale = backends.jobs.get(job.id)
    settled = settle(backends, job)
    [event] = backends.outbox.events(job.id)
    assert (event.id, event.type, event.status, event.attempts) == (
        event_id(job.id, FINAL_SEQUENCE), "job.completed", DeliveryStatus.PENDING, 0)
    assert json.loads(event.body)["data"]["updated_at"] == settled.updated_at.isoformat().replace("+00:00", "Z")

    # a write that loses the etag race stores neither the job nor an event
    other = stored_job(backends)
    stale_other = backends.jobs.get(other.id)
    backends.jobs.modify(other.id, lambda j: setattr(j, "progress", 0.5))
    with pytest.raises(PreconditionFailed):
        backends.jobs.update(stale_other, event=lambda j: final_event(j, public_job(j)))
    assert backends.outbox.events(other.id) == []

    # settling again (a redelivered message) updates the job but adds no second event
    stale.status = JobStatus.COMPLETED
    with pytest.raises(PreconditionFailed):
        backends.jobs.update(stale, event=lambda j: final_event(j, public_job(j)))
    again = backends.jobs.modify(job.id, lambda j: setattr(j, "progress", 1.0),
                                 event=lambda j: final_event(j, public_job(j)))
    assert again.etag != settled.etag
    assert [e.id for e in backends.outbox.events(job.id)] == [event.id]
    assert backends.outbox.add(event) is False


def test_no_callback_url_no_event(backends: Backends) -> None:
    job = stored_job(backends, url=None)
    settle(backends, job)
    assert backends.outbox.events(job.id) == [] and backends.outbox.latest(job.id) is None


def test_a_claim_is_a_lease_and_an_expired_lease_passes_the_event_to_another_sender(backends: Backends) -> None:
    job = stored_job(backends)
    settle(backends, job)
    now = utcnow()
    [first] = backends.outbox.claim(now, LEASE, limit=10)
    assert backends.outbox.claim(now, LEASE, limit=10) == []  # leased: nobody else gets it
    # the first sender is killed; once the lease runs out, another sender claims it
    [second] = backends.outbox.claim(now + LEASE + timedelta(seconds=1), LEASE, limit=10)
    assert second.id == first.id and second.lease != first.lease
    with pytest.raises(LeaseLost):  # the first sender, back from the dead, may not record
        backends.outbox.save(first.with_outcome(DeliveryStatus.DELIVERED, attempts=1))
    saved = backends.outbox.save(second.with_outcome(DeliveryStatus.DELIVERED, attempts=1, delivered_at=now))
    assert backends.outbox.latest(job.id) == saved
    assert saved.leased_until is None
    later = now + timedelta(days=1)
    assert backends.outbox.claim(later, LEASE, limit=10) == []  # settled events are never claimed
    # nor stored again by a redelivered message settling the job once more
    assert backends.outbox.add(replace(first, lease=None, leased_until=None)) is False
    backends.jobs.modify(job.id, lambda j: None, event=lambda j: final_event(j, public_job(j)))
    assert backends.outbox.events(job.id) == [saved]
    assert backends.outbox.claim(later, LEASE, limit=10) == []


def test_a_retrying_event_waits_for_its_next_attempt(backends: Backends) -> None:
    job = stored_job(backends)
    settle(backends, job)
    now = utcnow()
    [claimed] = backends.outbox.claim(now, LEASE, limit=1)
    retry_at = now + timedelta(minutes=5)
    backends.outbox.save(claimed.with_outcome(DeliveryStatus.RETRYING, attempts=1, last_error="HTTP 503",
                                         next_attempt_at=retry_at))
    assert backends.outbox.claim(now + timedelta(minutes=4), LEASE, limit=1) == []
    [again] = backends.outbox.claim(retry_at, LEASE, limit=1)
    assert (again.attempts, again.last_error, again.status) == (1, "HTTP 503", DeliveryStatus.RETRYING)


def test_a_jobs_events_go_out_in_order_and_a_destination_one_at_a_time(backends: Backends) -> None:
    first_job, second_job, third_job = (stored_job(backends) for _ in range(3))
    shared, other = "http://hooks.example:8080/a", "http://user:secret@Other.Example/b"
    backends.outbox.add(event_for(first_job.id, shared, sequence=FINAL_SEQUENCE))
    backends.outbox.add(event_for(first_job.id, shared, sequence=1))  # created later, comes first
    backends.outbox.add(event_for(second_job.id, shared))
    backends.outbox.add(event_for(third_job.id, other))
    now = utcnow()

    claimed = backends.outbox.claim(now, LEASE, limit=10)
    assert len(claimed) == 2 and {e.destination for e in claimed} == {"http://hooks.example:8080",
                                                                       "http://other.example"}
    assert all(e.sequence != FINAL_SEQUENCE or e.job_id != first_job.id for e in claimed)
    assert backends.outbox.claim(now, LEASE, limit=10, busy={"http://hooks.example:8080"}) == []

    # once the first job's first event is settled its next one may go, never before
    for event in claimed:
        backends.outbox.save(event.with_outcome(DeliveryStatus.DELIVERED, attempts=1))
    delivered = {(e.job_id, e.sequence) for e in claimed}
    while len(delivered) < 4:
        batch = backends.outbox.claim(now, LEASE, limit=10)
        assert batch, f"nothing claimable, {delivered} delivered"
        for event in batch:
            if event.job_id == first_job.id and event.sequence == FINAL_SEQUENCE:
                assert (first_job.id, 1) in delivered
            delivered.add((event.job_id, event.sequence))
            backends.outbox.save(event.with_outcome(DeliveryStatus.DELIVERED, attempts=1))
    assert [e.sequence for e in backends.outbox.events(first_job.id)] == [1, FINAL_SEQUENCE]


def test_a_destination_with_a_backlog_does_not_hide_another(backends: Backends) -> None:
    backlog = [stored_job(backends) for _ in range(30)]
    for job in backlog:
        backends.outbox.add(event_for(job.id, "http://down.example/hook"))
    last = stored_job(backends)
    backends.outbox.add(event_for(last.id, "http://up.example/hook"))  # created last, due last
    claimed = backends.outbox.claim(utcnow(), LEASE, limit=2)
    assert sorted(e.destination for e in claimed) == ["http://down.example", "http://up.example"]


def test_a_large_event_round_trips_and_deleting_the_job_deletes_its_events(backends: Backends) -> None:
    job = stored_job(backends)
    big = json.dumps({"zones": ["x" * 1000] * 200})  # 200 KB: over one Azure property's 64 KiB
    backends.outbox.add(event_for(job.id, "http://hooks.example/a", body=big))
    assert backends.outbox.latest(job.id).body == big
    backends.jobs.delete(job.id)
    assert backends.outbox.events(job.id) == []


@pytest.mark.azurite
def test_on_azure_a_settled_event_leaves_the_range_claims_scan(make_settings) -> None:
    from azure.data.tables import TableClient

    from core.backends import build_backends

    settings = make_settings("azure")
    backends = build_backends(settings)
    table = TableClient.from_connection_string(settings.azure_storage_connection_string, settings.jobs_table)
    try:
        job = stored_job(backends)
        settle(backends, job)

        def keys() -> list[str]:
            return [e["RowKey"][:5] for e in table.query_entities("RowKey gt '~evs' and RowKey lt '~evu'")]

        assert keys() == ["~evt-"]
        [claimed] = backends.outbox.claim(utcnow(), LEASE, 1)
        backends.outbox.save(claimed.with_outcome(DeliveryStatus.RETRYING, attempts=1, next_attempt_at=utcnow()))
        assert keys() == ["~evt-"]  # still to deliver
        [claimed] = backends.outbox.claim(utcnow(), LEASE, 1)
        backends.outbox.save(claimed.with_outcome(DeliveryStatus.DELIVERED, attempts=2))
        assert keys() == ["~evs-"]  # claims no longer read it, however many events pile up
        assert backends.outbox.latest(job.id).status is DeliveryStatus.DELIVERED
    finally:
        table.close()
        backends.close()


# --- signatures ------------------------------------------------------------------------------


def test_signatures_follow_the_spec_and_verify_with_the_reference_library() -> None:
    # the spec's own example: secret, id, timestamp and body give exactly this signature
    example = replace(event_for("x", "http://a.example/"), id="msg_p5jXN8AQM9LWM0D4loKWxJek",
                      body='{"test": 2432232314}')
    when = datetime.fromtimestamp(1614265330, tz=timezone.utc)
    headers = signed_headers(example, SECRET, when)
    assert headers["webhook-signature"] == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    assert headers["webhook-id"] == "msg_p5jXN8AQM9LWM0D4loKWxJek" and headers["webhook-timestamp"] == "1614265330"

    event = event_for(new_job_id(), "http://a.example/")
    now = utcnow()
    fresh = signed_headers(event, SECRET, now)
    assert Webhook(SECRET).verify(event.body, fresh) == json.loads(event.body)
    with pytest.raises(WebhookVerificationError, match="signature"):
        Webhook(SECRET).verify(event.body.replace("1", "2"), fresh)  # tampered body
    with pytest.raises(WebhookVerificationError, match="too old"):  # a replay, ten minutes on
        Webhook(SECRET).verify(event.body, signed_headers(event, SECRET, now - timedelta(minutes=10)))
    # a plain (non-whsec) secret is the key as it is
    assert Webhook(b"hush").verify(event.body, signed_headers(event, "hush", now)) is not None
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(event.body, signed_headers(event, "hush", now))
    assert "webhook-signature" not in signed_headers(event, None, now)


def test_the_documented_receiver_accepts_our_webhook_once_and_refuses_a_forged_one(monkeypatch) -> None:
    from fastapi.testclient import TestClient

    api_doc = (Path(__file__).resolve().parent.parent / "docs" / "api.md").read_text()
    code = api_doc.split("A receiver in a few lines", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    monkeypatch.setenv("WEBHOOK_SECRET", SECRET)
    receiver: dict = {}
    exec(compile(code, "docs/api.md receiver", "exec"), receiver)  # noqa: S102 - our own documentation
    job = Job(id=new_job_id(), input_blob="jobs/x/input", status=JobStatus.COMPLETED,
              params=JobParams(callback_url="http://127.0.0.1:9/hook"))
    event = final_event(job, public_job(job))
    headers = signed_headers(event, SECRET, utcnow())
    with TestClient(receiver["app"]) as client:
        assert client.post("/hook", content=event.body, headers=headers).status_code == 200
        assert client.post("/hook", content=event.body, headers=headers).status_code == 200  # a retry
        forged = client.post("/hook", content=event.body.replace("completed", "failed"), headers=headers)
        assert forged.status_code == 400
    assert receiver["seen"] == {event.id}


def test_a_whsec_secret_that_is_not_base64_is_refused_at_start() -> None:
    with pytest.raises(ConfigError, match="WEBHOOK_SECRET: starts with whsec_"):
        load_settings({"WEBHOOK_SECRET": "whsec_not base64!"}, env_file=None)
    assert load_settings({"WEBHOOK_SECRET": SECRET}, env_file=None).webhook_secret == SECRET


def test_the_payload_is_the_public_job_and_nothing_internal(backends: Backends) -> None:
    job = stored_job(backends)
    settle(backends, job, JobStatus.FAILED)
    body = backends.outbox.latest(job.id).body
    payload = json.loads(body)
    assert set(payload) == {"type", "timestamp", "data"} and payload["type"] == "job.failed"
    assert set(payload["data"]) == set(JobOut.model_fields) - {"webhook"}
    assert payload["data"]["job_id"] == job.id and payload["data"]["status"] == "failed"
    for internal in (*INTERNAL_FIELDS, job.input_blob, job.idempotency_key):
        assert internal not in body


# --- the sender, against real receivers --------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_hanging_receiver_does_not_delay_another_destination(backend, make_settings, receivers) -> None:
    from core.backends import build_backends

    backends = build_backends(make_settings(backend))
    hanging, healthy = receivers(hang=3), receivers()
    sender = make_sender(make_settings, backends.outbox, webhook_timeout_s=60, webhook_concurrency=2)
    try:
        stuck = [stored_job(backends, hanging.url) for _ in range(3)]  # created first: due first
        for job in stuck:
            settle(backends, job)
        fine = stored_job(backends, healthy.url)
        settle(backends, fine)
        sender.start()
        started = time.monotonic()
        wait_until(lambda: healthy.received, 10, "the healthy receiver's webhook")
        assert time.monotonic() - started < 10
        wait_until(lambda: backends.outbox.latest(fine.id).status is DeliveryStatus.DELIVERED, 10, "delivered")
        # the hanging destination holds one delivery slot, not both: the others wait their turn
        assert hanging.holding == 1 and len(hanging.received) == 1
        hanging.release.set()
        wait_until(lambda: all(backends.outbox.latest(j.id).status is DeliveryStatus.DELIVERED for j in stuck),
                   30, "the held-up webhooks once the receiver answers")
    finally:
        hanging.release.set()
        sender.close()
        backends.close()


def test_a_failing_receiver_is_retried_with_the_same_id_and_an_old_event_expires(backends, make_settings,
                                                                                 receivers) -> None:
    receiver = receivers(status=503)
    sender = make_sender(make_settings, backends.outbox, webhook_max_age_s=60)
    try:
        job = stored_job(backends, receiver.url)
        settle(backends, job)
        [claimed] = backends.outbox.claim(utcnow(), sender.lease, 1)
        retrying = backends.outbox.save(sender.attempt(claimed))
        assert retrying.status is DeliveryStatus.RETRYING and retrying.attempts == 1
        assert "503" in retrying.last_error and retrying.next_attempt_at > retrying.last_attempt_at

        receiver.status = 200
        [again] = backends.outbox.claim(retrying.next_attempt_at, sender.lease, 1)
        delivered = backends.outbox.save(sender.attempt(again))
        assert (delivered.status, delivered.attempts, delivered.last_error) == (DeliveryStatus.DELIVERED, 2, None)
        (first_headers, _), (second_headers, _) = receiver.received
        assert first_headers["webhook-id"] == second_headers["webhook-id"] == delivered.id

        receiver.status = 500
        old = replace(event_for(new_job_id(), receiver.url), created_at=utcnow() - timedelta(seconds=61))
        given_up = sender.attempt(old)
        assert given_up.status is DeliveryStatus.FAILED and given_up.next_attempt_at is None
    finally:
        sender.close()


def test_closing_the_sender_sends_what_is_due_first(make_settings, backends, receivers) -> None:
    """A worker run with --burst exits right after its last job: that job's webhook goes out
    before it does, not whenever another worker next runs."""
    receiver = receivers()
    sender = make_sender(make_settings, backends.outbox)
    job = stored_job(backends, receiver.url)
    settle(backends, job)
    sender.close()
    assert backends.outbox.latest(job.id).status is DeliveryStatus.DELIVERED and len(receiver.received) == 1


def test_the_receivers_answer_body_is_not_read(make_settings, backends, receivers) -> None:
    """Only the status counts: a receiver announcing an endless answer neither fills our
    memory nor holds the delivery until the timeout."""
    receiver = receivers(endless_answer=True)
    sender = make_sender(make_settings, backends.outbox, webhook_timeout_s=60)
    try:
        started = time.monotonic()
        assert sender.attempt(event_for(new_job_id(), receiver.url)).status is DeliveryStatus.DELIVERED
        assert time.monotonic() - started < 10
    finally:
        receiver.release.set()
        sender.close()


def test_a_webhook_goes_to_the_checked_address_and_keeps_its_host_name(make_settings, backends, receivers) -> None:
    """The name is resolved once, checked, and that address is the one connected to (so DNS
    rebinding cannot redirect it); the receiver still sees the name it was given."""
    receiver = receivers()
    port = receiver.url.split(":")[2].split("/")[0]
    named = f"http://localhost:{port}/hook"
    sender = make_sender(make_settings, backends.outbox)
    try:
        assert sender.attempt(event_for(new_job_id(), named)).status is DeliveryStatus.DELIVERED
    finally:
        sender.close()
    headers, body = receiver.received[0]
    assert headers["Host"] == f"localhost:{port}" and body == b'{"n": 1}'
    with pytest.raises(InvalidInput, match="non-public"):
        check_callback_url(named, allow_private=False)


def test_a_pinned_request_targets_the_address_and_verifies_tls_against_the_name() -> None:
    request_url, host, extensions = pinned_request("https://hooks.example.com:8443/in?x=1", "2001:db8::7")
    assert str(request_url) == "https://[2001:db8::7]:8443/in?x=1"
    assert host == {"Host": "hooks.example.com:8443"}
    assert extensions == {"sni_hostname": "hooks.example.com"}  # the certificate is checked for the name


# --- end to end: real API and worker processes ---------------------------------------------------


@pytest.mark.slow
def test_the_webhook_is_signed_retried_and_its_status_shown_on_the_job(start_service, small_clip, receivers):
    receiver = receivers(status=500)
    service = start_service("local", webhook_allow_private=True, webhook_secret=SECRET)
    job_id = service.submit(small_clip, callback_url=receiver.url)["job_id"]
    service.wait_for_status(job_id, {"completed"})
    retrying = wait_until(lambda: (w := service.job(job_id)["webhook"]) and w["status"] == "retrying" and w,
                          30, "GET /jobs/{id} to show the failed attempt")
    assert retrying["attempts"] >= 1 and "HTTP 500" in retrying["last_error"] and retrying["next_attempt_at"]
    receiver.status = 200
    delivered = wait_until(lambda: (w := service.job(job_id)["webhook"])["status"] == "delivered" and w,
                           60, "the retried webhook to be delivered")
    assert delivered["attempts"] == len(receiver.received) >= 2 and delivered["last_error"] is None

    headers, body = receiver.received[-1]
    payload = Webhook(SECRET).verify(body, headers)  # the reference implementation accepts it
    assert headers["webhook-id"] == delivered["event_id"] == receiver.received[0][0]["webhook-id"]
    assert payload["type"] == "job.completed"
    assert set(payload["data"]) == set(JobOut.model_fields) - {"webhook"}
    public = service.job(job_id)
    assert payload["data"]["job_id"] == job_id and payload["data"]["counts"] == public["counts"]
    for internal in INTERNAL_FIELDS:
        assert internal not in body.decode()
    assert "X-Signature" not in headers


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_a_killed_workers_webhook_is_delivered_by_the_next_worker(start_service, backend, small_clip, receivers):
    receiver = receivers(hang=1)  # the first delivery hangs: the worker dies holding it
    service = start_service(backend, webhook_allow_private=True, webhook_secret=SECRET, webhook_timeout_s=3)
    job_id = service.submit(small_clip, callback_url=receiver.url)["job_id"]
    service.wait_for_status(job_id, {"completed"})
    wait_until(lambda: receiver.holding == 1, 30, "the first delivery to reach the receiver")
    service.workers[0].stop()  # SIGKILL, mid-delivery
    assert service.job(job_id)["webhook"]["status"] == "pending"  # nothing was recorded

    service.start_worker()
    delivered = wait_until(lambda: (w := service.job(job_id)["webhook"])["status"] == "delivered" and w,
                           90, "the next worker to deliver it once the lease ran out")
    assert delivered["attempts"] == 1  # the killed attempt was never recorded
    ids = {headers["webhook-id"] for headers, _ in receiver.received}
    assert len(receiver.received) == 2 and ids == {delivered["event_id"]}  # a retry, not a new event
    Webhook(SECRET).verify(receiver.received[1][1], receiver.received[1][0])


@pytest.mark.slow
def test_a_job_cancelled_while_queued_gets_its_webhook_when_a_worker_sees_it(start_service, small_clip, receivers):
    receiver = receivers()
    service = start_service("local", workers=0, webhook_allow_private=True, webhook_secret="hush")
    job_id = service.submit(small_clip, callback_url=receiver.url)["job_id"]
    assert service.client.delete(f"/jobs/{job_id}").json()["status"] == "cancelled"
    service.start_worker()
    headers, body = wait_until(lambda: receiver.received and receiver.received[0], 60, "the webhook")
    payload = Webhook(b"hush").verify(body, headers)
    assert payload["type"] == "job.cancelled" and payload["data"]["job_id"] == job_id
    wait_until(lambda: service.backends.queue.approximate_length() == 0, 30, "the message to be acknowledged")
    wait_until(lambda: service.job(job_id)["webhook"]["status"] == "delivered", 30, "the delivery to be recorded")
    assert len(receiver.received) == 1


def test_an_images_job_with_failed_files_sends_completed_with_errors(backends: Backends) -> None:
    """Issue 14: the partial-results status reaches the webhook, with the file counts."""
    job_id = new_job_id()
    backends.jobs.create(Job(id=job_id, kind=JobKind.IMAGES, input_blob=manifest_blob_path(job_id),
                             params=JobParams(callback_url="http://127.0.0.1:9/hook"), files_total=20))

    def partial(job: Job) -> None:
        job.status, job.files_done, job.files_failed = JobStatus.COMPLETED_WITH_ERRORS, 18, 2

    backends.jobs.modify(job_id, partial, event=lambda j: final_event(j, public_job(j)))
    [event] = backends.outbox.events(job_id)
    data = json.loads(event.body)["data"]
    assert event.type == "job.completed_with_errors"
    assert (data["status"], data["kind"], data["files_done"], data["files_failed"]) == (
        "completed_with_errors", "images", 18, 2)
    assert "files" in data["links"] and "results" in data["links"]
