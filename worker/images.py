"""Processing an images job: the manifest's files, one at a time, through the stills engine.

Per-file honesty: a file that cannot be read (refused at submit, changed since, corrupt) gets
its typed error in results.jsonl and the job goes on; only job-level problems (storage,
the model, the scratch disk, a cancel) stop it. Memory stays flat in the number of files:
the manifest is read line by line, each input is downloaded, counted and removed before the
next, and each annotated image is stored as soon as it is drawn (and removed locally).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from core.backends import Backends
from core.config import Settings
from core.errors import JobCancelled, NotFound
from core.jobs import Job, JobError, ManifestEntry, output_blob_path
from core.outputs import media_type
from ml_engine.stills import StillsRun
from worker.job_settings import stills_config
from worker.progress import JobReporter

log = logging.getLogger(__name__)


def manifest_entries(backends: Backends, job: Job) -> Iterator[ManifestEntry]:
    """The manifest's lines, read as a stream (a 5,000-file manifest is ~1 MB: never in a record)."""
    pending = b""
    for chunk in backends.blobs.open_range(job.input_blob):
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            if line.strip():
                yield ManifestEntry.from_line(line)
    if pending.strip():
        yield ManifestEntry.from_line(pending)


def process_images(job: Job, backends: Backends, detector: Any, settings: Settings, work: Path,
                   reporter: JobReporter) -> tuple[dict[str, Any], dict[str, str]]:
    """Run the job's files; returns (stats, {output name: blob}) with the summaries stored.
    Annotated images are stored below outputs/annotated/ and not listed (a record stays small:
    GET /jobs/{id}/files/{name} finds them by name)."""
    outputs_dir, inputs_dir = work / "outputs", work / "inputs"
    inputs_dir.mkdir(parents=True, exist_ok=True)
    run = StillsRun(outputs_dir, detector, stills_config(job.params, settings))
    refused: list[ManifestEntry] = []
    done = failed = 0
    for entry in manifest_entries(backends, job):
        if reporter.should_cancel():
            raise JobCancelled()
        if entry.error is not None:  # refused at submit: listed with its error after the run
            refused.append(entry)
            failed += 1
            reporter.on_files(done, failed, job.files_total)
            continue
        local = inputs_dir / "file"
        try:
            downloaded = backends.blobs.download_to_file(entry.blob or "", local)
        except NotFound:
            refused.append(entry.model_copy(update={"error": JobError(
                code="input_missing", message=f"{entry.name}: its upload is gone (deleted before the job ran)")}))
            failed += 1
            reporter.on_files(done, failed, job.files_total)
            continue
        if entry.etag is not None and downloaded.etag != entry.etag:
            refused.append(entry.model_copy(update={"error": JobError(
                code="input_changed", message=f"{entry.name}: the file was replaced after it was checked; "
                                              "send it again in a new job")}))
            failed += 1
            reporter.on_files(done, failed, job.files_total)
            continue
        result = run.add_file(entry.name, local, on_tiles=reporter.on_tiles, should_cancel=reporter.should_cancel)
        local.unlink(missing_ok=True)
        for name, path in result.outputs.items():  # store annotated images as they appear
            backends.blobs.upload_file(output_blob_path(job.id, name), path, media_type(name))
            path.unlink(missing_ok=True)
        done, failed = (done + 1, failed) if result.ok else (done, failed + 1)
        reporter.on_files(done, failed, job.files_total)
    for entry in refused:  # after the files counted, as results.jsonl has always listed them
        if entry.error is not None:
            run.add_refused(entry.name, entry.error.code, entry.error.message)
    stats, files = run.finish()
    for name, path in run.crops.items():  # stored by name, not listed: one per counted animal
        backends.blobs.upload_file(output_blob_path(job.id, name), path, media_type(name))
    outputs = {}
    for name, path in files.items():
        if not path.exists():  # an annotated image already stored (and removed) above
            continue
        blob = output_blob_path(job.id, name)
        backends.blobs.upload_file(blob, path, media_type(name))
        outputs[name] = blob
    return stats, outputs
