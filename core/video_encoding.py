"""The H.264 encoder's choices: in core, because the service's VIDEO_PRESET and VIDEO_ENCODER
settings are checked against them (``core.config``) and the engine's encoder
(``ml_engine.media.video``) uses them."""

from __future__ import annotations

# libx264's speed presets, fastest first. Faster presets cost bigger files at the same CRF.
X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")

# Which H.264 encoder writes annotated.mp4: auto takes NVENC (an NVIDIA GPU's encoder, no CPU
# spent on x264) where FFmpeg has it and it opens, and libx264 otherwise.
VIDEO_ENCODERS = ("auto", "libx264", "h264_nvenc")
