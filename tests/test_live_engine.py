"""ml_engine.live: the annotated HLS writer and ``StreamRun`` (windows, events, state, latency).

The HLS tests read what was written back through PyAV's own HLS demuxer (the playlist, as a
player follows it). The ``StreamRun`` tests feed it frames of a real H.264 clip decoded with
PyAV through ``ClipSource``, a stand-in with LiveSource's interface that paces frames at the
clip's rate and keeps only the newest (so a slow detector makes it drop frames, as the real
source does); the end-to-end tests at the bottom use the real LiveSource on a real RTSP server.
Detections come from ``ColourBoxDetector``, which really finds the clip's coloured boxes, so
counts have a ground truth.
"""

from __future__ import annotations

import gc
import json
import re
import shutil
import threading
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import av
import numpy as np
import pytest
import supervision as sv

from core.errors import InvalidInput, StreamUnavailable
from core.jobs import CountingLine, CountingZone, Tracker
from core.outputs import GAPS, LIVE_PLAYLIST, LIVE_RECORDING, STATS, WINDOWS, live_segment
from core.tiling import parse_tiling
from ml_engine.counting import CountingConfig, ObjectCounter
from ml_engine.detection import DetectionConfig
from ml_engine.live import (
    CountEvent,
    Gap,
    HlsWriter,
    LiveFrame,
    LiveStatus,
    QuietSink,
    SourceOptions,
    StreamConfig,
    StreamRun,
    StreamState,
)
from ml_engine.live.counts import iso
from ml_engine.media.video import iter_frames, probe
from tests.fixtures_hls import HlsCamera
from tests.fixtures_rtsp import DeadSegmentsPlaylist, RtspServer, SilentServer
from tests.fixtures_service import free_port
from tests.fixtures_video import MovingBox, write_clip

# --- helpers ---------------------------------------------------------------------------------------


def playlist_tags(path: Path) -> dict[str, str]:
    return dict(re.findall(r"^#(EXT-X-[A-Z-]+):(.*)$", path.read_text(), flags=re.M))


def listed_segments(path: Path) -> list[str]:
    return [line for line in path.read_text().splitlines() if line and not line.startswith("#")]


def decoded_times(playlist: Path) -> list[float]:
    """Every frame's time as a player sees it, following the playlist (PyAV's HLS demuxer)."""
    with av.open(str(playlist)) as container:
        return [float(frame.time) for frame in container.decode(video=0)]


def solid(value: int, size: tuple[int, int] = (64, 48)) -> np.ndarray:
    return np.full((size[1], size[0], 3), value, dtype=np.uint8)


def jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


# --- HlsWriter -------------------------------------------------------------------------------------


def test_segments_are_cut_at_the_segment_length_and_play_back_continuously(tmp_path: Path) -> None:
    writer = HlsWriter(tmp_path, segment_s=1.0)
    for i in range(35):  # 3.5 s at 10 fps
        writer.write(solid(i * 7 % 256), 1000.0 + i / 10)
    changed, removed = writer.take_changes()
    assert sorted(changed) == [LIVE_PLAYLIST, live_segment(1), live_segment(2), live_segment(3)]
    assert removed == []
    writer.finish()
    playlist = tmp_path / LIVE_PLAYLIST
    assert listed_segments(playlist) == ["seg-000001.ts", "seg-000002.ts", "seg-000003.ts", "seg-000004.ts"]
    tags = playlist_tags(playlist)
    assert tags["EXT-X-MEDIA-SEQUENCE"] == "1" and tags["EXT-X-TARGETDURATION"] == "1"
    assert playlist.read_text().rstrip().endswith("#EXT-X-ENDLIST")
    times = decoded_times(playlist)
    assert len(times) == 35
    steps = np.diff(times)
    assert np.all(np.abs(steps - 0.1) < 0.002), steps  # one clock across segments: no resets, no holes
    # each segment says when its first frame was received: how far behind the camera a player is
    dates = re.findall(r"#EXT-X-PROGRAM-DATE-TIME:(.*)", playlist.read_text())
    assert dates == ["1970-01-01T00:16:40.000Z", "1970-01-01T00:16:41.000Z", "1970-01-01T00:16:42.000Z",
                     "1970-01-01T00:16:43.000Z"]
    durations = [float(d) for d in re.findall(r"#EXTINF:([\d.]+),", playlist.read_text())]
    assert durations[:3] == pytest.approx([1.0, 1.0, 1.0], abs=1e-3)
    assert sum(durations) == pytest.approx(3.5, abs=0.01)


def test_retention_drops_old_segments_from_disk_and_playlist_and_reports_them(tmp_path: Path) -> None:
    writer = HlsWriter(tmp_path, segment_s=1.0, retention_s=2.0)
    for i in range(61):  # six full segments
        writer.write(solid(100), i / 10)
    changed, removed = writer.take_changes()
    playlist = tmp_path / LIVE_PLAYLIST
    assert listed_segments(playlist) == ["seg-000005.ts", "seg-000006.ts"]
    assert playlist_tags(playlist)["EXT-X-MEDIA-SEQUENCE"] == "5"
    assert removed == [live_segment(n) for n in (1, 2, 3, 4)]
    assert sorted(p.name for p in (tmp_path / "live").iterdir() if p.suffix == ".ts") == [
        "seg-000005.ts", "seg-000006.ts"
    ]
    assert set(changed) == {LIVE_PLAYLIST, live_segment(5), live_segment(6)}  # the dropped ones are not "changed"
    assert "#EXT-X-PLAYLIST-TYPE" not in playlist.read_text()  # a sliding window, not an event playlist


def test_a_gap_marks_a_discontinuity_and_the_clock_does_not_jump(tmp_path: Path) -> None:
    writer = HlsWriter(tmp_path, segment_s=10.0)
    for i in range(5):
        writer.write(solid(50), 100.0 + i / 10)
    writer.cut(discontinuity=True)  # the camera was away for 60 s
    for i in range(5):
        writer.write(solid(200), 160.0 + i / 10)
    writer.finish()
    playlist = tmp_path / LIVE_PLAYLIST
    text = playlist.read_text()
    assert text.index("seg-000001.ts") < text.index("#EXT-X-DISCONTINUITY\n") < text.index("seg-000002.ts")
    times = decoded_times(playlist)
    assert len(times) == 10 and max(np.diff(times)) < 0.25  # the 60 s hole is not in the video


def test_a_new_resolution_starts_a_new_segment(tmp_path: Path) -> None:
    writer = HlsWriter(tmp_path, segment_s=10.0)
    for i in range(3):
        writer.write(solid(50, (64, 48)), i / 10)
    for i in range(3, 6):
        writer.write(solid(50, (33, 21)), i / 10)  # odd sizes are padded to even
    writer.finish()
    sizes = []
    for name in listed_segments(tmp_path / LIVE_PLAYLIST):
        with av.open(str(tmp_path / "live" / name)) as container:
            frames = list(container.decode(video=0))
            sizes.append((frames[0].width, frames[0].height, len(frames)))
    assert sizes == [(64, 48, 3), (34, 22, 3)]


def test_a_writer_resumed_from_state_continues_numbering_and_clock(tmp_path: Path) -> None:
    first = HlsWriter(tmp_path, segment_s=1.0)
    for i in range(25):
        first.write(solid(80), 50.0 + i / 10)
    state = json.loads(json.dumps(first.state()))  # what the service stores
    # the process dies here: segment 3 was open, never finished
    second = HlsWriter(tmp_path, segment_s=1.0, state=state)
    for i in range(15):
        second.write(solid(160), 900.0 + i / 10)
    second.finish()
    playlist = tmp_path / LIVE_PLAYLIST
    assert listed_segments(playlist) == ["seg-000001.ts", "seg-000002.ts", "seg-000004.ts", "seg-000005.ts"]
    text = playlist.read_text()
    assert text.index("seg-000002.ts") < text.index("#EXT-X-DISCONTINUITY\n") < text.index("seg-000004.ts")
    assert re.findall(r"#EXT-X-PROGRAM-DATE-TIME:(.*)", text) == [  # the first run's dates kept
        "1970-01-01T00:00:50.000Z", "1970-01-01T00:00:51.000Z", "1970-01-01T00:15:00.000Z", "1970-01-01T00:15:01.000Z"
    ]
    times = decoded_times(playlist)
    assert len(times) == 20 + 15
    # the clock goes on from the first run's last frame (2.4 s; the unfinished segment's frames
    # are lost), not from 0 and not by the 850 s the worker was away
    assert np.all(np.diff(times) > 0) and times[20] == pytest.approx(2.5, abs=0.01)


def test_the_state_stays_small_however_long_the_recording(tmp_path: Path) -> None:
    first = HlsWriter(tmp_path, segment_s=1.0)
    for i in range(700):  # one-frame segments: as many as 23 minutes of 2 s segments
        first.write(solid(10, (16, 16)), float(i))
    # a worker dies (segment 700, open, is lost) and another takes over from the state
    second = HlsWriter(tmp_path, segment_s=1.0, state=json.loads(json.dumps(first.state())))
    for i in range(700):
        second.write(solid(10, (16, 16)), 1000.0 + i)
    assert second.state()["folded"]  # taken mid-way: the folding kept for the next state goes on from it
    for i in range(700, 800):
        second.write(solid(10, (16, 16)), 1000.0 + i)
    state = second.state()
    assert state == second.state() and len(json.dumps(state)) < 16_000
    rebuilt = HlsWriter(tmp_path / "again", segment_s=1.0, state=state)
    listed = rebuilt.listed()
    expected = [*range(1, 700), *range(701, 1500)]  # every finished segment, the lost one skipped
    assert [s.sequence for s in listed] == expected
    assert [s.sequence for s in listed if s.discontinuity] == [701]  # the resume, though folded
    assert sum(s.duration_s for s in listed) == pytest.approx(699.0 + 799.0, abs=0.5)


def test_retention_also_drops_folded_segments_and_counts_their_discontinuities(tmp_path: Path) -> None:
    first = HlsWriter(tmp_path, segment_s=1.0)
    for i in range(300):
        first.write(solid(10, (16, 16)), float(i))
    second = HlsWriter(tmp_path, segment_s=1.0, state=first.state())  # 299 finished, 300 lost
    for i in range(600):
        second.write(solid(10, (16, 16)), 1000.0 + i)
    # a third run keeps only 100 s: the folded older segments go, the resume's discontinuity with them
    third = HlsWriter(tmp_path, segment_s=1.0, retention_s=100.0, state=second.state())
    listed = [s.sequence for s in third.listed()]
    assert listed == list(range(800, 900))
    _, removed = third.take_changes()
    assert removed == [live_segment(n) for n in [*range(1, 300), *range(301, 800)]]
    third.finish()  # the whole (retained) recording: from 800
    tags = playlist_tags(tmp_path / LIVE_PLAYLIST)
    assert (tags["EXT-X-MEDIA-SEQUENCE"], tags["EXT-X-DISCONTINUITY-SEQUENCE"]) == ("800", "1")


def test_the_live_playlist_is_a_sliding_window_and_the_end_lists_the_whole_recording(tmp_path: Path) -> None:
    """Fails without the sliding window: index.m3u8 listed (and rewrote) every segment, every 2 s."""
    writer = HlsWriter(tmp_path, segment_s=1.0, live_segments=5, recording_interval_s=3600)
    for i in range(60):
        writer.write(solid(60), 100.0 + i / 10)
    writer.cut(discontinuity=True)  # a gap inside the window, one before it
    for i in range(30):
        writer.write(solid(90), 200.0 + i / 10)
    writer.cut(discontinuity=True)
    for i in range(31):
        writer.write(solid(120), 300.0 + i / 10)
    playlist = tmp_path / LIVE_PLAYLIST
    live = listed_segments(playlist)
    assert len(live) == 5 and live[-1] == "seg-000012.ts"  # 6 + 3 + 3 closed, the 13th open
    tags = playlist_tags(playlist)
    assert tags["EXT-X-MEDIA-SEQUENCE"] == "8"
    assert tags["EXT-X-DISCONTINUITY-SEQUENCE"] == "1"  # the jump before segment 7 is behind the window
    assert playlist.read_text().count("#EXT-X-DISCONTINUITY\n") == 1  # the one before segment 10
    assert not (tmp_path / LIVE_RECORDING).exists()  # not rewritten with every segment
    writer.pause()  # a hand-back: the recording so far, the live playlist not ended
    assert len(listed_segments(tmp_path / LIVE_RECORDING)) == 13
    assert "#EXT-X-ENDLIST" not in playlist.read_text() + (tmp_path / LIVE_RECORDING).read_text()
    writer = HlsWriter(tmp_path, segment_s=1.0, live_segments=5, recording_interval_s=3600, state=writer.state())
    for i in range(20):
        writer.write(solid(200), 400.0 + i / 10)
    writer.finish()
    assert playlist.read_text() == (tmp_path / LIVE_RECORDING).read_text()
    assert playlist.read_text().rstrip().endswith("#EXT-X-ENDLIST")
    assert listed_segments(playlist) == [f"seg-{n:06d}.ts" for n in range(1, 16)]
    assert len(decoded_times(playlist)) == 60 + 30 + 31 + 20  # after the end, the whole recording plays


def test_writer_rejects_bad_settings() -> None:
    with pytest.raises(InvalidInput, match="segment_retention_s"):
        HlsWriter(Path("unused"), segment_s=2.0, retention_s=1.0)
    with pytest.raises(InvalidInput, match="preset"):
        HlsWriter(Path("unused"), preset="warp-speed")


# --- StreamRun with a paced clip ----------------------------------------------------------------

RED = MovingBox(color=(230, 40, 40), start=(0, 60), velocity=(8, 0), size=(40, 40))
GATE = CountingLine(name="gate", start=(160, 0), end=(160, 240))  # walking right crosses it: "out"
PEN = CountingZone(name="pen", polygon=[(200, 0), (320, 0), (320, 240), (200, 240)])


@pytest.fixture(scope="module")
def walk_frames(tmp_path_factory: pytest.TempPathFactory) -> list[np.ndarray]:
    """One red animal walks left to right across a 320x240 clip (40 frames at 10 fps), decoded
    back from H.264 with PyAV; looped, another walks through every 4 s."""
    clip = write_clip(tmp_path_factory.mktemp("clip") / "walk.mp4", boxes=[RED], frames=40, fps=10)
    return [frame.image for frame in iter_frames(clip, probe(clip))]


class ClipSource:
    """LiveSource's interface over decoded frames, looped at ``fps`` in real time. Only the
    newest due frame is handed out: those that came due while the caller was busy are dropped
    and counted. ``gap_after``: after that many frames, one Gap (the camera reset).
    ``every_frame``: never drop; hand out each frame in turn once due (for tests about what is
    tracked, which a loaded CPU dropping frames would change)."""

    def __init__(self, frames: list[np.ndarray], fps: float = 10.0, gap_after: int | None = None,
                 every_frame: bool = False) -> None:
        self.frames, self.fps, self.gap_after, self.every_frame = frames, fps, gap_after, every_frame
        self.frames_received = self.frames_dropped = self.reconnects = 0
        self.started = time.time()
        self.delivered = -1  # index of the last frame handed out
        self.gap_pending = False
        self.closed = False

    def next(self, timeout: float) -> LiveFrame | Gap | None:
        if self.gap_pending:
            self.gap_pending = False
            self.reconnects += 1
            return Gap(time.time() - 1.0, time.time(), "stall")
        deadline = time.time() + timeout
        while True:
            due = int((time.time() - self.started) * self.fps)
            if self.every_frame:
                due = min(due, self.delivered + 1)
            if due > self.delivered:
                break
            if time.time() >= deadline:
                return None
            time.sleep(min(0.01, max(0.0, deadline - time.time())))
        self.frames_received += due - self.delivered
        self.frames_dropped += due - self.delivered - 1
        self.delivered = due
        if self.gap_after is not None and due >= self.gap_after:
            self.gap_after, self.gap_pending = None, True
        image = self.frames[due % len(self.frames)].copy()
        return LiveFrame(image, time.time(), due / self.fps, 1 + self.reconnects)

    def close(self) -> None:
        self.closed = True


class ColourBoxDetector:
    """Finds the red box by colour: a real detector of this toy world. ``delay_s``: slow."""

    labels = {0: "cow"}
    model_id, device, random_weights = "colour-boxes", "cpu", False

    def __init__(self, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s
        self.calls = 0

    def class_ids(self, class_names) -> set[int]:
        if set(class_names) - {"cow"}:
            raise InvalidInput(f"unknown classes {class_names}")
        return {0}

    def detect(self, images, threshold, class_names=None) -> list[sv.Detections]:
        self.calls += len(images)
        if images and self.delay_s:
            time.sleep(self.delay_s)
        return [self._find(image) for image in images]

    def detect_views(self, images, views, threshold, class_names=None) -> list[sv.Detections]:
        raise AssertionError("no tiling for this detector")

    def model_input_size(self, width: int, height: int) -> None:
        return None

    def tile_size(self) -> None:
        return None

    def describe(self) -> dict:
        return {"id": self.model_id}

    def _find(self, image: np.ndarray) -> sv.Detections:
        mask = (np.abs(image.astype(int) - RED.color) < 40).all(axis=2)
        ys, xs = np.nonzero(mask)
        boxes = [(xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)] if len(xs) > 50 else []
        return sv.Detections(
            xyxy=np.array(boxes, dtype=np.float32).reshape(-1, 4),
            confidence=np.full(len(boxes), 0.95, dtype=np.float32),
            class_id=np.zeros(len(boxes), dtype=int),
            data={"class_name": np.array(["cow"] * len(boxes), dtype=str)},
        )


def never() -> bool:
    return False


def as_stored(state: StreamState) -> dict:
    """A state as the service stores it (JSON)."""
    return json.loads(state.to_json())


class Recorder(QuietSink):
    """A StreamRun's sink that keeps everything reported to it (states as stored), and stops
    when told (``stopping``)."""

    def __init__(self) -> None:
        self.statuses: list[LiveStatus] = []
        self.windows: list[tuple[dict, dict]] = []
        self.files: list[tuple[dict[str, Path], list[str]]] = []
        self.events: list[CountEvent] = []
        self.stop: Callable[[], bool] = never
        self.hand_back: Callable[[], bool] = never

    def stopping(self, stop: Callable[[], bool] = never, hand_back: Callable[[], bool] = never) -> Recorder:
        """This sink, ending the stream once ``stop()`` says so (handing it back: ``hand_back()``)."""
        self.stop, self.hand_back = stop, hand_back
        return self

    def should_stop(self) -> bool:
        return self.stop()

    def should_hand_back(self) -> bool:
        return self.hand_back()

    def on_status(self, status: LiveStatus) -> None:
        self.statuses.append(status)

    def on_window(self, record: dict, state: StreamState) -> None:
        self.windows.append((record, as_stored(state)))

    def on_files(self, changed: dict[str, Path], removed: list[str]) -> None:
        self.files.append((dict(changed), list(removed)))

    def on_event(self, event: CountEvent) -> None:
        self.events.append(event)


def stop_after(seconds: float):
    deadline = time.monotonic() + seconds
    return lambda: time.monotonic() >= deadline


def processed(seen: Recorder) -> int:
    """Frames counted so far, as the last status said. Conditions on it, not on elapsed time:
    on a loaded machine a second of stream processes fewer frames."""
    return seen.statuses[-1].frames_processed if seen.statuses else 0


def stream_config(**overrides) -> StreamConfig:
    settings = {"window_s": 1.0, "segment_s": 1.0, "status_interval_s": 0.3, "tracker": Tracker.BYTETRACK,
                "lines": [GATE], "zones": [PEN], "preset": "ultrafast"}
    return StreamConfig(**{**settings, **overrides})


def test_a_stream_is_counted_in_windows_with_events_segments_and_final_stats(
    walk_frames: list[np.ndarray], tmp_path: Path
) -> None:
    seen = Recorder()
    source = ClipSource(walk_frames)
    run = StreamRun("rtsp://viewer:pa55@camera.invalid/stream?token=t0k", stream_config(), ColourBoxDetector(),
                    tmp_path, seen.stopping(stop_after(7.0)), source=source)
    stats, outputs = run.run()
    assert source.closed and live_video_threads() == []
    assert stats["source"] == "rtsp://camera.invalid/stream"  # no credentials in any output
    texts = [outputs[name].read_text() for name in (WINDOWS, STATS, LIVE_PLAYLIST)]
    assert not any(secret in text for text in texts for secret in ("pa55", "t0k", "viewer"))

    # two animals walked through in 7 s (one every 4 s): each counted once, crossing once, in the pen once
    counts = stats["counts"]
    assert counts["total_unique"] == 2 and counts["by_class"] == {"cow": 2}
    assert counts["lines"]["gate"]["out"] == 2 and counts["lines"]["gate"]["in"] == 0
    assert counts["lines"]["gate"]["by_class"]["out"] == {"cow": 2}
    assert counts["zones"]["pen"]["entries"] == 2
    kinds = [(e.kind, e.name, e.direction) for e in seen.events]
    assert kinds.count(("line_crossing", "gate", "out")) == 2
    assert kinds.count(("zone_entry", "pen", None)) == 2
    assert len({e.track_id for e in seen.events}) == 2

    # windows: numbered from 1, contiguous, their counts add up to the totals
    windows = jsonl(tmp_path / WINDOWS)
    assert [w["window"] for w in windows] == list(range(1, len(windows) + 1)) and len(windows) >= 7
    assert all(a["to"] == b["from"] for a, b in zip(windows, windows[1:], strict=False))
    assert sum(w["unique"] for w in windows) == 2
    assert sum(w["lines"]["gate"]["out"] for w in windows) == 2
    assert sum(w["zones"]["pen"]["entries"] for w in windows) == 2
    assert sum(w["frames_processed"] for w in windows) == stats["frames"]["processed"] >= 60
    assert [record for record, _ in seen.windows] == windows
    full = [w for w in windows[:-1] if w["frames_processed"]]
    assert all(w["latency_p95_s"] is not None and w["latency_p95_s"] < 1.5 for w in full)  # bounded (speed: the bench)
    assert any(w["zones"]["pen"]["max_occupancy"] == 1 for w in windows)

    # the state handed over at each window is small JSON
    state = seen.windows[-1][1]
    assert len(json.dumps(state)) < 64_000 and state["totals"] == counts
    assert (state["window"], state["next_window"]) == (windows[-1]["window"], windows[-1]["window"] + 1)

    # outputs: playlist ended, every listed segment on disk, stats.json written
    playlist = tmp_path / LIVE_PLAYLIST
    assert playlist.read_text().rstrip().endswith("#EXT-X-ENDLIST")
    names = listed_segments(playlist)
    assert len(names) >= 6 and all((tmp_path / "live" / name).is_file() for name in names)
    assert len(decoded_times(playlist)) == stats["frames"]["processed"]  # every counted frame is in the video
    assert json.loads((tmp_path / STATS).read_text()) == stats
    assert set(outputs) == {WINDOWS, STATS, LIVE_PLAYLIST, LIVE_RECORDING} | {f"live/{name}" for name in names}

    # on_files reported each of them as it was written, and each window's gallery (tests/test_live_gallery.py)
    reported = {name for changed, _ in seen.files for name in changed}
    assert {name for name in reported if not name.startswith(("gallery/", "crops/"))} == set(outputs)

    # status: running totals, climbing frame counters, no drops at this pace
    assert seen.statuses[-1].counts == counts
    assert seen.statuses[-1].frames_processed == stats["frames"]["processed"]
    assert sum(len(s.latencies_s) for s in seen.statuses) == stats["frames"]["processed"]
    # a loaded CPU may hold the loop past a frame's time now and then: a few drops, never a share
    assert stats["frames"]["dropped"] <= max(3, stats["frames"]["processed"] // 10)
    assert stats["gaps_total"] == 0


def test_a_gap_ends_every_track_so_an_animal_in_view_counts_again(
    walk_frames: list[np.ndarray], tmp_path: Path
) -> None:
    seen = Recorder()
    # the gap comes at frame 15, while the first animal is mid-frame (x = 120); every frame is
    # counted and the run stops at frame 35, before the second animal (a loaded CPU dropping
    # frames broke the track once: 3 tracks)
    source = ClipSource(walk_frames, gap_after=15, every_frame=True)
    run = StreamRun("rtsp://camera.invalid/s", stream_config(), ColourBoxDetector(), tmp_path,
                    seen.stopping(until(lambda: source.delivered >= 35, 60)), source=source)
    stats, _ = run.run()
    assert stats["counts"]["total_unique"] == 2  # one animal, two tracks: before and after the gap
    assert stats["gaps_total"] == 1 and stats["gaps"][0]["reason"] == "stall"
    assert [gap["reason"] for status in seen.statuses for gap in status.gaps] == ["stall"]
    assert sum(w["gaps"] for w in jsonl(tmp_path / WINDOWS)) == 1
    assert "#EXT-X-DISCONTINUITY\n" in (tmp_path / LIVE_PLAYLIST).read_text()
    assert stats["reconnects"] == 1


def frames_with_red_box_at(xs: list[int | None]) -> list[np.ndarray]:
    """320x240 frames on grass, the red box at x (None: no box)."""
    frames = []
    for x in xs:
        image = np.full((240, 320, 3), (60, 140, 60), dtype=np.uint8)
        if x is not None:
            image[100:140, x:x + 40] = RED.color
        frames.append(image)
    return frames


def test_a_stream_counts_a_track_by_the_rule_a_video_counts_it_by(tmp_path: Path) -> None:
    """A false detection in 2 frames in a row is confirmed at min_hits 2, but seen for 0.2 s in
    all at 10 fps, under ``min_track_s``: a video drops it as flicker, and a stream does not
    count it either. The animal walking through after it (8 frames) counts in both."""
    xs: list[int | None] = [None] * 8 + [260, 260] + [None] * 8 + [20 + 10 * i for i in range(8)] + [None] * 8
    frames = frames_with_red_box_at(xs)
    detector = ColourBoxDetector()
    video = ObjectCounter(CountingConfig(fps=10.0, min_hits=2, tracker=Tracker.BYTETRACK))
    for index, frame in enumerate(frames):
        video.update(index, index / 10, detector.detect([frame], 0.5)[0])
    summary = video.summary()
    assert (summary.total_unique, summary.short_tracks) == (1, 1)  # the flicker was confirmed, then dropped

    seen = Recorder()
    source = ClipSource(frames, every_frame=True)
    stats, _ = StreamRun("rtsp://camera.invalid/s", stream_config(min_hits=2), detector, tmp_path,
                         seen.stopping(until(lambda: source.delivered >= len(frames) - 1, 60)), source=source).run()
    assert stats["frames"]["processed"] >= len(frames)
    assert stats["counts"]["total_unique"] == summary.total_unique == 1
    assert sum(window["unique"] for window in jsonl(tmp_path / WINDOWS)) == 1


def test_a_resumed_run_continues_totals_windows_segments_and_track_ids(
    walk_frames: list[np.ndarray], tmp_path: Path
) -> None:
    first = Recorder()
    StreamRun("rtsp://camera.invalid/s", stream_config(), ColourBoxDetector(), tmp_path,
              first.stopping(stop_after(4.5)), source=ClipSource(walk_frames)).run()
    record, state = first.windows[-2]  # the process "dies" after this window: the last state stored
    state = json.loads(json.dumps(state))
    windows_before = jsonl(tmp_path / WINDOWS)
    kept = [w for w in windows_before if w["window"] <= record["window"]]
    (tmp_path / WINDOWS).write_text("".join(json.dumps(w) + "\n" for w in kept))  # what storage holds
    first_ids = {e.track_id for e in first.events}

    second = Recorder()
    stats, _ = StreamRun(
        "rtsp://camera.invalid/s", stream_config(), ColourBoxDetector(), tmp_path,
        second.stopping(stop_after(3.5)), resume=StreamState.from_dict(state), source=ClipSource(walk_frames),
    ).run()
    assert stats["counts"]["total_unique"] == state["totals"]["total_unique"] + 1 == 2
    windows = jsonl(tmp_path / WINDOWS)
    assert [w["window"] for w in windows] == list(range(1, len(windows) + 1))
    assert windows[len(kept)]["gaps"] == 1  # the resume is recorded as a gap
    assert stats["gaps"][-1]["reason"] == "resumed" and stats["gaps_total"] == 1
    assert min(e.track_id for e in second.events) > max(first_ids)  # ids keep rising
    playlist = (tmp_path / LIVE_PLAYLIST).read_text()
    numbers = [int(n) for n in re.findall(r"seg-(\d+)\.ts", playlist)]
    assert numbers == sorted(numbers) and numbers[0] == 1 and "#EXT-X-DISCONTINUITY" in playlist
    assert stats["streaming_s"] > state["streaming_s"] + 3
    assert stats["frames"]["processed"] > state["frames_processed"]


def test_a_slow_detector_drops_frames_and_latency_stays_bounded(
    walk_frames: list[np.ndarray], tmp_path: Path
) -> None:
    seen = Recorder()
    source = ClipSource(walk_frames, fps=25.0)
    stats, _ = StreamRun(
        "rtsp://camera.invalid/s", stream_config(), ColourBoxDetector(delay_s=0.2), tmp_path,
        seen.stopping(stop_after(4.0)), source=source,
    ).run()
    assert stats["frames"]["dropped"] > 40  # ~25 fps in, ~5 fps processed
    assert stats["frames"]["processed"] < stats["frames"]["received"] / 2
    assert 0.2 <= stats["latency"]["p95_s"] < 1.5  # the detector's 0.2 s plus a frame's wait; a backlog would reach ~3 s
    assert sum(w["frames_dropped"] for w in jsonl(tmp_path / WINDOWS)) == stats["frames"]["dropped"]


def test_memory_stays_flat_as_animals_keep_coming(walk_frames: list[np.ndarray], tmp_path: Path) -> None:
    """A new animal every 2 s at 20 fps: Python memory after 12 s of stream is what it was after
    4 s, and the counter remembers no track that ended."""
    samples: list[int] = []
    statuses: list[LiveStatus] = []
    twelve_seconds = stop_after(12.5)

    def enough() -> bool:  # 12.5 s of stream, 150 frames and 5 animals counted (a loaded CPU counts fewer a second)
        return (twelve_seconds() and bool(statuses) and statuses[-1].frames_processed >= 150
                and statuses[-1].counts["total_unique"] >= 5 and len(samples) >= 6)

    class Measuring(QuietSink):
        def on_window(self, record: dict, state: StreamState) -> None:
            gc.collect()  # what is still referenced, not garbage waiting for the collector
            # less the gallery's crops of the animals in view at that moment: bounded, not a leak,
            # but whether one is held depends on where the window closes in an animal's walk
            samples.append(tracemalloc.get_traced_memory()[0] - run.gallery.crop_bytes)

        def on_status(self, status: LiveStatus) -> None:
            statuses.append(status)

        should_stop = staticmethod(until(enough, 90))

    run = StreamRun(
        "rtsp://camera.invalid/s", stream_config(window_s=2.0), ColourBoxDetector(), tmp_path, Measuring(),
        source=ClipSource(walk_frames, fps=20.0, every_frame=True),
    )
    tracemalloc.start()
    try:
        stats, _ = run.run()
    finally:
        tracemalloc.stop()
    assert stats["counts"]["total_unique"] >= 5 and stats["frames"]["processed"] >= 150  # 250 offered; a loaded CPU drops some
    assert len(samples) >= 6
    # floor to floor: a frame on its way to the video thread (320x240x3: 230 KB) lifts a sample
    # whenever the loop is behind, as on a loaded machine; a leak lifts every later one
    growth = min(samples[-3:]) - min(samples[1:3])
    assert growth < 40_000, samples  # 150+ frames later: a leak of 250 bytes a frame would show
    assert len(run.tracks.counter._tracks) <= 2  # in view, or lost within the track buffer: ended ones gone


def test_duration_ends_the_stream_and_bad_settings_are_refused(walk_frames: list[np.ndarray], tmp_path: Path) -> None:
    started = time.monotonic()
    stats, _ = StreamRun("rtsp://camera.invalid/s", stream_config(duration_s=1.5), ColourBoxDetector(),
                         tmp_path, source=ClipSource(walk_frames)).run()
    assert 1.4 < time.monotonic() - started < 4 and 1.5 <= stats["streaming_s"] < 3
    with pytest.raises(InvalidInput, match="window_s"):
        stream_config(window_s=0)
    with pytest.raises(InvalidInput, match="segment_retention_s"):
        stream_config(segment_s=2.0, segment_retention_s=1.0)
    with pytest.raises(InvalidInput, match="tracker must be one of botsort, bytetrack"):
        stream_config(tracker="psychic").counting_config()


def test_unknown_classes_fail_before_the_source_is_opened(tmp_path: Path) -> None:
    source = ClipSource([np.zeros((8, 8, 3), np.uint8)])
    with pytest.raises(InvalidInput, match="unknown classes"):
        StreamRun("rtsp://camera.invalid/s", stream_config(detection=DetectionConfig(classes=["unicorn"])),
                  ColourBoxDetector(), tmp_path, source=source).run()
    assert source.frames_received == 0


def test_a_failing_sink_stops_the_run_with_its_error(walk_frames: list[np.ndarray], tmp_path: Path) -> None:
    class Broken(Recorder):
        def on_window(self, record: dict, state: StreamState) -> None:
            raise RuntimeError("storage is down")

    source = ClipSource(walk_frames)
    with pytest.raises(RuntimeError, match="storage is down"):
        StreamRun("rtsp://camera.invalid/s", stream_config(), ColourBoxDetector(), tmp_path,
                  Broken().stopping(stop_after(10)), source=source).run()
    assert source.closed
    assert not list((tmp_path / "live").glob(".*.partial"))  # no half-written segment left behind
    assert live_video_threads() == []


class Journal(Recorder):
    """A Recorder that also keeps the order of stored states and uploaded files (``store_state``
    and ``on_window`` states are what the service stores)."""

    def __init__(self) -> None:
        super().__init__()
        self.states: list[dict] = []
        self.journal: list[tuple[str, object]] = []

    def on_window(self, record: dict, state: StreamState) -> None:
        super().on_window(record, state)
        self.store_state(state)

    def on_files(self, changed: dict[str, Path], removed: list[str]) -> None:
        super().on_files(changed, removed)
        self.journal.append(("files", sorted(changed)))

    def store_state(self, state: StreamState) -> None:
        stored = as_stored(state)
        self.states.append(stored)
        self.journal.append(("state", stored))


def segment_numbers(names) -> list[int]:
    """The numbers of the segments among output names."""
    return [int(match.group(1)) for name in names if (match := re.fullmatch(r"live/seg-(\d+)\.ts", name))]


def test_a_hand_back_finalises_nothing_and_the_next_run_continues_its_window(
    walk_frames: list[np.ndarray], tmp_path: Path
) -> None:
    """Fails without the hand-back stop: the run wrote stats.json, ended the playlist and a
    short last window, as if the stream had ended."""
    first = Journal()
    run = StreamRun("rtsp://camera.invalid/s", stream_config(), ColourBoxDetector(), tmp_path,
                    first.stopping(hand_back=stop_after(2.5)), source=ClipSource(walk_frames))
    stats, _ = run.run()
    assert run.handed_back
    assert not (tmp_path / STATS).exists()
    assert "#EXT-X-ENDLIST" not in (tmp_path / LIVE_PLAYLIST).read_text()
    written = jsonl(tmp_path / WINDOWS)
    state = first.states[-1]  # stored by the hand-back: the unfinished window is in it
    assert state["open_window"]["number"] == state["next_window"] == written[-1]["window"] + 1
    assert state["totals"] == stats["counts"]
    assert state["open_window"]["frames_processed"] > 0
    assert listed_segments(tmp_path / LIVE_RECORDING)  # the closed segments, for the next run

    # stopped (DELETE) before the next run starts: the unfinished window is written as it was
    stopped = tmp_path.parent / f"{tmp_path.name}-stopped"
    shutil.copytree(tmp_path, stopped)
    final, _ = StreamRun("rtsp://camera.invalid/s", stream_config(), ColourBoxDetector(), stopped,
                         Recorder().stopping(lambda: True), resume=StreamState.from_dict(state),
                         source=ClipSource(walk_frames)).run()
    ended = jsonl(stopped / WINDOWS)
    assert ended[:-1] == written and ended[-1]["window"] == state["open_window"]["number"]
    assert sum(w["unique"] for w in ended) == final["counts"]["total_unique"] == stats["counts"]["total_unique"]

    second = Journal()
    stats, _ = StreamRun("rtsp://camera.invalid/s", stream_config(), ColourBoxDetector(), tmp_path,
                         second.stopping(stop_after(3.0)), resume=StreamState.from_dict(state),
                         source=ClipSource(walk_frames)).run()
    windows = jsonl(tmp_path / WINDOWS)
    assert [w["window"] for w in windows] == list(range(1, len(windows) + 1))  # no window twice, none short-lived
    carried = windows[len(written)]
    assert carried["from"] == iso(state["open_window"]["started_at"]) and carried["gaps"] == 1  # the resume
    assert carried["frames_processed"] > state["open_window"]["frames_processed"]
    # every count is in exactly one window: the unfinished window's counts were not lost
    assert sum(w["unique"] for w in windows) == stats["counts"]["total_unique"] >= 1
    assert sum(w["frames_processed"] for w in windows) == stats["frames"]["processed"]
    assert (tmp_path / LIVE_PLAYLIST).read_text().rstrip().endswith("#EXT-X-ENDLIST")


def test_a_stop_before_the_first_frame_of_a_resumed_run_ends_the_outputs_from_the_state(
    walk_frames: list[np.ndarray], tmp_path: Path
) -> None:
    """A DELETE while the stream was between workers (the last one was SIGKILLed). Fails
    without the fix: the run connected and wrote one more (empty) window."""
    first = Recorder()
    StreamRun("rtsp://camera.invalid/s", stream_config(), ColourBoxDetector(), tmp_path,
              first.stopping(stop_after(2.5)), source=ClipSource(walk_frames)).run()
    _, state = first.windows[-2]  # the worker "died" after this window
    state = json.loads(json.dumps(state))
    (tmp_path / STATS).unlink()
    kept = [w for w in jsonl(tmp_path / WINDOWS) if w["window"] < state["next_window"]]
    (tmp_path / WINDOWS).write_text("".join(json.dumps(w) + "\n" for w in kept))

    second = Recorder()
    source = ClipSource(walk_frames)
    stats, outputs = StreamRun("rtsp://camera.invalid/s", stream_config(), ColourBoxDetector(), tmp_path,
                               second.stopping(lambda: True), resume=StreamState.from_dict(state),
                               source=source).run()
    assert source.frames_received == 0 and live_video_threads() == []
    assert jsonl(tmp_path / WINDOWS) == kept  # the windows as they are
    assert stats["counts"] == state["totals"] and json.loads((tmp_path / STATS).read_text()) == stats
    assert stats["streaming_s"] == pytest.approx(state["streaming_s"], abs=0.5)
    playlist = (tmp_path / LIVE_PLAYLIST).read_text()
    assert playlist.rstrip().endswith("#EXT-X-ENDLIST")
    stored = [n for n, *_ in state["segments"]["segments"]]
    assert listed_segments(tmp_path / LIVE_PLAYLIST) == [f"seg-{n:06d}.ts" for n in stored]
    reported = {name for changed, _ in second.files for name in changed}
    assert {STATS, LIVE_PLAYLIST} <= reported and set(outputs) >= {STATS, LIVE_PLAYLIST, WINDOWS}


def test_segment_numbers_are_never_reused_after_a_resume(walk_frames: list[np.ndarray], tmp_path: Path) -> None:
    """Segments are served immutable. Fails without the reserved numbers: a run resumed from
    a state numbered on from it, over the segments uploaded after that state was stored."""
    first = Journal()
    config = stream_config(segment_s=0.25)
    StreamRun("rtsp://camera.invalid/s", config, ColourBoxDetector(), tmp_path,
              first.stopping(stop_after(3.5)), source=ClipSource(walk_frames)).run()
    # wherever the worker dies, the segments it uploaded after its last stored state are below
    # the numbers that state reserves
    reserved = 0
    for kind, item in first.journal:
        if kind == "state":
            reserved = item["segments_reserved_to"]
        else:
            assert all(n < reserved for n in segment_numbers(item)), (item, reserved)
    assert len(first.states) >= 3 and first.states[0]["window"] == 0  # one at the start, one per window
    # it dies after the second state: a resumed run numbers past everything uploaded before the third
    at = [i for i, (kind, _) in enumerate(first.journal) if kind == "state"]
    uploaded = [n for kind, item in first.journal[:at[2]] if kind == "files" for n in segment_numbers(item)]
    assert max(uploaded) >= first.states[1]["segments"]["next_sequence"]  # what the numbering used to reuse
    second = Recorder()
    StreamRun("rtsp://camera.invalid/s", config, ColourBoxDetector(), tmp_path,
              second.stopping(stop_after(1.5)),
              resume=StreamState.from_dict(first.states[1]), source=ClipSource(walk_frames)).run()
    numbers = [n for changed, _ in second.files for n in segment_numbers(changed)]
    assert numbers and min(numbers) > max(uploaded)


class GappySource(ClipSource):
    """A camera that resets ``gaps`` times before its frames flow."""

    def __init__(self, frames: list[np.ndarray], gaps: int) -> None:
        super().__init__(frames)
        self.gaps = gaps

    def next(self, timeout: float) -> LiveFrame | Gap | None:
        if self.gaps:
            self.gaps -= 1
            self.reconnects += 1
            return Gap(time.time() - 0.5, time.time(), "ended")
        return super().next(timeout)


def test_every_gap_is_recorded_in_gaps_jsonl(walk_frames: list[np.ndarray], tmp_path: Path) -> None:
    """Fails without gaps.jsonl: only the newest 20 gaps were kept anywhere."""
    seen = Recorder()
    stats, outputs = StreamRun("rtsp://camera.invalid/s", stream_config(), ColourBoxDetector(), tmp_path,
                               seen.stopping(stop_after(1.5)), source=GappySource(walk_frames, 25)).run()
    assert stats["gaps_total"] == 25 and len(stats["gaps"]) == 20  # the record stays small
    gaps = jsonl(tmp_path / GAPS)
    assert len(gaps) == 25 and all(g["reason"] == "ended" for g in gaps)
    assert gaps[-20:] == stats["gaps"]
    assert GAPS in outputs and any(GAPS in changed for changed, _ in seen.files)  # uploaded as it grows


class LateSource(ClipSource):
    """A camera whose first frame comes ``late_s`` after the run opens it (a slow connect)."""

    def __init__(self, frames: list[np.ndarray], late_s: float) -> None:
        super().__init__(frames)
        self.first_frame_at = time.time() + late_s
        self.started = self.first_frame_at  # the clip's clock starts with its first frame

    def next(self, timeout: float) -> LiveFrame | Gap | None:
        if time.time() < self.first_frame_at:
            time.sleep(min(timeout, max(0.0, self.first_frame_at - time.time())))
            return None
        return super().next(timeout)


def test_duration_counts_streaming_time_from_the_first_frame(walk_frames: list[np.ndarray], tmp_path: Path) -> None:
    """Fails without the fix: duration_s ran from the start of the run, so the 1.5 s of
    connecting used the whole duration and the stream ended with hardly a frame counted."""
    source = LateSource(walk_frames, late_s=1.5)
    seen = Recorder()
    started = time.monotonic()
    stats, _ = StreamRun("rtsp://camera.invalid/s", stream_config(duration_s=1.5), ColourBoxDetector(), tmp_path,
                         seen, source=source).run()
    assert time.monotonic() - started >= 3.0  # 1.5 s connecting, then 1.5 s of streaming
    assert 1.5 <= stats["streaming_s"] < 3 and stats["frames"]["processed"] >= 8, stats
    before_first_frame = [status for status in seen.statuses if status.frames_received == 0]
    assert before_first_frame and all(status.streaming_s == 0 for status in before_first_frame)


class NoFrameSource(ClipSource):
    """A connection whose packets never decode into a frame: it neither delivers nor fails."""

    def next(self, timeout: float) -> LiveFrame | Gap | None:
        time.sleep(timeout)
        return None


def test_a_source_that_neither_delivers_nor_fails_is_failed_after_its_connect_budget(tmp_path: Path) -> None:
    """The first-connect attempts cannot see a connection that reads packets without a frame:
    the run bounds the wait for a first frame by the attempts' own timeouts. Fails without the
    bound: the run went on until should_stop (duration_s no longer ends a stream that never streamed)."""
    options = SourceOptions(open_timeout_s=0.2, read_timeout_s=0.2, backoff_max_s=0.1, first_connect_attempts=2)
    started = time.monotonic()
    with pytest.raises(StreamUnavailable, match=r"delivered no frame in \d+ s"):
        StreamRun("rtsp://viewer:secret@camera.invalid/s", stream_config(source=options, duration_s=1.0),
                  ColourBoxDetector(), tmp_path, Recorder().stopping(stop_after(20)),
                  source=NoFrameSource([])).run()
    assert time.monotonic() - started < 10  # 1.5 x 2 x 0.5 s, not the 20 s of should_stop
    assert not (tmp_path / STATS).exists()


# --- end to end: the real LiveSource on a real RTSP server ------------------------------------

FAST_SOURCE = SourceOptions(read_timeout_s=2.0, open_timeout_s=5.0, backoff_initial_s=0.2, backoff_max_s=0.5)


@pytest.fixture(scope="module")
def walk_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_clip(tmp_path_factory.mktemp("rtsp-clip") / "walk.mp4", boxes=[RED], frames=40, fps=10)


@pytest.fixture
def walk_server(rtsp_server_factory: Callable[..., RtspServer], walk_clip: Path) -> RtspServer:
    """The walking animal, looped for ever at 10 fps over RTSP: one animal through every 4 s."""
    return rtsp_server_factory(video=walk_clip, width=320, height=240, fps=10, gop_s=0.5)


def until(condition: Callable[[], bool], timeout_s: float) -> Callable[[], bool]:
    """should_stop: True once ``condition`` holds, or after ``timeout_s`` (the test then fails on
    what it asserts, instead of the run going on for ever)."""
    deadline = time.monotonic() + timeout_s
    return lambda: condition() or time.monotonic() > deadline


def test_rtsp_a_stream_is_counted_and_its_video_plays(walk_server: RtspServer, tmp_path: Path) -> None:
    seen = Recorder()
    config = stream_config(source=FAST_SOURCE)
    stats, outputs = StreamRun(
        walk_server.url, config, ColourBoxDetector(), tmp_path,
        seen.stopping(until(lambda: len(seen.windows) >= 6 and processed(seen) >= 30, 90)),
    ).run()
    assert len(seen.windows) >= 6
    counts = stats["counts"]
    assert counts["total_unique"] >= 1 and counts["by_class"].keys() == {"cow"}
    assert counts["lines"]["gate"]["out"] >= 1 and counts["lines"]["gate"]["in"] == 0
    assert stats["frames"]["processed"] >= 30 and stats["frames"]["received"] >= stats["frames"]["processed"]
    windows = jsonl(tmp_path / WINDOWS)
    assert sum(w["unique"] for w in windows) == counts["total_unique"]
    assert [w["window"] for w in windows] == list(range(1, len(windows) + 1))
    playlist = tmp_path / LIVE_PLAYLIST
    assert playlist.read_text().rstrip().endswith("#EXT-X-ENDLIST")
    assert len(decoded_times(playlist)) == stats["frames"]["processed"]
    assert (tmp_path / STATS).is_file() and STATS in outputs
    assert seen.statuses[-1].connected and seen.statuses[-1].counts == counts


def test_rtsp_a_killed_server_is_a_gap_and_counting_goes_on(walk_server: RtspServer, tmp_path: Path) -> None:
    seen = Recorder()
    processed_at_gap: list[int] = []

    def stop_when_counting_again() -> bool:
        if len(seen.windows) >= 2 and walk_server.starts == 1:
            walk_server.kill()  # no end-of-stream: the camera's power went
            walk_server.restart()
        gaps = [gap for status in seen.statuses for gap in status.gaps]
        if gaps and not processed_at_gap:
            processed_at_gap.append(seen.statuses[-1].frames_processed)
        return bool(processed_at_gap) and seen.statuses[-1].frames_processed >= processed_at_gap[0] + 30

    stats, _ = StreamRun(
        walk_server.url, stream_config(source=FAST_SOURCE), ColourBoxDetector(), tmp_path,
        seen.stopping(until(stop_when_counting_again, 90)),
    ).run()
    assert stats["gaps_total"] == 1 and stats["gaps"][0]["reason"] in ("stall", "ended")
    assert stats["reconnects"] == 1
    assert stats["frames"]["processed"] >= processed_at_gap[0] + 30  # counting went on after it
    assert stats["counts"]["total_unique"] >= 2  # the animal after the restart is a new track
    assert "#EXT-X-DISCONTINUITY" in (tmp_path / LIVE_PLAYLIST).read_text()
    assert len(decoded_times(tmp_path / LIVE_PLAYLIST)) == stats["frames"]["processed"]


def test_rtsp_a_resumed_stream_continues_where_the_state_left_it(walk_server: RtspServer, tmp_path: Path) -> None:
    first = Recorder()
    StreamRun(walk_server.url, stream_config(source=FAST_SOURCE), ColourBoxDetector(), tmp_path,
              first.stopping(until(lambda: len(first.windows) >= 3, 60))).run()
    _, state = first.windows[-1]
    second = Recorder()
    stats, _ = StreamRun(
        walk_server.url, stream_config(source=FAST_SOURCE), ColourBoxDetector(), tmp_path,
        second.stopping(until(lambda: len(second.windows) >= 3, 60)),
        resume=StreamState.from_dict(json.loads(json.dumps(state))),
    ).run()
    assert second.windows[0][0]["window"] == first.windows[-1][0]["window"] + 1
    assert stats["counts"]["total_unique"] >= state["totals"]["total_unique"]
    assert stats["frames"]["processed"] > state["frames_processed"]
    assert stats["gaps"][-1]["reason"] == "resumed"
    playlist = tmp_path / LIVE_PLAYLIST
    numbers = [int(n) for n in re.findall(r"seg-(\d+)\.ts", playlist.read_text())]
    assert numbers == sorted(set(numbers)) and numbers[0] == 1
    times = decoded_times(playlist)  # both runs' segments, one continuous recording
    assert len(times) >= stats["frames"]["processed"] - 20 and np.all(np.diff(times) > 0)


def test_rtsp_a_slow_detector_drops_frames_and_keeps_latency_bounded(
    rtsp_server_factory: Callable[..., RtspServer], walk_clip: Path, tmp_path: Path
) -> None:
    server = rtsp_server_factory(video=walk_clip, width=320, height=240, fps=25, gop_s=0.5)
    seen = Recorder()
    stats, _ = StreamRun(
        server.url, stream_config(source=FAST_SOURCE), ColourBoxDetector(delay_s=0.25), tmp_path,
        seen.stopping(until(lambda: len(seen.windows) >= 5, 60)),
    ).run()
    assert stats["frames"]["dropped"] > 30, stats["frames"]
    assert stats["frames"]["processed"] < stats["frames"]["received"] / 2
    assert stats["latency"]["p95_s"] < 1.5  # 0.25 s of "inference" plus the wait for it, never a backlog
    assert all(w["latency_p95_s"] < 1.5 for w in jsonl(tmp_path / WINDOWS) if w["latency_p95_s"] is not None)


@pytest.mark.heavy  # waits out real connect timeouts (no server: not marked by a fixture)
def test_rtsp_an_unreachable_source_raises_stream_unavailable(tmp_path: Path) -> None:
    options = SourceOptions(open_timeout_s=1.0, backoff_initial_s=0.1, backoff_max_s=0.2, first_connect_attempts=2)
    url = f"rtsp://viewer:secret@127.0.0.1:{free_port()}/cam"
    with pytest.raises(StreamUnavailable) as raised:
        StreamRun(url, stream_config(source=options), ColourBoxDetector(), tmp_path,
                  Recorder().stopping(stop_after(30))).run()
    assert "secret" not in str(raised.value)
    assert live_video_threads() == []  # the video thread ended with the run
    assert not (tmp_path / LIVE_PLAYLIST).exists() or "#EXT-X-ENDLIST" not in (tmp_path / LIVE_PLAYLIST).read_text()


@pytest.mark.parametrize("kind", ["silent rtsp", "hls with refused segments"])
def test_a_source_that_never_delivers_fails_instead_of_completing_at_its_duration(
        kind: str, silent_server: SilentServer, dead_segments_playlist: DeadSegmentsPlaylist, tmp_path: Path) -> None:
    """A source that accepts the connection and never answers (or an HLS playlist whose
    segments all fail), with a duration shorter than the connect attempts take. Fails without
    the fix: duration_s counted from the start of the run, and the run ended ``completed``
    with no frame, no error."""
    url = silent_server.url("rtsp") if kind == "silent rtsp" else dead_segments_playlist.url
    options = SourceOptions(read_timeout_s=1.0, open_timeout_s=1.5, backoff_initial_s=0.1, backoff_max_s=0.2,
                            first_connect_attempts=2)
    seen = Recorder()
    with pytest.raises(StreamUnavailable, match="could not be read after 2 attempts: timed out"):
        StreamRun(url, stream_config(source=options, duration_s=1.0), ColourBoxDetector(), tmp_path,
                  seen.stopping(stop_after(30))).run()
    assert not (tmp_path / STATS).exists()
    assert all(status.streaming_s == 0 and not status.connected for status in seen.statuses)
    assert live_video_threads() == []


def test_a_hand_back_before_the_first_frame_does_not_make_a_dead_source_a_lost_one(
        silent_server: SilentServer, tmp_path: Path) -> None:
    """The worker went away while the source was still being tried: the next run must still
    fail it after the first-connect attempts. Fails without the fix: any resume state meant the
    stream "had worked", so it was reconnected for ever (and then stopped, completed)."""
    options = SourceOptions(read_timeout_s=1.0, open_timeout_s=1.0, backoff_initial_s=0.1, backoff_max_s=0.2,
                            first_connect_attempts=2)
    first = Journal()
    run = StreamRun(silent_server.url("rtsp"), stream_config(source=options), ColourBoxDetector(), tmp_path,
                    first.stopping(hand_back=stop_after(0.5)))
    run.run()
    assert run.handed_back and first.states[-1]["streaming_s"] == 0
    with pytest.raises(StreamUnavailable, match="could not be read after 2 attempts"):
        StreamRun(silent_server.url("rtsp"), stream_config(source=options), ColourBoxDetector(), tmp_path,
                  Recorder().stopping(stop_after(20)), resume=StreamState.from_dict(first.states[-1])).run()


def test_rtsp_a_camera_gone_for_good_keeps_what_was_counted(walk_server: RtspServer, tmp_path: Path) -> None:
    seen = Recorder()
    options = SourceOptions(read_timeout_s=1.0, open_timeout_s=1.0, backoff_initial_s=0.1, backoff_max_s=0.2,
                            max_reconnects=1)

    deadline = stop_after(60)

    def kill_after_two_windows() -> bool:
        counted_enough = len(seen.windows) >= 2 and processed(seen) >= 10
        if walk_server.running and (counted_enough or deadline()):
            walk_server.kill()  # and it never comes back
        return False

    with pytest.raises(StreamUnavailable):
        StreamRun(walk_server.url, stream_config(source=options), ColourBoxDetector(), tmp_path,
                  seen.stopping(kill_after_two_windows)).run()
    windows = jsonl(tmp_path / WINDOWS)
    assert len(windows) >= 3 and windows == [record for record, _ in seen.windows]  # the last one too
    assert sum(w["frames_processed"] for w in windows) >= 10
    playlist = tmp_path / LIVE_PLAYLIST
    assert playlist.read_text().rstrip().endswith("#EXT-X-ENDLIST")
    assert len(decoded_times(playlist)) == sum(w["frames_processed"] for w in windows)
    reported = {name for changed, _ in seen.files for name in changed}
    assert {WINDOWS, LIVE_PLAYLIST} <= reported and not (tmp_path / STATS).exists()


def test_rtsp_only_the_run_s_thread_asks_should_stop(walk_server: RtspServer, tmp_path: Path) -> None:
    """The worker's should_stop may read the job record: the decode thread must not wait on it
    between packets. Fails without the stop flag: the source's thread called it too."""
    callers: set[str] = set()
    seen = Recorder()
    done = until(lambda: len(seen.windows) >= 2 and processed(seen) >= 10, 60)

    def should_stop() -> bool:
        callers.add(threading.current_thread().name)
        return done()

    stats, _ = StreamRun(walk_server.url, stream_config(source=FAST_SOURCE), ColourBoxDetector(), tmp_path,
                         seen.stopping(should_stop)).run()
    assert callers == {threading.current_thread().name}
    assert stats["frames"]["processed"] >= 10
    assert not any(t.name == "live-source" and t.is_alive() for t in threading.enumerate())


@pytest.mark.heavy  # waits out real connect timeouts (no server: not marked by a fixture)
def test_rtsp_a_resumed_run_waits_out_an_outage_instead_of_failing(tmp_path: Path) -> None:
    """The camera is down as the stream resumes on another worker. Fails without has_worked:
    the first-connect rule failed the stream (stream_unavailable) after first_connect_attempts."""
    options = SourceOptions(open_timeout_s=0.5, backoff_initial_s=0.1, backoff_max_s=0.2, first_connect_attempts=1)
    url = f"rtsp://127.0.0.1:{free_port()}/cam"  # nothing listens
    state = {"version": 1, "saved_at_s": time.time() - 5, "totals": {"total_unique": 3, "by_class": {"cow": 3}},
             "next_window": 4, "streaming_s": 180.0}
    seen = Recorder()
    stats, _ = StreamRun(url, stream_config(source=options), ColourBoxDetector(), tmp_path,
                         seen.stopping(stop_after(3.0)), resume=StreamState.from_dict(state)).run()
    assert stats["counts"]["total_unique"] == 3 and stats["frames"]["received"] == 0
    assert not seen.statuses[-1].connected


def test_rtsp_the_real_tiny_model_runs_live_with_tiling(
    rtsp_server_factory: Callable[..., RtspServer], tiny_rtdetr_detector, tmp_path: Path
) -> None:
    """The real Detector (random weights: its boxes are noise) through the tiled path: the
    plumbing (views, merging, classes, model facts) works on live frames of any size."""
    server = rtsp_server_factory(width=320, height=240, fps=10)
    seen = Recorder()
    config = stream_config(source=FAST_SOURCE, detection=DetectionConfig(threshold=0.0, tiling=parse_tiling("160x120")),
                           tracker=Tracker.BOTSORT)
    # stopped on frames counted, not on time: a loaded CPU may take seconds per tiled frame
    stats, _ = StreamRun(server.url, config, tiny_rtdetr_detector, tmp_path,
                         seen.stopping(until(lambda: processed(seen) >= 3 and len(seen.windows) >= 1, 120))).run()
    assert stats["frames"]["processed"] >= 3
    assert stats["model"]["random_weights"] is True and stats["model"]["id"]
    assert stats["tiling"]["tiled"] and stats["tiling"]["tile"] == "160x120"
    assert len(decoded_times(tmp_path / LIVE_PLAYLIST)) == stats["frames"]["processed"]


def live_video_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "cattlecounter-live-video" and t.is_alive()]


def test_a_failure_on_the_video_thread_stops_the_run_with_its_error(tmp_path: Path) -> None:
    class SeesNothing(ColourBoxDetector):
        def detect(self, images, threshold, class_names=None) -> list[sv.Detections]:
            return [sv.Detections.empty() for _ in images]

    rgba = [np.zeros((48, 64, 4), dtype=np.uint8)]  # a frame the encoder cannot take
    source = ClipSource(rgba)
    with pytest.raises(ValueError):
        StreamRun("rtsp://camera.invalid/s", stream_config(), SeesNothing(), tmp_path,
                  Recorder().stopping(stop_after(20)), source=source).run()
    assert source.closed and source.frames_received <= 10  # stopped at once, not after 20 s
    assert live_video_threads() == []
    assert not list((tmp_path / "live").glob(".*.partial"))


# --- end to end from a live HLS camera (tests/hls_camera.py: 1 s segments, program dates) --------


def test_hls_a_camera_is_counted_at_its_frame_rate_with_latency_from_capture(
        hls_camera: HlsCamera, tmp_path: Path) -> None:
    """FFmpeg decodes each segment in a burst: with the newest-frame mailbox alone, 8 of its 10
    frames were dropped however fast the detector."""
    seen = Recorder()

    def twenty_seconds_received() -> bool:
        return bool(seen.statuses) and seen.statuses[-1].frames_received >= 200  # 20 s at 10 fps

    stats, _ = StreamRun(
        hls_camera.url, stream_config(source=FAST_SOURCE), ColourBoxDetector(), tmp_path,
        seen.stopping(until(twenty_seconds_received, 120)),
    ).run()
    frames = stats["frames"]
    assert frames["received"] >= 200, frames
    # a segment arrives whole and its frames wait for their time: those still waiting when the run
    # stopped were neither counted nor dropped (at most a segment or two of them)
    waiting = frames["received"] - frames["processed"] - frames["dropped"]
    assert 0 <= waiting <= 20, frames
    assert frames["processed"] >= 0.9 * (frames["received"] - waiting), frames
    assert stats["latency"]["from"] == "capture" and seen.statuses[-1].latency_from == "capture"
    # a 1 s segment is listed once whole and FFmpeg looks for it every second or so: a viewer
    # waits about 2 s, which latency from arrival (0.0x s) left out
    assert 0.9 <= stats["latency"]["p50_s"] <= stats["latency"]["p95_s"] < 6, stats["latency"]


def test_hls_a_slow_detector_still_gets_the_newest_frame_and_latency_stays_bounded(
        hls_camera: HlsCamera, tmp_path: Path) -> None:
    seen = Recorder()
    stats, _ = StreamRun(
        hls_camera.url, stream_config(source=FAST_SOURCE), ColourBoxDetector(delay_s=0.3), tmp_path,
        seen.stopping(until(lambda: bool(seen.statuses) and seen.statuses[-1].frames_received >= 100, 90)),
    ).run()
    frames = stats["frames"]
    assert frames["processed"] < 0.5 * frames["received"] and frames["dropped"] > 30, frames
    # no backlog: each frame counted was the newest due, so latency stays near what the stream
    # adds (~2 s) plus one inference; a queue would grow by 0.7 s every second
    assert stats["latency"]["p95_s"] < 6, stats["latency"]
    windows = jsonl(tmp_path / WINDOWS)
    assert windows[-1]["latency_p95_s"] < 6, windows[-1]
