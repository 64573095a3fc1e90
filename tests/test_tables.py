"""core.tables: the CSV exports, read back with Python's csv reader."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from core.tables import json_lines, result_rows, track_row, windows_csv, write_csv, write_video_tables


def read(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def test_fields_with_commas_quotes_and_accents_survive_a_round_trip(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "t.csv", ["name", "n"], [{"name": 'pen, "north" – bœuf', "n": 3}, {"name": "x"}])
    raw = path.read_bytes()
    assert raw.startswith(b"name,n\r\n") and raw.count(b"\r\n") == 3  # RFC 4180 line ends
    assert read(path) == [{"name": 'pen, "north" – bœuf', "n": "3"}, {"name": "x", "n": ""}]


def test_video_tables_come_from_stats_json(tmp_path: Path) -> None:
    stats = {
        "tracks": [{"id": 1, "class": "cow", "first_frame": 0, "last_frame": 30, "first_time_s": 0.0,
                    "last_time_s": 1.0, "frames_seen": 31, "mean_confidence": 0.8, "class_votes": {"cow": 31},
                    "raw_ids": [1, 4]}],
        "timeline": [{"frame": 0, "time_s": 0.0, "count": 1, "by_class": {"cow": 1}},
                     {"frame": 1, "time_s": 0.0333, "count": 0, "by_class": {}}],
        "lines": [{"name": "gate", "start": [0, 5], "end": [10, 5], "in": {"cow": 2}, "out": {},
                   "in_total": 2, "out_total": 0}],
    }
    files = write_video_tables(tmp_path, stats)
    assert read(files["tracks.csv"]) == [{"id": "1", "class": "cow", "first_frame": "0", "last_frame": "30",
                                          "first_time_s": "0.0", "last_time_s": "1.0", "duration_s": "1.0",
                                          "frames_seen": "31", "mean_confidence": "0.8", "raw_ids": "1 4"}]
    assert read(files["timeline.csv"]) == [{"frame": "0", "time_s": "0.0", "count": "1", "cow": "1"},
                                           {"frame": "1", "time_s": "0.0333", "count": "0", "cow": "0"}]
    assert read(files["lines.csv"]) == [{"name": "gate", "start_x": "0", "start_y": "5", "end_x": "10", "end_y": "5",
                                         "in_total": "2", "out_total": "0", "in cow": "2", "out cow": "0"}]
    assert track_row(stats["tracks"][0])["raw_ids"] == "1 4"


def test_an_images_file_has_a_row_per_class_or_one_saying_why_not() -> None:
    assert result_rows({"name": "a.jpg", "ok": True, "counts": {"by_class": {"sheep": 2, "cow": 1}}}) == [
        {"file": "a.jpg", "class": "cow", "count": 1, "ok": "true"},
        {"file": "a.jpg", "class": "sheep", "count": 2, "ok": "true"}]
    assert result_rows({"name": "b.jpg", "ok": True, "counts": {"by_class": {}}}) == [
        {"file": "b.jpg", "class": "", "count": 0, "ok": "true"}]
    failed = result_rows({"name": "c.tif", "ok": False, "error": {"code": "corrupt_image", "message": "cut"}})
    assert failed == [{"file": "c.tif", "class": "", "count": "", "ok": "false", "error_code": "corrupt_image",
                       "error": "cut"}]


def test_json_lines_are_read_across_chunk_boundaries_and_a_half_written_last_line_waits() -> None:
    data = b'{"window": 1}\n{"window": 2}\n{"wind'
    chunks = [data[i:i + 5] for i in range(0, len(data), 5)]
    assert list(json_lines(chunks)) == [{"window": 1}, {"window": 2}]


def test_windows_csv_has_a_column_for_every_class_seen_in_any_window() -> None:
    records = [{"window": 1, "unique": 1, "by_class": {"cow": 1}, "lines": {"gate": {"in": 1, "out": 0}}, "zones": {}},
               {"window": 2, "unique": 1, "by_class": {"sheep": 1}, "lines": {"gate": {"in": 0, "out": 1}}, "zones": {}}]
    text = "".join(windows_csv(lambda: iter(records)))
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    assert [(r["window"], r["unique cow"], r["unique sheep"], r["gate in"], r["gate out"]) for r in rows] == [
        ("1", "1", "0", "1", "0"), ("2", "0", "1", "0", "1")]
