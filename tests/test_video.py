"""ml_engine.media.video: probing, decoding and the browser-playable MP4 writer, on real files."""

from __future__ import annotations

import io
import re
import subprocess
import sys
from fractions import Fraction
from itertools import islice
from pathlib import Path

import av
import numpy as np
import pytest

from core.errors import (
    CorruptVideo,
    EmptyVideo,
    EncoderError,
    InvalidFrameRate,
    InvalidInput,
    NotAVideo,
    NoVideoStream,
    VideoError,
    VideoTooLarge,
    VideoTooLong,
)
from ml_engine.media.video import (
    NvencProbe,
    VideoInfo,
    VideoLimits,
    VideoWriter,
    choose_encoder,
    iter_frames,
    probe,
    yuv420p_frame,
)
from tests.fixtures_video import DEFAULT_BOXES, top_level_atoms, write_clip


def read_back(path: Path) -> dict:
    """What a player sees: codec, pixel format, rate, size and how many frames decode."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(stream))
        return {
            "codec": stream.codec_context.name,
            "pix_fmt": stream.codec_context.pix_fmt,
            "rate": stream.average_rate,
            "size": (stream.codec_context.width, stream.codec_context.height),
            "frames": frames,
            "format": container.format.name,
        }


# --- probe ------------------------------------------------------------------------------------


def test_probe_reads_size_rate_count_and_codec(small_clip: Path) -> None:
    info = probe(small_clip)
    assert info == VideoInfo(
        width=320,
        height=240,
        fps=Fraction(10),
        frames=20,
        duration_s=2.0,
        rotation=0,
        codec="h264",
        frames_exact=True,
    )
    assert info.display_size == (320, 240)


def test_probe_keeps_ntsc_rate_exact(ntsc_clip: Path) -> None:
    info = probe(ntsc_clip)
    assert info.fps == Fraction(30000, 1001)
    assert info.frames == 30
    assert info.duration_s == pytest.approx(30 * 1001 / 30000)


@pytest.mark.parametrize(
    "name, error, words",
    [
        ("empty", EmptyVideo, "empty"),
        ("text", NotAVideo, "not a video"),
        ("png", NotAVideo, "still image"),
        ("audio_only", NoVideoStream, "no video stream"),
        ("truncated_no_index", CorruptVideo, "truncated"),
        ("zero_timescale", InvalidFrameRate, "frame rate"),
    ],
)
def test_probe_rejects_bad_input_with_typed_error(
    bad_videos: dict[str, Path], name: str, error: type[VideoError], words: str
) -> None:
    with pytest.raises(error) as caught:
        probe(bad_videos[name])
    assert words in str(caught.value)
    assert bad_videos[name].name in str(caught.value)  # the user sees which file


def test_probe_reads_a_file_object_without_closing_it(ntsc_clip: Path) -> None:
    with ntsc_clip.open("rb") as handle:
        assert probe(handle) == probe(ntsc_clip)
        assert not handle.closed


@pytest.mark.parametrize(
    "name, error", [("empty", EmptyVideo), ("text", NotAVideo), ("truncated_no_index", CorruptVideo)]
)
def test_probe_of_a_file_object_rejects_bad_input(
    bad_videos: dict[str, Path], name: str, error: type[VideoError]
) -> None:
    with pytest.raises(error):
        probe(io.BytesIO(bad_videos[name].read_bytes()))


@pytest.mark.parametrize("limits, error, words", [
    (VideoLimits(max_pixels=320 * 240 - 1), VideoTooLarge, "320x240"),
    (VideoLimits(max_seconds=1.5), VideoTooLong, "MAX_VIDEO_SECONDS"),
])
def test_probe_refuses_a_video_over_its_limits(small_clip: Path, limits, error, words) -> None:
    with pytest.raises(error, match=words):
        probe(small_clip, limits)
    assert probe(small_clip, VideoLimits(max_pixels=320 * 240, max_seconds=2.0)).width == 320  # at the limit: fine


def test_probe_of_a_missing_file_says_so(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="not found"):
        probe(tmp_path / "nothing.mp4")


def test_truncated_video_fails_while_decoding_with_corrupt_video(bad_videos: dict[str, Path]) -> None:
    path = bad_videos["truncated_midstream"]
    info = probe(path)  # the index and first frames are intact
    decoded = 0
    with pytest.raises(CorruptVideo, match="truncated or damaged"):
        for _ in iter_frames(path, info):
            decoded += 1
    assert 0 < decoded < info.frames


def test_video_module_does_not_import_torch() -> None:
    code = "import sys, ml_engine.media.video; print('torch' in sys.modules, 'transformers' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["False", "False"]


# --- decoding ---------------------------------------------------------------------------------


def test_iter_frames_yields_every_frame_as_rgb_with_times(small_clip: Path) -> None:
    frames = list(iter_frames(small_clip))
    assert [f.index for f in frames] == list(range(20))
    assert [f.time_s for f in frames] == pytest.approx([i / 10 for i in range(20)])
    first = frames[0].image
    assert first.shape == (240, 320, 3) and first.dtype == np.uint8
    x1, y1, x2, y2 = (int(v) for v in DEFAULT_BOXES[0].xyxy(0))
    red = first[y1 + 5 : y2 - 5, x1 + 5 : x2 - 5].reshape(-1, 3).mean(axis=0)
    assert red == pytest.approx(DEFAULT_BOXES[0].color, abs=12)  # RGB order, not BGR


def test_rotation_metadata_is_applied_on_decode(tmp_path: Path) -> None:
    # A marker in the top-left corner of the coded picture; rotating 90 degrees
    # counter-clockwise for display moves it to the bottom-left.
    def marked(_: int) -> np.ndarray:
        image = np.zeros((48, 64, 3), np.uint8)
        image[:16, :16] = (255, 255, 255)
        return image

    path = write_clip(
        tmp_path / "rotated.mp4", width=64, height=48, frames=3, rotation=90, frame_maker=marked
    )
    info = probe(path)
    assert (info.width, info.height, info.rotation) == (64, 48, 90)
    assert info.display_size == (48, 64)
    image = next(iter_frames(path, info)).image
    assert image.shape == (64, 48, 3)
    assert image[-8, 8].mean() > 200 and image[8, 8].mean() < 50


def test_decodes_real_footage(vtest_video: Path) -> None:
    info = probe(vtest_video)
    assert (info.width, info.height, info.fps) == (768, 576, Fraction(10))
    assert info.frames == 795
    frames = list(islice(iter_frames(vtest_video, info), 5))
    assert [f.image.shape for f in frames] == [(576, 768, 3)] * 5


# --- writing ------------------------------------------------------------------------------------


def copy_video(source: Path, target: Path, limit: int | None = None) -> VideoInfo:
    info = probe(source)
    width, height = info.display_size
    with VideoWriter(target, width, height, info.fps) as writer:
        for frame in islice(iter_frames(source, info), limit):
            writer.write(frame.image)
    return info


def test_writer_produces_browser_playable_h264_with_exact_rate(ntsc_clip: Path, tmp_path: Path) -> None:
    out = tmp_path / "annotated.mp4"
    copy_video(ntsc_clip, out)
    assert read_back(out) == {
        "codec": "h264",
        "pix_fmt": "yuv420p",
        "rate": Fraction(30000, 1001),
        "size": (320, 240),
        "frames": 30,
        "format": "mov,mp4,m4a,3gp,3g2,mj2",
    }
    atoms = top_level_atoms(out)
    assert atoms.index("moov") < atoms.index("mdat"), f"not faststart: {atoms}"
    assert [p.name for p in tmp_path.iterdir()] == ["annotated.mp4"]  # no temp file left


def test_round_trip_of_real_footage_keeps_rate_and_count(vtest_video: Path, tmp_path: Path) -> None:
    out = tmp_path / "vtest.mp4"
    copy_video(vtest_video, out, limit=40)
    back = read_back(out)
    assert (back["codec"], back["pix_fmt"], back["rate"], back["size"], back["frames"]) == (
        "h264",
        "yuv420p",
        Fraction(10),
        (768, 576),
        40,
    )


def test_writer_pads_odd_sizes_to_even(tmp_path: Path) -> None:
    out = tmp_path / "odd.mp4"
    with VideoWriter(out, 321, 241, Fraction(25)) as writer:
        for _ in range(3):
            writer.write(np.full((241, 321, 3), 128, np.uint8))
    back = read_back(out)
    assert back["size"] == (322, 242) and back["frames"] == 3


def test_writer_leaves_nothing_when_the_block_fails(tmp_path: Path) -> None:
    out = tmp_path / "annotated.mp4"
    with pytest.raises(RuntimeError, match="boom"), VideoWriter(out, 64, 48, Fraction(10)) as writer:
        writer.write(np.zeros((48, 64, 3), np.uint8))
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_writer_encodes_with_the_chosen_preset_and_crf(tmp_path: Path) -> None:
    noise = np.random.default_rng(0).integers(0, 256, (5, 96, 128, 3), dtype=np.uint8)
    sizes = {}
    for preset, crf in (("ultrafast", 45), ("medium", 5)):
        out = tmp_path / f"{preset}.mp4"
        with VideoWriter(out, 128, 96, Fraction(10), crf=crf, preset=preset) as writer:
            for frame in noise:
                writer.write(frame)
        assert read_back(out)["frames"] == 5
        sizes[preset] = out.stat().st_size
    assert sizes["ultrafast"] * 3 < sizes["medium"]  # crf 45 throws away far more than crf 5


@pytest.mark.parametrize(("preset", "crf", "message"), [("turbo", 23, "veryfast"), ("fast", 60, "0..51")])
def test_writer_rejects_unknown_encoder_options_before_writing(
    tmp_path: Path, preset: str, crf: int, message: str
) -> None:
    with pytest.raises(InvalidInput, match=message):
        VideoWriter(tmp_path / "x.mp4", 64, 48, Fraction(10), crf=crf, preset=preset)
    assert list(tmp_path.iterdir()) == []


def test_writer_rejects_frames_of_the_wrong_size(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="48x64x3"), \
            VideoWriter(tmp_path / "x.mp4", 64, 48, Fraction(10)) as writer:
            writer.write(np.zeros((64, 48, 3), np.uint8))
    assert list(tmp_path.iterdir()) == []


# --- which encoder -------------------------------------------------------------------------------

NVENC_HERE = NvencProbe.machine().problem() is None


def a_machine(codecs: set[str], nvidia: bool = True, opens=lambda: None) -> NvencProbe:
    """A machine whose FFmpeg has ``codecs``, with or without an NVIDIA device, where opening
    NVENC does what ``opens`` does (returns: it opened; raises: it did not)."""
    return NvencProbe(frozenset(codecs), nvidia, opens)


def cannot_open() -> None:
    raise av.error.FFmpegError(38, "No capable devices found")


@pytest.mark.parametrize(("requested", "machine", "codec", "why"), [
    ("auto", a_machine({"libx264", "h264_nvenc"}), "h264_nvenc", "NVENC opens"),
    ("h264_nvenc", a_machine({"libx264", "h264_nvenc"}), "h264_nvenc", "NVENC opens"),
    ("auto", a_machine({"libx264"}), "libx264", "no h264_nvenc"),
    ("auto", a_machine({"libx264", "h264_nvenc"}, nvidia=False), "libx264", "no NVIDIA GPU"),
    ("auto", a_machine({"libx264", "h264_nvenc"}, opens=cannot_open), "libx264", "did not open.*capable devices"),
    ("h264_nvenc", a_machine({"libx264"}), "libx264", "no h264_nvenc"),
    ("libx264", a_machine({"libx264", "h264_nvenc"}), "libx264", "VIDEO_ENCODER=libx264"),
])
def test_nvenc_is_chosen_only_where_it_opens(requested: str, machine: NvencProbe, codec: str, why: str) -> None:
    choice = choose_encoder(requested, machine)
    assert choice.codec == codec
    assert re.search(why, choice.reason), choice.reason


@pytest.mark.skipif(NVENC_HERE, reason="NVENC works on this machine")
def test_auto_encodes_with_libx264_on_a_machine_without_nvenc(tmp_path: Path) -> None:
    with VideoWriter(tmp_path / "auto.mp4", 64, 48, Fraction(10), encoder="auto") as writer:
        writer.write(np.zeros((48, 64, 3), np.uint8))
    assert writer.encoder_used == "libx264"
    assert b"x264 - core" in (tmp_path / "auto.mp4").read_bytes()  # x264 signs its stream


@pytest.mark.skipif(NVENC_HERE, reason="NVENC works on this machine")
def test_nvenc_that_does_not_open_falls_back_to_libx264(tmp_path: Path) -> None:
    """The probe says yes (a machine with NVENC); the real encoder here cannot open: the writer
    switches to libx264 before the first frame and the video is whole."""
    out = tmp_path / "annotated.mp4"
    with VideoWriter(out, 64, 48, Fraction(10), encoder="h264_nvenc",
                     nvenc_probe=a_machine({"h264_nvenc"})) as writer:
        for _ in range(3):
            writer.write(np.zeros((48, 64, 3), np.uint8))
    assert (writer.encoder_used, read_back(out)["frames"]) == ("libx264", 3)
    assert "did not open" in writer.encoder.reason
    assert [p.name for p in tmp_path.iterdir()] == ["annotated.mp4"]


def test_frames_are_converted_to_yuv_as_ffmpeg_converts_them(vtest_video: Path) -> None:
    """BT.601, limited range, chroma at half size: what FFmpeg's own conversion gives, within rounding."""
    image = next(iter_frames(vtest_video)).image
    ours = yuv420p_frame(image).to_ndarray().astype(int)
    ffmpegs = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format="yuv420p").to_ndarray().astype(int)
    height = image.shape[0]
    luma, chroma = np.abs(ours[:height] - ffmpegs[:height]), np.abs(ours[height:] - ffmpegs[height:])
    assert luma.max() <= 1 and luma.mean() < 0.5
    assert chroma.mean() < 1.0


def test_writer_used_outside_with_block_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(EncoderError, match="with"):
        VideoWriter(tmp_path / "x.mp4", 64, 48, Fraction(10)).write(np.zeros((48, 64, 3), np.uint8))


# A file-size limit makes the encoder's writes fail with EFBIG ("File too large"): a failure
# of the output that is not a full disk. In a child process, so the limit stays there.
_ENCODE_PAST_A_SIZE_LIMIT = """
import resource, signal, sys
from fractions import Fraction
import numpy as np
from core.errors import CattleCounterError
from ml_engine.media.video import VideoWriter
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of being killed
resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))
noise = np.random.default_rng(0)
try:
    with VideoWriter(sys.argv[1], 320, 240, Fraction(10), crf=0, preset="ultrafast") as writer:
        for _ in range(200):
            writer.write(noise.integers(0, 256, (240, 320, 3), dtype=np.uint8))
except CattleCounterError as exc:
    print(type(exc).__name__, exc.code, exc.http_status)
"""


def test_an_encoder_failure_has_its_own_error_type(tmp_path: Path) -> None:
    """Not the root CattleCounterError (which the API and the job record show as internal_error)."""
    result = subprocess.run([sys.executable, "-c", _ENCODE_PAST_A_SIZE_LIMIT, str(tmp_path / "x.mp4")],
                            capture_output=True, text=True, timeout=120, cwd=Path(__file__).parent.parent)
    assert result.stdout.split() == ["EncoderError", "encoder_error", "500"], result.stdout + result.stderr
    assert not (tmp_path / "x.mp4").exists()
