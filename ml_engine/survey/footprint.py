"""A shot's pixels on the ground, from its camera's position, attitude and lens.

The ground is taken as flat, at the take-off point's height (the drone's relative altitude is
measured from there). Positions are metres east and north (a local east-north-up frame,
equirectangular around the job's first shot: exact to centimetres over a few kilometres) and
WGS84 in the outputs.

A pinhole camera at (0, 0, h) above the shot's GPS point, pointing down and turned by the
gimbal's yaw (degrees clockwise from north; the image's top faces that way), tilted forward by
``pitch + 90`` degrees (DJI's pitch is -90 straight down), no roll (a stabilised gimbal).
Each pixel's ray meets the ground plane; for a flat ground that map is a homography, and
``Footprint.matrix`` is it (pixel x, y, 1 -> east, north, 1). A shot is *near-nadir* when its
tilt is at most ``NADIR_TILT_DEG``; steeper shots are oblique: the far part of the frame
reaches the horizon, and they are counted image by image.

The accuracy estimate (one standard deviation, metres, at the frame's corners) adds in
quadrature: the GNSS position (``GPS_SIGMA_M``, a consumer receiver without RTK), the
attitude (``ATTITUDE_SIGMA_DEG`` of pitch at altitude h, and of yaw at the half-diagonal),
and the barometric altitude (``ALTITUDE_SIGMA_M``, as a scale error at the half-diagonal).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["ALTITUDE_SIGMA_M", "ATTITUDE_SIGMA_DEG", "EARTH_RADIUS_M", "Footprint", "GPS_SIGMA_M", "LocalFrame",
           "NADIR_TILT_DEG", "camera_homography"]

EARTH_RADIUS_M = 6_371_008.8  # mean radius (IUGG)
NADIR_TILT_DEG = 15.0  # beyond this from straight down a shot is oblique
GPS_SIGMA_M = 1.5
ALTITUDE_SIGMA_M = 0.5
ATTITUDE_SIGMA_DEG = 1.0


@dataclass(frozen=True)
class LocalFrame:
    """Metres east and north of a WGS84 origin, and back (equirectangular)."""

    lon0: float
    lat0: float

    def to_metres(self, lons: np.ndarray, lats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        east = np.radians(np.asarray(lons, dtype=np.float64) - self.lon0) * math.cos(math.radians(self.lat0))
        north = np.radians(np.asarray(lats, dtype=np.float64) - self.lat0)
        return east * EARTH_RADIUS_M, north * EARTH_RADIUS_M

    def to_lonlat(self, east: np.ndarray, north: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        lons = self.lon0 + np.degrees(np.asarray(east, dtype=np.float64) / EARTH_RADIUS_M
                                      / math.cos(math.radians(self.lat0)))
        lats = self.lat0 + np.degrees(np.asarray(north, dtype=np.float64) / EARTH_RADIUS_M)
        return lons, lats


def camera_homography(east: float, north: float, altitude_m: float, yaw_deg: float, pitch_deg: float,
                      focal_px: float, width: int, height: int) -> np.ndarray:
    """The 3x3 map from pixels (x right, y down) to the ground (east, north) of a camera at
    (east, north, altitude_m) with the given yaw and pitch (see the module's description)."""
    yaw, tilt = math.radians(yaw_deg), math.radians(pitch_deg + 90.0)
    forward = np.array([math.sin(yaw), math.cos(yaw), 0.0])
    right = np.array([math.cos(yaw), -math.sin(yaw), 0.0])
    down = np.array([0.0, 0.0, -1.0])
    axis_x = right
    axis_y = -math.cos(tilt) * forward + math.sin(tilt) * down  # the image's "down"
    axis_z = math.cos(tilt) * down + math.sin(tilt) * forward  # the optical axis
    rotation = np.column_stack([axis_x, axis_y, axis_z])
    intrinsics_inv = np.array([[1 / focal_px, 0, -width / 2 / focal_px],
                               [0, 1 / focal_px, -height / 2 / focal_px],
                               [0, 0, 1.0]])
    to_ground = np.array([[1.0, 0, -east / altitude_m], [0, 1.0, -north / altitude_m], [0, 0, -1 / altitude_m]])
    matrix = to_ground @ rotation @ intrinsics_inv
    return matrix / matrix[2, 2]


@dataclass
class Footprint:
    """A placed shot: pixel -> (east, north) on the local frame, its ground sample distance at
    the centre, and its accuracy estimate."""

    matrix: np.ndarray  # 3x3 homography
    width: int
    height: int
    gsd_m: float
    accuracy_m: float
    altitude_m: float
    tilt_deg: float

    def to_ground(self, xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        points = np.stack([np.asarray(xs, np.float64), np.asarray(ys, np.float64), np.ones(len(xs))])
        mapped = self.matrix @ points
        return mapped[0] / mapped[2], mapped[1] / mapped[2]

    def corners(self) -> np.ndarray:
        """The frame's four corners on the ground (4 x 2: top-left, top-right, bottom-right, bottom-left)."""
        east, north = self.to_ground(np.array([0, self.width, self.width, 0.0]),
                                     np.array([0, 0, self.height, self.height], dtype=np.float64))
        return np.column_stack([east, north])

    def refined(self, similarity: np.ndarray) -> Footprint:
        """The footprint moved by a 3x3 ground-to-ground similarity (from registration)."""
        scale = math.sqrt(abs(np.linalg.det(similarity[:2, :2])))
        return Footprint(similarity @ self.matrix, self.width, self.height, self.gsd_m * scale, self.accuracy_m,
                         self.altitude_m, self.tilt_deg)


def metadata_footprint(east: float, north: float, altitude_m: float, yaw_deg: float, pitch_deg: float,
                       sensor_width_mm: float, focal_mm: float, width: int, height: int) -> Footprint:
    """A near-nadir shot's footprint from its metadata, with the accuracy estimate."""
    focal_px = focal_mm / sensor_width_mm * width
    matrix = camera_homography(east, north, altitude_m, yaw_deg, pitch_deg, focal_px, width, height)
    tilt = abs(pitch_deg + 90.0)
    gsd = altitude_m / focal_px / math.cos(math.radians(tilt))
    half_diagonal = gsd * math.hypot(width, height) / 2
    attitude = math.radians(ATTITUDE_SIGMA_DEG)
    accuracy = math.sqrt(GPS_SIGMA_M ** 2 + (altitude_m * math.tan(attitude)) ** 2
                         + (half_diagonal * attitude) ** 2 + (half_diagonal * ALTITUDE_SIGMA_M / altitude_m) ** 2)
    return Footprint(matrix, width, height, gsd, accuracy, altitude_m, tilt)
