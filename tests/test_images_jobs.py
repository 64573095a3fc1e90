"""The images-job model: old records still read as videos, names stay unique, the record and
the queue message stay small whatever the number of files."""

from __future__ import annotations

import json

from api.bulk import FileNames
from core.jobs import Job, JobKind, JobMessage, JobStatus, ManifestEntry, manifest_blob_path


def test_a_record_written_before_images_jobs_reads_as_a_video_job() -> None:
    old = json.dumps({"id": "01a2000000000000000000000000", "status": "completed", "input_blob": "jobs/x/input"})
    job = Job.from_record(old, etag="1")
    assert job.kind is JobKind.VIDEO and job.files_total == 0
    assert job.results_ready


def test_completed_with_errors_is_final_and_has_results() -> None:
    status = JobStatus.COMPLETED_WITH_ERRORS
    assert status.is_final and status.has_results
    failed_with_results = Job(id="j", kind=JobKind.IMAGES, input_blob="m", status=JobStatus.FAILED,
                              outputs={"results.jsonl": "jobs/j/outputs/results.jsonl"})
    assert failed_with_results.results_ready  # every file failed: its results.jsonl says why
    assert not Job(id="v", input_blob="i", status=JobStatus.FAILED).results_ready


def test_record_and_message_do_not_grow_with_the_files() -> None:
    job = Job(id="01a2000000000000000000000000", kind=JobKind.IMAGES, input_blob=manifest_blob_path("j"),
              files_total=100_000, files_done=99_000, files_failed=1_000)
    assert len(job.to_record()) < 2_000
    assert len(JobMessage(job_id=job.id, input_blob=job.input_blob).encode()) < 200


def test_manifest_lines_round_trip_with_their_errors() -> None:
    entry = ManifestEntry(name="a.txt", size=5, error={"code": "unsupported_image", "message": "a.txt: no"})
    assert ManifestEntry.from_line(entry.to_line()) == entry
    assert entry.to_line().endswith(b"\n") and entry.to_line().count(b"\n") == 1


def test_file_names_are_unique_in_a_job_and_one_path_segment() -> None:
    names = FileNames()
    assert [names.unique(n) for n in ["a/IMG_1.jpg", "b/IMG_1.jpg", "a_IMG_1.jpg", "IMG_1.JPG", "noext", "noext"]] == [
        "a_IMG_1.jpg", "b_IMG_1.jpg", "a_IMG_1-2.jpg", "IMG_1.JPG", "noext", "noext-2"]
