"""The gallery of an images job: one picture per animal as the job counts it (engine level;
the real API's routes and ZIP are in tests/test_stills_service.py)."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
import rasterio.shutil

from core.outputs import DETECTIONS, GALLERY, GALLERY_ZIP
from tests.stills_oracle import COW, Animal, paint, write_geotiff
from tests.test_stills import ANIMALS, FIELD, STILL_WIDTH, field_image, run_files, write_stills

pytestmark = pytest.mark.timeout(300)


def _gallery(output: Path) -> dict:
    return json.loads((output / GALLERY).read_text(encoding="utf-8"))


def _decoded_crops(output: Path, gallery: dict) -> list[np.ndarray]:
    """Every item's picture, decoded from the ZIP (the one download); each must be a JPEG."""
    with zipfile.ZipFile(output / GALLERY_ZIP) as archive:
        assert json.loads(archive.read(GALLERY)) == gallery
        crops = []
        for item in gallery["items"]:
            data = np.frombuffer(archive.read(item["crop"]), np.uint8)
            crop = cv2.imdecode(data, cv2.IMREAD_COLOR)
            assert crop is not None, item["crop"]
            assert crop.shape[:2] == (item["crop_height"], item["crop_width"])
            crops.append(crop)
    return crops


def test_overlapping_geotiffs_have_one_picture_per_deduplicated_animal(tmp_path: Path) -> None:
    output = tmp_path / "out"
    _, _, done = run_files(output, write_stills(tmp_path))
    gallery = _gallery(output)
    dedup = done["stats"]["counts"]["deduplicated"]
    assert gallery["count"] == len(gallery["items"]) == dedup["total"] == len(ANIMALS)
    assert "truncated" not in gallery
    lines = [json.loads(line) for line in (output / DETECTIONS).read_text().splitlines()]
    animals = {row["animal"] for line in lines for row in line["detections"]}
    assert sorted(item["animal"] for item in gallery["items"]) == sorted(animals)
    assert sorted(item["class"] for item in gallery["items"]) == ["cow"] * 8 + ["sheep"]
    assert sorted(len(item["images"]) for item in gallery["items"]) == [1, 1, 2, 2, 2, 2, 2, 2, 3]
    assert sum(item["sightings"] for item in gallery["items"]) == done["stats"]["counts"]["per_image_sum"] == 17
    assert all(max(crop.shape[:2]) <= 256 for crop in _decoded_crops(output, gallery))
    # the animal cut by still 0's right edge: its picture is a whole sighting from still 1 or 2
    edge = next(item for item in gallery["items"] if item["first_box"][0] > 990 and item["first_image"] == "still_0.tif")
    assert edge["sightings"] == 3 and edge["crop_whole"] is True and edge["crop_image"] != "still_0.tif"


def test_without_deduplication_every_detection_of_every_image_has_a_picture(tmp_path: Path) -> None:
    output = tmp_path / "out"
    _, _, done = run_files(output, write_stills(tmp_path), dedup=False)
    gallery = _gallery(output)
    assert gallery["count"] == len(gallery["items"]) == done["stats"]["counts"]["total"] == 17
    assert [item["id"] for item in gallery["items"]] == list(range(1, 18))
    assert all(item["animal"] is None and item["sightings"] == 1 for item in gallery["items"])
    assert len(_decoded_crops(output, gallery)) == 17


def test_a_picture_shows_its_animal_and_a_large_one_is_shrunk_to_256_px(tmp_path: Path) -> None:
    """Non-georeferenced PNG: each detection is an animal; the crop is the animal's pixels."""
    image = paint(np.full((900, 1200, 3), 40, np.uint8), [Animal(300, 300, size=600), Animal(1000, 100)])
    cv2.imwrite(str(tmp_path / "big.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    output = tmp_path / "out"
    _, (result,), _ = run_files(output, [("big.png", tmp_path / "big.png")])
    gallery = _gallery(output)
    assert result.counts["total"] == gallery["count"] == len(gallery["items"]) == 2
    big, small = _decoded_crops(output, gallery)
    assert max(big.shape[:2]) == 256  # 600 px and its margin, shrunk
    assert max(small.shape[:2]) < 20  # never enlarged
    centre = cv2.cvtColor(big, cv2.COLOR_BGR2RGB)[128, 128].astype(int)
    assert np.abs(centre - np.array(COW)).max() < 30  # the cow's own pixels, not the field's


def test_the_list_is_cut_at_its_limit_and_says_so_but_the_count_is_not(tmp_path: Path) -> None:
    output = tmp_path / "out"
    run_files(output, write_stills(tmp_path), gallery_max_items=4)
    gallery = _gallery(output)
    assert gallery["count"] == len(ANIMALS) and len(gallery["items"]) == 4
    assert gallery["truncated"]["listed"] == 4 and "4 of 9" in gallery["truncated"]["note"]
    assert sorted(path.name for path in (output / "crops").iterdir()) == [f"{i}.jpg" for i in range(1, 5)]


def test_a_large_raster_read_in_windows_takes_each_picture_from_the_file(tmp_path: Path) -> None:
    field_tif = write_geotiff(tmp_path / "field.tif", field_image())
    cog = tmp_path / "ortho.tif"
    rasterio.shutil.copy(field_tif, cog, driver="COG", compress="deflate")
    output = tmp_path / "out"
    run_files(output, [("ortho.tif", cog)], windowed_above_pixels=1_000_000)
    gallery = _gallery(output)
    assert gallery["count"] == len(gallery["items"]) == len(ANIMALS)
    field = field_image()
    for item, crop in zip(gallery["items"], _decoded_crops(output, gallery), strict=True):
        x1, y1, x2, y2 = (int(v) for v in item["crop_box"])
        expected = field[y1:y2, x1:x2].reshape(-1, 3).mean(axis=0)  # the box's pixels in the field
        inner = cv2.cvtColor(crop, cv2.COLOR_BGR2RGB)[2:-2, 2:-2].reshape(-1, 3).mean(axis=0)
        assert np.abs(inner - expected).max() < 40, item
    assert FIELD == (2000, 1500) and STILL_WIDTH == 1000  # the layout these numbers come from
