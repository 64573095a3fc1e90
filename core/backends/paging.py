"""Paging through job listings, the same for every backend: the page size limit and the cursor.

Job ids are time-ordered (``core.jobs.new_job_id``), so a cursor is simply the last id of the
previous page, base64url-encoded so clients treat it as opaque.
"""

from __future__ import annotations

import base64
import binascii

from core.errors import InvalidInput

MAX_PAGE_SIZE = 1000


def check_page_size(limit: int) -> None:
    if not 1 <= limit <= MAX_PAGE_SIZE:
        raise InvalidInput(f"limit must be between 1 and {MAX_PAGE_SIZE}, got {limit}")


def encode_cursor(last_id: str) -> str:
    """An opaque page cursor: the last id of the page, base64url-encoded."""
    return base64.urlsafe_b64encode(last_id.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    """The id inside a cursor from encode_cursor; InvalidInput for anything else."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidInput(f"invalid page cursor {cursor[:64]!r}") from None
    if not raw or not raw.isalnum():
        raise InvalidInput(f"invalid page cursor {cursor[:64]!r}")
    return raw
