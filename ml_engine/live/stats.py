"""A stream's ``stats.json``: its totals and figures, the runs before a resume included."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from core.outputs import LIVE_PLAYLIST
from ml_engine.live.source import redact_url
from ml_engine.pipeline import model_facts

if TYPE_CHECKING:
    from ml_engine.live.meters import FrameSource
    from ml_engine.live.run import StreamRun


def stream_stats(run: StreamRun, source: FrameSource, windows: int, now: float) -> dict[str, Any]:
    """``windows``: how many there are, the open one included."""
    config, frames, latency = run.config, run.frames, run.latency
    return {
        "kind": "stream",
        "source": redact_url(run.url),  # never the credentials
        "counts": run.totals.to_dict(),
        "windows": windows,
        "window_s": config.window_s,
        "streaming_s": round(run.streaming.seconds(now), 3),
        "frames": {
            "received": frames.received(source),
            "processed": frames.processed,
            "dropped": frames.dropped(source),
        },
        "latency": {
            "p50_s": latency.histogram.percentile(50),
            "p95_s": latency.histogram.percentile(95),
            "from": latency.measured_from,
            "note": "captured (from: capture) or received from the decoder (from: arrival) -> counted, "
                    "over the whole stream (5% buckets)",
        },
        "gaps_total": run.gaps.total,
        "gaps": list(run.gaps.recent),
        "reconnects": frames.reconnects(source),
        "video": {"playlist": LIVE_PLAYLIST, "segments": len(run.hls.listed()),
                  "segment_s": config.segment_s, "retention_s": config.segment_retention_s},
        "model": model_facts(run.detector, config.detection.classes),
        "tracking": {"tracker": config.tracker, "stitching": False, "min_hits": config.min_hits,
                     "threshold": config.detection.threshold,
                     "low_threshold": config.detection.effective_low_threshold},
        "tiling": run.detection.describe(),
    }
