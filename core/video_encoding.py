"""The H.264 encoder's speed presets: in core, because the service's VIDEO_PRESET setting is
checked against them (``core.config``) and the engine's encoder (``ml_engine.media.video``) uses them."""

from __future__ import annotations

# libx264's speed presets, fastest first. Faster presets cost bigger files at the same CRF.
X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")
