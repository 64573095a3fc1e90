"""A job's drone JPEGs placed on the ground one by one: metadata first, then registration.

``SurveyGrid.place`` takes a shot (its file, its pixels, its size) and returns a ``Shot``
(placed: a footprint, how it was placed, its accuracy) or an ``Unplaced`` (why not, and
whether it is oblique). A placed shot's detections are deduplicated as a GeoTIFF's are
(``ml_engine.survey.dedup``); an unplaced one is counted image by image. Placing, in order:

1. **Metadata** (``camera``): the GPS position, the relative altitude, the gimbal's yaw and
   pitch, the focal length and the sensor's width give a footprint (``footprint``). What is
   missing decides: no position, no yaw, no focal length or sensor size: not placed; no
   relative altitude: the GPS altitude less the take-off point's height learnt from earlier
   shots that had both, else not placed; no focal length or sensor size (a damaged EXIF): an
   earlier shot's of the same image size, else not placed; no pitch: taken as straight down (survey missions
   shoot nadir), and said so. A shot tilted more than ``NADIR_TILT_DEG`` is oblique.
2. **Registration** (``registration``): against the (up to ``MAX_NEIGHBOURS``) earlier placed
   shots whose footprints overlap it most. A fit moves the footprint onto theirs; without one
   the metadata footprint stays, and its detections are matched with a tolerance widened by
   twice its accuracy estimate (the error between two metadata footprints).

The first placed shot is the frame's origin; the others hang off it through registration, so
positions are as accurate as its GNSS fix, and consistent with each other to the residuals.
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ml_engine.survey.camera import CameraMetadata, read_camera_metadata, sensor_width_mm
from ml_engine.survey.footprint import NADIR_TILT_DEG, Footprint, LocalFrame, metadata_footprint
from ml_engine.survey.registration import Features, features_of, register

__all__ = ["MAX_NEIGHBOURS", "Shot", "SurveyGrid", "Unplaced", "shot_features"]

MAX_NEIGHBOURS = 3
MIN_OVERLAP = 0.1  # of the new shot's area: less is not worth matching
# Two shots whose GPS positions are this close overlap at any survey altitude (a footprint is
# 60 m or more across from 40 m up): said when their footprints themselves are unknown.
CLOSE_SHOTS_M = 30.0
GATE_FLOOR_M = 8.0  # guided matching accepts pairs up to max(this, 4 x the accuracy estimate) apart


@dataclass
class Shot:
    """A placed shot."""

    index: int
    name: str
    footprint: Footprint
    frame: LocalFrame
    method: str  # "registered" or "metadata"
    accuracy_m: float
    residual_m: float | None = None
    inliers: int = 0
    neighbours: list[str] = field(default_factory=list)
    extra_tolerance_m: float = 0.0
    notes: list[str] = field(default_factory=list)

    def lonlat_of(self, xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.frame.to_lonlat(*self.footprint.to_ground(xs, ys))

    def properties(self) -> dict[str, Any]:
        """What each GeoJSON feature of this shot carries about its placement."""
        return {"placement": self.method, "accuracy_m": round(self.accuracy_m, 2),
                "registration_residual_m": None if self.residual_m is None else round(self.residual_m, 3),
                "gsd_m": round(self.footprint.gsd_m, 4), "altitude_m": round(self.footprint.altitude_m, 2)}

    def footprint_feature(self) -> dict[str, Any]:
        """The shot's ground footprint as a GeoJSON Polygon (counter-clockwise, closed)."""
        corners = self.footprint.corners()
        ring = _ring(*self.frame.to_lonlat(corners[:, 0], corners[:, 1]))
        return {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [ring]},
                "properties": {"image": self.name, "kind": "footprint", **self.properties(),
                               "registered_to": self.neighbours}}


def shot_features(shot: Shot, name: str, rows: list[dict[str, Any]], xyxy: np.ndarray) -> list[list[dict[str, Any]]]:
    """Per detection of a placed shot: its box (Polygon) and centre (Point) as GeoJSON features,
    WGS84, with the shot's placement and accuracy in the properties."""
    xs = np.concatenate([xyxy[:, 0], xyxy[:, 2], xyxy[:, 2], xyxy[:, 0], (xyxy[:, 0] + xyxy[:, 2]) / 2])
    ys = np.concatenate([xyxy[:, 1], xyxy[:, 1], xyxy[:, 3], xyxy[:, 3], (xyxy[:, 1] + xyxy[:, 3]) / 2])
    lons, lats = shot.lonlat_of(xs, ys)
    count = len(xyxy)
    features = []
    for i, row in enumerate(rows):
        corners = [i + k * count for k in range(4)]
        common = {"image": name, "detection": row["index"], "class": row["class"], "score": row["score"],
                  "box_px": row["box"], "source_crs": None, **shot.properties()}
        centre = [round(float(lons[4 * count + i]), 8), round(float(lats[4 * count + i]), 8)]
        features.append([
            {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [_ring(lons[corners], lats[corners])]},
             "properties": {**common, "kind": "box"}},
            {"type": "Feature", "geometry": {"type": "Point", "coordinates": centre},
             "properties": {**common, "kind": "centre"}},
        ])
    return features


def _ring(lons: np.ndarray, lats: np.ndarray) -> list[list[float]]:
    ring = [[round(float(x), 8), round(float(y), 8)] for x, y in zip(lons, lats, strict=True)]
    area = sum(x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in zip(ring, ring[1:] + ring[:1], strict=True))
    if area < 0:  # clockwise: RFC 7946 wants exterior rings counter-clockwise
        ring.reverse()
    return ring + [ring[0]]


@dataclass
class Unplaced:
    """A shot without a footprint: counted image by image."""

    reason: str
    oblique: bool = False


class SurveyGrid:
    """The job's shots, placed one by one (see the module's description)."""

    def __init__(self, registration: bool = True) -> None:
        self.registration = registration
        self.frame: LocalFrame | None = None
        self.shots: list[Shot] = []
        self._features: list[Features | None] = []
        self._polygons: list[np.ndarray] = []
        self._takeoff_heights: list[float] = []  # GPS altitude less relative altitude, per shot with both
        self._lenses: dict[tuple[int, int], tuple[float, float]] = {}  # image size -> focal, sensor width (mm)
        self.unplaced: list[dict[str, Any]] = []
        self.oblique: list[dict[str, Any]] = []
        self.overlapping_pairs = 0
        self.close_gps_pairs = 0  # pairs of shots, one without a footprint, whose GPS positions are close
        self._positions: list[tuple[float, float, bool]] = []  # lon, lat, placed
        self.registration_seconds = 0.0
        self.revisits = 0  # neighbour shots matched against

    @property
    def footprints_overlap(self) -> bool:
        """Placed footprints overlap, or shots without one were taken close together."""
        return self.overlapping_pairs > 0 or self.close_gps_pairs > 0

    @property
    def attempted(self) -> bool:
        """Whether any JPEG was looked at (placed, oblique or not placeable)."""
        return bool(self.shots or self.unplaced or self.oblique)

    # --- placing ------------------------------------------------------------------------------

    def place(self, index: int, name: str, path: Path, image: np.ndarray | None, width: int, height: int,
              orientation: int = 1) -> Shot | Unplaced:
        """Place one shot (``image``: its pixels for registration, or None to place by metadata)."""
        meta = read_camera_metadata(path)
        outcome = self._footprint(meta, width, height, orientation)
        self._note_position(meta, placed=not isinstance(outcome, Unplaced))
        if isinstance(outcome, Unplaced):
            record = {"name": name, "reason": outcome.reason}
            (self.oblique if outcome.oblique else self.unplaced).append(record)
            return outcome
        footprint, notes = outcome
        shot = Shot(index, name, footprint, self._frame_of(meta), "metadata", footprint.accuracy_m, notes=notes)
        started = time.perf_counter()
        features = features_of(image) if self.registration and image is not None else None
        neighbours = self._overlapping(footprint)
        self.overlapping_pairs += len(neighbours)
        if features is not None and neighbours:
            self._register(shot, features, neighbours[:MAX_NEIGHBOURS])
        if shot.method == "metadata" and neighbours:
            shot.extra_tolerance_m = 2 * shot.accuracy_m
        self.registration_seconds += time.perf_counter() - started
        self.shots.append(shot)
        self._features.append(features)
        self._polygons.append(shot.footprint.corners().astype(np.float32))
        return shot

    def _note_position(self, meta: CameraMetadata, placed: bool) -> None:
        if meta.longitude is None or meta.latitude is None:
            return
        if self._positions:
            known = np.array(self._positions)
            frame = LocalFrame(meta.longitude, meta.latitude)
            east, north = frame.to_metres(known[:, 0], known[:, 1])
            close = np.hypot(east, north) <= CLOSE_SHOTS_M
            self.close_gps_pairs += int(np.sum(close & ~(known[:, 2].astype(bool) & placed)))
        self._positions.append((meta.longitude, meta.latitude, placed))

    def _frame_of(self, meta: CameraMetadata) -> LocalFrame:
        if self.frame is None:
            assert meta.longitude is not None and meta.latitude is not None
            self.frame = LocalFrame(meta.longitude, meta.latitude)
        return self.frame

    def _footprint(self, meta: CameraMetadata, width: int, height: int,
                   orientation: int) -> tuple[Footprint, list[str]] | Unplaced:
        def missing(what: str) -> Unplaced:
            problems = f" ({'; '.join(meta.problems)})" if meta.problems else ""
            return Unplaced(f"{what}{problems}: counted image by image")

        if orientation != 1:
            return Unplaced(f"EXIF orientation {orientation}: the camera's frame is not the stored image's; "
                            "counted image by image")
        if meta.latitude is None or meta.longitude is None:
            return missing("no GPS position")
        notes = []
        pitch = meta.gimbal_pitch_deg
        if pitch is None:
            pitch = -90.0
            notes.append("no gimbal pitch in XMP: taken as straight down (-90)")
        tilt = abs(pitch + 90.0)
        if tilt > NADIR_TILT_DEG:
            return Unplaced(f"oblique: gimbal pitch {pitch:g} is {tilt:.0f} degrees from straight down (more than "
                            f"{NADIR_TILT_DEG:g}); its footprint reaches towards the horizon: counted image by image",
                            oblique=True)
        if meta.yaw_deg is None:
            return missing("no camera yaw (XMP GimbalYawDegree or FlightYawDegree)")
        altitude = self._altitude(meta, notes)
        if altitude is None:
            return missing("no height above the ground (XMP RelativeAltitude, or GPS altitude with a known "
                           "take-off height)")
        sensor, source = sensor_width_mm(meta, width, height)
        focal = meta.focal_mm
        if sensor is None or not focal:
            known = self._lenses.get((width, height))
            if known is None:
                return missing(f"no camera geometry: {source}")
            (focal, sensor), source = known, "an earlier shot of the same size (this one's EXIF lacks it)"
        else:
            self._lenses.setdefault((width, height), (focal, sensor))
        if meta.gimbal_yaw_deg is None:
            notes.append("no gimbal yaw in XMP: the aircraft's yaw (FlightYawDegree) used")
        east, north = self._frame_of(meta).to_metres(np.array([meta.longitude]), np.array([meta.latitude]))
        footprint = metadata_footprint(float(east[0]), float(north[0]), altitude, meta.yaw_deg, pitch, sensor,
                                       focal, width, height)
        notes.append(f"sensor width {sensor:.2f} mm from {source}")
        notes.extend(f"metadata not used: {problem}" for problem in meta.problems)
        return footprint, notes

    def _altitude(self, meta: CameraMetadata, notes: list[str]) -> float | None:
        if meta.relative_altitude_m is not None and meta.relative_altitude_m > 0:
            if meta.gps_altitude_m is not None:
                self._takeoff_heights.append(meta.gps_altitude_m - meta.relative_altitude_m)
            return meta.relative_altitude_m
        if meta.gps_altitude_m is not None and self._takeoff_heights:
            takeoff = statistics.median(self._takeoff_heights)
            if meta.gps_altitude_m - takeoff > 0:
                notes.append(f"no relative altitude: GPS altitude less the take-off height ({takeoff:.1f} m) "
                             "learnt from earlier shots")
                return meta.gps_altitude_m - takeoff
        return None

    # --- registration -------------------------------------------------------------------------

    def _overlapping(self, footprint: Footprint) -> list[int]:
        """Earlier shots overlapping this footprint, most overlap first."""
        polygon = footprint.corners().astype(np.float32)
        area = abs(cv2.contourArea(polygon))
        centre, radius = polygon.mean(axis=0), float(np.max(np.hypot(*(polygon - polygon.mean(axis=0)).T)))
        found = []
        for index, other in enumerate(self._polygons):
            other_centre = other.mean(axis=0)
            if np.hypot(*(other_centre - centre)) > radius + float(np.max(np.hypot(*(other - other_centre).T))):
                continue
            shared, _ = cv2.intersectConvexConvex(cv2.convexHull(polygon), cv2.convexHull(other))
            if area > 0 and shared / area >= MIN_OVERLAP:
                found.append((shared, index))
        return [index for _, index in sorted(found, reverse=True)]

    def _register(self, shot: Shot, features: Features, neighbours: list[int]) -> None:
        candidates = [(i, self._features[i], self.shots[i].footprint) for i in neighbours
                      if self._features[i] is not None]
        self.revisits += len(candidates)
        gate = max(GATE_FLOOR_M, 4 * shot.accuracy_m)
        fit = register(features, shot.footprint, candidates, gate) if candidates else None  # type: ignore[arg-type]
        if fit is None:
            shot.notes.append("not registered (too few features agree with the overlapping shots): placed from "
                              "its metadata alone")
            return
        anchors = min(self.shots[i].accuracy_m for i in fit.neighbours)
        shot.footprint = shot.footprint.refined(fit.similarity)
        shot.method, shot.residual_m, shot.inliers = "registered", fit.residual_m, fit.inliers
        shot.neighbours = [self.shots[i].name for i in fit.neighbours]
        shot.accuracy_m = math.hypot(anchors, fit.residual_m)
        shot.extra_tolerance_m = 3 * fit.residual_m

    # --- the job's summary --------------------------------------------------------------------

    def summary(self) -> dict[str, Any]:
        registered = [s for s in self.shots if s.method == "registered"]
        residuals = [s.residual_m for s in registered if s.residual_m is not None]
        return {
            "placed": len(self.shots),
            "registered": len(registered),
            "metadata_only": len(self.shots) - len(registered),
            "oblique": self.oblique,
            "unplaced": self.unplaced,
            "footprints_overlap": self.footprints_overlap,
            "overlapping_pairs": self.overlapping_pairs,
            "close_gps_pairs": self.close_gps_pairs,
            "median_residual_m": round(statistics.median(residuals), 4) if residuals else None,
            "registration": {"enabled": self.registration, "seconds": round(self.registration_seconds, 3),
                             "revisits": self.revisits},
            "method": ("each near-nadir JPEG's footprint from its EXIF GPS, DJI XMP relative altitude, gimbal "
                       "yaw and pitch and its camera (a pinhole over flat ground at the take-off height), then "
                       "registered to the overlapping shots placed before it (ORB features, guided by the "
                       "footprints, RANSAC similarity); oblique shots and shots that cannot be placed are "
                       "counted image by image"),
            "limits": ("the ground is taken as flat at the take-off point's height; lens distortion is not "
                       "modelled; positions are as accurate as the first shot's GNSS fix (about "
                       "1.5 m), and consistent between registered shots to their residuals"),
        }
