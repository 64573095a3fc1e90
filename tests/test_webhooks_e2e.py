"""Webhooks through real API and worker processes: signed, retried, delivered after a worker is
killed, and sent for a job cancelled while queued."""

from __future__ import annotations

import pytest
from standardwebhooks import Webhook

from api.schemas import JobOut
from tests.fixtures_webhooks import BACKENDS, INTERNAL_FIELDS, SECRET
from tests.waiting import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


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
