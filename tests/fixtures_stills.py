"""Stills for the images-job tests, written with rasterio (real PNG, JPEG and TIFF files)."""

from __future__ import annotations

import io
import warnings
import zipfile
from pathlib import Path

import numpy as np


def image_bytes(driver: str = "PNG", width: int = 96, height: int = 64, bands: int = 3, seed: int = 0,
                uniform: bool = False, **profile) -> bytes:
    """``uniform``: one grey level (a big raster that compresses to almost nothing)."""
    from rasterio.io import MemoryFile

    if uniform:
        pixels = np.full((bands, height, width), 90, dtype=np.uint8)
    else:
        pixels = np.random.default_rng(seed).integers(0, 255, (bands, height, width), dtype=np.uint8)
    with warnings.catch_warnings(), MemoryFile() as memory:
        warnings.simplefilter("ignore")  # NotGeoreferencedWarning; affine's own deprecation inside rasterio
        with memory.open(driver=driver, width=width, height=height, count=bands, dtype="uint8", **profile) as out:
            out.write(pixels)
        return memory.read()


def truncated_tiff() -> bytes:
    data = image_bytes("GTiff", 160, 160)
    return data[: len(data) // 2]


def write_stills(folder: Path, count: int) -> list[Path]:
    """``count`` small stills, PNG and JPEG alternating."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        driver, ext = ("PNG", "png") if i % 2 == 0 else ("JPEG", "jpg")
        path = folder / f"still-{i:04d}.{ext}"
        path.write_bytes(image_bytes(driver, seed=i))
        paths.append(path)
    return paths


def zip_of(entries: dict[str, bytes], compression: int = zipfile.ZIP_STORED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=compression) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def tiff_damaged_in_the_middle(seed: int = 0) -> bytes:
    """A DEFLATE TIFF in 16-row strips whose middle strips are garbage: its header and its first
    and last rows read fine (so the API's probe accepts it), its pixels do not (so the worker
    finds the damage: a per-file error discovered while the job runs)."""
    data = bytearray(image_bytes("GTiff", 128, 256, seed=seed, compress="deflate", blockysize=16))
    middle = len(data) // 2
    data[middle - 600:middle + 600] = bytes(range(256)) * 4 + bytes(176)
    return bytes(data)
