"""Tenants and credentials: keys with owners (API_KEYS name:key, ADMIN_API_KEYS), jobs, uploads,
idempotency and metrics scoped to the owner, keys in the query only on downloads, signed
download links, and a real uvicorn process whose access log must not hold a key."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from api.signed_urls import expiry, signed_path
from core import metrics
from core.backends import build_backends
from core.config import load_settings
from core.errors import ConfigError
from core.jobs import Job, JobStatus, new_job_id
from tests.fixtures_service import in_process_api
from tests.fixtures_stills import image_bytes
from tests.fixtures_telemetry import dji_srt
from tests.test_api import complete_with_outputs, upload
from tests.waiting import wait_until

ALICE, BOB, BARE, ADMIN = "alice-key-5f0e1c", "bob-key-93a7d2", "bare-key-44be01", "admin-key-c3d9a8"
KEYS = {"api_keys": [f"alice:{ALICE}", f"bob:{BOB}", BARE], "admin_api_keys": [f"ops:{ADMIN}"]}
OUTPUTS = {"annotated.mp4": bytes(range(256)) * 8, "stats.json": b'{"counts": {"total_unique": 3}}',
           "detections.jsonl": b"{}\n", "coco.json": b"{}", "mot.txt": b"1,1\n"}


@pytest.fixture
def api(make_settings):
    with in_process_api(make_settings("local", **KEYS)) as client:
        yield client


def as_(key: str) -> dict[str, str]:
    return {"X-API-Key": key}


def completed_job(api, clip, key: str) -> str:
    response = upload(api, clip, headers=as_(key))
    assert response.status_code == 202, response.text
    job_id = response.json()["job_id"]
    complete_with_outputs(api, job_id, OUTPUTS)
    return job_id


def test_another_tenants_job_is_404_everywhere_exactly_like_a_missing_one(api, small_clip):
    job_id = completed_job(api, small_clip, ALICE)
    missing_id = new_job_id()
    missing = api.get(f"/jobs/{missing_id}", headers=as_(BOB)).json()["error"]
    assert missing == {"code": "not_found", "message": f"job {missing_id} does not exist"}
    for method, path in [("GET", f"/jobs/{job_id}"), ("GET", f"/jobs/{job_id}/result"),
                         ("GET", f"/jobs/{job_id}/video"), ("GET", f"/jobs/{job_id}/exports/coco"),
                         ("POST", f"/jobs/{job_id}/links"), ("DELETE", f"/jobs/{job_id}")]:
        response = api.request(method, path, headers=as_(BOB))
        assert response.status_code == 404, (method, path, response.text)
        assert response.json()["error"] == {"code": "not_found", "message": f"job {job_id} does not exist"}
    assert api.get(f"/jobs/{job_id}/result", params={"api_key": BOB}).status_code == 404
    assert [job["job_id"] for job in api.get("/jobs", headers=as_(BOB)).json()["jobs"]] == []
    assert api.backends.jobs.get(job_id).status is JobStatus.COMPLETED  # bob's DELETE did nothing

    assert [job["job_id"] for job in api.get("/jobs", headers=as_(ALICE)).json()["jobs"]] == [job_id]
    assert api.get(f"/jobs/{job_id}/result", headers=as_(ALICE)).json() == {"counts": {"total_unique": 3}}
    assert api.delete(f"/jobs/{job_id}", headers=as_(ALICE)).status_code == 204


def test_idempotency_keys_are_per_tenant(api, small_clip):
    idem = {"Idempotency-Key": "nightly-upload"}
    alice = upload(api, small_clip, headers={**as_(ALICE), **idem})
    bob = upload(api, small_clip, headers={**as_(BOB), **idem})
    assert (alice.status_code, bob.status_code) == (202, 202)
    assert alice.json()["job_id"] != bob.json()["job_id"], "bob replaying alice's key must not get her job"
    again = upload(api, small_clip, headers={**as_(BOB), **idem})
    assert again.status_code == 200 and again.headers["idempotent-replayed"] == "true"
    assert again.json()["job_id"] == bob.json()["job_id"]


def test_an_idempotency_key_replays_only_the_request_it_came_with(api, small_clip):
    idem = {**as_(ALICE), "Idempotency-Key": "camera-7-monday"}
    first = upload(api, small_clip, headers=idem, threshold="0.4")
    assert first.status_code == 202, first.text
    same = upload(api, small_clip, headers=idem, params='{"threshold": 0.4}')  # the same request, spelt otherwise
    assert same.status_code == 200 and same.json()["job_id"] == first.json()["job_id"]

    stored_before = {blob.path for blob in api.backends.blobs.list("")}
    other_params = upload(api, small_clip, headers=idem, threshold="0.7")
    images = api.post("/jobs", files={"file": ("field.png", image_bytes("PNG", 64, 48))}, headers=idem)
    for reused in (other_params, images):
        assert reused.status_code == 422, reused.text
        assert reused.json()["error"]["code"] == "idempotency_key_reused"
        assert first.json()["job_id"] in reused.json()["error"]["message"]
    assert {blob.path for blob in api.backends.blobs.list("")} == stored_before  # the refused inputs are gone
    assert [job["job_id"] for job in api.get("/jobs", headers=as_(ALICE)).json()["jobs"]] == [first.json()["job_id"]]


def test_an_idempotency_key_tells_a_video_with_telemetry_from_the_same_video_without(api, small_clip):
    idem = {**as_(ALICE), "Idempotency-Key": "flight-12"}

    def post(telemetry: bytes | None):
        files = {"file": ("flight.mp4", small_clip.read_bytes())}
        if telemetry is not None:
            files["telemetry"] = ("DJI_0012.SRT", telemetry)
        return api.post("/jobs", files=files, headers=idem)

    first = post(dji_srt().encode())
    assert first.status_code == 202 and first.json()["telemetry"] == "DJI_0012.SRT", first.text
    assert post(dji_srt().encode()).json()["job_id"] == first.json()["job_id"]  # the same request, replayed
    stored_before = {blob.path for blob in api.backends.blobs.list("")}
    for other in (post(None), post(dji_srt(frames=5).encode())):
        assert other.status_code == 422 and other.json()["error"]["code"] == "idempotency_key_reused", other.text
    assert {blob.path for blob in api.backends.blobs.list("")} == stored_before  # their video and .SRT are gone


def test_a_direct_upload_replayed_with_its_key_must_ask_the_same(api, small_clip):
    ticket = api.post("/uploads", json={"filename": "a.mp4"}, headers=as_(ALICE)).json()
    assert api.put(ticket["upload_url"], content=small_clip.read_bytes(), headers=as_(ALICE)).status_code == 201

    def post(key: str | None, threshold: float):
        headers = {**as_(ALICE), **({"Idempotency-Key": key} if key else {})}
        return api.post("/jobs", json={"upload_id": ticket["upload_id"], "params": {"threshold": threshold}},
                        headers=headers)

    first = post("upload-a", 0.4)
    assert first.status_code == 202
    assert post("upload-a", 0.4).status_code == 200
    reused = post("upload-a", 0.7)
    assert reused.status_code == 422 and reused.json()["error"]["code"] == "idempotency_key_reused"
    # without that key the upload's own rule holds: one upload, one job, returned as it is
    assert post(None, 0.7).json()["job_id"] == first.json()["job_id"]


def test_a_job_recorded_before_fingerprints_is_replayed_as_before(api, small_clip):
    first = upload(api, small_clip, headers={**as_(ALICE), "Idempotency-Key": "old-key"})
    api.backends.jobs.modify(first.json()["job_id"], lambda job: setattr(job, "idempotency_fingerprint", None))
    again = upload(api, small_clip, headers={**as_(ALICE), "Idempotency-Key": "old-key"}, threshold="0.9")
    assert again.status_code == 200 and again.json()["job_id"] == first.json()["job_id"]


def test_a_bare_key_is_the_default_tenant_and_sees_jobs_from_before_owners(api, small_clip):
    old = api.backends.jobs.create(Job(id=new_job_id(), input_blob="jobs/x/input"))  # no owner given
    assert api.get(f"/jobs/{old.id}", headers=as_(BARE)).status_code == 200
    assert [job["job_id"] for job in api.get("/jobs", headers=as_(BARE)).json()["jobs"]] == [old.id]
    assert api.get(f"/jobs/{old.id}", headers=as_(ALICE)).status_code == 404
    mine = upload(api, small_clip, headers=as_(BARE)).json()["job_id"]
    assert api.backends.jobs.get(mine).owner == "default"


def test_an_admin_key_sees_lists_and_deletes_every_tenants_jobs(api, small_clip):
    alice = completed_job(api, small_clip, ALICE)
    bob = upload(api, small_clip, headers=as_(BOB)).json()["job_id"]
    listed = {job["job_id"] for job in api.get("/jobs", headers=as_(ADMIN)).json()["jobs"]}
    assert listed == {alice, bob}
    assert api.get(f"/jobs/{alice}/result", headers=as_(ADMIN)).status_code == 200
    assert api.delete(f"/jobs/{alice}", headers=as_(ADMIN)).status_code == 204
    own = upload(api, small_clip, headers=as_(ADMIN)).json()["job_id"]
    assert api.backends.jobs.get(own).owner == "ops"


def test_a_query_key_is_refused_on_api_routes_and_accepted_on_downloads(api, small_clip):
    job_id = completed_job(api, small_clip, ALICE)
    for path in ("/jobs", f"/jobs/{job_id}", "/model"):
        refused = api.get(path, params={"api_key": ALICE})
        assert refused.status_code == 401 and "X-API-Key header" in refused.json()["error"]["message"]
    assert api.post(f"/jobs/{job_id}/links", params={"api_key": ALICE}).status_code == 401
    video = api.get(f"/jobs/{job_id}/video", params={"api_key": ALICE})
    assert video.status_code == 200 and video.content == OUTPUTS["annotated.mp4"]
    assert api.get(f"/jobs/{job_id}/exports/mot", params={"api_key": ALICE, "download": "true"}).text == "1,1\n"
    assert api.get(f"/jobs/{job_id}/video", params={"api_key": "wrong"}).status_code == 401


def test_signed_links_open_their_own_download_until_they_expire(api, small_clip):
    job_id = completed_job(api, small_clip, ALICE)
    other_id = completed_job(api, small_clip, ALICE)
    answer = api.post(f"/jobs/{job_id}/links", headers=as_(ALICE))
    assert answer.status_code == 200, answer.text
    links = answer.json()["links"]
    assert set(links) == {"result", "video", "detections", "coco", "mot"}
    assert ALICE not in str(answer.json())

    video = api.get(links["video"])  # no key at all
    assert video.status_code == 200 and video.content == OUTPUTS["annotated.mp4"]
    ranged = api.get(links["video"] + "&download=true", headers={"Range": "bytes=0-9"})
    assert ranged.status_code == 206 and "attachment" in ranged.headers["content-disposition"]
    assert api.get(links["result"]).json() == {"counts": {"total_unique": 3}}

    query = links["video"].split("?", 1)[1]
    for stolen in (f"/jobs/{job_id}/result?{query}", f"/jobs/{other_id}/video?{query}"):
        assert api.get(stolen).status_code == 401, stolen  # a signature opens its own path only
    tampered = links["video"].replace("exp=", "exp=9")
    assert api.get(tampered).status_code == 401

    path = f"/jobs/{job_id}/video"
    expired = signed_path(api.settings, path, "alice", expiry(-1))
    assert api.get(expired).status_code == 401
    assert api.get(signed_path(api.settings, path, "alice", expiry(60))).status_code == 200
    assert api.get(signed_path(api.settings, path, "bob", expiry(60))).status_code == 401  # not bob's job
    # a signature is not an API key: it opens no API route
    assert api.get(f"/jobs/{job_id}?{query}").status_code == 401


@pytest.mark.parametrize("expires", ["past", "future", "soon"])
@pytest.mark.parametrize("route", ["result", "video", "files/a.jpg", "live/index.m3u8"])
def test_a_bad_signature_tells_nothing_about_whether_the_job_exists(api, small_clip, route: str, expires: str):
    """Without a key, another tenant's job and a job that never existed answer alike."""
    # the expiry is computed when the test runs: ids made at collection would differ between
    # xdist workers, which must collect the same tests
    expires = {"past": "1", "future": str(expiry(600))}.get(expires, expires)
    existing = completed_job(api, small_clip, ALICE)
    answers = [api.get(f"/jobs/{job_id}/{route}", params={"exp": expires, "sig": "x"})
               for job_id in (existing, new_job_id())]
    assert [answer.status_code for answer in answers] == [401, 401]
    assert answers[0].content == answers[1].content
    assert answers[0].json()["error"]["code"] == "unauthorized"


def test_direct_uploads_belong_to_their_tenant(api, small_clip):
    ticket = api.post("/uploads", json={"filename": "a.mp4"}, headers=as_(ALICE)).json()
    assert api.put(ticket["upload_url"], content=small_clip.read_bytes(), headers=as_(BOB)).status_code == 404
    assert api.put(ticket["upload_url"], content=small_clip.read_bytes(), headers=as_(ALICE)).status_code == 201
    stolen = api.post("/jobs", json={"upload_id": ticket["upload_id"]}, headers=as_(BOB))
    assert stolen.status_code == 422 and "unknown upload" in stolen.json()["error"]["message"]
    created = api.post("/jobs", json={"upload_id": ticket["upload_id"]}, headers=as_(ALICE))
    assert created.status_code == 202 and api.backends.jobs.get(created.json()["job_id"]).owner == "alice"


def submitted(owner: str) -> float:
    return metrics.REGISTRY.get_sample_value("cattlecounter_jobs_submitted_total", {"owner": owner}) or 0.0


def test_metrics_name_no_tenant_unless_a_setting_asks(api, small_clip):
    before_all, before_alice = submitted(metrics.ALL_OWNERS), submitted("alice")
    upload(api, small_clip, headers=as_(ALICE))
    assert (submitted(metrics.ALL_OWNERS) - before_all, submitted("alice") - before_alice) == (1, 0)
    text = api.get("/metrics", headers=as_(ADMIN)).text
    assert 'cattlecounter_jobs_submitted_total{owner="*"}' in text


def test_metrics_name_tenants_where_metrics_tenant_labels_is_on(make_settings, small_clip):
    settings = make_settings("local", metrics_tenant_labels=True, **KEYS)
    backends = build_backends(settings)
    with TestClient(create_app(settings, backends)) as client:
        before_alice, before_bob = submitted("alice"), submitted("bob")
        upload(client, small_clip, headers=as_(ALICE))
        assert (submitted("alice") - before_alice, submitted("bob") - before_bob) == (1, 0)
        assert 'cattlecounter_upload_bytes_total{owner="alice"}' in client.get("/metrics", headers=as_(ADMIN)).text
    backends.close()


METRICS_KEY = "scraper-key-7d1e0b5a"


def test_metrics_are_read_with_the_metrics_key_or_an_admin_key_only(make_settings):
    settings = make_settings("local", metrics_key=METRICS_KEY, **KEYS)
    backends = build_backends(settings)
    with TestClient(create_app(settings, backends)) as client:
        for headers in ({}, {"Authorization": "Bearer wrong-key"}, {"Authorization": f"Basic {METRICS_KEY}"},
                        {"X-API-Key": "wrong-key"}):
            refused = client.get("/metrics", headers=headers)
            assert refused.status_code == 401, (headers, refused.text)
            assert refused.headers["www-authenticate"].startswith("Bearer")
            assert "cattlecounter_" not in refused.text
        for tenant in (ALICE, BARE):
            forbidden = client.get("/metrics", headers=as_(tenant))
            assert forbidden.status_code == 403 and forbidden.json()["error"]["code"] == "forbidden"
        for headers in ({"Authorization": f"Bearer {METRICS_KEY}"}, as_(METRICS_KEY), as_(ADMIN),
                        {"Authorization": f"Bearer {ADMIN}"}):
            allowed = client.get("/metrics", headers=headers)
            assert allowed.status_code == 200 and "cattlecounter_http_requests_total" in allowed.text, headers
        assert client.get("/jobs", headers=as_(METRICS_KEY)).status_code == 401  # it opens /metrics alone
    backends.close()


def test_a_metrics_key_alone_closes_metrics_and_nothing_else(make_settings):
    settings = make_settings("local", metrics_key=METRICS_KEY)
    backends = build_backends(settings)
    with TestClient(create_app(settings, backends)) as client:
        assert client.get("/metrics").status_code == 401
        assert client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_KEY}"}).status_code == 200
        assert client.get("/jobs").status_code == 200  # no API keys: the API itself stays open
    backends.close()


def test_metrics_need_a_key_once_api_keys_are_set_even_without_a_metrics_key(api):
    assert api.get("/metrics").status_code == 401
    assert api.get("/metrics", headers=as_(BOB)).status_code == 403
    assert api.get("/metrics", headers=as_(ADMIN)).status_code == 200


@pytest.mark.parametrize(("env", "message"), [
    ({"API_KEYS": "alice:k1-long-enough-key", "METRICS_KEY": "k1-long-enough-key"}, "METRICS_KEY is also an API key"),
    ({"METRICS_KEY": "short"}, "METRICS_KEY"),
])
def test_bad_metrics_keys_are_config_errors(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(env, env_file=None)


def test_no_keys_keeps_the_open_local_mode(make_settings, small_clip):
    with in_process_api(make_settings("local")) as client:
        job_id = completed_job(client, small_clip, "")
        assert client.get(f"/jobs/{job_id}").status_code == 200
        assert client.get(f"/jobs/{job_id}/result").status_code == 200
        links = client.post(f"/jobs/{job_id}/links").json()["links"]
        assert client.get(links["video"]).status_code == 200
        assert client.get("/metrics").status_code == 200  # no keys, no METRICS_KEY: open, as before
        assert client.backends.jobs.get(job_id).owner == "default"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"API_KEYS": "bad name:key"}, "API_KEYS"),
        ({"API_KEYS": "alice:"}, "API_KEYS"),
        ({"API_KEYS": "alice:k1", "ADMIN_API_KEYS": "ops:k1"}, "same key twice"),
        ({"URL_SIGNING_SECRET": "short"}, "URL_SIGNING_SECRET"),
    ],
)
def test_bad_key_settings_are_config_errors(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as raised:
        load_settings(env, env_file=None)
    assert "k1" not in str(raised.value).replace("API_KEYS", "")  # keys are not echoed back


def test_keys_parse_into_owners() -> None:
    settings = load_settings({"API_KEYS": " alice:a:b , bare ", "ADMIN_API_KEYS": "root"}, env_file=None)
    assert [(k.owner, k.key, k.admin) for k in settings.accepted_keys] == [
        ("alice", "a:b", False), ("default", "bare", False), ("default", "root", True)]


# --- a real server's access log ----------------------------------------------------------------


def test_the_access_log_of_a_real_server_holds_no_key_or_signature(start_service, small_clip):
    service = start_service("local", workers=0, log_format="json", **KEYS)
    job_id = service.submit(small_clip, headers=as_(ALICE))["job_id"]
    refused = service.client.get("/jobs", params={"api_key": ALICE})
    assert refused.status_code == 401
    assert service.client.get(f"/jobs/{job_id}/result", params={"api_key": ALICE}).status_code == 409  # not done
    signed = signed_path(service.settings, f"/jobs/{job_id}/video", "alice", expiry(60))
    signature = signed.split("sig=", 1)[1]
    assert service.client.get(signed).status_code == 409
    service.client.get("/health", headers={"Authorization": f"Bearer {BOB}", "X-API-Key": BOB})

    api_log = service.processes[0]
    wait_until(lambda: f"/jobs/{job_id}/video" in api_log.log(), 10, "the access log line of the signed request")
    log = api_log.log()
    assert f"/jobs/{job_id}/result?api_key=[REDACTED]" in log and "sig=[REDACTED]" in log
    for secret in (ALICE, BOB, signature):
        assert secret not in log


def test_signed_links_work_behind_a_proxy_prefix(api, small_clip):
    """Behind a proxy serving the API under /cattle (uvicorn --root-path), a link is checked
    against the route's own path, as it was signed."""
    job_id = completed_job(api, small_clip, ALICE)
    link = api.post(f"/jobs/{job_id}/links", headers=as_(ALICE)).json()["links"]["result"]
    with TestClient(api.app, root_path="/cattle") as proxied:
        answer = proxied.get("/cattle" + link)
        assert answer.status_code == 200, answer.text
