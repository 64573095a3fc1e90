"""Blob path rules shared by every backend: one namespace, the same answers everywhere.

Paths are '/'-separated and relative; the local backend maps them onto files, so anything
that could escape its root or collide with its in-progress temp files is refused.
"""

from __future__ import annotations

from core.errors import InvalidInput


def validate_blob_path(path: str) -> str:
    """Return ``path`` if it is a safe relative blob path, else raise InvalidInput.

    Rejected: empty, absolute, backslashes, NUL, empty / ``.`` / ``..`` segments, and
    segments starting with ``.`` (hidden names are reserved for in-progress writes).
    """
    if not isinstance(path, str) or not path:
        raise InvalidInput("a blob path must be a non-empty string")
    _reject_unsafe_characters(path)
    for segment in path.split("/"):
        if not segment or segment.startswith("."):
            raise InvalidInput(f"invalid blob path {path!r}: empty, '.', '..' or hidden path segment")
    return path


def validate_blob_prefix(prefix: str) -> str:
    """Like validate_blob_path, but "" and a trailing '/' are allowed."""
    if prefix == "":
        return prefix
    _reject_unsafe_characters(prefix)
    segments = prefix.split("/")
    if prefix.endswith("/"):
        segments = segments[:-1]
    if any(segment in ("", ".", "..") for segment in segments):
        raise InvalidInput(f"invalid blob prefix {prefix!r}: empty, '.' or '..' path segment")
    return prefix


def _reject_unsafe_characters(path: str) -> None:
    if path.startswith("/"):
        raise InvalidInput(f"invalid blob path {path!r}: must be relative")
    if "\\" in path or "\x00" in path:
        raise InvalidInput(f"invalid blob path {path!r}: backslashes and NUL are not allowed")
