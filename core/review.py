"""A person's corrections to a video job's count, and the count they give.

The automatic count (stats.json's tracks, by final id) is never changed. A review is the list
of corrections a person made, in order; the reviewed count is computed from the two whenever
it is asked for (``reviewed``), so undoing a correction is dropping it from the list.

Three corrections, each naming a final track id as stats.json, tracks.csv and the video show it:

* ``not_animal``: the track is no animal (a rock, a shadow): it is not counted;
* ``merge`` (``track`` "same as #``into``"): two tracks are one animal, counted once, as ``into``;
* ``class``: the animal is of another class, one of the model's classes.

A track merged into another stands for that animal from then on: a later correction naming
it applies to the animal it is part of (its *root*). The merged animal keeps the class of
``into``'s animal. Merges are resolved to roots, so they compose (#3 into #2, then #2 into
#1: all three are #1) and can never form a cycle: merging two tracks that are already one
animal is refused.

Pure data and standard library: the API computes reviews, and the tests check them here.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from core.errors import CattleCounterError, InvalidInput
from core.tables import TRACK_COLUMNS, csv_lines, track_row

REVIEW_FILE = "review.json"  # beside the job's outputs: the corrections, as a small JSON document
REVIEWED_TRACK_COLUMNS = (*TRACK_COLUMNS, "merged_ids")
ACTIONS = ("not_animal", "merge", "class")


class ReviewConflict(CattleCounterError):
    """The correction contradicts the review as it stands (e.g. names an animal already marked
    not an animal), or undoing one would leave a later correction without its animal."""

    code = "review_conflict"
    http_status = 409


@dataclass(frozen=True)
class Correction:
    """One correction as stored: what was changed, by whom, when; ``undone`` once undone."""

    n: int  # its number in this job's review, from 1; never reused
    action: str  # one of ACTIONS
    track: int
    into: int | None = None  # merge: the track it is the same animal as
    class_name: str | None = None  # class: the new class
    by: str = ""  # the tenant (API key's name) that made it
    admin: bool = False  # made with an admin key
    at: str = ""  # ISO 8601, UTC
    undone: dict[str, Any] | None = None  # {"by", "admin", "at"} once undone

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"n": self.n, "action": self.action, "track": self.track}
        if self.action == "merge":
            body["into"] = self.into
        if self.action == "class":
            body["class"] = self.class_name
        body.update(by=self.by, admin=self.admin, at=self.at, undone=self.undone)
        return body

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> Correction:
        return cls(n=body["n"], action=body["action"], track=body["track"], into=body.get("into"),
                   class_name=body.get("class"), by=body.get("by", ""), admin=body.get("admin", False),
                   at=body.get("at", ""), undone=body.get("undone"))


@dataclass(frozen=True)
class Review:
    """The stored document: every correction ever made (undone ones kept, marked), and a
    version that grows with each change (the ETag clients send back)."""

    version: int = 0
    corrections: tuple[Correction, ...] = ()

    @property
    def active(self) -> list[Correction]:
        return [c for c in self.corrections if c.undone is None]

    def to_bytes(self) -> bytes:
        return json.dumps({"version": self.version,
                           "corrections": [c.to_json() for c in self.corrections]}).encode("utf-8")

    @classmethod
    def from_bytes(cls, data: bytes) -> Review:
        body = json.loads(data)
        return cls(version=body["version"], corrections=tuple(Correction.from_json(c) for c in body["corrections"]))


@dataclass
class ReviewedCount:
    """The count after the corrections: which automatic track became what."""

    counted: dict[int, str] = field(default_factory=dict)  # root track id -> its class, in track order
    merged_into: dict[int, int] = field(default_factory=dict)  # track -> the root it is part of
    not_animal: set[int] = field(default_factory=set)  # roots marked not an animal

    @property
    def total_unique(self) -> int:
        return len(self.counted)

    @property
    def by_class(self) -> dict[str, int]:
        totals: dict[str, int] = {}
        for class_name in self.counted.values():
            totals[class_name] = totals.get(class_name, 0) + 1
        return dict(sorted(totals.items()))

    def root(self, track: int) -> int:
        return self.merged_into.get(track, track)

    def final_id(self, track: int) -> int | None:
        """The reviewed id a track's detections carry; None: not counted (not an animal)."""
        root = self.root(track)
        return None if root in self.not_animal else root


def reviewed(tracks: Sequence[Mapping[str, Any]], corrections: Iterable[Correction],
             known_classes: Iterable[str] | None = None) -> ReviewedCount:
    """Apply ``corrections`` in order to the automatic ``tracks`` (stats.json's: ``id``,
    ``class``). Raises InvalidInput for a correction that can never apply (unknown id, an
    animal merged with itself, a class the model does not know) and ReviewConflict for one
    that contradicts those before it."""
    count = ReviewedCount(counted={int(t["id"]): str(t["class"]) for t in tracks})
    known = set(known_classes) if known_classes is not None else None
    for correction in corrections:
        _apply(count, correction, known)
    return count


def _apply(count: ReviewedCount, correction: Correction, known: set[str] | None) -> None:
    root = _counted_root(count, correction.track, "track")
    if correction.action == "not_animal":
        del count.counted[root]
        count.not_animal.add(root)
    elif correction.action == "merge":
        _merge(count, correction, root)
    elif correction.action == "class":
        _change_class(count, correction, root, known)
    else:
        raise InvalidInput(f"action: expected one of {', '.join(ACTIONS)}, got {correction.action!r}")


def _counted_root(count: ReviewedCount, track: int, name: str) -> int:
    if track not in count.counted and track not in count.merged_into and track not in count.not_animal:
        raise InvalidInput(f"{name}: job has no track #{track} (the ids are stats.json's tracks[].id)")
    root = count.root(track)
    if root in count.not_animal:
        part = f"#{track} (part of #{root})" if root != track else f"#{track}"
        raise ReviewConflict(f"{name}: {part} is marked not an animal; undo that correction first")
    return root


def _merge(count: ReviewedCount, correction: Correction, root: int) -> None:
    if correction.into is None:
        raise InvalidInput("into: a merge needs the track it is the same animal as")
    if correction.into == correction.track:
        raise InvalidInput(f"into: cannot merge #{correction.track} with itself")
    target = _counted_root(count, correction.into, "into")
    if target == root:
        raise ReviewConflict(f"#{correction.track} and #{correction.into} are already one animal (#{root}); "
                             "merging them again would make a cycle")
    del count.counted[root]
    for track, merged_root in list(count.merged_into.items()):
        if merged_root == root:
            count.merged_into[track] = target
    count.merged_into[root] = target


def _change_class(count: ReviewedCount, correction: Correction, root: int, known: set[str] | None) -> None:
    new_class = correction.class_name or ""
    if known is not None and new_class not in known:
        raise InvalidInput(f"class: the model does not know {new_class!r}; it knows {', '.join(sorted(known))}")
    if count.counted[root] == new_class:
        raise ReviewConflict(f"class: #{root} is a {new_class} already")
    count.counted[root] = new_class


# --- the reviewed exports ------------------------------------------------------------------------


def reviewed_tracks(tracks: Sequence[Mapping[str, Any]], count: ReviewedCount) -> list[dict[str, Any]]:
    """stats.json's tracks as reviewed: one per counted animal, a merged animal spanning its
    parts (first to last sighting, frames summed, confidence weighted by frames, raw ids joined);
    ``merged_ids``: the automatic ids merged into it."""
    parts: dict[int, list[Mapping[str, Any]]] = {}
    for track in tracks:
        final = count.final_id(int(track["id"]))
        if final is not None:
            parts.setdefault(final, []).append(track)
    return [_joined(root, count.counted[root], parts[root]) for root in count.counted]


def _joined(root: int, class_name: str, parts: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    frames = sum(int(p.get("frames_seen", 0)) for p in parts)
    confidence = sum(float(p.get("mean_confidence", 0)) * int(p.get("frames_seen", 0)) for p in parts)
    first = min(parts, key=lambda p: p["first_frame"])
    last = max(parts, key=lambda p: p["last_frame"])
    return {
        "id": root, "class": class_name,
        "first_frame": first["first_frame"], "last_frame": last["last_frame"],
        "first_time_s": first["first_time_s"], "last_time_s": last["last_time_s"],
        "frames_seen": frames, "mean_confidence": round(confidence / frames, 4) if frames else 0,
        "raw_ids": sorted(raw for p in parts for raw in p.get("raw_ids", [])),
        "merged_ids": sorted(int(p["id"]) for p in parts if int(p["id"]) != root),
    }


def reviewed_tracks_csv(tracks: Sequence[Mapping[str, Any]], count: ReviewedCount) -> Iterator[str]:
    """tracks.csv as reviewed: the same columns, and ``merged_ids`` (space-separated)."""
    rows = ({**track_row(t), "merged_ids": " ".join(map(str, t["merged_ids"]))}
            for t in reviewed_tracks(tracks, count))
    return csv_lines(REVIEWED_TRACK_COLUMNS, rows)


def reviewed_coco(frames: Callable[[], Iterable[Mapping[str, Any]]], categories: Sequence[Mapping[str, Any]],
                  frame_size: tuple[int, int], count: ReviewedCount) -> Iterator[str]:
    """coco.json as reviewed, as text in pieces, from detections.jsonl's frames: the same
    images and categories; annotations of counted animals only, with their reviewed id and
    class (a training set's labels). Annotation ids are numbered afresh. ``frames()`` is read
    twice (images, then annotations), so a long video is never held in memory."""
    category_of = {str(c["name"]): int(c["id"]) for c in categories}
    width, height = frame_size
    info = {"description": "CattleCounter tracked detections, reviewed", "reviewed": True}
    yield f'{{"info": {json.dumps(info)}, "categories": {json.dumps(list(categories))}, "images": ['
    for index, frame in enumerate(frames()):
        image = {"id": int(frame["frame"]) + 1, "file_name": f"frame_{int(frame['frame']):06d}", "width": width,
                 "height": height, "frame_index": frame["frame"], "time_s": frame["time_s"]}
        yield ("," if index else "") + json.dumps(image)
    yield '], "annotations": ['
    written = 0
    for frame in frames():
        for detection in frame["detections"]:
            annotation = _reviewed_annotation(written + 1, int(frame["frame"]) + 1, detection, count, category_of)
            if annotation is not None:
                yield ("," if written else "") + json.dumps(annotation)
                written += 1
    yield "]}\n"


def _reviewed_annotation(annotation_id: int, image_id: int, detection: Mapping[str, Any], count: ReviewedCount,
                         category_of: Mapping[str, int]) -> dict[str, Any] | None:
    if detection.get("track_id") is None:
        return None
    final = count.final_id(int(detection["track_id"]))
    if final is None:
        return None
    class_name = count.counted[final]
    x1, y1, x2, y2 = detection["box"]
    width, height = round(x2 - x1, 2), round(y2 - y1, 2)
    return {"id": annotation_id, "image_id": image_id, "category_id": category_of.get(class_name),
            "bbox": [x1, y1, width, height], "area": round(width * height, 2), "iscrowd": 0,
            "score": detection["score"], "track_id": final}
