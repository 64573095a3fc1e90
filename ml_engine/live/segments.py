"""The annotated video of a live stream as HLS: MPEG-TS segments of H.264 and a live playlist.

``HlsWriter`` encodes the frames it is given into ``live/seg-000001.ts``, ``seg-000002.ts``...
(each about ``segment_s`` long) and rewrites ``live/index.m3u8`` each time a segment is
complete, so a player (hls.js, Safari, PyAV) can follow the stream a segment behind, and
the whole recording stays playable afterwards. What the playlists list, and their text, is
``playlist.py``'s ``Playlist``: a sliding live window, the whole recording, retention, the state.

* Work per segment does not grow with the stream's age: ``index.m3u8`` lists only the newest
  segments, and ``live/recording.m3u8``, every retained segment, is rewritten at most every
  ``recording_interval_s`` (and when the run stops). At the end both become the whole recording
  with ``#EXT-X-ENDLIST``: a player given ``index.m3u8`` after the end plays all of it.
* Each segment is its own encoder and file, so each starts with a key frame and is complete
  on disk before the playlist names it. Frames come at the rate inference keeps up with, not
  the camera's: every frame carries its own timestamp (90 kHz, MPEG-TS's clock).
* Timestamps are continuous over the whole recording, resumes included: the recording's
  clock follows the frames' wall-clock times (``at``) while they flow; after a gap or a resume
  (``cut``) it continues from where it stopped (the hole is not in the video), and the next
  segment carries ``#EXT-X-DISCONTINUITY`` so players know the picture jumped.
* The segments that retention drops are deleted and reported as removed (``take_changes``).
* ``finish`` closes the last segment and ends the playlist with ``#EXT-X-ENDLIST``.
* ``state()`` is small and JSON-able whatever the run's length; given back to a new writer, it
  continues the numbering and the clock.
"""

from __future__ import annotations

import os
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import av.error
import numpy as np

from core.errors import EncoderError, InvalidInput
from core.outputs import LIVE_PLAYLIST, LIVE_RECORDING, live_segment
from ml_engine.live.playlist import LIVE_SEGMENTS, Playlist, Segment
from ml_engine.media.video import check_encoder_options

TIME_BASE = Fraction(1, 90_000)  # MPEG-TS timestamps count 90 kHz ticks
_NOMINAL_RATE = 25  # only for x264's rate control: real frame times come with each frame
_DEFAULT_FRAME_S = 0.1  # a one-frame segment's length, and the step after a gap
RECORDING_INTERVAL_S = 300.0  # how often, at most, the whole recording's playlist is rewritten while it runs


class _OpenSegment:
    """The segment being written: one MPEG-TS file and one x264 encoder."""

    def __init__(self, path: Path, size: tuple[int, int], crf: int, preset: str, start_s: float,
                 started_at: float) -> None:
        self.path, self.size, self.start_s, self.started_at = path, size, start_s, started_at
        self.partial = path.with_name(f".{path.name}.partial")
        self.last_s = start_s
        self.frames = 0
        try:
            self.container = av.open(str(self.partial), mode="w", format="mpegts")
            stream = self.container.add_stream("libx264", rate=_NOMINAL_RATE)
            stream.width, stream.height = size
            stream.pix_fmt = "yuv420p"
            stream.codec_context.time_base = TIME_BASE
            # zerolatency: no B-frames and no look-ahead, so each frame leaves the encoder at
            # once (no frames held inside it: latency and memory stay small)
            stream.codec_context.options = {"crf": str(crf), "preset": preset, "tune": "zerolatency"}
            self.stream = stream
        except av.error.FFmpegError as exc:
            self.partial.unlink(missing_ok=True)
            raise EncoderError(f"starting a live video segment failed: {exc}") from exc

    def write(self, image: np.ndarray, time_s: float) -> None:
        frame = av.VideoFrame.from_ndarray(image, format="rgb24")
        frame.pts, frame.time_base = round(time_s / TIME_BASE), TIME_BASE
        self._mux(self.stream.encode(frame))
        self.last_s = time_s
        self.frames += 1

    def duration_s(self, next_start_s: float | None) -> float:
        """Up to the next segment's first frame; the last segment gets one more mean frame."""
        if next_start_s is not None:
            return next_start_s - self.start_s
        span = self.last_s - self.start_s
        step = span / (self.frames - 1) if self.frames > 1 else _DEFAULT_FRAME_S
        return span + step

    def close(self) -> None:
        """Flush the encoder and move the file to its name: complete before anyone lists it."""
        try:
            self._mux(self.stream.encode(None))
            self.container.close()
        except BaseException:
            self.abandon()
            raise
        os.replace(self.partial, self.path)

    def abandon(self) -> None:
        try:
            self.container.close()
        except av.error.FFmpegError:
            pass
        finally:
            self.partial.unlink(missing_ok=True)

    def _mux(self, packets: list[av.Packet]) -> None:
        try:
            self.container.mux(packets)
        except av.error.FFmpegError as exc:
            raise EncoderError(f"writing a live video segment failed: {exc}") from exc


class HlsWriter:
    """Frames in, ``live/seg-NNNNNN.ts`` + ``live/index.m3u8`` out (see the module's docstring).

    Not thread-safe: one thread writes. ``take_changes`` hands over what changed on disk since
    its last call (for the service to upload and delete).
    """

    def __init__(
        self,
        output_dir: Path,
        *,
        segment_s: float = 2.0,
        retention_s: float | None = None,
        crf: int = 28,
        preset: str = "veryfast",
        state: dict[str, Any] | None = None,
        live_segments: int = LIVE_SEGMENTS,
        recording_interval_s: float = RECORDING_INTERVAL_S,
    ) -> None:
        if segment_s <= 0:
            raise InvalidInput(f"segment_s must be positive, got {segment_s}")
        if retention_s is not None and retention_s < segment_s:
            raise InvalidInput(f"segment_retention_s must be at least segment_s ({segment_s}), got {retention_s}")
        check_encoder_options(crf, preset)
        self.output_dir = Path(output_dir)
        self.playlist_path = self.output_dir / LIVE_PLAYLIST
        self.recording_path = self.output_dir / LIVE_RECORDING
        self.playlist_path.parent.mkdir(parents=True, exist_ok=True)
        self.recording_interval_s = recording_interval_s
        self._recording_written = time.monotonic()
        self.segment_s = segment_s
        self.crf, self.preset = crf, preset
        self.playlist = Playlist(segment_s, retention_s, live_segments)
        self.clock_s = 0.0  # the recording's time: the next frame is at or after it
        self._origin: float | None = None  # wall time of the recording's 0 s, while frames flow
        self._open: _OpenSegment | None = None
        self._jump = False  # the next segment starts after a discontinuity
        self._changed: dict[str, Path] = {}
        self._removed: list[str] = []
        if state:
            self._restore(state)

    # --- writing ---------------------------------------------------------------------------------

    def write(self, image: np.ndarray, at: float) -> None:
        """Encode one RGB (H, W, 3) frame received at wall time ``at`` (``time.time()``). A new
        resolution starts a new segment."""
        image = _even(image)
        size = (image.shape[1], image.shape[0])
        if self._open is not None and self._open.size != size:
            self.cut(discontinuity=True)  # a new resolution needs a new encoder
        if self._origin is None:
            self._origin = at - self.clock_s
        time_s = max(at - self._origin, self.clock_s)  # a clock that stepped back never goes backwards here
        if self._open is not None and time_s - self._open.start_s >= self.segment_s - 1e-6:  # float noise
            self._close_open(next_start_s=time_s)
        if self._open is None:
            self._open = _OpenSegment(
                self.output_dir / live_segment(self.playlist.next_sequence), size, self.crf, self.preset, time_s, at
            )
            self.playlist.next_sequence += 1
        self._open.write(image, time_s)
        self.clock_s = time_s + 1e-3  # the next frame must come later (a tick is 11 µs)

    def cut(self, discontinuity: bool = True) -> None:
        """End the open segment now (a gap, the end); ``discontinuity``: the next segment is
        marked as a jump in the picture, and its clock steps on by one frame only."""
        if self._open is not None:
            self._close_open(next_start_s=None)
        if discontinuity:
            self._jump = not self.playlist.empty
            self._origin = None

    def finish(self) -> None:
        """Close the last segment and end the playlist (``#EXT-X-ENDLIST``): ``index.m3u8`` and
        ``recording.m3u8`` both list the whole recording."""
        self.cut(discontinuity=False)
        self.playlist.ended = True
        self._write_recording()

    def pause(self) -> None:
        """The run stops without the stream ending (a worker hands it on): close the open segment
        and write the recording's playlist so far; no ``#EXT-X-ENDLIST`` (players keep polling)."""
        self.cut(discontinuity=False)
        self._write_recording()

    def abandon(self) -> None:
        """After a failure: drop the half-written segment, keep what is complete."""
        if self._open is not None:
            self._open.abandon()
            self._open = None

    def take_changes(self) -> tuple[dict[str, Path], list[str]]:
        """({output name: path} written since the last call, [output names deleted since])."""
        changed, removed = self._changed, self._removed
        self._changed, self._removed = {}, []
        return changed, removed

    def listed(self) -> list[Segment]:
        """The segments the playlist names, oldest first."""
        return self.playlist.listed()

    def state(self) -> dict[str, Any]:
        """The numbering, the clock and the listed segments, small whatever the run's length."""
        return self.playlist.state(self.clock_s)

    def _close_open(self, next_start_s: float | None) -> None:
        assert self._open is not None
        segment, self._open = self._open, None
        segment.close()
        duration = max(segment.duration_s(next_start_s), 1e-3)
        if next_start_s is None:
            self.clock_s = max(self.clock_s, segment.start_s + duration)
        sequence = self.playlist.next_sequence - 1
        dropped = self.playlist.add(Segment(sequence, duration, self._jump, segment.started_at))
        self._jump = False
        self._changed[live_segment(sequence)] = segment.path
        self._delete(dropped)
        self._write_playlist()
        if time.monotonic() - self._recording_written >= self.recording_interval_s:
            self._write_recording()

    def _delete(self, dropped: list[Segment]) -> None:
        """The files of the segments retention dropped: deleted, and reported as removed."""
        for segment in dropped:
            (self.output_dir / segment.name).unlink(missing_ok=True)
            self._changed.pop(segment.name, None)
            self._removed.append(segment.name)

    def _write_playlist(self) -> None:
        _replace(self.playlist_path, self.playlist.live())
        self._changed[LIVE_PLAYLIST] = self.playlist_path

    def _write_recording(self) -> None:
        """``recording.m3u8`` (every listed segment); at the end ``index.m3u8`` becomes the same."""
        text = self.playlist.whole()
        _replace(self.recording_path, text)
        self._changed[LIVE_RECORDING] = self.recording_path
        self._recording_written = time.monotonic()
        if self.playlist.ended:
            _replace(self.playlist_path, text)
            self._changed[LIVE_PLAYLIST] = self.playlist_path

    def _restore(self, state: dict[str, Any]) -> None:
        self.clock_s = self.playlist.restore(state) + _DEFAULT_FRAME_S
        self._jump = not self.playlist.empty  # the picture jumps at a resume
        self._delete(self.playlist.apply_retention())
        self._write_playlist()


def _replace(path: Path, text: str) -> None:
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, path)  # a player never reads half a playlist


def _even(image: np.ndarray) -> np.ndarray:
    """yuv420p needs even sizes: repeat the last row/column of an odd-sized frame."""
    pad_bottom, pad_right = image.shape[0] % 2, image.shape[1] % 2
    if not (pad_bottom or pad_right):
        return image
    return np.pad(image, ((0, pad_bottom), (0, pad_right), (0, 0)), mode="edge")
