"""The gallery's routes under keys and tenants: gallery.json, gallery.zip and each animal's
picture (``/jobs/{id}/crops/<id>.jpg``, stored by name and not listed in the record) are
another tenant's 404, open with the signed ``crops`` folder link of their own job only, and
refuse names that are not a picture's. The real app over the local backend; the worker's
outputs stored as the worker stores them (a whole run through the API: test_service_e2e.py)."""

from __future__ import annotations

import pytest

from core.jobs import output_blob_path
from tests.fixtures_service import in_process_api
from tests.test_api import complete_with_outputs, upload
from tests.test_tenants import ALICE, BOB, KEYS, as_, completed_job

PICTURE = b"\xff\xd8\xff\xe0 a JPEG's bytes"
GALLERY_OUTPUTS = {"annotated.mp4": b"video", "stats.json": b'{"counts": {"total_unique": 1}}',
                   "gallery.json": b'{"count": 1, "items": [{"id": 7, "crop": "crops/7.jpg"}]}',
                   "gallery.zip": b"PK a ZIP's bytes"}


@pytest.fixture
def api(make_settings):
    with in_process_api(make_settings("local", **KEYS)) as client:
        yield client


def job_with_gallery(api, clip) -> str:
    job_id = completed_job(api, clip, ALICE)
    api.backends.blobs.upload_stream(output_blob_path(job_id, "crops/7.jpg"), [PICTURE])  # as the worker does
    complete_with_outputs(api, job_id, GALLERY_OUTPUTS)
    return job_id


def test_the_gallery_is_linked_and_served_to_its_tenant_only(api, small_clip):
    job_id = job_with_gallery(api, small_clip)
    links = api.get(f"/jobs/{job_id}", headers=as_(ALICE)).json()["links"]
    assert (links["gallery"], links["gallery_zip"], links["crops"]) == (
        f"/jobs/{job_id}/gallery", f"/jobs/{job_id}/gallery.zip", f"/jobs/{job_id}/crops/")
    picture = api.get(f"/jobs/{job_id}/crops/7.jpg", headers=as_(ALICE))
    assert picture.status_code == 200 and picture.content == PICTURE
    assert picture.headers["content-type"] == "image/jpeg"
    archive = api.get(f"/jobs/{job_id}/gallery.zip", headers=as_(ALICE), params={"download": "true"})
    assert archive.content == GALLERY_OUTPUTS["gallery.zip"] and archive.headers["content-type"] == "application/zip"
    assert api.get(f"/jobs/{job_id}/gallery", headers=as_(ALICE)).json()["count"] == 1
    for path in ("crops/7.jpg", "gallery", "gallery.zip"):
        other = api.get(f"/jobs/{job_id}/{path}", headers=as_(BOB))
        assert other.status_code == 404, path
        assert other.json()["error"]["message"] == f"job {job_id} does not exist"  # as if it did not exist
        assert api.get(f"/jobs/{job_id}/{path}").status_code == 401, path  # no key, no signature


def test_the_signed_crops_link_opens_its_own_jobs_pictures_only(api, small_clip):
    job_id = job_with_gallery(api, small_clip)
    other_id = job_with_gallery(api, small_clip)
    signed = api.post(f"/jobs/{job_id}/links", headers=as_(ALICE)).json()["links"]
    folder, query = signed["crops"].split("?", 1)
    assert folder == f"/jobs/{job_id}/crops/"
    assert api.get(f"{folder}7.jpg?{query}").content == PICTURE  # no key at all
    assert api.get(f"/jobs/{other_id}/crops/7.jpg?{query}").status_code == 401  # another job's folder
    gallery_query = signed["gallery"].split("?", 1)[1]
    assert api.get(f"{folder}7.jpg?{gallery_query}").status_code == 401  # gallery.json's signature opens no picture


@pytest.mark.parametrize("name", ["8.jpg", "7.png", "stats.json", "..%2Fstats.json", "-1.jpg"])
def test_a_name_that_is_not_a_stored_picture_is_404(api, small_clip, name):
    job_id = job_with_gallery(api, small_clip)
    response = api.get(f"/jobs/{job_id}/crops/{name}", headers=as_(ALICE))
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"


def test_pictures_wait_for_the_job_to_complete(api, small_clip):
    job_id = upload(api, small_clip, headers=as_(ALICE)).json()["job_id"]
    response = api.get(f"/jobs/{job_id}/crops/7.jpg", headers=as_(ALICE))
    assert response.status_code == 409 and "once it has completed" in response.json()["error"]["message"]
