"""Survey stills counted once per animal (ml_engine.survey): drone JPEGs placed by their EXIF GPS
and DJI XMP, registered to each other, deduplicated with GeoTIFFs' method; and that method's
handling of animals cut by an image's edge.

The JPEGs are synthesised (bench/survey/flight.py): a textured field with animals, shot
through the product's own camera model, written with EXIF (piexif) and a DJI XMP packet, with
GPS noise. Detections come from ``BlobDetector`` (tests/stills_oracle.py), which finds the
painted animals; everything else is the product's path.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from bench.survey.flight import Camera, ShotPlan, lonlat, plan_grid, render_shot, write_dji_jpeg
from core.outputs import GEOJSON
from core.tiling import parse_tiling
from ml_engine.detection import DetectionConfig
from ml_engine.stills import EXIF_GPS_ONLY, StillsConfig, StillsRun, validate_stills_stats
from ml_engine.survey.camera import read_camera_metadata
from ml_engine.survey.dedup import GroundDeduplicator, sightings_from_boxes
from ml_engine.survey.footprint import LocalFrame, camera_homography
from ml_engine.survey.grid import Shot, SurveyGrid
from tests.stills_oracle import GSD, Animal, BlobDetector, field_transform, paint, write_geotiff

pytestmark = pytest.mark.timeout(300)

SMALL = Camera(width=600, height=400)  # f = 8.8 / 13.2 x 600 = 400 px: 10 cm a pixel at 40 m


def ground(matrix: np.ndarray, x: float, y: float) -> tuple[float, float]:
    east, north, w = matrix @ np.array([x, y, 1.0])
    return east / w, north / w


def run_jpegs(output: Path, paths: list[Path], **config) -> tuple[list, dict]:
    run = StillsRun(output, BlobDetector(tile=(4000, 4000)), StillsConfig(detection=DetectionConfig(tiling=parse_tiling("off")), **config))
    results = [run.add_file(path.name, path) for path in paths]
    stats, _ = run.finish()
    validate_stills_stats(stats)
    return results, stats


def write_flight(folder: Path, flight, options: dict[int, dict] | None = None) -> list[Path]:
    """The flight's shots as DJI JPEGs; ``options``: write_dji_jpeg's keywords for some shots."""
    options = options or {}
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for shot in flight.shots:
        path = folder / f"DJI_{shot.index:04d}.JPG"
        write_dji_jpeg(path, render_shot(flight, shot), flight, shot, **options.get(shot.index, {}))
        paths.append(path)
    return paths


# --- the camera model: exact ground positions ----------------------------------------------------------


def test_a_nadir_pixel_lands_where_the_pinhole_says() -> None:
    north_up = camera_homography(10, 20, altitude_m=50, yaw_deg=0, pitch_deg=-90, focal_px=1000, width=400, height=300)
    assert ground(north_up, 200, 150) == pytest.approx((10, 20))  # the centre: below the camera
    assert ground(north_up, 300, 150) == pytest.approx((15, 20))  # 100 px right: 100 x 50 / 1000 m east
    assert ground(north_up, 200, 50) == pytest.approx((10, 25))  # up the image: north
    facing_east = camera_homography(10, 20, 50, yaw_deg=90, pitch_deg=-90, focal_px=1000, width=400, height=300)
    assert ground(facing_east, 200, 50) == pytest.approx((15, 20))  # the image's top faces east
    assert ground(facing_east, 300, 150) == pytest.approx((10, 15))  # its right faces south


def test_a_tilted_camera_looks_forward_by_the_tangent() -> None:
    tilted = camera_homography(0, 0, 50, yaw_deg=0, pitch_deg=-60, focal_px=1000, width=400, height=300)
    assert ground(tilted, 200, 150) == pytest.approx((0, 50 * math.tan(math.radians(30))))


def test_local_frame_round_trips_and_matches_the_equirectangular_metre() -> None:
    frame = LocalFrame(15.0, 48.7)
    lons, lats = frame.to_lonlat(np.array([100.0, -250.0]), np.array([40.0, 3.0]))
    east, north = frame.to_metres(lons, lats)
    assert east == pytest.approx([100.0, -250.0], abs=1e-9) and north == pytest.approx([40.0, 3.0], abs=1e-9)
    assert lats[0] - 48.7 == pytest.approx(40 / (6_371_008.8 * math.pi / 180))


# --- reading EXIF and XMP -----------------------------------------------------------------------------


def one_shot_flight(**options):
    return plan_grid(1, 1, 0.7, 0.7, seed=3, camera=SMALL, herd=3, gps_sigma_m=0.0, yaw_jitter_deg=0.0, **options)


def test_exif_and_dji_xmp_are_read_exactly(tmp_path: Path) -> None:
    flight = one_shot_flight()
    shot = flight.shots[0]
    path = write_flight(tmp_path, flight)[0]
    meta = read_camera_metadata(path)
    want_lon, want_lat = lonlat(shot.gps_east, shot.gps_north)
    assert (meta.longitude, meta.latitude) == pytest.approx((want_lon, want_lat), abs=1e-9)
    assert meta.gps_source == "EXIF" and meta.gps_altitude_m == pytest.approx(300 + shot.meta_altitude, abs=1e-3)
    assert meta.relative_altitude_m == pytest.approx(round(shot.meta_altitude, 2))
    assert meta.gimbal_pitch_deg == -90.0 and meta.gimbal_yaw_deg == pytest.approx(round(shot.meta_yaw, 1))
    assert (meta.make, meta.model, meta.focal_mm, meta.focal_35mm) == ("DJI", "FC6310", 8.8, 24.0)
    assert meta.problems == []


def test_a_shot_is_placed_at_its_gps_with_the_ground_sample_distance_of_its_lens(tmp_path: Path) -> None:
    flight = one_shot_flight()
    shot = flight.shots[0]
    path = write_flight(tmp_path, flight)[0]
    grid = SurveyGrid(registration=False)
    placed = grid.place(1, path.name, path, None, SMALL.width, SMALL.height)
    assert isinstance(placed, Shot) and placed.method == "metadata"
    altitude = round(shot.meta_altitude, 2)
    assert placed.footprint.gsd_m == pytest.approx(altitude / 400, rel=1e-6)  # 13.2 mm sensor from 24 mm eq.
    lons, lats = placed.lonlat_of(np.array([300.0, 400.0]), np.array([200.0, 200.0]))
    assert (lons[0], lats[0]) == pytest.approx(lonlat(shot.gps_east, shot.gps_north), abs=1e-9)
    east, north = grid.frame.to_metres(lons, lats)
    yaw = math.radians(round(shot.meta_yaw, 1))  # 100 px to the right, turned by the yaw
    assert (east[1] - east[0], north[1] - north[0]) == pytest.approx(
        (100 * altitude / 400 * math.cos(yaw), -100 * altitude / 400 * math.sin(yaw)), abs=1e-6)
    assert 1.5 < placed.accuracy_m < 3  # GNSS 1.5 m, attitude and altitude at a 36 m footprint


# --- registration ---------------------------------------------------------------------------------------


def test_registration_takes_out_the_gps_error_between_two_shots(tmp_path: Path) -> None:
    flight = plan_grid(2, 1, 0.7, 0.7, seed=5, camera=Camera(), herd=4, gps_sigma_m=1.5, yaw_jitter_deg=2.0)
    first, second = flight.shots
    paths = write_flight(tmp_path, flight)
    grid = SurveyGrid()
    placed = [grid.place(i, p.name, p, render_shot(flight, s), 1200, 800) for i, (p, s) in
              enumerate(zip(paths, flight.shots, strict=True))]
    assert all(isinstance(p, Shot) for p in placed)
    anchor, refined = placed
    assert anchor.method == "metadata" and refined.method == "registered"
    assert refined.neighbours == [paths[0].name] and refined.inliers >= 50

    def true_ground(shot: ShotPlan, x: float, y: float) -> np.ndarray:
        matrix = camera_homography(shot.east, shot.north, shot.altitude, shot.yaw, shot.pitch,
                                   flight.camera.focal_px, 1200, 800)
        return np.array(ground(matrix, x, y))

    def placed_ground(shot: Shot, x: float, y: float) -> np.ndarray:
        return np.array(shot.footprint.to_ground(np.array([x]), np.array([y]))).ravel()

    # the anchor's own error (its GPS, yaw and altitude: a similarity) carries over; the second's does not
    corners = [(0, 0), (1200, 0), (1200, 800), (0, 800), (600, 400)]
    anchor_error, _ = cv2.estimateAffinePartial2D(np.array([true_ground(first, x, y) for x, y in corners]),
                                                  np.array([placed_ground(anchor, x, y) for x, y in corners]))
    for x, y in ((600, 400), (100, 100), (1100, 700)):
        expected = anchor_error[:, :2] @ true_ground(second, x, y) + anchor_error[:, 2]
        error = placed_ground(refined, x, y) - expected
        assert np.hypot(*error) < 0.1, (x, y, error)  # 2 px at 5 cm
    metadata_error = np.array([second.gps_east - second.east, second.gps_north - second.north])
    assert np.hypot(*metadata_error) > 0.5  # what registration took out
    assert refined.residual_m is not None and refined.residual_m < 0.1


def test_a_shot_between_two_neighbours_that_disagree_is_placed_between_them(tmp_path: Path) -> None:
    """Shots 0 and 1 of a column, then shot 2 beside shot 1 (70 % side overlap, and half of shot
    0). Shot 1's placement is moved 1 m east, as a long chain of registrations drifts: shot 2 is
    registered to both. Each neighbour is heard (not only the one with the most matches), so
    shot 2 lands between them, and its residual shows their disagreement."""
    flight = plan_grid(2, 2, 0.7, 0.7, seed=5, camera=Camera(), herd=4, gps_sigma_m=1.5, yaw_jitter_deg=2.0)
    paths = write_flight(tmp_path, flight)
    grid = SurveyGrid()
    for i in (0, 1):
        assert isinstance(grid.place(i, paths[i].name, paths[i], render_shot(flight, flight.shots[i]), 1200, 800), Shot)
    drift = np.array([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])  # 1 m east
    grid.shots[1].footprint = grid.shots[1].footprint.refined(drift)
    grid._polygons[1] = grid.shots[1].footprint.corners().astype(np.float32)
    third = grid.place(2, paths[2].name, paths[2], render_shot(flight, flight.shots[2]), 1200, 800)
    assert isinstance(third, Shot) and third.method == "registered"
    assert sorted(third.neighbours) == sorted([paths[0].name, paths[1].name])

    def true_ground(shot: ShotPlan, x: float, y: float) -> np.ndarray:
        matrix = camera_homography(shot.east, shot.north, shot.altitude, shot.yaw, shot.pitch,
                                   flight.camera.focal_px, 1200, 800)
        return np.array(ground(matrix, x, y))

    # where shot 0's placement (the anchor's error, a similarity) puts the ground of shot 2's pixels
    anchor, corners = grid.shots[0], [(0, 0), (1200, 0), (1200, 800), (0, 800), (600, 400)]
    anchor_error, _ = cv2.estimateAffinePartial2D(
        np.array([true_ground(flight.shots[0], x, y) for x, y in corners]),
        np.array([np.array(anchor.footprint.to_ground(np.array([x]), np.array([y]))).ravel() for x, y in corners]))
    for x, y in ((600, 400), (100, 100), (1100, 700)):
        expected = anchor_error[:, :2] @ true_ground(flight.shots[2], x, y) + anchor_error[:, 2]
        east, north = np.array(third.footprint.to_ground(np.array([x]), np.array([y]))).ravel() - expected
        # one neighbour alone would give 0 or 1 m east; the two overlaps' centres differ, so the
        # compromise turns the shot a little (a quarter of a metre at the corners)
        assert 0.2 < east < 0.8 and abs(north) < (0.1 if (x, y) == (600, 400) else 0.35), (x, y, east, north)
    assert third.residual_m is not None and third.residual_m > 0.2


# --- deduplication of edge-cut animals, exact positions ------------------------------------------------------


def north_up(offset_px: tuple[int, int]):
    """Pixels of a 5 cm north-up image whose top-left is ``offset_px`` of a field at 15 E, 48.7 N."""
    frame = LocalFrame(15.0, 48.7)

    def lonlat_of(xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return frame.to_lonlat((np.asarray(xs) + offset_px[0]) * GSD, -(np.asarray(ys) + offset_px[1]) * GSD)
    return lonlat_of


def add_boxes(dedup: GroundDeduplicator, image: int, offset: tuple[int, int], boxes: list[list[float]]) -> list[int]:
    sightings = sightings_from_boxes(np.array(boxes, float), 1000, 1000, north_up(offset), GSD, ["cow"] * len(boxes),
                                     np.ones(len(boxes)))
    return dedup.add(image, sightings)


def test_an_edge_cut_first_sighting_is_matched_along_its_hidden_part() -> None:
    """A 36 px (1.8 m) cow whose first sighting shows 6 px at the image's right edge: its box centre
    is 15 px (0.75 m) short of the true one; it then walks 10 px (0.5 m). 0.75 + 0.5 m is beyond
    the 0.8 m tolerance from the cut centre, but within it of the hidden part."""
    dedup = GroundDeduplicator(tolerance_px=16)
    # image 0 (field x 0..1000): a whole cow teaches the size; cow B shows field x 994..1000 of 994..1030
    first = add_boxes(dedup, 0, (0, 0), [[100, 100, 136, 136], [994, 500, 1000, 536]])
    # image 1 (field x 500..1500): cow B whole at field x 1004..1040 (walked 10 px east), as pixels 504..540
    second = add_boxes(dedup, 1, (500, 0), [[504, 500, 540, 536]])
    assert second[0] == first[1]
    assert dedup.total == 2 and dedup.cut_sightings == 1


def test_the_cut_tolerance_ends_where_the_hidden_part_ends() -> None:
    dedup = GroundDeduplicator(tolerance_px=16)
    first = add_boxes(dedup, 0, (0, 0), [[100, 100, 136, 136], [994, 500, 1000, 536]])
    # hidden part: the true centre lies at field x 997..1012; + 16 px tolerance = 1028: a whole box centred
    # at 1027.5 matches (x 1009.5..1045.5), one centred at 1028.5 is another cow
    assert add_boxes(dedup, 1, (500, 0), [[509.5, 500, 545.5, 536]])[0] == first[1]
    dedup = GroundDeduplicator(tolerance_px=16)
    first = add_boxes(dedup, 0, (0, 0), [[100, 100, 136, 136], [994, 500, 1000, 536]])
    assert add_boxes(dedup, 1, (500, 0), [[510.5, 500, 546.5, 536]])[0] not in first
    # and the hidden part lies beyond the edge only: a cow 17 px west of the cut centre is another
    dedup = GroundDeduplicator(tolerance_px=16)
    first = add_boxes(dedup, 0, (0, 0), [[100, 100, 136, 136], [994, 500, 1000, 536]])
    assert add_boxes(dedup, 1, (500, 0), [[462, 500, 498, 536]])[0] not in first


def test_a_whole_sighting_places_the_animal_not_the_cut_one() -> None:
    """Seen cut first, then whole: the cut box's centre is dropped from the position."""
    dedup = GroundDeduplicator(tolerance_px=16)
    cut = add_boxes(dedup, 0, (0, 0), [[100, 100, 136, 136], [994, 500, 1000, 536]])
    whole = add_boxes(dedup, 1, (500, 0), [[494, 500, 530, 536]])  # centre field x 1012
    assert whole[0] == cut[1]
    # 15.5 px from 1012 (the whole centre) matches; from the mean of 997 and 1012 it would be 23 px
    assert add_boxes(dedup, 2, (500, 0), [[509.5, 500, 545.5, 536]])[0] == cut[1]


def test_an_animal_unmatched_inside_an_image_is_taken_to_have_walked() -> None:
    """A cow 30 px (1.5 m) from where an earlier shot saw it: beyond the 0.8 m tolerance, within
    it plus 1 m of walking, and well inside the new image: the same cow. Near the new image's edge
    it may have walked out, and one 37 px away is beyond both."""
    def second_sighting(walk_m: float, first_box: list[float], second_box: list[float]) -> bool:
        dedup = GroundDeduplicator(tolerance_px=16, walk_m=walk_m)
        first = add_boxes(dedup, 0, (0, 0), [[100, 100, 136, 136], first_box])
        return add_boxes(dedup, 1, (0, 0), [second_box])[0] == first[1]

    assert second_sighting(1.0, [482, 482, 518, 518], [512, 482, 548, 518])
    assert not second_sighting(0.0, [482, 482, 518, 518], [512, 482, 548, 518])  # the first pass alone
    assert not second_sighting(1.0, [482, 482, 518, 518], [519, 482, 555, 518])  # 37 px: 1.85 m
    assert not second_sighting(1.0, [950, 482, 986, 518], [920, 482, 956, 518])  # 32 px from the edge


GEOTIFF_FIELD = (3000, 1000)
GEOTIFF_OFFSETS = (0, 500, 1000, 1500, 2000)  # stills 1000 px wide, 50 % overlap


def moved_herd(seed: int, count: int = 60) -> list[list[Animal]]:
    """Per still, the herd where it stands: 36 px cows, each moving up to 10 px (0.5 m) between
    shots; a third of them stand across a still's right edge at the first shot."""
    rng = np.random.default_rng(seed)
    start = []
    while len(start) < count:
        if len(start) < count // 3:
            x = float(rng.choice(GEOTIFF_OFFSETS[:-1])) + 1000 + rng.uniform(-16, 14)  # across an edge
        else:
            x = rng.uniform(40, GEOTIFF_FIELD[0] - 40)
        y = rng.uniform(40, GEOTIFF_FIELD[1] - 40)
        if all(math.hypot(x - a[0], y - a[1]) > 60 for a in start):
            start.append((x, y))
    herd, position = [], np.array(start)
    for _ in GEOTIFF_OFFSETS:
        herd.append([Animal(round(x), round(y), size=36) for x, y in position])
        step = rng.uniform(-1, 1, position.shape)
        position = position + step / np.maximum(1, np.hypot(*step.T))[:, None] * 10
    return herd


def test_geotiffs_of_a_moving_herd_cut_by_the_edges_count_each_animal_once(tmp_path: Path) -> None:
    herd = moved_herd(seed=2)
    paths = []
    for index, offset in enumerate(GEOTIFF_OFFSETS):
        field = paint(np.full((GEOTIFF_FIELD[1], GEOTIFF_FIELD[0], 3), 40, np.uint8), herd[index])
        path = write_geotiff(tmp_path / f"still_{index}.tif", field[:, offset:offset + 1000],
                             transform=field_transform((offset, 0)))
        paths.append(path)
    run = StillsRun(tmp_path / "out", BlobDetector(), StillsConfig())
    for path in paths:
        run.add_file(path.name, path)
    stats, _ = run.finish()
    dedup = stats["counts"]["deduplicated"]
    assert dedup["edge_cut_sightings"] >= 20  # the case is really there
    assert dedup["total"] == len(herd[0]) == 60


# --- JPEG grids through StillsRun ---------------------------------------------------------------------------


def test_a_jpeg_grid_counts_each_animal_once_and_says_where(tmp_path: Path) -> None:
    flight = plan_grid(2, 3, 0.7, 0.7, seed=7, herd=30, move_m=0.1)
    results, stats = run_jpegs(tmp_path / "out", write_flight(tmp_path / "flight", flight))
    assert all(r.ok and not r.georeferenced for r in results)
    counts = stats["counts"]
    assert counts["per_image_sum"] > 2 * len(flight.animals)  # the overlap, counted per image
    assert counts["deduplicated"]["applied"] is True
    assert counts["deduplicated"]["total"] == len(flight.animals) == 30
    survey = stats["survey"]
    assert (survey["placed"], survey["registered"], survey["oblique"], survey["unplaced"]) == (6, 5, [], [])
    assert survey["footprints_overlap"] is True
    document = json.loads((tmp_path / "out" / GEOJSON).read_text())
    footprints = [f for f in document["features"] if f["properties"]["kind"] == "footprint"]
    centres = [f for f in document["features"] if f["properties"]["kind"] == "centre"]
    assert len(footprints) == 6 and len(centres) == counts["per_image_sum"]
    for feature in centres:
        properties = feature["properties"]
        assert properties["placement"] in ("registered", "metadata") and 1.0 < properties["accuracy_m"] < 4
        assert "animal" in properties
    # every sighting of an animal is within a few pixels of its true position, less the anchor's GPS error
    frame = LocalFrame(*lonlat(0, 0))
    anchor = flight.shots[0]
    shift = np.array([anchor.gps_east - anchor.east, anchor.gps_north - anchor.north])
    for feature in centres:
        east, north = frame.to_metres(*([c] for c in feature["geometry"]["coordinates"]))
        position = np.array([east[0], north[0]]) - shift
        nearest = min(math.hypot(*(position - (a.east, a.north))) for a in flight.animals)
        assert nearest < 1.0  # metres: the anchor's yaw error at a few tens of metres, and the walking


def test_oblique_shots_are_flagged_and_counted_image_by_image(tmp_path: Path) -> None:
    flight = plan_grid(1, 3, 0.7, 0.7, seed=8, herd=12, camera=SMALL, oblique=1)
    results, stats = run_jpegs(tmp_path / "out", write_flight(tmp_path / "flight", flight))
    oblique = stats["survey"]["oblique"]
    assert [o["name"] for o in oblique] == ["DJI_0002.JPG"]
    assert "gimbal pitch -55 is 35 degrees from straight down" in oblique[0]["reason"]
    assert any("oblique" in note for note in results[2].notes)
    dedup = stats["counts"]["deduplicated"]
    assert dedup["not_georeferenced_detections"] == results[2].counts["total"]  # added as they are


def test_bad_metadata_is_counted_and_stats_say_what_could_not_be_used(tmp_path: Path) -> None:
    flight = plan_grid(1, 5, 0.7, 0.7, seed=9, herd=10, camera=SMALL)
    xmp_lon, xmp_lat = lonlat(flight.shots[1].gps_east, flight.shots[1].gps_north)
    paths = write_flight(tmp_path / "flight", flight, {
        1: {"xmp": {"GpsLatitude": xmp_lat, "GpsLongtitude": xmp_lon}},  # its EXIF is damaged below
        2: {"gps": False},  # no GPS at all
        3: {"xmp": {"RelativeAltitude": None, "GimbalPitchDegree": None}},  # GPS altitude and take-off height
        4: {"xmp": {"GimbalYawDegree": None, "FlightYawDegree": None}},  # no yaw: cannot be placed
    })
    data = bytearray(paths[1].read_bytes())
    tiff = data.find(b"Exif\x00\x00") + 6
    data[tiff + 4:tiff + 8] = b"\xff\xff\xff\x7f"  # the first IFD's offset points past the file
    paths[1].write_bytes(bytes(data))
    results, stats = run_jpegs(tmp_path / "out", paths)
    assert all(r.ok for r in results) and stats["counts"]["per_image_sum"] == sum(r.counts["total"] for r in results)
    survey = stats["survey"]
    assert survey["placed"] == 3
    unplaced = {u["name"]: u["reason"] for u in survey["unplaced"]}
    assert set(unplaced) == {"DJI_0002.JPG", "DJI_0004.JPG"}
    assert unplaced["DJI_0002.JPG"] == "no GPS position (no EXIF GPS): counted image by image"
    assert unplaced["DJI_0004.JPG"].startswith("no camera yaw")
    # the damaged EXIF: the position from the XMP, the lens from the shot before
    assert "sensor width 13.20 mm from an earlier shot of the same size (this one's EXIF lacks it)" in results[1].notes
    assert any(note.startswith("placed by its") for note in results[1].notes)
    assert any("GPS altitude less the take-off height" in note for note in results[3].notes)
    assert any("no gimbal pitch in XMP: taken as straight down" in note for note in results[3].notes)
    assert EXIF_GPS_ONLY in results[4].notes
    assert stats["counts"]["deduplicated"]["applied"] is True


def test_without_any_placed_shot_the_sum_is_reported_with_the_overlap_unknown(tmp_path: Path) -> None:
    flight = plan_grid(1, 2, 0.7, 0.7, seed=10, herd=6, camera=SMALL)
    paths = write_flight(tmp_path / "flight", flight, {0: {"gps": False}, 1: {"gps": False}})
    _, stats = run_jpegs(tmp_path / "out", paths)
    dedup = stats["counts"]["deduplicated"]
    assert dedup["applied"] is False and "no input is georeferenced or placed" in dedup["reason"]
    assert dedup["footprints_overlap"] is False


def test_deduplication_off_still_says_that_the_footprints_overlap(tmp_path: Path) -> None:
    flight = plan_grid(1, 2, 0.7, 0.7, seed=11, herd=6, camera=SMALL)
    _, stats = run_jpegs(tmp_path / "out", write_flight(tmp_path / "flight", flight), dedup=False)
    dedup = stats["counts"]["deduplicated"]
    assert dedup["applied"] is False and dedup["footprints_overlap"] is True



def test_shots_without_footprints_taken_close_together_are_said_to_overlap(tmp_path: Path) -> None:
    flight = plan_grid(1, 2, 0.7, 0.7, seed=12, herd=6, camera=SMALL)  # 12 m apart: 70 % of a 40 m footprint
    no_yaw = {"xmp": {"GimbalYawDegree": None, "FlightYawDegree": None}}
    _, stats = run_jpegs(tmp_path / "out", write_flight(tmp_path / "flight", flight, {0: no_yaw, 1: no_yaw}))
    dedup = stats["counts"]["deduplicated"]
    assert dedup["applied"] is False and dedup["footprints_overlap"] is True
    assert stats["survey"]["close_gps_pairs"] == 1 and stats["survey"]["placed"] == 0
