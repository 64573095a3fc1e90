"""When an HLS stream's frames were taken: ``EXT-X-PROGRAM-DATE-TIME`` at its live edge.

FFmpeg's HLS demuxer skips ``EXT-X-PROGRAM-DATE-TIME``, so the source reads the media
playlist itself, just before and just after FFmpeg opens it. FFmpeg starts at the newest
segment listed (``live_start_index=-1``); when both readings name the same newest segment,
that is the one FFmpeg started at, and a frame was taken at that segment's date plus its media
time. Otherwise (a segment was published in between, no dates, a master playlist) the capture
time is unknown and latency is measured from arrival.
"""

from __future__ import annotations

import logging
import re
import urllib.request
from datetime import datetime
from typing import NamedTuple

log = logging.getLogger(__name__)

_MAX_PLAYLIST_BYTES = 1 << 20  # a live media playlist is a few KB


class LiveEdge(NamedTuple):
    sequence: int  # the media sequence number of the newest segment listed
    program_date_time: float | None  # when its first frame was taken (epoch seconds), if the playlist says


def parse_live_edge(text: str) -> LiveEdge | None:
    """The newest segment of a media playlist and its date (None: no segment listed, e.g. a
    master playlist). A segment without its own date follows the one before it, as RFC 8216
    says, unless a discontinuity comes between them."""
    sequence = -1
    next_sequence: int | None = 0  # EXT-X-MEDIA-SEQUENCE: the first segment's number, 0 unless given
    pending_date: float | None = None
    date: float | None = None
    duration: float | None = None  # the EXTINF before the next URI: that URI is a segment
    newest_duration = 0.0
    newest: LiveEdge | None = None
    for line in (raw.strip() for raw in text.splitlines()):
        if line.startswith("#EXT-X-MEDIA-SEQUENCE:"):
            next_sequence = int(line.split(":", 1)[1])
        elif line.startswith("#EXT-X-PROGRAM-DATE-TIME:"):
            pending_date = _parse_date(line.split(":", 1)[1])
        elif line.startswith("#EXT-X-DISCONTINUITY") and not line.startswith("#EXT-X-DISCONTINUITY-"):
            date = None
        elif line.startswith("#EXTINF:"):
            duration = float(line.split(":", 1)[1].split(",", 1)[0])
        elif line and not line.startswith("#") and duration is not None:  # a segment's URI
            sequence = next_sequence if next_sequence is not None else sequence + 1
            next_sequence = None
            if pending_date is not None:
                date, pending_date = pending_date, None
            elif date is not None and newest is not None:
                date += newest_duration
            newest, newest_duration, duration = LiveEdge(sequence, date), duration, None
    return newest


def _parse_date(value: str) -> float | None:
    """ISO 8601 as playlists write it (``...Z``, ``+00:00`` or FFmpeg's ``+0000``)."""
    value = value.strip()
    if value.endswith("Z"):
        value = value[:-1] + "+00:00"
    value = re.sub(r"([+-]\d\d)(\d\d)$", r"\1:\2", value)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed.timestamp() if parsed.tzinfo is not None else None


def fetch_live_edge(url: str, proxy: str | None, timeout_s: float) -> LiveEdge | None:
    """The playlist at ``url``'s live edge (through ``proxy`` when given), None when it cannot
    be read or lists no segment. Never raises: a capture time is a nicety, not the stream."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({"http": proxy, "https": proxy} if proxy else {}))
    try:
        with opener.open(url, timeout=timeout_s) as answer:
            text = answer.read(_MAX_PLAYLIST_BYTES).decode("utf-8", errors="replace")
        return parse_live_edge(text)
    except (OSError, ValueError) as exc:  # the URL is not logged: it may carry credentials
        log.debug("reading the HLS playlist for its dates failed (%s)", type(exc).__name__)
        return None
