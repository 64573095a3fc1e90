"""Live streams (RTSP, HLS): a reconnecting newest-frame source (``source``) and the counting
run on top of it (``run``: windows, events, resume state; ``segments``: the annotated video as
live HLS; ``counts``: totals, windows, latency). Torch-free at import, like the rest of
``ml_engine``'s package imports."""

from ml_engine.live.run import CountEvent, LiveStatus, StreamConfig, StreamRun
from ml_engine.live.segments import HlsWriter
from ml_engine.live.source import Gap, LiveFrame, LiveSource, SourceOptions, redact_url

__all__ = [
    "CountEvent", "Gap", "HlsWriter", "LiveFrame", "LiveSource", "LiveStatus", "SourceOptions", "StreamConfig",
    "StreamRun", "redact_url",
]
