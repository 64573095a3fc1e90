"""Counting animals in still images and orthomosaics: one job, many files.

``StillsRun`` takes the job's files one at a time (``add_file``) and streams each file's
results to ``output_dir`` as it goes, so memory does not grow with the number of files;
``finish`` writes the job's summaries. Per file:

1. **Open and check** (``ml_engine.media.raster``): JPEG, PNG, TIFF, GeoTIFF, BigTIFF, COG through
   GDAL; too large, damaged, band-less or non-colour files become a typed per-file error
   (``FileResult.ok`` False) and the job goes on.
2. **Detect.** A *still* (up to ``windowed_above_pixels``) is read whole and tiled in memory
   as video frames are (``TILING``; ``TiledDetector.detect``). A *large raster* (an
   orthomosaic) is never loaded whole: its tiles are read as windows from the file,
   ``tile_batch_size`` at a time, each batch one forward pass (``TiledDetector.detect_windowed``);
   there is no whole-frame view (an animal is a few pixels of a 20,000 px mosaic). Progress is
   reported by tiles. Boxes from all tiles are merged across the seams (``merge_in_clusters``).
3. **Georeference** (``ml_engine.geo``): when the file has a CRS and a geotransform, each
   detection gets its ground position (source CRS and WGS84) and an animal id from the
   cross-image deduplication (``ml_engine.survey.dedup``). A drone JPEG is placed by its
   footprint from EXIF GPS and DJI XMP, refined by registration to the overlapping shots
   before it (``ml_engine.survey.grid``), and deduplicated alike; other files (and oblique or
   unplaceable JPEGs) are counted and say why no coordinates could be given.
4. **Write**: a line in ``results.jsonl`` and ``detections.jsonl``, the COCO image and its
   annotations, GeoJSON features, and the annotated image (the still, or a downscaled
   overview of a large raster, read decimated).
5. **Picture** (``ml_engine.stills_gallery``): the best crop of each counted animal, taken
   before the image is drawn on; ``finish`` writes gallery.json and gallery.zip.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

import cv2
import numpy as np
import supervision as sv

from core.errors import CattleCounterError, ImageError, JobCancelled
from core.outputs import (
    COCO,
    DETECTIONS,
    GALLERY,
    GALLERY_ZIP,
    GEOJSON,
    RESULTS,
    RESULTS_CSV,
    STATS,
    annotated_overview,
    annotated_still,
)
from core.tables import write_results_csv
from ml_engine.detection import DEFAULT_RASTER_TILE, DetectionConfig, DetectorLike, TiledDetector
from ml_engine.gallery import crop_region, cut_crop, shrink_crop
from ml_engine.geo import (
    DEDUP_TOLERANCE_PX,
    GroundPoints,
    crs_name,
    ground_sample_distance_m,
    pixels_to_crs,
    to_wgs84,
)
from ml_engine.media.raster import RasterSource, open_raster, upright
from ml_engine.outputs import copy_json_lines, json_line, write_json
from ml_engine.stills_gallery import MAX_ITEMS, CropReader, StillsGallery
from ml_engine.survey.dedup import DEDUP_WALK_M, GroundDeduplicator, sightings_from_boxes
from ml_engine.survey.grid import Shot, SurveyGrid, Unplaced, shot_features

__all__ = ["DEFAULT_MAX_RASTER_PIXELS", "WINDOWED_ABOVE_PIXELS", "FileResult", "StillsConfig", "StillsRun",
           "validate_stills_stats"]

DEFAULT_MAX_RASTER_PIXELS = 50_000 * 50_000
# Above this many pixels (24 MP, 69 MiB as RGB) a file is read in windows, tile by tile, never
# whole. Drone stills (20 MP: 5472 x 3648) are read whole and tiled in memory as video frames are.
WINDOWED_ABOVE_PIXELS = 6000 * 4000
OVERVIEW_MAX_PX = 2048  # long side of a large raster's annotated overview
STILLS_SCHEMA_VERSION = 1
NO_COORDINATES = "no georeferencing (no CRS and geotransform): counted, but no coordinates could be given"
EXIF_GPS_ONLY = ("EXIF GPS, but no ground footprint (the camera's position alone does not place its pixels): "
                 "counted, but no coordinates could be given")

_COCO_IMAGES_PART = ".stills_coco_images.part"
_COCO_ANNOTATIONS_PART = ".stills_coco_annotations.part"
_GEOJSON_PART = ".stills_geojson.part"


@dataclass
class StillsConfig:
    """How to process a job's stills and rasters.

    ``detection``: as for video (its low threshold is not used: a still has no tracks);
    ``detection.tiling`` applies to stills; a large raster is always tiled (``WxH`` when given,
    else the model's input size), ``tile_batch_size`` tiles per forward pass (and per windowed
    read). ``max_raster_pixels``:
    refuse larger files (MAX_RASTER_PIXELS). ``dedup``: count an animal seen in several
    georeferenced images once (``ml_engine.geo``). ``windowed_above_pixels``: read larger
    files in windows. ``dedup_tolerance_px``: the matching distance, in ground sample distances.
    """

    detection: DetectionConfig = field(default_factory=DetectionConfig)
    max_raster_pixels: int = DEFAULT_MAX_RASTER_PIXELS
    dedup: bool = True
    windowed_above_pixels: int = WINDOWED_ABOVE_PIXELS
    dedup_tolerance_px: float = DEDUP_TOLERANCE_PX
    registration: bool = True  # refine drone JPEGs' footprints by registering overlapping shots
    dedup_walk_m: float = DEDUP_WALK_M  # how far an animal unmatched inside an image may have walked
    overview_max_px: int = OVERVIEW_MAX_PX
    gallery_max_items: int = MAX_ITEMS


@dataclass
class FileResult:
    """One file's outcome (a line of results.jsonl). ``outputs``: files produced for it (name
    relative to the output directory -> path), e.g. its annotated image."""

    name: str
    ok: bool
    counts: dict[str, Any] = field(default_factory=lambda: {"total": 0, "by_class": {}})
    error: dict[str, str] | None = None
    width: int | None = None
    height: int | None = None
    georeferenced: bool = False
    kind: str | None = None  # "still" (read whole) or "raster" (read in windows)
    format: str | None = None
    crs: str | None = None
    tiles: int = 0
    notes: list[str] = field(default_factory=list)
    outputs: dict[str, Path] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        document = asdict(self)
        document["outputs"] = sorted(self.outputs)
        return document


class StillsRun:
    """One job's images: ``add_file`` each, then ``finish`` (see the module's description)."""

    def __init__(self, output_dir: Path, detector: DetectorLike, config: StillsConfig) -> None:
        """Raises InvalidInput for class names the model does not know (before any file)."""
        self.detection = TiledDetector(detector, config.detection, config.detection.threshold, clustered=True)
        self.detection.check_classes()
        self.output_dir = Path(output_dir)
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self.detector, self.config = detector, config
        self.started = time.monotonic()
        self.images = 0
        self.failed = 0
        self.tiles = 0
        self.per_image_sum: Counter[str] = Counter()
        self.unmatched: Counter[str] = Counter()  # counts of images that cannot be deduplicated
        self.georeferenced_images = 0
        self.source_crs: set[str] = set()
        self.dedup = GroundDeduplicator(config.dedup_tolerance_px, config.dedup_walk_m)
        self.survey = SurveyGrid(registration=config.registration)  # drone JPEGs placed by EXIF/XMP
        self.gallery = StillsGallery(self.output_dir, config.gallery_max_items)
        self.crops: dict[str, Path] = {}  # the gallery's pictures (crops/<id>.jpg), once finished
        self._annotation_id = 0
        self._annotated_names: set[str] = set()
        self._results = self._open(RESULTS)
        self._detections = self._open(DETECTIONS)
        self._coco_images = self._open(_COCO_IMAGES_PART)
        self._coco_annotations = self._open(_COCO_ANNOTATIONS_PART)
        self._geojson = self._open(_GEOJSON_PART)
        self._geojson_features = 0

    def _open(self, name: str) -> IO[str]:
        return (self.output_dir / name).open("w", encoding="utf-8", newline="\n")

    # --- one file -----------------------------------------------------------------------------

    def add_file(
        self,
        name: str,
        path: Path,
        on_tiles: Callable[[int, int], None] | None = None,
        should_cancel: Callable[[], bool] | None = None,
    ) -> FileResult:
        """Count one file and write its results. A bad file gives ``ok=False`` with a typed
        error; only job-level problems raise (JobCancelled, ModelError, OSError of the disk),
        and they end the run: its open result files are closed (call nothing after)."""
        try:
            return self._add_file(name, path, on_tiles, should_cancel)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Close the result files being written (``finish`` does it too); safe to repeat."""
        for handle in self._handles():
            handle.close()

    def _add_file(
        self,
        name: str,
        path: Path,
        on_tiles: Callable[[int, int], None] | None,
        should_cancel: Callable[[], bool] | None,
    ) -> FileResult:
        self.images += 1
        result = FileResult(name=name, ok=False)
        try:
            with open_raster(Path(path), name, self.config.max_raster_pixels) as source:
                self._process(source, result, on_tiles, should_cancel)
        except ImageError as exc:
            result.ok = False
            result.error = {"code": exc.code, "message": exc.message}
            self.failed += 1
        self._record(result)
        return result

    def add_refused(self, name: str, code: str, message: str) -> FileResult:
        """A file of the job that never reached the engine (refused at submit, gone, replaced):
        reported as a failed file with its typed error, as one the engine could not read."""
        self.images += 1
        self.failed += 1
        result = FileResult(name=name, ok=False, error={"code": code, "message": message})
        self._record(result)
        return result

    def _record(self, result: FileResult) -> None:
        self._results.write(json_line(result.to_json()))
        self._results.flush()

    def _process(self, source: RasterSource, result: FileResult,
                 on_tiles: Callable[[int, int], None] | None, should_cancel: Callable[[], bool] | None) -> None:
        result.width, result.height, result.format = source.width, source.height, source.format
        result.notes.extend(source.notes)
        windowed = source.width * source.height > self.config.windowed_above_pixels
        result.kind = "raster" if windowed else "still"
        progress = _TileProgress(on_tiles, should_cancel)
        if windowed:
            if self.config.detection.tiling.mode == "off":
                result.notes.append("TILING=off does not apply to a raster read in windows: it was tiled "
                                    "with tiles of {}x{} px".format(*self._raster_tile()))
            if source.orientation != 1:
                result.notes.append(f"EXIF orientation {source.orientation} not applied to a raster read in "
                                    "windows: boxes are in the stored pixel grid")
            detections, result.tiles = self._detect_windowed(source, progress)
            image, scale = source.read_overview(self.config.overview_max_px)
            annotated_name = annotated_overview(result.name)
        else:
            image = source.read((0, 0, source.width, source.height))
            if source.orientation != 1 and not source.georeferenced:  # a camera JPEG shot sideways
                image = upright(image, source.orientation)
                result.height, result.width = image.shape[:2]
                result.notes.append(f"EXIF orientation {source.orientation} applied: boxes are in the upright image")
            detections, result.tiles = self._detect_still(image, progress)
            scale, annotated_name = 1.0, annotated_still(result.name)
        self.tiles += result.tiles
        rows = _rows(detections)
        by_class = Counter(row["class"] for row in rows)
        result.counts = {"total": len(rows), "by_class": dict(sorted(by_class.items()))}
        self.per_image_sum.update(by_class)
        self._georeference(source, result, detections, rows, None if windowed else image)
        # before the image is drawn on; a large raster's crops come from the file, in small windows
        reader = _window_reader(source) if windowed else _image_reader(image)
        self.gallery.add_image(result.name, (source.width, source.height) if windowed
                               else (int(result.width or 0), int(result.height or 0)), rows, reader)
        result.ok = True
        image_id = self.images
        self._write_detections(result, image_id, rows)
        path = self._write_annotated(annotated_name, image, detections, scale, result.counts["total"])
        result.outputs[path.relative_to(self.output_dir).as_posix()] = path

    # --- detection ----------------------------------------------------------------------------

    def _detect_still(self, image: np.ndarray, progress: _TileProgress) -> tuple[sv.Detections, int]:
        height, width = image.shape[:2]
        tiles = self.detection.plan(width, height).views_per_frame
        return self.detection.detect([image], progress=progress)[0], tiles

    def _detect_windowed(self, source: RasterSource, progress: _TileProgress) -> tuple[sv.Detections, int]:
        """Tile by tile from the file: only the (few) boxes are kept, never the pixels."""
        return self.detection.detect_windowed(source.read, source.width, source.height, self._raster_tile(), progress)

    def _raster_tile(self) -> tuple[int, int]:
        setting = self.config.detection.tiling
        if setting.mode == "size" and setting.size:
            return setting.size
        return self.detector.tile_size() or DEFAULT_RASTER_TILE

    # --- georeferencing -----------------------------------------------------------------------

    def _georeference(self, source: RasterSource, result: FileResult, detections: sv.Detections,
                      rows: list[dict[str, Any]], image: np.ndarray | None) -> None:
        if not source.georeferenced:
            shot = self._place_shot(source, result, image)
            if shot is None:
                self.unmatched.update(row["class"] for row in rows)
            else:
                self._locate_on_shot(shot, result, detections, rows)
            return
        result.georeferenced = True
        result.crs = crs_name(source.crs)
        self.georeferenced_images += 1
        self.source_crs.add(result.crs)
        if not rows:
            return
        points = GroundPoints(source.crs, source.transform, detections.xyxy.astype(np.float64))
        if self.config.dedup:
            gsd = ground_sample_distance_m(source.crs, source.transform, source.width, source.height)

            def lonlat_of(xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
                return to_wgs84(source.crs, *pixels_to_crs(source.transform, xs, ys))

            ids = self.dedup.add(self.images, sightings_from_boxes(
                detections.xyxy, source.width, source.height, lonlat_of, gsd, [row["class"] for row in rows],
                np.array([row["score"] for row in rows])))
        else:
            ids = [None] * len(rows)  # type: ignore[list-item]  # no animal ids without deduplication
        boxes = _box_rings(source, detections.xyxy.astype(np.float64))
        for row, x, y, lon, lat, animal, ring in zip(rows, points.crs_x, points.crs_y, points.lon, points.lat,
                                                     ids, boxes, strict=True):
            row["ground"] = {"lon": round(float(lon), 8), "lat": round(float(lat), 8),
                             "crs_x": round(float(x), 4), "crs_y": round(float(y), 4)}
            if animal is not None:
                row["animal"] = animal
            self._write_features(result, row, ring)

    def _place_shot(self, source: RasterSource, result: FileResult, image: np.ndarray | None) -> Shot | None:
        """A drone JPEG's footprint from its EXIF/XMP (``ml_engine.survey``), or None (and the note why)."""
        if source.format != "JPEG":
            result.notes.append(NO_COORDINATES)
            return None
        placed = self.survey.place(self.images, result.name, Path(source.dataset.name), image,
                                   source.width, source.height, source.orientation)
        if isinstance(placed, Unplaced):
            result.notes.append(EXIF_GPS_ONLY if _has_exif_gps(source) else NO_COORDINATES)
            result.notes.append(placed.reason)
            return None
        result.notes.extend(placed.notes)
        result.notes.append(f"placed by its {'registered ' if placed.method == 'registered' else ''}EXIF/XMP "
                            f"footprint: positions approximate, about {placed.accuracy_m:.1f} m")
        self._geojson.write(json_line(placed.footprint_feature()))
        return placed

    def _locate_on_shot(self, shot: Shot, result: FileResult, detections: sv.Detections,
                        rows: list[dict[str, Any]]) -> None:
        """A placed JPEG's detections on the ground and deduplicated, as a GeoTIFF's."""
        if not rows:
            return
        xyxy = detections.xyxy.astype(np.float64)
        ids: list[int | None] = [None] * len(rows)
        if self.config.dedup:
            ids = list(self.dedup.add(self.images, sightings_from_boxes(
                xyxy, shot.footprint.width, shot.footprint.height, shot.lonlat_of, shot.footprint.gsd_m,
                [row["class"] for row in rows], np.array([row["score"] for row in rows]),
                extra_tolerance_m=shot.extra_tolerance_m)))
        for row, animal, features in zip(rows, ids, shot_features(shot, result.name, rows, xyxy), strict=True):
            row["ground"] = {"lon": features[1]["geometry"]["coordinates"][0],
                             "lat": features[1]["geometry"]["coordinates"][1], "accuracy_m": round(shot.accuracy_m, 2)}
            for feature in features:
                if animal is not None:
                    row["animal"] = feature["properties"]["animal"] = animal
                self._geojson.write(json_line(feature))
                self._geojson_features += 1

    def _write_features(self, result: FileResult, row: dict[str, Any], ring: dict[str, list]) -> None:
        """Two features per detection: its box (Polygon) and its centre (Point), both WGS84,
        with the source-CRS coordinates as properties (RFC 7946 has no ``crs`` member)."""
        common = {"image": result.name, "detection": row["index"], "class": row["class"], "score": row["score"],
                  "box_px": row["box"], "source_crs": result.crs}
        if "animal" in row:
            common["animal"] = row["animal"]
        ground = row["ground"]
        box = {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [ring["wgs84"]]},
               "properties": {**common, "kind": "box", "source_coordinates": ring["crs"]}}
        centre = {"type": "Feature", "geometry": {"type": "Point", "coordinates": [ground["lon"], ground["lat"]]},
                  "properties": {**common, "kind": "centre", "source_x": ground["crs_x"],
                                 "source_y": ground["crs_y"]}}
        for feature in (box, centre):
            self._geojson.write(json_line(feature))
            self._geojson_features += 1

    # --- writing ------------------------------------------------------------------------------

    def _write_detections(self, result: FileResult, image_id: int, rows: list[dict[str, Any]]) -> None:
        self._detections.write(json_line({"image": result.name, "width": result.width, "height": result.height,
                                           "detections": rows}))
        self._coco_images.write(json_line({"id": image_id, "file_name": result.name, "width": result.width,
                                            "height": result.height}))
        for row in rows:
            self._annotation_id += 1
            x1, y1, x2, y2 = row["box"]
            width, height = round(x2 - x1, 2), round(y2 - y1, 2)
            self._coco_annotations.write(json_line({
                "id": self._annotation_id, "image_id": image_id, "category_id": row["class_id"],
                "bbox": [x1, y1, width, height], "area": round(width * height, 2), "iscrowd": 0,
                "score": row["score"],
            }))

    def _write_annotated(self, name: str, image: np.ndarray, detections: sv.Detections, scale: float,
                         total: int) -> Path:
        if name in self._annotated_names:  # two job names that clean up alike
            stem, dot, ext = name.partition(".")
            name = f"{stem}-{self.images}{dot}{ext}"
        self._annotated_names.add(name)
        path = self.output_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        drawn = _draw(image, detections, scale, total)
        if not cv2.imwrite(str(path), cv2.cvtColor(drawn, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 88]):
            raise OSError(f"could not write {path}")
        return path

    # --- the job's summaries --------------------------------------------------------------------

    def finish(self) -> tuple[dict[str, Any], dict[str, Path]]:
        """Write coco.json, detections.geojson (when any input is georeferenced), results.csv,
        gallery.json and gallery.zip (its pictures: ``self.crops``, not returned) and stats.json;
        returns (stats, {file name relative to output_dir: path})."""
        self.close()
        outputs = {name: self.output_dir / name for name in (RESULTS, RESULTS_CSV, DETECTIONS, COCO, STATS)}
        write_results_csv(self.output_dir)
        self._write_coco()
        if self.georeferenced_images or self.survey.shots:
            self._write_geojson()
            outputs[GEOJSON] = self.output_dir / GEOJSON
        (self.output_dir / _GEOJSON_PART).unlink(missing_ok=True)
        gallery = self.gallery.finish()
        self.crops = {name: path for name, path in gallery.items() if name not in (GALLERY, GALLERY_ZIP)}
        outputs.update({name: gallery[name] for name in (GALLERY, GALLERY_ZIP)})
        stats = self._stats()
        write_json(self.output_dir / STATS, stats)
        for path in sorted((self.output_dir / "annotated").glob("*.jpg")):
            outputs[path.relative_to(self.output_dir).as_posix()] = path
        return stats, outputs

    def _handles(self) -> Iterable[IO[str]]:
        return (self._results, self._detections, self._coco_images, self._coco_annotations, self._geojson)

    def _write_coco(self) -> None:
        labels = getattr(self.detector, "labels", {}) or {}
        categories = [{"id": int(i), "name": n, "supercategory": "object"} for i, n in sorted(labels.items())]
        with (self.output_dir / COCO).open("w", encoding="utf-8") as out:
            out.write('{"info": ' + json.dumps({"description": "CattleCounter detections in stills",
                                                "version": STILLS_SCHEMA_VERSION}))
            out.write(', "categories": ' + json.dumps(categories) + ', "images": [')
            copy_json_lines(self.output_dir / _COCO_IMAGES_PART, out)
            out.write('], "annotations": [')
            copy_json_lines(self.output_dir / _COCO_ANNOTATIONS_PART, out)
            out.write("]}\n")
        for part in (_COCO_IMAGES_PART, _COCO_ANNOTATIONS_PART):
            (self.output_dir / part).unlink(missing_ok=True)

    def _write_geojson(self) -> None:
        temp = self.output_dir / f".{GEOJSON}.part"
        with temp.open("w", encoding="utf-8") as out:
            out.write('{"type": "FeatureCollection", "features": [')
            copy_json_lines(self.output_dir / _GEOJSON_PART, out)
            out.write("]}\n")
        os.replace(temp, self.output_dir / GEOJSON)

    def _stats(self) -> dict[str, Any]:
        per_image, failed = [], []
        with (self.output_dir / RESULTS).open(encoding="utf-8") as lines:
            for line in lines:
                entry = json.loads(line)
                if entry["ok"]:
                    per_image.append({key: entry[key] for key in ("name", "counts", "kind", "georeferenced", "notes")})
                else:
                    failed.append({"name": entry["name"], "error": entry["error"]})
        model = dict(self.detector.describe())
        if model.get("random_weights"):
            model.setdefault("note", "model: random weights — not real detections")
        by_class = dict(sorted(self.per_image_sum.items()))
        seconds = time.monotonic() - self.started
        return {
            "schema_version": STILLS_SCHEMA_VERSION,
            "kind": "stills",
            "model": model,
            "images": {"total": self.images, "ok": self.images - self.failed, "failed": self.failed,
                       "georeferenced": self.georeferenced_images},
            "counts": {
                "total": sum(by_class.values()),  # the per-image sum
                "by_class": by_class,
                "per_image_sum": sum(by_class.values()),
                "deduplicated": self._dedup_summary(),
            },
            "per_image": per_image,
            "failed": failed,
            "georeference": self._georeference_summary(),
            **({"survey": self.survey.summary()} if self.survey.attempted else {}),
            "processing": {
                "seconds": round(seconds, 3),
                "tiles": self.tiles,
                "device": getattr(self.detector, "device", None),
                "threshold": self.config.detection.threshold,
                "classes": self.config.detection.classes or [],
                "tiling": {"setting": self.config.detection.tiling.text,
                           "full_frame_pass_stills": self.config.detection.full_frame,
                           "large_rasters": "always tiled, read in windows; no whole-frame view",
                           "windowed_above_pixels": self.config.windowed_above_pixels},
                "max_raster_pixels": self.config.max_raster_pixels,
            },
        }

    def _dedup_summary(self) -> dict[str, Any]:
        overlap = self.survey.footprints_overlap
        if not self.config.dedup:
            return {"applied": False, "reason": "deduplication is off for this job", "footprints_overlap": overlap}
        if not self.georeferenced_images and not self.survey.shots:
            return {"applied": False, "footprints_overlap": overlap,
                    "reason": "no input is georeferenced or placed by its EXIF/XMP footprint: images cannot be "
                              "matched on the ground"}
        by_class = Counter(self.dedup.by_class) + self.unmatched
        return {
            "applied": True,
            "total": sum(by_class.values()),
            "by_class": dict(sorted(by_class.items())),
            "georeferenced_animals": self.dedup.total,
            "not_georeferenced_detections": sum(self.unmatched.values()),
            "sightings": self.dedup.sightings,
            "edge_cut_sightings": self.dedup.cut_sightings,
            "walked_matches": self.dedup.walked,
            "walk_m": self.config.dedup_walk_m,
            "method": ("box centres on the ground (WGS84); an animal is a cluster of sightings, placed by its whole "
                       "sightings (weighted towards their images' centres); a detection of another image, of the "
                       f"same class, within {self.config.dedup_tolerance_px:g} ground sample distances (plus a "
                       "JPEG's placement error) of it is the same animal, nearest pairs first; a box cut by its "
                       "image's edge is matched along the segment where its hidden centre may lie; an animal "
                       f"well inside an image that none of its sightings matched takes one up to {self.config.dedup_walk_m:g} m "
                       "further (it walked); detections "
                       "of one image are never merged; images not placed on the ground add their counts "
                       "unmatched"),
            "tolerance_px": self.config.dedup_tolerance_px,
            "largest_tolerance_m": round(self.dedup.largest_tolerance_m, 4),
            "limits": "an animal that moved more than the tolerance between shots counts twice; two animals of "
                      "one class closer than the tolerance in different shots count once; placement errors "
                      "larger than the tolerance break the matching",
        }

    def _georeference_summary(self) -> dict[str, Any]:
        return {
            "georeferenced_images": self.georeferenced_images,
            "source_crs": sorted(self.source_crs),
            "output": GEOJSON if self.georeferenced_images or self.survey.shots else None,
            "placed_by_footprint": len(self.survey.shots),
            "without_coordinates": self.images - self.failed - self.georeferenced_images - len(self.survey.shots),
        }


STATS_SCHEMA_PATH = Path(__file__).parent / "schemas" / "stills_stats.schema.json"


def validate_stills_stats(stats: dict[str, Any]) -> None:
    """Check a stills stats.json against its schema (needs ``jsonschema``, a development
    dependency). Raises CattleCounterError listing every problem with its JSON path."""
    import jsonschema

    schema = json.loads(STATS_SCHEMA_PATH.read_text(encoding="utf-8"))
    problems = sorted(jsonschema.Draft202012Validator(schema).iter_errors(stats), key=lambda e: list(e.absolute_path))
    if problems:
        lines = [f"{error.json_path}: {error.message}" for error in problems[:20]]
        raise CattleCounterError("stills stats.json does not match its schema:\n" + "\n".join(lines))


class _TileProgress:
    """Reports tiles done and checks for cancellation between tile batches."""

    def __init__(self, on_tiles: Callable[[int, int], None] | None, should_cancel: Callable[[], bool] | None):
        self.on_tiles, self.should_cancel = on_tiles, should_cancel

    def check(self, done: int, total: int) -> None:
        if self.should_cancel is not None and self.should_cancel():
            raise JobCancelled(f"the job was cancelled while it was being processed ({done} of {total} tiles done)")

    def report(self, done: int, total: int) -> None:
        if self.on_tiles is not None:
            self.on_tiles(done, total)


def _rows(detections: sv.Detections) -> list[dict[str, Any]]:
    """The detections as JSON rows: index, class, class id, score, box [x1, y1, x2, y2] (pixels)."""
    if len(detections) == 0:
        return []
    names = detections.data.get("class_name", np.full(len(detections), "object"))
    class_ids = detections.class_id if detections.class_id is not None else np.zeros(len(detections), int)
    scores = detections.confidence if detections.confidence is not None else np.ones(len(detections))
    return [
        {"index": i, "class": str(name), "class_id": int(class_id), "score": round(float(score), 4),
         "box": [round(float(v), 2) for v in xyxy]}
        for i, (xyxy, name, class_id, score) in enumerate(zip(detections.xyxy, names, class_ids, scores, strict=True))
    ]


def _box_rings(source: RasterSource, xyxy: np.ndarray) -> list[dict[str, list]]:
    """Each box as a closed ring, counter-clockwise on the ground (RFC 7946's right-hand rule),
    in WGS84 and in the source CRS."""
    corners_x = np.stack([xyxy[:, 0], xyxy[:, 2], xyxy[:, 2], xyxy[:, 0]], axis=1).ravel()
    corners_y = np.stack([xyxy[:, 1], xyxy[:, 1], xyxy[:, 3], xyxy[:, 3]], axis=1).ravel()
    crs_x, crs_y = pixels_to_crs(source.transform, corners_x, corners_y)
    lons, lats = to_wgs84(source.crs, crs_x, crs_y)
    rings = []
    for i in range(len(xyxy)):
        part = slice(4 * i, 4 * i + 4)
        wgs = [[round(float(x), 8), round(float(y), 8)] for x, y in zip(lons[part], lats[part], strict=True)]
        src = [[round(float(x), 4), round(float(y), 4)] for x, y in zip(crs_x[part], crs_y[part], strict=True)]
        if _signed_area(wgs) < 0:  # clockwise (a north-up image's pixel order): turn it round
            wgs.reverse()
            src.reverse()
        rings.append({"wgs84": wgs + [wgs[0]], "crs": src + [src[0]]})
    return rings


def _signed_area(ring: list[list[float]]) -> float:
    return sum(x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in zip(ring, ring[1:] + ring[:1], strict=True)) / 2


def _has_exif_gps(source: RasterSource) -> bool:
    """True when the file carries EXIF GPS tags (GDAL lists them as EXIF_GPS* metadata)."""
    try:
        return any(key.startswith("EXIF_GPS") for key in source.dataset.tags())
    except Exception:  # a metadata domain GDAL cannot parse is no reason to fail the file
        return False


def _image_reader(image: np.ndarray) -> CropReader:
    """A still's crops: cut from the image in memory."""
    return lambda box: cut_crop(image, box)


def _window_reader(source: RasterSource) -> CropReader:
    """A large raster's crops: each read from the file as the small window around its box."""
    def read(box: Sequence[float]) -> np.ndarray | None:
        region = crop_region(box, (source.width, source.height))
        return None if region is None else shrink_crop(source.read(region))
    return read


def _draw(image: np.ndarray, detections: sv.Detections, scale: float, total: int) -> np.ndarray:
    """The detections drawn onto ``image`` (RGB; ``scale``: image pixels per raster pixel) with the count."""
    height, width = image.shape[:2]
    thickness = max(1, round(max(width, height) / 640))
    colours = [(255, 214, 0), (0, 200, 255), (255, 64, 129), (118, 255, 3), (213, 0, 249)]
    class_ids = detections.class_id if detections.class_id is not None else np.zeros(len(detections), int)
    for xyxy, class_id in zip(detections.xyxy, class_ids, strict=True):
        x1, y1, x2, y2 = (int(round(float(v) * scale)) for v in xyxy)
        cv2.rectangle(image, (x1, y1), (max(x2, x1 + 1), max(y2, y1 + 1)), colours[int(class_id) % len(colours)],
                      thickness)
    label = f"count: {total}"
    font_scale = max(0.5, max(width, height) / 1600)
    cv2.putText(image, label, (10, 10 + int(30 * font_scale)), cv2.FONT_HERSHEY_SIMPLEX, font_scale, (0, 0, 0),
                thickness + 2, cv2.LINE_AA)
    cv2.putText(image, label, (10, 10 + int(30 * font_scale)), cv2.FONT_HERSHEY_SIMPLEX, font_scale,
                (255, 255, 255), thickness, cv2.LINE_AA)
    return image
