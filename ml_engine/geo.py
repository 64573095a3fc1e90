"""Ground positions of detections in georeferenced rasters, and counting each animal once
across overlapping stills.

A GeoTIFF's geotransform maps pixels to its CRS; GDAL (``rasterio.warp.transform``) maps
those to WGS84 longitude/latitude, as RFC 7946 GeoJSON wants them.

**Deduplication** (``GroundDeduplicator``). A grid flight overlaps 60-80 %, so the same cow is
in several stills. Each detection's box centre is put on the ground (WGS84, then metres in a
local east/north frame around the first point: equirectangular, exact to well under a
centimetre over a few kilometres). A detection is the same animal as an earlier one when

* it comes from a *different* image (two boxes of one image are two animals: the detector
  already answered once per object),
* it has the same class, and
* its ground centre lies within ``tolerance_px`` ground-sample distances (GSD, the ground size
  of one of its image's pixels) of the earlier one's; the nearest such one is taken, and each
  earlier animal is matched at most once per image.

Limits: an animal that moved between two shots by more than the tolerance is counted twice,
and two animals of one class that swap places or stand closer than the tolerance in
different shots can be taken for one. Georeferencing errors (a stills' geotransform from GNSS
without ground control is often off by a metre or more) break the matching when they exceed
the tolerance. Images without georeferencing cannot be matched and add their counts as they
are. Memory: one ground point (x, y, class, image) per distinct animal, in a grid hash whose
cell is the tolerance: it grows with the animals found, not with the pixels or the files.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np
from rasterio.warp import transform as warp_transform

__all__ = ["DEDUP_TOLERANCE_PX", "GroundDeduplicator", "GroundPoints", "ground_sample_distance_m",
           "pixels_to_crs", "to_wgs84", "crs_name"]

EARTH_RADIUS_M = 6_371_008.8  # mean radius (IUGG)
WGS84 = "EPSG:4326"
# How far apart (in the image's pixels) two shots' centres of one animal may be: box centres
# jitter by a few pixels between shots (pose, detector), and GNSS-only georeferencing adds
# more; a cow seen from above is ~60 px at 3 cm GSD, so 16 px stays well inside one animal.
DEDUP_TOLERANCE_PX = 16.0


def pixels_to_crs(transform: Any, xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates (x right, y down; 0,0 the top-left corner) to the raster's CRS."""
    a, b, c, d, e, f = transform.a, transform.b, transform.c, transform.d, transform.e, transform.f
    return a * xs + b * ys + c, d * xs + e * ys + f


def to_wgs84(crs: Any, xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates in ``crs`` to WGS84 (longitude, latitude) in degrees."""
    if len(xs) == 0:
        return np.zeros(0), np.zeros(0)
    lons, lats = warp_transform(crs, WGS84, list(map(float, xs)), list(map(float, ys)))
    return np.asarray(lons, dtype=np.float64), np.asarray(lats, dtype=np.float64)


def crs_name(crs: Any) -> str:
    """``EPSG:32633`` where the CRS has a code, else its WKT."""
    code = crs.to_epsg()
    return f"EPSG:{code}" if code else crs.to_wkt()


def ground_sample_distance_m(crs: Any, transform: Any, width: int, height: int) -> float:
    """The ground size of one pixel at the raster's centre, in metres (the mean of its two sides)."""
    cx, cy = width / 2, height / 2
    xs, ys = pixels_to_crs(transform, np.array([cx, cx + 1, cx]), np.array([cy, cy, cy + 1]))
    lons, lats = to_wgs84(crs, xs, ys)
    east, north = _local_metres(lons, lats, lons[0], lats[0])
    across = math.hypot(east[1], north[1])
    down = math.hypot(east[2], north[2])
    return (across + down) / 2


def _local_metres(lons: np.ndarray, lats: np.ndarray, lon0: float, lat0: float) -> tuple[np.ndarray, np.ndarray]:
    """WGS84 degrees to east/north metres from (lon0, lat0) (equirectangular)."""
    east = np.radians(lons - lon0) * math.cos(math.radians(lat0)) * EARTH_RADIUS_M
    north = np.radians(lats - lat0) * EARTH_RADIUS_M
    return east, north


class GroundPoints:
    """One image's detections on the ground: centres in the source CRS and in WGS84."""

    def __init__(self, crs: Any, transform: Any, xyxy: np.ndarray) -> None:
        centre_x = (xyxy[:, 0] + xyxy[:, 2]) / 2
        centre_y = (xyxy[:, 1] + xyxy[:, 3]) / 2
        self.crs_x, self.crs_y = pixels_to_crs(transform, centre_x, centre_y)
        self.lon, self.lat = to_wgs84(crs, self.crs_x, self.crs_y)


class GroundDeduplicator:
    """Assigns each detection of georeferenced images an animal id, the same id for detections
    of one animal seen in several images (see the module's description)."""

    def __init__(self, tolerance_px: float = DEDUP_TOLERANCE_PX) -> None:
        self.tolerance_px = tolerance_px
        self._origin: tuple[float, float] | None = None
        self._cell_m: float | None = None
        self._grid: dict[tuple[int, int], list[int]] = defaultdict(list)
        self._points: list[tuple[float, float, str, int]] = []  # east, north, class, image
        self.by_class: dict[str, int] = defaultdict(int)
        self.largest_tolerance_m = 0.0

    @property
    def total(self) -> int:
        return len(self._points)

    def add_image(self, image: int, lons: np.ndarray, lats: np.ndarray, classes: Sequence[str],
                  scores: np.ndarray, gsd_m: float) -> list[int]:
        """The animal id of each detection of image number ``image`` (new ids for new animals).
        Detections are matched best score first."""
        if len(lons) == 0:
            return []
        if self._origin is None:
            self._origin = (float(lons[0]), float(lats[0]))
        tolerance = self.tolerance_px * gsd_m
        self.largest_tolerance_m = max(self.largest_tolerance_m, tolerance)
        if self._cell_m is None:
            self._cell_m = max(tolerance, 1e-3)
        east, north = _local_metres(lons, lats, *self._origin)
        ids = [-1] * len(lons)
        claimed: set[int] = set()
        for i in np.argsort(-np.asarray(scores), kind="stable"):
            match = self._nearest(east[i], north[i], classes[i], image, tolerance, claimed)
            if match is None:
                match = self._add(east[i], north[i], classes[i], image)
            claimed.add(match)
            ids[i] = match
        return ids

    def _nearest(self, east: float, north: float, cls: str, image: int, tolerance: float,
                 claimed: set[int]) -> int | None:
        assert self._cell_m is not None
        reach = math.ceil(tolerance / self._cell_m)
        cx, cy = self._cell(east, north)
        best, best_distance = None, tolerance
        for gx in range(cx - reach, cx + reach + 1):
            for gy in range(cy - reach, cy + reach + 1):
                for index in self._grid.get((gx, gy), ()):
                    px, py, pcls, pimage = self._points[index]
                    if pimage == image or pcls != cls or index in claimed:
                        continue
                    distance = math.hypot(px - east, py - north)
                    if distance <= best_distance:
                        best, best_distance = index, distance
        return best

    def _add(self, east: float, north: float, cls: str, image: int) -> int:
        index = len(self._points)
        self._points.append((float(east), float(north), cls, image))
        self._grid[self._cell(east, north)].append(index)
        self.by_class[cls] += 1
        return index

    def _cell(self, east: float, north: float) -> tuple[int, int]:
        assert self._cell_m is not None
        return math.floor(east / self._cell_m), math.floor(north / self._cell_m)
