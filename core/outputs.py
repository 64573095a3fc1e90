"""The files a job produces: their names, media types and download routes, in one place.

The engine writes them under these names (ml_engine.outputs, ml_engine.pipeline), the worker
stores them with these media types (worker.runner), and the API serves and links them
(api.routes.jobs, api.schemas). A new kind of output (images, GeoJSON, stream segments) is
added here, and each of them reads it from here.

Pure data: no settings, no third-party imports, so a notebook using the engine has it too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

ANNOTATED_VIDEO = "annotated.mp4"
STATS = "stats.json"
DETECTIONS = "detections.jsonl"
COCO = "coco.json"
MOT = "mot.txt"
# spreadsheets (core.tables): RFC 4180 CSV, UTF-8, a header row
TRACKS_CSV = "tracks.csv"  # one row per counted animal
TIMELINE_CSV = "timeline.csv"  # one row per processed frame
LINES_CSV = "lines.csv"  # one row per counting line
RESULTS_CSV = "results.csv"  # an images job's: one row per file and class
WINDOWS_CSV = "windows.csv"  # a stream's: one row per window, converted from windows.jsonl when asked
CSV_MEDIA_TYPE = "text/csv; charset=utf-8"
# a picture of every counted animal (ml_engine.gallery): gallery.json, crops/<id>.jpg, both in one ZIP
GALLERY = "gallery.json"
GALLERY_ZIP = "gallery.zip"
GALLERY_CROPS_DIR = "crops"  # stored by name below the job's outputs, not listed: the crops route serves them


def gallery_crop(track_id: int) -> str:
    """``crops/<id>.jpg``: the picture of the counted animal ``track_id`` (its final id)."""
    return f"{GALLERY_CROPS_DIR}/{track_id}.jpg"


GALLERY_CROP = re.compile(r"\d{1,12}\.jpg")  # a crop's name below crops/ (the crops route serves these)

# --- stills and orthomosaics (ml_engine.stills): a job of many images -------------------------
RESULTS = "results.jsonl"  # one line per file: its counts, or its error
GEOJSON = "detections.geojson"  # RFC 7946, WGS84; only when an input is georeferenced
ANNOTATED_DIR = "annotated"
STILL_MEDIA_TYPES = {
    RESULTS: "application/x-ndjson",
    GEOJSON: "application/geo+json",
    ".jpg": "image/jpeg",  # annotated/<name>.jpg, annotated/<name>.overview.jpg
}

# --- live streams (ml_engine.live): rolling outputs, written while the stream runs ------------
# (no detections.jsonl for a stream: one line per frame would grow without end)
WINDOWS = "windows.jsonl"  # one line per time window: the counts in that window
LIVE_DIR = "live"
LIVE_PLAYLIST = f"{LIVE_DIR}/index.m3u8"  # the annotated video's HLS playlist (live: the newest segments)
# every retained segment, rewritten every few minutes (stored; at the end index.m3u8 is the same,
# so the live route serves only index.m3u8)
LIVE_RECORDING = f"{LIVE_DIR}/recording.m3u8"
GAPS = "gaps.jsonl"  # one line per gap in the source (from, to, reason): every one, however many
# the new animals of each closed window (ml_engine.live.gallery): gallery/<window>.json, their
# pictures crops/<id>.jpg as a video's (ids rise over the whole stream); stored by name, not listed
WINDOW_GALLERY_DIR = "gallery"
LIVE_SEGMENT_PREFIX = f"{LIVE_DIR}/seg-"
STREAM_MEDIA_TYPES = {
    WINDOWS: "application/x-ndjson",
    GAPS: "application/x-ndjson",
    ".m3u8": "application/vnd.apple.mpegurl",
    ".ts": "video/mp2t",  # live/seg-000001.ts: MPEG-TS, H.264
}


def live_segment(sequence: int) -> str:
    """``live/seg-000001.ts``: the annotated video's segment number ``sequence`` (from 1)."""
    return f"{LIVE_SEGMENT_PREFIX}{sequence:06d}.ts"


def window_gallery(window: int) -> str:
    """``gallery/<window>.json``: the animals first counted in a stream's window ``window``."""
    return f"{WINDOW_GALLERY_DIR}/{window}.json"


LIVE_SEGMENT = re.compile(r"seg-\d{1,12}\.ts")  # a segment's name below live/ (the live route serves these)


def is_live_file(name: str) -> bool:
    """Whether ``name`` (below ``live/``) is one the live route may serve: the playlist or a segment."""
    return name == "index.m3u8" or LIVE_SEGMENT.fullmatch(name) is not None


def _safe_file_part(name: str) -> str:
    """A job's file name as one path segment: folders and odd characters become ``_``."""
    cleaned = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name).strip(".")
    return cleaned or "image"


def annotated_still(name: str) -> str:
    """``annotated/<name>.jpg``: the still itself with its detections drawn."""
    return f"{ANNOTATED_DIR}/{_safe_file_part(name)}.jpg"


def annotated_overview(name: str) -> str:
    """``annotated/<name>.overview.jpg``: a large raster shrunk, with its detections drawn."""
    return f"{ANNOTATED_DIR}/{_safe_file_part(name)}.overview.jpg"


@dataclass(frozen=True)
class Output:
    """One file of a completed job, and where the API serves it."""

    filename: str
    media_type: str
    route: str  # below /jobs/{job_id}
    summary: str  # the download route's one-line description
    kinds: tuple[str, ...] = ("video", "images", "stream")  # the job kinds (core.jobs.JobKind) that have it


# download name (as in JobOut.links) -> the output it serves
DOWNLOADS: dict[str, Output] = {
    "result": Output(STATS, "application/json", "/result", "stats.json: counts, tracks, timeline"),
    "video": Output(ANNOTATED_VIDEO, "video/mp4", "/video", "The annotated H.264 MP4 (Range requests supported)",
                    kinds=("video",)),
    "detections": Output(DETECTIONS, "application/x-ndjson", "/detections",
                         "detections.jsonl: one line per processed frame (per file for images)", kinds=("video", "images")),
    "coco": Output(COCO, "application/json", "/exports/coco", "COCO export (with track ids for a video)",
                   kinds=("video", "images")),
    "mot": Output(MOT, "text/plain; charset=utf-8", "/exports/mot", "MOTChallenge export", kinds=("video",)),
    "results": Output(RESULTS, "application/x-ndjson", "/results",
                      "results.jsonl: one line per file of an images job, its counts or its typed error",
                      kinds=("images",)),
    "geojson": Output(GEOJSON, "application/geo+json", "/exports/geojson",
                      "detections.geojson: detections of georeferenced images on the map", kinds=("images",)),
    "windows": Output(WINDOWS, "application/x-ndjson", "/windows",
                      "windows.jsonl: a stream's counts per time window (readable while it runs)", kinds=("stream",)),
    "gaps": Output(GAPS, "application/x-ndjson", "/gaps",
                   "gaps.jsonl: every gap in a stream's source: from, to, reason (readable while it runs)",
                   kinds=("stream",)),
    "tracks_csv": Output(TRACKS_CSV, CSV_MEDIA_TYPE, f"/exports/{TRACKS_CSV}",
                         "tracks.csv: one row per counted animal (final id, class, first/last sighting)",
                         kinds=("video",)),
    "timeline_csv": Output(TIMELINE_CSV, CSV_MEDIA_TYPE, f"/exports/{TIMELINE_CSV}",
                           "timeline.csv: animals in view per processed frame, in all and by class", kinds=("video",)),
    "lines_csv": Output(LINES_CSV, CSV_MEDIA_TYPE, f"/exports/{LINES_CSV}",
                        "lines.csv: crossings of each counting line, in and out, by class", kinds=("video",)),
    "results_csv": Output(RESULTS_CSV, CSV_MEDIA_TYPE, f"/exports/{RESULTS_CSV}",
                          "results.csv: an images job's counts, one row per file and class", kinds=("images",)),
    "gallery": Output(GALLERY, "application/json", "/gallery",
                      "gallery.json: every counted animal with its best picture, class, first and last sighting",
                      kinds=("video", "images")),
    "gallery_zip": Output(GALLERY_ZIP, "application/zip", f"/{GALLERY_ZIP}",
                          "gallery.zip: gallery.json and every animal's picture (crops/<id>.jpg)",
                          kinds=("video", "images")),
    # not stored: converted from windows.jsonl when asked (it grows while the stream runs)
    "windows_csv": Output(WINDOWS, CSV_MEDIA_TYPE, f"/exports/{WINDOWS_CSV}",
                          "windows.csv: a stream's counts per window (readable while it runs)", kinds=("stream",)),
}

_MEDIA_TYPES = {output.filename: output.media_type for name, output in DOWNLOADS.items() if name != "windows_csv"}


def media_type(filename: str) -> str | None:
    """The media type an output file is stored and served with; None for a file not listed."""
    if filename in _MEDIA_TYPES:
        return _MEDIA_TYPES[filename]
    if filename in STILL_MEDIA_TYPES:
        return STILL_MEDIA_TYPES[filename]
    if filename in STREAM_MEDIA_TYPES:
        return STREAM_MEDIA_TYPES[filename]
    for suffix in (".m3u8", ".ts"):  # the playlist and segments, by their path or their name
        if filename.endswith(suffix):
            return STREAM_MEDIA_TYPES[suffix]
    if filename.startswith(f"{WINDOW_GALLERY_DIR}/") and filename.endswith(".json"):  # a stream window's gallery
        return "application/json"
    if filename.endswith(".jpg"):  # annotated images, by their path or (as the worker stores them) their name
        return STILL_MEDIA_TYPES[".jpg"]
    return None
