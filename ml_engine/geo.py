"""Ground positions of detections in georeferenced rasters, and counting each animal once
across overlapping stills.

A GeoTIFF's geotransform maps pixels to its CRS; GDAL (``rasterio.warp.transform``) maps
those to WGS84 longitude/latitude, as RFC 7946 GeoJSON wants them.

**Deduplication** across overlapping stills (an animal seen in several counts once) is in
``ml_engine.survey.dedup``; ``DEDUP_TOLERANCE_PX`` is its matching distance.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from rasterio.warp import transform as warp_transform

__all__ = ["DEDUP_TOLERANCE_PX", "GroundPoints", "ground_sample_distance_m",
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
