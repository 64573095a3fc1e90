"""A picture of every counted animal (ml_engine.gallery): the crop's score, and the gallery a
real run writes (gallery.json, crops/<id>.jpg, gallery.zip), read back as a person would."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest

from core.outputs import GALLERY, GALLERY_ZIP
from ml_engine.gallery import MAX_CROP_PX, cut_crop, is_whole, score_crop
from ml_engine.outputs import DETECTIONS
from ml_engine.pipeline import PipelineConfig, process_video
from tests.fixtures_video import DEFAULT_BOXES, MovingBox, write_clip
from tests.test_pipeline import ColourBoxDetector

FRAME = (320, 240)


def textured(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A sharp crop: random texture (a high Laplacian variance)."""
    return np.random.default_rng(seed).integers(0, 255, (height, width, 3), dtype=np.uint8)


def test_a_whole_box_beats_one_cut_by_the_frames_edge_even_when_larger_and_surer() -> None:
    crop = textured(40, 60)
    whole = score_crop([20, 20, 80, 60], FRAME, 0.6, crop)
    cut = score_crop([0, 20, 120, 100], FRAME, 0.99, textured(80, 120))  # touches the left edge
    assert whole.whole and not cut.whole
    assert cut.quality > whole.quality  # the cut one is better on every other count...
    assert whole.key() > cut.key()  # ...and still loses


@pytest.mark.parametrize("box", [[0, 50, 40, 90], [50, 0, 90, 40], [280, 50, 320, 90], [50, 200, 90, 240],
                                 [1.5, 50, 40, 90]])
def test_a_box_at_any_edge_is_cut(box: list[float]) -> None:
    assert not is_whole(box, FRAME)


def test_sharper_larger_and_surer_crops_score_higher() -> None:
    sharp = textured(40, 60)
    blurred = cv2.GaussianBlur(sharp, (15, 15), 5)
    box = [20, 20, 80, 60]
    assert score_crop(box, FRAME, 0.8, sharp).quality > score_crop(box, FRAME, 0.8, blurred).quality
    assert score_crop([20, 20, 140, 100], FRAME, 0.8, sharp).quality > score_crop(box, FRAME, 0.8, sharp).quality
    assert score_crop(box, FRAME, 0.9, sharp).quality > score_crop(box, FRAME, 0.5, sharp).quality


def test_a_crop_is_shrunk_to_256_px_and_is_a_copy() -> None:
    image = textured(1080, 1920)
    crop = cut_crop(image, [100, 100, 900, 500])  # 800 x 400, a little more with its context
    assert crop is not None and max(crop.shape[:2]) == MAX_CROP_PX
    small = cut_crop(image, [10, 10, 50, 40])
    assert small is not None and max(small.shape[:2]) <= MAX_CROP_PX
    small[:] = 0
    assert image[10:40, 10:50].any()  # drawing on the frame afterwards cannot change the crop
    assert cut_crop(image, [5000, 5000, 5100, 5100]) is None  # no pixels in the frame


# --- a real run: the colour boxes, one entering from the frame's left edge ------------------------

ENTERING = MovingBox(color=(230, 40, 40), start=(-40, 40), velocity=(8, 0), size=(60, 40))
BOXES = (ENTERING, DEFAULT_BOXES[1])


@pytest.fixture(scope="module")
def gallery_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    folder = tmp_path_factory.mktemp("gallery_run")
    clip = write_clip(folder / "entering.mp4", frames=20, boxes=BOXES)
    result = process_video(clip, folder / "out", ColourBoxDetector(), PipelineConfig())
    assert set(result.crops) == {f"crops/{track['id']}.jpg" for track in result.stats["tracks"]}
    assert {GALLERY, GALLERY_ZIP} <= set(result.outputs)
    return result.stats, folder / "out"


def test_the_gallery_has_one_item_per_counted_animal(gallery_run) -> None:
    stats, out = gallery_run
    gallery = json.loads((out / GALLERY).read_text())
    assert stats["counts"]["total_unique"] == 2
    assert gallery["count"] == len(gallery["items"]) == stats["counts"]["total_unique"]
    assert [item["id"] for item in gallery["items"]] == [track["id"] for track in stats["tracks"]]
    for item, track in zip(gallery["items"], stats["tracks"], strict=True):
        for name in ("class", "first_frame", "first_time_s", "last_frame", "last_time_s", "frames_seen",
                     "mean_confidence"):
            assert item[name] == track[name], name
    assert gallery["video"] == {"width": 320, "height": 240}


def test_each_crop_is_a_small_decodable_jpeg_of_its_animal(gallery_run) -> None:
    _, out = gallery_run
    gallery = json.loads((out / GALLERY).read_text())
    colours = {"red": 0, "green": 1}  # the channel that is high inside the box
    for item in gallery["items"]:
        image = cv2.imdecode(np.frombuffer((out / item["crop"]).read_bytes(), np.uint8), cv2.IMREAD_COLOR)
        assert image is not None, item["crop"]
        assert image.shape[:2] == (item["crop_height"], item["crop_width"])
        assert max(image.shape[:2]) <= MAX_CROP_PX
        rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        centre = rgb[rgb.shape[0] // 2, rgb.shape[1] // 2].astype(int)
        assert centre[colours[item["class"]]] > 150, (item["class"], centre)  # the crop shows its animal


def test_the_crop_of_an_animal_entering_from_the_edge_is_taken_once_it_is_whole(gallery_run) -> None:
    _, out = gallery_run
    gallery = json.loads((out / GALLERY).read_text())
    red = next(item for item in gallery["items"] if item["class"] == "red")
    assert red["first_box"][0] <= 2  # first seen cut by the left edge
    assert red["crop_whole"] and red["crop_box"][0] > 2
    first_row = json.loads((out / DETECTIONS).read_text().splitlines()[red["first_frame"]])
    assert red["first_box"] in [d["box"] for d in first_row["detections"] if d["track_id"] == red["id"]]


def test_the_zip_holds_the_gallery_and_every_crop(gallery_run) -> None:
    _, out = gallery_run
    with zipfile.ZipFile(out / GALLERY_ZIP) as archive:
        gallery = json.loads(archive.read(GALLERY))
        names = set(archive.namelist())
        assert names == {GALLERY, *(item["crop"] for item in gallery["items"])}
        for item in gallery["items"]:
            assert archive.read(item["crop"]) == (out / item["crop"]).read_bytes()
            assert cv2.imdecode(np.frombuffer(io.BytesIO(archive.read(item["crop"])).getvalue(), np.uint8),
                                cv2.IMREAD_COLOR) is not None
