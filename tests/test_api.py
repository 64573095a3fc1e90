"""The API in-process (TestClient) over the real local backend: validation, idempotency,
listing, cancel/delete, downloads with Range, direct uploads and API keys. No worker here:
tests/test_service_e2e.py runs API and workers as real processes."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from core.backends import Backends, build_backends
from core.errors import StorageUnavailable
from core.jobs import JobMessage, JobStatus, output_blob_path
from core.model_card import ModelCard, card_path, publish_card
from tests.faults import FailingMethod
from tests.fixtures_service import in_process_api
from tests.fixtures_video import write_clip, write_png, write_text_file


@pytest.fixture
def api(make_settings):
    with in_process_api(make_settings("local", max_upload_bytes=2_000_000)) as client:
        yield client


def upload(client, path: Path, name: str | None = None, headers=None, **fields):
    with path.open("rb") as handle:
        return client.post("/jobs", files={"file": (name or path.name, handle)}, data=fields, headers=headers or {})


def stored_paths(client) -> list[str]:
    return [blob.path for blob in client.backends.blobs.list("")]


def test_upload_queues_a_job_and_one_message(api, small_clip):
    response = upload(api, small_clip, classes="Cow, sheep", threshold="0.4", lines="0,10,100,10")
    assert response.status_code == 202, response.text
    body = response.json()
    assert response.headers["location"] == f"/jobs/{body['job_id']}"
    assert body["status"] == "queued"
    assert body["params"]["classes"] == ["cow", "sheep"]
    assert body["params"]["lines"][0]["start"] == [0.0, 10.0]
    assert body["size_bytes"] == small_clip.stat().st_size
    message = api.backends.queue.receive(timedelta(seconds=30))
    assert JobMessage.decode(message.body).job_id == body["job_id"]
    assert api.backends.queue.receive(timedelta(seconds=30)) is None


def test_submit_job_alias_behaves_like_post_jobs(api, small_clip):
    response = api.post("/submit-job", files={"file": ("a.mp4", small_clip.read_bytes())})
    assert response.status_code == 202
    assert api.get(f"/jobs/{response.json()['job_id']}").json()["status"] == "queued"


@pytest.mark.parametrize(
    "make_file, status, code",
    [(write_text_file, 415, "not_a_video")],
)
def test_non_videos_are_rejected_by_their_bytes_and_nothing_is_stored(api, tmp_path, make_file, status, code):
    path = make_file(tmp_path / "looks-like.mp4")  # the extension lies; the bytes decide
    response = upload(api, path)
    assert response.status_code == status, response.text
    if code:
        assert response.json()["error"]["code"] == code
    assert "looks-like.mp4" in response.json()["error"]["message"]
    assert stored_paths(api) == []
    assert api.get("/jobs").json()["jobs"] == []


def test_an_image_named_like_a_video_is_an_images_job_by_its_bytes(api, tmp_path):
    """An image is not refused with 415; the bytes, not the name, make it an
    images job of one file."""
    response = upload(api, write_png(tmp_path / "looks-like.mp4"))
    assert response.status_code == 202, response.text
    assert (response.json()["kind"], response.json()["files_total"]) == ("images", 1)


def test_empty_upload_is_422(api, tmp_path):
    response = api.post("/jobs", files={"file": ("empty.mp4", b"")})
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "empty_file"


def test_oversize_declared_upload_is_413_before_reading(api):
    response = api.post("/jobs", content=b"x" * 10, headers={
        "content-type": "multipart/form-data; boundary=abc", "content-length": str(50_000_000)})
    assert response.status_code == 413
    assert "limit" in response.json()["error"]["message"]


def test_oversize_streamed_upload_is_413_and_leaves_nothing(api, tmp_path):
    big = tmp_path / "big.mp4"
    big.write_bytes(b"\0" * 3_000_000)  # over the 2 MB limit, sent without a usable length
    def chunks():
        yield b"--abc\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.mp4\"\r\n\r\n"
        with big.open("rb") as handle:
            while chunk := handle.read(65536):
                yield chunk
        yield b"\r\n--abc--\r\n"
    response = api.post("/jobs", content=chunks(), headers={"content-type": "multipart/form-data; boundary=abc"})
    assert response.status_code == 413
    assert stored_paths(api) == []
    assert list((api.app.state.scratch_dir).iterdir()) == []


@pytest.mark.parametrize(
    "fields, field",
    [({"threshold": "1.5"}, "threshold"), ({"frame_stride": "0"}, "frame_stride"),
     ({"lines": "1,2,3"}, "lines"), ({"zones": "[{\"polygon\": [[0,0],[1,1]]}]"}, "zones"),
     ({"callback_url": "ftp://example.com/x"}, "callback_url"), ({"model_id": "x/y"}, "model_id"),
     ({"params": "{\"unknown\": 1}"}, "unknown"),
     # not finite: JSON has no NaN, so such a record could never be read back
     ({"lines": "nan,0,1,1"}, "lines.0.start"), ({"lines": "1e400,0,1,1"}, "lines.0.start"),
     ({"zones": "[{\"polygon\": [[0,0],[1,Infinity],[2,2]]}]"}, "zones.0.polygon"),
     ({"threshold": "nan"}, "threshold"), ({"tiling": "4x4"}, "tiling"), ({"tiling": "yes"}, "tiling"),
     ({"tracker": "sort"}, "tracker"), ({"stitching": "maybe"}, "stitching")],
)
def test_bad_params_are_422_naming_the_field(api, small_clip, fields, field):
    response = upload(api, small_clip, **fields)
    assert response.status_code == 422, response.text
    assert field in response.json()["error"]["message"]
    assert stored_paths(api) == []


def test_filename_with_path_components_never_reaches_a_path(api, small_clip):
    response = upload(api, small_clip, name="../../etc/x.mp4")
    assert response.status_code == 202
    assert response.json()["filename"] == "x.mp4"
    assert all(path.startswith("jobs/") for path in stored_paths(api))


def test_idempotency_key_returns_the_same_job(api, small_clip):
    first = upload(api, small_clip, headers={"Idempotency-Key": "abc-1"})
    second = upload(api, small_clip, headers={"Idempotency-Key": "abc-1"})
    third = upload(api, small_clip, headers={"Idempotency-Key": "abc-2"})
    assert first.status_code == 202 and second.status_code == 200
    assert second.headers["idempotent-replayed"] == "true"
    assert first.json()["job_id"] == second.json()["job_id"] != third.json()["job_id"]
    assert len(api.get("/jobs").json()["jobs"]) == 2
    assert len([p for p in stored_paths(api) if p.endswith("/input")]) == 2


def test_unknown_job_is_404_and_results_before_completion_are_409(api, small_clip):
    assert api.get("/jobs/nope").status_code == 404
    job_id = upload(api, small_clip).json()["job_id"]
    for route in ("result", "video", "detections", "exports/coco", "exports/mot", "exports/tracks.csv",
                  "exports/timeline.csv", "exports/lines.csv"):
        response = api.get(f"/jobs/{job_id}/{route}")
        assert response.status_code == 409, route
        assert "queued" in response.json()["error"]["message"]


def test_list_is_newest_first_with_status_filter_and_cursor(api, small_clip):
    ids = [upload(api, small_clip).json()["job_id"] for _ in range(5)]
    api.delete(f"/jobs/{ids[1]}")  # cancel one
    page1 = api.get("/jobs", params={"limit": 2}).json()
    page2 = api.get("/jobs", params={"limit": 2, "cursor": page1["next_cursor"]}).json()
    page3 = api.get("/jobs", params={"limit": 2, "cursor": page2["next_cursor"]}).json()
    listed = [job["job_id"] for page in (page1, page2, page3) for job in page["jobs"]]
    assert listed == list(reversed(ids))
    assert page3["next_cursor"] is None
    cancelled = api.get("/jobs", params={"status": "cancelled"}).json()["jobs"]
    assert [job["job_id"] for job in cancelled] == [ids[1]]
    assert api.get("/jobs", params={"status": "bogus"}).status_code == 422


def test_delete_cancels_a_queued_job_then_deletes_it_and_its_files(api, small_clip):
    job_id = upload(api, small_clip).json()["job_id"]
    cancelled = api.delete(f"/jobs/{job_id}")
    assert cancelled.status_code == 202 and cancelled.json()["status"] == "cancelled"
    assert api.delete(f"/jobs/{job_id}").status_code == 204
    assert api.get(f"/jobs/{job_id}").status_code == 404
    assert stored_paths(api) == []


def test_delete_of_a_running_job_asks_the_worker_to_stop(api, small_clip):
    job_id = upload(api, small_clip).json()["job_id"]
    api.backends.jobs.modify(job_id, lambda job: setattr(job, "status", JobStatus.PROCESSING))
    response = api.delete(f"/jobs/{job_id}")
    assert response.status_code == 202
    assert response.json()["status"] == "processing" and response.json()["cancel_requested"] is True


def complete_with_outputs(api, job_id: str, files: dict[str, bytes]) -> None:
    """Store outputs and mark the job completed exactly as the worker does, via the real stores."""
    outputs = {}
    for name, data in files.items():
        blob = output_blob_path(job_id, name)
        api.backends.blobs.upload_stream(blob, [data])
        outputs[name] = blob

    def finish(job):
        job.status, job.outputs, job.counts = JobStatus.COMPLETED, outputs, {"total_unique": 3}
    api.backends.jobs.modify(job_id, finish)


def test_downloads_and_video_range_requests(api, small_clip):
    job_id = upload(api, small_clip).json()["job_id"]
    video = bytes(range(256)) * 40  # 10240 bytes
    complete_with_outputs(api, job_id, {
        "annotated.mp4": video, "stats.json": b'{"counts": {"total_unique": 3}}',
        "detections.jsonl": b'{"frame": 0}\n', "coco.json": b"{}", "mot.txt": b"1,1,0,0,1,1,0.9,-1,-1,-1\n"})
    job = api.get(f"/jobs/{job_id}").json()
    assert job["counts"] == {"total_unique": 3} and "video" in job["links"]
    # a job completed before the CSV exports existed links none of them (no dead links)
    assert not [name for name in job["links"] if name.endswith("_csv")]
    assert api.get(f"/jobs/{job_id}/exports/tracks.csv").status_code == 409
    assert api.get(f"/jobs/{job_id}/result").json() == {"counts": {"total_unique": 3}}
    assert api.get(f"/jobs/{job_id}/detections").text == '{"frame": 0}\n'
    assert api.get(f"/jobs/{job_id}/exports/mot").text.startswith("1,1,")
    assert "attachment" in api.get(f"/jobs/{job_id}/exports/coco", params={"download": True}).headers[
        "content-disposition"]
    whole = api.get(f"/jobs/{job_id}/video")
    assert whole.status_code == 200 and whole.content == video and whole.headers["accept-ranges"] == "bytes"
    part = api.get(f"/jobs/{job_id}/video", headers={"Range": "bytes=100-199"})
    assert part.status_code == 206
    assert part.content == video[100:200]
    assert part.headers["content-range"] == f"bytes 100-199/{len(video)}"
    tail = api.get(f"/jobs/{job_id}/video", headers={"Range": "bytes=-10"})
    assert tail.content == video[-10:]
    outside = api.get(f"/jobs/{job_id}/video", headers={"Range": "bytes=99999-"})
    assert outside.status_code == 416 and outside.headers["content-range"] == f"bytes */{len(video)}"


def test_direct_upload_then_job(api, small_clip):
    ticket = api.post("/uploads", json={"filename": "../big.mp4"})
    assert ticket.status_code == 201
    ticket = ticket.json()
    assert api.put(ticket["upload_url"], content=small_clip.read_bytes()).status_code == 201
    response = api.post("/jobs", json={"upload_id": ticket["upload_id"], "params": {"classes": ["cow"]}})
    assert response.status_code == 202, response.text
    job = response.json()
    assert job["filename"] == "big.mp4" and job["size_bytes"] == small_clip.stat().st_size
    assert job["params"]["classes"] == ["cow"]
    record = api.backends.jobs.get(job["job_id"])  # pinned to the version that was checked
    assert record.input_etag == api.backends.blobs.info(record.input_blob).etag is not None


def test_direct_upload_of_a_non_video_is_rejected(api, tmp_path):
    ticket = api.post("/uploads", json={"filename": "x.mp4"}).json()
    api.put(ticket["upload_url"], content=b"not a video at all" * 100)
    response = api.post("/jobs", json={"upload_id": ticket["upload_id"]})
    assert response.status_code == 415
    assert api.post("/jobs", json={"upload_id": "does-not-exist"}).status_code == 422


def direct_upload(client, video: bytes) -> str:
    ticket = client.post("/uploads", json={"filename": "big.mp4"}).json()
    assert client.put(ticket["upload_url"], content=video).status_code == 201
    return ticket["upload_id"]


def test_an_upload_becomes_one_job_only(api, small_clip):
    """Posting an upload twice (with or without the same Idempotency-Key) returns its one
    job; deleting that job cannot take another job's input with it, and the checked input
    cannot be replaced afterwards."""
    upload_id = direct_upload(api, small_clip.read_bytes())
    first = api.post("/jobs", json={"upload_id": upload_id}, headers={"Idempotency-Key": "k1"})
    assert first.status_code == 202, first.text
    job = first.json()
    input_blob = api.backends.jobs.get(job["job_id"]).input_blob
    for headers in ({"Idempotency-Key": "k1"}, {"Idempotency-Key": "k2"}, {}):
        again = api.post("/jobs", json={"upload_id": upload_id}, headers=headers)
        assert again.status_code == 200 and again.json()["job_id"] == job["job_id"], (headers, again.text)
        assert api.backends.blobs.exists(input_blob)  # a replay never deletes the job's input
    assert len(api.get("/jobs").json()["jobs"]) == 1

    swapped = api.put(f"/uploads/{upload_id}", content=b"other bytes")
    assert swapped.status_code == 409 and swapped.json()["error"]["code"] == "upload_already_used"
    assert api.backends.blobs.info(input_blob).size == small_clip.stat().st_size


def test_a_503_keeps_the_direct_upload_so_the_client_can_retry(make_settings, small_clip):
    settings = make_settings("local")
    real = build_backends(settings)
    queue_down_once = FailingMethod(real.queue, "send", StorageUnavailable("queue service unreachable"), times=1)
    backends = Backends(blobs=real.blobs, queue=queue_down_once, jobs=real.jobs, outbox=real.outbox,
                        stream_queue=real.stream_queue)
    with TestClient(create_app(settings, backends)) as client:
        upload_id = direct_upload(client, small_clip.read_bytes())
        failed = client.post("/jobs", json={"upload_id": upload_id})
        assert failed.status_code == 503, failed.text
        assert client.get("/jobs").json()["jobs"] == []  # the record was rolled back with the message

        retried = client.post("/jobs", json={"upload_id": upload_id})
        assert retried.status_code == 202, retried.text
        assert real.blobs.exists(real.jobs.get(retried.json()["job_id"]).input_blob)
    real.close()


def test_a_direct_upload_over_max_upload_bytes_is_413_and_removed(api, tmp_path):
    big = write_clip(tmp_path / "big.mp4", frames=10)
    padded = big.read_bytes() + b"\0" * 2_000_001  # over the fixture's MAX_UPLOAD_BYTES
    upload_id = api.post("/uploads", json={"filename": "big.mp4"}).json()["upload_id"]
    # the local PUT stops at the limit itself; on Azure a SAS URL cannot, so the check that
    # counts is the one at job creation: store the bytes the way a SAS upload would
    api.backends.blobs.upload_stream(f"uploads/{upload_id}/data", [padded])
    response = api.post("/jobs", json={"upload_id": upload_id})
    assert response.status_code == 413 and response.json()["error"]["code"] == "upload_too_large"
    assert [path for path in stored_paths(api) if path.startswith("uploads/")] == []


def test_api_keys_are_required_when_configured(make_settings, small_clip):
    settings = make_settings("local", api_keys=["s3cret", "other"])
    backends = build_backends(settings)
    with TestClient(create_app(settings, backends)) as client:
        assert client.get("/health").status_code == 200  # probes stay open
        assert client.get("/jobs").status_code == 401
        assert client.get("/jobs", headers={"X-API-Key": "wrong"}).status_code == 401
        assert client.get("/jobs", headers={"X-API-Key": "other"}).status_code == 200
        refused = client.get("/jobs", params={"api_key": "s3cret"})  # query keys end up in access logs
        assert refused.status_code == 401 and "X-API-Key header" in refused.json()["error"]["message"]
        with small_clip.open("rb") as handle:
            assert client.post("/jobs", files={"file": ("a.mp4", handle)}).status_code == 401
    backends.close()


def test_health_ready_metrics_and_openapi(api):
    assert api.get("/health").json() == {"status": "ok"}
    ready = api.get("/ready")
    assert ready.status_code == 200 and ready.json()["checks"] == {"blobs": "ok", "queue": "ok", "jobs": "ok"}
    api.get("/jobs")
    assert 'cattlecounter_http_requests_total{method="GET",route="/jobs",status="200"}' in api.get("/metrics").text
    schema = api.get("/openapi.json").json()
    assert "multipart/form-data" in schema["paths"]["/jobs"]["post"]["requestBody"]["content"]
    assert api.get("/docs").status_code == 200


def test_errors_are_json_with_code_and_message(api):
    body = api.get("/jobs", params={"limit": 0}).json()
    assert body["error"]["code"] == "invalid_input" and "limit" in body["error"]["message"]
    assert json.loads(api.post("/jobs", content=b"{", headers={"content-type": "application/json"}).text)["error"]


# --- the model card: class names known to the API -----------------------------------------


def publish_test_card(client, model_id: str, classes: list[str]) -> None:
    """What a worker does once it has loaded ``model_id`` (worker/models.py)."""
    card = ModelCard(model_id=model_id, architecture="rt_detr_v2", classes=classes, random_weights=True, device="cpu")
    publish_card(client.backends.blobs, card)


def test_model_is_404_until_a_worker_has_published_its_card(api):
    response = api.get("/model")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "model_not_loaded"
    assert "worker" in response.json()["error"]["message"]

    model_id = api.app.state.settings.model_id
    publish_test_card(api, model_id, ["cow", "sheep", "horse"])
    card = api.get("/model").json()
    assert card["model_id"] == model_id and card["classes"] == ["cow", "sheep", "horse"]
    assert card["random_weights"] is True and card["device"] == "cpu"


def test_unknown_classes_are_refused_before_anything_is_stored(api, small_clip):
    publish_test_card(api, api.app.state.settings.model_id, ["cow", "sheep", "horse"])
    response = upload(api, small_clip, classes="Cow,kow,zebra")
    assert response.status_code == 422, response.text
    message = response.json()["error"]["message"]
    assert "'kow', 'zebra'" in message and "valid names: cow, sheep, horse" in message
    assert stored_paths(api) == [card_path(api.app.state.settings.model_id)]
    assert api.get("/jobs").json()["jobs"] == []

    # the direct-upload path checks them too, before the job is made
    upload_id = direct_upload(api, small_clip.read_bytes())
    refused = api.post("/jobs", json={"upload_id": upload_id, "params": {"classes": ["zebra"]}})
    assert refused.status_code == 422 and "'zebra'" in refused.json()["error"]["message"]

    accepted = upload(api, small_clip, classes="SHEEP, cow")
    assert accepted.status_code == 202, accepted.text
    assert accepted.json()["params"]["classes"] == ["sheep", "cow"]


def test_classes_are_left_to_the_worker_while_no_card_is_published(api, small_clip):
    response = upload(api, small_clip, classes="zebra")  # the worker fails the job if it is unknown
    assert response.status_code == 202, response.text
    job = response.json()
    assert job["status"] == "queued" and job["params"]["classes"] == ["zebra"]
    # stored as asked and queued, so the worker (which has the model) is the one to judge them
    assert api.backends.jobs.get(job["job_id"]).params.classes == ["zebra"]
    message = api.backends.queue.receive(timedelta(seconds=30))
    assert message is not None and JobMessage.decode(message.body).job_id == job["job_id"]


@pytest.mark.parametrize("name, stored_as", [("..", "video"), (".", "video"), ("é" * 200 + ".mp4", "é" * 127)])
def test_awkward_filenames_are_accepted_under_a_safe_name(api, small_clip, name, stored_as):
    response = upload(api, small_clip, name=name)
    assert response.status_code == 202, response.text
    assert response.json()["filename"] == stored_as  # at most 255 bytes of UTF-8, never a path
    assert list(api.app.state.scratch_dir.iterdir()) == []


def test_an_oversized_json_body_is_413_without_being_read_whole(api):
    padding = "x" * (2 * 1024 * 1024)
    response = api.post("/jobs", content=json.dumps({"upload_id": "u", "params": {}, "pad": padding}),
                        headers={"content-type": "application/json"})
    assert response.status_code == 413 and response.json()["error"]["code"] == "upload_too_large"


def test_unknown_paths_and_methods_answer_in_the_error_shape(api):
    missing = api.get("/nope")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    wrong_method = api.put("/jobs")
    assert wrong_method.status_code == 405 and wrong_method.json()["error"]["code"] == "method_not_allowed"
    assert "GET" in wrong_method.headers["allow"]


def test_abandoned_uploads_are_swept_and_a_jobs_upload_is_kept(api, small_clip):
    used = direct_upload(api, small_clip.read_bytes())
    job_id = api.post("/jobs", json={"upload_id": used}).json()["job_id"]
    never_posted = direct_upload(api, small_clip.read_bytes())
    never_sent = api.post("/uploads", json={"filename": "x.mp4"}).json()["upload_id"]
    orphan_data = "leftover-data"  # bytes with no reservation beside them
    api.backends.blobs.upload_stream(f"uploads/{orphan_data}/data", [b"partial"])
    submitter = api.app.state.submitter

    assert submitter.uploads.sweep_abandoned() == 0  # nothing is old yet
    two_days_on = datetime.now(UTC) + timedelta(days=2, seconds=api.app.state.settings.upload_url_ttl_s)
    assert submitter.uploads.sweep_abandoned(now=two_days_on) == 3
    left = {path.split("/")[1] for path in stored_paths(api) if path.startswith("uploads/")}
    assert left == {used}
    assert never_posted not in left and never_sent not in left and orphan_data not in left
    assert api.backends.blobs.exists(api.backends.jobs.get(job_id).input_blob)


# --- resource caps: MAX_VIDEO_PIXELS and MAX_VIDEO_SECONDS are checked at submit -------------------


@pytest.fixture
def capped_api(make_settings):
    """``capped_api(**caps)``: a client of an app with these resource-cap settings."""
    opened: list = []

    def start(**caps):
        settings = make_settings("local", **caps)
        backends = build_backends(settings)
        client = TestClient(create_app(settings, backends)).__enter__()
        client.backends = backends
        opened.append((client, backends))
        return client

    yield start
    for client, backends in opened:
        client.__exit__(None, None, None)
        backends.close()


@pytest.mark.parametrize("caps, code, words", [
    ({"max_video_pixels": 320 * 240 - 1}, "video_too_large", ["320x240", "MAX_VIDEO_PIXELS"]),
    ({"max_video_seconds": 1.5}, "video_too_long", ["MAX_VIDEO_SECONDS"]),  # small_clip runs 2 s
])
def test_a_video_over_a_cap_is_422_at_submit_and_nothing_is_stored(capped_api, small_clip, caps, code, words):
    api = capped_api(**caps)
    response = upload(api, small_clip)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == code and all(word in error["message"] for word in words)
    assert stored_paths(api) == [] and api.get("/jobs").json()["jobs"] == []

    upload_id = direct_upload(api, small_clip.read_bytes())  # the direct-upload path checks the same
    response = api.post("/jobs", json={"upload_id": upload_id})
    assert response.status_code == 422 and response.json()["error"]["code"] == code
    assert stored_paths(api) == []  # the refused upload is removed


def test_a_video_within_the_caps_is_accepted(capped_api, small_clip):
    api = capped_api(max_video_pixels=320 * 240, max_video_seconds=2.5)
    assert upload(api, small_clip).status_code == 202


def test_health_answers_503_with_the_reason_when_the_liveness_check_fails(make_settings):
    settings = make_settings("local")
    backends = build_backends(settings)
    problems = [None]
    try:
        with TestClient(create_app(settings, backends, liveness=lambda: problems[-1])) as client:
            assert client.get("/health").status_code == 200
            problems.append("job thread job-loop-0 died: RuntimeError()")
            response = client.get("/health")
            assert response.status_code == 503
            assert response.json() == {"status": "unhealthy", "problem": "job thread job-loop-0 died: RuntimeError()"}
    finally:
        backends.close()
