"""Images jobs end to end: the real API and worker processes, on both backends.

About 20 stills per job (the 1,000-still job is bench/bulk_bench.py), a few bad files mixed
in: the good files complete, the bad ones are listed with typed errors, and the job says
``completed_with_errors``, never ``completed`` and never all-or-nothing.
"""

from __future__ import annotations

import csv
import io
import json
import zipfile
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest

from core.jobs import JobStatus
from core.outputs import GALLERY
from ml_engine.stills import validate_stills_stats
from ml_engine.stills_gallery import MAX_ITEMS
from tests.fixtures_stills import (
    image_bytes,
    tiff_damaged_in_the_middle,
    truncated_tiff,
    write_stills,
    zip_of,
)

pytestmark = pytest.mark.slow

BACKENDS = ["local", pytest.param("azure", marks=pytest.mark.azurite)]
GOOD = 18


def _results(service, job_id: str) -> dict[str, dict]:
    response = service.client.get(f"/jobs/{job_id}/results")
    assert response.status_code == 200, response.text
    return {line["name"]: line for line in map(json.loads, response.text.splitlines())}


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_zip_of_stills_with_bad_files_completes_with_errors(shared_service, backend, tmp_path: Path) -> None:
    service = shared_service(backend)
    entries = {f"flight/{path.name}": path.read_bytes() for path in write_stills(tmp_path / "stills", GOOD)}
    entries["flight/notes.txt"] = b"not an image"  # refused at submit, kept in the manifest
    entries["flight/cut.tif"] = truncated_tiff()  # a corrupt TIFF
    entries["__MACOSX/flight/._still-0000.png"] = b"resource fork"  # not the user's: skipped
    response = service.client.post("/jobs", files={"file": ("flight.zip", zip_of(entries))},
                                   data={"threshold": "0.01"})
    assert response.status_code == 202, response.text
    submitted = response.json()
    assert submitted["kind"] == "images" and submitted["files_total"] == GOOD + 2
    assert submitted["files_failed"] == 2  # known at submit
    job_id = submitted["job_id"]

    done = service.wait_for_status(job_id, {"completed", "completed_with_errors", "failed"}, timeout=240)
    assert done["status"] == "completed_with_errors", done
    assert (done["files_done"], done["files_failed"], done["files_total"]) == (GOOD, 2, GOOD + 2)
    assert done["progress"] == 1.0 and done["error"] is None

    results = _results(service, job_id)
    assert len(results) == GOOD + 2  # every file, good or bad, has its line
    assert results["flight_notes.txt"]["error"]["code"] == "unsupported_image"
    assert results["flight_cut.tif"]["error"]["code"] == "corrupt_image"
    assert all(results[f"flight_still-{i:04d}.{'png' if i % 2 == 0 else 'jpg'}"]["ok"] for i in range(GOOD))

    stats = service.client.get(f"/jobs/{job_id}/result").json()
    validate_stills_stats(stats)  # the files refused at submit, added by the worker, keep its schema
    assert stats["images"] == {**stats["images"], "total": GOOD + 2, "ok": GOOD, "failed": 2}
    assert {item["name"] for item in stats["failed"]} == {"flight_notes.txt", "flight_cut.tif"}
    assert done["counts"] == stats["counts"]
    coco = service.client.get(f"/jobs/{job_id}/exports/coco").json()
    assert len(coco["images"]) == GOOD
    # results.csv: one row per file and class, the files refused at submit among them
    rows = list(csv.DictReader(io.StringIO(service.client.get(done["links"]["results_csv"]).text, newline="")))
    assert {row["file"] for row in rows} == set(results)
    assert {(row["file"], row["error_code"]) for row in rows if row["ok"] == "false"} == {
        ("flight_notes.txt", "unsupported_image"), ("flight_cut.tif", "corrupt_image")}
    counted = {(row["file"], row["class"]): int(row["count"]) for row in rows if row["class"]}
    assert counted == {(name, cls): n for name, line in results.items() for cls, n in line["counts"]["by_class"].items()}

    # each good file's annotated image, by its name; a bad file has none
    image = service.client.get(f"/jobs/{job_id}/files/flight_still-0001.jpg")
    assert image.status_code == 200 and image.headers["content-type"] == "image/jpeg"
    assert image.content[:3] == b"\xff\xd8\xff"
    assert service.client.get(f"/jobs/{job_id}/files/flight_notes.txt").status_code == 404
    # one signed link opens every file's image, and nothing else
    links = service.client.post(f"/jobs/{job_id}/links").json()["links"]
    files_link = links["files"]
    path, _, query = files_link.partition("?")
    assert httpx.get(f"{service.api_url}{path}flight_still-0002.png?{query}").status_code == 200
    assert "video" not in done["links"] and "results" in done["links"]
    _check_gallery(service, job_id, done, stats)

    listed = service.client.get("/jobs", params={"status": "completed_with_errors"}).json()["jobs"]
    assert job_id in {job["job_id"] for job in listed}
    assert service.client.delete(f"/jobs/{job_id}").status_code == 204
    assert not list(service.backends.blobs.list(f"jobs/{job_id}/"))


def _check_gallery(service, job_id: str, done: dict, stats: dict) -> None:
    """One picture per counted animal (no file is georeferenced: each detection is one), through
    the real routes: gallery.json, the ZIP holding it and every picture, and one picture alone."""
    gallery = service.client.get(done["links"]["gallery"]).json()
    assert gallery["count"] == stats["counts"]["total"] > 0
    assert len(gallery["items"]) == min(gallery["count"], MAX_ITEMS)
    assert sum(item["sightings"] for item in gallery["items"]) == len(gallery["items"])
    response = service.client.get(done["links"]["gallery_zip"])
    assert response.status_code == 200 and response.headers["content-type"] == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(response.content))
    assert sorted(archive.namelist()) == sorted([GALLERY] + [item["crop"] for item in gallery["items"]])
    for item in gallery["items"]:
        crop = cv2.imdecode(np.frombuffer(archive.read(item["crop"]), np.uint8), cv2.IMREAD_COLOR)
        assert crop is not None and max(crop.shape[:2]) <= 256
        assert item["crop_image"] in {f"flight_still-{i:04d}.{'png' if i % 2 == 0 else 'jpg'}" for i in range(GOOD)}
    first = gallery["items"][0]
    picture = service.client.get(f"/jobs/{job_id}/{first['crop']}")
    assert picture.status_code == 200 and picture.headers["content-type"] == "image/jpeg"
    assert picture.content == archive.read(first["crop"])


@pytest.mark.parametrize("backend", BACKENDS)
def test_direct_upload_ids_make_one_images_job(shared_service, backend, tmp_path: Path) -> None:
    """The path for big sets: each file PUT to its own upload URL (a SAS URL on Azure), then one
    job of all the ids. Every file good: plain ``completed``."""
    service = shared_service(backend)
    upload_ids = []
    for path in write_stills(tmp_path / "up", 4):
        ticket = service.client.post("/uploads", json={"filename": path.name}).json()
        url = ticket["upload_url"] if ticket["upload_url"].startswith("http") else service.api_url + ticket["upload_url"]
        put = httpx.put(url, content=path.read_bytes(), headers=ticket["headers"])
        assert put.status_code in (200, 201), put.text
        upload_ids.append(ticket["upload_id"])
    response = service.client.post("/jobs", json={"upload_ids": upload_ids})
    assert response.status_code == 202, response.text
    job_id = response.json()["job_id"]
    done = service.wait_for_status(job_id, {"completed", "completed_with_errors", "failed"}, timeout=180)
    assert done["status"] == JobStatus.COMPLETED.value, done
    assert (done["files_done"], done["files_failed"]) == (4, 0)
    assert set(_results(service, job_id)) == {f"still-{i:04d}.{'png' if i % 2 == 0 else 'jpg'}" for i in range(4)}
    # the same set posted again is the same job; an upload is one job's input: naming it in another is refused
    replay = service.client.post("/jobs", json={"upload_ids": upload_ids})
    assert (replay.status_code, replay.json()["job_id"]) == (200, job_id)
    again = service.client.post("/jobs", json={"upload_ids": upload_ids[:1] + [_fresh_upload(service, tmp_path)]})
    assert again.status_code == 409 and again.json()["error"]["code"] == "upload_already_used"
    # deleting the job deletes the uploads it was made of
    assert service.client.delete(f"/jobs/{job_id}").status_code == 204
    assert not list(service.backends.blobs.list(f"uploads/{upload_ids[0]}/"))


def _fresh_upload(service, tmp_path: Path) -> str:
    path = write_stills(tmp_path / "fresh", 1)[0]
    ticket = service.client.post("/uploads", json={"filename": path.name}).json()
    url = ticket["upload_url"] if ticket["upload_url"].startswith("http") else service.api_url + ticket["upload_url"]
    assert httpx.put(url, content=path.read_bytes(), headers=ticket["headers"]).status_code in (200, 201)
    return ticket["upload_id"]


def test_one_image_alone_is_an_images_job_and_a_geotiff_gets_geojson(shared_service, tmp_path: Path) -> None:
    """A single still is no longer refused with 415: it is an images job of one file."""
    from affine import Affine

    service = shared_service("local")
    geotiff = image_bytes("GTiff", 128, 96, crs="EPSG:32633", transform=Affine(0.05, 0, 500000, 0, -0.05, 5000000))
    response = service.client.post("/jobs", files={"file": ("field.tif", geotiff)}, data={"threshold": "0.01"})
    assert response.status_code == 202, response.text
    job_id = response.json()["job_id"]
    done = service.wait_for_status(job_id, {"completed", "completed_with_errors", "failed"}, timeout=180)
    assert done["status"] == "completed", done
    geojson = service.client.get(f"/jobs/{job_id}/exports/geojson")
    assert geojson.status_code == 200 and geojson.json()["type"] == "FeatureCollection"


def test_damage_found_while_running_is_a_per_file_error_and_all_bad_fails_honestly(shared_service) -> None:
    """Damage the API's probe cannot see (the middle of a TIFF) is found by the worker: with one
    good file the job is completed_with_errors; with none, it is failed (no_usable_files) and
    its results.jsonl still says why for each file."""
    service = shared_service("local")
    mixed = service.client.post("/jobs", files=[("files", ("good.png", image_bytes("PNG"))),
                                                 ("files", ("mid.tif", tiff_damaged_in_the_middle()))])
    all_bad = service.client.post("/jobs", files=[("files", (f"mid-{i}.tif", tiff_damaged_in_the_middle(i)))
                                                   for i in range(2)])
    assert mixed.status_code == all_bad.status_code == 202  # accepted: nothing wrong is visible at submit
    assert mixed.json()["files_failed"] == all_bad.json()["files_failed"] == 0

    done = service.wait_for_status(mixed.json()["job_id"], {"completed", "completed_with_errors", "failed"})
    assert (done["status"], done["files_done"], done["files_failed"]) == ("completed_with_errors", 1, 1), done
    assert _results(service, done["job_id"])["mid.tif"]["error"]["code"] == "corrupt_image"

    failed = service.wait_for_status(all_bad.json()["job_id"], {"completed", "completed_with_errors", "failed"})
    assert failed["status"] == "failed" and failed["error"]["code"] == "no_usable_files", failed
    assert (failed["files_done"], failed["files_failed"]) == (0, 2)
    assert "mid-0.tif" in failed["error"]["message"]
    results = _results(service, failed["job_id"])  # downloadable although the job failed
    assert {line["error"]["code"] for line in results.values()} == {"corrupt_image"}
