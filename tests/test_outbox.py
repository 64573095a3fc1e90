"""The webhook outbox contract, on both backends (local SQLite and Azurite): a final state and
its event are stored together, claims are leases, order per job, one delivery per destination at
a time."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta

import pytest

from core.backends import Backends
from core.backends.outbox import FINAL_SEQUENCE, DeliveryStatus, event_id
from core.errors import LeaseLost, PreconditionFailed
from core.jobs import Job, JobKind, JobParams, JobStatus, manifest_blob_path, new_job_id, utcnow
from core.public_job import public_job
from core.webhooks import final_event
from tests.fixtures_webhooks import LEASE, event_for, settle, stored_job

pytestmark = pytest.mark.timeout(300)


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


def test_an_images_job_with_failed_files_sends_completed_with_errors(backends: Backends) -> None:
    """The partial-results status reaches the webhook, with the file counts."""
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
