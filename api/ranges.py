"""HTTP Range requests (RFC 9110 §14) for streaming videos: one range, bytes only."""

from __future__ import annotations

from core.errors import RangeNotSatisfiable


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The inclusive (first, last) byte positions asked for, or None for the whole file.

    Multi-range and non-byte units are answered with the whole file, as the RFC allows.
    """
    if not header or not header.startswith("bytes=") or "," in header:
        return None
    first_text, _, last_text = header[len("bytes="):].strip().partition("-")
    try:
        if first_text == "":  # suffix range: the last N bytes
            length = int(last_text)
            if length <= 0:
                raise RangeNotSatisfiable(f"range {header!r} asks for no bytes", size)
            return max(0, size - length), size - 1
        first = int(first_text)
        last = int(last_text) if last_text else size - 1
    except ValueError:
        return None
    if first >= size or last < first:
        raise RangeNotSatisfiable(f"range {header!r} is outside the file of {size} bytes", size)
    return first, min(last, size - 1)
