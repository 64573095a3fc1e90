"""Video in and out with PyAV: probe a file, decode every frame, write a browser-playable MP4.

This module must stay free of torch and transformers: the API process imports ``probe`` to
validate uploads and its image has no ML stack. Every PyAV error is converted here into a
``core.errors`` VideoError with a message a user can act on.
"""

from __future__ import annotations

import functools
import io
import logging
import os
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, cast

import av
import av.error
import numpy as np

from core.errors import (
    DISK_ERRNOS,
    CorruptVideo,
    EmptyVideo,
    EncoderError,
    InvalidFrameRate,
    InvalidInput,
    NotAVideo,
    NoVideoStream,
    VideoTooLarge,
    VideoTooLong,
)
from core.video_encoding import VIDEO_ENCODERS, X264_PRESETS

log = logging.getLogger(__name__)

# Below one frame every 100 s or above 1000 fps a declared rate is a broken header, not a video
# (an MP4 whose time scale is 0 decodes as 1/1001 fps, for instance).
MIN_FPS = Fraction(1, 100)
MAX_FPS = Fraction(1000)

# Demuxers that read still images: an image is not a video, even though FFmpeg opens it.
_IMAGE_FORMATS = {"image2", "image2pipe", "png_pipe", "jpeg_pipe", "webp_pipe", "bmp_pipe", "tiff_pipe"}
_IMAGE_FORMAT_SUFFIX = "_pipe"

# Leading bytes of video containers: a file that starts like one but will not open is a broken
# video (CorruptVideo), not some other kind of file (NotAVideo).
_CONTAINER_SIGNATURES = (
    (4, b"ftyp", "MP4/MOV"),
    (4, b"moov", "MOV"),
    (4, b"mdat", "MOV"),
    (0, b"\x1a\x45\xdf\xa3", "Matroska/WebM"),
    (8, b"AVI ", "AVI"),
    (0, b"\x00\x00\x01\xba", "MPEG-PS"),
    (0, b"FLV", "FLV"),
)


@dataclass(frozen=True)
class VideoInfo:
    """What ``probe`` learnt about a video.

    ``width``/``height`` are the coded size; ``rotation`` (counter-clockwise degrees: 0, 90,
    180 or 270) is applied by ``iter_frames``, so decoded frames have ``display_size``.
    ``frames`` is exact when the container's index says so (``frames_exact``), otherwise
    estimated from the duration.
    """

    width: int
    height: int
    fps: Fraction
    frames: int | None
    duration_s: float
    rotation: int
    codec: str
    frames_exact: bool = False

    @property
    def display_size(self) -> tuple[int, int]:
        """(width, height) of the frames as shown, after rotation."""
        if self.rotation in (90, 270):
            return self.height, self.width
        return self.width, self.height


@dataclass(frozen=True)
class VideoLimits:
    """What a service accepts (MAX_VIDEO_PIXELS, MAX_VIDEO_SECONDS); None: no limit.

    Checked on the header by ``probe``, and the duration again on the decoded frames (a
    header may understate it)."""

    max_pixels: int | None = None
    max_seconds: float | None = None

    def check(self, width: int, height: int, duration_s: float, name: str) -> None:
        """Raises VideoTooLarge or VideoTooLong."""
        if self.max_pixels is not None and width * height > self.max_pixels:
            raise VideoTooLarge(
                f"{name} is {width}x{height} ({width * height / 1e6:.1f} megapixels per frame); this "
                f"service accepts at most {self.max_pixels / 1e6:.1f} megapixels (MAX_VIDEO_PIXELS; "
                "8K, 7680x4320, by default): downscale it first"
            )
        self.check_time(duration_s, name, decoded=False)

    def check_time(self, time_s: float, name: str, decoded: bool = True) -> None:
        """``time_s``: the video's duration, or (``decoded``) the time of a frame decoded."""
        if self.max_seconds is not None and time_s > self.max_seconds:
            runs = f"runs for at least {_duration(time_s)}" if decoded else f"runs for {_duration(time_s)}"
            raise VideoTooLong(
                f"{name} {runs}; this service accepts at most {_duration(self.max_seconds)} "
                "(MAX_VIDEO_SECONDS): cut it into parts"
            )


def _duration(seconds: float) -> str:
    return f"{seconds / 3600:.2f} h" if seconds >= 3600 else f"{seconds:.1f} s"


@dataclass
class Frame:
    """One decoded frame: RGB uint8 HxWx3 with rotation applied."""

    index: int
    time_s: float
    image: np.ndarray


# --- probing ------------------------------------------------------------------------------


def probe(source: str | os.PathLike[str] | BinaryIO, limits: VideoLimits | None = None) -> VideoInfo:
    """Read a video's header and decode its first frame.

    ``source`` is a path, or a seekable binary file object (e.g. a ranged reader over a blob,
    so an upload can be checked without downloading it); a file object is left open.
    ``limits``: refuse a video whose header says it is too large or too long, before its
    first frame is decoded.

    Raises:
        InvalidInput: the file does not exist.
        EmptyVideo: the file is empty.
        NotAVideo: the file is not a video (text, an image, an unknown format).
        NoVideoStream: the container holds no video stream (audio only).
        CorruptVideo: the file looks like a video but cannot be decoded (truncated, damaged).
        InvalidFrameRate: the video declares no usable frame rate.
        VideoTooLarge, VideoTooLong: the video is over ``limits``.
    """
    opened = _Source.of(source)
    container = _open_container(opened)
    name = opened.name
    try:
        _reject_images(container, name)
        stream = _video_stream(container, name)
        fps = _frame_rate(stream, name)
        duration_s = _duration_seconds(container, stream)
        if limits is not None:
            limits.check(stream.codec_context.width, stream.codec_context.height, duration_s, name)
        first = _first_frame(container, stream, name)
        return VideoInfo(
            width=stream.codec_context.width,
            height=stream.codec_context.height,
            fps=fps,
            frames=_frame_count(stream, duration_s, fps),
            duration_s=duration_s,
            rotation=_normalise_rotation(first.rotation),
            codec=stream.codec_context.name,
            frames_exact=bool(stream.frames and stream.frames > 0),
        )
    finally:
        container.close()


@dataclass(frozen=True)
class _Source:
    """A path or a seekable binary file, checked for existence and emptiness."""

    name: str
    target: str | BinaryIO  # what av.open takes

    @classmethod
    def of(cls, source: str | os.PathLike[str] | BinaryIO) -> _Source:
        if isinstance(source, (str, os.PathLike)):
            return cls._of_path(Path(source))
        return cls._of_file(source)

    @classmethod
    def _of_path(cls, path: Path) -> _Source:
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            raise InvalidInput(f"video file not found: {path}") from None
        if path.is_dir():
            raise NotAVideo(f"{path.name} is a directory, not a video file")
        if size == 0:
            raise EmptyVideo(f"{path.name} is empty (0 bytes): upload the video file again")
        return cls(path.name, str(path))

    @classmethod
    def _of_file(cls, handle: BinaryIO) -> _Source:
        name = Path(str(getattr(handle, "name", "") or "the video")).name
        if handle.seek(0, io.SEEK_END) == 0:
            raise EmptyVideo(f"{name} is empty (0 bytes): upload the video file again")
        handle.seek(0)
        return cls(name, handle)

    def head(self, size: int) -> bytes:
        if isinstance(self.target, str):
            with open(self.target, "rb") as handle:
                return handle.read(size)
        self.target.seek(0)
        head = self.target.read(size)
        self.target.seek(0)
        return head


def _open_container(source: _Source) -> av.container.InputContainer:
    try:
        return av.open(source.target, mode="r")
    except av.error.FFmpegError as exc:
        container_kind = _sniff_container(source)
        if container_kind:
            raise CorruptVideo(
                f"{source.name} looks like a {container_kind} video but cannot be opened: it is "
                f"truncated or damaged (for MP4, its index is missing) ({_reason(exc)})"
            ) from None
        raise NotAVideo(
            f"{source.name} is not a video FFmpeg can read; upload an MP4, MOV, AVI or MKV file"
        ) from None


def _sniff_container(source: _Source) -> str | None:
    head = source.head(16)
    for offset, magic, kind in _CONTAINER_SIGNATURES:
        if head[offset : offset + len(magic)] == magic:
            return kind
    return None


def _reject_images(container: av.container.InputContainer, name: str) -> None:
    demuxer = container.format.name
    if demuxer in _IMAGE_FORMATS or demuxer.endswith(_IMAGE_FORMAT_SUFFIX):
        raise NotAVideo(f"{name} is a still image ({demuxer.removesuffix('_pipe')}), not a video")


def _video_stream(container: av.container.InputContainer, name: str) -> av.video.stream.VideoStream:
    if not container.streams.video:
        kinds: list[str] = sorted({stream.type for stream in container.streams}) or ["nothing"]
        raise NoVideoStream(f"{name} has no video stream (it contains {', '.join(kinds)})")
    stream = container.streams.video[0]
    if not stream.codec_context.width or not stream.codec_context.height:
        raise CorruptVideo(f"{name}: the video stream declares no frame size")
    return stream


def _frame_rate(stream: av.video.stream.VideoStream, name: str) -> Fraction:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    if not rate or rate <= 0:
        raise InvalidFrameRate(f"{name} declares no frame rate, so frame times are unknown")
    rate = Fraction(rate)
    if not MIN_FPS <= rate <= MAX_FPS:
        raise InvalidFrameRate(
            f"{name} declares {float(rate):.4g} frames per second, which is not a usable "
            f"frame rate (expected {float(MIN_FPS):g} to {float(MAX_FPS):g}); its header is broken"
        )
    return rate


def _first_frame(
    container: av.container.InputContainer, stream: av.video.stream.VideoStream, name: str
) -> av.VideoFrame:
    try:
        for frame in container.decode(stream):
            return frame
    except av.error.FFmpegError as exc:
        raise CorruptVideo(f"{name}: the first frame cannot be decoded ({_reason(exc)})") from None
    raise CorruptVideo(f"{name}: the video stream holds no decodable frame")


def _duration_seconds(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> float:
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration:
        return container.duration / av.time_base
    return 0.0


def _frame_count(stream: av.video.stream.VideoStream, duration_s: float, fps: Fraction) -> int | None:
    if stream.frames and stream.frames > 0:
        return int(stream.frames)
    if duration_s > 0:
        return max(1, round(duration_s * float(fps)))
    return None


def _normalise_rotation(degrees: float | int | None) -> int:
    """FFmpeg reports -180..180 counter-clockwise; snap to 0/90/180/270."""
    if not degrees:
        return 0
    return int(round(degrees / 90.0)) % 4 * 90


def _reason(exc: Exception) -> str:
    return getattr(exc, "strerror", None) or str(exc)


# --- decoding -----------------------------------------------------------------------------


def iter_frames(path: str | os.PathLike[str], info: VideoInfo | None = None) -> Iterator[Frame]:
    """Decode every frame of ``path`` as RGB with rotation applied, one at a time.

    ``info`` (from ``probe``) saves a second probe. Raises the errors of ``probe``, and
    CorruptVideo when decoding fails part-way through (a truncated or damaged file).
    """
    source = _Source.of(path)
    info = info or probe(path)
    container = _open_container(source)
    try:
        stream = _video_stream(container, source.name)
        stream.thread_type = "AUTO"  # frame + slice threads: decoding overlaps the rest of the pipeline
        yield from _decode(container, stream, info, source.name)
    finally:
        container.close()


def _decode(
    container: av.container.InputContainer,
    stream: av.video.stream.VideoStream,
    info: VideoInfo,
    name: str,
) -> Iterator[Frame]:
    quarter_turns = info.rotation // 90
    start_pts = stream.start_time or 0
    index = 0
    frames = container.decode(stream)
    while True:
        try:
            frame = next(frames)
        except StopIteration:
            _check_complete(info, index, name)
            return
        except av.error.FFmpegError as exc:
            raise CorruptVideo(
                f"{name} is truncated or damaged: decoding failed after frame {index} ({_reason(exc)})"
            ) from None
        image: np.ndarray = frame.to_ndarray(format="rgb24")
        if quarter_turns:
            image = np.ascontiguousarray(np.rot90(image, k=quarter_turns))
        yield Frame(index=index, time_s=_frame_time(frame, start_pts, index, info.fps), image=image)
        index += 1


def _check_complete(info: VideoInfo, decoded: int, name: str) -> None:
    """Frame-threaded decoding ends quietly at a truncation; the index tells us it was cut short.

    A couple of frames of slack: some muxers count a frame or two the decoder drops.
    """
    if not info.frames_exact or info.frames is None:
        return
    if info.frames - decoded > max(2, info.frames // 200):
        raise CorruptVideo(
            f"{name} is truncated or damaged: it ended after {decoded} of its {info.frames} frames"
        )


def _frame_time(frame: av.VideoFrame, start_pts: int, index: int, fps: Fraction) -> float:
    if frame.pts is None or frame.time_base is None:
        return float(index / fps)
    return max(0.0, float((frame.pts - start_pts) * frame.time_base))


# --- encoding -----------------------------------------------------------------------------


def check_encoder_options(crf: int, preset: str, encoder: str = "libx264") -> None:
    """Reject encoder options the encoder would fail on later, mid-video, with a vaguer message."""
    if preset not in X264_PRESETS:
        raise InvalidInput(f"unknown x264 preset {preset!r}; use one of {', '.join(X264_PRESETS)}")
    if not 0 <= crf <= 51:
        raise InvalidInput(f"x264 crf must be within 0..51, got {crf}")
    if encoder not in VIDEO_ENCODERS:
        raise InvalidInput(f"unknown video encoder {encoder!r}; use one of {', '.join(VIDEO_ENCODERS)}")


@dataclass(frozen=True)
class EncoderChoice:
    """The H.264 encoder a writer uses, and why (stats.json says both)."""

    codec: str  # "libx264" or "h264_nvenc"
    reason: str


@dataclass(frozen=True)
class NvencProbe:
    """What decides whether NVENC can be used here: the FFmpeg build's encoders, an NVIDIA
    device, and whether the encoder opens (it needs the driver and an NVENC unit: an H100 or
    A100 has none). ``machine()`` looks at this machine; tests build other machines."""

    codecs: frozenset[str]
    nvidia_device: bool
    open_nvenc: Callable[[], None]

    @classmethod
    def machine(cls) -> NvencProbe:
        return cls(frozenset(av.codecs_available), _nvidia_device_present(), _open_nvenc)

    def problem(self) -> str | None:
        """Why NVENC cannot be used here, or None when it can."""
        if NVENC not in self.codecs:
            return f"this FFmpeg build has no {NVENC}"
        if not self.nvidia_device:
            return "no NVIDIA GPU is visible (no /dev/nvidia0)"
        try:
            self.open_nvenc()
        except (av.error.FFmpegError, ValueError, OSError) as exc:  # no driver, no NVENC unit, no free session
            return f"{NVENC} did not open ({_reason(exc)})"
        return None


NVENC = "h264_nvenc"
X264 = "libx264"


def choose_encoder(requested: str = "auto", probe: NvencProbe | None = None) -> EncoderChoice:
    """libx264 when asked for; otherwise NVENC where it can be used, else libx264 (logged when
    NVENC was asked for by name). ``probe``: this machine's, looked at once per process."""
    if requested not in VIDEO_ENCODERS:
        raise InvalidInput(f"unknown video encoder {requested!r}; use one of {', '.join(VIDEO_ENCODERS)}")
    if requested == X264:
        return EncoderChoice(X264, "VIDEO_ENCODER=libx264")
    problem = probe.problem() if probe is not None else _machine_nvenc_problem()
    if problem is None:
        return EncoderChoice(NVENC, f"VIDEO_ENCODER={requested}: NVENC opens on this machine")
    if requested == NVENC:
        log.warning("VIDEO_ENCODER=h264_nvenc, but %s: encoding with libx264", problem)
    return EncoderChoice(X264, f"VIDEO_ENCODER={requested}, and {problem}")


@functools.cache
def _machine_nvenc_problem() -> str | None:
    return NvencProbe.machine().problem()


def _nvidia_device_present() -> bool:
    return any(Path("/dev").glob("nvidia[0-9]*")) or Path("/proc/driver/nvidia/version").exists()


def _open_nvenc() -> None:
    """Open NVENC on a small frame size and let it go: raises when it cannot run here."""
    context = cast(av.video.codeccontext.VideoCodecContext, av.CodecContext.create(NVENC, "w"))
    context.width, context.height, context.pix_fmt = 256, 256, "yuv420p"
    context.time_base = Fraction(1, 30)
    context.open()


def _encoder_options(codec: str, crf: int, preset: str) -> dict[str, str]:
    """libx264: the preset and CRF asked for. NVENC: its middle preset (p4) at the constant
    quality closest to that CRF; x264's presets mean nothing to it."""
    if codec == NVENC:
        return {"preset": "p4", "tune": "hq", "rc": "vbr", "cq": str(max(crf, 1)), "b": "0"}
    return {"crf": str(crf), "preset": preset}


class VideoWriter:
    """Write RGB frames to an H.264/yuv420p MP4 with faststart: playable in every browser.

    Use as a context manager. Frames are written to a temporary name beside ``path`` and
    renamed to ``path`` only when the block exits cleanly, so a failure never leaves a file
    that looks complete. The frame rate is kept exactly (30000/1001 stays 30000/1001): frame
    ``n`` gets pts ``n`` in a time base of ``1/fps``. Odd sizes, which yuv420p cannot hold,
    are padded to even by repeating the last row/column.

    ``encoder``: ``libx264`` (the default), ``h264_nvenc`` or ``auto`` (``choose_encoder``);
    when NVENC was chosen but does not open, the file is written with libx264. ``encoder_used``
    says which wrote it, from the block's start.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        width: int,
        height: int,
        fps: Fraction | int | float,
        *,
        crf: int = 23,
        preset: str = "veryfast",
        encoder: str = X264,
        nvenc_probe: NvencProbe | None = None,
    ) -> None:
        if width <= 0 or height <= 0:
            raise InvalidInput(f"video size must be positive, got {width}x{height}")
        check_encoder_options(crf, preset, encoder)
        self.path = Path(path)
        self.width, self.height = width, height
        self.fps = _as_fraction(fps)
        self.encoded_size = (width + width % 2, height + height % 2)
        self.frames_written = 0
        self._crf, self._preset = crf, preset
        self.encoder = choose_encoder(encoder, nvenc_probe)
        self._temp_path = self.path.with_name(f".{self.path.stem}.{secrets.token_hex(4)}.partial.mp4")
        self._container: av.container.OutputContainer | None = None
        self._stream: av.video.stream.VideoStream | None = None
        self._frame_time_base = Fraction(1) / self.fps

    @property
    def encoder_used(self) -> str:
        return self.encoder.codec

    def __enter__(self) -> VideoWriter:
        try:
            self._open(self.encoder.codec)
        except (av.error.FFmpegError, ValueError) as exc:
            if self.encoder.codec == X264:
                self._abandon()
                raise EncoderError(f"the H.264 encoder did not open: {_reason(exc)}") from exc
            self._abandon()
            log.warning("%s did not open (%s): encoding with libx264", self.encoder.codec, _reason(exc))
            self.encoder = EncoderChoice(X264, f"{self.encoder.codec} did not open ({_reason(exc)})")
            self._open(X264)
        return self

    def _open(self, codec: str) -> None:
        self._container = av.open(
            str(self._temp_path), mode="w", format="mp4", options={"movflags": "+faststart"}
        )
        # a video codec's name gives a video stream; the stubs know that only of literal names
        stream = cast(av.video.stream.VideoStream, self._container.add_stream(codec, rate=self.fps))
        stream.width, stream.height = self.encoded_size
        stream.pix_fmt = "yuv420p"
        stream.codec_context.options = _encoder_options(codec, self._crf, self._preset)
        self._stream = stream
        stream.codec_context.open()  # now, not at the first frame: an encoder that cannot open is replaced here

    def write(self, image_rgb: np.ndarray) -> None:
        """Encode one HxWx3 uint8 RGB frame of the size given to the constructor."""
        if self._container is None or self._stream is None:
            raise EncoderError("VideoWriter.write called outside its 'with' block")
        if image_rgb.shape != (self.height, self.width, 3):
            raise InvalidInput(
                f"frame is {image_rgb.shape}, the video is {self.height}x{self.width}x3 (HxWxRGB)"
            )
        frame = yuv420p_frame(_pad_to_even(image_rgb))
        frame.pts = self.frames_written
        frame.time_base = self._frame_time_base
        self._mux(self._stream.encode(frame))
        self.frames_written += 1

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc_type is not None:
            self._abandon()
            return
        try:
            self._finish()
            self._close()  # closing writes the index, moved to the front (faststart)
            os.replace(self._temp_path, self.path)
        except BaseException:
            self._abandon()
            raise

    def _finish(self) -> None:
        assert self._stream is not None
        self._mux(self._stream.encode(None))  # flush the encoder's delayed frames

    def _mux(self, packets: list[av.Packet]) -> None:
        assert self._container is not None
        try:
            self._container.mux(packets)
        except av.error.FFmpegError as exc:
            _raise_disk_error(exc)
            raise EncoderError(f"writing the annotated video failed: {_reason(exc)}") from exc

    def _close(self) -> None:
        container, self._container, self._stream = self._container, None, None
        if container is None:
            return
        try:
            container.close()
        except av.error.FFmpegError as exc:
            _raise_disk_error(exc)
            raise EncoderError(f"finishing the annotated video failed: {_reason(exc)}") from exc

    def _abandon(self) -> None:
        """Drop the half-written file; never mask the error that got us here."""
        try:
            self._close()
        except EncoderError:
            pass
        finally:
            self._temp_path.unlink(missing_ok=True)


def yuv420p_frame(image_rgb: np.ndarray) -> av.VideoFrame:
    """An even-sized RGB image as the yuv420p frame the encoder takes: BT.601, limited range, the
    conversion FFmpeg makes by default, within a level of rounding.

    OpenCV converts, not FFmpeg: handed RGB, the encoder's own conversion (swscale) took about
    40 % of annotated.mp4's CPU at 1080p, five times OpenCV's (docs/performance.md).
    """
    import cv2  # here, not at the top: the API imports this module to probe uploads, and has no OpenCV

    planes = np.asarray(cv2.cvtColor(image_rgb, cv2.COLOR_RGB2YUV_I420), dtype=np.uint8)  # already uint8: no copy
    return av.VideoFrame.from_ndarray(planes, format="yuv420p")


def _raise_disk_error(exc: av.error.FFmpegError) -> None:
    """A full or failing disk is raised as the OSError it is, not as a failed video, so that
    the worker hands the job back instead of failing it (see worker.runner)."""
    if isinstance(exc, OSError) and exc.errno in DISK_ERRNOS:
        raise exc


def _as_fraction(fps: Fraction | int | float) -> Fraction:
    rate = Fraction(fps) if not isinstance(fps, float) else Fraction(fps).limit_denominator(100_000)
    if rate <= 0:
        raise InvalidFrameRate(f"cannot write a video at {fps} frames per second")
    return rate


def _pad_to_even(image: np.ndarray) -> np.ndarray:
    pad_bottom, pad_right = image.shape[0] % 2, image.shape[1] % 2
    if not (pad_bottom or pad_right):
        return image
    return np.pad(image, ((0, pad_bottom), (0, pad_right), (0, 0)), mode="edge")
