"""A video job's flight telemetry, read for the engine: the ``.SRT`` the API stored beside the
video (``Job.telemetry``), parsed and checked against the video.

Telemetry never fails a job: a file that cannot be read, records without a position, a record
count that does not match the video's frames or another maker's format each leave what could
be read (perhaps nothing) and say why in ``Telemetry.problems``, which stats.json carries.
Only storage failing is an error, a transient one like the video's own download.
"""

from __future__ import annotations

import logging
from pathlib import Path

from core.backends import BlobStore
from core.errors import NotFound, VideoError
from core.jobs import Job
from ml_engine.media.telemetry import Telemetry, read_srt
from ml_engine.media.video import probe

log = logging.getLogger(__name__)


def flight_telemetry(job: Job, blobs: BlobStore, work_dir: Path, video: Path) -> Telemetry | None:
    """The job's telemetry, read from storage into ``work_dir`` and checked against ``video``;
    None when the job came without any."""
    if job.telemetry is None:
        return None
    local = work_dir / "telemetry.srt"
    try:
        blobs.download_to_file(job.telemetry.blob, local)
    except NotFound:
        return Telemetry(problems=["the telemetry file is no longer in storage"], source=job.telemetry.filename)
    telemetry = read_srt(local.read_bytes(), source=job.telemetry.filename)
    _check_against(telemetry, video)
    log.info("telemetry %s: %d records%s", job.telemetry.filename, len(telemetry.samples),
             "; " + "; ".join(telemetry.problems) if telemetry.problems else "")
    return telemetry


def _check_against(telemetry: Telemetry, video: Path) -> None:
    """Note where the records do not match the video's frames (they are then matched by time).
    Only a frame count the container states exactly is compared: an estimate would raise false
    alarms. A video that cannot be probed is the pipeline's to report, as ever."""
    try:
        info = probe(video)
    except VideoError:
        return
    if info.frames_exact and info.frames:
        telemetry.check_against_video(info.frames, float(info.fps))
