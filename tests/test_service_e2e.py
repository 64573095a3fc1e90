"""API and workers as real processes over real storage (local files + SQLite, and Azurite):
upload over HTTP, poll to completion, check every output, and the faults that must lose
nothing and duplicate nothing."""

from __future__ import annotations

import csv
import io
import json
import signal
import zipfile
from pathlib import Path

import av
import httpx
import pytest
from PIL import Image

from ml_engine.outputs import validate_stats
from tests.fixtures_video import write_clip
from tests.tcp_proxy import TcpProxy
from tests.waiting import wait_until

pytestmark = pytest.mark.slow

LONG_FRAMES = 300
BACKENDS = ["local", pytest.param("azure", marks=pytest.mark.azurite)]


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory) -> Path:
    """Long enough (30 s at 10 fps) that a test can act while the worker is mid-job."""
    return write_clip(tmp_path_factory.mktemp("long") / "long.mp4", frames=LONG_FRAMES)


def queue_length(service) -> int:
    return service.backends.queue.approximate_length()


def fetch_video(service, job_id: str) -> bytes:
    response = service.client.get(f"/jobs/{job_id}/video")
    if service.settings.storage_backend.value == "azure":
        assert response.status_code == 307  # a time-limited SAS URL on the storage account
        response = httpx.get(response.headers["location"])
    assert response.status_code == 200, response.text
    return response.content


@pytest.mark.parametrize("backend", BACKENDS)
def test_upload_to_every_output(shared_service, backend, small_clip, tmp_path):
    service = shared_service(backend)
    model = service.client.get("/model").json()  # published by the worker once its model loaded
    assert model["classes"] == ["cow", "sheep", "horse", "person"] and model["random_weights"] is True
    with small_clip.open("rb") as handle:
        refused = service.client.post("/jobs", files={"file": handle}, data={"classes": "cow,zebra"})
    assert refused.status_code == 422 and "'zebra'" in refused.json()["error"]["message"]
    # docs/api.md's multi-line syntax and two unnamed zones: the default names keep them apart
    unnamed_zones = json.dumps([{"polygon": [[0, 0], [320, 0], [320, 120]]},
                                {"polygon": [[0, 0], [160, 0], [0, 240]]}])
    job = service.submit(small_clip, lines="0,120,320,120;0,60,320,60", zones=unnamed_zones)
    done = service.wait_for_status(job["job_id"], {"completed", "failed"})
    assert done["status"] == "completed", done
    assert done["attempts"] == 1 and done["progress"] == 1.0
    assert done["frames_done"] == done["frames_total"] == 20  # exact, whatever the last progress report said

    stats = service.client.get(f"/jobs/{job['job_id']}/result").json()
    validate_stats(stats)
    assert stats["counts"] == done["counts"]
    assert stats["video"]["frames"] == 20 and stats["model"]["random_weights"] is True
    assert [line["name"] for line in stats["lines"]] == ["line-1", "line-2"]
    assert [zone["name"] for zone in stats["zones"]] == ["zone-1", "zone-2"]

    video_path = tmp_path / "annotated.mp4"
    video_path.write_bytes(fetch_video(service, job["job_id"]))
    download = service.client.get(f"/jobs/{job['job_id']}/video", params={"download": "true"}, follow_redirects=True)
    assert download.headers["content-disposition"].startswith("attachment")  # through the SAS URL on Azure
    with av.open(str(video_path)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert sum(1 for _ in container.decode(stream)) == 20

    detections = service.client.get(f"/jobs/{job['job_id']}/detections").text.splitlines()
    assert len(detections) == stats["processing"]["frames_processed"]
    assert json.loads(detections[0])["frame"] == 0
    coco = service.client.get(f"/jobs/{job['job_id']}/exports/coco").json()
    assert len(coco["images"]) == len(detections)
    mot = service.client.get(f"/jobs/{job['job_id']}/exports/mot").text
    assert all(len(line.split(",")) == 10 for line in mot.splitlines())
    wait_until(lambda: queue_length(service) == 0, 10, "the message to be deleted")


def test_local_video_supports_range_requests(shared_service, small_clip):
    service = shared_service("local")
    job_id = service.submit(small_clip)["job_id"]
    service.wait_for_status(job_id, {"completed"})
    whole = service.client.get(f"/jobs/{job_id}/video").content
    part = service.client.get(f"/jobs/{job_id}/video", headers={"Range": "bytes=0-99"})
    assert part.status_code == 206 and part.content == whole[:100]


def test_killed_worker_job_is_redelivered_after_the_lease_and_completes(start_service, long_clip):
    service = start_service("local")
    job_id = service.submit(long_clip)["job_id"]
    wait_until(lambda: service.job(job_id)["frames_done"] > 0, 60, "the first worker to make progress")
    service.workers[0].signal(signal.SIGKILL)
    service.workers[0].wait(10)
    assert service.job(job_id)["status"] == "processing"  # nobody has settled it

    service.start_worker()
    done = service.wait_for_status(job_id, {"completed", "failed"}, timeout=240)
    assert done["status"] == "completed", done
    assert done["attempts"] == 2
    assert service.client.get(f"/jobs/{job_id}/result").json()["video"]["frames"] == LONG_FRAMES
    assert service.backends.queue.peek_poison() == []
    wait_until(lambda: queue_length(service) == 0, 10, "the queue to drain")


def test_cancel_mid_run_stops_the_worker_which_serves_the_next_job(shared_service, long_clip, small_clip):
    service = shared_service("local")
    job_id = service.submit(long_clip)["job_id"]
    wait_until(lambda: service.job(job_id)["frames_done"] > 0, 60, "the worker to start")
    response = service.client.delete(f"/jobs/{job_id}")
    assert response.status_code == 202 and response.json()["cancel_requested"] is True
    cancelled = service.wait_for_status(job_id, {"cancelled", "completed"}, timeout=60)
    assert cancelled["status"] == "cancelled"
    assert cancelled["frames_done"] < LONG_FRAMES
    assert service.client.get(f"/jobs/{job_id}/result").status_code == 409

    next_id = service.submit(small_clip)["job_id"]
    assert service.wait_for_status(next_id, {"completed", "failed"})["status"] == "completed"
    assert service.client.delete(f"/jobs/{job_id}").status_code == 204  # now it can be deleted


def test_poison_video_fails_with_a_clear_error_and_the_worker_goes_on(shared_service, bad_videos, small_clip):
    service = shared_service("local")
    bad_id = service.submit(bad_videos["truncated_midstream"])["job_id"]  # passes the API's probe
    good_id = service.submit(small_clip)["job_id"]
    failed = service.wait_for_status(bad_id, {"failed", "completed"})
    assert failed["status"] == "failed"
    assert failed["error"]["code"] == "corrupt_video"
    assert "truncated" in failed["error"]["message"] or "damaged" in failed["error"]["message"]
    assert service.wait_for_status(good_id, {"completed", "failed"})["status"] == "completed"
    assert service.workers[0].popen.poll() is None


def test_duplicate_idempotency_key_makes_one_job_and_one_message(start_service, small_clip):
    service = start_service("local", workers=0)
    first = service.submit(small_clip, headers={"Idempotency-Key": "upload-42"})
    second = service.submit(small_clip, headers={"Idempotency-Key": "upload-42"})
    assert first["job_id"] == second["job_id"]
    assert queue_length(service) == 1
    assert len(service.client.get("/jobs").json()["jobs"]) == 1


def test_sigterm_lets_the_running_job_finish_then_exits(start_service, long_clip):
    service = start_service("local", shutdown_grace_s=120)
    job_id = service.submit(long_clip, frame_stride="3")["job_id"]
    wait_until(lambda: service.job(job_id)["frames_done"] > 0, 60, "the worker to start")
    service.workers[0].signal(signal.SIGTERM)
    assert service.workers[0].wait(180) == 0, service.logs()
    assert service.job(job_id)["status"] == "completed"


def test_grace_period_over_releases_the_job_for_another_worker(start_service, long_clip):
    service = start_service("local", shutdown_grace_s=0.5)
    job_id = service.submit(long_clip)["job_id"]
    wait_until(lambda: service.job(job_id)["frames_done"] > 0, 60, "the worker to start")
    service.workers[0].signal(signal.SIGTERM)
    assert service.workers[0].wait(60) == 0, service.logs()
    assert service.job(job_id)["status"] == "queued"  # released, not failed, not cancelled
    assert queue_length(service) == 1
    service.start_worker()
    done = service.wait_for_status(job_id, {"completed", "failed"}, timeout=240)
    assert done["status"] == "completed" and done["attempts"] == 2


def test_private_webhook_urls_are_refused_by_default(start_service, small_clip):
    service = start_service("local", workers=0)
    with small_clip.open("rb") as handle:
        response = service.client.post("/jobs", files={"file": ("a.mp4", handle)},
                                       data={"callback_url": "http://127.0.0.1:9/x"})
    assert response.status_code == 422
    assert "WEBHOOK_ALLOW_PRIVATE" in response.json()["error"]["message"]


@pytest.mark.azurite
def test_two_workers_on_azure_share_the_queue_without_duplicates(start_service, small_clip):
    service = start_service("azure", workers=2)
    ids = [service.submit(small_clip)["job_id"] for _ in range(4)]
    for job_id in ids:
        done = service.wait_for_status(job_id, {"completed", "failed"})
        assert done["status"] == "completed" and done["attempts"] == 1
    wait_until(lambda: queue_length(service) == 0, 15, "the queue to drain")


@pytest.mark.azurite
def test_storage_outage_answers_503_and_the_worker_recovers(start_service, azurite_connection_string, small_clip):
    ports = dict(part.split("=", 1) for part in azurite_connection_string.split(";") if part)
    proxies = {name: TcpProxy(int(ports[name].rsplit(":", 1)[1].split("/")[0]))
               for name in ("BlobEndpoint", "QueueEndpoint", "TableEndpoint")}
    proxied = azurite_connection_string
    for name, proxy in proxies.items():
        upstream = ports[name]
        proxied = proxied.replace(upstream, upstream.replace(upstream.rsplit(":", 1)[1].split("/")[0],
                                                             str(proxy.port), 1))
    try:
        service = start_service("azure", azure_storage_connection_string=proxied)
        before_id = service.submit(small_clip)["job_id"]
        service.wait_for_status(before_id, {"completed"})
        for proxy in proxies.values():
            proxy.cut()
        outage = service.client.get(f"/jobs/{before_id}")
        assert outage.status_code == 503, outage.text
        assert "storage is unavailable" in outage.json()["error"]["message"]
        assert outage.headers["retry-after"]
        assert service.client.get("/ready").status_code == 503
        with small_clip.open("rb") as handle:
            assert service.client.post("/jobs", files={"file": ("a.mp4", handle)}).status_code == 503

        for proxy in proxies.values():
            proxy.restore()
        job_id = service.submit(small_clip)["job_id"]
        assert service.wait_for_status(job_id, {"completed", "failed"})["status"] == "completed"
        assert service.workers[0].popen.poll() is None  # the same worker process, no restart
    finally:
        for proxy in proxies.values():
            proxy.close()


@pytest.mark.azurite
def test_a_direct_upload_replaced_through_its_sas_url_after_submission_fails_the_job(start_service, small_clip,
                                                                                      tmp_path):
    """The SAS write URL outlives the submission; the job pins the version the API checked,
    so bytes written afterwards are refused by the worker instead of being counted."""
    service = start_service("azure", workers=0)
    ticket = service.client.post("/uploads", json={"filename": "herd.mp4"}).json()
    put = httpx.put(ticket["upload_url"], content=small_clip.read_bytes(), headers=ticket["headers"])
    assert put.status_code == 201, put.text
    job_id = service.client.post("/jobs", json={"upload_id": ticket["upload_id"]}).json()["job_id"]
    other_video = write_clip(tmp_path / "other.mp4", frames=12).read_bytes()  # valid, but never checked
    swapped = httpx.put(ticket["upload_url"], content=other_video, headers=ticket["headers"])
    assert swapped.status_code == 201  # storage itself cannot refuse it

    service.start_worker()
    failed = service.wait_for_status(job_id, {"completed", "failed"})
    assert failed["status"] == "failed" and failed["error"]["code"] == "input_changed", failed


def read_csv(response: httpx.Response) -> list[dict[str, str]]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    return list(csv.DictReader(io.StringIO(response.content.decode("utf-8"), newline="")))


def test_a_video_jobs_csv_exports_read_back_as_its_stats(shared_service, small_clip):
    service = shared_service("local")
    job_id = service.submit(small_clip, lines="0,120,320,120", threshold="0.05")["job_id"]
    done = service.wait_for_status(job_id, {"completed", "failed"})
    assert done["status"] == "completed", done
    stats = service.client.get(f"/jobs/{job_id}/result").json()
    links = done["links"]
    assert {links[name] for name in ("tracks_csv", "timeline_csv", "lines_csv")} == {
        f"/jobs/{job_id}/exports/{name}" for name in ("tracks.csv", "timeline.csv", "lines.csv")}

    tracks = read_csv(service.client.get(links["tracks_csv"]))
    assert len(tracks) == stats["counts"]["total_unique"]  # one row per counted animal
    assert [(int(row["id"]), row["class"], int(row["frames_seen"])) for row in tracks] == [
        (t["id"], t["class"], t["frames_seen"]) for t in stats["tracks"]]
    timeline = read_csv(service.client.get(links["timeline_csv"]))
    assert [(int(row["frame"]), int(row["count"])) for row in timeline] == [
        (entry["frame"], entry["count"]) for entry in stats["timeline"]]
    lines = read_csv(service.client.get(links["lines_csv"]))
    assert [(row["name"], int(row["in_total"]), int(row["out_total"])) for row in lines] == [
        (line["name"], line["in_total"], line["out_total"]) for line in stats["lines"]]
    # a signed link opens it without the key, as the dashboard's download links do
    signed = service.client.post(f"/jobs/{job_id}/links").json()["links"]["tracks_csv"]
    assert read_csv(httpx.get(service.api_url + signed)) == tracks


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_gallery_downloads_as_one_zip_with_a_picture_per_counted_animal(shared_service, backend, small_clip):
    service = shared_service(backend)
    job_id = service.submit(small_clip, threshold="0.05")["job_id"]
    done = service.wait_for_status(job_id, {"completed", "failed"})
    assert done["status"] == "completed", done
    stats = service.client.get(f"/jobs/{job_id}/result").json()
    count = stats["counts"]["total_unique"]
    assert count > 0, "the tiny model counted nothing: the test would prove nothing"
    links = done["links"]
    assert (links["gallery"], links["gallery_zip"], links["crops"]) == (
        f"/jobs/{job_id}/gallery", f"/jobs/{job_id}/gallery.zip", f"/jobs/{job_id}/crops/")
    gallery = service.client.get(links["gallery"]).json()
    assert gallery["count"] == len(gallery["items"]) == count  # one item per counted animal
    assert [item["id"] for item in gallery["items"]] == [track["id"] for track in stats["tracks"]]

    response = service.client.get(links["gallery_zip"], params={"download": "true"})
    assert response.status_code == 200 and response.headers["content-type"] == "application/zip"
    assert response.headers["content-disposition"] == f'attachment; filename="{job_id}-gallery.zip"'
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        assert json.loads(archive.read("gallery.json")) == gallery
        for item in gallery["items"]:
            with Image.open(io.BytesIO(archive.read(item["crop"]))) as picture:
                assert picture.format == "JPEG" and max(picture.size) <= 256
                picture.load()  # decodes the whole image
            served = service.client.get(f"/jobs/{job_id}/{item['crop']}")  # the dashboard's route
            assert served.status_code == 200 and served.headers["content-type"] == "image/jpeg"
            assert served.content == archive.read(item["crop"])

    # signed links open them without the key, as the dashboard's <img> and download link do
    signed = service.client.post(f"/jobs/{job_id}/links").json()["links"]
    assert httpx.get(service.api_url + signed["gallery_zip"]).content == response.content
    first = gallery["items"][0]["crop"].removeprefix("crops/")
    folder = httpx.URL(service.api_url + signed["crops"])
    picture = httpx.get(folder.copy_with(path=folder.path + first))
    assert picture.status_code == 200 and picture.headers["content-type"] == "image/jpeg"
    missing = service.client.get(f"/jobs/{job_id}/crops/999999.jpg")
    assert missing.status_code == 404 and "#999999" in missing.json()["error"]["message"]
    assert service.client.get(f"/jobs/{job_id}/crops/..%2Fstats.json").status_code == 404
