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
# images jobs (issue 14): written by ml_engine.stills
RESULTS = "results.jsonl"  # one line per file: its counts, or its typed error
GEOJSON = "detections.geojson"  # when any input is georeferenced
ANNOTATED_DIR = "annotated"  # annotated/<name>.jpg per still, annotated/<name>.overview.jpg per large raster


@dataclass(frozen=True)
class Output:
    """One file of a completed job, and where the API serves it."""

    filename: str
    media_type: str
    route: str  # below /jobs/{job_id}
    summary: str  # the download route's one-line description
    kinds: tuple[str, ...] = ("video", "images")  # the job kinds (core.jobs.JobKind) that have it


# download name (as in JobOut.links) -> the output it serves
DOWNLOADS: dict[str, Output] = {
    "result": Output(STATS, "application/json", "/result", "stats.json: counts, tracks, timeline"),
    "video": Output(ANNOTATED_VIDEO, "video/mp4", "/video", "The annotated H.264 MP4 (Range requests supported)",
                    kinds=("video",)),
    "detections": Output(DETECTIONS, "application/x-ndjson", "/detections",
                         "detections.jsonl: one line per processed frame (per file for images)"),
    "coco": Output(COCO, "application/json", "/exports/coco", "COCO export (with track ids for a video)"),
    "mot": Output(MOT, "text/plain; charset=utf-8", "/exports/mot", "MOTChallenge export", kinds=("video",)),
    "results": Output(RESULTS, "application/x-ndjson", "/results",
                      "results.jsonl: one line per file of an images job, its counts or its typed error",
                      kinds=("images",)),
    "geojson": Output(GEOJSON, "application/geo+json", "/exports/geojson",
                      "detections.geojson: detections of georeferenced images on the map", kinds=("images",)),
}

_MEDIA_TYPES = {output.filename: output.media_type for output in DOWNLOADS.values()}
_IMAGE_TYPES = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png"}


def media_type(filename: str) -> str | None:
    """The media type an output file is stored and served with; None for a file not listed."""
    known = _MEDIA_TYPES.get(filename)
    if known is None and "." in filename:
        return _IMAGE_TYPES.get("." + filename.rsplit(".", 1)[1].lower())  # annotated images
    return known


def annotated_image_name(name: str) -> str:
    """The output (relative to the job's outputs) of a still's annotated image."""
    return f"{ANNOTATED_DIR}/{name}.jpg"


def annotated_overview_name(name: str) -> str:
    """The output of a large raster's annotated overview."""
    return f"{ANNOTATED_DIR}/{name}.overview.jpg"
