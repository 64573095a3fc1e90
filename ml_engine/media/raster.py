"""Reading stills and orthomosaics (JPEG, PNG, TIFF, GeoTIFF, BigTIFF, COG) through GDAL (rasterio).

One path for every format: GDAL opens the file, ``RasterSource`` checks it (bands, size, pixel
type) and reads any window of it as HxWx3 uint8 RGB, normalising what a detector cannot take:

* 4 bands (RGBA, RGB+NIR): the first three are taken as RGB, and the file's notes say so;
* 1 or 2 bands (grey, grey+alpha): the grey band is repeated into RGB; a palette is expanded;
* 16-bit, 32-bit or float samples: each band is stretched linearly from its 2nd to its 98th
  percentile to 0..255. The percentiles come from a small decimated read (an overview), so
  every window of one raster is scaled alike and nothing reads the whole raster for them.

Anything else (no bands, 5+ bands not marked RGB, complex samples) is refused with a typed
error. Windows are read as they are asked for, and GDAL's block cache is capped
(``GDAL_CACHE_BYTES``), so memory follows the window, never the raster.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import rasterio
from rasterio._err import CPLE_BaseError
from rasterio.enums import ColorInterp, Resampling
from rasterio.errors import NotGeoreferencedWarning, RasterioError
from rasterio.windows import Window

from core.errors import CorruptImage, RasterNoBands, RasterTooLarge, UnsupportedImage

__all__ = ["GDAL_CACHE_BYTES", "SUPPORTED_DRIVERS", "RasterSource", "open_raster", "upright"]

IMAGE_HEAD = 4  # the bytes that tell a TIFF, a JPEG or a PNG
SUPPORTED_DRIVERS = {"JPEG": "JPEG", "PNG": "PNG", "GTiff": "TIFF", "COG": "TIFF"}
# what GDAL raises for a file it cannot read (RasterioIOError is also an OSError: never let it
# pass for a disk problem of the worker's, which would fail the whole job)
GDAL_ERRORS = (RasterioError, CPLE_BaseError)
GDAL_CACHE_BYTES = 64 * 1024**2  # GDAL's block cache: its default (5 % of RAM) would grow with the raster read
STRETCH_PERCENTILES = (2.0, 98.0)
STRETCH_SAMPLE_PX = 1024  # long side of the decimated read the percentiles come from

Region = tuple[int, int, int, int]  # x0, y0, x1, y1 in raster pixels, x1/y1 exclusive


def gdal_env() -> rasterio.Env:
    """The GDAL settings every read runs under: a bounded block cache, no side-car lookups
    in the directory (a folder of 1,000 stills would be listed for each)."""
    return rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_BYTES, GDAL_DISABLE_READDIR_ON_OPEN="EMPTY_DIR")


@dataclass
class RasterSource:
    """An open raster: its size, georeferencing and how its bands become RGB.

    ``notes`` say in words what was done to the pixels (for the file's result). Close it (or
    use it as a context manager) to release the file."""

    dataset: Any  # rasterio.DatasetReader
    name: str
    format: str
    width: int
    height: int
    bands: tuple[int, ...]  # the 1-based bands read, repeated for grey
    notes: list[str] = field(default_factory=list)
    _lut: np.ndarray | None = None  # palette index -> RGB
    _stretch: list[tuple[float, float]] | None = None  # per band (low, high) for non-8-bit samples

    # --- georeferencing -------------------------------------------------------------------

    @property
    def georeferenced(self) -> bool:
        """True when the file has a CRS and a real geotransform (not the identity GDAL reports
        for a plain image)."""
        return self.dataset.crs is not None and not self.dataset.transform.is_identity

    @property
    def transform(self) -> Any:
        return self.dataset.transform

    @property
    def crs(self) -> Any:
        return self.dataset.crs

    @property
    def orientation(self) -> int:
        """The EXIF orientation (1-8; 1 is upright) a camera JPEG may carry; GDAL does not apply it."""
        try:
            value = int(self.dataset.tags().get("EXIF_Orientation", "1").strip("() "))
        except (ValueError, AttributeError):
            return 1
        return value if 1 <= value <= 8 else 1

    # --- reading --------------------------------------------------------------------------

    def read(self, region: Region) -> np.ndarray:
        """The ``region`` (x0, y0, x1, y1) as HxWx3 uint8 RGB."""
        x0, y0, x1, y1 = region
        window = Window(x0, y0, x1 - x0, y1 - y0)
        return self._to_rgb(self._read(window=window))

    def read_overview(self, max_side: int) -> tuple[np.ndarray, float]:
        """The whole raster shrunk so its long side is at most ``max_side`` (GDAL's decimated
        read, from the file's overviews when it has them): (RGB image, scale = overview pixels
        per raster pixel). The full-size array is never built."""
        scale = min(1.0, max_side / max(self.width, self.height))
        out_w, out_h = max(1, round(self.width * scale)), max(1, round(self.height * scale))
        data = self._read(out_shape=(len(set(self.bands)), out_h, out_w), resampling=Resampling.average)
        return self._to_rgb(data), scale

    def _read(self, **kwargs: Any) -> np.ndarray:
        unique = sorted(set(self.bands))
        try:
            with gdal_env():
                data = self.dataset.read(unique, **kwargs)
        except GDAL_ERRORS as exc:
            raise CorruptImage(f"{self.name}: the {self.format} file is damaged or truncated ({_short(exc)})") from exc
        return data[[unique.index(b) for b in self.bands]]

    def _to_rgb(self, data: np.ndarray) -> np.ndarray:
        if self._lut is not None:
            return self._lut[data[0]]
        if self._stretch is not None:
            data = _stretch(data, self._stretch)
        return np.ascontiguousarray(np.moveaxis(data.astype(np.uint8, copy=False), 0, -1))

    # --- lifetime -------------------------------------------------------------------------

    def close(self) -> None:
        self.dataset.close()

    def __enter__(self) -> RasterSource:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()


def open_raster(path: Path, name: str, max_pixels: int) -> RasterSource:
    """Open and check one file. Raises a typed error naming ``name`` for a file that is not an
    image GDAL reads, is damaged, has no bands, has bands that are not colours, or has more
    than ``max_pixels`` pixels (the last before any pixel is read)."""
    try:
        with gdal_env(), warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)  # plain photos have none: expected
            dataset = rasterio.open(path)
    except GDAL_ERRORS as exc:
        raise _not_readable(path, name, exc) from exc
    try:
        return _checked(dataset, name, max_pixels)
    except BaseException:
        dataset.close()
        raise


def _checked(dataset: Any, name: str, max_pixels: int) -> RasterSource:
    kind = SUPPORTED_DRIVERS.get(dataset.driver)
    if kind is None:
        raise UnsupportedImage(f"{name}: {dataset.driver} images are not supported; send JPEG, PNG or (Geo)TIFF")
    if dataset.count == 0:
        raise RasterNoBands(f"{name}: the {kind} file has no image bands (no pixels to look at)")
    width, height = dataset.width, dataset.height
    if width * height > max_pixels:
        raise RasterTooLarge(
            f"{name}: {width} x {height} px is {width * height:,} pixels, more than this service accepts "
            f"({max_pixels:,}, MAX_RASTER_PIXELS)"
        )
    if any(np.dtype(t).kind == "c" for t in dataset.dtypes):
        raise UnsupportedImage(f"{name}: complex-valued samples (radar data?) are not an image a detector can read")
    source = RasterSource(dataset, name, kind, width, height, bands=_colour_bands(dataset, name))
    if dataset.count == 1 and dataset.colorinterp[0] == ColorInterp.palette:
        source._lut = _palette_lut(dataset)
        source.notes.append("palette colours expanded to RGB")
    elif np.dtype(dataset.dtypes[0]) != np.uint8:
        source._stretch = _percentiles(source)
        low, high = STRETCH_PERCENTILES
        source.notes.append(
            f"{dataset.dtypes[0]} samples scaled to 8 bits per band, linearly from the band's "
            f"{low:g}th to its {high:g}th percentile"
        )
    if dataset.count == 4:
        source.notes.append("4 bands: the first three read as RGB, the fourth (alpha or near-infrared) ignored")
    elif dataset.count <= 2 and source._lut is None:
        source.notes.append("greyscale: the grey band repeated into RGB")
    return source


def _colour_bands(dataset: Any, name: str) -> tuple[int, ...]:
    """Which bands make R, G and B."""
    interp = tuple(dataset.colorinterp)
    if dataset.count <= 2:  # grey (+ alpha), or a palette
        return (1, 1, 1)
    if dataset.count in (3, 4) or interp[:3] == (ColorInterp.red, ColorInterp.green, ColorInterp.blue):
        return (1, 2, 3)
    raise UnsupportedImage(
        f"{name}: {dataset.count} bands, and the first three are not marked red, green, blue "
        "(a multispectral raster?); send an RGB image, or a 3- or 4-band export of the orthomosaic"
    )


def _palette_lut(dataset: Any) -> np.ndarray:
    lut = np.zeros((256 if dataset.dtypes[0] == "uint8" else 65536, 3), dtype=np.uint8)
    for index, rgba in dataset.colormap(1).items():
        if index < len(lut):
            lut[index] = rgba[:3]
    return lut


def _percentiles(source: RasterSource) -> list[tuple[float, float]]:
    """Each colour band's (low, high) stretch limits from a decimated read of the whole raster."""
    scale = min(1.0, STRETCH_SAMPLE_PX / max(source.width, source.height))
    shape = (max(1, round(source.height * scale)), max(1, round(source.width * scale)))
    sample = source._read(out_shape=(len(set(source.bands)), *shape)).astype(np.float64)
    sample = sample.reshape(len(source.bands), -1)
    limits = []
    for band in sample:
        band = band[np.isfinite(band)]
        low, high = (np.percentile(band, STRETCH_PERCENTILES) if band.size else (0.0, 1.0))
        limits.append((float(low), float(high) if high > low else float(low) + 1.0))
    return limits


def _stretch(data: np.ndarray, limits: list[tuple[float, float]]) -> np.ndarray:
    out = np.empty(data.shape, dtype=np.uint8)
    for i, (low, high) in enumerate(limits):
        band = np.nan_to_num(data[i].astype(np.float32), nan=low)
        out[i] = np.clip((band - low) * (255.0 / (high - low)), 0, 255).astype(np.uint8)
    return out


def starts_like_image(head: bytes) -> bool:
    """A file's first IMAGE_HEAD bytes are those of a TIFF, a JPEG or a PNG: the only files
    GDAL reads here, so a file without them is no image this service reads."""
    return head[:2] in (b"II", b"MM") or head[:3] == b"\xff\xd8\xff" or head[:4] == b"\x89PNG"


def _not_readable(path: Path, name: str, exc: Exception) -> Exception:
    if path.stat().st_size == 0:
        return CorruptImage(f"{name}: the file is empty")
    if 'Bad value 0 for "SamplesPerPixel"' in str(exc):  # libtiff refuses a 0-band TIFF before GDAL sees it
        return RasterNoBands(f"{name}: the TIFF file has no image bands (SamplesPerPixel is 0)")
    with path.open("rb") as file:
        head = file.read(IMAGE_HEAD)
    if starts_like_image(head):
        return CorruptImage(f"{name}: the file looks like an image but cannot be read: it is damaged or truncated "
                            f"({_short(exc)})")
    return UnsupportedImage(f"{name}: not an image this service reads (JPEG, PNG, TIFF or GeoTIFF)")


def _short(exc: Exception) -> str:
    return " ".join(str(exc).split())[:200]


def upright(image: np.ndarray, orientation: int) -> np.ndarray:
    """``image`` turned as its EXIF orientation says it is shown (as PIL's ``exif_transpose``)."""
    turns = {
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1],
        5: lambda a: a.transpose(1, 0, 2),
        6: lambda a: np.rot90(a, -1),
        7: lambda a: np.rot90(a, 2).transpose(1, 0, 2),
        8: lambda a: np.rot90(a, 1),
    }
    turn = turns.get(orientation)
    return image if turn is None else np.ascontiguousarray(turn(image))
