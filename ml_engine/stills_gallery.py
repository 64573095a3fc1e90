"""A picture of every counted animal of an images job: one crop per animal as the job counts it.

What one animal is follows the count (``stats.json``'s ``counts``): in georeferenced images
deduplicated on the ground (``ml_engine.survey.dedup``), the detections that share an animal id are one
animal, seen in one or more images; every other detection (an image without georeferencing,
or deduplication off) is an animal of its own. Each animal keeps the best crop of its
sightings, scored as a video's (``ml_engine.gallery.score_crop``: whole first, then size x
sharpness x confidence).

Memory stays flat in the number of files and animals: a crop is written as a JPEG as soon as
it is the animal's best (replacing a worse one), so only a few numbers per animal are held,
and at most ``max_items`` animals are listed (``gallery.json`` says when the list was cut;
the count is not). A still's crop is cut from the image in memory; a large raster's is read
from the file as a small window around the box (the raster is never in memory whole).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from core.outputs import gallery_crop
from ml_engine.gallery import (
    GALLERY_SCHEMA_VERSION,
    MAX_CROP_PX,
    CropScore,
    better_crop,
    write_crop,
    write_gallery,
)

MAX_ITEMS = 5000  # animals listed with a picture; a mosaic can count more, and the count says how many

# box (x1, y1, x2, y2, in the file's pixels) -> its crop (RGB, at most MAX_CROP_PX), or None
CropReader = Callable[[Sequence[float]], "np.ndarray | None"]


@dataclass
class _Animal:
    """One listed animal: its sightings so far and its best crop's (written) description."""

    id: int
    cls: str
    animal: int | None  # the deduplication's animal id (georeferenced images only)
    first_image: str
    first_box: list[float]
    images: list[str] = field(default_factory=list)
    confidences: list[float] = field(default_factory=list)
    score: CropScore | None = None
    crop: dict[str, Any] = field(default_factory=dict)


class StillsGallery:
    """Collects the best crop of every counted animal, file by file, and writes the gallery."""

    def __init__(self, output_dir: Path, max_items: int = MAX_ITEMS) -> None:
        self.output_dir = output_dir
        self.max_items = max_items
        self.counted = 0  # every animal counted, listed or not
        self._listed: dict[int, _Animal] = {}  # gallery id -> animal, in the order first seen
        self._by_animal: dict[int, int | None] = {}  # deduplication's animal id -> gallery id (None: not listed)

    def add_image(self, name: str, frame_size: tuple[int, int], rows: Sequence[Mapping[str, Any]],
                  read_crop: CropReader) -> None:
        """One counted file's detections (stills.py's rows: class, score, box, and ``animal`` where
        deduplicated); ``read_crop`` cuts a box's crop from the file."""
        for row in rows:
            animal = self._animal_of(name, row)
            if animal is not None:
                self._sighting(animal, name, frame_size, row, read_crop)

    def _animal_of(self, name: str, row: Mapping[str, Any]) -> _Animal | None:
        """The listed animal this detection shows (a new one unless deduplication matched it);
        None when it is not listed (past ``max_items``)."""
        dedup_id = row.get("animal")
        if dedup_id is not None and dedup_id in self._by_animal:
            gallery_id = self._by_animal[dedup_id]
            return None if gallery_id is None else self._listed[gallery_id]
        self.counted += 1
        gallery_id = self.counted if len(self._listed) < self.max_items else None
        if dedup_id is not None:
            self._by_animal[dedup_id] = gallery_id
        if gallery_id is None:
            return None
        animal = _Animal(gallery_id, str(row["class"]), dedup_id, name, [round(float(v), 2) for v in row["box"]])
        self._listed[gallery_id] = animal
        return animal

    def _sighting(self, animal: _Animal, name: str, frame_size: tuple[int, int], row: Mapping[str, Any],
                  read_crop: CropReader) -> None:
        box, confidence = [float(v) for v in row["box"]], float(row["score"])
        animal.images.append(name)
        animal.confidences.append(confidence)
        better = better_crop(box, frame_size, confidence, animal.score, lambda: read_crop(box))
        if better is None:
            return
        crop, score = better
        write_crop(self.output_dir, animal.id, crop)
        animal.score = score
        animal.crop = {
            "crop": gallery_crop(animal.id), "crop_width": int(crop.shape[1]), "crop_height": int(crop.shape[0]),
            "crop_image": name, "crop_box": [round(v, 2) for v in box], "crop_confidence": round(confidence, 4),
            "crop_whole": score.whole, "crop_quality": round(score.quality, 4),
        }

    def document(self) -> dict[str, Any]:
        """gallery.json: the count, and one item per listed animal (all of them unless cut)."""
        items = [self._item(animal) for animal in self._listed.values()]
        document: dict[str, Any] = {"schema_version": GALLERY_SCHEMA_VERSION, "kind": "images",
                                    "crop_max_px": MAX_CROP_PX, "count": self.counted, "items": items}
        if len(items) < self.counted:
            document["truncated"] = {
                "listed": len(items), "max_items": self.max_items,
                "note": f"only the first {len(items)} of {self.counted} counted animals are listed with a "
                        "picture (the count is not cut); split the job to see the others",
            }
        return document

    @staticmethod
    def _item(animal: _Animal) -> dict[str, Any]:
        item: dict[str, Any] = {
            "id": animal.id, "class": animal.cls, "animal": animal.animal, "first_image": animal.first_image,
            "first_box": animal.first_box, "images": list(dict.fromkeys(animal.images)),
            "sightings": len(animal.confidences),
            "mean_confidence": round(sum(animal.confidences) / len(animal.confidences), 4),
        }
        return {**item, **animal.crop} if animal.crop else {**item, "crop": None}

    def finish(self) -> dict[str, Path]:
        """Write gallery.json and gallery.zip; returns output name -> path (crops as ``crops/<id>.jpg``)."""
        return write_gallery(self.output_dir, self.document())
