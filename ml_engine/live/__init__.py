"""Live streams (RTSP, HLS): a reconnecting newest-frame source (``source``) and the counting
run on top of it (``run``: the loop; ``sink``: what it reports and who stops it; ``state``: how a
stream resumes; ``clock``: its windows; ``segments``: the annotated video as live HLS;
``counts``: totals, windows, latency). Torch-free at import, like the rest of ``ml_engine``'s
package imports."""

from ml_engine.live.clock import WindowClock
from ml_engine.live.run import StreamConfig, StreamRun
from ml_engine.live.segments import HlsWriter
from ml_engine.live.sink import CountEvent, LiveStatus, QuietSink, StreamSink
from ml_engine.live.source import Gap, LiveFrame, LiveSource, SourceOptions, redact_url
from ml_engine.live.state import STATE_VERSION, StreamState

__all__ = [
    "STATE_VERSION", "CountEvent", "Gap", "HlsWriter", "LiveFrame", "LiveSource", "LiveStatus", "QuietSink",
    "SourceOptions", "StreamConfig", "StreamRun", "StreamSink", "StreamState", "WindowClock", "redact_url",
]
