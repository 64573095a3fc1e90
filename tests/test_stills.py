"""Stills and orthomosaics (ml_engine.stills): formats, windowed reading of large rasters, seam
merging, georeferenced GeoJSON, deduplication across overlapping stills, per-file errors.

Detection-dependent checks use ``BlobDetector`` (tests/stills_oracle.py), a deterministic
detector answering from the painted animals; the rest of the path is the product's own. One
test runs the tiny real checkpoint end to end, and one the CLI.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
import textwrap
from itertools import pairwise
from pathlib import Path

import cv2
import numpy as np
import pytest
import rasterio
import rasterio.shutil
from PIL import Image
from rasterio.warp import transform as warp_transform

from core.errors import CattleCounterError, JobCancelled
from core.outputs import COCO, DETECTIONS, GEOJSON, RESULTS, RESULTS_CSV, STATS, media_type
from core.tiling import parse_tiling
from ml_engine.detection import DetectionConfig
from ml_engine.stills import EXIF_GPS_ONLY, NO_COORDINATES, StillsConfig, StillsRun, validate_stills_stats
from ml_engine.survey.dedup import GroundDeduplicator
from tests.stills_oracle import (
    CRS,
    GSD,
    ORIGIN,
    Animal,
    BlobDetector,
    field_transform,
    paint,
    write_geotiff,
    write_sparse_ortho,
)

pytestmark = pytest.mark.timeout(300)

FIELD = (2000, 1500)  # width, height in pixels
STILL_WIDTH = 1000
STILL_OFFSETS = (0, 500, 1000)  # three stills across the field, overlapping 50 %
ANIMALS = [
    Animal(100, 200),  # still 0 only
    Animal(700, 300),  # stills 0 and 1
    Animal(900, 1200, "sheep"),  # stills 0 and 1
    Animal(1200, 700),  # stills 1 and 2
    Animal(1700, 100),  # still 2 only
    Animal(1250, 1400),  # stills 1 and 2
    Animal(760, 760),  # two cows 20 px (1 m) apart, both in stills 0 and 1: stay two
    Animal(780, 760),
    Animal(1000, 600),  # on still 0's right edge (a part of it there), whole in stills 1 and 2
]
SEEN_PER_STILL = (6, 7, 4)  # detections per still, the cut one included


def field_image() -> np.ndarray:
    return paint(np.full((FIELD[1], FIELD[0], 3), 40, np.uint8), ANIMALS)


def write_stills(folder: Path) -> list[tuple[str, Path]]:
    field = field_image()
    files = []
    for index, offset in enumerate(STILL_OFFSETS):
        path = folder / f"still_{index}.tif"
        write_geotiff(path, field[:, offset:offset + STILL_WIDTH], transform=field_transform((offset, 0)))
        files.append((path.name, path))
    return files


def run_files(output: Path, files: list[tuple[str, Path]], detector=None, tiling: str = "auto",
              **config) -> tuple[StillsRun, list, dict]:
    run = StillsRun(output, detector or BlobDetector(),
                    StillsConfig(detection=DetectionConfig(threshold=0.5, tiling=parse_tiling(tiling)), **config))
    results = [run.add_file(name, path) for name, path in files]
    stats, outputs = run.finish()
    validate_stills_stats(stats)
    return run, results, {"stats": stats, "outputs": outputs}


# --- overlapping georeferenced stills: counts, deduplication, GeoJSON ------------------------------------


def test_overlapping_geotiffs_report_the_per_image_sum_and_each_animal_once(tmp_path: Path) -> None:
    _, results, done = run_files(tmp_path / "out", write_stills(tmp_path))
    stats = done["stats"]
    assert [r.counts["total"] for r in results] == list(SEEN_PER_STILL)
    assert all(r.ok and r.georeferenced and r.crs == CRS and r.kind == "still" for r in results)
    assert json.loads((tmp_path / "out" / STATS).read_text()) == stats  # what was written is what was returned
    assert stats["counts"]["per_image_sum"] == sum(SEEN_PER_STILL) == 17
    dedup = stats["counts"]["deduplicated"]
    assert dedup["applied"] is True
    assert dedup["total"] == len(ANIMALS) == 9
    assert dedup["by_class"] == {"cow": 8, "sheep": 1}
    assert stats["georeference"]["source_crs"] == [CRS]
    # 16 px of 5 cm grid, on the ground: UTM's scale factor on the central meridian is 0.9996
    assert math.isclose(dedup["largest_tolerance_m"], 16 * GSD / 0.9996, rel_tol=5e-3)


def test_deduplication_turned_off_counts_every_image(tmp_path: Path) -> None:
    _, _, done = run_files(tmp_path / "out", write_stills(tmp_path), dedup=False)
    assert done["stats"]["counts"]["per_image_sum"] == 17
    assert done["stats"]["counts"]["deduplicated"]["applied"] is False
    del done["stats"]["counts"]["deduplicated"]["reason"]  # the schema insists on saying why
    with pytest.raises(CattleCounterError, match="reason"):
        validate_stills_stats(done["stats"])


def test_deduplicator_matches_exact_ground_positions() -> None:
    """Tolerance 16 px at 5 cm GSD = 0.8 m; degrees near 48.7 N converted exactly as the module does."""
    dedup = GroundDeduplicator(tolerance_px=16)
    lat0, lon0 = 48.7, 15.0
    metre_lat = 1 / (6_371_008.8 * math.pi / 180)
    metre_lon = metre_lat / math.cos(math.radians(lat0))

    def add(image: int, points: list[tuple[float, float, str]]) -> list[int]:
        lons = np.array([lon0 + east * metre_lon for east, _, _ in points])
        lats = np.array([lat0 + north * metre_lat for _, north, _ in points])
        return dedup.add_image(image, lons, lats, [c for _, _, c in points], np.ones(len(points)), gsd_m=0.05)

    first = add(1, [(0, 0, "cow"), (0.5, 0, "cow"), (10, 10, "cow")])  # 0.5 m apart in one image: two cows
    assert len(set(first)) == 3
    second = add(2, [(0.1, 0.1, "cow"), (0.55, 0.0, "cow"), (10, 10.79, "cow"), (20, 20, "cow"), (0, 0, "sheep")])
    assert second[0] == first[0]  # 0.14 m: the same cow
    assert second[1] == first[1]  # nearest unclaimed match
    assert second[2] == first[2]  # 0.79 m: just within 0.8 m
    assert second[3] not in first and second[4] not in first  # far away; another class
    # an animal is placed by the mean of its whole sightings: (10, 10) and (10, 10.79) give (10, 10.395)
    third = add(3, [(10, 11.206, "cow"), (10, 9.6, "cow")])  # 0.811 m beyond it; 0.795 m before it
    assert third[0] not in first + second
    assert third[1] == first[2]
    assert dedup.total == 6 and dedup.by_class == {"cow": 5, "sheep": 1}


def test_geojson_is_rfc7946_wgs84_with_source_coordinates(tmp_path: Path) -> None:
    _, _, done = run_files(tmp_path / "out", write_stills(tmp_path))
    document = json.loads((tmp_path / "out" / GEOJSON).read_text())
    assert document["type"] == "FeatureCollection" and "crs" not in document
    features = document["features"]
    assert len(features) == 2 * 17  # a box and a centre per detection
    for feature in features:
        geometry = feature["geometry"]
        if geometry["type"] == "Polygon":
            ring = geometry["coordinates"][0]
            assert ring[0] == ring[-1] and len(ring) == 5  # closed
            area = sum(x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in pairwise(ring))
            assert area > 0  # counter-clockwise exterior (RFC 7946, 3.1.6)
            points = ring
        else:
            assert geometry["type"] == "Point"
            points = [geometry["coordinates"]]
        for lon, lat in points:  # lon-lat order: this field lies at 15 E, 48.7 N
            assert 14.99 < lon < 15.01 and 48.6 < lat < 48.8
        assert feature["properties"]["source_crs"] == CRS

    centres = [f for f in features if f["properties"]["kind"] == "centre"]
    # the animal at field x = 1000 px lies on easting 500,000 m: UTM 33N's central meridian, 15 E exactly
    on_meridian = [f for f in centres if f["properties"]["image"] == "still_1.tif"
                   and math.isclose(f["properties"]["source_x"], 500_000.0, abs_tol=1e-3)]
    assert len(on_meridian) == 1
    lon, lat = on_meridian[0]["geometry"]["coordinates"]
    assert abs(lon - 15.0) < 1e-6
    # a known pixel: animal (1700, 100) is still 2's pixel (700, 100); its centre through GDAL's own transform
    easting, northing = ORIGIN[0] + 1700 * GSD, ORIGIN[1] - 100 * GSD
    (want_lon,), (want_lat,) = warp_transform(CRS, "EPSG:4326", [easting], [northing])
    match = [f for f in centres if f["properties"]["image"] == "still_2.tif"
             and math.isclose(f["properties"]["source_x"], easting, abs_tol=1e-3)
             and math.isclose(f["properties"]["source_y"], northing, abs_tol=1e-3)]
    assert len(match) == 1
    assert abs(match[0]["geometry"]["coordinates"][0] - want_lon) < 1e-6
    assert abs(match[0]["geometry"]["coordinates"][1] - want_lat) < 1e-6
    # one animal seen in two stills carries one animal id in both
    ids = {f["properties"]["image"]: f["properties"]["animal"] for f in centres
           if math.isclose(f["properties"]["source_x"], ORIGIN[0] + 700 * GSD, abs_tol=1e-3)}
    assert set(ids) == {"still_0.tif", "still_1.tif"} and len(set(ids.values())) == 1
    assert media_type(GEOJSON) == "application/geo+json"
    assert media_type(RESULTS) == "application/x-ndjson"
    assert media_type("annotated/still_0.tif.jpg") == media_type("still_0.tif.overview.jpg") == "image/jpeg"


def test_ogrinfo_reads_the_geojson_as_wgs84(tmp_path: Path) -> None:
    ogrinfo = shutil.which("ogrinfo")
    assert ogrinfo, "ogrinfo (Debian's gdal-bin) is needed: `make gdal` installs it"
    run_files(tmp_path / "out", write_stills(tmp_path))
    shown = subprocess.run([ogrinfo, "-ro", "-so", "-al", str(tmp_path / "out" / GEOJSON)],
                           capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert "Feature Count: 34" in shown.stdout
    assert "WGS 84" in shown.stdout
    assert "ERROR" not in shown.stderr


# --- formats and per-file results -------------------------------------------------------------------


def test_jpeg_png_and_plain_tiff_are_counted_without_coordinates(tmp_path: Path) -> None:
    field = field_image()[:, :STILL_WIDTH]  # animals A, B, C, G, H and a part of I: 6
    bgr = cv2.cvtColor(field, cv2.COLOR_RGB2BGR)
    cv2.imwrite(str(tmp_path / "photo.png"), bgr)
    cv2.imwrite(str(tmp_path / "photo.jpg"), bgr, [cv2.IMWRITE_JPEG_QUALITY, 100])
    write_geotiff(tmp_path / "plain.tif", field, crs=None)
    files = [(n, tmp_path / n) for n in ("photo.png", "photo.jpg", "plain.tif")]
    _, results, done = run_files(tmp_path / "out", files)
    assert [(r.ok, r.format, r.counts["total"], r.georeferenced) for r in results] == [
        (True, "PNG", 6, False), (True, "JPEG", 6, False), (True, "TIFF", 6, False)]
    assert all(NO_COORDINATES in r.notes for r in results)
    stats = done["stats"]
    assert stats["counts"]["by_class"] == {"cow": 15, "sheep": 3}
    assert stats["counts"]["deduplicated"]["applied"] is False
    assert stats["georeference"]["without_coordinates"] == 3
    assert not (tmp_path / "out" / GEOJSON).exists()
    assert set(done["outputs"]) >= {STATS, RESULTS, DETECTIONS, COCO, "annotated/photo.png.jpg"}
    annotated = cv2.imread(str(tmp_path / "out" / "annotated" / "photo.png.jpg"))
    assert annotated.shape[:2] == (FIELD[1], STILL_WIDTH)  # the still itself, drawn on


def test_exif_gps_only_jpeg_is_counted_and_says_why_it_has_no_coordinates(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif.get_ifd(0x8825).update({1: "N", 2: (48.0, 42.0, 0.0), 3: "E", 4: (15.0, 0.0, 0.0)})
    Image.fromarray(field_image()[:, :STILL_WIDTH]).save(tmp_path / "dji.jpg", exif=exif, quality=100)
    _, (result,), done = run_files(tmp_path / "out", [("dji.jpg", tmp_path / "dji.jpg")])
    assert result.ok and result.counts["total"] == 6 and not result.georeferenced
    assert EXIF_GPS_ONLY in result.notes
    why = "no camera yaw (XMP GimbalYawDegree or FlightYawDegree) (no XMP packet (no DJI attitude or relative " \
          "altitude)): counted image by image"
    assert done["stats"]["per_image"][0]["notes"] == [EXIF_GPS_ONLY, why]
    assert done["stats"]["survey"]["unplaced"] == [{"name": "dji.jpg", "reason": why}]


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied_as_pil_applies_it(orientation: int) -> None:
    from PIL import ImageOps

    from ml_engine.media.raster import upright

    image = np.random.default_rng(orientation).integers(0, 255, (3, 5, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = orientation
    picture = Image.fromarray(image)
    picture.info["exif"] = exif.tobytes()
    picture.getexif()[0x0112] = orientation
    assert np.array_equal(upright(image, orientation), np.asarray(ImageOps.exif_transpose(picture)))


def test_a_sideways_camera_jpeg_is_counted_upright(tmp_path: Path) -> None:
    field = field_image()[:300, :STILL_WIDTH]  # animals A and B
    exif = Image.Exif()
    exif[0x0112] = 6  # stored turned: shown rotated 90 degrees clockwise
    Image.fromarray(np.ascontiguousarray(np.rot90(field, 1))).save(tmp_path / "side.jpg", exif=exif, quality=100)
    _, (result,), _ = run_files(tmp_path / "out", [("side.jpg", tmp_path / "side.jpg")])
    assert result.ok and (result.width, result.height) == (STILL_WIDTH, 300)
    assert result.counts["total"] == 2 and any("EXIF orientation 6 applied" in n for n in result.notes)
    boxes = json.loads((tmp_path / "out" / DETECTIONS).read_text())["detections"]
    assert sorted(tuple(d["box"][:2]) for d in boxes) == [(94.0, 194.0), (694.0, 294.0)]  # the field's pixels


def test_coco_and_jsonl_cover_every_image_of_the_job(tmp_path: Path) -> None:
    run_files(tmp_path / "out", write_stills(tmp_path))
    coco = json.loads((tmp_path / "out" / COCO).read_text())
    assert [image["file_name"] for image in coco["images"]] == ["still_0.tif", "still_1.tif", "still_2.tif"]
    assert len(coco["annotations"]) == 17
    assert {c["name"] for c in coco["categories"]} == {"cow", "sheep"}
    lines = (tmp_path / "out" / DETECTIONS).read_text().splitlines()
    assert [len(json.loads(line)["detections"]) for line in lines] == list(SEEN_PER_STILL)
    results = [json.loads(line) for line in (tmp_path / "out" / RESULTS).read_text().splitlines()]
    assert [r["counts"]["total"] for r in results] == list(SEEN_PER_STILL)


def test_tiled_still_merges_animals_cut_by_tile_seams(tmp_path: Path) -> None:
    """256 px tiles with a whole-frame view over a 1000 x 1500 still: every animal that a seam
    cuts is seen whole in one tile and in part in another; each counts once."""
    files = write_stills(tmp_path)[:1]
    detector = BlobDetector()
    _, (result,), _ = run_files(tmp_path / "out", files, detector=detector, tiling="256x256")
    assert result.counts["total"] == SEEN_PER_STILL[0]
    assert result.tiles > 20 and detector.views_seen == result.tiles


# --- large rasters: windows, progress, memory ----------------------------------------------------------


def test_large_cog_is_read_in_windows_tile_by_tile(tmp_path: Path) -> None:
    field_tif = write_geotiff(tmp_path / "field.tif", field_image())
    cog = tmp_path / "ortho_cog.tif"
    rasterio.shutil.copy(field_tif, cog, driver="COG", compress="deflate")
    detector = BlobDetector(tile=(256, 256))
    progress: list[tuple[int, int]] = []
    run = StillsRun(tmp_path / "out", detector,
                    StillsConfig(detection=DetectionConfig(tile_batch_size=7), windowed_above_pixels=1_000_000))
    result = run.add_file("ortho_cog.tif", cog, on_tiles=lambda done, total: progress.append((done, total)))
    stats, outputs = run.finish()
    assert result.ok and result.kind == "raster" and result.georeferenced
    assert result.counts["total"] == len(ANIMALS)  # seams merged: each animal once
    assert detector.largest_image_px <= 256 * 256  # only windows ever reached the model
    assert progress[-1] == (result.tiles, result.tiles) and len(progress) == math.ceil(result.tiles / 7)
    assert [done for done, _ in progress] == sorted(done for done, _ in progress)
    overview = cv2.imread(str(outputs["annotated/ortho_cog.tif.overview.jpg"]))
    assert max(overview.shape[:2]) <= 2048


def test_cancel_is_checked_between_tile_batches(tmp_path: Path) -> None:
    field_tif = write_geotiff(tmp_path / "field.tif", field_image())
    batches = []
    run = StillsRun(tmp_path / "out", BlobDetector(),
                    StillsConfig(detection=DetectionConfig(tile_batch_size=4), windowed_above_pixels=1_000_000))
    with pytest.raises(JobCancelled):
        run.add_file("field.tif", field_tif, on_tiles=lambda done, total: batches.append(done),
                     should_cancel=lambda: len(batches) >= 2)
    assert batches == [4, 8]
    assert run._results.closed  # the cancelled run leaves no file open


_PEAK_RSS_SCRIPT = textwrap.dedent("""
    import json, resource, sys
    from pathlib import Path
    from ml_engine.detection import DetectionConfig
    from ml_engine.stills import StillsConfig, StillsRun
    from tests.stills_oracle import BlobDetector
    detector = BlobDetector(tile=(640, 640))
    run = StillsRun(Path(sys.argv[2]), detector, StillsConfig(detection=DetectionConfig(tile_batch_size=16)))
    result = run.add_file("ortho.tif", Path(sys.argv[1]))
    run.finish()
    print(json.dumps({"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "total": result.counts["total"], "kind": result.kind, "tiles": result.tiles,
                      "largest_image_px": detector.largest_image_px}))
""")


def _peak_rss(raster: Path, output: Path) -> dict:
    done = subprocess.run([sys.executable, "-c", _PEAK_RSS_SCRIPT, str(raster), str(output)],
                          capture_output=True, text=True, timeout=240, cwd=Path(__file__).parent.parent)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_peak_memory_does_not_grow_with_the_raster(tmp_path: Path) -> None:
    """A 20,000 x 20,000 BigTIFF (1.2 GB as RGB) against a 5,000 x 5,000 one (75 MB): the same
    animals, read in windows; the larger must not take more memory than the smaller plus slack."""
    animals = [Animal(300, 300), Animal(1030, 1030), Animal(4400, 2000, "sheep"), Animal(4900, 4900)]
    small = _peak_rss(write_sparse_ortho(tmp_path / "small.tif", 5000, animals), tmp_path / "out_small")
    large = _peak_rss(write_sparse_ortho(tmp_path / "large.tif", 20_000, animals), tmp_path / "out_large")
    for measured in (small, large):
        assert measured["kind"] == "raster" and measured["total"] == len(animals)
        assert measured["largest_image_px"] <= 640 * 640
    assert large["tiles"] > 10 * small["tiles"]
    assert large["peak_rss_mb"] < small["peak_rss_mb"] + 100, (small, large)
    # an absolute bound would depend on the machine and on what the process loaded; the figures
    # (809 vs 816 MB) are bench/stills_bench.py's, in docs/performance.md


# --- bad input: typed per-file errors; the job goes on -----------------------------------------------


def _tiff_header_only(samples_per_pixel: int) -> bytes:
    """A minimal little-endian TIFF IFD (4 x 4 px, 8 bits) with the given SamplesPerPixel."""
    import struct

    entries = [(256, 3, 4), (257, 3, 4), (258, 3, 8), (259, 3, 1), (262, 3, 1), (273, 4, 8),
               (277, 3, samples_per_pixel), (278, 3, 4), (279, 4, 16)]
    data = b"II*\x00" + struct.pack("<I", 24) + b"\x00" * 16 + struct.pack("<H", len(entries))
    for tag, kind, value in entries:
        data += struct.pack("<HHIHH", tag, kind, 1, value, 0) if kind == 3 else struct.pack("<HHII", tag, kind, 1, value)
    return data + struct.pack("<I", 0)


def test_bad_files_fail_alone_with_typed_errors(tmp_path: Path) -> None:
    good = write_geotiff(tmp_path / "good.tif", field_image()[:, :STILL_WIDTH])
    truncated = tmp_path / "truncated.tif"
    write_geotiff(truncated, field_image())
    truncated.write_bytes(truncated.read_bytes()[:2_000_000])  # header intact, pixels cut off
    (tmp_path / "garbage.tif").write_bytes(b"II*\x00" + b"\x13" * 500)
    (tmp_path / "zero_bands.tif").write_bytes(_tiff_header_only(0))
    write_geotiff(tmp_path / "multispectral.tif", np.zeros((64, 64, 5), np.uint8))
    (tmp_path / "notes.txt").write_text("not an image")
    names = ["truncated.tif", "garbage.tif", "zero_bands.tif", "multispectral.tif", "notes.txt", "good.tif"]
    _, results, done = run_files(tmp_path / "out", [(n, tmp_path / n) for n in names])
    codes = {r.name: r.error["code"] for r in results if not r.ok}
    assert codes == {"truncated.tif": "corrupt_image", "garbage.tif": "corrupt_image",
                     "zero_bands.tif": "raster_no_bands", "multispectral.tif": "unsupported_image",
                     "notes.txt": "unsupported_image"}
    assert all(r.name in r.error["message"] for r in results if not r.ok)
    assert results[-1].ok and results[-1].counts["total"] == 6
    assert good.exists()
    stats = done["stats"]
    assert stats["images"] == {"total": 6, "ok": 1, "failed": 5, "georeferenced": 1}
    assert {f["name"] for f in stats["failed"]} == set(codes)


def test_a_file_refused_before_the_engine_is_reported_as_a_failed_file(tmp_path: Path) -> None:
    """The worker hands over the files that never reached the engine (refused at submit, gone,
    replaced): they are in results.jsonl, results.csv and stats.json as the engine writes a
    failed file, so one layer owns the format."""
    good = write_geotiff(tmp_path / "good.tif", field_image()[:, :STILL_WIDTH])
    run = StillsRun(tmp_path / "out", BlobDetector(), StillsConfig(detection=DetectionConfig(threshold=0.5)))
    run.add_file("good.tif", good)
    refused = run.add_refused("gone.png", "input_missing", "gone.png: its upload is gone")
    stats, outputs = run.finish()
    validate_stills_stats(stats)
    lines = [json.loads(line) for line in outputs[RESULTS].read_text().splitlines()]
    assert [line["name"] for line in lines] == ["good.tif", "gone.png"]
    assert lines[1] == refused.to_json() and not refused.ok
    assert lines[1]["error"] == {"code": "input_missing", "message": "gone.png: its upload is gone"}
    assert stats["images"] == {"total": 2, "ok": 1, "failed": 1, "georeferenced": 1}
    assert stats["failed"] == [{"name": "gone.png", "error": lines[1]["error"]}]
    assert json.loads(outputs[STATS].read_text()) == stats
    assert "gone.png,,,false,input_missing," in outputs[RESULTS_CSV].read_text()


def test_a_raster_above_the_pixel_limit_is_refused_before_it_is_read(tmp_path: Path) -> None:
    big = write_sparse_ortho(tmp_path / "big.tif", 20_000, [Animal(100, 100)])
    detector = BlobDetector()
    _, (result,), _ = run_files(tmp_path / "out", [("big.tif", big)], detector=detector,
                                max_raster_pixels=10_000 * 10_000)
    assert not result.ok and result.error["code"] == "raster_too_large"
    assert "MAX_RASTER_PIXELS" in result.error["message"] and "20000 x 20000" in result.error["message"]
    assert detector.views_seen == 0


def test_16_bit_and_4_band_rasters_are_normalised_and_say_so(tmp_path: Path) -> None:
    field = field_image()[:, :STILL_WIDTH]
    wide = (field.astype(np.uint16) * 16 + 500)  # 12-bit data in 16-bit samples, offset
    write_geotiff(tmp_path / "sixteen.tif", wide)
    alpha = np.full(field.shape[:2] + (1,), 255, np.uint8)
    write_geotiff(tmp_path / "rgba.tif", np.concatenate([field, alpha], axis=2))
    _, results, _ = run_files(tmp_path / "out", [("sixteen.tif", tmp_path / "sixteen.tif"),
                                                 ("rgba.tif", tmp_path / "rgba.tif")])
    sixteen, rgba = results
    assert sixteen.ok and sixteen.counts["total"] == 6
    assert any("uint16 samples scaled to 8 bits" in note for note in sixteen.notes)
    assert rgba.ok and rgba.counts["total"] == 6
    assert any("first three read as RGB" in note for note in rgba.notes)


def test_palette_and_greyscale_images_become_rgb(tmp_path: Path) -> None:
    field = field_image()[:, :STILL_WIDTH]
    Image.fromarray(field).convert("P", palette=Image.Palette.ADAPTIVE, colors=8).save(tmp_path / "palette.png")
    grey = np.where(field.min(axis=2, keepdims=True) > 200, 255, 40).astype(np.uint8)  # the cows only
    write_geotiff(tmp_path / "grey.tif", grey, crs=None)
    _, (palette, mono), _ = run_files(tmp_path / "out", [("palette.png", tmp_path / "palette.png"),
                                                         ("grey.tif", tmp_path / "grey.tif")])
    assert palette.ok and palette.counts["by_class"] == {"cow": 5, "sheep": 1}
    assert "palette colours expanded to RGB" in palette.notes
    assert mono.ok and mono.counts["by_class"] == {"cow": 5}
    assert any("greyscale" in note for note in mono.notes)


def test_a_geographic_crs_geotiff_is_georeferenced_in_degrees(tmp_path: Path) -> None:
    from affine import Affine

    degree = 0.05 / 111_195  # about 5 cm a pixel
    write_geotiff(tmp_path / "wgs84.tif", field_image()[:, :STILL_WIDTH], crs="EPSG:4326",
                  transform=Affine(degree, 0, 15.0, 0, -degree, 48.7))
    _, (result,), done = run_files(tmp_path / "out", [("wgs84.tif", tmp_path / "wgs84.tif")])
    assert result.ok and result.georeferenced and result.crs == "EPSG:4326"
    centre = [f for f in json.loads((tmp_path / "out" / GEOJSON).read_text())["features"]
              if f["properties"]["kind"] == "centre" and f["properties"]["box_px"][:2] == [94.0, 194.0]]
    lon, lat = centre[0]["geometry"]["coordinates"]  # animal (100, 200): its centre pixel's corner
    assert abs(lon - (15.0 + 100 * degree)) < 1e-6 and abs(lat - (48.7 - 200 * degree)) < 1e-6
    # a degree of longitude is shorter than one of latitude here: the GSD is the mean of both sides
    want = 16 * (0.05 + 0.05 * math.cos(math.radians(48.7))) / 2
    assert math.isclose(done["stats"]["counts"]["deduplicated"]["largest_tolerance_m"], want, rel_tol=1e-2)


# --- the real model and the CLI ------------------------------------------------------------------------


def test_tiny_model_runs_the_real_detector_over_a_windowed_raster(tmp_path: Path, tiny_rtdetr_detector) -> None:
    field_tif = write_geotiff(tmp_path / "field.tif", field_image())
    run = StillsRun(tmp_path / "out", tiny_rtdetr_detector,
                    StillsConfig(detection=DetectionConfig(threshold=0.3, tile_batch_size=8),
                                 windowed_above_pixels=1_000_000))
    result = run.add_file("field.tif", field_tif)
    stats, _ = run.finish()
    assert result.ok and result.kind == "raster" and result.tiles == len(
        [1 for _ in range(math.ceil((2000 - 320) / 256) + 1) for _ in range(math.ceil((1500 - 320) / 256) + 1)])
    assert stats["model"]["random_weights"] is True and "not real" in stats["model"]["note"]
    assert stats["counts"]["per_image_sum"] == result.counts["total"]


def test_cli_counts_a_folder_of_images(tmp_path: Path, tiny_rtdetr_dir: Path) -> None:
    folder = tmp_path / "flight"
    folder.mkdir()
    write_stills(folder)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 cut off")
    done = subprocess.run([sys.executable, "-m", "ml_engine", str(folder), "-o", str(tmp_path / "out"),
                           "--model", str(tiny_rtdetr_dir), "--device", "cpu", "--no-progress", "--json"],
                          capture_output=True, text=True, timeout=240, cwd=Path(__file__).parent.parent)
    assert done.returncode == 0, done.stderr[-2000:]
    counts = json.loads(done.stdout)
    assert counts["images"] == {"total": 4, "ok": 3, "failed": 1, "georeferenced": 3}
    assert counts["failed"][0]["error"]["code"] == "corrupt_image"
    assert "skipped broken.jpg: corrupt_image" in done.stderr
    assert (tmp_path / "out" / GEOJSON).exists()


def test_tiling_off_still_tiles_a_windowed_raster_and_says_so(tmp_path: Path) -> None:
    field_tif = write_geotiff(tmp_path / "field.tif", field_image())
    detector = BlobDetector(tile=(512, 512))
    _, (result,), _ = run_files(tmp_path / "out", [("field.tif", field_tif)], detector=detector,
                                tiling="off", windowed_above_pixels=1_000_000)
    assert result.ok and result.counts["total"] == len(ANIMALS)
    assert detector.largest_image_px <= 512 * 512
    assert any("TILING=off does not apply" in note and "512x512" in note for note in result.notes)
