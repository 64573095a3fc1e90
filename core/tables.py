"""CSV exports: a job's results as spreadsheets.

RFC 4180 (Python's ``csv`` module: comma-separated, fields quoted where needed, CRLF line
ends), UTF-8, a header row. Columns that depend on the job (one per class, per line) follow
the fixed ones, in a stable (sorted) order.

* ``tracks.csv``: one row per counted animal (final, stitched id), from stats.json's tracks;
* ``timeline.csv``: one row per processed frame: animals in view, in all and by class;
* ``lines.csv``: one row per counting line: crossings in and out, in all and by class;
* ``results.csv``: an images job's, one row per file and class (a file with nothing found,
  or one that failed, has one row with an empty class);
* ``windows.csv``: a stream's counts per window, converted from windows.jsonl when it is
  downloaded (``windows_csv``), since that file grows while the stream runs.

Standard library only: the engine writes these files and the API converts windows.csv.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from core.outputs import LINES_CSV, RESULTS, RESULTS_CSV, TIMELINE_CSV, TRACKS_CSV

TRACK_COLUMNS = ("id", "class", "first_frame", "last_frame", "first_time_s", "last_time_s", "duration_s",
                 "frames_seen", "mean_confidence", "raw_ids")
RESULT_COLUMNS = ("file", "class", "count", "ok", "error_code", "error")
WINDOW_COLUMNS = ("window", "from", "to", "unique", "frames_processed", "frames_dropped", "latency_p50_s",
                  "latency_p95_s", "gaps")
ZONE_WINDOW_FIELDS = ("entries", "exits", "max_occupancy", "mean_occupancy")


def write_csv(path: Path, header: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> Path:
    """Write rows (dicts keyed by the header's names; missing ones empty) as one CSV file."""
    with path.open("w", encoding="utf-8", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=list(header), restval="", extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return path


def csv_lines(header: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> Iterator[str]:
    """The same CSV, a row at a time as text (for a download streamed while it is converted)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(header), restval="", extrasaction="ignore")
    writer.writeheader()
    yield _drain(buffer)
    for row in rows:
        writer.writerow(row)
        yield _drain(buffer)


def _drain(buffer: io.StringIO) -> str:
    text = buffer.getvalue()
    buffer.seek(0)
    buffer.truncate()
    return text


# --- a video job ---------------------------------------------------------------------------------


def write_video_tables(output_dir: Path, stats: Mapping[str, Any]) -> dict[str, Path]:
    """tracks.csv, timeline.csv and lines.csv from the stats.json document; name -> path."""
    return {
        TRACKS_CSV: write_csv(output_dir / TRACKS_CSV, TRACK_COLUMNS,
                              (track_row(t) for t in stats.get("tracks", []))),
        TIMELINE_CSV: _write_timeline(output_dir / TIMELINE_CSV, stats.get("timeline", [])),
        LINES_CSV: _write_lines(output_dir / LINES_CSV, stats.get("lines", [])),
    }


def track_row(track: Mapping[str, Any]) -> dict[str, Any]:
    """One counted animal: stats.json's track, its raw (live tracker) ids space-separated."""
    row = {name: track[name] for name in TRACK_COLUMNS if name in track}
    row["duration_s"] = round(track["last_time_s"] - track["first_time_s"], 4)
    row["raw_ids"] = " ".join(str(raw) for raw in track.get("raw_ids", []))
    return row


def _write_timeline(path: Path, timeline: Sequence[Mapping[str, Any]]) -> Path:
    classes = sorted({cls for entry in timeline for cls in entry["by_class"]})
    header = ["frame", "time_s", "count", *classes]
    rows = ({"frame": e["frame"], "time_s": e["time_s"], "count": e["count"],
             **{cls: e["by_class"].get(cls, 0) for cls in classes}} for e in timeline)
    return write_csv(path, header, rows)


def _write_lines(path: Path, lines: Sequence[Mapping[str, Any]]) -> Path:
    classes = sorted({cls for line in lines for direction in ("in", "out") for cls in line[direction]})
    by_class = [f"{direction} {cls}" for cls in classes for direction in ("in", "out")]
    header = ["name", "start_x", "start_y", "end_x", "end_y", "in_total", "out_total", *by_class]
    rows = []
    for line in lines:
        row = {"name": line["name"], "start_x": line["start"][0], "start_y": line["start"][1],
               "end_x": line["end"][0], "end_y": line["end"][1],
               "in_total": line["in_total"], "out_total": line["out_total"]}
        row.update((f"{direction} {cls}", line[direction].get(cls, 0)) for cls in classes for direction in ("in", "out"))
        rows.append(row)
    return write_csv(path, header, rows)


# --- an images job -------------------------------------------------------------------------------


def write_results_csv(output_dir: Path) -> Path:
    """results.csv from results.jsonl, a line at a time."""
    with (output_dir / RESULTS).open(encoding="utf-8") as lines:
        rows = (row for line in lines if line.strip() for row in result_rows(json.loads(line)))
        return write_csv(output_dir / RESULTS_CSV, RESULT_COLUMNS, rows)


def result_rows(entry: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One file's rows: one per class found; one with an empty class if none (or it failed)."""
    if not entry["ok"]:
        error = entry.get("error") or {}
        return [{"file": entry["name"], "class": "", "count": "", "ok": "false",
                 "error_code": error.get("code", ""), "error": error.get("message", "")}]
    by_class = entry.get("counts", {}).get("by_class", {})
    if not by_class:
        return [{"file": entry["name"], "class": "", "count": 0, "ok": "true"}]
    return [{"file": entry["name"], "class": cls, "count": n, "ok": "true"} for cls, n in sorted(by_class.items())]


# --- a stream ------------------------------------------------------------------------------------


def windows_csv(records: Callable[[], Iterable[Mapping[str, Any]]]) -> Iterator[str]:
    """windows.csv, a row at a time, from windows.jsonl's records. ``records()`` is read twice:
    first for the columns (the classes seen, the lines and zones), then for the rows."""
    classes: set[str] = set()
    lines: dict[str, None] = {}  # in order of appearance
    zones: dict[str, None] = {}
    for record in records():
        classes.update(record.get("by_class", {}))
        lines.update(dict.fromkeys(record.get("lines", {})))
        zones.update(dict.fromkeys(record.get("zones", {})))
    header = [*WINDOW_COLUMNS, *(f"unique {cls}" for cls in sorted(classes)),
              *(f"{line} {direction}" for line in lines for direction in ("in", "out")),
              *(f"{zone} {field}" for zone in zones for field in ZONE_WINDOW_FIELDS)]
    yield from csv_lines(header, (window_row(record, sorted(classes)) for record in records()))


def window_row(record: Mapping[str, Any], classes: Sequence[str]) -> dict[str, Any]:
    """One window of windows.jsonl, flat: ``unique <class>`` (0 where the class was not seen),
    ``<line> in``/``<line> out``, ``<zone> entries`` and the zone's other figures."""
    row: dict[str, Any] = {name: record.get(name) for name in WINDOW_COLUMNS}
    by_class = record.get("by_class", {})
    row.update((f"unique {cls}", by_class.get(cls, 0)) for cls in classes)
    for line, counts in record.get("lines", {}).items():
        row.update((f"{line} {direction}", counts.get(direction, 0)) for direction in ("in", "out"))
    for zone, figures in record.get("zones", {}).items():
        row.update((f"{zone} {field}", figures.get(field)) for field in ZONE_WINDOW_FIELDS)
    return row


def json_lines(chunks: Iterable[bytes]) -> Iterator[dict[str, Any]]:
    """JSON Lines records from a byte stream in chunks of any size (a blob being read)."""
    pending = b""
    for chunk in chunks:
        pending += chunk
        *complete, pending = pending.split(b"\n")
        yield from (json.loads(line) for line in complete if line.strip())
    if pending.strip():
        try:
            yield json.loads(pending)
        except ValueError:  # a last line still being written: it comes complete next time
            return
