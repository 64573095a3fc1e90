"""A picture of every counted animal: one crop per final (stitched) track, the best one seen.

The rendering pass (``ml_engine.render``) decodes every frame with the final ids; before a
processed frame is drawn on, it offers the frame to a ``GalleryCollector``. Each final track
keeps one candidate crop (at most ``MAX_CROP_PX`` on its longest side), replaced when a better
one comes. A crop's score (``score_crop``) puts a whole animal first (a box cut by the frame's
edge shows part of one), then prefers large, sharp (variance of the Laplacian) and confident
crops. A track's crop is written as a JPEG once the video has passed its last sighting, so
only the tracks in view hold pixels: memory is bounded by the animals in view at once, not by
the length of the video.

The outputs: ``gallery.json`` (one item per counted animal: class, first and last sighting,
frames seen, mean confidence, its crop and the box of its first sighting, for a player to
highlight), ``crops/<id>.jpg``, and ``gallery.zip`` holding both, for one download.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import supervision as sv

from core.outputs import GALLERY, GALLERY_ZIP, gallery_crop

GALLERY_SCHEMA_VERSION = 1
MAX_CROP_PX = 256  # a crop's longest side
EDGE_MARGIN_PX = 2.0  # a box this close to the frame's edge is taken as cut by it
CROP_PADDING = 0.08  # context around the box, as a share of its size on each side
SHARPNESS_HALF = 100.0  # the Laplacian variance that scores half as sharp as a perfectly sharp crop
JPEG_QUALITY = 85


@dataclass(frozen=True)
class CropScore:
    """How good a crop is. Compared as (whole, quality): any whole crop beats any cut one."""

    whole: bool
    quality: float  # size x sharpness x confidence, each within 0..1

    def key(self) -> tuple[bool, float]:
        return self.whole, self.quality


def is_whole(box: Sequence[float], frame_size: tuple[int, int]) -> bool:
    """Whether ``box`` (x1, y1, x2, y2) stays clear of the frame's edges."""
    width, height = frame_size
    x1, y1, x2, y2 = box
    return (x1 > EDGE_MARGIN_PX and y1 > EDGE_MARGIN_PX
            and x2 < width - EDGE_MARGIN_PX and y2 < height - EDGE_MARGIN_PX)


def size_score(box: Sequence[float]) -> float:
    """Larger is better, up to ``MAX_CROP_PX`` on its longest side (a crop is never enlarged)."""
    x1, y1, x2, y2 = box
    return float(min(1.0, max(x2 - x1, y2 - y1, 0.0) / MAX_CROP_PX))


def sharpness(crop: np.ndarray) -> float:
    """The variance of the Laplacian of the crop's grey levels: blur lowers it."""
    grey = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY) if crop.ndim == 3 else crop
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


def score_crop(box: Sequence[float], frame_size: tuple[int, int], confidence: float, crop: np.ndarray) -> CropScore:
    """The score of ``crop`` (the box's pixels, as ``cut_crop`` gives them)."""
    variance = sharpness(crop)
    quality = size_score(box) * (variance / (variance + SHARPNESS_HALF)) * float(confidence)
    return CropScore(is_whole(box, frame_size), quality)


def better_crop(box: Sequence[float], frame_size: tuple[int, int], confidence: float, best: CropScore | None,
                read_crop: Callable[[], np.ndarray | None]) -> tuple[np.ndarray, CropScore] | None:
    """The crop of ``box`` (``read_crop()`` cuts it) and its score, when it beats ``best`` (None:
    nothing yet); else None. The pixels are not read when even a perfectly sharp crop would
    lose (sharpness is at most 1), so an animal's frames after its best cost a comparison."""
    if best is not None and (is_whole(box, frame_size), size_score(box) * confidence) <= best.key():
        return None
    crop = read_crop()
    if crop is None:
        return None
    score = score_crop(box, frame_size, confidence, crop)
    if best is not None and score.key() <= best.key():
        return None
    return crop, score


def crop_region(box: Sequence[float], frame_size: tuple[int, int]) -> tuple[int, int, int, int] | None:
    """The pixels (left, top, right, bottom) a crop of ``box`` takes: the box with a little
    context, inside the frame. None for a box with no pixels in the frame."""
    width, height = frame_size
    x1, y1, x2, y2 = box
    pad_x, pad_y = (x2 - x1) * CROP_PADDING, (y2 - y1) * CROP_PADDING
    left, top = max(0, int(x1 - pad_x)), max(0, int(y1 - pad_y))
    right, bottom = min(width, int(np.ceil(x2 + pad_x))), min(height, int(np.ceil(y2 + pad_y)))
    if right <= left or bottom <= top:
        return None
    return left, top, right, bottom


def shrink_crop(crop: np.ndarray) -> np.ndarray:
    """``crop`` at most ``MAX_CROP_PX`` on its longest side (never enlarged); always a copy."""
    longest = max(crop.shape[0], crop.shape[1])
    if longest <= MAX_CROP_PX:
        return crop.copy()
    scale = MAX_CROP_PX / longest
    size = (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale)))
    return cv2.resize(crop, size, interpolation=cv2.INTER_AREA)


def cut_crop(image: np.ndarray, box: Sequence[float]) -> np.ndarray | None:
    """The box's pixels with a little context, shrunk to at most ``MAX_CROP_PX`` on its longest
    side; a copy (the frame is drawn on afterwards). None for a box with no pixels in the frame."""
    region = crop_region(box, (image.shape[1], image.shape[0]))
    if region is None:
        return None
    left, top, right, bottom = region
    return shrink_crop(image[top:bottom, left:right])


def write_crop(output_dir: Path, crop_id: int, crop: np.ndarray) -> Path:
    """``crop`` (RGB) as ``crops/<crop_id>.jpg`` below ``output_dir``, replacing an earlier one."""
    path = output_dir / gallery_crop(crop_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(crop, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:  # OpenCV gives no reason; a crop of a decoded image always encodes in practice
        raise ValueError(f"could not encode the picture of animal {crop_id} as JPEG")
    path.write_bytes(encoded.tobytes())
    return path


def write_gallery(output_dir: Path, document: Mapping[str, Any]) -> dict[str, Path]:
    """gallery.json (``document``) and gallery.zip holding it and every item's crop; returns
    output name -> path (crops as ``crops/<id>.jpg``)."""
    gallery_path = output_dir / GALLERY
    gallery_path.write_text(json.dumps(document, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    crops = {item["crop"]: output_dir / item["crop"] for item in document["items"] if item["crop"]}
    zip_path = output_dir / GALLERY_ZIP
    with zipfile.ZipFile(zip_path, "w", compression=zipfile.ZIP_STORED) as archive:  # JPEGs: compressed already
        archive.write(gallery_path, GALLERY)
        for name, path in crops.items():
            archive.write(path, name)
    return {**crops, GALLERY: gallery_path, GALLERY_ZIP: zip_path}


@dataclass
class _Candidate:
    score: CropScore
    crop: np.ndarray
    frame: int
    time_s: float
    box: list[float]
    confidence: float


@dataclass
class _Kept:
    """What is kept of a track whose crop is written: no pixels."""

    score: CropScore
    frame: int
    time_s: float
    box: list[float]
    confidence: float
    width: int
    height: int


class GalleryCollector:
    """Keeps the best crop of each final track while the rendering pass goes by, and writes
    the gallery at the end.

    ``last_frames`` (final id -> the frame of its last sighting, from stats.json's tracks)
    says when a track's crop can be written and its pixels let go.
    """

    def __init__(self, output_dir: Path, frame_size: tuple[int, int], last_frames: Mapping[int, int]) -> None:
        self.output_dir = output_dir
        self.frame_size = frame_size
        self._last_frames = dict(last_frames)
        self._candidates: dict[int, _Candidate] = {}  # tracks in view: their best crop so far
        self._kept: dict[int, _Kept] = {}  # tracks whose crop is written
        self._first_box: dict[int, list[float]] = {}

    def offer(self, frame_index: int, time_s: float, image: np.ndarray, tracked: sv.Detections) -> None:
        """One processed frame, before anything is drawn on it: its tracks with final ids."""
        if tracked.tracker_id is not None and len(tracked):
            scores = tracked.confidence if tracked.confidence is not None else np.ones(len(tracked))
            for box, track_id, confidence in zip(tracked.xyxy.tolist(), tracked.tracker_id.tolist(),
                                                 scores.tolist(), strict=True):
                self._offer_one(int(track_id), frame_index, time_s, image, box, float(confidence))
        self._write_ended(frame_index)

    def _offer_one(self, track_id: int, frame_index: int, time_s: float, image: np.ndarray,
                   box: list[float], confidence: float) -> None:
        self._first_box.setdefault(track_id, [round(v, 2) for v in box])
        best = self._candidates.get(track_id)
        better = better_crop(box, self.frame_size, confidence, best.score if best is not None else None,
                             lambda: cut_crop(image, box))
        if better is not None:
            crop, score = better
            self._candidates[track_id] = _Candidate(score, crop, frame_index, round(time_s, 4),
                                                    [round(v, 2) for v in box], round(confidence, 4))

    def _write_ended(self, frame_index: int) -> None:
        ended = [tid for tid in self._candidates if self._last_frames.get(tid, frame_index + 1) <= frame_index]
        for track_id in ended:
            self._write_crop(track_id)

    def _write_crop(self, track_id: int) -> None:
        candidate = self._candidates.pop(track_id)
        write_crop(self.output_dir, track_id, candidate.crop)
        height, width = candidate.crop.shape[:2]
        self._kept[track_id] = _Kept(candidate.score, candidate.frame, candidate.time_s, candidate.box,
                                     candidate.confidence, width, height)

    def finish(self, tracks: Sequence[Mapping[str, Any]]) -> dict[str, Path]:
        """Write the crops still held, gallery.json (one item per track of ``tracks``, stats.json's)
        and gallery.zip; returns output name -> path (crops as ``crops/<id>.jpg``)."""
        for track_id in list(self._candidates):
            self._write_crop(track_id)
        return write_gallery(self.output_dir, self.document(tracks))

    def document(self, tracks: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """gallery.json: the frame size, the count, and one item per track."""
        width, height = self.frame_size
        items = [self._item(track) for track in tracks]
        return {"schema_version": GALLERY_SCHEMA_VERSION, "video": {"width": width, "height": height},
                "crop_max_px": MAX_CROP_PX, "count": len(items), "items": items}

    def _item(self, track: Mapping[str, Any]) -> dict[str, Any]:
        track_id = int(track["id"])
        item: dict[str, Any] = {name: track.get(name) for name in (
            "id", "class", "first_frame", "first_time_s", "last_frame", "last_time_s", "frames_seen",
            "mean_confidence")}
        item["first_box"] = self._first_box.get(track_id)
        kept = self._kept.get(track_id)
        if kept is None:  # a counted track with no row to crop from: listed, without a picture
            item["crop"] = None
            return item
        item.update({
            "crop": gallery_crop(track_id), "crop_width": kept.width, "crop_height": kept.height,
            "crop_frame": kept.frame, "crop_time_s": kept.time_s, "crop_box": kept.box,
            "crop_confidence": kept.confidence, "crop_whole": kept.score.whole,
            "crop_quality": round(kept.score.quality, 4),
        })
        return item
