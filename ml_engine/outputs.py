"""The files a processed video produces, written as frames go by.

``detections.jsonl`` and ``mot.txt`` are appended frame by frame; ``coco.json`` streams its
images and annotations to part files and is assembled at the end; ``stats.json`` is written
last. Nothing is held in memory per frame, however long the video.

Rows are written with the live tracker's ids and classes; once the video is done and tracks
have been stitched, ``finish_exports`` rewrites them to the stitched ids, each with its track's
final class, in one streaming pass per file. The annotated video is drawn from the rewritten
detections.jsonl afterwards (``ml_engine.render``), so it shows the same ids.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable, Mapping
from functools import cache
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import numpy as np
import supervision as sv

from core.errors import CattleCounterError
from core.outputs import ANNOTATED_VIDEO, COCO, DETECTIONS, MOT, STATS  # the names live there
from core.tables import write_video_tables
from ml_engine.counting import CountSummary, tracker_ids
from ml_engine.media.video import VideoInfo

__all__ = ["ANNOTATED_VIDEO", "COCO", "DETECTIONS", "MOT", "STATS", "OutputWriter", "build_stats",
           "move_outputs", "validate_stats"]

SCHEMA_VERSION = 2  # 2: stitched ids (counts.raw_total_unique/merged, tracks[].raw_ids)
SCHEMA_PATH = Path(__file__).parent / "schemas" / "stats.schema.json"
RANDOM_WEIGHTS_NOTE = "model: random weights — not real detections"

_COCO_IMAGES_PART = ".coco_images.part"
_COCO_ANNOTATIONS_PART = ".coco_annotations.part"


class OutputWriter:
    """Streams per-frame results into ``output_dir``; ``finish`` writes coco.json and stats.json.

    ``labels`` (class id -> name, e.g. ``detector.labels``) become the COCO categories.
    ``frame_size`` is the (width, height) recorded on COCO images. Use as a context manager:
    leaving the block closes every file; on an error the part files are removed, and the
    caller (the pipeline) discards the directory.
    """

    def __init__(
        self, output_dir: str | os.PathLike[str], labels: Mapping[int, str], frame_size: tuple[int, int]
    ) -> None:
        self.output_dir = Path(output_dir)
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self.labels = dict(labels)
        self.frame_size = frame_size
        self.frames_written = 0
        self._annotation_id = 0
        self._classes_written: dict[int, set[str]] = {}  # raw track id -> classes its rows carry
        self._detections = self._open(DETECTIONS)
        self._mot = self._open(MOT)
        self._coco_images = self._open(_COCO_IMAGES_PART)
        self._coco_annotations = self._open(_COCO_ANNOTATIONS_PART)

    def _open(self, name: str) -> IO[str]:
        return (self.output_dir / name).open("w", encoding="utf-8", newline="\n")

    def __enter__(self) -> OutputWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def write_frame(self, frame_index: int, time_s: float, tracked: sv.Detections) -> None:
        """Append one processed frame's confirmed tracked detections to every export."""
        rows = list(_rows(tracked))
        listed = [
            {"track_id": tid, "class": cls, "score": score, "box": box} for tid, cls, _, score, box in rows
        ]
        self._detections.write(
            json_line({"frame": frame_index, "time_s": round(time_s, 4), "detections": listed})
        )
        image_id = frame_index + 1  # also MOT's 1-based frame number
        self._coco_images.write(json_line(self._coco_image(image_id, frame_index, time_s)))
        for track_id, class_name, class_id, score, box in rows:
            self._classes_written.setdefault(track_id, set()).add(class_name)
            self._annotation_id += 1
            annotation = _coco_annotation(self._annotation_id, image_id, class_id, score, box, track_id)
            self._coco_annotations.write(json_line(annotation))
            self._mot.write(_mot_line(image_id, track_id, score, box))
        self.frames_written += 1

    def _coco_image(self, image_id: int, frame_index: int, time_s: float) -> dict[str, Any]:
        width, height = self.frame_size
        return {
            "id": image_id,
            "file_name": f"frame_{frame_index:06d}",
            "width": width,
            "height": height,
            "frame_index": frame_index,
            "time_s": round(time_s, 4),
        }

    def finish(self, stats: Mapping[str, Any], id_map: Mapping[int, int | None] | None = None) -> dict[str, Path]:
        """``finish_exports``, then ``write_summary_files``: every file; returns name -> path."""
        exports = self.finish_exports(id_map)
        exports.update(self.write_summary_files(stats))
        return exports

    def finish_exports(
        self, id_map: Mapping[int, int | None] | None = None, final_classes: Mapping[int, str] | None = None
    ) -> dict[str, Path]:
        """Close the per-frame files and assemble coco.json; returns name -> path.

        ``id_map`` (raw track id -> stitched id, None: dropped as too short) rewrites every
        export's track ids first, and drops the rows of dropped tracks. ``final_classes``
        (stitched id -> class) gives each row its track's class over the whole track, so an
        animal has one class everywhere (its COCO category too, where the labels know it).
        """
        for handle in (self._detections, self._mot, self._coco_images, self._coco_annotations):
            handle.close()
        id_map = id_map or {}
        final_classes = final_classes or {}
        if self._needs_rewrite(id_map, final_classes):
            self._remap_ids(id_map, final_classes)
        self._write_coco()
        self._remove_parts()
        return {name: self.output_dir / name for name in (DETECTIONS, COCO, MOT)}

    def write_summary_files(self, stats: Mapping[str, Any]) -> dict[str, Path]:
        """stats.json and the CSV tables made from it; returns name -> path."""
        files = write_video_tables(self.output_dir, stats)
        write_json(self.output_dir / STATS, stats)
        files[STATS] = self.output_dir / STATS
        return files

    def _needs_rewrite(self, id_map: Mapping[int, int | None], final_classes: Mapping[int, str]) -> bool:
        if any(raw != final for raw, final in id_map.items()):
            return True
        return any(
            classes != {final_classes[raw]} for raw, classes in self._classes_written.items() if raw in final_classes
        )

    def _remap_ids(self, id_map: Mapping[int, int | None], final_classes: Mapping[int, str]) -> None:
        """One streaming pass per file, line by line, into a temp file that replaces it."""
        category_of = {name: class_id for class_id, name in self.labels.items()}
        _rewrite_lines(
            self.output_dir / DETECTIONS, lambda line: _remap_detections_line(line, id_map, final_classes)
        )
        _rewrite_lines(self.output_dir / MOT, lambda line: _remap_mot_line(line, id_map))
        _rewrite_lines(
            self.output_dir / _COCO_ANNOTATIONS_PART,
            lambda line: _remap_coco_line(line, id_map, final_classes, category_of),
        )

    def _write_coco(self) -> None:
        categories = [
            {"id": int(i), "name": name, "supercategory": "object"} for i, name in sorted(self.labels.items())
        ]
        with (self.output_dir / COCO).open("w", encoding="utf-8") as out:
            out.write('{"info": ')
            out.write(
                json.dumps({"description": "CattleCounter tracked detections", "version": SCHEMA_VERSION})
            )
            out.write(', "categories": ')
            out.write(json.dumps(categories))
            out.write(', "images": [')
            copy_json_lines(self.output_dir / _COCO_IMAGES_PART, out)
            out.write('], "annotations": [')
            copy_json_lines(self.output_dir / _COCO_ANNOTATIONS_PART, out)
            out.write("]}\n")

    def close(self) -> None:
        """Close every file and drop the part files (safe to call twice)."""
        for handle in (self._detections, self._mot, self._coco_images, self._coco_annotations):
            handle.close()
        self._remove_parts()

    def _remove_parts(self) -> None:
        for name in (_COCO_IMAGES_PART, _COCO_ANNOTATIONS_PART):
            (self.output_dir / name).unlink(missing_ok=True)


def _rows(tracked: sv.Detections) -> Iterable[tuple[int, str, int, float, list[float]]]:
    if len(tracked) == 0:
        return
    names = tracked.data.get("class_name", np.full(len(tracked), "object"))
    class_ids = tracked.class_id if tracked.class_id is not None else np.zeros(len(tracked), int)
    scores = tracked.confidence if tracked.confidence is not None else np.ones(len(tracked))
    for xyxy, track_id, name, class_id, score in zip(
        tracked.xyxy, tracker_ids(tracked), names, class_ids, scores, strict=True
    ):
        yield (
            int(track_id),
            str(name),
            int(class_id),
            round(float(score), 4),
            [round(float(v), 2) for v in xyxy],
        )


def _coco_annotation(
    annotation_id: int, image_id: int, class_id: int, score: float, box: list[float], track_id: int
) -> dict[str, Any]:
    x1, y1, x2, y2 = box
    width, height = round(x2 - x1, 2), round(y2 - y1, 2)
    return {
        "id": annotation_id,
        "image_id": image_id,
        "category_id": class_id,
        "bbox": [x1, y1, width, height],
        "area": round(width * height, 2),
        "iscrowd": 0,
        "score": score,
        "track_id": track_id,
    }


def _mot_line(frame_number: int, track_id: int, score: float, box: list[float]) -> str:
    """MOTChallenge: frame,id,left,top,width,height,conf,-1,-1,-1 (frames from 1)."""
    x1, y1, x2, y2 = box
    return f"{frame_number},{track_id},{x1:.2f},{y1:.2f},{x2 - x1:.2f},{y2 - y1:.2f},{score:.4f},-1,-1,-1\n"


def _rewrite_lines(path: Path, rewrite: Any) -> None:
    temp = path.with_name(f".{path.name}.remap")
    with path.open(encoding="utf-8") as source, temp.open("w", encoding="utf-8", newline="\n") as out:
        for line in source:
            out.write(rewrite(line))
    os.replace(temp, path)


def _remap_detections_line(line: str, id_map: Mapping[int, int | None], final_classes: Mapping[int, str]) -> str:
    row = json.loads(line)
    kept = []
    for detection in row["detections"]:
        detection["track_id"] = id_map.get(detection["track_id"], detection["track_id"])
        if detection["track_id"] is not None:
            detection["class"] = final_classes.get(detection["track_id"], detection["class"])
            kept.append(detection)
    row["detections"] = kept  # the frame's line stays, even if it is left empty
    return json_line(row)


def _remap_coco_line(
    line: str, id_map: Mapping[int, int | None], final_classes: Mapping[int, str], category_of: Mapping[str, int]
) -> str:
    annotation = json.loads(line)
    annotation["track_id"] = id_map.get(annotation["track_id"], annotation["track_id"])
    if annotation["track_id"] is None:
        return ""
    final_class = final_classes.get(annotation["track_id"])
    annotation["category_id"] = category_of.get(final_class or "", annotation["category_id"])
    return json_line(annotation)


def _remap_mot_line(line: str, id_map: Mapping[int, int | None]) -> str:
    frame, track_id, rest = line.split(",", 2)
    final = id_map.get(int(track_id), int(track_id))
    return "" if final is None else f"{frame},{final},{rest}"


def json_line(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False) + "\n"


def copy_json_lines(source: Path, out: IO[str]) -> None:
    """Copy one-object-a-line JSON into an array body, comma-separated, a line at a time."""
    with source.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines):
            if number:
                out.write(",")
            out.write(line.rstrip("\n"))


def write_json(path: Path, value: Any) -> None:
    temp = path.with_name(f".{path.name}.part")
    with temp.open("w", encoding="utf-8") as out:
        json.dump(value, out, ensure_ascii=False, indent=1)
        out.write("\n")
    os.replace(temp, path)


# --- stats.json -------------------------------------------------------------------------------


def build_stats(
    video: VideoInfo,
    frames_decoded: int,
    model: Mapping[str, Any],
    summary: CountSummary,
    processing: Mapping[str, Any],
) -> dict[str, Any]:
    """The stats.json document (see ``schemas/stats.schema.json``).

    ``model`` needs ``id`` and ``random_weights``; a random-weights model gets a note saying its
    detections are not real, so nobody mistakes a test run for a count.
    """
    width, height = video.display_size
    model = dict(model)
    if model.get("random_weights"):
        model.setdefault("note", RANDOM_WEIGHTS_NOTE)
    return {
        "schema_version": SCHEMA_VERSION,
        "video": {
            "width": width,
            "height": height,
            "fps": round(float(video.fps), 6),
            "fps_fraction": f"{video.fps.numerator}/{video.fps.denominator}",
            "frames": frames_decoded,
            "duration_s": round(video.duration_s, 4),
            "rotation": video.rotation,
            "codec": video.codec,
        },
        "model": model,
        "counts": {
            "total_unique": summary.total_unique,
            "raw_total_unique": summary.raw_total_unique,
            "merged": summary.merged,
            "short_tracks": summary.short_tracks,
            "by_class": summary.by_class,
            "peak": summary.peak,
            **({} if summary.passes is None else {"passes": summary.passes}),
        },
        "tracks": summary.tracks,
        "timeline": summary.timeline,
        "lines": summary.lines,
        "zones": summary.zones,
        "processing": dict(processing),
    }


@cache
def stats_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of stats.json."""
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


def validate_stats(stats: Mapping[str, Any]) -> None:
    """Check a stats document against the schema.

    Needs ``jsonschema`` (a development dependency). Raises CattleCounterError listing
    every problem, each with its JSON path.
    """
    import jsonschema  # development dependency: the service itself never validates its own output

    validator = jsonschema.Draft202012Validator(stats_schema())
    problems = sorted(validator.iter_errors(stats), key=lambda error: list(error.absolute_path))
    if problems:
        lines = [f"{error.json_path}: {error.message}" for error in problems[:20]]
        raise CattleCounterError("stats.json does not match its schema:\n" + "\n".join(lines))


def move_outputs(paths: Mapping[str, Path], destination: Path) -> dict[str, Path]:
    """Move finished outputs into ``destination``: renames on one filesystem, so each lands whole."""
    destination.mkdir(parents=True, exist_ok=True)
    moved = {}
    for name, path in paths.items():
        target = destination / name
        target.parent.mkdir(parents=True, exist_ok=True)  # crops/<id>.jpg
        shutil.move(str(path), target)
        moved[name] = target
    return moved
