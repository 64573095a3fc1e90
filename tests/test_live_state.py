"""ml_engine.live.state and ml_engine.live.clock: the resume state a stream hands over (its JSON,
its version, damaged input) and the clock of its windows. The runs that hand states over and
resume from them: test_live_engine.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.errors import InvalidInput
from ml_engine.live import STATE_VERSION, StreamState, WindowClock
from ml_engine.live.clock import MAX_CATCH_UP_WINDOWS
from ml_engine.live.counts import Window
from ml_engine.live.state import SPARE_SEGMENT_NUMBERS, SegmentReservation, drop_unknown_windows

# --- StreamState ---------------------------------------------------------------------------------

HANDED = StreamState(
    saved_at_s=1_765_000_000.25, totals={"total_unique": 4, "by_class": {"cow": 4}}, window=6, next_window=7,
    open_window={"number": 7, "started_at": 1_764_999_990.0, "length_s": 60.0, "unique": 1},
    segments={"next_sequence": 40, "clock_s": 80.0}, segments_reserved_to=72, streaming_s=420.5, gaps_total=2,
    recent_gaps=[{"from": "2025-12-06T05:46:00.000Z", "to": "2025-12-06T05:46:03.000Z", "reason": "stall"}],
    frames_received=4200, frames_processed=4100, frames_dropped=100, reconnects=1, track_id_base=17,
    latency_histogram={"50": 4100},
)


def test_a_state_round_trips_through_its_json() -> None:
    text = HANDED.to_json()
    assert StreamState.from_json(text) == HANDED
    assert StreamState.from_json(text.encode()) == HANDED  # as a blob reads it
    stored = json.loads(text)
    assert stored["version"] == STATE_VERSION and stored["saved_at"] == "2025-12-06T05:46:40.250Z"
    assert len(stored) == 18  # the layout STATE_VERSION names: a key more or less is a new version


def test_a_state_of_another_version_is_refused_by_name() -> None:
    for version in (2, 0, None, "1"):
        stored = {**HANDED.to_dict(), "version": version}
        with pytest.raises(InvalidInput, match=f"has version {version!r}, this worker reads version 1"):
            StreamState.from_dict(stored)
    without = HANDED.to_dict()
    del without["version"]
    with pytest.raises(InvalidInput, match="has version None"):
        StreamState.from_dict(without)


def test_an_older_state_takes_starting_values_for_what_it_lacks() -> None:
    """A state written before a key existed (or by hand) resumes with that key's starting value."""
    state = StreamState.from_dict({"version": 1, "next_window": 4, "streaming_s": 180, "frames_received": "12"})
    assert state == StreamState(next_window=4, streaming_s=180.0, frames_received=12)
    assert state.has_worked and state.segments_to_continue() is None
    assert not StreamState().has_worked


def test_nothing_stored_is_nothing_to_resume() -> None:
    assert StreamState.from_dict({}) is None
    assert StreamState.from_dict(None) is None
    assert StreamState.from_json(b"{}") is None


@pytest.mark.parametrize(("stored", "message"), [
    (b"{not json", "is not JSON"),
    (b"\xff\xfe", "is not JSON"),
    (b"[1, 2]", "must be a JSON object, got list"),
    (b'{"version": 1, "next_window": "seven"}', "next_window must be an integer, got 'seven'"),
    (b'{"version": 1, "next_window": true}', "next_window must be an integer, got True"),
    (b'{"version": 1, "streaming_s": "long"}', "streaming_s must be a number"),
    (b'{"version": 1, "streaming_s": NaN}', "streaming_s must be a finite number"),
    (b'{"version": 1, "totals": [4]}', "totals must be an object"),
    (b'{"version": 1, "recent_gaps": {"from": 1}}', "recent_gaps must be a list"),
    (b'{"version": 1, "segments_reserved_to": [72]}', "segments_reserved_to must be an integer"),
])
def test_a_damaged_state_is_refused_with_what_is_wrong(stored: bytes, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        StreamState.from_json(stored)


def test_a_resumed_run_numbers_its_segments_past_those_reserved() -> None:
    assert HANDED.segments_to_continue() == {"next_sequence": 72, "clock_s": 80.0}
    behind = StreamState(segments={"next_sequence": 90}, segments_reserved_to=72)
    assert behind.segments_to_continue() == {"next_sequence": 90}  # never backwards


def test_a_reservation_covers_two_windows_and_runs_low_before_it_runs_out() -> None:
    reservation = SegmentReservation(window_s=60.0, segment_s=2.0)
    assert not reservation.running_low(10_000)  # nothing handed out yet: nothing to run out of
    reserved_to = reservation.reserve(40)
    assert reserved_to == 40 + 2 * 30 + 2 * SPARE_SEGMENT_NUMBERS
    assert not reservation.running_low(reserved_to - SPARE_SEGMENT_NUMBERS - 1)
    assert reservation.running_low(reserved_to - SPARE_SEGMENT_NUMBERS)


def test_a_resume_keeps_only_the_windows_its_state_knows_of(tmp_path: Path) -> None:
    path = tmp_path / "windows.jsonl"
    path.write_text("".join(json.dumps({"window": n}) + "\n" for n in (1, 2, 3)) + '{"window": 4, "uni')
    drop_unknown_windows(path, StreamState(window=2, next_window=3))
    assert [json.loads(line)["window"] for line in path.read_text().splitlines()] == [1, 2]


# --- WindowClock ---------------------------------------------------------------------------------

LINES, ZONES = ["gate"], ["pen"]


class Closed:
    """The windows a clock closes, with the dropped-frame count each next window opens at."""

    def __init__(self) -> None:
        self.windows: list[Window] = []
        self.dropped = 0

    def __call__(self, window: Window) -> None:
        self.windows.append(window)

    def frames_dropped(self) -> int:
        return self.dropped


def test_the_clock_keeps_its_window_until_it_ends() -> None:
    clock = WindowClock.starting(5, 1000.0, 10.0, LINES, ZONES, frames_dropped=3)
    closed = Closed()
    window = clock.advance(1009.99, closed, closed.frames_dropped)
    assert closed.windows == [] and window is clock.window
    assert (window.number, window.started_at, window.ends_at, window.frames_dropped_before) == (5, 1000.0, 1010.0, 3)


def test_windows_that_ended_are_closed_in_order_and_the_next_ones_follow_on() -> None:
    clock = WindowClock.starting(1, 1000.0, 10.0, LINES, ZONES, frames_dropped=0)
    closed = Closed()
    closed.dropped = 7
    window = clock.advance(1025.0, closed, closed.frames_dropped)  # two windows ended meanwhile
    assert [w.number for w in closed.windows] == [1, 2]
    assert [w.started_at for w in closed.windows] == [1000.0, 1010.0]  # contiguous: each from where the last ended
    assert (window.number, window.started_at, window.ends_at) == (3, 1020.0, 1030.0)
    assert window.frames_dropped_before == 7 and window.lines == {"gate": {"in": 0, "out": 0}}


def test_a_clock_held_up_for_many_windows_jumps_instead_of_writing_them_all() -> None:
    clock = WindowClock.starting(1, 0.0, 1.0, LINES, ZONES, frames_dropped=0)
    closed = Closed()
    window = clock.advance(1000.5, closed, closed.frames_dropped)  # a thousand windows late
    assert len(closed.windows) == MAX_CATCH_UP_WINDOWS
    assert [w.number for w in closed.windows] == list(range(1, MAX_CATCH_UP_WINDOWS + 1))
    assert (window.number, window.started_at, window.ends_at) == (MAX_CATCH_UP_WINDOWS + 1, 1000.5, 1001.5)


def test_a_carried_window_goes_on_for_the_rest_of_its_length() -> None:
    """A hand-back stored window 7 after 40 of its 60 s; the next run starts 100 s later."""
    unfinished = Window(7, 1000.0, 60.0, LINES, ZONES, frames_dropped_before=2)
    unfinished.add_track("cow")
    clock = WindowClock.continuing(unfinished.to_state(), saved_at=1040.0, now=1140.0, length_s=60.0,
                                   lines=LINES, zones=ZONES)
    assert (clock.window.number, clock.window.unique, clock.window.ends_at) == (7, 1, 1160.0)
    closed = Closed()
    window = clock.advance(1160.0, closed, closed.frames_dropped)
    assert [w.number for w in closed.windows] == [7] and (window.number, window.started_at) == (8, 1160.0)
