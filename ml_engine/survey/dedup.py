"""Counting each animal once across overlapping stills: sightings on the ground joined into animals.

Every detection of a placed image (a GeoTIFF's geotransform, or a drone JPEG's footprint) is a
*sighting*: its box centre on the ground, in metres east and north of the job's first point.
An *animal* is a cluster of sightings, at most one per image. A sighting joins an animal when

* it comes from an image the animal has no sighting in yet (two boxes of one image are two
  animals: the detector already answered once per object),
* it has the animal's class, and
* its ground centre is within the tolerance (``tolerance_px`` ground-sample distances of its
  image) of the animal's position; nearer pairs are joined first.

**The position comes from the best sightings.** An animal's position is the mean of its whole
sightings (boxes not touching their image's edge), weighted towards those near their image's
centre, where relief and lens distortion move a point least. A sighting cut by the image edge
shows part of the animal, so its box centre is off by up to half the hidden part; it never
moves a position that whole sightings give.

**An edge-cut sighting is matched with a tolerance that covers its cut.** The hidden part lies
beyond the cut edge, so the true centre lies on a segment from the box centre towards that
edge, as long as half of what is hidden: ``(L - seen) / 2``, where ``seen`` is the box's extent
across the cut edge and ``L`` the longest side of any whole box of that class so far (the
largest an animal of that class has shown itself). A box cut at a corner has two such
segments (a rectangle). The distance to such a sighting is the distance to that segment or
rectangle. An animal seen only cut so far is placed by its least-cut sighting.

**An animal that walked.** Shots of a grid's neighbouring lines are a minute or more apart, and a
grazing animal moves more than the tolerance in that time. After the first pass, an animal
that lies well inside the new image (at least its class's body length ``L`` from the frame's
edge, so it cannot have walked out) and that none of the image's sightings matched must have
walked (or been missed): an unmatched sighting of its class within ``walk_m`` beyond the
tolerance is taken for it, nearest pairs first.

Limits: an animal that moved more than the tolerance plus ``walk_m`` between two shots, or
more than the tolerance near an image's edge, counts twice; an animal the detector missed in
an image can be taken for a new one that stands within ``walk_m`` of it; two
animals of one class closer than the tolerance in different shots can be taken for one; an
animal seen only cut, in shots whose cuts point different ways, is compared through the
segments' ends (close to exact, not exact); ``L`` is learnt from the job's whole boxes, so a
job whose whole boxes are all small (calves) under-covers a cut bull. Memory: a few numbers
per sighting, in a grid hash: it grows with the detections, not with the pixels or the files.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

__all__ = ["DEDUP_WALK_M", "EDGE_MARGIN_PX", "GroundDeduplicator", "Sightings", "sightings_from_boxes"]

EARTH_RADIUS_M = 6_371_008.8  # mean radius (IUGG)
# A box edge this close to the image border is taken as cut by it (detectors' boxes of an
# animal that touches the border end within a pixel or two of it).
EDGE_MARGIN_PX = 2.0
# How far beyond the tolerance an animal may have walked between two shots of it (a grazing cow
# covers about a metre a minute; a grid's neighbouring lines are about a minute apart).
DEDUP_WALK_M = 1.0
CENTRAL_WEIGHT_FLOOR = 0.25  # a whole sighting at the very edge still counts a quarter of a central one

LonLatOf = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


@dataclass
class Sightings:
    """One image's detections on the ground (arrays, one entry per detection).

    ``cut_towards``: per detection, for each side of its box cut by the image edge, the ground
    point (lon, lat) one pixel from the box centre towards that edge, and the box's extent
    across that edge in pixels. ``size_px``: the box's longest side. ``central``: 1 at the
    image's centre, 0 at its border."""

    lons: np.ndarray
    lats: np.ndarray
    classes: Sequence[str]
    scores: np.ndarray
    gsd_m: float
    size_px: np.ndarray
    central: np.ndarray
    cut_towards: list[list[tuple[float, float, float]]] = field(default_factory=list)
    extra_tolerance_m: float = 0.0  # the image's placement error, added to the tolerance
    frame_corners: list[tuple[float, float]] = field(default_factory=list)  # the image's corners (lon, lat)

    def __len__(self) -> int:
        return len(self.lons)


def sightings_from_boxes(xyxy: np.ndarray, width: int, height: int, lonlat_of: LonLatOf, gsd_m: float,
                         classes: Sequence[str], scores: np.ndarray, extra_tolerance_m: float = 0.0) -> Sightings:
    """The boxes (pixels of an image ``width`` x ``height``) as sightings; ``lonlat_of`` maps
    pixel x, y arrays to WGS84 longitude, latitude arrays."""
    xyxy = np.asarray(xyxy, dtype=np.float64).reshape(-1, 4)
    cx, cy = (xyxy[:, 0] + xyxy[:, 2]) / 2, (xyxy[:, 1] + xyxy[:, 3]) / 2
    box_w, box_h = xyxy[:, 2] - xyxy[:, 0], xyxy[:, 3] - xyxy[:, 1]
    sides = [  # (cut?, step x, step y, extent across the edge)
        (xyxy[:, 0] <= EDGE_MARGIN_PX, -1.0, 0.0, box_w),
        (xyxy[:, 2] >= width - EDGE_MARGIN_PX, 1.0, 0.0, box_w),
        (xyxy[:, 1] <= EDGE_MARGIN_PX, 0.0, -1.0, box_h),
        (xyxy[:, 3] >= height - EDGE_MARGIN_PX, 0.0, 1.0, box_h),
    ]
    xs, ys = [cx], [cy]
    for _, step_x, step_y, _ in sides:
        xs.append(cx + step_x)
        ys.append(cy + step_y)
    xs.append(np.array([0.0, width, width, 0.0]))
    ys.append(np.array([0.0, 0.0, height, height]))
    lons, lats = lonlat_of(np.concatenate(xs), np.concatenate(ys))
    count = len(xyxy)
    cut_towards: list[list[tuple[float, float, float]]] = [[] for _ in range(count)]
    for side, (cut, _, _, extent) in enumerate(sides, start=1):
        for i in np.flatnonzero(cut):
            index = side * count + i
            cut_towards[i].append((float(lons[index]), float(lats[index]), float(extent[i])))
    off_centre = np.maximum(np.abs(cx - width / 2) / (width / 2), np.abs(cy - height / 2) / (height / 2))
    return Sightings(lons=lons[:count], lats=lats[:count], classes=list(classes), scores=np.asarray(scores),
                     gsd_m=gsd_m, size_px=np.maximum(box_w, box_h), central=np.clip(1 - off_centre, 0, 1),
                     cut_towards=cut_towards, extra_tolerance_m=extra_tolerance_m,
                     frame_corners=[(float(x), float(y)) for x, y in zip(lons[-4:], lats[-4:], strict=True)])


@dataclass
class _Sighting:
    east: float
    north: float
    image: int
    weight: float
    # each cut side: unit vector towards the edge (east, north) and the extent seen across it (m)
    cuts: list[tuple[float, float, float]]

    @property
    def whole(self) -> bool:
        return not self.cuts


@dataclass
class _Animal:
    cls: str
    images: set[int]
    east: float
    north: float
    best_cut: _Sighting | None  # the least-cut sighting while no whole one is known
    weight: float = 0.0  # of the whole sightings, whose weighted mean is (east, north)
    cell: tuple[int, int] = (0, 0)


class GroundDeduplicator:
    """Assigns each detection of placed images an animal id, the same id for detections of one
    animal seen in several images (see the module's description)."""

    def __init__(self, tolerance_px: float, walk_m: float = 0.0) -> None:
        self.tolerance_px = tolerance_px
        self.walk_m = walk_m
        self.walked = 0  # sightings matched by the second pass
        self._origin: tuple[float, float] | None = None
        self._cell_m: float | None = None
        self._grid: dict[tuple[int, int], list[int]] = defaultdict(list)
        self._animals: list[_Animal] = []
        self._longest_m: dict[str, float] = {}  # per class: the longest side of a whole box
        self._longest_any_m: dict[str, float] = {}  # per class, any box (before a whole one is seen)
        self.by_class: dict[str, int] = defaultdict(int)
        self.largest_tolerance_m = 0.0
        self.cut_sightings = 0
        self.sightings = 0

    @property
    def total(self) -> int:
        return len(self._animals)

    def add_image(self, image: int, lons: np.ndarray, lats: np.ndarray, classes: Sequence[str],
                  scores: np.ndarray, gsd_m: float) -> list[int]:
        """Whole sightings only, one ground point each (as ``add``)."""
        count = len(lons)
        return self.add(image, Sightings(np.asarray(lons), np.asarray(lats), classes, np.asarray(scores), gsd_m,
                                         size_px=np.zeros(count), central=np.ones(count),
                                         cut_towards=[[] for _ in range(count)]))

    def add(self, image: int, sightings: Sightings) -> list[int]:
        """The animal id of each sighting of image number ``image`` (new ids for new animals)."""
        if len(sightings) == 0:
            return []
        if self._origin is None:
            self._origin = (float(sightings.lons[0]), float(sightings.lats[0]))
        tolerance = self.tolerance_px * sightings.gsd_m + sightings.extra_tolerance_m
        self.largest_tolerance_m = max(self.largest_tolerance_m, tolerance)
        local = self._to_local(image, sightings)
        self._learn_sizes(sightings, local)
        if self._cell_m is None:
            self._cell_m = max(tolerance + max(self._longest_any_m.values(), default=0.0), 1e-3)
        pairs = self._candidate_pairs(local, sightings.classes, image, tolerance)
        ids = [-1] * len(local)
        taken: set[int] = set()
        for _, i, animal in sorted(pairs):
            if ids[i] == -1 and animal not in taken:
                ids[i] = animal
                taken.add(animal)
        if self.walk_m > 0 and sightings.frame_corners and -1 in ids:
            self._match_walkers(local, sightings, image, tolerance, ids, taken)
        for i, sighting in enumerate(local):
            if ids[i] == -1:
                ids[i] = self._new_animal(sightings.classes[i], sighting)
            else:
                self._join(ids[i], sighting)
        self.sightings += len(local)
        self.cut_sightings += sum(1 for s in local if not s.whole)
        return ids

    def _match_walkers(self, local: list[_Sighting], sightings: Sightings, image: int, tolerance: float,
                       ids: list[int], taken: set[int]) -> None:
        """Second pass: an animal well inside this image that none of its sightings matched must have
        walked (or been missed): an unmatched sighting within ``walk_m`` more is taken for it."""
        east, north = self._metres(np.array([c[0] for c in sightings.frame_corners]),
                                   np.array([c[1] for c in sightings.frame_corners]))
        frame = np.column_stack([east, north]).astype(np.float32)
        pairs = []
        for i, sighting in enumerate(local):
            if ids[i] != -1:
                continue
            cls = sightings.classes[i]
            margin = self._longest(cls)  # an animal within a body length of the edge may have left the frame
            for index in self._near(sighting.east, sighting.north, tolerance + self.walk_m + margin):
                animal = self._animals[index]
                if animal.cls != cls or image in animal.images or index in taken or animal.best_cut is not None:
                    continue
                distance = math.hypot(animal.east - sighting.east, animal.north - sighting.north)
                inside = cv2.pointPolygonTest(frame, (animal.east, animal.north), True) >= margin
                if distance <= tolerance + self.walk_m and inside:
                    pairs.append((distance, i, index))
        for _, i, index in sorted(pairs):
            if ids[i] == -1 and index not in taken:
                ids[i] = index
                taken.add(index)
                self.walked += 1

    def _near(self, east: float, north: float, radius: float) -> list[int]:
        assert self._cell_m is not None
        reach = math.ceil(radius / self._cell_m)
        cx, cy = self._cell(east, north)
        return [index for gx in range(cx - reach, cx + reach + 1) for gy in range(cy - reach, cy + reach + 1)
                for index in self._grid.get((gx, gy), ())]

    # --- sightings on the local frame ---------------------------------------------------------

    def _to_local(self, image: int, sightings: Sightings) -> list[_Sighting]:
        east, north = self._metres(sightings.lons, sightings.lats)
        local = []
        for i in range(len(sightings)):
            cuts = []
            for lon, lat, seen_px in sightings.cut_towards[i] if sightings.cut_towards else ():
                step_e, step_n = self._metres(np.array([lon]), np.array([lat]))
                de, dn = float(step_e[0]) - east[i], float(step_n[0]) - north[i]
                metres_per_px = math.hypot(de, dn)
                if metres_per_px > 0:
                    cuts.append((de / metres_per_px, dn / metres_per_px, seen_px * metres_per_px))
            weight = CENTRAL_WEIGHT_FLOOR + (1 - CENTRAL_WEIGHT_FLOOR) * float(sightings.central[i])
            local.append(_Sighting(float(east[i]), float(north[i]), image, weight, cuts))
        return local

    def _metres(self, lons: np.ndarray, lats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        assert self._origin is not None
        lon0, lat0 = self._origin
        east = np.radians(np.asarray(lons) - lon0) * math.cos(math.radians(lat0)) * EARTH_RADIUS_M
        north = np.radians(np.asarray(lats) - lat0) * EARTH_RADIUS_M
        return east, north

    def _learn_sizes(self, sightings: Sightings, local: list[_Sighting]) -> None:
        for cls, size_px, sighting in zip(sightings.classes, sightings.size_px, local, strict=True):
            size_m = float(size_px) * sightings.gsd_m
            self._longest_any_m[cls] = max(self._longest_any_m.get(cls, 0.0), size_m)
            if sighting.whole:
                self._longest_m[cls] = max(self._longest_m.get(cls, 0.0), size_m)

    def _longest(self, cls: str) -> float:
        return self._longest_m.get(cls) or self._longest_any_m.get(cls, 0.0)

    # --- matching -----------------------------------------------------------------------------

    def _candidate_pairs(self, local: list[_Sighting], classes: Sequence[str], image: int,
                         tolerance: float) -> list[tuple[float, int, int]]:
        assert self._cell_m is not None
        pairs = []
        for i, sighting in enumerate(local):
            cls = classes[i]
            longest = self._longest(cls)
            reach = math.ceil((tolerance + longest) / self._cell_m)
            cx, cy = self._cell(sighting.east, sighting.north)
            for gx in range(cx - reach, cx + reach + 1):
                for gy in range(cy - reach, cy + reach + 1):
                    for index in self._grid.get((gx, gy), ()):
                        animal = self._animals[index]
                        if animal.cls != cls or image in animal.images:
                            continue
                        distance = self._distance(sighting, animal, longest)
                        if distance <= tolerance:
                            pairs.append((distance, i, index))
        return pairs

    def _distance(self, sighting: _Sighting, animal: _Animal, longest: float) -> float:
        if animal.best_cut is None:  # placed by whole sightings
            return _point_to_region(animal.east, animal.north, sighting, longest)
        other = animal.best_cut
        return min(min(_point_to_region(e, n, other, longest) for e, n in _corners(sighting, longest)),
                   min(_point_to_region(e, n, sighting, longest) for e, n in _corners(other, longest)))

    # --- animals ------------------------------------------------------------------------------

    def _new_animal(self, cls: str, sighting: _Sighting) -> int:
        index = len(self._animals)
        animal = _Animal(cls, {sighting.image}, sighting.east, sighting.north,
                         best_cut=None if sighting.whole else sighting,
                         weight=sighting.weight if sighting.whole else 0.0)
        self._animals.append(animal)
        self._place(index, animal)
        self.by_class[cls] += 1
        return index

    def _join(self, index: int, sighting: _Sighting) -> None:
        animal = self._animals[index]
        animal.images.add(sighting.image)
        if sighting.whole:
            total = animal.weight + sighting.weight
            if animal.weight == 0:  # its first whole sighting replaces the cut ones' guess
                animal.east, animal.north = sighting.east, sighting.north
            else:
                animal.east = (animal.east * animal.weight + sighting.east * sighting.weight) / total
                animal.north = (animal.north * animal.weight + sighting.north * sighting.weight) / total
            animal.weight, animal.best_cut = total, None
        elif animal.best_cut is not None and _seen(sighting) > _seen(animal.best_cut):
            animal.best_cut = sighting
            animal.east, animal.north = sighting.east, sighting.north
        self._place(index, animal)

    def _place(self, index: int, animal: _Animal) -> None:
        cell = self._cell(animal.east, animal.north)
        if index < len(self._animals) and cell != animal.cell and index in self._grid.get(animal.cell, ()):
            self._grid[animal.cell].remove(index)
        if index not in self._grid.get(cell, ()):
            self._grid[cell].append(index)
        animal.cell = cell

    def _cell(self, east: float, north: float) -> tuple[int, int]:
        assert self._cell_m is not None
        return math.floor(east / self._cell_m), math.floor(north / self._cell_m)


def _seen(sighting: _Sighting) -> float:
    """How much of the animal a cut sighting shows: its smallest extent across a cut edge."""
    return min(seen for _, _, seen in sighting.cuts)


def _reach(sighting: _Sighting, longest: float) -> list[tuple[float, float, float]]:
    """Each cut side's unit vector and how far the true centre may lie along it."""
    return [(ue, un, max(0.0, longest - seen) / 2) for ue, un, seen in sighting.cuts]


def _point_to_region(east: float, north: float, sighting: _Sighting, longest: float) -> float:
    """Distance from a point to where the sighting's true centre may be (a point, a segment, or
    a rectangle for a corner cut: the cut sides' directions are at right angles)."""
    de, dn = east - sighting.east, north - sighting.north
    for ue, un, length in _reach(sighting, longest):
        along = min(max(de * ue + dn * un, 0.0), length)
        de, dn = de - along * ue, dn - along * un
    return math.hypot(de, dn)


def _corners(sighting: _Sighting, longest: float) -> list[tuple[float, float]]:
    points = [(sighting.east, sighting.north)]
    for ue, un, length in _reach(sighting, longest):
        points += [(e + ue * length, n + un * length) for e, n in points]
    return points
