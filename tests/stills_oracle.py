"""Test data and a deterministic detector for the stills tests (tests/test_stills.py).

The tiny test checkpoints have random weights, so detection-dependent logic (seam merging,
georeferencing, deduplication, counts) is tested with ``BlobDetector``: it satisfies the
pipeline's ``DetectorLike`` and answers from the pixels it is handed, finding the synthetic
animals painted into the test rasters (white squares are cows, red squares sheep). Everything
around it is the product's own path: the windowed read, the tiles, ``detect_views``'s
contract (boxes in frame pixels), the merge, the geo transforms, the outputs.

It also records the largest image it was handed, so a test can tell that the model never saw
(and the reader never built) a whole large raster.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import rasterio
import supervision as sv
from affine import Affine
from rasterio.errors import NotGeoreferencedWarning

from core.errors import InvalidInput

LABELS = {0: "cow", 1: "sheep"}
COW = (255, 255, 255)
SHEEP = (255, 0, 0)
# A real CRS: UTM zone 33N. Easting 500,000 m is its central meridian, 15 deg E exactly.
CRS = "EPSG:32633"
ORIGIN = (499_950.0, 5_400_000.0)  # top-left corner of the field (easting, northing)
GSD = 0.05  # metres per pixel


@dataclass(frozen=True)
class Animal:
    x: int  # centre, field pixels
    y: int
    cls: str = "cow"
    size: int = 12

    @property
    def box(self) -> tuple[int, int, int, int]:
        half = self.size // 2
        return self.x - half, self.y - half, self.x + half, self.y + half


class BlobDetector:
    """Finds the painted squares: one box per connected white (cow) or red (sheep) blob."""

    labels = LABELS
    model_id = "blob-oracle"
    device = "cpu"
    random_weights = False

    def __init__(self, tile: tuple[int, int] = (256, 256)) -> None:
        self.tile = tile
        self.largest_image_px = 0
        self.views_seen = 0

    def detect(self, images: list[np.ndarray], threshold: float, class_names: Any = None) -> list[sv.Detections]:
        return [self._find(image, (0, 0, image.shape[1], image.shape[0])) for image in images]

    def class_ids(self, class_names: Any) -> set[int]:
        unknown = set(class_names) - set(LABELS.values())
        if unknown:
            raise InvalidInput(f"unknown class name(s) {sorted(unknown)}; valid names: cow, sheep")
        return {i for i, name in LABELS.items() if name in class_names}

    def detect_views(self, images: list[np.ndarray], views: list[Any], threshold: float,
                     class_names: Any = None) -> list[sv.Detections]:
        self.views_seen += len(views)
        return [self._find(images[view.image], view.region) for view in views]

    def model_input_size(self, width: int, height: int) -> tuple[int, int]:
        scale = 640 / max(width, height)
        return round(width * scale), round(height * scale)

    def tile_size(self) -> tuple[int, int]:
        return self.tile

    def describe(self) -> dict[str, Any]:
        return {"id": self.model_id, "device": self.device, "random_weights": False}

    def _find(self, image: np.ndarray, region: tuple[int, int, int, int]) -> sv.Detections:
        self.largest_image_px = max(self.largest_image_px, image.shape[0] * image.shape[1])
        x0, y0, x1, y1 = region
        crop = image[y0:y1, x0:x1]
        if not crop.any():  # most of a field (and all of a sparse raster) is empty: skip the labelling
            return sv.Detections.empty()
        red, green, blue = crop[..., 0], crop[..., 1], crop[..., 2]
        masks = {0: (red > 200) & (green > 200) & (blue > 200), 1: (red > 200) & (green < 60) & (blue < 60)}
        boxes, classes = [], []
        for class_id, mask in masks.items():
            count, _, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
            for left, top, width, height, _area in stats[1:count]:
                boxes.append([left + x0, top + y0, left + x0 + width, top + y0 + height])
                classes.append(class_id)
        if not boxes:
            return sv.Detections.empty()
        class_id = np.array(classes, dtype=int)
        return sv.Detections(xyxy=np.array(boxes, dtype=np.float32), confidence=np.full(len(boxes), 0.9, np.float32),
                             class_id=class_id, data={"class_name": np.array([LABELS[c] for c in class_id])})


def paint(image: np.ndarray, animals: list[Animal], offset: tuple[int, int] = (0, 0)) -> np.ndarray:
    """Paint the animals (field pixels) into an HxWx3 image whose top-left is field pixel ``offset``."""
    for animal in animals:
        x0, y0, x1, y1 = animal.box
        colour = COW if animal.cls == "cow" else SHEEP
        ox, oy = offset
        x0, x1 = max(0, x0 - ox), min(image.shape[1], x1 - ox)
        y0, y1 = max(0, y0 - oy), min(image.shape[0], y1 - oy)
        if x0 < x1 and y0 < y1:
            image[y0:y1, x0:x1] = colour
    return image


def field_transform(offset_px: tuple[int, int] = (0, 0), gsd: float = GSD) -> Any:
    """The geotransform of a raster whose top-left pixel is field pixel ``offset_px``."""
    return Affine(gsd, 0.0, ORIGIN[0] + offset_px[0] * gsd, 0.0, -gsd, ORIGIN[1] - offset_px[1] * gsd)


def write_geotiff(path: Path, image: np.ndarray, transform: Any = None, crs: str | None = CRS,
                  **profile: Any) -> Path:
    """An RGB (or N-band, ``image`` HxWxN) GeoTIFF; no CRS/transform when ``crs`` is None."""
    height, width, bands = image.shape
    options: dict[str, Any] = {"driver": "GTiff", "width": width, "height": height, "count": bands,
                               "dtype": image.dtype.name, **profile}
    if crs is not None:
        options.update(crs=crs, transform=transform if transform is not None else field_transform())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)  # a plain TIFF on purpose when crs is None
        with rasterio.open(path, "w", **options) as out:
            out.write(np.moveaxis(image, -1, 0))
    return path


def write_sparse_ortho(path: Path, size: int, animals: list[Animal], block: int = 512) -> Path:
    """A ``size`` x ``size`` RGB BigTIFF orthomosaic written quickly: tiled, DEFLATE, sparse
    (blocks never written are not stored), only the animals' blocks painted."""
    profile = {"driver": "GTiff", "width": size, "height": size, "count": 3, "dtype": "uint8", "crs": CRS,
               "transform": field_transform(), "tiled": True, "blockxsize": block, "blockysize": block,
               "compress": "deflate", "sparse_ok": True, "BIGTIFF": "YES"}
    with rasterio.open(path, "w", **profile) as out:
        blocks = {(x // block, y // block) for a in animals for x in a.box[0::2] for y in a.box[1::2]}
        for bx, by in sorted(blocks):
            x0, y0 = bx * block, by * block
            w, h = min(block, size - x0), min(block, size - y0)
            tile = paint(np.zeros((h, w, 3), np.uint8), animals, offset=(x0, y0))
            out.write(np.moveaxis(tile, -1, 0), window=rasterio.windows.Window(x0, y0, w, h))
    return path
