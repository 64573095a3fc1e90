"""The annotated video of a live stream as HLS: MPEG-TS segments of H.264 and a live playlist.

``HlsWriter`` encodes the frames it is given into ``live/seg-000001.ts``, ``seg-000002.ts``...
(each about ``segment_s`` long) and rewrites ``live/index.m3u8`` each time a segment is
complete, so a player (hls.js, Safari, PyAV) can follow the stream a segment behind, and
the whole recording stays playable afterwards.

* Work per segment does not grow with the stream's age: while the stream runs, ``index.m3u8``
  lists only the newest ``live_segments`` (a sliding window: ``EXT-X-MEDIA-SEQUENCE`` moves on),
  and ``live/recording.m3u8``, every retained segment, is rewritten at most every
  ``recording_interval_s`` (and when the run stops). At the end both become the whole recording
  with ``#EXT-X-ENDLIST``: a player given ``index.m3u8`` after the end plays all of it.

* Each segment is its own encoder and file, so each starts with a key frame and is complete
  on disk before the playlist names it. Frames come at the rate inference keeps up with, not
  the camera's: every frame carries its own timestamp (90 kHz, MPEG-TS's clock).
* Timestamps are continuous over the whole recording, resumes included: the recording's
  clock follows the frames' wall-clock times (``at``) while they flow; after a gap or a resume
  (``cut``) it continues from where it stopped (the hole is not in the video), and the next
  segment carries ``#EXT-X-DISCONTINUITY`` so players know the picture jumped.
* ``retention_s`` keeps only the newest segments worth that many seconds: older ones leave the
  playlist (``EXT-X-MEDIA-SEQUENCE`` and ``EXT-X-DISCONTINUITY-SEQUENCE`` move on) and their
  files are deleted and reported as removed. None keeps every segment: the recording.
* Each segment carries ``#EXT-X-PROGRAM-DATE-TIME``: the wall-clock time of its first frame,
  so a player can tell how far behind the camera it is, and the recording maps to real time.
* ``finish`` closes the last segment and ends the playlist with ``#EXT-X-ENDLIST``.
* ``state()`` is small and JSON-able whatever the run's length (older segments are folded into
  runs of consecutive numbers, listed with their mean length); given back to a new writer, it
  continues the numbering and the clock.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import av.error
import numpy as np

from core.errors import EncoderError, InvalidInput
from core.outputs import LIVE_PLAYLIST, LIVE_RECORDING, live_segment
from ml_engine.media.video import check_encoder_options

TIME_BASE = Fraction(1, 90_000)  # MPEG-TS timestamps count 90 kHz ticks
_NOMINAL_RATE = 25  # only for x264's rate control: real frame times come with each frame
_DEFAULT_FRAME_S = 0.1  # a one-frame segment's length, and the step after a gap
_STATE_SEGMENTS = 512  # segments the state lists one by one; older ones are folded (size bound)
LIVE_SEGMENTS = 60  # segments the live playlist lists: 2 minutes of 2 s segments, for players that fall behind
RECORDING_INTERVAL_S = 300.0  # how often, at most, the whole recording's playlist is rewritten while it runs


@dataclass(frozen=True)
class Segment:
    """One finished segment: its number, length, whether the picture jumped before it, and the
    wall-clock time (``time.time()``) of its first frame, when known."""

    sequence: int
    duration_s: float
    discontinuity: bool = False
    started_at: float | None = None

    @property
    def name(self) -> str:
        return live_segment(self.sequence)


@dataclass
class _Folded:
    """Segments too old to list one by one in the state: numbers ``first..first+count-1``, of
    ``seconds`` in all. A new run starts where numbers skip (a resume lost the segment that
    was open): its first segment follows a discontinuity, which the playlist keeps."""

    first: int
    count: int = 0
    seconds: float = 0.0
    discontinuity: bool = False
    started_at: float | None = None  # the first segment's; the others' follow from the durations

    def segments(self) -> Iterator[Segment]:
        mean = self.seconds / self.count if self.count else 0.0
        for offset in range(self.count):
            yield Segment(self.first + offset, mean, self.discontinuity and offset == 0,
                          self.started_at if offset == 0 else None)

    def to_list(self) -> list[Any]:
        return [self.first, self.count, round(self.seconds, 3), int(self.discontinuity), self.started_at]


def _fold(runs: list[_Folded], segment: Segment) -> None:
    """Add ``segment`` to the last run when it continues it, else start a run."""
    last = runs[-1] if runs else None
    if last is None or last.first + last.count != segment.sequence or segment.discontinuity:  # keep every jump
        last = _Folded(segment.sequence, discontinuity=segment.discontinuity, started_at=segment.started_at)
        runs.append(last)
    last.count += 1
    last.seconds += segment.duration_s


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
        self.live_segments, self.recording_interval_s = max(1, live_segments), recording_interval_s
        self._recording_written = time.monotonic()
        self.segment_s, self.retention_s = segment_s, retention_s
        self.crf, self.preset = crf, preset
        self.segments: list[Segment] = []  # listed in the playlist, oldest first
        self.folded: list[_Folded] = []  # listed too, before ``segments`` (a resumed long run)
        self.next_sequence = 1
        self.discontinuity_sequence = 0  # discontinuities before the first listed segment
        self._listed_jumps = 0  # discontinuities among the listed segments
        self.clock_s = 0.0  # the recording's time: the next frame is at or after it
        self._origin: float | None = None  # wall time of the recording's 0 s, while frames flow
        self.ended = False
        self._open: _OpenSegment | None = None
        self._aged: list[_Folded] | None = None  # the state's folded runs, kept between states (no retention)
        self._aged_count = 0  # leading ``segments`` already folded into ``_aged``
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
                self.output_dir / live_segment(self.next_sequence), size, self.crf, self.preset, time_s, at
            )
            self.next_sequence += 1
        self._open.write(image, time_s)
        self.clock_s = time_s + 1e-3  # the next frame must come later (a tick is 11 µs)

    def cut(self, discontinuity: bool = True) -> None:
        """End the open segment now (a gap, the end); ``discontinuity``: the next segment is
        marked as a jump in the picture, and its clock steps on by one frame only."""
        if self._open is not None:
            self._close_open(next_start_s=None)
        if discontinuity:
            self._jump = bool(self.segments or self.folded)
            self._origin = None

    def finish(self) -> None:
        """Close the last segment and end the playlist (``#EXT-X-ENDLIST``): ``index.m3u8`` and
        ``recording.m3u8`` both list the whole recording."""
        self.cut(discontinuity=False)
        self.ended = True
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

    def _close_open(self, next_start_s: float | None) -> None:
        assert self._open is not None
        segment, self._open = self._open, None
        segment.close()
        duration = max(segment.duration_s(next_start_s), 1e-3)
        if next_start_s is None:
            self.clock_s = max(self.clock_s, segment.start_s + duration)
        self.segments.append(Segment(self.next_sequence - 1, duration, self._jump, segment.started_at))
        self._listed_jumps += self._jump
        self._jump = False
        self._changed[live_segment(self.next_sequence - 1)] = segment.path
        self._apply_retention()
        self._write_playlist()
        if time.monotonic() - self._recording_written >= self.recording_interval_s:
            self._write_recording()

    def _apply_retention(self) -> None:
        if self.retention_s is None:
            return
        listed = self.listed()
        total = sum(s.duration_s for s in listed)
        for oldest in listed[:-1]:
            if total - oldest.duration_s < self.retention_s:
                break
            total -= oldest.duration_s
            self._drop_oldest()

    def _drop_oldest(self) -> None:
        if self.folded:
            run = self.folded[0]
            segment = next(run.segments())
            run.first, run.count, run.seconds = run.first + 1, run.count - 1, run.seconds - segment.duration_s
            run.discontinuity = False
            if not run.count:
                self.folded.pop(0)
        else:
            segment = self.segments.pop(0)
        self._drop(segment)

    def _drop(self, segment: Segment) -> None:
        if segment.discontinuity:
            self.discontinuity_sequence += 1
            self._listed_jumps -= 1
        (self.output_dir / segment.name).unlink(missing_ok=True)
        self._changed.pop(segment.name, None)
        self._removed.append(segment.name)

    # --- the playlist ----------------------------------------------------------------------------

    def listed(self) -> list[Segment]:
        """The segments the playlist names, oldest first."""
        older = [segment for run in self.folded for segment in run.segments()]
        return older + self.segments

    def playlist(self) -> str:
        """The whole recording's playlist: every listed segment (``recording.m3u8``, and
        ``index.m3u8`` once the stream ended)."""
        return self._render(self.listed(), self.discontinuity_sequence, whole=True)

    def live_playlist(self) -> str:
        """The live playlist: the newest ``live_segments`` only, so its size, and the work of
        writing and serving it, stay the same however long the stream has run."""
        if len(self.segments) >= self.live_segments:
            window = self.segments[-self.live_segments:]
        else:  # a resumed run's first segments: the tail of the folded ones too (once per segment, briefly)
            window = self.listed()[-self.live_segments:]
        jumps_before = self._listed_jumps - sum(s.discontinuity for s in window)
        return self._render(window, self.discontinuity_sequence + jumps_before, whole=False)

    def _render(self, listed: list[Segment], discontinuity_sequence: int, whole: bool) -> str:
        longest = max((s.duration_s for s in listed), default=self.segment_s)
        lines = [
            "#EXTM3U",
            "#EXT-X-VERSION:3",
            f"#EXT-X-TARGETDURATION:{max(1, math.ceil(max(longest, self.segment_s) - 1e-6))}",
            f"#EXT-X-MEDIA-SEQUENCE:{listed[0].sequence if listed else self.next_sequence}",
            f"#EXT-X-DISCONTINUITY-SEQUENCE:{discontinuity_sequence}",
        ]
        if whole and self.retention_s is None:
            lines.append("#EXT-X-PLAYLIST-TYPE:EVENT")  # segments are only ever added
        for segment in listed:
            if segment.discontinuity:
                lines.append("#EXT-X-DISCONTINUITY")
            if segment.started_at is not None:
                lines.append(f"#EXT-X-PROGRAM-DATE-TIME:{_iso(segment.started_at)}")
            lines += [f"#EXTINF:{segment.duration_s:.3f},", Path(segment.name).name]
        if whole and self.ended:
            lines.append("#EXT-X-ENDLIST")
        return "\n".join(lines) + "\n"

    def _write_playlist(self) -> None:
        _replace(self.playlist_path, self.live_playlist())
        self._changed[LIVE_PLAYLIST] = self.playlist_path

    def _write_recording(self) -> None:
        """``recording.m3u8`` (every listed segment); at the end ``index.m3u8`` becomes the same."""
        text = self.playlist()
        _replace(self.recording_path, text)
        self._changed[LIVE_RECORDING] = self.recording_path
        self._recording_written = time.monotonic()
        if self.ended:
            _replace(self.playlist_path, text)
            self._changed[LIVE_PLAYLIST] = self.playlist_path

    # --- resume ----------------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """The numbering, the clock and the listed segments, small whatever the run's length."""
        folded, detailed = self._state_segments()
        return {
            "next_sequence": self.next_sequence,
            "discontinuity_sequence": self.discontinuity_sequence,
            "clock_s": round(self.clock_s, 3),
            "folded": [run.to_list() for run in folded],
            "segments": [[s.sequence, round(s.duration_s, 3), int(s.discontinuity), _rounded(s.started_at)]
                         for s in detailed],
        }

    def _state_segments(self) -> tuple[list[_Folded], list[Segment]]:
        """(folded runs, segments listed one by one) for the state. The state is taken several
        times a second: without retention (segments are only ever added) the folding is kept
        and only extended, so its cost does not grow with the stream's age."""
        if self.retention_s is not None:  # few segments, and the oldest ones leave: fold afresh
            folded = [self._copy(run) for run in self.folded]
            for segment in self.segments[:-_STATE_SEGMENTS] if len(self.segments) > _STATE_SEGMENTS else []:
                _fold(folded, segment)
            return folded, self.segments[-_STATE_SEGMENTS:]
        if self._aged is None:
            self._aged, self._aged_count = [self._copy(run) for run in self.folded], 0
        while len(self.segments) - self._aged_count > _STATE_SEGMENTS:
            _fold(self._aged, self.segments[self._aged_count])
            self._aged_count += 1
        return self._aged, self.segments[self._aged_count:]

    @staticmethod
    def _copy(run: _Folded) -> _Folded:
        return _Folded(run.first, run.count, run.seconds, run.discontinuity, run.started_at)

    def _restore(self, state: dict[str, Any]) -> None:
        try:
            self.next_sequence = int(state["next_sequence"])
            self.discontinuity_sequence = int(state.get("discontinuity_sequence", 0))
            self.clock_s = float(state.get("clock_s", 0.0)) + _DEFAULT_FRAME_S
            self.folded = [_Folded(int(a), int(n), float(t), bool(j), _time(at))
                           for a, n, t, j, at in state.get("folded", [])]
            self.segments = [Segment(int(n), float(d), bool(j), _time(at)) for n, d, j, at in state.get("segments", [])]
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInput(f"the live video's resume state is unreadable: {exc}") from None
        self._jump = bool(self.segments or self.folded)  # the picture jumps at a resume
        self._listed_jumps = sum(s.discontinuity for s in self.listed())
        self._apply_retention()
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


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _rounded(at: float | None) -> float | None:
    return None if at is None else round(at, 3)


def _time(at: Any) -> float | None:
    return None if at is None else float(at)
