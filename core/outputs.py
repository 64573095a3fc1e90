"""The files a job produces: their names, media types and download routes, in one place.

The engine writes them under these names (ml_engine.outputs, ml_engine.pipeline), the worker
stores them with these media types (worker.runner), and the API serves and links them
(api.routes.jobs, api.schemas). A new kind of output (images, GeoJSON, stream segments) is
added here, and each of them reads it from here.

Pure data: no settings, no third-party imports, so a notebook using the engine has it too.
"""

from __future__ import annotations

from dataclasses import dataclass

ANNOTATED_VIDEO = "annotated.mp4"
STATS = "stats.json"
DETECTIONS = "detections.jsonl"
COCO = "coco.json"
MOT = "mot.txt"


@dataclass(frozen=True)
class Output:
    """One file of a completed job, and where the API serves it."""

    filename: str
    media_type: str
    route: str  # below /jobs/{job_id}
    summary: str  # the download route's one-line description


# download name (as in JobOut.links) -> the output it serves
DOWNLOADS: dict[str, Output] = {
    "result": Output(STATS, "application/json", "/result", "stats.json: counts, tracks, timeline"),
    "video": Output(ANNOTATED_VIDEO, "video/mp4", "/video", "The annotated H.264 MP4 (Range requests supported)"),
    "detections": Output(DETECTIONS, "application/x-ndjson", "/detections",
                         "detections.jsonl: one line per processed frame"),
    "coco": Output(COCO, "application/json", "/exports/coco", "COCO export with track ids"),
    "mot": Output(MOT, "text/plain; charset=utf-8", "/exports/mot", "MOTChallenge export"),
}

_MEDIA_TYPES = {output.filename: output.media_type for output in DOWNLOADS.values()}


def media_type(filename: str) -> str | None:
    """The media type an output file is stored and served with; None for a file not listed."""
    return _MEDIA_TYPES.get(filename)
