"""Draw the frames of a scene: ground texture seen through the camera, animals, tree canopies.

Frames are RGB uint8, like the pipeline's decoded frames. The ground is procedural noise:
"grass" has fine high-contrast blades over patchy colour (plenty of corners for
camera-motion estimation); "low" is nearly uniform, the known weak case of CMC.
Animals are two filled ellipses (body, head), exactly the shapes the ground truth boxes;
trees are drawn last, so they hide what is under them.
"""

from __future__ import annotations

import cv2
import numpy as np

from bench.counting.scene import Scene

_GRASS_RGB = np.array([74.0, 112.0, 46.0], dtype=np.float32)
_CANOPY_RGB = (28, 62, 26)
_CANOPY_LIGHT_RGB = (44, 84, 36)
_SHIFT = 4  # cv2 fixed-point bits: sub-pixel ellipse centres and axes
_ONE = 1 << _SHIFT


def _noise(shape: tuple[int, int], cell: float, rng: np.random.Generator) -> np.ndarray:
    """Smooth value noise with features about ``cell`` pixels wide, zero mean, unit-ish sd."""
    h, w = shape
    small = rng.standard_normal((max(2, int(h / cell) + 2), max(2, int(w / cell) + 2))).astype(np.float32)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


def ground_texture(scene: Scene) -> np.ndarray:
    """The whole world's ground, RGB uint8 (height, width, 3)."""
    width, height = scene.world_size
    shape = (height, width)
    rng = np.random.default_rng(scene.texture_seed)
    low = scene.scenario.texture == "low"
    patches = _noise(shape, 400, rng)
    mid = _noise(shape, 40, rng)
    tint = _noise(shape, 250, rng)
    if low:
        light = 4.0 * patches + 1.5 * mid
        light += cv2.GaussianBlur(rng.standard_normal(shape).astype(np.float32), (0, 0), 1.5) * 1.5
    else:
        blades = cv2.GaussianBlur(rng.standard_normal(shape).astype(np.float32), (0, 0), 0.8)
        streaks = cv2.blur(rng.standard_normal(shape).astype(np.float32), (1, 5))
        light = 16.0 * patches + 10.0 * mid + 22.0 * blades + 14.0 * streaks
    out = np.empty((height, width, 3), dtype=np.uint8)
    tint_gain = 6.0 if low else 14.0
    for c, gain in enumerate((1.0, 1.0, 0.6)):
        channel = _GRASS_RGB[c] + gain * light + (tint_gain if c == 0 else -tint_gain / 2) * tint
        np.clip(channel, 0, 255, out=channel)
        out[..., c] = channel
    return out


def shrink_texture(texture: np.ndarray, out_scale: float) -> np.ndarray:
    """The ground prefiltered for frames drawn at ``out_scale`` (a mip level): warping it gives
    what downscaling a full-size frame would, without drawing the full-size frame."""
    h, w = texture.shape[:2]
    size = (max(1, round(w * out_scale)), max(1, round(h * out_scale)))
    return cv2.resize(texture, size, interpolation=cv2.INTER_AREA)


def render_frame(
    scene: Scene, f: int, texture: np.ndarray, animals: bool = True, out_scale: float = 1.0
) -> np.ndarray:
    """Frame ``f`` as RGB uint8 (height, width, 3), times ``out_scale`` (then ``texture`` must be
    ``shrink_texture(ground_texture(scene), out_scale)``). ``animals=False`` draws the ground
    and trees only (tests compare the two to find where the sprites are)."""
    sc = scene.scenario
    matrix = scene.camera.matrix(f, out_scale)
    ground = matrix.copy()
    ground[:, :2] /= out_scale  # the texture is already out_scale times smaller
    size = (round(sc.width * out_scale), round(sc.height * out_scale))
    frame = cv2.warpAffine(texture, ground, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    if animals:
        _draw_animals(scene, f, frame, out_scale)
    _draw_trees(scene, f, frame, matrix, out_scale)
    return frame


def _pt(xy: np.ndarray) -> tuple[int, int]:
    """A length pair (axes) in cv2's fixed point."""
    return int(round(xy[0] * _ONE)), int(round(xy[1] * _ONE))


def _at(xy: np.ndarray) -> tuple[int, int]:
    """A position in cv2's fixed point. Boxes use pixel edges (pixel i spans [i, i+1]); cv2
    puts pixel i's centre at i, so positions move by half a pixel."""
    return _pt((xy[0] - 0.5, xy[1] - 0.5))


def _draw_animals(scene: Scene, f: int, frame: np.ndarray, out_scale: float) -> None:
    ell = scene.ellipses(f, out_scale)
    h, w = frame.shape[:2]
    herd = scene.herd
    for i in range(scene.animals):
        centre = ell["body_centre"][i]
        reach = ell["body_axes"][i, 0] * 1.3
        if not (-reach < centre[0] < w + reach and -reach < centre[1] < h + reach):
            continue
        angle = float(np.degrees(ell["angle"][i]))
        colour = tuple(float(c) for c in herd.colours[i])
        cv2.ellipse(frame, _at(centre), _pt(ell["body_axes"][i]), angle, 0, 360, colour, -1, cv2.LINE_AA, _SHIFT)
        head = tuple(float(c) * 0.7 for c in herd.colours[i])
        cv2.ellipse(frame, _at(ell["head_centre"][i]), _pt(ell["head_axes"][i]), angle, 0, 360, head, -1,
                    cv2.LINE_AA, _SHIFT)
        if herd.spots[i]:
            spot_axes = ell["body_axes"][i] * np.array([0.35, 0.5])
            cv2.ellipse(frame, _at(centre), _pt(spot_axes), angle, 0, 360, (235, 232, 225), -1, cv2.LINE_AA,
                        _SHIFT)


def _draw_trees(scene: Scene, f: int, frame: np.ndarray, matrix: np.ndarray, out_scale: float) -> None:
    s = scene.camera.scale[f] * out_scale
    h, w = frame.shape[:2]
    for k, (x, y, r) in enumerate(scene.trees):
        cx, cy = matrix @ np.array([x, y, 1.0])
        radius = r * s
        if not (-radius < cx < w + radius and -radius < cy < h + radius):
            continue
        cv2.circle(frame, _at((cx, cy)), int(radius * _ONE), _CANOPY_RGB, -1, cv2.LINE_AA, _SHIFT)
        # lighter leaf clumps, fixed per tree so the canopy is the same in every frame
        clumps = np.random.default_rng(k).uniform(-0.55, 0.55, (6, 2)) * radius
        for dx, dy in clumps:
            cv2.circle(frame, _at((cx + dx, cy + dy)), int(radius * 0.3 * _ONE), _CANOPY_LIGHT_RGB, -1,
                       cv2.LINE_AA, _SHIFT)


def small_grey(frame_rgb: np.ndarray, width: int) -> np.ndarray:
    """What camera-motion estimation looks at: the frame in grey, downscaled to ``width``."""
    h, w = frame_rgb.shape[:2]
    grey = cv2.cvtColor(frame_rgb, cv2.COLOR_RGB2GRAY)
    return cv2.resize(grey, (width, round(h * width / w)), interpolation=cv2.INTER_AREA)
