"""What runs a job of each kind. The runner (worker/runner.py) looks a job's processor up by
its kind, runs it and settles the record with the ``Finished`` it returns; streams have theirs
in worker/streams.py."""

from __future__ import annotations

import functools
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from prometheus_client import Gauge, Histogram

from core import lifecycle, metrics
from core.backends import Backends
from core.config import Settings
from core.errors import InputChanged, JobCancelled, NoUsableFiles
from core.jobs import Job, JobError, JobKind, output_blob_path
from core.outputs import media_type
from ml_engine.pipeline import process_video
from worker.images import process_images
from worker.job_settings import pipeline_config
from worker.models import DetectorCache
from worker.progress import JobReporter
from worker.telemetry import flight_telemetry


@dataclass(frozen=True)
class Finished:
    """A run that ended with its outputs stored: how its record settles. ``error``: every
    part failed (the job fails, its outputs kept); ``partly_failed``: some did."""

    results: lifecycle.Results
    error: JobError | None = None
    partly_failed: bool = False

    def ending(self) -> Callable[[Job], bool]:
        """The lifecycle transition that records it."""
        if self.error is not None:
            return functools.partial(lifecycle.fail, error=self.error, results=self.results)
        if self.partly_failed:
            return functools.partial(lifecycle.complete_with_errors, results=self.results)
        return functools.partial(lifecycle.complete, results=self.results)


class Processor(Protocol):
    """Runs the jobs of one kind."""

    @property
    def busy(self) -> Gauge:
        """How many of them this process runs now."""

    @property
    def duration(self) -> Histogram | None:
        """How long a completed one took; None: not measured."""

    def run(self, job: Job, reporter: JobReporter) -> Finished:
        """Process ``job`` and store its outputs.

        Raises:
            JobCancelled: it stopped before its end (``reporter.stop_reason`` says why).
        """

    def ended(self, job_id: str) -> None:
        """The job's final state is recorded: drop what it needed while it ran."""


def file_processors(settings: Settings, backends: Backends, detectors: DetectorCache,
                    scratch_dir: Path, on_counted: Callable[[], None] | None = None) -> Mapping[JobKind, Processor]:
    """The processors of the file queue's jobs. ``on_counted``: a video job's counting pass is
    over (called on the job's thread): the model is free for the next job while it renders."""
    return {JobKind.VIDEO: VideoProcessor(settings, backends, detectors, scratch_dir, on_counted),
            JobKind.IMAGES: ImagesProcessor(settings, backends, detectors, scratch_dir)}


class _FileProcessor:
    busy: Gauge = metrics.JOBS_IN_PROGRESS
    duration: Histogram | None = metrics.JOB_PROCESSING_SECONDS

    def __init__(self, settings: Settings, backends: Backends, detectors: DetectorCache, scratch_dir: Path) -> None:
        self.settings = settings
        self.backends = backends
        self.detectors = detectors
        self.scratch_dir = scratch_dir

    def _work_dir(self, job: Job) -> tempfile.TemporaryDirectory[str]:
        # ignore_cleanup_errors: when the scratch folder fails, the error that says so is
        # the one to keep, not a second one from removing the folder
        return tempfile.TemporaryDirectory(prefix=f"job-{job.id}-", dir=self.scratch_dir, ignore_cleanup_errors=True)

    def ended(self, job_id: str) -> None:
        """Nothing outlives a file job's run but its record and blobs."""


class VideoProcessor(_FileProcessor):
    def __init__(self, settings: Settings, backends: Backends, detectors: DetectorCache, scratch_dir: Path,
                 on_counted: Callable[[], None] | None = None) -> None:
        super().__init__(settings, backends, detectors, scratch_dir)
        self.on_counted = on_counted

    def run(self, job: Job, reporter: JobReporter) -> Finished:
        with self._work_dir(job) as work:
            video = Path(work) / "input"
            downloaded = self.backends.blobs.download_to_file(job.input_blob, video)
            if job.input_etag is not None and downloaded.etag != job.input_etag:
                raise InputChanged("the uploaded video was replaced after it was checked; "
                                   "upload it again as a new job")
            if reporter.should_cancel():
                raise JobCancelled()
            detector = self.detectors.get(job.params.model_id)
            telemetry = flight_telemetry(job, self.backends.blobs, Path(work), video)
            result = process_video(
                video, Path(work) / "outputs", detector, pipeline_config(job.params, self.settings, telemetry),
                progress=reporter.on_progress, should_cancel=reporter.should_cancel, on_counted=self.on_counted,
            )
            for name, path in result.crops.items():  # stored by name, not listed: one per counted animal
                self.backends.blobs.upload_file(output_blob_path(job.id, name), path, media_type(name))
            outputs = {}
            for path in result.outputs.values():
                blob = output_blob_path(job.id, path.name)
                self.backends.blobs.upload_file(blob, path, media_type(path.name))
                outputs[path.name] = blob
        frames = lifecycle.FramesCounted(result.stats["video"]["frames"])
        return Finished(lifecycle.Results(outputs, result.stats.get("counts"), frames))


class ImagesProcessor(_FileProcessor):
    def run(self, job: Job, reporter: JobReporter) -> Finished:
        with self._work_dir(job) as work:
            detector = self.detectors.get(job.params.model_id)
            stats, outputs = process_images(job, self.backends, detector, self.settings, Path(work), reporter)
        return images_finished(stats, outputs)


def images_finished(stats: dict[str, Any], outputs: dict[str, str]) -> Finished:
    """An images job's ending, from its files: every file good is ``completed``; some failed
    is ``completed_with_errors`` (the good ones' results stand); all failed is ``failed``
    (its results.jsonl still lists each file's error)."""
    images = stats.get("images", {})
    failed = int(images.get("failed", 0))
    done = int(images.get("total", 0)) - failed
    results = lifecycle.Results(outputs, stats.get("counts"), lifecycle.FilesCounted(done, failed))
    if failed and not done:
        first = stats.get("failed", [{}])[0].get("error") or {}
        return Finished(results, error=JobError(code=NoUsableFiles.code, message=(
            f"all {failed} files failed; the first: {first.get('message', 'see results.jsonl')}")))
    return Finished(results, partly_failed=failed > 0)
