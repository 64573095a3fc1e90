"""Processing an images job: the manifest's files, one at a time, through the stills engine.

Per-file honesty: a file that cannot be read (refused at submit, changed since, corrupt) gets
its typed error in results.jsonl and the job goes on; only job-level problems (storage,
the model, the scratch disk, a cancel) stop it. Memory stays flat in the number of files:
the manifest is read line by line, each input is downloaded, counted and removed before the
next, and each annotated image is stored as soon as it is drawn (and removed locally).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from core.backends import Backends
from core.config import Settings
from core.errors import JobCancelled, NotFound
from core.jobs import Job, JobError, ManifestEntry, output_blob_path
from core.outputs import RESULTS, STATS, media_type
from core.tables import write_results_csv
from ml_engine.outputs import _write_json
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
    stats, files = run.finish()
    for name, path in run.crops.items():  # stored by name, not listed: one per counted animal
        backends.blobs.upload_file(output_blob_path(job.id, name), path, media_type(name))
    if refused:
        _add_refused(stats, refused, outputs_dir)
    outputs = {}
    for name, path in files.items():
        if not path.exists():  # an annotated image already stored (and removed) above
            continue
        blob = output_blob_path(job.id, name)
        backends.blobs.upload_file(blob, path, media_type(name))
        outputs[name] = blob
    return stats, outputs


def _add_refused(stats: dict[str, Any], refused: list[ManifestEntry], outputs_dir: Path) -> None:
    """Files that never reached the engine (refused at submit, gone, replaced) join its
    results.jsonl and stats.json as failed files: every file of the job is reported."""
    with (outputs_dir / RESULTS).open("a", encoding="utf-8") as results:
        for entry in refused:
            error = entry.error.model_dump() if entry.error else None
            results.write(json.dumps({"name": entry.name, "ok": False, "counts": {"total": 0, "by_class": {}},
                                      "error": error, "width": None, "height": None,
                                      "georeferenced": False}) + "\n")
    images = stats.setdefault("images", {})
    images["total"] = images.get("total", 0) + len(refused)
    images["failed"] = images.get("failed", 0) + len(refused)
    stats.setdefault("failed", []).extend(
        {"name": entry.name, "error": entry.error.model_dump() if entry.error else None} for entry in refused)
    _write_json(outputs_dir / STATS, stats)
    write_results_csv(outputs_dir)  # written by the engine without them
