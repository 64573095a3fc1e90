"""A flight's telemetry from the user to the video job, between real processes (API and worker
on the local backend, the tiny model): the .SRT sent beside the video in the multipart field
``telemetry``, as a direct upload (``telemetry_upload_id``) and in a ZIP with the video; each
completed job's stats.json says what was read from it. Telemetry that cannot be used never
fails a job: the job completes and stats.json says why."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Any

import pytest

from ml_engine.outputs import validate_stats
from tests.fixtures_telemetry import EVERY_FIELD, dji_srt, other_makers_srt

pytestmark = pytest.mark.slow

FRAMES = 20  # the small clip: 20 frames at 10 fps
SRT = dji_srt(frames=FRAMES, fps=10.0).encode()


def _direct_upload(service, filename: str, data: bytes) -> str:
    ticket = service.client.post("/uploads", json={"filename": filename}).json()
    put = service.client.put(ticket["upload_url"], content=data)
    assert put.status_code == 201, put.text
    return ticket["upload_id"]


def _zip_of(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _posted(service, **request: Any) -> str:
    response = service.client.post("/jobs", **request)
    assert response.status_code == 202, response.text
    return response.json()["job_id"]


def _telemetry_of_completed(service, job_id: str) -> dict[str, Any]:
    done = service.wait_for_status(job_id, {"completed", "failed"}, timeout=180)
    assert done["status"] == "completed", done
    stats = service.client.get(f"/jobs/{job_id}/result").json()
    validate_stats(stats)
    return stats["telemetry"]


def test_telemetry_reaches_the_video_job_every_way_it_can_be_sent(shared_service, small_clip: Path):
    service = shared_service("local")
    video = small_clip.read_bytes()
    jobs = {
        "multipart": _posted(service, files={"file": ("DJI_0001.MP4", video), "telemetry": ("DJI_0001.SRT", SRT)}),
        "direct upload": _posted(service, json={
            "upload_id": _direct_upload(service, "DJI_0002.MP4", video),
            "telemetry_upload_id": _direct_upload(service, "DJI_0002.SRT", SRT)}),
        "ZIP": _posted(service, files={"file": ("flight.zip", _zip_of({"DJI_0003.MP4": video,
                                                                      "DJI_0003.SRT": SRT}))}),
        "none": _posted(service, files={"file": ("plain.mp4", video)}),
    }
    assert service.job(jobs["ZIP"])["telemetry"] == "DJI_0003.SRT"
    for way, number in (("multipart", 1), ("direct upload", 2), ("ZIP", 3)):
        telemetry = _telemetry_of_completed(service, jobs[way])
        assert telemetry == {"given": True, "file": f"DJI_000{number}.SRT", "samples": FRAMES, "usable": True,
                             "span_s": [0.0, 1.9], "fields": EVERY_FIELD, "problems": []}, way
    assert _telemetry_of_completed(service, jobs["none"]) == {"given": False}


def test_telemetry_that_cannot_be_used_completes_the_job_and_says_why(shared_service, small_clip: Path):
    service = shared_service("local")
    video = small_clip.read_bytes()
    other_maker = _posted(service, files={"file": ("clip.mp4", video),
                                          "telemetry": ("other.srt", other_makers_srt(5).encode())})
    too_few = _posted(service, files={"file": ("clip.mp4", video),
                                      "telemetry": ("short.SRT", dji_srt(frames=5, fps=10.0).encode())})

    unusable = _telemetry_of_completed(service, other_maker)
    assert (unusable["given"], unusable["samples"], unusable["usable"], unusable["fields"]) == (True, 0, False, [])
    assert unusable["problems"] == ["none of the telemetry's 5 blocks has both a time and a GPS position: "
                                    "the format is not one this reader knows"]

    partial = _telemetry_of_completed(service, too_few)
    assert (partial["samples"], partial["usable"]) == (5, True)
    assert partial["problems"] == [
        "the telemetry has 5 records for 20 video frames: records are matched to frames by time",
        "the telemetry ends at 0.4 s of a 2.0 s video: later frames use its last record",
    ]
