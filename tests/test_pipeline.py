"""ml_engine.pipeline end to end.

Most tests run the real tiny RT-DETRv2 checkpoint through ``Detector.load`` (its weights are
random, so its boxes are noise: the tests check plumbing, formats and consistency, not
accuracy). The plumbing tests whose subject is ordering, batching or failure handling use
small stand-in detectors, each named for what it does (``ColourBoxDetector`` really finds the
coloured rectangles of the generated clips, so counts and boxes have a ground truth).
"""

from __future__ import annotations

import json
import threading
import time
import weakref
from dataclasses import asdict
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import supervision as sv

from core.errors import (
    CorruptVideo,
    EmptyVideo,
    InvalidFrameRate,
    InvalidInput,
    JobCancelled,
    ModelError,
    NotAVideo,
    NoVideoStream,
    VideoError,
    VideoTooLong,
)
from core.jobs import CountingLine
from core.outputs import GALLERY, GALLERY_CROPS_DIR, GALLERY_ZIP, LINES_CSV, TIMELINE_CSV, TRACKS_CSV
from ml_engine import pipeline
from ml_engine.detection import DetectionConfig
from ml_engine.media.video import choose_encoder, iter_frames
from ml_engine.outputs import ANNOTATED_VIDEO, COCO, DETECTIONS, MOT, STATS, validate_stats
from ml_engine.pipeline import PipelineConfig, Progress, buffer_plan, process_video
from ml_engine.tiling import offset_boxes
from tests.fixtures_video import DEFAULT_BOXES, MovingBox, render_frame, write_clip

ALL_OUTPUTS = sorted([ANNOTATED_VIDEO, COCO, DETECTIONS, MOT, STATS, LINES_CSV, TIMELINE_CSV, TRACKS_CSV,
                      GALLERY, GALLERY_ZIP])


def video_facts(path: Path) -> tuple:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(stream))
        size = (stream.codec_context.width, stream.codec_context.height)
        return stream.codec_context.name, stream.codec_context.pix_fmt, stream.average_rate, size, frames


def jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def pipeline_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("cattlecounter-") and t.is_alive()]


def assert_nothing_left(output_dir: Path) -> None:
    """A failed run leaves no outputs and no temporary directory."""
    if output_dir.exists():
        assert list(output_dir.iterdir()) == []
    assert pipeline_threads() == []


# --- stand-in detectors for the plumbing tests ---------------------------------------------------


class ColourBoxDetector:
    """Finds the solid rectangles of DEFAULT_BOXES by colour: a real detector of a toy world."""

    labels = {0: "red", 1: "green"}
    model_id, device, random_weights = "colour-boxes", "cpu", False

    def __init__(self) -> None:
        self.batch_sizes: list[int] = []

    def detect(self, images, threshold, class_names=None) -> list[sv.Detections]:
        if images:
            self.batch_sizes.append(len(images))
        return [self._find(image) for image in images]

    def class_ids(self, class_names) -> set[int]:
        unknown = set(class_names) - set(self.labels.values())
        if unknown:
            raise InvalidInput(f"unknown classes {sorted(unknown)}")
        return {i for i, name in self.labels.items() if name in class_names}

    def detect_views(self, images, views, threshold, class_names=None) -> list[sv.Detections]:
        """Each view's region cut out and searched, boxes moved back to frame pixels."""
        found = []
        for view in views:
            x0, y0, x1, y1 = view.region
            found.append(offset_boxes(self._find(images[view.image][y0:y1, x0:x1]), view.region))
        return found

    def model_input_size(self, width: int, height: int) -> None:
        return None  # it looks at every pixel: TILING=auto never tiles for it

    def tile_size(self) -> None:
        return None

    def describe(self) -> dict:
        return {"id": self.model_id, "device": self.device, "random_weights": self.random_weights}

    def _find(self, image: np.ndarray) -> sv.Detections:
        boxes, ids = [], []
        for class_id, box in enumerate(DEFAULT_BOXES):
            mask = (np.abs(image.astype(int) - box.color) < 40).all(axis=2)
            ys, xs = np.nonzero(mask)
            if len(xs) > 50:
                boxes.append((xs.min(), ys.min(), xs.max() + 1, ys.max() + 1))
                ids.append(class_id)
        return sv.Detections(
            xyxy=np.array(boxes, dtype=np.float32).reshape(-1, 4),
            confidence=np.full(len(boxes), 0.95, dtype=np.float32),
            class_id=np.array(ids, dtype=int),
            data={"class_name": np.array([self.labels[i] for i in ids], dtype=str)},
        )


class FailingDetector(ColourBoxDetector):
    """Raises ModelError on its ``fail_on``-th batch (as the real one does when out of memory)."""

    def __init__(self, fail_on: int) -> None:
        super().__init__()
        self.fail_on = fail_on

    def detect(self, images, threshold, class_names=None):
        if images and len(self.batch_sizes) + 1 == self.fail_on:
            raise ModelError("out of memory running the model; lower BATCH_SIZE")
        return super().detect(images, threshold, class_names)


class MalformedOutputDetector(ColourBoxDetector):
    """Returns something that is not sv.Detections: the tracking stage (its own thread) breaks."""

    def detect(self, images, threshold, class_names=None):
        return [None for _ in images]


# --- end to end with the tiny RT-DETRv2 -------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory, tiny_rtdetr_detector):
    """One real run over a 1 s, 10 fps clip with a counting line; progress reports recorded."""
    folder = tmp_path_factory.mktemp("tiny_run")
    clip = write_clip(folder / "clip.mp4", frames=10)
    reports: list[Progress] = []
    config = PipelineConfig(
        lines=[CountingLine(name="gate", start=(0, 120), end=(320, 120))], progress_interval_s=0
    )
    result = process_video(clip, folder / "out", tiny_rtdetr_detector, config, progress=reports.append)
    return result, folder / "out", reports


def test_run_writes_every_output_into_the_output_dir(tiny_run) -> None:
    result, out, _ = tiny_run
    # no temporary directory left; the gallery's crops (one per counted animal) in their folder
    assert sorted(p.name for p in out.iterdir() if p.name != GALLERY_CROPS_DIR) == ALL_OUTPUTS
    assert result.outputs == {name: out / name for name in ALL_OUTPUTS}
    assert list(result.outputs)[-1] == STATS  # moved last: its presence means the rest is there


def test_annotated_video_keeps_codec_rate_size_and_frame_count(tiny_run) -> None:
    _, out, _ = tiny_run
    assert video_facts(out / ANNOTATED_VIDEO) == ("h264", "yuv420p", Fraction(10), (320, 240), 10)


def test_stats_match_the_schema_and_flag_random_weights(tiny_run) -> None:
    result, out, _ = tiny_run
    stats = json.loads((out / STATS).read_text())
    assert stats == result.stats
    validate_stats(stats)
    assert stats["model"]["random_weights"] is True
    assert "not real detections" in stats["model"]["note"]
    assert stats["video"]["frames"] == 10 and stats["processing"]["frames_processed"] == 10
    assert stats["processing"]["device"] == "cpu"
    assert stats["processing"]["video_encoder"] == asdict(choose_encoder("auto"))  # libx264 without NVENC
    assert stats["lines"][0]["name"] == "gate"


def test_exports_agree_with_each_other_and_with_stats(tiny_run) -> None:
    result, out, _ = tiny_run
    frames = jsonl(out / DETECTIONS)
    assert [f["frame"] for f in frames] == list(range(10))
    rows = [(f["frame"] + 1, d["track_id"]) for f in frames for d in f["detections"]]
    mot = [tuple(int(v) for v in line.split(",")[:2]) for line in (out / MOT).read_text().splitlines()]
    assert mot == rows
    coco = json.loads((out / COCO).read_text())
    assert len(coco["images"]) == 10
    assert [(a["image_id"], a["track_id"]) for a in coco["annotations"]] == rows
    assert {c["name"] for c in coco["categories"]} == {"cow", "sheep", "horse", "person"}
    track_ids = {track_id for _, track_id in rows}
    assert track_ids == {t["id"] for t in result.stats["tracks"]}
    assert result.stats["counts"]["total_unique"] == len(track_ids)
    assert [t["count"] for t in result.stats["timeline"]] == [len(f["detections"]) for f in frames]


def test_progress_reports_climb_to_the_total(tiny_run) -> None:
    _, _, reports = tiny_run
    done = [report.frames_done for report in reports]
    assert done == sorted(done) and len(reports) >= 2
    last = reports[-1]
    assert (last.frames_done, last.frames_total, last.fraction, last.eta_s) == (10, 10, 1.0, 0.0)
    assert last.fps > 0
    # the rendering pass after counting has its share of the bar: it neither stalls nor goes back
    fractions = [report.fraction for report in reports]
    assert fractions == sorted(fractions)
    counted = next(report for report in reports if report.frames_done == 10)
    assert (counted.frames_rendered, counted.fraction) == (0, pytest.approx(1 - pipeline.RENDER_SHARE))
    assert [r.frames_rendered for r in reports if r.frames_rendered][:2] == [1, 2]


def test_real_footage_with_stride_keeps_every_frame(
    vtest_video: Path, tmp_path: Path, tiny_rtdetr_detector
) -> None:
    config = PipelineConfig(max_frames=30, frame_stride=2)
    result = process_video(vtest_video, tmp_path, tiny_rtdetr_detector, config)
    assert video_facts(tmp_path / ANNOTATED_VIDEO) == ("h264", "yuv420p", Fraction(10), (768, 576), 30)
    validate_stats(result.stats)
    assert [f["frame"] for f in jsonl(tmp_path / DETECTIONS)] == list(range(0, 30, 2))
    assert (result.stats["processing"]["frames_processed"], result.stats["video"]["frames"]) == (15, 30)


def test_cancel_between_batches_leaves_nothing(
    small_clip: Path, tmp_path: Path, tiny_rtdetr_detector
) -> None:
    checks = []

    def cancel_on_second_check() -> bool:
        checks.append(1)
        return len(checks) >= 2

    out = tmp_path / "out"
    with pytest.raises(JobCancelled):
        process_video(
            small_clip, out, tiny_rtdetr_detector, PipelineConfig(), should_cancel=cancel_on_second_check
        )
    assert len(checks) == 2
    assert_nothing_left(out)


def test_cancel_is_honoured_while_the_decoder_is_stalled(
    small_clip: Path, tmp_path: Path, tiny_rtdetr_detector, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A decoder that stops producing frames without failing (a stuck read) must not make
    the job deaf to a cancel: the wait for frames checks it too."""
    import ml_engine.pipeline as pipeline

    real_iter_frames = pipeline.iter_frames
    stalled, release, released_by_cancel = threading.Event(), threading.Event(), []

    def stalls_after_two_frames(*args, **kwargs):
        for index, frame in enumerate(real_iter_frames(*args, **kwargs)):
            if index == 2:
                stalled.set()
                released_by_cancel.append(release.wait(30))  # stuck, unless the cancel frees it
                return
            yield frame

    def cancel_once_stalled() -> bool:
        if stalled.is_set():
            release.set()  # the user's cancel arrived while the decoder was stuck
            return True
        return False

    monkeypatch.setattr(pipeline, "iter_frames", stalls_after_two_frames)
    with pytest.raises(JobCancelled):
        process_video(small_clip, tmp_path / "out", tiny_rtdetr_detector, PipelineConfig(batch_size=4),
                      should_cancel=cancel_once_stalled)
    assert released_by_cancel == [True]  # the cancel was seen during the stall, not after it
    assert_nothing_left(tmp_path / "out")


def test_video_truncated_midway_fails_with_corrupt_video(
    bad_videos: dict[str, Path], tmp_path: Path, tiny_rtdetr_detector
) -> None:
    out = tmp_path / "out"
    with pytest.raises(CorruptVideo, match="truncated"):
        process_video(
            bad_videos["truncated_midstream"], out, tiny_rtdetr_detector, PipelineConfig(frame_stride=5)
        )
    assert_nothing_left(out)


@pytest.mark.parametrize(
    "name, error, code, words",
    [
        ("empty", EmptyVideo, "empty_file", "empty"),
        ("text", NotAVideo, "not_a_video", "not a video"),
        ("png", NotAVideo, "not_a_video", "still image"),
        ("audio_only", NoVideoStream, "no_video_stream", "no video stream"),
        ("truncated_no_index", CorruptVideo, "corrupt_video", "truncated"),
        ("zero_timescale", InvalidFrameRate, "invalid_frame_rate", "frame rate"),
    ],
)
def test_bad_input_fails_with_its_typed_error(
    bad_videos: dict[str, Path], tmp_path: Path, tiny_rtdetr_detector, name: str,
    error: type[VideoError], code: str, words: str,
) -> None:
    out = tmp_path / "out"
    with pytest.raises(error) as caught:
        process_video(bad_videos[name], out, tiny_rtdetr_detector, PipelineConfig())
    assert caught.value.code == code  # what the job record and the API show the user
    assert words in str(caught.value) and bad_videos[name].name in str(caught.value)
    assert_nothing_left(out)


def test_unknown_class_names_fail_before_any_work(
    small_clip: Path, tmp_path: Path, tiny_rtdetr_detector
) -> None:
    with pytest.raises(InvalidInput, match="unicorn"):
        process_video(small_clip, tmp_path / "out", tiny_rtdetr_detector,
                      PipelineConfig(detection=DetectionConfig(classes=["unicorn"])))
    assert_nothing_left(tmp_path / "out")


# --- plumbing: ordering, batching, stride, failures ----------------------------------------------


@pytest.mark.parametrize(
    "config",
    [
        PipelineConfig(),
        PipelineConfig(batch_size=7, queue_size=1),
        PipelineConfig(batch_size=3, frame_stride=3, max_chunk_frames=2),
        PipelineConfig(frame_interval_seconds=0.4),
    ],
    ids=["defaults", "batch7-queue1", "stride3-small-chunks", "interval0.4s"],
)
def test_frames_and_detections_stay_in_step(small_clip: Path, tmp_path: Path, config: PipelineConfig) -> None:
    detector = ColourBoxDetector()
    result = process_video(small_clip, tmp_path, detector, config)
    stride = config.stride_for(10)
    frames = jsonl(tmp_path / DETECTIONS)
    assert [f["frame"] for f in frames] == list(range(0, 20, stride))
    for frame in frames[3:]:  # both tracks confirmed by then
        boxes = {d["class"]: d["box"] for d in frame["detections"]}
        for name, box in zip(("red", "green"), DEFAULT_BOXES, strict=True):
            assert boxes[name] == pytest.approx(box.xyxy(frame["frame"]), abs=2)
    assert result.stats["counts"]["by_class"] == {"green": 1, "red": 1}
    assert video_facts(tmp_path / ANNOTATED_VIDEO)[4] == 20
    assert max(detector.batch_sizes) <= config.batch_size


def test_rotated_video_is_processed_and_written_upright(tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "portrait.mp4", frames=6, rotation=90)
    result = process_video(clip, tmp_path / "out", ColourBoxDetector(), PipelineConfig())
    assert video_facts(tmp_path / "out" / ANNOTATED_VIDEO)[3:] == ((240, 320), 6)
    assert (result.stats["video"]["width"], result.stats["video"]["height"]) == (240, 320)
    assert result.stats["video"]["rotation"] == 90


def test_line_crossings_are_counted_through_the_pipeline(tmp_path: Path) -> None:
    # The red box's anchor goes from x=40 to x=154: it crosses x=100 once, left to right.
    clip = write_clip(tmp_path / "clip.mp4", boxes=DEFAULT_BOXES, frames=20)
    upward_line = CountingLine(name="post", start=(100, 240), end=(100, 0))
    result = process_video(clip, tmp_path / "out", ColourBoxDetector(), PipelineConfig(lines=[upward_line]))
    assert result.stats["lines"][0]["in"] == {"red": 1}
    assert result.stats["lines"][0]["out_total"] == 0


def test_detector_failure_stops_every_stage_and_leaves_nothing(tmp_path: Path) -> None:
    # 120 frames: the decoder is far ahead, blocked on a full queue, when the detector fails.
    clip = write_clip(
        tmp_path / "long.mp4", frames=120, boxes=[MovingBox((230, 40, 40), (10, 40), (1, 0), (60, 40))]
    )
    out = tmp_path / "out"
    with pytest.raises(ModelError, match="out of memory"):
        process_video(clip, out, FailingDetector(fail_on=2), PipelineConfig(queue_size=2))
    assert_nothing_left(out)


def test_failure_in_the_tracking_stage_reaches_the_caller(small_clip: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    with pytest.raises(AttributeError):
        process_video(small_clip, out, MalformedOutputDetector(), PipelineConfig())
    assert_nothing_left(out)


def test_progress_callback_failure_stops_the_run(small_clip: Path, tmp_path: Path) -> None:
    def broken_progress(_: Progress) -> None:
        raise InvalidInput("progress store rejected the update")

    with pytest.raises(InvalidInput, match="progress store"):
        process_video(
            small_clip,
            tmp_path / "out",
            ColourBoxDetector(),
            PipelineConfig(progress_interval_s=0),
            progress=broken_progress,
        )
    assert_nothing_left(tmp_path / "out")


def test_a_rerun_replaces_earlier_outputs(small_clip: Path, tmp_path: Path) -> None:
    (tmp_path / STATS).write_text("{}")
    result = process_video(small_clip, tmp_path, ColourBoxDetector(), PipelineConfig(max_frames=5))
    assert json.loads((tmp_path / STATS).read_text()) == result.stats


@pytest.mark.parametrize(
    "overrides, words",
    [
        ({"frame_stride": 0}, "frame_stride"),
        ({"batch_size": 0}, "batch_size"),
        ({"frame_interval_seconds": 0}, "frame_interval_seconds"),
        ({"lines": [{"start": (0, 0), "end": (0, 0)}]}, "two different points"),
    ],
)
def test_bad_config_is_rejected(overrides: dict, words: str) -> None:
    with pytest.raises(InvalidInput, match=words):
        PipelineConfig(**overrides)


@pytest.mark.parametrize(
    "overrides, words",
    [
        ({"threshold": 1.5}, "threshold must be within 0..1"),
        ({"threshold": -0.1}, "threshold must be within 0..1"),
        ({"threshold": float("nan")}, "threshold must be within 0..1"),
        ({"low_threshold": 0.9}, "low_threshold"),
        ({"tile_batch_size": 0}, "tile_batch_size"),
    ],
)
def test_bad_detection_config_is_rejected_once_for_video_live_and_stills(overrides: dict, words: str) -> None:
    with pytest.raises(InvalidInput, match=words):
        DetectionConfig(**overrides)


# --- memory: the frames in flight are bounded in bytes ---------------------------------------------


class LiveCount:
    """How many of the objects added are still alive (referenced from anywhere)."""

    def __init__(self) -> None:
        self._alive = 0
        self._lock = threading.Lock()

    def add(self, thing) -> None:
        with self._lock:
            self._alive += 1
        weakref.finalize(thing, self._died)

    def _died(self) -> None:
        with self._lock:
            self._alive -= 1

    def __len__(self) -> int:
        return self._alive


class StallingDetector(ColourBoxDetector):
    """Its first batch waits until the number of frames alive stops growing: the decoder has
    then filled every buffer the pipeline lets it fill."""

    def __init__(self, live_frames) -> None:
        super().__init__()
        self.live_frames = live_frames
        self.seen_at_stall = 0

    def detect(self, images, threshold, class_names=None):
        if images and not self.batch_sizes:
            self.seen_at_stall = wait_until_steady(lambda: len(self.live_frames))
        return super().detect(images, threshold, class_names)


def wait_until_steady(count, steady_s: float = 1.0, timeout_s: float = 20.0) -> int:
    """Poll ``count()`` until it has not changed for ``steady_s`` (or ``timeout_s`` passed)."""
    deadline = time.monotonic() + timeout_s
    last, since = count(), time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - since < steady_s:
        time.sleep(0.05)
        now = count()
        if now != last:
            last, since = now, time.monotonic()
    return last


def test_frames_in_flight_stay_within_the_byte_budget(tmp_path: Path, monkeypatch) -> None:
    clip = write_clip(tmp_path / "clip.mp4", frames=40)  # 320x240: 230,400 bytes a frame
    frame_bytes = 320 * 240 * 3
    live_frames = LiveCount()

    def counted_frames(*args, **kwargs):
        for frame in iter_frames(*args, **kwargs):
            live_frames.add(frame)
            yield frame

    monkeypatch.setattr(pipeline, "iter_frames", counted_frames)  # the real decoder, its frames counted
    most = [0]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.01):
            most[0] = max(most[0], len(live_frames))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    detector = StallingDetector(live_frames)
    config = PipelineConfig(max_buffered_bytes=8 * frame_bytes, preset="ultrafast")
    try:
        process_video(clip, tmp_path / "out", detector, config)
    finally:
        done.set()
        sampler.join()
    # the frame-count bounds alone let 13 frames pile up here (8 queued + 1 + a batch of 4)
    assert 3 <= detector.seen_at_stall <= 8
    assert most[0] <= 8


@pytest.mark.parametrize("width, height", [(1920, 1080), (3840, 2160), (7680, 4320), (8000, 8000)])
def test_the_buffer_plan_fits_the_default_budget_down_to_its_floor(width: int, height: int) -> None:
    config = PipelineConfig()
    frame_bytes = width * height * 3
    plan = buffer_plan(config, frame_bytes)
    assert plan.frames_in_flight * frame_bytes <= config.max_buffered_bytes or plan.frames_in_flight == 6
    assert plan.chunk_frames >= 1 and plan.queue_frames >= 1
    if width == 1920:  # full HD keeps the frame-count bounds it always had
        assert (plan.chunk_frames, plan.queue_frames) == (16, 8)


def test_a_video_over_max_video_seconds_is_refused_before_any_work(small_clip: Path, tmp_path: Path) -> None:
    config = PipelineConfig(max_video_seconds=1.0)  # small_clip runs 2 s
    with pytest.raises(VideoTooLong, match="MAX_VIDEO_SECONDS"):
        process_video(small_clip, tmp_path / "out", ColourBoxDetector(), config)
    assert_nothing_left(tmp_path / "out")


def write_raw_h264(path: Path, frames: int) -> Path:
    """An H.264 elementary stream: no container, so no duration for a header check to see."""
    with av.open(str(path), mode="w", format="h264") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
        for index in range(frames):
            frame = av.VideoFrame.from_ndarray(render_frame(320, 240, DEFAULT_BOXES, index), format="rgb24")
            frame.pts, frame.time_base = index, Fraction(1, 10)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def test_a_video_longer_than_its_header_says_is_stopped_at_max_video_seconds(tmp_path: Path) -> None:
    clip = write_raw_h264(tmp_path / "raw.h264", frames=60)  # FFmpeg reads it at 25 fps: 2.4 s
    config = PipelineConfig(max_video_seconds=1.0)
    with pytest.raises(VideoTooLong, match="MAX_VIDEO_SECONDS"):
        process_video(clip, tmp_path / "out", ColourBoxDetector(), config)
    assert_nothing_left(tmp_path / "out")


# --- stitching, end to end -----------------------------------------------------------------


def _hidden_for_a_while(index: int) -> np.ndarray:
    """The red box vanishes for frames 10-24 (1.5 s, longer than the 1 s track buffer)."""
    boxes = DEFAULT_BOXES if not 10 <= index < 25 else DEFAULT_BOXES[1:]
    return render_frame(320, 240, boxes, index)


@pytest.mark.parametrize("stitching", [True, False])
def test_a_clip_through_the_pipeline_reports_and_exports_stitched_ids(tmp_path: Path, stitching: bool) -> None:
    clip = write_clip(tmp_path / "hidden.mp4", frames=40, frame_maker=_hidden_for_a_while)
    out = tmp_path / "out"
    stats = process_video(clip, out, ColourBoxDetector(), PipelineConfig(stitching=stitching)).stats
    validate_stats(stats)
    assert stats["schema_version"] == 2
    assert (stats["processing"]["tracker"], stats["processing"]["stitching"]) == ("botsort", stitching)
    assert stats["processing"]["camera_motion_frames"] == 40
    counts = stats["counts"]
    assert counts["raw_total_unique"] == 3  # the live tracker gave the red box a second id
    assert (counts["total_unique"], counts["merged"]) == ((2, 1) if stitching else (3, 0))
    assert counts["by_class"] == ({"green": 1, "red": 1} if stitching else {"green": 1, "red": 2})
    track_ids = {t["id"] for t in stats["tracks"]}
    red_in_exports = {d["track_id"] for f in jsonl(out / DETECTIONS) for d in f["detections"] if d["class"] == "red"}
    assert len(red_in_exports) == (1 if stitching else 2)
    mot_ids = {int(line.split(",")[1]) for line in (out / MOT).read_text().splitlines()}
    coco_ids = {a["track_id"] for a in json.loads((out / COCO).read_text())["annotations"]}
    assert mot_ids == coco_ids == track_ids
    if stitching:
        red = next(t for t in stats["tracks"] if t["class"] == "red")
        assert len(red["raw_ids"]) == 2 and red["id"] == red["raw_ids"][0]
