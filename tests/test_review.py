"""core.review: the reviewed count from the automatic tracks and a person's corrections."""

from __future__ import annotations

import csv
import io
import json

import pytest

from core.errors import InvalidInput
from core.review import Correction, Review, ReviewConflict, reviewed, reviewed_coco, reviewed_tracks_csv

CLASSES = ("cow", "sheep", "horse")


def track(track_id: int, cls: str = "cow", first: int = 0, last: int = 9, frames: int = 10,
          confidence: float = 0.5) -> dict:
    return {"id": track_id, "class": cls, "first_frame": first, "last_frame": last, "first_time_s": first / 10,
            "last_time_s": last / 10, "frames_seen": frames, "mean_confidence": confidence, "raw_ids": [track_id * 10]}


TRACKS = [track(1), track(2), track(3, "sheep"), track(4)]


def not_animal(n: int, track_id: int) -> Correction:
    return Correction(n=n, action="not_animal", track=track_id)


def merge(n: int, track_id: int, into: int) -> Correction:
    return Correction(n=n, action="merge", track=track_id, into=into)


def relabel(n: int, track_id: int, cls: str) -> Correction:
    return Correction(n=n, action="class", track=track_id, class_name=cls)


def test_no_corrections_is_the_automatic_count() -> None:
    count = reviewed(TRACKS, [], CLASSES)
    assert (count.total_unique, count.by_class) == (4, {"cow": 3, "sheep": 1})


def test_not_an_animal_is_not_counted() -> None:
    count = reviewed(TRACKS, [not_animal(1, 3)], CLASSES)
    assert (count.total_unique, count.by_class) == (3, {"cow": 3})
    assert count.final_id(3) is None


def test_merges_compose_and_take_the_target_animals_class() -> None:
    count = reviewed(TRACKS, [merge(1, 1, 2), merge(2, 2, 3)], CLASSES)
    assert (count.total_unique, count.by_class) == (2, {"cow": 1, "sheep": 1})
    assert [count.final_id(t) for t in (1, 2, 3, 4)] == [3, 3, 3, 4]


def test_a_merged_track_stands_for_its_animal_in_later_corrections() -> None:
    count = reviewed(TRACKS, [merge(1, 1, 2), relabel(2, 1, "horse"), merge(3, 4, 1)], CLASSES)
    assert count.counted == {2: "horse"} | {3: "sheep"}
    assert [count.final_id(t) for t in (1, 2, 4)] == [2, 2, 2]


def test_marking_a_merged_animal_removes_all_of_it() -> None:
    count = reviewed(TRACKS, [merge(1, 1, 2), not_animal(2, 1)], CLASSES)
    assert (count.total_unique, count.by_class) == (2, {"cow": 1, "sheep": 1})
    assert count.final_id(1) is None and count.final_id(2) is None


def test_class_change_counts_per_class() -> None:
    count = reviewed(TRACKS, [relabel(1, 1, "sheep"), relabel(2, 4, "horse")], CLASSES)
    assert count.by_class == {"cow": 1, "horse": 1, "sheep": 2}


@pytest.mark.parametrize(("corrections", "error", "words"), [
    ([not_animal(1, 99)], InvalidInput, "no track #99"),
    ([merge(1, 1, 99)], InvalidInput, "no track #99"),
    ([merge(1, 2, 2)], InvalidInput, "with itself"),
    ([merge(1, 1, 2), merge(2, 2, 1)], ReviewConflict, "already one animal"),  # a cycle
    ([merge(1, 1, 2), merge(2, 2, 3), merge(3, 3, 1)], ReviewConflict, "already one animal"),  # a longer one
    ([relabel(1, 1, "unicorn")], InvalidInput, "does not know 'unicorn'"),
    ([relabel(1, 1, "cow")], ReviewConflict, "already"),
    ([not_animal(1, 1), not_animal(2, 1)], ReviewConflict, "not an animal"),
    ([not_animal(1, 1), merge(2, 2, 1)], ReviewConflict, "not an animal"),
    ([not_animal(1, 2), relabel(2, 2, "sheep")], ReviewConflict, "not an animal"),
])
def test_bad_corrections_are_refused_with_a_reason(corrections, error, words) -> None:
    with pytest.raises(error, match=words):
        reviewed(TRACKS, corrections, CLASSES)


def test_the_document_round_trips_with_undone_corrections() -> None:
    review = Review(version=3, corrections=(
        Correction(n=1, action="merge", track=1, into=2, by="acme", at="2026-01-01T00:00:00+00:00"),
        Correction(n=2, action="class", track=3, class_name="cow", by="root", admin=True,
                   undone={"by": "acme", "admin": False, "at": "2026-01-01T00:01:00+00:00"}),
    ))
    again = Review.from_bytes(review.to_bytes())
    assert again == review
    assert [c.n for c in again.active] == [1]


def test_reviewed_tracks_csv_joins_merged_parts() -> None:
    tracks = [track(1, first=0, last=4, frames=5, confidence=0.4), track(2, first=10, last=19, frames=10,
                                                                          confidence=0.7), track(3)]
    count = reviewed(tracks, [merge(1, 1, 2), not_animal(2, 3)], CLASSES)
    rows = list(csv.DictReader(io.StringIO("".join(reviewed_tracks_csv(tracks, count)))))
    assert len(rows) == 1
    row = rows[0]
    assert (row["id"], row["class"], row["first_frame"], row["last_frame"], row["frames_seen"]) == \
        ("2", "cow", "0", "19", "15")
    assert float(row["mean_confidence"]) == pytest.approx((0.4 * 5 + 0.7 * 10) / 15, abs=1e-4)
    assert (row["merged_ids"], row["raw_ids"]) == ("1", "10 20")


def test_reviewed_coco_has_the_corrected_labels_only_for_animals() -> None:
    frames = [{"frame": 0, "time_s": 0.0, "detections": [
        {"track_id": 1, "class": "cow", "score": 0.9, "box": [0, 0, 10, 10]},
        {"track_id": 3, "class": "sheep", "score": 0.8, "box": [5, 5, 15, 25]},
        {"track_id": 4, "class": "cow", "score": 0.7, "box": [1, 1, 2, 2]},
    ]}, {"frame": 2, "time_s": 0.2, "detections": []}]
    categories = [{"id": 0, "name": "cow"}, {"id": 1, "name": "sheep"}, {"id": 2, "name": "horse"}]
    count = reviewed(TRACKS, [merge(1, 1, 2), relabel(2, 2, "horse"), not_animal(3, 4)], CLASSES)
    coco = json.loads("".join(reviewed_coco(lambda: frames, categories, (64, 48), count)))
    assert [image["id"] for image in coco["images"]] == [1, 3]
    assert coco["images"][0]["width"] == 64
    labels = [(a["track_id"], a["category_id"], a["image_id"]) for a in coco["annotations"]]
    assert labels == [(2, 2, 1), (3, 1, 1)]  # #1 is #2 now, a horse; #4 is gone
    assert [a["id"] for a in coco["annotations"]] == [1, 2]
    assert coco["annotations"][1]["bbox"] == [5, 5, 10, 20]
