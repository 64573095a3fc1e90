"""Lawnmower passes counted once per animal, with exact positions.

A two-pass flight over a textured ground: the camera's frames are windows of one image (so
the true motion is known to the pixel), the first strip left to right at y = 0, a turn, the
second strip back at y = 160 (the 270-pixel-high frames overlap by 40 %). Animals are given
as tracks on the ground, in the coordinates the accumulated camera motion would give them;
the second pass's motion is made to drift by a known offset, which registration must find.
"""

from __future__ import annotations

from fractions import Fraction

import cv2
import numpy as np
import pytest

from ml_engine.counting import CountingConfig, ObjectCounter, TrackEnds
from ml_engine.counting.passes import FlightLog, find_passes
from ml_engine.counting.tracker import CameraFrame
from ml_engine.media.telemetry import Telemetry, TelemetrySample
from ml_engine.media.video import VideoInfo
from ml_engine.outputs import build_stats, validate_stats
from ml_engine.survey.footprint import LocalFrame
from tests.test_counter import detections

WIDTH, HEIGHT = 480, 270
STEP = 20  # pixels the camera moves per frame
FPS = 10.0
SIZE = 20.0  # an animal's box side
DRIFT = np.array([25.0, -12.0])  # the second pass's accumulated motion is off by this much


@pytest.fixture(scope="module")
def ground() -> np.ndarray:
    """A textured ground, wide enough for the flight (grey, uint8)."""
    rng = np.random.default_rng(5)
    noise = cv2.GaussianBlur(rng.normal(0, 1, (700, 2800)).astype(np.float32), (0, 0), 1.6)
    return cv2.normalize(noise, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)


def flight_path() -> list[tuple[int, int]]:
    """The camera's top-left corner on the ground, per frame: strip, turn, strip back."""
    out = [(x, 0) for x in range(0, 2001, STEP)]
    out += [(2000, y) for y in range(STEP, 161, STEP)]
    out += [(x, 160) for x in range(2000 - STEP, -1, -STEP)]
    return out


def translation(offset: np.ndarray) -> np.ndarray:
    matrix = np.eye(3)
    matrix[:2, 2] = offset
    return matrix


def fly(ground: np.ndarray, drift: np.ndarray = DRIFT, telemetry: Telemetry | None = None,
        since: int = 101) -> FlightLog:
    """The flight's log, its accumulated motion off by ``drift`` from frame ``since`` on."""
    log = FlightLog(telemetry)
    for frame, (x, y) in enumerate(flight_path()):
        error = drift if frame >= since else np.zeros(2)
        window = np.ascontiguousarray(ground[y:y + HEIGHT, x:x + WIDTH])
        log.observe(frame, frame / FPS, translation(np.array([x, y], float) + error), CameraFrame(window, 1.0))
    return log


@pytest.fixture(scope="module")
def drifted(ground: np.ndarray) -> FlightLog:
    """The flight with the second pass's accumulated motion off by ``DRIFT`` (``merge_passes``
    leaves the log as it was, so the tests share it)."""
    return fly(ground)


def sighting(track_id: int, world: tuple[float, float], frames: range, drift: np.ndarray = DRIFT,
             since: int = 101) -> TrackEnds:
    """An animal standing at ``world``, seen in ``frames`` where it is inside the frame, as the
    accumulated motion places it (off by ``drift`` after the turn)."""
    path = flight_path()
    ends = TrackEnds(track_id, class_name="cow")
    for frame in frames:
        x, y = path[frame]
        if not (x + SIZE < world[0] < x + WIDTH - SIZE and y + SIZE < world[1] < y + HEIGHT - SIZE):
            continue
        error = drift if frame >= since else np.zeros(2)
        ends.observe(frame, frame / FPS, world[0] + error[0], world[1] + error[1], SIZE)
    assert ends.head, f"animal {track_id} at {world} is never in view in {frames}"
    return ends


FIRST, SECOND = range(0, 101), range(109, 209)


def merge(log: FlightLog, tracks: list[TrackEnds]):
    ends = {t.track_id: t for t in tracks}
    return log.merge_passes({t: t for t in ends}, ends)


def test_the_turn_splits_the_flight_into_its_two_strips() -> None:
    path = np.array(flight_path(), dtype=float)
    assert find_passes(path, min_travel=WIDTH) == [(0, 100), (101, len(path) - 1)]
    one_way = np.array([(x, 0) for x in range(0, 2001, STEP)], dtype=float)
    assert find_passes(one_way, min_travel=WIDTH) == [(0, len(one_way) - 1)]
    hovering = np.random.default_rng(0).normal(0, 3, (200, 2))
    assert find_passes(hovering, min_travel=WIDTH) == [(0, 199)]


def test_animals_seen_on_both_passes_are_counted_once_and_registration_finds_the_drift(drifted) -> None:
    log = drifted
    a1, b1, c1 = sighting(1, (1000, 200), FIRST), sighting(2, (1500, 230), FIRST), sighting(3, (600, 50), FIRST)
    a2, b2, d2 = sighting(4, (1000, 200), SECOND), sighting(5, (1500, 230), SECOND), sighting(6, (800, 400), SECOND)
    result = merge(log, [a1, b1, c1, a2, b2, d2])
    assert result is not None
    assert result.ids == {1: 1, 2: 2, 3: 3, 4: 1, 5: 2, 6: 6}
    second = result.placements[1]
    assert second.method == "registration" and second.registered >= 3
    assert second.drift == pytest.approx(float(np.linalg.norm(DRIFT)), abs=1.0)
    assert second.error < 1.0
    report = result.report({1: 1, 2: 2, 3: 3, 4: 1, 5: 2, 6: 6})
    assert [p["counted"] for p in report["passes"]] == [3, 3]
    assert (report["total_unique"], report["summed_over_passes"], report["merged_across_passes"]) == (4, 6, 2)
    assert report["placement"] == "registration"


def test_two_animals_seen_together_are_never_folded_into_one(drifted) -> None:
    log = drifted
    # two animals side by side on the second pass, where the first pass saw one of them
    first = sighting(1, (1200, 220), FIRST)
    near_a, near_b = sighting(2, (1200, 220), SECOND), sighting(3, (1208, 222), SECOND)
    result = merge(log, [first, near_a, near_b])
    assert result is not None
    assert result.ids == {1: 1, 2: 1, 3: 3}
    # a track seen through the turn into the second pass and one seen beside it then: two animals
    through_turn = sighting(4, (1990 + 200, 200), range(60, 140))
    beside = sighting(5, (1990 + 200, 200), range(112, 140))
    result = merge(log, [through_turn, beside])
    assert result is not None and result.ids == {4: 4, 5: 5}


def test_a_stitch_across_the_turn_to_another_animal_is_undone_and_each_animal_paired_with_itself(drifted) -> None:
    # stitching (which lets an animal wander several body sizes over an 8 s gap) linked cow X's
    # first-pass track to cow Y's second-pass track, 60 px (three body sizes) away; X and Y are
    # each seen on both passes
    x_first, y_second = sighting(1, (1000, 200), FIRST), sighting(2, (1060, 215), SECOND)
    x_second, y_first = sighting(3, (1000, 200), SECOND), sighting(4, (1060, 215), FIRST)
    tracks = {t.track_id: t for t in (x_first, y_second, x_second, y_first)}
    result = drifted.merge_passes({1: 1, 2: 1, 3: 3, 4: 4}, tracks)
    assert result is not None
    assert result.ids == {1: 1, 2: 4, 3: 1, 4: 4}  # before: {1: 1, 2: 1, 3: 3, 4: 4}, three animals
    report = result.report(result.ids)
    assert report["total_unique"] == 2
    assert report["stitches_across_turns"] == {"undone": 1, "joined_again": 1}
    # a stitch within one pass is left alone
    within = sighting(5, (1000, 100), range(0, 35)), sighting(6, (1004, 100), range(40, 101))
    result = drifted.merge_passes({5: 5, 6: 5}, {t.track_id: t for t in within})
    assert result is not None and result.ids == {5: 5, 6: 5}
    assert result.unlinked == 0


def test_an_animal_that_walked_between_passes_beyond_the_tolerance_is_counted_twice(drifted) -> None:
    # the documented limit: 60 px (three body lengths) from where the first pass saw it
    log = drifted
    result = merge(log, [sighting(1, (1000, 200), FIRST), sighting(2, (1060, 200), SECOND)])
    assert result is not None and result.ids == {1: 1, 2: 2}
    # a few pixels of grazing are within it
    result = merge(log, [sighting(1, (1000, 200), FIRST), sighting(2, (1006, 203), SECOND)])
    assert result is not None and result.ids == {1: 1, 2: 1}


def test_without_registration_the_accumulated_motion_places_the_pass_and_its_drift_is_stated() -> None:
    flat = np.full((700, 2800), 128, np.uint8)  # no texture: nothing to register
    log = fly(flat, drift=np.zeros(2))
    result = merge(log, [sighting(1, (1000, 200), FIRST, np.zeros(2)), sighting(2, (1000, 200), SECOND, np.zeros(2))])
    assert result is not None and result.ids == {1: 1, 2: 1}
    second = result.placements[1]
    assert second.method == "accumulated_motion" and second.registered == 0
    # its drift estimate: a share of the path flown (2000 + 160 + 2000 px)
    assert second.error == pytest.approx(0.01 * 4160, rel=0.01)


def gps_of(offsets: list[tuple[int, int]]) -> Telemetry:
    """The flight's GPS track, 0.04 m per ground pixel, x east and y south, exact."""
    local = LocalFrame(151.2, -33.8)
    samples = []
    for frame, (x, y) in enumerate(offsets):
        centre = np.array([x + WIDTH / 2, y + HEIGHT / 2])
        lon, lat = local.to_lonlat(np.array([centre[0] * 0.04]), np.array([-centre[1] * 0.04]))
        samples.append(TelemetrySample(frame / FPS, float(lat[0]), float(lon[0])))
    return Telemetry(samples)


def test_telemetry_guides_registration_when_the_accumulated_motion_has_failed(ground) -> None:
    # the camera motion lost 200 px early on the second pass: beyond the registration's search,
    # so without telemetry the second pass is not registered and its animals are counted again
    jump, since = np.array([-200.0, -90.0]), 112
    tracks = [sighting(1, (1000, 200), FIRST, jump, since), sighting(2, (1000, 200), SECOND, jump, since)]
    blind = merge(fly(ground, drift=jump, since=since), tracks)
    assert blind is not None and blind.placements[1].method == "accumulated_motion"
    assert blind.ids == {1: 1, 2: 2}
    guided = merge(fly(ground, drift=jump, telemetry=gps_of(flight_path()), since=since), tracks)
    assert guided is not None and guided.placements[1].method == "registration"
    assert guided.placements[1].drift == pytest.approx(float(np.linalg.norm(jump)), abs=1.0)
    assert guided.ids == {1: 1, 2: 1}


def test_the_counter_counts_a_two_pass_flight_once_per_animal(ground) -> None:
    # end to end: the counter's own camera motion, tracker, stitching and pass merging
    animals = [(1000, 200), (1500, 230), (600, 50), (800, 400), (1300, 240), (400, 120)]
    counter = ObjectCounter(CountingConfig(fps=FPS))
    for frame, (x, y) in enumerate(flight_path()):
        boxes = [(ax - x - SIZE / 2, ay - y - SIZE / 2, ax - x + SIZE / 2, ay - y + SIZE / 2)
                 for ax, ay in animals if x + SIZE < ax < x + WIDTH - SIZE and y + SIZE < ay < y + HEIGHT - SIZE]
        window = np.ascontiguousarray(ground[y:y + HEIGHT, x:x + WIDTH])
        counter.update(frame, frame / FPS, detections(boxes), CameraFrame(window, 1.0))
    summary = counter.summary()
    assert summary.passes is not None
    assert summary.total_unique == 6
    assert [p["counted"] for p in summary.passes["passes"]] == [5, 4]
    assert summary.passes["summed_over_passes"] == 9  # three animals in the overlap band
    # (1000, 200) is out of view for 11 s between the passes, beyond stitching's 8 s
    assert summary.passes["merged_across_passes"] >= 1
    assert summary.passes["placement"] == "registration"
    video = VideoInfo(WIDTH, HEIGHT, Fraction(10), len(flight_path()), len(flight_path()) / FPS, 0, "h264")
    stats = build_stats(video, len(flight_path()), {"id": "test", "random_weights": False}, summary,
                        {"seconds": 1.0, "fps": 10.0, "device": "cpu", "frame_stride": 1})
    validate_stats(stats)
    assert stats["counts"]["passes"]["total_unique"] == stats["counts"]["total_unique"] == 6


def test_a_one_way_flight_is_left_as_it_was(ground) -> None:
    counter = ObjectCounter(CountingConfig(fps=FPS))
    for frame, x in enumerate(range(0, 2001, STEP)):
        window = np.ascontiguousarray(ground[0:HEIGHT, x:x + WIDTH])
        boxes = [(1000 - x - 10, 100, 1000 - x + 10, 120)] if 40 < 1000 - x < WIDTH - 40 else []
        counter.update(frame, frame / FPS, detections(boxes), CameraFrame(window, 1.0))
    summary = counter.summary()
    assert summary.passes is None and summary.total_unique == 1


def test_the_bench_writes_a_lawnmower_flight_and_its_srt_as_a_drone_would() -> None:
    from bench.counting.lawnmower import LAWNMOWER_SCENARIOS, METRES_PER_WORLD_PX, srt_text
    from bench.counting.scene import Scene
    from ml_engine.media.telemetry import parse_srt

    scenario = LAWNMOWER_SCENARIOS["lawnmower_3"]
    scene = Scene(scenario, seed=1)
    centres = scene.camera.centre
    assert len(find_passes(centres, scenario.width)) == 3
    strip_starts = np.arange(scenario.passes) * (scenario.strip_frames + scenario.turn_frames)
    overlap = 1 - (centres[strip_starts[1], 1] - centres[strip_starts[0], 1]) / scenario.height
    assert 0.19 <= overlap <= 0.41
    telemetry = parse_srt(srt_text(scene))
    assert len(telemetry.samples) == scene.frames and not telemetry.problems
    local = LocalFrame(telemetry.samples[0].lon, telemetry.samples[0].lat)
    east, north = local.to_metres(np.array([s.lon for s in telemetry.samples]),
                                  np.array([s.lat for s in telemetry.samples]))
    flown = np.column_stack([east, -north]) / METRES_PER_WORLD_PX
    truth = centres - centres[0]
    error_m = np.linalg.norm((flown - flown[0]) - truth, axis=1) * METRES_PER_WORLD_PX
    assert np.percentile(error_m, 50) < 3.0 and error_m.max() < 12.0  # two 1.5 m errors, correlated
    assert all(s.yaw is not None and abs(s.yaw) < 3 and s.rel_alt and s.focal_mm == 24.0 for s in telemetry.samples)
