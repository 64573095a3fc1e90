"""Live streams (RTSP, HLS): count on frames as they arrive, for as long as the stream runs.

source.py (connect, read timeout, reconnects, gaps, the newest-frame mailbox), run.py
(``StreamRun``: detection, tracking, counting, windows, events, resume state), counts.py
(totals, windows, latency), segments.py (the annotated video as live HLS).
"""

from ml_engine.live.run import CountEvent, LiveStatus, StreamConfig, StreamRun
from ml_engine.live.segments import HlsWriter

__all__ = ["CountEvent", "HlsWriter", "LiveStatus", "StreamConfig", "StreamRun"]
