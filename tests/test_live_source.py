"""ml_engine.live.source against a real RTSP server (tests/rtsp_server.py, GStreamer): frames,
dropping for a slow consumer, reconnects across a killed or stalled server, a source that
never answers, and URLs whose credentials must never be shown. Against a live HLS camera
(tests/hls_camera.py): frames at the camera's rate although FFmpeg decodes each segment in one
burst, and when each frame was taken. The pacing and the playlist's dates on their own, with
times given."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from core.errors import StreamUnavailable
from ml_engine.live import Gap, LiveFrame, LiveSource, SourceOptions, redact_url
from ml_engine.live.connection import MediaClock
from ml_engine.live.hls_clock import LiveEdge, parse_live_edge
from ml_engine.live.pacing import CATCH_UP, PacedMailbox, Pacer
from tests.fixtures_hls import HlsCamera
from tests.fixtures_rtsp import HlsStream, RtspServer, SilentServer
from tests.fixtures_service import free_port
from tests.fixtures_video import write_clip
from tests.hls_camera import frame_number
from tests.waiting import wait_until

# short timeouts so a lost stream is noticed and retried within a second or two
FAST = SourceOptions(read_timeout_s=2.0, open_timeout_s=3.0, backoff_initial_s=0.2, backoff_max_s=1.0)
FIRST_FRAME_TIMEOUT_S = 15.0  # connect + the next key frame, on a busy machine
PASSWORD = "s3cret-Pa55"


def with_credentials(url: str) -> str:
    return url.replace("rtsp://", f"rtsp://viewer:{PASSWORD}@") + "?token=also-secret"


def next_frame(source: LiveSource, timeout: float = FIRST_FRAME_TIMEOUT_S) -> LiveFrame:
    item = source.next(timeout)
    assert isinstance(item, LiveFrame), f"expected a frame, got {item!r}"
    return item


def read_until(source: LiveSource, found: Callable[[LiveFrame | Gap], bool], timeout: float,
               what: str) -> list[LiveFrame | Gap]:
    """Everything the source delivers until ``found`` says yes (that item included)."""
    seen: list[LiveFrame | Gap] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        item = source.next(0.5)
        if item is not None:
            seen.append(item)
            if found(item):
                return seen
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}; got {seen[-5:]!r}")


def test_frames_arrive_as_rgb_of_the_served_size_with_increasing_media_time(rtsp_server: RtspServer) -> None:
    with LiveSource(rtsp_server.url, FAST) as source:
        frames = [next_frame(source) for _ in range(8)]
    for frame in frames:
        assert frame.image.shape == (120, 160, 3)
        assert frame.image.dtype == np.uint8
        assert frame.connection == 1
    assert frames[0].image.std() > 5, "a real picture, not a blank frame"
    media_times = [frame.media_time_s for frame in frames]
    assert media_times == sorted(media_times) and media_times[-1] > media_times[0]
    # 10 fps: 7 frame intervals later is about 0.7 s of media time (none dropped: we read quickly)
    assert media_times[-1] - media_times[0] == pytest.approx(0.7, abs=0.35)
    received = [frame.received_at for frame in frames]
    assert received == sorted(received)
    assert source.reconnects == 0


def test_a_slow_consumer_gets_the_newest_frame_and_the_rest_are_dropped(
        rtsp_server_factory: Callable[..., RtspServer]) -> None:
    server = rtsp_server_factory(fps=30)
    work_s = 0.4  # "inference" slower than the 33 ms between frames
    with LiveSource(server.url, FAST) as source:
        delivered = [next_frame(source)]
        for _ in range(6):
            time.sleep(work_s)  # the consumer is busy: this is the simulated work, not a wait
            delivered.append(next_frame(source, timeout=5))
        received, dropped = source.frames_received, source.frames_dropped
    steps = np.diff([frame.media_time_s for frame in delivered])
    # each frame taken after the work is the newest: about work_s of media later, not the next one
    # (a loaded CPU may hold the decode thread back now and then: the newest is then a little older,
    # but never the next frame)
    assert np.median(steps) > work_s * 0.6 and np.all(steps > 3 / 30), steps
    assert dropped >= 6 * (work_s * 30 - 1) * 0.5, (received, dropped)
    # bounded: every received frame was delivered or dropped, at most one still waits
    assert received - dropped - len(delivered) in (0, 1), (received, dropped, len(delivered))


def test_a_killed_server_gives_a_gap_then_frames_from_the_second_connection(rtsp_server: RtspServer) -> None:
    with LiveSource(rtsp_server.url, FAST) as source:
        before = [next_frame(source) for _ in range(3)]
        rtsp_server.kill()  # no TEARDOWN, no end-of-stream
        killed_at = time.time()
        rtsp_server.restart()
        seen = read_until(source, lambda item: isinstance(item, LiveFrame) and item.connection == 2,
                          30, "a frame from the second connection")
        gaps = [item for item in seen if isinstance(item, Gap)]
        assert len(gaps) == 1, seen
        gap = gaps[0]
        assert gap.reason in ("stall", "ended")
        assert gap.started_at <= killed_at + 0.5  # from the last frame before the kill
        assert gap.ended_at >= killed_at
        # the gap comes after every frame of the first connection and before the second's
        assert all(item.connection == 1 for item in seen[:seen.index(gap)] if isinstance(item, LiveFrame))
        assert all(isinstance(item, LiveFrame) and item.connection == 2 for item in seen[seen.index(gap) + 1:])
        after = seen[-1]
        assert isinstance(after, LiveFrame)
        assert after.media_time_s < 5.0  # media time starts over with the connection
        assert after.received_at >= gap.ended_at
        assert source.reconnects == 1
        assert after.image.shape == before[0].image.shape
        next_frame(source, timeout=5)  # and frames go on


def test_a_stalled_server_is_detected_by_the_read_timeout_and_reconnected(
        rtsp_server: RtspServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="ml_engine.live")
    with LiveSource(rtsp_server.url, FAST) as source:
        next_frame(source)
        rtsp_server.pause()  # the TCP connection stays open, nothing comes
        try:
            wait_until(lambda: "stall; reconnecting" in caplog.text, FAST.read_timeout_s + 10, "the stall")
        finally:
            rtsp_server.resume()
        seen = read_until(source, lambda item: isinstance(item, LiveFrame) and item.connection == 2,
                          30, "a frame after the stall")
    gaps = [item for item in seen if isinstance(item, Gap)]
    assert [gap.reason for gap in gaps] == ["stall"], seen
    assert gaps[0].ended_at - gaps[0].started_at >= FAST.read_timeout_s * 0.9


def test_a_resolution_change_mid_stream_is_a_gap_and_frames_take_the_new_size(
        rtsp_server_factory: Callable[..., RtspServer]) -> None:
    server = rtsp_server_factory(resize_after=1.5, resize="96x64")
    with LiveSource(server.url, FAST) as source:
        assert next_frame(source).image.shape == (120, 160, 3)
        seen = read_until(source, lambda item: isinstance(item, LiveFrame) and item.image.shape == (64, 96, 3),
                          20, "a frame of the new size")
    gaps = [item for item in seen if isinstance(item, Gap)]
    assert [gap.reason for gap in gaps] == ["resolution_change"], seen
    assert isinstance(seen[-2], Gap), "the gap comes just before the first frame of the new size"
    assert source.reconnects == 0  # the same connection


def test_an_unreachable_source_raises_stream_unavailable_after_the_configured_attempts(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    url = f"rtsp://viewer:{PASSWORD}@127.0.0.1:{free_port()}/cam?token=also-secret"  # nothing listens
    options = SourceOptions(open_timeout_s=2.0, backoff_initial_s=0.1, backoff_max_s=0.2, first_connect_attempts=3)
    started = time.monotonic()
    with LiveSource(url, options) as source, pytest.raises(StreamUnavailable) as raised:
        while time.monotonic() - started < 20:
            source.next(1.0)
    error = raised.value
    assert error.code == "stream_unavailable" and not error.transient
    assert "127.0.0.1" in str(error) and "3 attempts" in str(error)
    assert "refused" in str(error).lower()
    # 3 attempts, 2 backoffs in between (0.1 + 0.2 s): not the first failure, not for ever
    assert 0.25 < time.monotonic() - started < 15
    for text in (str(error), caplog.text):
        assert PASSWORD not in text and "also-secret" not in text and "viewer" not in text


@pytest.mark.parametrize("scheme", ["rtsp", "http"])
def test_a_server_that_accepts_and_never_answers_fails_saying_that_it_timed_out(
        silent_server: SilentServer, scheme: str) -> None:
    """FFmpeg's RTSP demuxer reports the interrupted open as "Invalid data found when processing
    input" (and the HLS one as an exit, which was called a "stall"): the error must say what
    happened, a timeout. Fails without the fix on both."""
    options = SourceOptions(open_timeout_s=1.0, backoff_initial_s=0.1, backoff_max_s=0.2, first_connect_attempts=2)
    url = silent_server.url(scheme) + (".m3u8" if scheme == "http" else "")
    started = time.monotonic()
    with LiveSource(url, options) as source, pytest.raises(StreamUnavailable) as raised:
        read_until(source, lambda item: False, 20, "StreamUnavailable")
    message = str(raised.value)
    assert "after 2 attempts: timed out: no video within 1 s" in message, message
    assert "Invalid data" not in message and "stall" not in message
    # it did connect, on each attempt: the server, not the network, is silent (for HLS the source
    # also reads the playlist for its program dates, so more than FFmpeg's connections come)
    assert silent_server.accepted == 2 if scheme == "rtsp" else silent_server.accepted >= 2
    assert 2 * options.open_timeout_s <= time.monotonic() - started < 15


def test_a_lost_source_gives_up_after_max_reconnects_failures_in_a_row(rtsp_server: RtspServer) -> None:
    options = SourceOptions(read_timeout_s=2.0, open_timeout_s=2.0, backoff_initial_s=0.1, backoff_max_s=0.2,
                            max_reconnects=2)
    with LiveSource(rtsp_server.url, options) as source:
        next_frame(source)
        rtsp_server.kill()  # and it never comes back
        with pytest.raises(StreamUnavailable, match="was lost and 2 reconnect attempts failed") as raised:
            read_until(source, lambda item: False, 20, "StreamUnavailable")
    assert "refused" in str(raised.value).lower()


def test_a_source_that_has_worked_before_reconnects_instead_of_failing_at_first_connect() -> None:
    """A resumed stream whose camera is down: max_reconnects applies, not first_connect_attempts
    (fails without has_worked: "could not be read after 1 attempts")."""
    options = SourceOptions(open_timeout_s=1.0, backoff_initial_s=0.1, backoff_max_s=0.2,
                            first_connect_attempts=1, max_reconnects=3, has_worked=True)
    with LiveSource(f"rtsp://127.0.0.1:{free_port()}/cam", options) as source, \
            pytest.raises(StreamUnavailable, match="was lost and 3 reconnect attempts failed"):
        read_until(source, lambda item: False, 20, "StreamUnavailable")


def test_credentials_never_appear_in_logs_across_a_reconnect(
        rtsp_server: RtspServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with LiveSource(with_credentials(rtsp_server.url), FAST) as source:
        assert source.redacted_url == rtsp_server.url
        next_frame(source)
        rtsp_server.kill()
        wait_until(lambda: "reconnecting" in caplog.text, 15, "the reconnect to be logged")
    assert rtsp_server.url in caplog.text  # the logs do name the source, redacted
    assert PASSWORD not in caplog.text and "also-secret" not in caplog.text and "viewer" not in caplog.text


def test_close_and_should_stop_end_the_decode_thread_promptly(rtsp_server: RtspServer) -> None:
    source = LiveSource(rtsp_server.url, FAST)
    next_frame(source)
    started = time.monotonic()
    source.close()
    assert not any(thread.name == "live-source" and thread.is_alive() for thread in threading.enumerate())
    assert time.monotonic() - started < 2.0
    assert source.next(5.0) is None  # at once: closed

    stop = threading.Event()
    with LiveSource(rtsp_server.url, FAST, should_stop=stop.is_set) as source:
        next_frame(source)
        stop.set()
        stopped_at = time.monotonic()
        wait_until(lambda: source.next(0.1) is None, 3, "next() to answer None after should_stop")
        assert time.monotonic() - stopped_at < 2.0


def test_media_time_follows_the_timestamps_and_survives_their_wrapping_or_missing() -> None:
    clock = MediaClock()
    assert clock.tick(1000.0) == 0.0  # a connection's media time starts at 0, whatever the pts
    assert clock.tick(1000.1) == pytest.approx(0.1)
    assert clock.tick(1000.2) == pytest.approx(0.2)
    wrapped = clock.tick(0.3)  # the RTP clock wrapped: it must not run back nor stop
    assert 0.2 <= wrapped < 1.0
    assert clock.tick(0.4) == pytest.approx(wrapped + 0.1)
    leapt = clock.tick(50_000.0)  # a camera that reset its clock: no leap of hours
    assert wrapped + 0.1 <= leapt < wrapped + 1.0
    assert clock.tick(None) >= leapt  # no timestamp: the wall clock


@pytest.mark.parametrize(("url", "redacted"), [
    ("rtsp://admin:pa55@10.0.0.7:554/Streaming/Channels/101?transportmode=unicast&token=x",
     "rtsp://10.0.0.7:554/Streaming/Channels/101"),
    ("rtsps://user@cam.farm.example/live#frag", "rtsps://cam.farm.example/live"),
    ("https://u:p@[2001:db8::1]:8443/hls/index.m3u8?sig=abc", "https://[2001:db8::1]:8443/hls/index.m3u8"),
    ("rtsp://127.0.0.1/cam", "rtsp://127.0.0.1/cam"),
    ("rtsp://u:p@host:notaport/x", "rtsp://<unparseable>"),
    ("not a url at all with:secret@", "<unparseable>"),
])
def test_redact_url_keeps_scheme_host_port_and_path_only(url: str, redacted: str) -> None:
    assert redact_url(url) == redacted


def test_a_failing_should_stop_fails_the_source_without_quoting_the_url(
        rtsp_server: RtspServer, caplog: pytest.LogCaptureFixture) -> None:
    def should_stop() -> bool:
        raise RuntimeError(f"cannot read the job record for {with_credentials(rtsp_server.url)}")

    with LiveSource(with_credentials(rtsp_server.url), FAST, should_stop=should_stop) as source, \
            pytest.raises(StreamUnavailable, match="failed unexpectedly"):
        source.next(10)  # the consumer is told, not left waiting for ever
    assert "RuntimeError" in caplog.text
    assert PASSWORD not in caplog.text and "viewer" not in caplog.text


def test_an_hls_live_playlist_is_read_from_its_live_edge(hls_stream: HlsStream) -> None:
    with LiveSource(hls_stream.url, FAST) as source:
        frames = [next_frame(source) for _ in range(15)]  # 1.5 s: across a segment boundary
    assert all(frame.image.shape == (120, 160, 3) for frame in frames)
    media_times = [frame.media_time_s for frame in frames]
    assert media_times == sorted(media_times) and media_times[-1] > media_times[0]
    assert {frame.connection for frame in frames} == {1}


# --- the test server itself: a looped file -------------------------------------------------


def marker_frame(index: int) -> np.ndarray:
    """A flat frame whose grey level says which frame of the clip it is."""
    return np.full((120, 160, 3), 20 + 20 * index, dtype=np.uint8)


def test_the_server_loops_a_video_file_for_ever(
        rtsp_server_factory: Callable[..., RtspServer], tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "ten.mp4", width=160, height=120, fps=10, frames=10,
                      frame_maker=marker_frame)
    server = rtsp_server_factory(video=clip, fps=20)  # the 10-frame clip lasts 0.5 s
    with LiveSource(server.url, FAST) as source:
        frames = [next_frame(source, timeout=5 if frames_read else FIRST_FRAME_TIMEOUT_S)
                  for frames_read in range(40)]
    markers = [round((frame.image.mean() - 20) / 20) for frame in frames]
    wraps = sum(1 for before, after in zip(markers, markers[1:], strict=False) if after < before)
    assert wraps >= 2, markers  # it started over, more than once
    assert {0, 9} <= set(markers), markers
    assert frames[-1].media_time_s - frames[0].media_time_s > 1.5  # one continuous stream
    assert {frame.connection for frame in frames} == {1}


# --- HLS at the camera's rate ----------------------------------------------------------------


def read_for(source: LiveSource, seconds: float, work_s: float = 0.0) -> list[LiveFrame]:
    """Every frame delivered over ``seconds`` after the first, ``work_s`` of "inference" each."""
    frames = [next_frame(source)]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        item = source.next(0.5)
        if isinstance(item, LiveFrame):
            frames.append(item)
            time.sleep(work_s)  # the consumer is busy: this is the simulated work, not a wait
    return frames


def test_an_hls_camera_is_delivered_at_its_frame_rate_with_none_dropped(hls_camera: HlsCamera) -> None:
    """FFmpeg decodes each 1 s segment in a burst; a newest-frame mailbox kept 2 of its 10."""
    with LiveSource(hls_camera.url, FAST) as source:
        frames = read_for(source, 6.0, work_s=0.03)  # inference at 3x the camera's rate
        received, dropped = source.frames_received, source.frames_dropped
    # 5 % on an idle CPU (bench/live_bench.py --hls); here the machine may be busy enough to
    # hold the consumer's thread past a frame's time now and then. Without pacing: ~85 %.
    assert dropped <= 0.1 * received, (received, dropped)
    numbers = [frame_number(frame.image) for frame in frames]
    assert numbers == sorted(set(numbers)), numbers  # in order, none twice
    assert numbers[-1] - numbers[0] + 1 - len(numbers) <= 0.1 * len(numbers), numbers  # next to every frame
    assert len(frames) >= 40  # 6 s at 10 fps, less what was still waiting or held back by a loaded CPU
    assert np.median(np.diff([frame.media_time_s for frame in frames])) == pytest.approx(0.1, abs=0.01)
    decoded_steps = np.diff([frame.received_at for frame in frames])
    assert np.mean(decoded_steps < 0.05) > 0.5, "FFmpeg no longer decodes HLS in bursts: this test tests nothing"


def test_hls_frames_say_when_the_camera_took_them(hls_camera: HlsCamera) -> None:
    with LiveSource(hls_camera.url, FAST) as source:
        frames = read_for(source, 3.0)
    for frame in frames:
        assert frame.captured_at is not None
        assert frame.captured_at == pytest.approx(hls_camera.captured_at(frame.image), abs=0.25)
        assert frame.captured_at < frame.received_at  # a segment is listed once it is whole


def test_rtsp_frames_have_no_capture_time(rtsp_server: RtspServer) -> None:
    with LiveSource(rtsp_server.url, FAST) as source:
        assert next_frame(source).captured_at is None


# --- pacing, with times given ----------------------------------------------------------------


def paced_burst(count: int, arrived: float = 100.0, step_s: float = 0.1) -> list[float]:
    """Due times of ``count`` frames ``step_s`` apart in media time, all decoded at ``arrived``."""
    pacer = Pacer()
    return [pacer.due_at(arrived + 0.001 * i, i * step_s) for i in range(count)]


def test_a_burst_is_spread_out_at_nearly_the_camera_s_spacing() -> None:
    due = paced_burst(10)
    assert due[0] == 100.0  # the first frame is due when it arrives
    assert np.diff(due) == pytest.approx([0.1 * (1 - CATCH_UP)] * 9)


def test_frames_arriving_at_their_rate_wait_for_nothing() -> None:
    pacer = Pacer()
    arrivals = [100.0 + 0.1 * i + (0.03 if i % 3 == 0 else 0.0) for i in range(30)]  # jitter
    due = [pacer.due_at(arrived, 0.1 * i) for i, arrived in enumerate(arrivals)]
    waits = [d - a for d, a in zip(due, arrivals, strict=True)]
    assert max(waits) <= 0.03 + 1e-9  # at most the jitter: the frame after a late one is not bunched up
    assert np.mean(waits) < 0.015  # and is caught up within the next frames


def test_a_leap_of_the_media_clock_does_not_hold_frames_back() -> None:
    pacer = Pacer()
    pacer.due_at(100.0, 0.0)
    assert pacer.due_at(100.01, 50.0) == 100.01  # a broken clock, not a 45 s wait


def test_no_frame_waits_longer_than_the_pacer_s_limit() -> None:
    pacer = Pacer(max_delay_s=0.25)
    due = [pacer.due_at(100.0, i * 0.1) for i in range(10)]  # a burst of 1 s
    assert due[:3] == pytest.approx([100.0, 100.09, 100.18])
    assert due[3:] == [100.25] * 7  # due together: a consumer gets the newest, the rest are dropped
    rtsp = Pacer(max_delay_s=0.0)
    assert [rtsp.due_at(100.0 + i * 0.001, i * 0.1) for i in range(3)] == [100.0, 100.001, 100.002]


def test_a_consumer_that_keeps_up_gets_every_frame_of_a_burst() -> None:
    mailbox: PacedMailbox[int, str] = PacedMailbox(max_bytes=1000)
    for number, due in enumerate(paced_burst(10)):
        mailbox.put_frame(number, due, 10, now=100.0)
    taken = []
    now = 100.0
    while len(mailbox):
        item = mailbox.take(now)
        if item is not None:
            taken.append(item)
        wait = mailbox.seconds_until_due(now)
        now += wait if wait is not None else 0.0
    assert taken == list(range(10)) and mailbox.dropped == 0 and mailbox.bytes_waiting == 0


def test_a_slow_consumer_gets_the_newest_due_frame_and_the_older_due_ones_are_dropped() -> None:
    mailbox: PacedMailbox[int, str] = PacedMailbox(max_bytes=1000)
    for number, due in enumerate(paced_burst(10)):
        mailbox.put_frame(number, due, 10, now=100.0)
    assert mailbox.take(100.0) == 0
    assert mailbox.take(100.0) is None  # frame 1 is not due yet: nothing to hand out
    assert mailbox.take(100.4) == 4  # busy for 0.4 s: frames 1-3 came due meanwhile
    assert mailbox.dropped == 3 and mailbox.received == 10 and len(mailbox) == 5


def test_gaps_keep_their_place_and_make_due_frames_stale() -> None:
    mailbox: PacedMailbox[int, str] = PacedMailbox(max_bytes=1000)
    mailbox.put_frame(0, 100.0, 10, now=100.0)
    mailbox.put_frame(1, 100.5, 10, now=100.0)
    mailbox.put_gap("resolution_change", now=100.0)  # frame 1 still waits: it is kept
    mailbox.put_frame(2, 101.0, 10, now=100.0)
    assert mailbox.take(102.0) == 1 and mailbox.dropped == 1  # 0 was due and not taken
    assert mailbox.take(102.0) == "resolution_change"  # never skipped, frame 2 waits behind it
    assert mailbox.take(102.0) == 2
    mailbox.put_frame(3, 103.0, 10, now=103.0)
    mailbox.put_gap("stall", now=110.0)  # frame 3 was due long ago: stale once the gap is known
    assert mailbox.take(110.0) == "stall" and mailbox.dropped == 2


def test_what_waits_stays_within_the_byte_limit_even_for_a_consumer_that_never_takes() -> None:
    size, limit = 100, 1000
    mailbox: PacedMailbox[int, str] = PacedMailbox(max_bytes=limit)
    for number in range(500):  # a segment far longer than the limit holds, decoded at once
        mailbox.put_frame(number, 100.0 + number * 0.1, size, now=100.0 + number * 0.001)
        assert mailbox.bytes_waiting <= limit + 2 * size
    assert mailbox.received == 500 and mailbox.dropped + len(mailbox) == 500


def test_frames_past_the_byte_limit_are_released_early_rather_than_lost() -> None:
    mailbox: PacedMailbox[int, str] = PacedMailbox(max_bytes=300)
    for number in range(3):
        mailbox.put_frame(number, 101.0 + number, 100, now=100.0)  # due in 1, 2 and 3 s
    taken = []
    for number in range(3, 6):  # each one goes over: the oldest is handed out now
        mailbox.put_frame(number, 101.0 + number, 100, now=100.0)
        taken.append(mailbox.take(100.0))
    assert taken == [0, 1, 2] and mailbox.dropped == 0
    assert mailbox.take(100.0) is None  # what fits waits for its time


# --- the playlist's dates --------------------------------------------------------------------

LIVE_PLAYLIST = """#EXTM3U
#EXT-X-VERSION:6
#EXT-X-TARGETDURATION:2
#EXT-X-MEDIA-SEQUENCE:41
#EXTINF:2.000000,
#EXT-X-PROGRAM-DATE-TIME:2026-12-07T15:16:22.781+0000
seg41.ts
#EXTINF:2.000000,
seg42.ts
#EXTINF:1.500000,
seg43.ts
"""


def test_the_live_edge_is_the_newest_segment_and_its_date_follows_the_last_one_given() -> None:
    edge = parse_live_edge(LIVE_PLAYLIST)
    assert edge == LiveEdge(43, pytest.approx(1796656582.781 + 4.0))


@pytest.mark.parametrize(("date", "epoch"), [
    ("2026-12-07T15:16:22.781Z", 1796656582.781),
    ("2026-12-07T15:16:22.781+00:00", 1796656582.781),
    ("2026-12-07T16:16:22.781+01:00", 1796656582.781),
    ("2026-12-07T15:16:22.781", None),  # no time zone: not a date to measure from
    ("yesterday", None),
])
def test_program_dates_are_read_in_the_forms_playlists_write(date: str, epoch: float | None) -> None:
    edge = parse_live_edge(LIVE_PLAYLIST.replace("2026-12-07T15:16:22.781+0000", date))
    assert edge is not None and edge.sequence == 43
    assert edge.program_date_time == (pytest.approx(epoch + 4.0) if epoch is not None else None)


def test_a_discontinuity_or_a_master_playlist_gives_no_date() -> None:
    cut = LIVE_PLAYLIST.replace("#EXTINF:1.500000,", "#EXT-X-DISCONTINUITY\n#EXTINF:1.500000,")
    assert parse_live_edge(cut) == LiveEdge(43, None)
    master = "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=800000\nlow/index.m3u8\n"
    assert parse_live_edge(master) is None  # no segment of its own: FFmpeg picks a variant
