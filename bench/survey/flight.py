"""Synthetic survey flights: a textured field with animals, shot from a drone in a grid.

``GridFlight`` lays out near-nadir shots over a field in a boustrophedon grid with the wanted
forward and side overlap, a slight yaw and GPS noise. ``render_shot`` draws one shot through
the same camera model the product uses (``ml_engine.survey.footprint.camera_homography``) from
the field's texture (multi-scale noise, so features exist, all darker than the animals), and
paints each animal (a white or red rotated rectangle: ``tests/stills_oracle.BlobDetector``
finds them) where it stands at that shot's time. ``write_dji_jpeg`` writes it as a DJI camera
would: EXIF GPS, altitude, make/model, focal length and 35 mm-equivalent, and a DJI XMP packet
(``drone-dji:RelativeAltitude``, ``GimbalYawDegree``, ``GimbalPitchDegree``, ``FlightYawDegree``).
The ground truth is the animals (each counted once).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from ml_engine.survey.footprint import EARTH_RADIUS_M, camera_homography

ORIGIN_LON, ORIGIN_LAT = 15.0, 48.7  # the field's south-west corner
COW, SHEEP = (255, 255, 255), (255, 0, 0)


@dataclass(frozen=True)
class Camera:
    """A Phantom 4 Pro-like camera, at a small image size (the bench's shots are small)."""

    width: int = 1200
    height: int = 800
    focal_mm: float = 8.8
    focal_35mm: int = 24
    model: str = "FC6310"

    @property
    def sensor_width_mm(self) -> float:
        """From the crop factor, as a reader of the EXIF would find it."""
        diagonal = math.hypot(36.0, 24.0) * self.focal_mm / self.focal_35mm
        return diagonal * self.width / math.hypot(self.width, self.height)

    @property
    def focal_px(self) -> float:
        return self.focal_mm / self.sensor_width_mm * self.width


@dataclass(frozen=True)
class Animal:
    east: float  # metres from the field's south-west corner
    north: float
    heading_deg: float
    cls: str = "cow"
    length_m: float = 1.6
    width_m: float = 0.8


@dataclass(frozen=True)
class ShotPlan:
    """Where a shot truly was (east, north, altitude, yaw, pitch) and what its metadata says."""

    index: int
    east: float
    north: float
    altitude: float
    yaw: float
    pitch: float
    gps_east: float
    gps_north: float
    meta_yaw: float
    meta_altitude: float


@dataclass
class GridFlight:
    """A grid flight over a field (metres): shots, animals, and how animals move between shots."""

    field_size: tuple[float, float]
    shots: list[ShotPlan]
    animals: list[Animal]
    camera: Camera
    resolution_m: float = 0.025
    moves: list[np.ndarray] = field(default_factory=list)  # per shot: (animals x 2) offsets in metres
    texture: np.ndarray | None = None

    def animals_at(self, shot: int) -> list[Animal]:
        offsets = self.moves[shot] if self.moves else np.zeros((len(self.animals), 2))
        return [Animal(a.east + float(dx), a.north + float(dy), a.heading_deg, a.cls, a.length_m, a.width_m)
                for a, (dx, dy) in zip(self.animals, offsets, strict=True)]


def plan_grid(rows: int, columns: int, overlap_forward: float, overlap_side: float, seed: int = 0,
              altitude: float = 40.0, camera: Camera | None = None, yaw_jitter_deg: float = 3.0,
              gps_sigma_m: float = 1.5, herd: int = 60, move_m: float = 0.3, oblique: int = 0) -> GridFlight:
    """A ``rows`` x ``columns`` grid flown north-south (yaw 0 or 180 by line), ``herd`` animals
    spread over the covered area (at least 2.5 m apart), each moving up to ``move_m`` between
    consecutive shots; ``oblique`` shots (the last ones) tilted 35 degrees."""
    camera = camera or Camera()
    rng = np.random.default_rng(seed)
    gsd = altitude / camera.focal_px
    across, along = camera.width * gsd, camera.height * gsd  # the image's top faces the flight direction
    step_along, step_across = along * (1 - overlap_forward), across * (1 - overlap_side)
    margin = 0.6 * max(across, along)
    size = (margin * 2 + step_across * (columns - 1), margin * 2 + step_along * (rows - 1))
    shots = []
    for column in range(columns):
        order = range(rows) if column % 2 == 0 else range(rows - 1, -1, -1)
        for row in order:
            index = len(shots)
            east, north = margin + column * step_across, margin + row * step_along
            yaw = (0.0 if column % 2 == 0 else 180.0) + float(rng.normal(0, yaw_jitter_deg))
            pitch = -90.0 if index < rows * columns - oblique else -55.0
            gps = rng.normal(0, gps_sigma_m, 2)
            shots.append(ShotPlan(index, east, north, altitude, yaw, pitch, east + gps[0], north + gps[1],
                                  yaw + float(rng.normal(0, 0.5)), altitude + float(rng.normal(0, 0.3))))
    inset = (margin - 0.4 * across, margin - 0.4 * along)  # inside the shots' footprints: seen at least once
    animals = _spread(rng, herd, (inset[0], inset[1], size[0] - inset[0], size[1] - inset[1]))
    moves, position = [], np.zeros((len(animals), 2))
    for _ in shots:
        moves.append(position.copy())
        step = rng.uniform(-1, 1, position.shape)
        position = position + step / np.maximum(1, np.hypot(*step.T))[:, None] * move_m
    return GridFlight(size, shots, animals, camera, moves=moves)


def _spread(rng: np.random.Generator, count: int, area: tuple[float, float, float, float]) -> list[Animal]:
    x0, y0, x1, y1 = area
    placed: list[Animal] = []
    for _ in range(count * 1000):
        if len(placed) == count:
            break
        east, north = rng.uniform(x0, x1), rng.uniform(y0, y1)
        if all(math.hypot(east - a.east, north - a.north) >= 2.5 for a in placed):
            cls = "sheep" if rng.random() < 0.15 else "cow"
            size = (1.0, 0.6) if cls == "sheep" else (float(rng.uniform(1.4, 1.9)), float(rng.uniform(0.7, 0.9)))
            placed.append(Animal(float(east), float(north), float(rng.uniform(0, 180)), cls, *size))
    if len(placed) < count:
        raise ValueError(f"{count} animals 2.5 m apart do not fit in {area}")
    return placed


def field_texture(flight: GridFlight, seed: int = 0) -> np.ndarray:
    """The field's ground (rows: north at the top), grass-like noise at several scales, all
    channels under 190 (the animals are brighter)."""
    if flight.texture is not None:
        return flight.texture
    rng = np.random.default_rng(seed + 1000)
    width, height = (round(s / flight.resolution_m) for s in flight.field_size)
    grey = np.zeros((height, width), np.float32)
    for cells, weight in ((8, 40.0), (40, 25.0), (200, 20.0), (max(width, height) // 6, 25.0)):
        small = rng.normal(0, 1, (max(2, height * cells // max(width, height)), cells)).astype(np.float32)
        grey += weight * cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)
    grey = np.clip(110 + grey, 20, 185)
    texture = np.stack([grey * 0.75, grey, grey * 0.55], axis=-1).astype(np.uint8)
    flight.texture = texture
    return texture


def render_shot(flight: GridFlight, shot: ShotPlan) -> np.ndarray:
    """The shot as the camera saw it (RGB), the animals where they stood then."""
    camera = flight.camera
    to_ground = camera_homography(shot.east, shot.north, shot.altitude, shot.yaw, shot.pitch, camera.focal_px,
                                  camera.width, camera.height)
    res = flight.resolution_m
    ground_to_texture = np.array([[1 / res, 0, 0], [0, -1 / res, flight.field_size[1] / res], [0, 0, 1]])
    texture = field_texture(flight)
    image = cv2.warpPerspective(texture, ground_to_texture @ to_ground, (camera.width, camera.height),
                                flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REFLECT)
    to_pixels = np.linalg.inv(to_ground)
    for animal in flight.animals_at(shot.index):
        corners = _animal_corners(animal)
        mapped = to_pixels @ np.vstack([corners.T, np.ones(4)])
        if np.any(mapped[2] <= 0):
            continue
        pixels = (mapped[:2] / mapped[2]).T
        cv2.fillConvexPoly(image, np.round(pixels * 16).astype(np.int32), COW if animal.cls == "cow" else SHEEP,
                           lineType=cv2.LINE_8, shift=4)
    return image


def _animal_corners(animal: Animal) -> np.ndarray:
    heading = math.radians(animal.heading_deg)
    along = np.array([math.sin(heading), math.cos(heading)]) * animal.length_m / 2
    across = np.array([math.cos(heading), -math.sin(heading)]) * animal.width_m / 2
    centre = np.array([animal.east, animal.north])
    return np.array([centre + along + across, centre + along - across, centre - along - across,
                     centre - along + across])


def lonlat(east: float, north: float) -> tuple[float, float]:
    """Field metres to WGS84, as ml_engine.survey.footprint.LocalFrame inverts it."""
    return (ORIGIN_LON + math.degrees(east / EARTH_RADIUS_M / math.cos(math.radians(ORIGIN_LAT))),
            ORIGIN_LAT + math.degrees(north / EARTH_RADIUS_M))


def write_dji_jpeg(path: Path, image: np.ndarray, flight: GridFlight, shot: ShotPlan, *, gps: bool = True,
                   xmp: dict[str, float] | None = None, quality: int = 92) -> Path:
    """The shot as a DJI JPEG: EXIF GPS (from the shot's noisy GPS), camera and focal lengths,
    and a DJI XMP packet (``xmp`` overrides or, with None values, removes its fields)."""
    import piexif

    lon, lat = lonlat(shot.gps_east, shot.gps_north)
    camera = flight.camera
    exif: dict = {"0th": {piexif.ImageIFD.Make: b"DJI", piexif.ImageIFD.Model: camera.model.encode()},
                  "Exif": {piexif.ExifIFD.FocalLength: (round(camera.focal_mm * 100), 100),
                           piexif.ExifIFD.FocalLengthIn35mmFilm: camera.focal_35mm},
                  "GPS": {}}
    if gps:
        exif["GPS"] = {piexif.GPSIFD.GPSLatitudeRef: b"N" if lat >= 0 else b"S",
                       piexif.GPSIFD.GPSLatitude: _dms(abs(lat)),
                       piexif.GPSIFD.GPSLongitudeRef: b"E" if lon >= 0 else b"W",
                       piexif.GPSIFD.GPSLongitude: _dms(abs(lon)),
                       piexif.GPSIFD.GPSAltitudeRef: 0,
                       piexif.GPSIFD.GPSAltitude: (round((300 + shot.meta_altitude) * 1000), 1000)}
    fields = {"RelativeAltitude": f"{shot.meta_altitude:+.2f}", "GimbalYawDegree": f"{_wrap(shot.meta_yaw):+.1f}",
              "GimbalPitchDegree": f"{shot.pitch:+.1f}", "FlightYawDegree": f"{_wrap(shot.meta_yaw):+.1f}"}
    for name, value in (xmp or {}).items():
        if value is None:
            fields.pop(name, None)
        else:
            fields[name] = f"{value:+.10f}"
    ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    data = _with_xmp(encoded.tobytes(), fields)
    out = path.with_suffix(".tmp")
    out.write_bytes(data)
    piexif.insert(piexif.dump(exif), str(out))
    out.replace(path)
    return path


def _with_xmp(jpeg: bytes, fields: dict[str, str]) -> bytes:
    attributes = " ".join(f'drone-dji:{name}="{value}"' for name, value in fields.items())
    packet = ('<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?><x:xmpmeta xmlns:x="adobe:ns:meta/">'
              '<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description rdf:about="" '
              f'xmlns:drone-dji="http://www.dji.com/drone-dji/1.0/" {attributes}/></rdf:RDF></x:xmpmeta>'
              '<?xpacket end="w"?>').encode()
    body = b"http://ns.adobe.com/xap/1.0/\x00" + packet
    segment = b"\xff\xe1" + (len(body) + 2).to_bytes(2, "big") + body
    return jpeg[:2] + segment + jpeg[2:]


def _dms(value: float) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
    degrees = int(value)
    minutes = int((value - degrees) * 60)
    seconds = (value - degrees - minutes / 60) * 3600
    return (degrees, 1), (minutes, 1), (round(seconds * 1_000_000), 1_000_000)


def _wrap(angle: float) -> float:
    return (angle + 180.0) % 360.0 - 180.0
