"""Lawnmower survey flights, and the DJI telemetry (SRT) a drone would record beside them.

A surveying drone flies a strip, turns, and flies back along the next one; consecutive
strips overlap sideways by 20 to 40 % so that no ground is missed. Animals in an overlap band
are seen on one pass and again on the next, tens of seconds later: the case that ground
deduplication across passes is for (``ml_engine/counting/passes.py``).

The camera keeps its heading (no yaw turn: the image never rotates), flies each strip at
``pan_px`` frame pixels per frame, and between strips slides sideways by
``(1 - overlap) * height`` over ``turn_s`` seconds (eased, as a drone slows and speeds up).
The overlap is drawn per seed from ``overlap``. Herds are spread over the whole surveyed
area, half of them centred on an overlap band; every animal grazes slowly (``graze_px``
frame pixels per frame, its heading wandering), so one seen on two passes has moved by up to
about a metre.

``srt_text`` writes the telemetry of any scene as a Mavic 3 Enterprise would: per frame the
GPS position (with a slowly varying error of ``GPS_SIGMA_M``, as a consumer receiver's),
the relative and absolute altitude, the focal length and the gimbal's yaw, pitch and roll.
A world pixel is ``METRES_PER_WORLD_PX`` on the ground (animals of 32 to 64 px are 1.3 to
2.6 m long), x east and y south.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from bench.counting.scene import SCENARIOS, Camera, Herd, Scenario, Scene, walking_herd
from ml_engine.survey.footprint import LocalFrame

METRES_PER_WORLD_PX = 0.04
GPS_SIGMA_M = 1.5
GPS_CORRELATION_S = 5.0  # a receiver's error drifts: correlated over seconds, not white per frame
ALTITUDE_SIGMA_M = 0.3
YAW_SIGMA_DEG = 0.5
TAKE_OFF = LocalFrame(lon0=151.2093, lat0=-33.8688)
TAKE_OFF_ALTITUDE_M = 40.0
FOCAL_35MM = 24.0
# the altitude at which the bench's 1920 px wide frame has METRES_PER_WORLD_PX per pixel
# (a 24 mm-equivalent lens sees 36/24 of the altitude across the frame)
ALTITUDE_M = METRES_PER_WORLD_PX * 1920 * FOCAL_35MM / 36.0


@dataclass(frozen=True)
class LawnmowerScenario(Scenario):
    """A lawnmower flight: ``passes`` strips of ``strip_px`` world pixels, side overlap drawn
    from ``overlap``, turns of ``turn_s`` seconds, animals grazing at ``graze_px``."""

    passes: int = 2
    overlap: tuple[float, float] = (0.2, 0.4)
    strip_px: float = 2700.0
    turn_s: float = 3.0
    graze_px: tuple[float, float] = (0.0, 0.05)

    @property
    def strip_frames(self) -> int:
        return round(self.strip_px / self.pan_px)

    @property
    def turn_frames(self) -> int:
        return round(self.turn_s * self.fps)

    def camera_path(self, rng: np.random.Generator) -> Camera:
        overlap = rng.uniform(*self.overlap)
        step = (1 - overlap) * self.height
        along = np.arange(self.strip_frames) * self.pan_px
        end = along[-1]
        ease = (1 - np.cos(np.linspace(0, np.pi, self.turn_frames + 2)[1:-1])) / 2
        xs, ys = [], []
        for k in range(self.passes):
            xs.append(along if k % 2 == 0 else end - along)
            ys.append(np.full(self.strip_frames, k * step))
            if k < self.passes - 1:
                xs.append(np.full(self.turn_frames, end if k % 2 == 0 else 0.0))
                ys.append(k * step + step * ease)
        centre = np.column_stack([np.concatenate(xs), np.concatenate(ys)])
        centre += rng.normal(0, self.jitter_px, centre.shape)
        frames = len(centre)
        return Camera(centre=centre, theta=np.zeros(frames), scale=np.ones(frames), width=self.width,
                      height=self.height)

    def place_herds(self, camera: Camera, rng: np.random.Generator) -> Herd:
        frames = len(camera.centre)
        low_y, high_y = camera.centre[:, 1].min(), camera.centre[:, 1].max()
        step = (high_y - low_y) / max(self.passes - 1, 1)
        starts, lengths = [], []
        for h in range(self.herds):
            x = rng.uniform(0, self.strip_px)
            if h % 2 == 0 and self.passes > 1:  # centred on an overlap band (between two strips)
                band = int(rng.integers(0, self.passes - 1))
                y = low_y + (band + 0.5) * step + rng.uniform(-0.1, 0.1) * self.height
            else:
                y = rng.uniform(low_y - 0.4 * self.height, high_y + 0.4 * self.height)
            n = int(rng.integers(self.herd_animals[0], self.herd_animals[1] + 1))
            starts.append(np.array([x, y]) + rng.normal(0, self.herd_spread, (n, 2)))
            lengths.append(rng.uniform(*self.animal_px, n))
        start, length = np.concatenate(starts), np.concatenate(lengths)
        n = len(length)
        heading0 = rng.uniform(-np.pi, np.pi, n)
        speed = rng.uniform(*self.graze_px, n)
        turn = rng.normal(0, 0.02, (frames, n))
        turn[0] = 0
        headings = heading0 + np.cumsum(turn, axis=0)
        return walking_herd(start, headings, speed, length, rng)


def lawnmower(name: str, description: str, passes: int) -> LawnmowerScenario:
    """A lawnmower scenario whose ``frames`` fit its strips and turns."""
    base = LawnmowerScenario(name, description, passes=passes, pan_px=10.0, drift_px=0.0, jitter_px=0.5,
                             herds=2 * passes, crossing=False, trees=3)
    return replace(base, frames=passes * base.strip_frames + (passes - 1) * base.turn_frames)


LAWNMOWER_SCENARIOS = {
    s.name: s
    for s in (
        lawnmower("lawnmower_2", "2 lawnmower passes, 20-40 % side overlap, animals grazing slowly", passes=2),
        lawnmower("lawnmower_3", "3 lawnmower passes, 20-40 % side overlap, animals grazing slowly", passes=3),
    )
}
LAWNMOWER = tuple(LAWNMOWER_SCENARIOS)
SCENARIOS.update(LAWNMOWER_SCENARIOS)


# --- telemetry --------------------------------------------------------------------------------


def srt_text(scene: Scene, seed: int = 0) -> str:
    """The scene's flight as a DJI SRT file (Mavic 3 Enterprise layout), one block per frame,
    the GPS position off by a correlated error of ``GPS_SIGMA_M`` (one standard deviation)."""
    rng = np.random.default_rng([scene.seed, seed, 24])
    sc, cam = scene.scenario, scene.camera
    frames = scene.frames
    east = cam.centre[:, 0] * METRES_PER_WORLD_PX + _correlated(rng, frames, sc.fps, GPS_SIGMA_M)
    north = -cam.centre[:, 1] * METRES_PER_WORLD_PX + _correlated(rng, frames, sc.fps, GPS_SIGMA_M)
    lons, lats = TAKE_OFF.to_lonlat(east, north)
    altitude = ALTITUDE_M / cam.scale + rng.normal(0, ALTITUDE_SIGMA_M, frames)
    yaw = -np.degrees(cam.theta) + rng.normal(0, YAW_SIGMA_DEG, frames)
    blocks = []
    for f in range(frames):
        start, end = f / sc.fps, (f + 1) / sc.fps
        blocks.append(
            f"{f + 1}\n{_clock(start)} --> {_clock(end)}\n"
            f'<font size="28">FrameCnt: {f + 1}, DiffTime: {1000 / sc.fps:.0f}ms\n'
            f"2026-12-07 10:00:{start:06.3f}\n"
            f"[iso: 100] [shutter: 1/1000.0] [fnum: 2.8] [ev: 0] [focal_len: {FOCAL_35MM:.2f}] "
            f"[latitude: {lats[f]:.6f}] [longitude: {lons[f]:.6f}] "
            f"[rel_alt: {altitude[f]:.3f} abs_alt: {altitude[f] + TAKE_OFF_ALTITUDE_M:.3f}] "
            f"[gb_yaw: {yaw[f]:.1f} gb_pitch: -90.0 gb_roll: 0.0] </font>"
        )
    return "\n\n".join(blocks) + "\n"


def _correlated(rng: np.random.Generator, frames: int, fps: float, sigma: float) -> np.ndarray:
    """An AR(1) error with standard deviation ``sigma`` and correlation time GPS_CORRELATION_S."""
    keep = math.exp(-1 / (GPS_CORRELATION_S * fps))
    fresh = rng.normal(0, sigma * math.sqrt(1 - keep**2), frames)
    error = np.empty(frames)
    error[0] = rng.normal(0, sigma)
    for f in range(1, frames):
        error[f] = keep * error[f - 1] + fresh[f]
    return error


def _clock(seconds: float) -> str:
    whole = int(seconds)
    millis = round((seconds - whole) * 1000)
    if millis == 1000:
        whole, millis = whole + 1, 0
    return f"{whole // 3600:02d}:{whole // 60 % 60:02d}:{whole % 60:02d},{millis:03d}"
