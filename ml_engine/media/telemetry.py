"""DJI flight telemetry from the ``.SRT`` subtitle file a drone records beside its video.

Each subtitle block holds one frame's (or one interval's) record: GPS position, relative and
absolute altitude, the focal length and, on survey models, the gimbal's yaw, pitch and roll.
The layout differs between models, so the parser reads ``name: value`` pairs wherever they are
rather than one fixed line:

* Mavic 3 and Air 2S: ``[latitude: -33.1] [longitude: 151.2] [rel_alt: 80.0 abs_alt: 120.5]``,
  in a ``<font>`` tag; the Mavic 3 Enterprise adds ``[gb_yaw: -90.0 gb_pitch: -90.0 gb_roll: 0.0]``;
* Mini 2 and older firmware: spaces before the colon, ``longtitude`` (sic), ``altitude``;
* Phantom 4: ``GPS(151.2,-33.1,19) BAROMETER:80.0``.

Nothing that can be read is refused: a block without a position is kept out and counted, a
field never seen is reported, and ``problems`` says in words what could not be used and why
(stats.json carries them).
"""

from __future__ import annotations

import codecs
import math
import re
from dataclasses import dataclass, field
from typing import Any

# every spelling seen for a field -> its name here
_ALIASES = {
    "latitude": "lat", "lat": "lat",
    "longitude": "lon", "longtitude": "lon", "lon": "lon", "lng": "lon",
    "rel_alt": "rel_alt", "relative_altitude": "rel_alt", "altitude": "rel_alt", "barometer": "rel_alt",
    "abs_alt": "abs_alt", "absolute_altitude": "abs_alt",
    "focal_len": "focal_mm", "focal_length": "focal_mm",
    "gb_yaw": "yaw", "gimbal_yaw": "yaw", "gb_pitch": "pitch", "gimbal_pitch": "pitch",
    "gb_roll": "roll", "gimbal_roll": "roll",
    "framecnt": "frame", "frame_cnt": "frame",
}
_PAIR = re.compile(r"([A-Za-z][A-Za-z_]*)\s*:\s*(-?\d+(?:\.\d+)?)")
_GPS = re.compile(r"GPS\s*\(\s*(-?\d+(?:\.\d+)?)\s*,\s*(-?\d+(?:\.\d+)?)")
_TAG = re.compile(r"<[^>]*>")
_TIME = re.compile(r"(\d+):(\d+):(\d+)[,.](\d+)\s*-->")
# fields a ground position needs, and those that refine it, for the report of what is missing
_OPTIONAL = ("rel_alt", "abs_alt", "focal_mm", "yaw", "pitch", "roll")


@dataclass(frozen=True)
class TelemetrySample:
    """One record: ``time_s`` from the video's start; angles in degrees, altitudes in metres."""

    time_s: float
    lat: float
    lon: float
    rel_alt: float | None = None
    abs_alt: float | None = None
    focal_mm: float | None = None
    yaw: float | None = None
    pitch: float | None = None
    roll: float | None = None
    frame: int | None = None


@dataclass
class Telemetry:
    """The usable samples in time order, and what could not be used (``problems``)."""

    samples: list[TelemetrySample] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    source: str | None = None  # the file's name, for stats.json

    def at(self, time_s: float) -> TelemetrySample | None:
        """The sample nearest ``time_s`` (None without samples)."""
        if not self.samples:
            return None
        return min(self.samples, key=lambda s: abs(s.time_s - time_s))

    def check_against_video(self, frames: int, fps: float) -> None:
        """Note when the records do not cover the video: they are then matched by time, not by
        frame number, and frames past the last record take the last one."""
        if not self.samples or frames <= 0 or fps <= 0:
            return
        duration, last = frames / fps, self.samples[-1].time_s
        if len(self.samples) != frames:
            self.problems.append(
                f"the telemetry has {len(self.samples)} records for {frames} video frames: "
                "records are matched to frames by time")
        if last < duration - 1.0:
            self.problems.append(
                f"the telemetry ends at {last:.1f} s of a {duration:.1f} s video: later frames use its last record")


def parse_srt(text: str) -> Telemetry:
    """Read a DJI SRT file's text; never raises on content (see ``Telemetry.problems``)."""
    telemetry = Telemetry()
    blocks = [b for b in re.split(r"\r?\n\s*\r?\n", text.strip()) if b.strip()]
    unusable = 0
    seen: set[str] = set()
    for block in blocks:
        sample = _parse_block(block)
        if sample is None:
            unusable += 1
            continue
        seen.update(name for name in _OPTIONAL if getattr(sample, name) is not None)
        telemetry.samples.append(sample)
    telemetry.samples.sort(key=lambda s: s.time_s)
    if not blocks:
        telemetry.problems.append("the telemetry file holds no subtitle blocks")
    elif not telemetry.samples:
        telemetry.problems.append(
            f"none of the telemetry's {len(blocks)} blocks has both a time and a GPS position: "
            "the format is not one this reader knows")
    else:
        if unusable:
            telemetry.problems.append(f"{unusable} of {len(blocks)} telemetry blocks had no time or GPS position")
        missing = [name for name in _OPTIONAL if name not in seen]
        if missing:
            telemetry.problems.append("the telemetry never gives " + ", ".join(missing))
    return telemetry


def _parse_block(block: str) -> TelemetrySample | None:
    timing = _TIME.search(block)
    if timing is None:
        return None
    hours, minutes, seconds, fraction = timing.groups()
    time_s = int(hours) * 3600 + int(minutes) * 60 + int(seconds) + int(fraction) / 10 ** len(fraction)
    body = _TAG.sub(" ", block[timing.end():]).replace("[", " ").replace("]", " ")
    values: dict[str, float] = {}
    for name, value in _PAIR.findall(body):
        key = _ALIASES.get(name.lower())
        if key is not None and key not in values:
            values[key] = float(value)
    gps = _GPS.search(body)
    if gps is not None:  # Phantom 4: GPS(longitude, latitude, satellites)
        values.setdefault("lon", float(gps.group(1)))
        values.setdefault("lat", float(gps.group(2)))
    lat, lon = values.get("lat"), values.get("lon")
    if lat is None or lon is None or not _plausible(lat, lon):
        return None
    frame = values.get("frame")
    return TelemetrySample(
        time_s, lat, lon, values.get("rel_alt"), values.get("abs_alt"), values.get("focal_mm"),
        values.get("yaw"), values.get("pitch"), values.get("roll"), None if frame is None else int(frame),
    )


def _plausible(lat: float, lon: float) -> bool:
    """A real fix: within the globe, and not the 0, 0 a drone writes before it has one."""
    return math.isfinite(lat) and math.isfinite(lon) and abs(lat) <= 90 and abs(lon) <= 180 and (lat, lon) != (0, 0)


# --- a file's bytes: checked at the API, read by the worker ------------------------------------

SRT_SUFFIX = ".srt"
SRT_HEAD_BYTES = 64 * 1024  # where a subtitle file's first timing line must be
_BOMS = ((b"\xef\xbb\xbf", "utf-8"), (b"\xff\xfe", "utf-16-le"), (b"\xfe\xff", "utf-16-be"))


def srt_problem(head: bytes) -> str | None:
    """Why a file whose first bytes are ``head`` (up to SRT_HEAD_BYTES) is not a subtitle file
    this reader can try, or None. Only the shape is checked, text with a ``00:00:01,000 -->``
    timing line: what the blocks hold is judged by ``read_srt``, which refuses nothing."""
    if not head:
        return "the file is empty"
    text = _decoded(head, final=False)
    if text is None:
        return "not a text file (an .SRT subtitle file is text)"
    if _TIME.search(text) is None:
        return (f"not an .SRT subtitle file: no timing line such as '00:00:01,000 --> 00:00:01,033' "
                f"in its first {SRT_HEAD_BYTES // 1024} KB")
    return None


def read_srt(data: bytes, source: str | None = None) -> Telemetry:
    """A whole SRT file's bytes read into ``Telemetry``; never raises: bytes that are not text
    leave no samples and say so. ``source``: the file's name, for stats.json."""
    text = _decoded(data, final=True)
    if text is None:
        telemetry = Telemetry(problems=["the telemetry file is not text: nothing in it could be read"])
    else:
        telemetry = parse_srt(text)
    telemetry.source = source
    return telemetry


def _decoded(data: bytes, final: bool) -> str | None:
    """UTF-8 (or UTF-16 with its byte-order mark) text, or None. ``final`` False: ``data`` is a
    file's head, which may end inside a character."""
    encoding = "utf-8"
    for bom, name in _BOMS:
        if data.startswith(bom):
            encoding, data = name, data[len(bom):]
            break
    decoder = codecs.getincrementaldecoder(encoding)()
    try:
        text = decoder.decode(data, final=final)
    except UnicodeDecodeError:
        return None
    return None if "\x00" in text else text


# --- what stats.json says of it ------------------------------------------------------------------

# a sample's attribute -> its name in stats.json's ``fields``
_FIELD_NAMES = {
    "rel_alt": "relative_altitude", "abs_alt": "absolute_altitude", "focal_mm": "focal_length",
    "yaw": "gimbal_yaw", "pitch": "gimbal_pitch", "roll": "gimbal_roll",
}


def telemetry_facts(telemetry: Telemetry | None) -> dict[str, Any]:
    """stats.json's ``telemetry``: whether a file was given, what was read from it and what
    could not be used, and why (``problems``)."""
    if telemetry is None:
        return {"given": False}
    samples = telemetry.samples
    fields = ["gps"] if samples else []
    fields += [name for attribute, name in _FIELD_NAMES.items()
               if any(getattr(sample, attribute) is not None for sample in samples)]
    return {
        "given": True,
        "file": telemetry.source,
        "samples": len(samples),
        "usable": bool(samples),
        "span_s": [samples[0].time_s, samples[-1].time_s] if samples else None,
        "fields": fields,
        "problems": list(telemetry.problems),
    }
