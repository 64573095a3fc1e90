"""Live streams (RTSP, HLS): a reconnecting newest-frame source (``source``) and the counting
run on top of it. Torch-free at import, like the rest of ``ml_engine``'s package imports."""

from ml_engine.live.source import Gap, LiveFrame, LiveSource, SourceOptions, redact_url

__all__ = ["Gap", "LiveFrame", "LiveSource", "SourceOptions", "redact_url"]
