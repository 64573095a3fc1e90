"""What a live source hands its consumer: frames (``LiveFrame``) and the gaps between them (``Gap``)."""

from __future__ import annotations

from dataclasses import dataclass

import av
import numpy as np


@dataclass(frozen=True)
class LiveFrame:
    """One decoded frame, the newest when it was taken."""

    image: np.ndarray  # RGB uint8 (H, W, 3)
    received_at: float  # time.time() when the frame left the decoder (before it waited to be due)
    media_time_s: float  # seconds since this connection started (from pts; monotonic within a connection)
    connection: int  # 1 for the first connection, +1 after every reconnect
    # time.time() when the camera took it, where the source says (HLS program date-time); None:
    # unknown, latency is measured from received_at
    captured_at: float | None = None


@dataclass(frozen=True)
class Gap:
    """Time without frames (or a break in them) that the consumer must know about."""

    started_at: float  # time.time() of the last frame before the gap
    ended_at: float  # time.time() when frames flowed again
    reason: str  # "stall", "ended", "error: <short>", "resolution_change"


@dataclass
class DecodedFrame:
    """A frame as it waits to be handed out: still in decoder format (converting to RGB costs
    CPU, so only frames that are delivered are converted, in the consumer's thread)."""

    frame: av.VideoFrame
    received_at: float
    media_time_s: float
    connection: int
    captured_at: float | None = None

    def to_live_frame(self) -> LiveFrame:
        image = self.frame.to_ndarray(format="rgb24")
        return LiveFrame(image, self.received_at, self.media_time_s, self.connection, self.captured_at)

    def size(self) -> int:
        return sum(plane.buffer_size for plane in self.frame.planes)
