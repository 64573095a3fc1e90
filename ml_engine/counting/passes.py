"""Lawnmower flights counted once per animal: tracks from different passes met on the ground.

A surveying drone flies a strip, turns, and flies back along the next one, the strips
overlapping sideways so that nothing is missed. An animal in an overlap band is seen on one
pass and again on the next, tens of seconds later: far beyond stitching's gap, so without
this step it is counted twice.

During the flight ``FlightLog`` keeps the camera's path (the centre of each processed frame
in the counter's camera-compensated "ground" coordinates: the first frame's pixels) and, every
``KEYFRAME_STEP`` of a frame's width travelled, a keyframe: its ORB features and where the
accumulated camera motion puts it. After the last frame ``merge_passes``:

1. **finds the passes**: turns are where the travel along the flight's main axis reverses,
   having gone at least ``MIN_PASS_WIDTHS`` frame widths one way (a hovering or one-way flight
   has one pass, and nothing changes);
2. **places each pass on the ground**, best first:
   * *registration*: each keyframe of a later pass is matched to the earlier passes' keyframes
     over the same ground (ORB + RANSAC similarity, ``ml_engine.survey.registration``, guided:
     only matches near where the prior puts them count); the fit corrects the accumulated
     motion's drift there, and its RMS residual is the placement's error;
   * *telemetry* (a DJI SRT's GPS track): where no keyframe registers, the pass is moved by
     the offset the GPS track measures against the accumulated motion, when that offset is
     beyond the GPS error (the accumulated motion has failed); error: the GPS's;
   * *accumulated motion* as it is, its drift estimated at ``DRIFT_PER_TRAVEL`` of the path
     flown since the ground was last seen;
3. **checks stitching across the turns**: stitching re-links an animal lost for up to 8 s
   and lets it wander several body sizes in that time (one walking under a tree), so near a
   turn it can join an animal of one pass to a different animal of the next. A link whose gap
   spans a turn is kept only when its two pieces lie within the next step's tolerance of each
   other on the registered ground; otherwise it is undone, and the later piece is paired
   again by the next step (an optimal pairing: the animal it belongs to can take it);
4. **merges**: a track of a later pass and a track (or group) of an earlier one are one animal
   when their classes agree, they were never seen at the same time, and their ground positions
   lie within the tolerance: ``TOLERANCE_SIZES`` body sizes (how far a grazing animal moves
   between passes) plus ``TOLERANCE_ERRORS`` times the two placements' errors. Each animal of
   a pass is paired at most once (an optimal assignment on distance), so two animals close
   together are never folded into one to re-link a third.

Limits: an animal that walked further than the tolerance between passes is counted again;
one that walked onto another's spot may be paired with it (the count stays right); the
ground is taken as flat and the camera's heading as slowly varying.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

from ml_engine.counting.stitching import TrackEnds
from ml_engine.counting.tracker import CameraFrame
from ml_engine.media.telemetry import Telemetry
from ml_engine.survey.footprint import Footprint, LocalFrame
from ml_engine.survey.registration import Features, Registration, features_of, register

KEYFRAME_STEP = 0.2  # a keyframe each time the camera travels this fraction of the frame's width
MIN_PASS_WIDTHS = 1.0  # a pass travels at least this many frame widths before a turn counts
NEIGHBOURS = 3  # earlier keyframes a keyframe is registered to, nearest first
NEIGHBOUR_REACH = 0.75  # ... within this many frame widths (centre to centre)
GATE_WIDTHS = 0.15  # a match's two ground points, by the prior, within this many frame widths
# The accumulated motion's drift, per unit of path flown (the bench's lawnmower flights:
# docs/performance.md), for a pass no keyframe of which registers.
DRIFT_PER_TRAVEL = 0.01
TOLERANCE_SIZES = 0.75
TOLERANCE_ERRORS = 3.0
GPS_ERROR_M = 1.5  # a consumer receiver without RTK, one standard deviation
TELEMETRY_TRUST = 3.0  # the GPS offset must exceed this many GPS errors to overrule the motion


@dataclass
class Keyframe:
    frame_index: int
    time_s: float
    to_ground: np.ndarray  # 3x3: full-frame pixels -> ground, by the accumulated motion
    features: Features  # ORB points in full-frame pixels
    pixel_size: float  # ground units per pixel of the image the features were found on


@dataclass
class PassPlacement:
    """One pass: its frames, how it was placed on the ground, and the placement's error."""

    number: int  # 1-based
    first_frame: int
    last_frame: int
    method: str = "reference"  # reference | registration | telemetry | accumulated_motion
    error: float = 0.0  # ground units (one standard deviation, about)
    keyframes: int = 0
    registered: int = 0
    drift: float | None = None  # the accumulated motion's offset that registration or the GPS measured
    counted: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "pass": self.number, "first_frame": self.first_frame, "last_frame": self.last_frame,
            "counted": self.counted, "placement": self.method, "error_px": round(self.error, 2),
            "keyframes": self.keyframes, "keyframes_registered": self.registered,
            "drift_px": None if self.drift is None else round(self.drift, 2),
        }


@dataclass
class _Group:
    """Tracks taken for one animal so far: its id, class, where it was last placed, its frames."""

    track_id: int
    class_name: str
    position: np.ndarray
    error: float
    spans: list[tuple[int, int]] = field(default_factory=list)

    def seen_during(self, span: tuple[int, int]) -> bool:
        return any(a <= span[1] and span[0] <= b for a, b in self.spans)


class FlightLog:
    """The camera's path and keyframes over one video, for ``merge_passes``.

    ``observe`` takes each processed frame's accumulated transform (its pixels -> ground) and,
    when the counter has the frame, the ``CameraFrame`` that camera motion was estimated on.
    ``telemetry``: the flight's GPS track (optional; see the module's description).
    """

    def __init__(self, telemetry: Telemetry | None = None) -> None:
        self.telemetry = telemetry if telemetry is not None and telemetry.samples else None
        self.frames: list[int] = []
        self.times: list[float] = []
        self.centres: list[np.ndarray] = []
        self.keyframes: list[Keyframe] = []
        self.frame_size: tuple[int, int] | None = None
        self.width_ground = 0.0

    def observe(self, frame_index: int, time_s: float, to_ground: np.ndarray, frame: CameraFrame | None) -> None:
        if frame is None:
            return  # a counter fed no frames: neither the frame's size nor its features are known
        height, width = frame.grey.shape[:2]
        size = (round(width * frame.scale), round(height * frame.scale))
        self.frame_size = size
        centre = _apply(to_ground, np.array([[size[0] / 2, size[1] / 2]]))[0]
        self.frames.append(frame_index)
        self.times.append(time_s)
        self.centres.append(centre)
        scale = math.sqrt(abs(np.linalg.det(to_ground[:2, :2])))
        self.width_ground = size[0] * scale
        if self._keyframe_due(centre):
            found = features_of(frame.grey)
            self.keyframes.append(Keyframe(
                frame_index, time_s, to_ground.copy(),
                Features(found.points * frame.scale, found.descriptors), scale * frame.scale))

    def _keyframe_due(self, centre: np.ndarray) -> bool:
        if not self.keyframes:
            return True
        last = self._keyframe_centre(self.keyframes[-1])
        return float(np.linalg.norm(centre - last)) >= KEYFRAME_STEP * self.width_ground

    def _keyframe_centre(self, keyframe: Keyframe, correction: np.ndarray | None = None) -> np.ndarray:
        assert self.frame_size is not None
        matrix = keyframe.to_ground if correction is None else correction @ keyframe.to_ground
        return _apply(matrix, np.array([[self.frame_size[0] / 2, self.frame_size[1] / 2]]))[0]

    # --- after the flight ---------------------------------------------------------------------

    def passes(self) -> list[tuple[int, int]]:
        """(first, last) indexes into the path of each pass; one pass when there is no turn."""
        if len(self.centres) < 2 or self.width_ground <= 0:
            return [(0, max(len(self.centres) - 1, 0))]
        return find_passes(np.array(self.centres), MIN_PASS_WIDTHS * self.width_ground)

    def merge_passes(self, stitched: dict[int, int], ends: dict[int, TrackEnds]) -> PassMerge | None:
        """Map the stitched tracks of later passes that are animals seen on an earlier pass to
        that one's id; None for a flight of one pass (nothing to do)."""
        found = self.passes()
        if len(found) < 2:
            return None
        placements = [PassPlacement(i + 1, self.frames[a], self.frames[b]) for i, (a, b) in enumerate(found)]
        corrections = self._place(placements)
        pieces, links = self._unlink_turns(stitched, ends, placements)
        stitched, unlinked = self._keep_links_that_fit(pieces, links, ends, placements, corrections)
        tracks = _chains(stitched, ends)
        self._locate(tracks, placements, corrections)
        merged_into = self._merge(tracks, placements)
        ids = {raw: merged_into.get(root, root) for raw, root in stitched.items()}
        spans = {raw: (e.first_frame, e.last_frame) for raw, e in ends.items() if e.head}
        relinked = sum(1 for root in unlinked if root in merged_into)
        return PassMerge(ids, placements, spans, len(merged_into), self.telemetry is not None,
                         len(unlinked), relinked)

    def _keep_links_that_fit(self, pieces: dict[int, int], links: list[tuple[int, int]], ends: dict[int, TrackEnds],
                             placements: list[PassPlacement],
                             corrections: list[np.ndarray]) -> tuple[dict[int, int], list[int]]:
        """Stitching's links across a turn whose two pieces lie within the passes' tolerance of
        each other on the registered ground, kept; the others undone (their later pieces' roots
        returned), to be paired again by ``_merge``."""
        tracks = _chains(pieces, ends)
        self._locate(tracks, placements, corrections)
        by_root = {t.track_id: t for t in tracks}
        size = _median_size(tracks)
        root_of = {t.track_id: t.track_id for t in tracks}
        undone = []
        for before, after in sorted(links, key=lambda link: by_root[link[1]].first_frame):
            earlier, later = by_root[before], by_root[after]
            tolerance = _tolerance(size, placements[earlier.pass_index].error, placements[later.pass_index].error)
            if float(np.linalg.norm(earlier.position - later.position)) <= tolerance:
                root_of[after] = root_of[before]
            else:
                undone.append(after)
        return {raw: root_of.get(piece, piece) for raw, piece in pieces.items()}, undone

    def _unlink_turns(self, stitched: dict[int, int], ends: dict[int, TrackEnds],
                      placements: list[PassPlacement]) -> tuple[dict[int, int], list[tuple[int, int]]]:
        """Stitched chains cut where a link's gap spans a turn: raw id -> its piece's root (the
        piece's first track), and each cut link as (the piece before, the piece after)."""
        members: dict[int, list[int]] = {}
        for raw, root in stitched.items():
            if raw in ends and ends[raw].head:
                members.setdefault(root, []).append(raw)
        pieces = dict(stitched)
        links: list[tuple[int, int]] = []
        for root, raws in members.items():
            raws.sort(key=lambda raw: (ends[raw].first_frame, raw))
            piece = root
            for before, after in pairwise(raws):
                if (self._pass_of_frame(placements, ends[after].first_frame)
                        > self._pass_of_frame(placements, ends[before].last_frame)):
                    links.append((piece, after))
                    piece = after
                pieces[after] = piece
        return pieces, links

    # --- placing the passes ---------------------------------------------------------------------

    def _pass_of_frame(self, placements: list[PassPlacement], frame_index: int) -> int:
        for i, placement in enumerate(placements):
            if frame_index <= placement.last_frame:
                return i
        return len(placements) - 1

    def _place(self, placements: list[PassPlacement]) -> list[np.ndarray]:
        """A 3x3 ground correction per keyframe (the accumulated motion's ground -> the first
        pass's), filling in ``placements``."""
        corrections = [np.eye(3) for _ in self.keyframes]
        of_pass = [self._pass_of_frame(placements, k.frame_index) for k in self.keyframes]
        priors = self._telemetry_priors(placements)
        for number, placement in enumerate(placements):
            members = [i for i, p in enumerate(of_pass) if p == number]
            placement.keyframes = len(members)
            if number == 0:
                continue
            prior, prior_error = priors[number]
            registered: dict[int, Registration] = {}
            for i in members:
                found = self._register(i, prior, prior_error, of_pass, corrections)
                if found is not None:
                    registered[i] = found
                    corrections[i] = found.similarity @ prior
            placement.registered = len(registered)
            self._fill(placement, members, registered, corrections, prior, prior_error)
        return corrections

    def _register(self, index: int, prior: np.ndarray, prior_error: float, of_pass: list[int],
                  corrections: list[np.ndarray]) -> Registration | None:
        keyframe = self.keyframes[index]
        centre = self._keyframe_centre(keyframe, prior)
        reach = NEIGHBOUR_REACH * self.width_ground
        earlier = [(float(np.linalg.norm(self._keyframe_centre(k, corrections[j]) - centre)), j)
                   for j, k in enumerate(self.keyframes) if of_pass[j] < of_pass[index]]
        nearest = sorted(e for e in earlier if e[0] <= reach + prior_error)[:NEIGHBOURS]
        if not nearest:
            return None
        neighbours = [(j, self.keyframes[j].features, self._footprint(self.keyframes[j], corrections[j]))
                      for _, j in nearest]
        gate = max(GATE_WIDTHS * self.width_ground, TOLERANCE_ERRORS * prior_error)
        return register(keyframe.features, self._footprint(keyframe, prior), neighbours, gate)

    def _footprint(self, keyframe: Keyframe, correction: np.ndarray) -> Footprint:
        assert self.frame_size is not None
        return Footprint(correction @ keyframe.to_ground, self.frame_size[0], self.frame_size[1],
                         keyframe.pixel_size, 0.0, 0.0, 0.0)

    def _fill(self, placement: PassPlacement, members: list[int], registered: dict[int, Registration],
              corrections: list[np.ndarray], prior: np.ndarray, prior_error: float) -> None:
        """Keyframes that did not register take the correction of the pass's nearest one that did
        (or the prior), and the pass gets its method and error."""
        if registered:
            done = sorted(registered)
            for i in members:
                if i not in registered:
                    nearest = min(done, key=lambda j: abs(self.keyframes[j].time_s - self.keyframes[i].time_s))
                    corrections[i] = corrections[nearest]
            placement.method = "registration"
            placement.error = float(np.median([r.residual_m for r in registered.values()]))
            placement.drift = float(np.median([_moved(corrections[i], self._keyframe_centre(self.keyframes[i]))
                                               for i in done]))
            return
        for i in members:
            corrections[i] = prior
        drift = DRIFT_PER_TRAVEL * self._travel(placement)
        if not np.allclose(prior, np.eye(3)):  # the GPS overruled the accumulated motion
            placement.method, placement.error = "telemetry", prior_error
            placement.drift = float(np.linalg.norm(prior[:2, 2]))
        else:  # the accumulated motion, checked against the GPS where there is some
            placement.method = "accumulated_motion"
            placement.error = min(drift, prior_error) if prior_error > 0 else drift

    def _travel(self, placement: PassPlacement) -> float:
        """The path flown from the flight's start to the end of ``placement``, in ground units."""
        centres = np.array(self.centres)
        upto = np.array(self.frames) <= placement.last_frame
        steps = np.linalg.norm(np.diff(centres[upto], axis=0), axis=1)
        return float(steps.sum())

    def _telemetry_priors(self, placements: list[PassPlacement]) -> list[tuple[np.ndarray, float]]:
        """Per pass, the correction the GPS track calls for and its error (ground units):
        identity with no error estimate without telemetry, and where the GPS agrees with the
        accumulated motion within ``TELEMETRY_TRUST`` of its error."""
        plain: list[tuple[np.ndarray, float]] = [(np.eye(3), 0.0) for _ in placements]
        if self.telemetry is None or len(self.centres) < 10:
            return plain
        gps = _gps_on_ground(self.telemetry, np.array(self.times), np.array(self.centres))
        if gps is None:
            return plain
        on_ground, error = gps
        offsets = on_ground - np.array(self.centres)
        frames = np.array(self.frames)
        priors = []
        reference = None
        for placement in placements:
            inside = (frames >= placement.first_frame) & (frames <= placement.last_frame)
            offset = np.median(offsets[inside], axis=0)
            reference = offset if reference is None else reference
            shift = offset - reference
            correction = np.eye(3)
            if float(np.linalg.norm(shift)) > TELEMETRY_TRUST * error:
                correction[:2, 2] = shift
            priors.append((correction, error))
        return priors

    # --- merging ----------------------------------------------------------------------------------

    def _locate(self, tracks: list[_Chain], placements: list[PassPlacement], corrections: list[np.ndarray]) -> None:
        """Each track's pass (where it begins) and its position on the first pass's ground."""
        key_times = np.array([k.time_s for k in self.keyframes]) if self.keyframes else None
        for track in tracks:
            track.pass_index = self._pass_of_frame(placements, track.first_frame)
            track.position = _placed(track, key_times, corrections)

    def _merge(self, tracks: list[_Chain], placements: list[PassPlacement]) -> dict[int, int]:
        merged_into: dict[int, int] = {}
        groups: list[_Group] = []
        size = _median_size(tracks)
        for number, placement in enumerate(placements):
            members = [t for t in tracks if t.pass_index == number]
            if groups and members:
                self._pair(groups, members, placement, size, merged_into)
            for track in members:
                if track.track_id not in merged_into:
                    groups.append(_Group(track.track_id, track.class_name, track.position, placement.error,
                                         [track.span]))
        return merged_into

    def _pair(self, groups: list[_Group], members: list[_Chain], placement: PassPlacement, size: float,
              merged_into: dict[int, int]) -> None:
        cost = np.full((len(groups), len(members)), np.inf)
        for g, group in enumerate(groups):
            for m, track in enumerate(members):
                if group.class_name != track.class_name or group.seen_during(track.span):
                    continue
                tolerance = _tolerance(size, group.error, placement.error)
                distance = float(np.linalg.norm(group.position - track.position))
                if distance <= tolerance:
                    cost[g, m] = distance
        if not np.isfinite(cost).any():
            return
        rows, cols = linear_sum_assignment(np.where(np.isfinite(cost), cost, 1e12))
        for g, m in zip(rows.tolist(), cols.tolist(), strict=True):
            if not np.isfinite(cost[g, m]):
                continue
            group, track = groups[g], members[m]
            merged_into[track.track_id] = group.track_id
            group.position, group.error = track.position, placement.error  # where it was seen last
            group.spans.append(track.span)



def _median_size(tracks: list[_Chain]) -> float:
    return float(np.median([t.size for t in tracks])) if tracks else 0.0


def _tolerance(size: float, error_a: float, error_b: float) -> float:
    """How far apart two sightings of one animal may lie on the ground: ``TOLERANCE_SIZES`` body
    sizes plus ``TOLERANCE_ERRORS`` times the two placements' errors."""
    return TOLERANCE_SIZES * size + TOLERANCE_ERRORS * (error_a + error_b)


@dataclass
class PassMerge:
    """What ``merge_passes`` did: ``ids`` (raw id -> id after stitching and merging across
    passes), the passes, each raw track's frames, and how many stitched tracks it merged."""

    ids: dict[int, int]
    placements: list[PassPlacement]
    spans: dict[int, tuple[int, int]]  # raw id -> (first, last) frame
    merged: int
    telemetry: bool
    unlinked: int = 0  # stitching's links across a turn, undone to be judged by the passes' rule
    relinked: int = 0  # ... of which the passes' rule joined the piece to an earlier animal again

    def report(self, final: dict[int, int | None]) -> dict[str, Any]:
        """stats.json's ``counts.passes``; ``final`` maps raw ids to the counted ids (None:
        dropped as too short). A pass counts the animals seen during it."""
        seen: list[set[int]] = [set() for _ in self.placements]
        for raw, counted in final.items():
            if counted is None or raw not in self.spans:
                continue
            first, last = self.spans[raw]
            for animals, placement in zip(seen, self.placements, strict=True):
                if first <= placement.last_frame and placement.first_frame <= last:
                    animals.add(counted)
        for placement, animals in zip(self.placements, seen, strict=True):
            placement.counted = len(animals)
        later = [p.method for p in self.placements[1:]]
        weakest = next(m for m in ("accumulated_motion", "telemetry", "registration") if m in later)
        return {
            "passes": [p.to_dict() for p in self.placements],
            "total_unique": len({c for c in final.values() if c is not None}),
            "summed_over_passes": sum(p.counted for p in self.placements),
            "merged_across_passes": self.merged,
            "stitches_across_turns": {"undone": self.unlinked, "joined_again": self.relinked},
            "placement": weakest,
            "error_px": round(max(p.error for p in self.placements), 2),
            "telemetry": self.telemetry,
            "units": "pixels of the first processed frame, on the ground the camera motion accumulates",
        }


# --- tracks on the ground ---------------------------------------------------------------------------


@dataclass
class _Chain:
    """A stitched track: its samples on the (uncorrected) ground, frames and class."""

    track_id: int
    class_name: str
    first_frame: int
    last_frame: int
    samples: np.ndarray  # (K, 4): time, x, y, size
    pass_index: int = 0
    position: np.ndarray = field(default_factory=lambda: np.zeros(2))

    @property
    def span(self) -> tuple[int, int]:
        return self.first_frame, self.last_frame

    @property
    def size(self) -> float:
        return float(np.median(self.samples[:, 3]))


def _chains(stitched: dict[int, int], ends: dict[int, TrackEnds]) -> list[_Chain]:
    members: dict[int, list[TrackEnds]] = {}
    for raw, root in stitched.items():
        if raw in ends and ends[raw].head:
            members.setdefault(root, []).append(ends[raw])
    chains = []
    for root, parts in members.items():
        samples = np.array([s for part in parts for s in (*part.head, *part.tail)], dtype=float)
        chains.append(_Chain(root, parts[0].class_name, min(p.first_frame for p in parts),
                             max(p.last_frame for p in parts), samples))
    return sorted(chains, key=lambda c: (c.first_frame, c.track_id))


def _placed(track: _Chain, key_times: np.ndarray | None, corrections: list[np.ndarray]) -> np.ndarray:
    """The track's ground position: the median of its samples, each corrected by the keyframe
    nearest it in time."""
    points = track.samples[:, 1:3]
    if key_times is None or len(key_times) == 0:
        return np.median(points, axis=0)
    nearest = np.abs(track.samples[:, 0][:, None] - key_times[None, :]).argmin(axis=1)
    corrected = np.array([_apply(corrections[k], p[None])[0] for k, p in zip(nearest, points, strict=True)])
    return np.median(corrected, axis=0)


def _apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    mapped = np.column_stack([points, np.ones(len(points))]) @ matrix.T
    return mapped[:, :2] / mapped[:, 2:3]


def _moved(correction: np.ndarray, point: np.ndarray) -> float:
    """How far ``correction`` moves ``point``."""
    return float(np.linalg.norm(_apply(correction, point[None])[0] - point))


def find_passes(centres: np.ndarray, min_travel: float) -> list[tuple[int, int]]:
    """Split a path (N, 2) into passes at its turns: where the travel along its main axis
    reverses after going at least ``min_travel`` one way. (first, last) indexes, inclusive."""
    centred = centres - centres.mean(axis=0)
    _, _, axes = np.linalg.svd(centred, full_matrices=False)
    along = centred @ axes[0]
    turns: list[int] = []
    direction, extreme = 0, 0
    for i in range(1, len(along)):
        if direction == 0:
            if abs(along[i] - along[0]) >= min_travel:  # the first pass is under way
                direction, extreme = (1 if along[i] > along[0] else -1), i
        elif (along[i] - along[extreme]) * direction > 0:  # still going the same way
            extreme = i
        elif abs(along[i] - along[extreme]) >= min_travel:  # far enough back the other way: a turn
            turns.append(extreme)
            direction, extreme = -direction, i
    bounds = [-1, *turns, len(along) - 1]
    return [(bounds[k] + 1, bounds[k + 1]) for k in range(len(bounds) - 1)]


def _gps_on_ground(telemetry: Telemetry, times: np.ndarray, centres: np.ndarray) -> tuple[np.ndarray, float] | None:
    """The GPS track at each processed frame's time, mapped onto the accumulated motion's
    ground by the similarity that fits the two paths best (the camera's scale and heading),
    and the GPS error in ground units."""
    samples = telemetry.samples
    sample_times = np.array([s.time_s for s in samples])
    local = LocalFrame(samples[0].lon, samples[0].lat)
    east, north = local.to_metres(np.array([s.lon for s in samples]), np.array([s.lat for s in samples]))
    metres = np.column_stack([np.interp(times, sample_times, east), -np.interp(times, sample_times, north)])
    source, target = metres.astype(np.float64), centres.astype(np.float64)
    scale, rotation, shift = _similarity(source, target)
    if not math.isfinite(scale) or scale <= 0:
        return None
    on_ground = scale * source @ rotation.T + shift
    return on_ground, GPS_ERROR_M * scale


def _similarity(source: np.ndarray, target: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Least-squares similarity (Umeyama, no reflection) taking ``source`` onto ``target``."""
    mu_s, mu_t = source.mean(axis=0), target.mean(axis=0)
    a, b = source - mu_s, target - mu_t
    covariance = b.T @ a / len(source)
    u, d, vt = np.linalg.svd(covariance)
    sign = np.diag([1.0, float(np.sign(np.linalg.det(u @ vt)) or 1.0)])
    rotation = u @ sign @ vt
    variance = float((a**2).sum() / len(source))
    scale = float(np.trace(np.diag(d) @ sign) / variance) if variance > 0 else float("nan")
    return scale, rotation, mu_t - scale * mu_s @ rotation.T
