"""Video fixtures: small generated clips (moving coloured rectangles) and broken files.

Everything is generated with PyAV so the tests need no assets, except the real clip
``shared/assets/videos/vtest.avi`` beside the checkout (tests using ``vtest_video`` skip
without it).
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

# ../shared sits beside the checkout (CI clones main next to it); CATTLECOUNTER_SHARED overrides
SHARED_DIR = Path(os.environ.get("CATTLECOUNTER_SHARED", Path(__file__).resolve().parents[2] / "shared"))
VTEST_PATH = SHARED_DIR / "assets" / "videos" / "vtest.avi"


@dataclass(frozen=True)
class MovingBox:
    """A filled rectangle moving at constant speed: top-left ``start`` + ``velocity`` * frame."""

    color: tuple[int, int, int]
    start: tuple[float, float]
    velocity: tuple[float, float]
    size: tuple[int, int]

    def xyxy(self, frame_index: int) -> tuple[float, float, float, float]:
        x = self.start[0] + self.velocity[0] * frame_index
        y = self.start[1] + self.velocity[1] * frame_index
        return x, y, x + self.size[0], y + self.size[1]


DEFAULT_BOXES = (
    MovingBox(color=(230, 40, 40), start=(10, 40), velocity=(6, 0), size=(60, 40)),
    MovingBox(color=(40, 200, 60), start=(240, 150), velocity=(-5, -2), size=(50, 50)),
)


def render_frame(width: int, height: int, boxes: Sequence[MovingBox], index: int) -> np.ndarray:
    """An RGB frame: grey background with a gradient (so frames differ) and the boxes drawn."""
    image = np.full((height, width, 3), 90, dtype=np.uint8)
    image[:, :, 2] = np.linspace(60, 140, width, dtype=np.uint8)[None, :]
    for box in boxes:
        x1, y1, x2, y2 = (int(round(v)) for v in box.xyxy(index))
        x1, y1, x2, y2 = max(x1, 0), max(y1, 0), min(x2, width), min(y2, height)
        if x2 > x1 and y2 > y1:
            image[y1:y2, x1:x2] = box.color
    return image


def write_clip(
    path: Path,
    *,
    width: int = 320,
    height: int = 240,
    fps: Fraction | int = 10,
    frames: int = 20,
    boxes: Sequence[MovingBox] = DEFAULT_BOXES,
    rotation: int | None = None,
    faststart: bool = True,
    frame_maker=None,
) -> Path:
    """Encode a small H.264 MP4 with PyAV. ``rotation`` writes a display matrix (CCW degrees)."""
    rate = Fraction(fps)
    options = {"movflags": "+faststart"} if faststart else {}
    with av.open(str(path), mode="w", format="mp4", options=options) as container:
        stream = container.add_stream("libx264", rate=rate)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.options = {"preset": "ultrafast", "crf": "18"}
        if rotation is not None:
            stream.set_display_rotation(rotation)
        for index in range(frames):
            image = frame_maker(index) if frame_maker else render_frame(width, height, boxes, index)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = index, 1 / rate
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def noise_frame_maker(width: int, height: int, seed: int = 0):
    """Frames of random noise: big packets, so a cut through the file lands mid-stream."""
    rng = np.random.default_rng(seed)
    return lambda index: rng.integers(0, 256, (height, width, 3), dtype=np.uint8)


# --- MP4 atoms --------------------------------------------------------------------------------


def iter_atoms(data: bytes, start: int = 0, end: int | None = None) -> Iterator[tuple[bytes, int, int]]:
    """(type, payload offset, atom end) for each atom between ``start`` and ``end``."""
    end = len(data) if end is None else end
    offset = start
    while offset + 8 <= end:
        size, kind = struct.unpack(">I4s", data[offset : offset + 8])
        header = 8
        if size == 1:
            size, header = struct.unpack(">Q", data[offset + 8 : offset + 16])[0], 16
        elif size == 0:
            size = end - offset
        yield kind, offset + header, offset + size
        offset += size


def top_level_atoms(path: Path) -> list[str]:
    """The MP4's top-level atom types in file order, e.g. ['ftyp', 'moov', 'free', 'mdat']."""
    return [kind.decode("latin-1") for kind, _, _ in iter_atoms(path.read_bytes())]


def find_atom(data: bytes, atom_path: Sequence[bytes]) -> tuple[int, int]:
    """Payload offset and end of the first atom at ``atom_path`` (e.g. moov/trak/mdia/mdhd)."""
    start, end = 0, len(data)
    for wanted in atom_path:
        for kind, payload, atom_end in iter_atoms(data, start, end):
            if kind == wanted:
                start, end = payload, atom_end
                break
        else:
            raise LookupError(f"no {wanted!r} atom")
    return start, end


# --- broken inputs ----------------------------------------------------------------------------


def write_text_file(path: Path) -> Path:
    path.write_text("this is a shopping list, not a video\n" * 20)
    return path


def write_png(path: Path) -> Path:
    with av.open(str(path), mode="w", format="image2") as container:
        stream = container.add_stream("png", rate=1)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "rgb24"
        frame = av.VideoFrame.from_ndarray(np.zeros((48, 64, 3), np.uint8), format="rgb24")
        container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def write_audio_only(path: Path) -> Path:
    """An M4A with one second of silent AAC and no video stream."""
    with av.open(str(path), mode="w", format="mp4") as container:
        stream = container.add_stream("aac", rate=44100)
        for index in range(44):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 44100, index * 1024
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def write_truncated_without_index(path: Path) -> Path:
    """An MP4 written without faststart (index at the end) cut in half: no 'moov' left."""
    full = write_clip(path.with_suffix(".full.mp4"), frames=10, faststart=False)
    data = full.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    full.unlink()
    return path


def write_truncated_midstream(path: Path) -> Path:
    """A faststart MP4 (index first) cut at 70%: it opens, then decoding fails part-way."""
    full = write_clip(path.with_suffix(".full.mp4"), frames=20, frame_maker=noise_frame_maker(320, 240))
    data = full.read_bytes()
    path.write_bytes(data[: int(len(data) * 0.7)])
    full.unlink()
    return path


def write_zero_timescale(path: Path) -> Path:
    """A valid MP4 whose media header declares a time scale of 0 (no usable frame rate).

    FFmpeg substitutes a time scale of 1, which turns the 10 fps clip into 1/1001 fps.
    """
    data = bytearray(write_clip(path, frames=10).read_bytes())
    payload, _ = find_atom(bytes(data), [b"moov", b"trak", b"mdia", b"mdhd"])
    version = data[payload]
    timescale_at = payload + (20 if version == 1 else 12)  # after version/flags + creation/modification times
    data[timescale_at : timescale_at + 4] = struct.pack(">I", 0)
    path.write_bytes(bytes(data))
    return path


# --- fixtures -----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def video_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("videos")


@pytest.fixture(scope="session")
def small_clip(video_dir: Path) -> Path:
    """320x240, 10 fps, 20 frames (2 s), two moving rectangles (DEFAULT_BOXES)."""
    return write_clip(video_dir / "small.mp4")


@pytest.fixture(scope="session")
def ntsc_clip(video_dir: Path) -> Path:
    """320x240 at 29.97 fps (30000/1001), 30 frames."""
    return write_clip(video_dir / "ntsc.mp4", fps=Fraction(30000, 1001), frames=30)


@pytest.fixture(scope="session")
def bad_videos(video_dir: Path) -> dict[str, Path]:
    """One file per kind of bad input, by name."""
    folder = video_dir / "bad"
    folder.mkdir(exist_ok=True)
    empty = folder / "empty.mp4"
    empty.write_bytes(b"")
    return {
        "empty": empty,
        "text": write_text_file(folder / "notes.mp4"),
        "png": write_png(folder / "picture.png"),
        "audio_only": write_audio_only(folder / "sound.m4a"),
        "truncated_no_index": write_truncated_without_index(folder / "cut.mp4"),
        "truncated_midstream": write_truncated_midstream(folder / "cut_late.mp4"),
        "zero_timescale": write_zero_timescale(folder / "zero_rate.mp4"),
    }


@pytest.fixture(scope="session")
def vtest_video() -> Path:
    """The real test clip (768x576, 10 fps, 795 frames); skips when the asset is absent."""
    if not VTEST_PATH.is_file():
        pytest.skip(f"real test footage {VTEST_PATH} is not on this machine")
    return VTEST_PATH
