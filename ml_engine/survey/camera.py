"""What a drone JPEG says about where it was taken: EXIF GPS and camera, DJI's XMP attitude.

* **EXIF** (piexif): GPS latitude, longitude and altitude, the camera's make and model, its
  focal length and its 35 mm-equivalent focal length (the sensor's size follows from the two).
* **XMP** (DJI's ``drone-dji`` namespace, a text packet in the JPEG's APP1 segment, read as
  text from the file's first bytes): ``RelativeAltitude`` (above the take-off point),
  ``GimbalYawDegree``, ``GimbalPitchDegree``, ``FlightYawDegree``, and ``GpsLatitude``/
  ``GpsLongitude`` (also spelled ``GpsLongtitude`` by some firmware), used when EXIF GPS is
  missing or unreadable. Attributes and elements are both read.

Nothing here raises for a bad file: a tag that is missing, corrupt or out of range is left
``None`` and ``problems`` says which and why, so the image is still counted.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["CameraMetadata", "read_camera_metadata", "sensor_width_mm"]

XMP_SCAN_BYTES = 256 * 1024  # DJI writes the XMP packet in the first APP1 segments, well within this
FULL_FRAME_DIAGONAL_MM = math.hypot(36.0, 24.0)
# Sensor widths (mm) of common survey cameras, for files without a 35 mm-equivalent focal length.
KNOWN_SENSOR_WIDTH_MM = {
    "FC6310": 13.2, "FC6310S": 13.2, "FC6310R": 13.2,  # Phantom 4 Pro (V2), 1"
    "FC6360": 6.2,  # Phantom 4 Multispectral's RGB
    "L1D-20C": 13.2,  # Mavic 2 Pro, 1"
    "FC220": 6.17, "FC330": 6.17, "FC300X": 6.17,  # Mavic Pro, Phantom 4, Phantom 3
    "FC3170": 6.4, "FC3411": 13.2,  # Mavic Air 2, Air 2S
    "M3E": 17.3, "M3T": 6.4,  # Mavic 3 Enterprise (4/3), Mavic 3 Thermal's wide camera
    "ZENMUSEP1": 35.9,  # full frame
}
_XMP_FIELDS = {
    "relative_altitude_m": ("RelativeAltitude",),
    "gimbal_yaw_deg": ("GimbalYawDegree",),
    "gimbal_pitch_deg": ("GimbalPitchDegree",),
    "flight_yaw_deg": ("FlightYawDegree",),
    "xmp_latitude": ("GpsLatitude", "Latitude"),
    "xmp_longitude": ("GpsLongitude", "GpsLongtitude", "Longitude"),
}


@dataclass
class CameraMetadata:
    """A shot's position, attitude and camera, each ``None`` when it could not be read."""

    latitude: float | None = None
    longitude: float | None = None
    gps_source: str | None = None  # "EXIF" or "XMP"
    gps_altitude_m: float | None = None
    relative_altitude_m: float | None = None
    gimbal_yaw_deg: float | None = None
    gimbal_pitch_deg: float | None = None
    flight_yaw_deg: float | None = None
    make: str | None = None
    model: str | None = None
    focal_mm: float | None = None
    focal_35mm: float | None = None
    has_xmp: bool = False
    xmp_latitude: float | None = None  # XMP's own position: stands in for a missing EXIF GPS
    xmp_longitude: float | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def yaw_deg(self) -> float | None:
        """The camera's heading: the gimbal's yaw, else the aircraft's (a gimbal that follows it)."""
        return self.gimbal_yaw_deg if self.gimbal_yaw_deg is not None else self.flight_yaw_deg


def read_camera_metadata(path: Path) -> CameraMetadata:
    """Everything the file says, with ``problems`` listing what it lacks or could not be read."""
    meta = CameraMetadata()
    _read_exif(Path(path), meta)
    _read_xmp(Path(path), meta)
    xmp_lat, xmp_lon = meta.xmp_latitude, meta.xmp_longitude
    if meta.latitude is None and xmp_lat is not None and xmp_lon is not None and _valid_position(xmp_lat, xmp_lon):
        meta.latitude, meta.longitude, meta.gps_source = meta.xmp_latitude, meta.xmp_longitude, "XMP"
    return meta


# --- EXIF ---------------------------------------------------------------------------------------


def _read_exif(path: Path, meta: CameraMetadata) -> None:
    import piexif

    try:
        exif = piexif.load(str(path))
    except Exception as exc:  # piexif raises plain ValueError/struct.error/... for a corrupt block
        meta.problems.append(f"EXIF could not be read ({type(exc).__name__}: {_short(exc)})")
        return
    gps, zeroth, details = exif.get("GPS") or {}, exif.get("0th") or {}, exif.get("Exif") or {}
    meta.make = _text(zeroth.get(piexif.ImageIFD.Make))
    meta.model = _text(zeroth.get(piexif.ImageIFD.Model))
    meta.focal_mm = _positive(_rational(details.get(piexif.ExifIFD.FocalLength)))
    focal_35 = details.get(piexif.ExifIFD.FocalLengthIn35mmFilm)
    meta.focal_35mm = _positive(float(focal_35)) if isinstance(focal_35, int) else None
    if not gps:
        meta.problems.append("no EXIF GPS")
        return
    try:
        latitude = _degrees(gps[piexif.GPSIFD.GPSLatitude], gps.get(piexif.GPSIFD.GPSLatitudeRef, b"N"), b"S")
        longitude = _degrees(gps[piexif.GPSIFD.GPSLongitude], gps.get(piexif.GPSIFD.GPSLongitudeRef, b"E"), b"W")
    except (KeyError, TypeError, ValueError, ZeroDivisionError, IndexError):
        meta.problems.append("EXIF GPS position unreadable (missing or malformed latitude/longitude)")
        return
    if not _valid_position(latitude, longitude):
        meta.problems.append(f"EXIF GPS position out of range ({latitude:.6f}, {longitude:.6f})")
        return
    meta.latitude, meta.longitude, meta.gps_source = latitude, longitude, "EXIF"
    altitude = _rational(gps.get(piexif.GPSIFD.GPSAltitude))
    if altitude is not None:
        below = gps.get(piexif.GPSIFD.GPSAltitudeRef) in (1, b"\x01")
        meta.gps_altitude_m = -altitude if below else altitude


def _degrees(value: Any, ref: Any, negative: bytes) -> float:
    d, m, s = (_rational(part) for part in value)
    if d is None or m is None or s is None:
        raise ValueError("a zero denominator")
    sign = -1.0 if (ref.encode() if isinstance(ref, str) else bytes(ref)).upper().startswith(negative) else 1.0
    return sign * (d + m / 60 + s / 3600)


def _rational(value: Any) -> float | None:
    if isinstance(value, tuple) and len(value) == 2 and all(isinstance(v, int) for v in value):
        return value[0] / value[1] if value[1] else None
    if isinstance(value, (int, float)):
        return float(value)
    return None


def _positive(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) and value > 0 else None


def _text(value: Any) -> str | None:
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    return value.strip("\x00 ").strip() or None if isinstance(value, str) else None


def _valid_position(latitude: float, longitude: float) -> bool:
    return math.isfinite(latitude) and math.isfinite(longitude) and abs(latitude) <= 90 and abs(longitude) <= 180 \
        and (latitude, longitude) != (0.0, 0.0)


# --- XMP ----------------------------------------------------------------------------------------


def _read_xmp(path: Path, meta: CameraMetadata) -> None:
    try:
        with path.open("rb") as stream:
            head = stream.read(XMP_SCAN_BYTES)
    except OSError as exc:
        meta.problems.append(f"XMP could not be read ({_short(exc)})")
        return
    start, end = head.find(b"<x:xmpmeta"), head.find(b"</x:xmpmeta>")
    if start < 0 or end < start:
        meta.problems.append("no XMP packet (no DJI attitude or relative altitude)")
        return
    meta.has_xmp = True
    packet = head[start:end].decode("utf-8", "replace")
    for name, tags in _XMP_FIELDS.items():
        value = _xmp_number(packet, tags)
        setattr(meta, name, value)
        if value is None and name in ("relative_altitude_m", "gimbal_pitch_deg"):
            meta.problems.append(f"XMP has no readable drone-dji:{tags[0]}")
    if meta.gimbal_yaw_deg is None and meta.flight_yaw_deg is None:
        meta.problems.append("XMP has no readable drone-dji:GimbalYawDegree or FlightYawDegree")


_NUMBER = r"\s*([+-]?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)\s*"


def _xmp_number(packet: str, tags: tuple[str, ...]) -> float | None:
    for tag in tags:
        pattern = rf"drone-dji:{tag}\s*=\s*\"{_NUMBER}\"|<drone-dji:{tag}>{_NUMBER}</drone-dji:{tag}>"
        found = re.search(pattern, packet)
        if found:
            value = float(found.group(1) or found.group(2))
            return value if math.isfinite(value) else None
    return None


def sensor_width_mm(meta: CameraMetadata, width_px: int, height_px: int) -> tuple[float | None, str]:
    """The sensor's width along the image's x axis, and where it came from (or why it is unknown).

    From the crop factor (35 mm-equivalent / real focal length): the sensor's diagonal is the
    full frame's divided by it, and its sides follow the image's aspect ratio."""
    if meta.focal_mm and meta.focal_35mm:
        crop = meta.focal_35mm / meta.focal_mm
        diagonal = FULL_FRAME_DIAGONAL_MM / crop
        return diagonal * width_px / math.hypot(width_px, height_px), "35 mm-equivalent focal length"
    model = (meta.model or "").upper().replace(" ", "")
    if model in KNOWN_SENSOR_WIDTH_MM:
        return KNOWN_SENSOR_WIDTH_MM[model], f"the {meta.model} camera's known sensor width"
    missing = [name for name, value in (("focal length", meta.focal_mm),
                                        ("35 mm-equivalent focal length", meta.focal_35mm)) if not value]
    model_text = f"camera model {meta.model} is not one this service knows" if meta.model else "no camera model"
    return None, f"no {' or '.join(missing)} in EXIF, and {model_text}"


def _short(exc: Exception) -> str:
    return " ".join(str(exc).split())[:160]

