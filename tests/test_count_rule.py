"""ml_engine.counting.rule: when a track counts, the one rule videos (``ObjectCounter.summary``)
and streams (``ml_engine.live.tracks``, test_live_engine.py) apply."""

from __future__ import annotations

import pytest

from ml_engine.counting import CountingConfig, ObjectCounter
from ml_engine.counting.rule import CountRule


@pytest.mark.parametrize(
    ("fps", "min_hits", "shortest_counted"),
    [
        (10.0, 3, 1),  # the 3 frames that confirm it are 0.3 s: it counts when confirmed
        (10.0, 2, 2),  # confirmed on its 2nd frame, 0.2 s: one more frame
        (10.0, 1, 2),  # 1 acts as 2: the trackers confirm on the second match at the earliest
        (30.0, 3, 7),  # 9 frames at 30 fps are 0.3 s, 2 of them before the confirmation
    ],
)
def test_a_confirmed_track_counts_once_seen_for_min_track_s_in_all(fps: float, min_hits: int,
                                                                   shortest_counted: int) -> None:
    rule = CountRule(fps, min_hits, min_track_s=0.3)
    assert not rule.long_enough(shortest_counted - 1)
    assert rule.long_enough(shortest_counted)


def test_the_counter_counts_by_the_rule_its_config_gives() -> None:
    config = CountingConfig(fps=25.0, min_hits=4, min_track_s=0.5)
    assert ObjectCounter(config).rule == CountRule(25.0, 4, 0.5)
