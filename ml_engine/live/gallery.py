"""A live stream's gallery: the new animals of each window, each with its best picture.

When a window closes, ``gallery/<window>.json`` lists every animal first counted in it (as many
as ``windows.jsonl``'s ``unique`` for that window), each with the best crop seen of it up to
then, scored as a video's (``ml_engine.gallery``: whole first, then size x sharpness x
confidence; at most ``MAX_CROP_PX`` on its longest side), stored as ``crops/<id>.jpg``: track
ids rise over the whole stream, resumes included, so an id names one picture.

Memory stays bounded however long the stream runs: pixels are held only for the tracks in view,
one candidate crop each, replaced when a better one comes. A counted track that leaves view has
its crop written to disk at once (and replaced there if it comes back looking better); a track
that leaves view uncounted is forgotten. When the window closes its animals' crops are written,
their descriptions go into the window's file and everything about them is let go; an animal
counted in an earlier window and still in view is not collected again. So what is held is the
tracks in view plus a few numbers per animal counted in the open window (at most ``max_items``).

Resumes: a hand-back writes the open window's gallery so far (``"partial": true``) and the run
that continues the window starts from it (the worker fetches it: ``gallery_to_continue``), so
the window's file lists every animal it counted. A window continued after a crash, from a state
stored while it was open, lists only the animals counted after the resume: the pictures of the
ones before were never stored.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import supervision as sv

from core.outputs import gallery_crop, window_gallery
from ml_engine.gallery import (
    GALLERY_SCHEMA_VERSION,
    MAX_CROP_PX,
    CropScore,
    better_crop,
    cut_crop,
    write_crop,
)
from ml_engine.live.counts import iso

if TYPE_CHECKING:
    from ml_engine.live.state import StreamState

MAX_ITEMS = 2000  # animals listed with a picture per window; the count is never cut


@dataclass
class _Track:
    """A track in view, or counted in the open window: its best crop so far and its sightings."""

    id: int
    cls: str | None = None  # its class when it was counted; None: not counted (yet)
    counted_at: float = 0.0
    score: CropScore | None = None
    crop: np.ndarray | None = None  # the best crop while it is held; None once written (or none cut)
    picture: dict[str, Any] = field(default_factory=dict)  # the best crop's description
    frames_seen: int = 0
    confidence_sum: float = 0.0
    last_seen_at: float = 0.0

    def item(self) -> dict[str, Any]:
        """The animal as the window's gallery lists it."""
        item: dict[str, Any] = {
            "id": self.id, "class": self.cls, "counted_at": iso(self.counted_at), "last_seen_at": iso(self.last_seen_at),
            "frames_seen": self.frames_seen, "mean_confidence": round(self.confidence_sum / max(1, self.frames_seen), 4),
        }
        return {**item, "crop": gallery_crop(self.id), **self.picture} if self.picture else {**item, "crop": None}


class WindowGallery:
    """Collects the best crop of each track in view, and writes each window's new animals when
    it closes (see the module's docstring). ``resume``: the state a run continues from; its
    unfinished window's partial gallery, if the worker fetched it into ``output_dir``, is
    carried on."""

    def __init__(self, output_dir: Path, resume: StreamState | None = None, max_items: int = MAX_ITEMS) -> None:
        self.output_dir = output_dir
        self.max_items = max_items
        self._tracks: dict[int, _Track] = {}  # in view, or counted in the open window
        self._published: set[int] = set()  # counted in a closed window and in view: not collected again
        self._in_view: set[int] = set()  # the last frame's tracks
        self._carried: list[dict[str, Any]] = []  # the open window's items from before a hand-back
        self._counted = 0  # animals counted in the open window, listed or not
        self._listed = 0
        if resume is not None and resume.open_window:
            self._carry(int(resume.open_window["number"]))

    @property
    def tracks_held(self) -> int:
        """Tracks something is held for: in view, or counted in the open window."""
        return len(self._tracks) + len(self._published)

    @property
    def crops_held(self) -> int:
        """Crops held in memory: at most one per track in view."""
        return sum(1 for track in self._tracks.values() if track.crop is not None)

    @property
    def crop_bytes(self) -> int:
        """The pixels of the crops held in memory (bounded like ``crops_held``)."""
        return sum(track.crop.nbytes for track in self._tracks.values() if track.crop is not None)

    def offer(self, image: np.ndarray, tracked: sv.Detections, at: float, counted_now: Collection[int]) -> None:
        """One frame's tracks (with the stream's ids), before anything is drawn on ``image``
        (RGB); ``at``: when it was received (``time.time()``). ``counted_now``: the ids of the
        tracks counted in this frame (``LiveTracks.new_tracks``, the counter's rule)."""
        in_view: set[int] = set()
        if len(tracked) and tracked.tracker_id is not None:
            frame_size = (image.shape[1], image.shape[0])
            confidences = tracked.confidence if tracked.confidence is not None else np.ones(len(tracked))
            classes = [str(name) for name in tracked.data.get("class_name", [""] * len(tracked))]
            for box, track_id, confidence, cls in zip(tracked.xyxy.tolist(), tracked.tracker_id.tolist(),
                                                      confidences.tolist(), classes, strict=True):
                in_view.add(int(track_id))
                track = self._track(int(track_id), int(track_id) in counted_now, str(cls), at)
                if track is not None:
                    self._sighting(track, image, frame_size, box, float(confidence), at)
        self._let_go(in_view)
        self._in_view = in_view

    def _track(self, track_id: int, counted_now: bool, cls: str, at: float) -> _Track | None:
        """What is collected of ``track_id``; None when nothing is (listed already, or past ``max_items``)."""
        if track_id in self._published:
            return None
        track = self._tracks.get(track_id)
        if track is None:
            track = self._tracks[track_id] = _Track(track_id)
        if counted_now and track.cls is None:
            self._counted += 1
            if self._listed + len(self._carried) >= self.max_items:  # counted, not listed: let go
                del self._tracks[track_id]
                self._published.add(track_id)
                return None
            self._listed += 1
            track.cls, track.counted_at = cls, at
        return track

    def _sighting(self, track: _Track, image: np.ndarray, frame_size: tuple[int, int], box: list[float],
                  confidence: float, at: float) -> None:
        track.frames_seen += 1
        track.confidence_sum += confidence
        track.last_seen_at = at
        better = better_crop(box, frame_size, confidence, track.score, lambda: cut_crop(image, box))
        if better is None:
            return
        crop, score = better
        track.crop, track.score = crop, score
        height, width = crop.shape[:2]
        track.picture = {
            "crop_width": int(width), "crop_height": int(height), "crop_at": iso(at),
            "crop_box": [round(v, 2) for v in box], "crop_confidence": round(confidence, 4),
            "crop_whole": score.whole, "crop_quality": round(score.quality, 4),
        }

    def _let_go(self, in_view: set[int]) -> None:
        """Tracks out of view: a counted one's picture goes to disk, an uncounted one is forgotten."""
        for track_id in [track_id for track_id in self._tracks if track_id not in in_view]:
            track = self._tracks[track_id]
            if track.cls is None:
                del self._tracks[track_id]
            else:
                self._write_crop(track)
        self._published &= in_view

    def _write_crop(self, track: _Track) -> None:
        if track.crop is not None:
            write_crop(self.output_dir, track.id, track.crop)
            track.crop = None

    def close_window(self, record: Mapping[str, Any]) -> dict[str, Path]:
        """The window of ``record`` (its ``windows.jsonl`` line) closed: write its gallery and
        its new animals' crops, and let them go; returns output name -> path of the files written."""
        return self._write(int(record["window"]), str(record["from"]), str(record["to"]), partial=False)

    def hand_back(self, window: int, started_at: float) -> dict[str, Path]:
        """The run stops with ``window`` unfinished (a hand-back): its gallery so far, for the
        run that continues it; returns output name -> path of the files written."""
        return self._write(window, iso(started_at), None, partial=True)

    def _write(self, window: int, started: str, ended: str | None, partial: bool) -> dict[str, Path]:
        counted = [track for track in self._tracks.values() if track.cls is not None]
        files: dict[str, Path] = {}
        for track in counted:
            self._write_crop(track)
            if track.picture:
                files[gallery_crop(track.id)] = self.output_dir / gallery_crop(track.id)
            del self._tracks[track.id]
            if track.id in self._in_view:  # listed now: not collected again while it stays in view
                self._published.add(track.id)
        items = self._carried + [track.item() for track in sorted(counted, key=lambda t: t.id)]
        document: dict[str, Any] = {
            "schema_version": GALLERY_SCHEMA_VERSION, "kind": "stream", "window": window, "from": started,
            "to": ended, "crop_max_px": MAX_CROP_PX, "count": self._counted, "items": items,
        }
        if partial:
            document["partial"] = True
        if len(items) < self._counted:
            document["truncated"] = {"listed": len(items), "max_items": self.max_items,
                                     "note": f"only the first {len(items)} of the {self._counted} animals counted "
                                             "in this window are listed with a picture (the count is not cut)"}
        name = window_gallery(window)
        path = self.output_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(document, ensure_ascii=False) + "\n", encoding="utf-8")
        self._carried, self._counted, self._listed = [], 0, 0
        return {**files, name: path}

    def _carry(self, window: int) -> None:
        """Start from a hand-back's partial gallery of ``window``, if it is here."""
        path = self.output_dir / window_gallery(window)
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):  # none (a crash, not a hand-back), or torn: start afresh
            return
        if isinstance(document, dict) and document.get("partial") and isinstance(document.get("items"), list):
            self._carried = document["items"]
            self._counted = int(document.get("count", len(self._carried)))


def gallery_to_continue(state: StreamState) -> str | None:
    """The window gallery a run resumed from ``state`` continues (a hand-back's partial one), for
    the worker to fetch into the run's output folder; None when no window is carried on."""
    if not state.open_window:
        return None
    return window_gallery(int(state.open_window["number"]))
