"""Drone telemetry files for tests, synthesised (no real DJI sample can be downloaded here):
a Mavic 3 Enterprise ``.SRT`` with one record per frame and every field, and a subtitle file
of another maker's that has timing lines but no position. Plain helpers, imported."""

from __future__ import annotations

EVERY_FIELD = ["gps", "relative_altitude", "absolute_altitude", "focal_length", "gimbal_yaw", "gimbal_pitch",
               "gimbal_roll"]


def dji_srt(frames: int = 20, fps: float = 10.0, lat: float = -33.861234, lon: float = 151.209876) -> str:
    """A Mavic 3 Enterprise SRT: one record per frame from the video's start, the drone moving
    north by about a metre a record, with altitudes, focal length and gimbal angles."""
    blocks = []
    for number in range(1, frames + 1):
        start, end = (number - 1) / fps, number / fps
        blocks.append(
            f"{number}\n{srt_time(start)} --> {srt_time(end)}\n"
            f'<font size="28">FrameCnt: {number}, DiffTime: {round(1000 / fps)}ms\n'
            "2024-03-02 10:15:20.120\n"
            "[iso: 100] [shutter: 1/1000.0] [fnum: 2.8] [ev: 0] [color_md: default] [focal_len: 24.00] "
            f"[latitude: {lat + number * 1e-5:.6f}] [longitude: {lon:.6f}] [rel_alt: 80.000 abs_alt: 120.512] "
            "[gb_yaw: -90.3 gb_pitch: -89.9 gb_roll: 0.0] [ct: 5500] </font>\n"
        )
    return "\n".join(blocks)


def other_makers_srt(records: int = 5) -> str:
    """Subtitles with timing lines and flight data, but no position this reader knows."""
    return "\n".join(f"{n}\n{srt_time(n - 1)} --> {srt_time(n)}\nHS: 4.1 m/s  VS: 0.0 m/s  H: 80.2 m\n"
                     for n in range(1, records + 1))


def srt_time(seconds: float) -> str:
    millis = round(seconds * 1000)
    return f"{millis // 3_600_000:02d}:{millis // 60_000 % 60:02d}:{millis // 1000 % 60:02d},{millis % 1000:03d}"
