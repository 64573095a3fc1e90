"""Torch-free checks of an image or raster file, for the API at submit.

The same rules as the worker's (``ml_engine.media.raster.open_raster``: format, bands, pixel type,
MAX_RASTER_PIXELS), so a file refused here would have been refused there with the same typed
error. The header alone is not trusted: the first and the last rows are read too, so a
truncated TIFF or JPEG is refused at submit rather than deep inside a job.

Only rasterio and numpy: the API image has no ML stack (tests/test_import_rules.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from core.errors import CorruptImage, EmptyImage, RasterNoBands
from ml_engine.media.raster import gdal_env, open_raster

EDGE_ROWS = 16  # rows read at the top and the bottom: enough to reach the last strip or tile
ZIP_HEAD = 4  # the bytes that tell a ZIP


@dataclass(frozen=True)
class ImageInfo:
    width: int
    height: int
    format: str
    georeferenced: bool


def probe_image(path: Path, max_pixels: int, name: str | None = None) -> ImageInfo:
    """Raises a typed ImageError (EmptyImage, UnsupportedImage, CorruptImage, RasterNoBands,
    RasterTooLarge) with a message naming the file; returns its size otherwise."""
    from rasterio.errors import RasterioError  # with GDAL: loaded by open_raster anyway
    from rasterio.windows import Window

    name = name or path.name
    if path.stat().st_size == 0:
        raise EmptyImage(f"{name}: the file is empty")
    try:
        source = open_raster(path, name, max_pixels)
    except CorruptImage as exc:
        if 'Bad value 0 for "SamplesPerPixel"' in str(exc):  # libtiff refuses a 0-band TIFF itself
            raise RasterNoBands(f"{name}: the TIFF has no image bands (no pixels to look at)") from None
        raise
    with source:
        rows = min(source.height, EDGE_ROWS)
        columns = min(source.width, 256)
        try:
            with gdal_env():
                source.dataset.read(1, window=Window(0, 0, columns, rows))
                source.dataset.read(1, window=Window(0, source.height - rows, columns, rows))
        except RasterioError as exc:
            raise CorruptImage(f"{name}: the image is damaged or truncated and cannot be read "
                               f"({' '.join(str(exc).split())[:200]})") from None
        return ImageInfo(source.width, source.height, source.format, source.georeferenced)


def looks_like_zip(path: Path) -> bool:
    """A ZIP by its first bytes (a local file header, or the end record of an empty ZIP)."""
    with path.open("rb") as stream:
        return starts_like_zip(stream.read(ZIP_HEAD))


def starts_like_zip(head: bytes) -> bool:
    """A file's first ZIP_HEAD bytes are a ZIP's."""
    return head[:ZIP_HEAD] in (b"PK\x03\x04", b"PK\x05\x06")
