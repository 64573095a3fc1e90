"""Offline track stitching: hand-built tracklets with known truth.

Tracklets are built in ground coordinates (``TrackEnds``), sampled at 10 fps; then the same
cases run through ``ObjectCounter`` end to end, where the tracker makes the tracklets.
"""

from __future__ import annotations

import numpy as np

from ml_engine.counting import StitchConfig, TrackEnds, stitch
from ml_engine.counting.stitching import link_cost
from tests.test_counter import box_at, counter, detections, run

FPS = 10.0
SIZE = 40.0


def tracklet(track_id: int, first: int, last: int, start: tuple[float, float], velocity: tuple[float, float],
             cls: str = "cow", size: float = SIZE) -> TrackEnds:
    """An animal seen from frame ``first`` to ``last``, at ``start`` on ``first``, moving at
    ``velocity`` pixels per second."""
    ends = TrackEnds(track_id, class_name=cls)
    for frame in range(first, last + 1):
        t = frame / FPS
        dt = (frame - first) / FPS
        ends.observe(frame, t, start[0] + velocity[0] * dt, start[1] + velocity[1] * dt, size)
    return ends


def position(ends: TrackEnds, frame: int, velocity: tuple[float, float], start: tuple[float, float]) -> tuple:
    dt = (frame - ends.first_frame) / FPS
    return (start[0] + velocity[0] * dt, start[1] + velocity[1] * dt)


def test_a_gap_along_the_path_is_one_animal() -> None:
    # walks right at 20 px/s, hidden under a tree for 3 s (frames 30-59), comes out on its path
    before = tracklet(1, 0, 29, (100, 200), (20, 0))
    after = tracklet(2, 60, 90, (100 + 20 * 6.0, 200), (20, 0))
    assert stitch([before, after], StitchConfig()) == {1: 1, 2: 1}


def test_a_standing_animal_hidden_for_seconds_is_one_animal() -> None:
    before = tracklet(1, 0, 20, (300, 300), (0, 0))
    after = tracklet(2, 80, 120, (305, 298), (0, 0))  # 6 s later, a few pixels of jitter away
    assert stitch([before, after], StitchConfig()) == {1: 1, 2: 1}


def test_two_animals_crossing_are_never_merged() -> None:
    # two animals walk towards each other and pass; the tracker lost both at the meeting point,
    # each continues on its own path: 1 -> 3 and 2 -> 4, never 1 -> 4 (opposite heading)
    right, left = (30, 0), (-30, 0)
    a1 = tracklet(1, 0, 29, (100, 200), right)
    b1 = tracklet(2, 0, 29, (280, 200), left)
    a2 = tracklet(3, 36, 70, (100 + 30 * 3.6, 200), right)
    b2 = tracklet(4, 36, 70, (280 - 30 * 3.6, 200), left)
    ids = stitch([a1, b1, a2, b2], StitchConfig())
    assert ids == {1: 1, 2: 2, 3: 1, 4: 2}
    assert link_cost(a1, b2, StitchConfig()) is None


def test_animals_walking_in_file_under_a_tree_keep_their_own_ids() -> None:
    # two cows walk right at 40 px/s (one body length a second), the second 60 px behind the
    # first, both hidden from frame 30 to 59. When they come out, the second is exactly where
    # the first's path ran (just later) and the first a few pixels off it: linked by where
    # each should be at that time, first -> first and second -> second
    speed = (40, 0)
    first_before = tracklet(1, 0, 29, (100, 200), speed)
    second_before = tracklet(2, 0, 29, (40, 200), speed)
    first_after = tracklet(3, 60, 90, (100 + 40 * 6.0, 205), speed)
    second_after = tracklet(4, 60, 90, (40 + 40 * 6.0, 200), speed)
    ids = stitch([first_before, second_before, first_after, second_after], StitchConfig())
    assert ids == {1: 1, 2: 2, 3: 1, 4: 2}


def test_a_jostle_just_before_the_tree_does_not_turn_the_heading_around() -> None:
    # 30 fps: a cow walks right at 20 px/s for 3 s, is shoved back 8 px in its last 5 frames
    # before a tree hides it, and comes out 2 s later still walking right on its path. Its
    # last 0.2 s point left (a heading "opposite" to the later track's); its last second does not
    fps = 30.0
    before, after = TrackEnds(1, class_name="cow"), TrackEnds(2, class_name="cow")
    for frame in range(90):
        x = 100 + 20 * frame / fps - (8 * (frame - 84) / 5 if frame > 84 else 0)
        before.observe(frame, frame / fps, x, 200, SIZE)
    for frame in range(150, 200):
        after.observe(frame, frame / fps, 100 + 20 * frame / fps, 200, SIZE)
    assert link_cost(before, after, StitchConfig()) is not None
    assert stitch([before, after], StitchConfig()) == {1: 1, 2: 1}


def test_tracks_seen_at_the_same_time_are_never_merged() -> None:
    # two animals side by side, the second seen from frame 10 to 40 while the first is too:
    # however close, they coexist, so they are two animals; and even a later track that
    # fits both cannot join them
    first = tracklet(1, 0, 40, (100, 100), (0, 0))
    second = tracklet(2, 10, 40, (110, 100), (0, 0))
    later = tracklet(3, 50, 60, (105, 100), (0, 0))
    ids = stitch([first, second, later], StitchConfig())
    assert ids[1] != ids[2]
    assert link_cost(first, second, StitchConfig()) is None
    assert link_cost(second, first, StitchConfig()) is None
    assert len({ids[1], ids[2], ids[3]}) == 2  # the later one joins at most one of them


def test_an_animal_that_leaves_and_another_that_enters_nearby_are_two() -> None:
    # one walks out of the right edge (x 600) heading right; a second later another walks in
    # at the same place heading left: close in space and time, but not one path
    leaving = tracklet(1, 0, 30, (540, 200), (20, 0))
    entering = tracklet(2, 40, 70, (598, 205), (-20, 0))
    assert stitch([leaving, entering], StitchConfig()) == {1: 1, 2: 2}


def test_class_and_size_must_agree() -> None:
    cow = tracklet(1, 0, 20, (300, 300), (0, 0))
    horse_there = tracklet(2, 40, 60, (300, 300), (0, 0), cls="horse")
    calf_there = tracklet(3, 40, 60, (300, 300), (0, 0), size=SIZE / 2)
    assert stitch([cow, horse_there], StitchConfig()) == {1: 1, 2: 2}
    assert stitch([cow, calf_there], StitchConfig()) == {1: 1, 3: 3}


def test_too_far_or_too_late_is_another_animal() -> None:
    before = tracklet(1, 0, 20, (300, 300), (0, 0))
    far = tracklet(2, 30, 50, (300 + 4 * SIZE, 300), (0, 0))  # 4 body lengths away after 1 s
    late = tracklet(3, 20 + int(9 * FPS), 130, (300, 300), (0, 0))  # past max_gap_s (8 s)
    assert stitch([before, far], StitchConfig()) == {1: 1, 2: 2}
    assert stitch([before, late], StitchConfig()) == {1: 1, 3: 3}


def test_each_track_joins_at_most_one_before_and_one_after() -> None:
    # two candidates continue one track equally well in space; the better (nearer) one wins,
    # and the other stays its own animal
    before = tracklet(1, 0, 20, (300, 300), (0, 0))
    near = tracklet(2, 40, 60, (302, 300), (0, 0))
    nearish = tracklet(3, 41, 60, (320, 300), (0, 0))
    ids = stitch([before, near, nearish], StitchConfig())
    assert ids == {1: 1, 2: 1, 3: 3}


def test_co_visible_tracks_are_never_merged_whatever_the_settings() -> None:
    # random herds with wide-open gates: no stitched chain ever holds two tracks that overlap
    rng = np.random.default_rng(0)
    loose = StitchConfig(max_gap_s=100, gate_sizes=1e6, max_size_ratio=1e6)
    tracks = []
    for i in range(60):
        first = int(rng.integers(0, 200))
        last = first + int(rng.integers(1, 60))
        tracks.append(tracklet(i + 1, first, last, tuple(rng.uniform(0, 500, 2)), (0, 0)))
    ids = stitch(tracks, loose)
    assert len(set(ids.values())) < len(tracks)  # the loose gates did merge some
    for a in tracks:
        for b in tracks:
            overlap = a.first_frame <= b.last_frame and b.first_frame <= a.last_frame
            if a is not b and overlap:
                assert ids[a.track_id] != ids[b.track_id]


# --- through ObjectCounter: counts, tracks, lines, zones use the stitched ids ---------------


def test_a_track_broken_at_a_line_still_records_its_crossing() -> None:
    # walks down across a horizontal line at y=200 while hidden (frames 10-29): the live
    # tracker never sees it cross, stitching compares its anchor before and after the gap
    from core.jobs import CountingLine, CountingZone

    def y_at(i: int) -> float:
        return 150 + 3 * i

    frames = [detections([] if 10 <= i < 30 else [box_at(300, y_at(i))]) for i in range(45)]
    line = CountingLine(start=(0, 200), end=(640, 200), name="gate")
    zone = CountingZone(polygon=[(0, 0), (640, 0), (640, 480), (0, 480)], name="field")
    live = counter(lines=[line], zones=[zone], stitching=False)
    run(live, frames)
    live_summary = live.summary()
    assert live_summary.total_unique == 2 and live_summary.lines[0]["in_total"] == 0
    assert live_summary.zones[0]["unique"] == {"cow": 2}
    stitched = counter(lines=[line], zones=[zone])
    run(stitched, frames)
    summary = stitched.summary()
    assert (summary.total_unique, summary.merged) == (1, 1)
    assert (summary.lines[0]["in_total"], summary.lines[0]["out_total"]) == (1, 0)
    assert summary.lines[0]["in"] == {"cow": 1}
    assert summary.zones[0]["unique"] == {"cow": 1}
    assert summary.by_class == {"cow": 1}
    track = summary.tracks[0]
    assert track["raw_ids"] == [1, 2] and track["last_frame"] == 44


def test_a_false_detection_confirmed_for_an_instant_is_dropped_everywhere() -> None:
    # at 30 fps a ghost lasting 3 frames is confirmed (min_hits 3) but seen for 0.1 s in all:
    # the offline pass drops it from counts, tracks and the timeline; the cow stays
    from ml_engine.counting import CountingConfig, ObjectCounter

    frames = []
    for i in range(30):
        boxes, classes = [box_at(50 + 2 * i, 100)], ["cow"]
        if 10 <= i < 13:
            boxes, classes = boxes + [box_at(300, 300)], classes + ["cow"]
        frames.append(detections(boxes, classes))
    results = {}
    for stitching in (False, True):
        c = ObjectCounter(CountingConfig(fps=30.0, stitching=stitching))
        for i, d in enumerate(frames):
            c.update(i, i / 30, d)
        results[stitching] = c.summary()
    assert results[False].total_unique == 2  # live: the ghost counted
    summary = results[True]
    assert (summary.total_unique, summary.raw_total_unique, summary.short_tracks, summary.merged) == (1, 2, 1, 0)
    assert [t["count"] for t in summary.timeline] == [0, 0] + [1] * 28
    assert summary.peak["count"] == 1
    assert list(summary.id_map.values()).count(None) == 1


def _ghost_and_glimpses(frames: int, glimpses: dict[str, range]) -> list:
    """A cow walking the whole video, plus, for each named glimpse, a still animal seen only on
    those frames (4 frames: 0.13 s at 30 fps, under ``min_track_s``)."""
    spots = {"start": (300, 300), "end": (500, 300), "middle": (400, 100)}
    out = []
    for i in range(frames):
        boxes = [box_at(50 + 2 * i, 100)]
        boxes += [box_at(*spots[name]) for name, seen in glimpses.items() if i in seen]
        out.append(detections(boxes))
    return out


def test_an_animal_cut_by_the_start_or_the_end_of_the_video_is_counted_however_short() -> None:
    # Two animals seen for 4 frames, one on the video's first 4 frames and one on its last 4: the
    # video cut them, they are not flickers. A third, seen 4 frames mid-video, is a flicker.
    from ml_engine.counting import CountingConfig, ObjectCounter

    frames = _ghost_and_glimpses(30, {"start": range(0, 4), "end": range(26, 30), "middle": range(13, 17)})
    c = ObjectCounter(CountingConfig(fps=30.0))
    for i, d in enumerate(frames):
        c.update(i, i / 30, d)
    summary = c.summary()
    assert (summary.total_unique, summary.raw_total_unique, summary.short_tracks) == (3, 4, 1)
    kept = {(t["first_frame"], t["last_frame"]) for t in summary.tracks}
    assert {(2, 3), (28, 29)} <= kept  # confirmed on their 3rd frame
    assert (15, 16) not in kept


def test_an_animal_that_ends_just_before_the_last_frames_is_still_a_flicker() -> None:
    # gone 2 frames before the end, longer than the frames a track needs to be confirmed: not cut
    from ml_engine.counting import CountingConfig, ObjectCounter

    frames = _ghost_and_glimpses(30, {"end": range(22, 26)})
    c = ObjectCounter(CountingConfig(fps=30.0))
    for i, d in enumerate(frames):
        c.update(i, i / 30, d)
    assert (c.summary().total_unique, c.summary().short_tracks) == (1, 1)


# --- without frames: the camera's motion read from the herd ----------------------------------


def _panning_herd(frame: int) -> float:
    """How far the ground has moved left in the picture by ``frame``: the camera pans right at
    6 px a frame (60 px/s) until frame 19, then hovers."""
    return 6.0 * min(frame, 19)


def test_without_frames_an_animal_that_appears_where_the_pan_would_carry_a_hidden_one_is_another() -> None:
    # Six cows stand still on the ground, and so does a seventh, A, which walks under a tree at
    # frame 20 and stays there. The camera pans until frame 19 and then hovers. At frame 45 a new
    # cow, D, steps out 156 px left of where A was last seen: exactly where A's motion *in the
    # picture* (the pan) would have carried it, but 156 px from A on the ground. Read from the
    # herd, the camera stopped: D is another animal.
    from ml_engine.counting import CountingConfig, ObjectCounter

    herd = [(300 + 120 * k, y) for k in range(3) for y in (100, 300)]
    frames = []
    for i in range(60):
        shift = _panning_herd(i)
        boxes = [box_at(x - shift, y) for x, y in herd]
        if i < 20:
            boxes.append(box_at(600 - shift, 200))  # A, until it hides
        if i >= 45:
            boxes.append(box_at(600 - _panning_herd(19) - 60 * 2.6, 200))  # D
        frames.append(detections(boxes))
    c = ObjectCounter(CountingConfig(fps=FPS))
    for i, d in enumerate(frames):
        c.update(i, i / FPS, d)
    summary = c.summary()
    assert (summary.total_unique, summary.merged) == (8, 0)
    assert c.herd_motion.frames_estimated == 59


def test_herd_motion_is_the_common_motion_and_walkers_do_not_move_it() -> None:
    from ml_engine.counting.herd_motion import HerdMotion

    still = np.array([(100.0 + 90 * i, 100.0 + 70 * j) for i in range(4) for j in range(3)])
    walkers = np.array([(500.0, 500.0), (620.0, 520.0), (700.0, 420.0)])
    motion = HerdMotion()
    for f in range(4):
        ground = still - [9.0 * f, -2.0 * f]  # the camera moves right and up: the ground left, down
        walking = walkers + [15.0 * f, 11.0 * f]
        centres = np.vstack([ground, walking])
        step = motion.estimate(np.hstack([centres - 20, centres + 20]))
    np.testing.assert_allclose(step, [[1, 0, -9], [0, 1, 2]], atol=1e-6)
    assert (motion.frames_estimated, motion.frames_guessed) == (3, 0)


def test_herd_motion_too_few_animals_to_tell_keeps_the_last_step() -> None:
    from ml_engine.counting.herd_motion import HerdMotion

    herd = np.array([(100.0 + 90 * i, 100.0) for i in range(6)])
    motion = HerdMotion()
    for f in range(3):
        centres = herd - [5.0 * f, 0]
        motion.estimate(np.hstack([centres - 20, centres + 20]))
    two = herd[:2] - [5.0 * 3 + 40, 0]  # two animals left, that moved 45 px: no majority of a herd
    step = motion.estimate(np.hstack([two - 20, two + 20]))
    np.testing.assert_allclose(step, [[1, 0, -5], [0, 1, 0]], atol=1e-6)
    assert motion.frames_guessed == 1
