"""Torch-free checks of an image or raster file, for the API at submit and the worker.

Checks the bytes, never the name: a file is an image when GDAL (through rasterio) opens it
with one of the drivers below, has at least one band, and is no larger than the limit. The
header alone is not trusted: the first and the last block of pixels are read too, so a
truncated TIFF or JPEG is refused here rather than deep inside a job.

Only rasterio and numpy: the API image has no ML stack (tests/test_import_rules.py).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

from core.errors import CorruptImage, EmptyImage, ImageError, ImageTooLarge, NoBands, NotAnImage

# what a drone or an orthomosaic pipeline writes; nothing exotic (GDAL has ~200 drivers)
IMAGE_DRIVERS = ("GTiff", "COG", "JPEG", "PNG", "WEBP")
# a folder of 1,000 stills: without this GDAL lists the folder on every open, looking for
# sidecar files (.aux.xml, .ovr, world files)
_GDAL_OPTIONS = {"GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR", "GDAL_PAM_ENABLED": "NO"}


@dataclass(frozen=True)
class ImageInfo:
    width: int
    height: int
    bands: int
    driver: str
    georeferenced: bool


def probe_image(path: Path, max_pixels: int) -> ImageInfo:
    """Raises a typed ImageError (EmptyImage, NotAnImage, CorruptImage, NoBands, ImageTooLarge)
    with a message naming the file; returns the image's size and bands otherwise."""
    import rasterio  # here: importing GDAL costs ~0.2 s, and a video-only API need not pay it
    from rasterio.errors import RasterioError
    from rasterio.windows import Window

    name = path.name
    if path.stat().st_size == 0:
        raise EmptyImage(f"{name}: the file is empty")
    try:
        with warnings.catch_warnings(), rasterio.Env(**_GDAL_OPTIONS):
            warnings.simplefilter("ignore")  # NotGeoreferencedWarning for every plain photo
            with rasterio.open(path, allowed_drivers=list(IMAGE_DRIVERS)) as src:
                info = ImageInfo(src.width, src.height, src.count, src.driver,
                                 georeferenced=src.crs is not None and not src.transform.is_identity)
                _check_size(name, info, max_pixels)
                # the first and last rows: a file cut short fails here, not in the worker
                block = min(info.height, 16)
                src.read(1, window=Window(0, 0, min(info.width, 256), block))
                src.read(1, window=Window(0, info.height - block, min(info.width, 256), block))
    except ImageError:
        raise
    except RasterioError as exc:
        if 'Bad value 0 for "SamplesPerPixel"' in str(exc):  # libtiff refuses a 0-band TIFF itself
            raise NoBands(f"{name}: the raster has no bands (no pixels to look at)") from None
        if "not recognized" in str(exc) or "supported file format" in str(exc):
            raise NotAnImage(f"{name}: not an image this service reads "
                             f"(JPEG, PNG, WebP, TIFF/GeoTIFF)") from None
        raise CorruptImage(f"{name}: the image is corrupt or truncated and cannot be read") from None
    except (ValueError, IndexError) as exc:  # rasterio on odd headers (a band count of 0 ...)
        raise CorruptImage(f"{name}: the image cannot be read ({exc})") from None
    return info


def _check_size(name: str, info: ImageInfo, max_pixels: int) -> None:
    if info.bands < 1:
        raise NoBands(f"{name}: the raster has no bands (no pixels to look at)")
    if info.width < 1 or info.height < 1:
        raise CorruptImage(f"{name}: the image has no pixels ({info.width}x{info.height})")
    if info.width * info.height > max_pixels:
        raise ImageTooLarge(f"{name}: {info.width}x{info.height} is {info.width * info.height} pixels; "
                            f"the limit is {max_pixels} (MAX_RASTER_PIXELS)")


def looks_like_zip(path: Path) -> bool:
    """A ZIP by its first bytes (a local file header, or the end record of an empty ZIP)."""
    with path.open("rb") as stream:
        head = stream.read(4)
    return head in (b"PK\x03\x04", b"PK\x05\x06")

