"""Quotas per tenant (core/quotas.py) over real HTTP (TestClient, the local backend): queued
jobs, stored bytes and stream hours refused at submit, the processing limit in the worker,
the admin's GET /tenants/usage, and what /metrics shows of them."""

from __future__ import annotations

import json
import threading
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from core import metrics
from core.backends import build_backends
from core.config import load_settings
from core.errors import ConfigError
from core.jobs import JobStatus, LiveInfo
from tests.test_api import complete_with_outputs, upload
from tests.test_tenants import ADMIN, ALICE, BOB, KEYS, OUTPUTS, as_
from tests.test_worker import queue_job
from worker.models import DetectorCache
from worker.runner import JobRunner, Outcome

SOURCE = "rtsp://127.0.0.1:8554/cam"
MULTIPART = "multipart/form-data; boundary=x"
LEASE = timedelta(seconds=30)


@pytest.fixture
def make_api(make_settings):
    made = []

    def make(**overrides):
        settings = make_settings("local", stream_allowed_networks=["127.0.0.0/8"], **KEYS, **overrides)
        backends = build_backends(settings)
        client = TestClient(create_app(settings, backends))
        client.__enter__()
        client.backends, client.settings = backends, settings
        made.append(client)
        return client

    yield make
    for client in made:
        client.__exit__(None, None, None)
        client.backends.close()


def stored(api) -> set[str]:
    return {blob.path for blob in api.backends.blobs.list("")}


def refusals(quota: str) -> float:
    labels = {"quota": quota, "owner": metrics.ALL_OWNERS}
    return metrics.REGISTRY.get_sample_value("cattlecounter_quota_refusals_total", labels) or 0.0


def set_status(api, job_id: str, status: JobStatus) -> None:
    api.backends.jobs.modify(job_id, lambda job: setattr(job, "status", status))


def test_a_tenant_at_its_queued_jobs_limit_gets_429_until_one_starts(make_api, small_clip):
    api = make_api(tenant_quotas={"alice": {"max_queued_jobs": 2}})
    first, second = (upload(api, small_clip, headers=as_(ALICE)) for _ in range(2))
    assert (first.status_code, second.status_code) == (202, 202)
    before, refused_before = stored(api), refusals("queued_jobs")

    refused = upload(api, small_clip, headers={**as_(ALICE), "Idempotency-Key": "third"})
    assert refused.status_code == 429, refused.text
    assert refused.json()["error"]["code"] == "quota_exceeded"
    assert "QUOTA_MAX_QUEUED_JOBS" in refused.json()["error"]["message"]
    assert int(refused.headers["retry-after"]) > 0
    assert stored(api) == before and api.backends.queue.approximate_length() == 2  # nothing kept, nothing queued
    assert refusals("queued_jobs") == refused_before + 1
    assert upload(api, small_clip, headers=as_(BOB)).status_code == 202  # bob has no limit
    # without an Idempotency-Key the refusal comes before the body is read: even a broken one
    unread = api.post("/jobs", content=b"--x\r\nbroken", headers={**as_(ALICE), "content-type": MULTIPART})
    assert unread.status_code == 429, unread.text
    assert api.post("/jobs", content=b"--x\r\nbroken", headers={**as_(BOB), "content-type": MULTIPART}).status_code == 422

    set_status(api, first.json()["job_id"], JobStatus.PROCESSING)  # a worker took one
    again = upload(api, small_clip, headers={**as_(ALICE), "Idempotency-Key": "third"})
    assert again.status_code == 202, again.text  # the refused key was not kept


def test_stored_bytes_over_the_limit_are_422_and_deleting_makes_room(make_api, small_clip):
    size = small_clip.stat().st_size
    api = make_api(quota_max_stored_bytes=size + size // 2)
    first = upload(api, small_clip, headers=as_(ALICE))
    assert first.status_code == 202
    refused = upload(api, small_clip, headers=as_(ALICE))
    assert refused.status_code == 422 and refused.json()["error"]["code"] == "request_exceeds_quota"
    assert "retry-after" not in refused.headers
    assert upload(api, small_clip, headers=as_(BOB)).status_code == 202  # the limit is per tenant

    complete_with_outputs(api, first.json()["job_id"], OUTPUTS)
    assert api.delete(f"/jobs/{first.json()['job_id']}", headers=as_(ALICE)).status_code == 204
    assert upload(api, small_clip, headers=as_(ALICE)).status_code == 202


def test_stream_hours_booked_at_once_are_limited(make_api):
    api = make_api(quota_max_stream_hours=2)

    def stream(**body):
        return api.post("/streams", json={"source_url": SOURCE, **body}, headers=as_(ALICE))

    no_end, too_long = stream(), stream(duration_s=3 * 3600)
    for refused in (no_end, too_long):
        assert refused.status_code == 422 and refused.json()["error"]["code"] == "request_exceeds_quota"
    assert "no end" in no_end.json()["error"]["message"]

    running = stream(duration_s=1.5 * 3600)
    assert running.status_code == 202
    running_id = running.json()["job_id"]
    api.backends.jobs.modify(running_id, lambda job: setattr(job, "status", JobStatus.PROCESSING))
    over = stream(duration_s=3600)
    assert over.status_code == 429 and over.json()["error"]["code"] == "quota_exceeded"
    # room for the new hour once the running stream has 1 h left: after about 30 min
    assert 1790 <= int(over.headers["retry-after"]) <= 1800

    def streamed_an_hour(job) -> None:
        job.live = LiveInfo(streaming_s=3600)

    api.backends.jobs.modify(running_id, streamed_an_hour)  # 0.5 h booked now
    assert stream(duration_s=3600).status_code == 202


def test_the_worker_hands_back_a_job_whose_tenant_runs_its_quota(make_settings):
    settings = make_settings("local", quota_max_processing_jobs=1, retry_backoff_s=0.2)
    backends = build_backends(settings)
    try:
        running = queue_job(backends, owner="alice")
        set_status_of = backends.jobs.modify
        set_status_of(running.id, lambda job: setattr(job, "status", JobStatus.PROCESSING))
        backends.queue.receive(LEASE)  # the running job's own message, leased by its worker
        waiting = queue_job(backends, owner="alice")
        other = queue_job(backends, owner="bob")
        runner = JobRunner(settings, backends, DetectorCache(settings), threading.Event())
        hand_backs = metrics.REGISTRY.get_sample_value("cattlecounter_quota_hand_backs_total") or 0.0

        assert runner.handle(backends.queue.receive(LEASE)) is Outcome.LATER
        held = backends.jobs.get(waiting.id)
        assert (held.status, held.handed_back, held.attempts) == (JobStatus.QUEUED, 1, 0)
        assert metrics.REGISTRY.get_sample_value("cattlecounter_quota_hand_backs_total") == hand_backs + 1

        bobs = backends.queue.receive(LEASE)  # alice's message is hidden: bob's comes first
        assert json.loads(bobs.body)["job_id"] == other.id
        backends.queue.release(bobs)
        assert not runner.quotas.at_processing_limit(backends.jobs.get(other.id))

        set_status_of(running.id, lambda job: setattr(job, "status", JobStatus.COMPLETED))
        assert not runner.quotas.at_processing_limit(held)  # its turn has come
    finally:
        backends.close()


def test_the_admin_sees_each_tenants_usage_and_quotas(make_api, small_clip):
    api = make_api(quota_max_queued_jobs=5, tenant_quotas={"bob": {"max_queued_jobs": 9, "max_stored_bytes": 10**9}})
    upload(api, small_clip, headers=as_(ALICE))
    processing = upload(api, small_clip, headers=as_(ALICE)).json()["job_id"]
    set_status(api, processing, JobStatus.PROCESSING)

    assert api.get("/tenants/usage", headers=as_(ALICE)).status_code == 403
    answer = api.get("/tenants/usage", headers=as_(ADMIN))
    assert answer.status_code == 200, answer.text
    tenants = {entry["tenant"]: entry for entry in answer.json()["tenants"]}
    assert set(tenants) == {"alice", "bob", "default", "ops"}
    assert tenants["alice"]["usage"] == {"queued_jobs": 1, "processing_jobs": 1,
                                         "stored_bytes": 2 * small_clip.stat().st_size, "stream_hours_booked": 0.0}
    assert tenants["alice"]["quota"]["max_queued_jobs"] == 5
    assert tenants["bob"]["quota"] == {"max_queued_jobs": 9, "max_processing_jobs": 0,
                                       "max_stored_bytes": 10**9, "max_stream_hours": 0.0}
    limits = api.get("/metrics", headers=as_(ADMIN)).text
    assert 'cattlecounter_quota_limit{quota="queued_jobs"} 5.0' in limits


def test_defaults_limit_nothing(make_api, small_clip):
    api = make_api()
    assert api.settings.quota_for("alice") == api.settings.quota_for("anyone")
    assert all(value == 0 for value in vars(api.settings.quota_for("alice")).values())
    for _ in range(3):
        assert upload(api, small_clip, headers=as_(ALICE)).status_code == 202


@pytest.mark.parametrize(("value", "message"), [
    ('{"a b": {"max_queued_jobs": 1}}', "not a tenant name"),
    ('{"alice": {"max_queued": 1}}', "TENANT_QUOTAS"),
    ('{"alice": {"max_queued_jobs": -1}}', "TENANT_QUOTAS"),
    ("alice=3", "not JSON"),
])
def test_bad_tenant_quotas_are_config_errors(value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings({"TENANT_QUOTAS": value}, env_file=None)


def test_a_real_server_reads_its_quotas_and_metrics_key_from_the_environment(start_service, small_clip):
    service = start_service("local", workers=0, metrics_key="scraper-key-0c9e4f11",
                            tenant_quotas={"alice": {"max_queued_jobs": 1}}, **KEYS)
    assert service.env["TENANT_QUOTAS"].startswith("{")  # what the process read: JSON
    assert service.submit(small_clip, headers=as_(ALICE))["status"] == "queued"
    with small_clip.open("rb") as video:
        refused = service.client.post("/jobs", files={"file": ("clip.mp4", video)}, headers=as_(ALICE))
    assert refused.status_code == 429 and refused.headers["retry-after"] == "30", refused.text
    assert service.submit(small_clip, headers=as_(BOB))["status"] == "queued"

    assert service.client.get("/metrics").status_code == 401
    scraped = service.client.get("/metrics", headers={"Authorization": "Bearer scraper-key-0c9e4f11"})
    assert scraped.status_code == 200
    assert 'cattlecounter_quota_refusals_total{owner="*",quota="queued_jobs"} 1.0' in scraped.text
    assert 'cattlecounter_jobs_submitted_total{owner="*"} 2.0' in scraped.text

