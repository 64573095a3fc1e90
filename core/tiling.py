"""The ``TILING`` setting's grammar: ``auto``, ``off`` or ``WxH`` (tile width x height in pixels).

Torch-free and numpy-free: the API validates a job's ``tiling`` at submission with this,
and the worker (``ml_engine.tiling``) plans the tiles from the same parsed value.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from core.errors import InvalidInput

MIN_TILE_PX = 64  # smaller tiles cost a forward pass each and see too little context
MAX_TILE_PX = 8192

# what parse_tiling accepts, as the JSON-schema pattern the API publishes (lower case, no spaces:
# a subset, so a request valid by the schema is never refused); each side 64..8192
_SIDE = r"(?:6[4-9]|[7-9][0-9]|[1-9][0-9]{2}|[1-7][0-9]{3}|80[0-9]{2}|81[0-8][0-9]|819[0-2])"
TILING_PATTERN = rf"^(?:auto|off|{_SIDE}x{_SIDE})$"
_SIZE = re.compile(r"^\s*(\d{1,5})\s*[xX×]\s*(\d{1,5})\s*$")


@dataclass(frozen=True)
class TilingSetting:
    """``mode`` is ``auto``, ``off`` or ``size``; ``size`` is (width, height) for ``size``."""

    mode: str
    size: tuple[int, int] | None = None

    @property
    def text(self) -> str:
        return f"{self.size[0]}x{self.size[1]}" if self.size else self.mode


def parse_tiling(value: str) -> TilingSetting:
    """Parse ``auto`` | ``off`` | ``WxH``. Raises InvalidInput saying what is accepted."""
    text = str(value).strip().lower()
    if text in ("auto", "off"):
        return TilingSetting(text)
    match = _SIZE.match(text)
    if match:
        width, height = int(match.group(1)), int(match.group(2))
        if MIN_TILE_PX <= width <= MAX_TILE_PX and MIN_TILE_PX <= height <= MAX_TILE_PX:
            return TilingSetting("size", (width, height))
    raise InvalidInput(
        f"tiling must be auto, off or a tile size WxH in pixels (each side {MIN_TILE_PX}..{MAX_TILE_PX}, "
        f"e.g. 640x640), got {value!r}"
    )
