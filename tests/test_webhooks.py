"""Webhooks (core/webhooks.py): Standard Webhooks signatures checked with the spec's reference
library, the payload, address checks, and the sender against real HTTP receivers on loopback.
Fast: no API or worker processes (those are in test_webhooks_e2e.py)."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from core.backends import Backends
from core.backends.outbox import DeliveryStatus
from core.config import load_settings
from core.errors import ConfigError, InvalidInput
from core.jobs import Job, JobParams, JobStatus, new_job_id, utcnow
from core.public_job import JobOut, public_job
from core.webhooks import check_callback_url, final_event, pinned_request, signed_headers
from tests.fixtures_webhooks import (
    BACKENDS,
    INTERNAL_FIELDS,
    SECRET,
    event_for,
    make_sender,
    settle,
    stored_job,
)
from tests.waiting import wait_until

pytestmark = pytest.mark.timeout(300)


def test_signatures_follow_the_spec_and_verify_with_the_reference_library() -> None:
    # the spec's own example: secret, id, timestamp and body give exactly this signature
    example = replace(event_for("x", "http://a.example/"), id="msg_p5jXN8AQM9LWM0D4loKWxJek",
                      body='{"test": 2432232314}')
    when = datetime.fromtimestamp(1614265330, tz=UTC)
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


