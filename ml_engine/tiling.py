"""Tiled (sliced) inference for frames much larger than the model's input.

A detector resizes every frame to its input (640x640 for RT-DETR): on a 4K frame a 20 px
animal becomes 3 px and is lost. Tiling cuts the frame into overlapping tiles, each about the
model's input size, so each tile is seen at (about) full resolution; the tiles of a whole
batch of frames go through the model in one batched forward pass (SAHI runs one forward per
tile, which is what makes it slow). Boxes come back in frame coordinates and are merged across
seams, so an animal cut by a seam counts once; an optional whole-frame view catches animals
too large for a tile.

The slicing and the merging follow SAHI (obss/sahi ``get_slice_bboxes``: overlapping tiles,
the last row and column shifted back onto the frame's edge; ``GreedyNMMPostprocess`` with
intersection over the smaller box, threshold 0.5), with three changes: boxes from the *same*
view are never merged, and a view gives at most one box to a merge (the model already
answered once per object within a view, so two overlapping boxes of one tile are two
animals, a dense herd, not one animal seen twice); a box joins a merge by overlapping any
box already in it, not only the best-scoring one (a partial box may out-score the whole);
and of a view's boxes that may join, the one with the highest IoU joins (a small neighbour
inside a large animal's box overlaps it fully too).

Every merge of views lives here: ``merge_views`` for one frame, ``merge_in_clusters`` for an
image of thousands of animals. ``ml_engine.detection.TiledDetector`` runs the model on the
views. This module is torch-free; ``TILING`` values are parsed where they come in
(``core.tiling.parse_tiling``: job parameters, settings, the CLI).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import supervision as sv

from core.errors import InvalidInput
from core.tiling import TilingSetting, parse_tiling

__all__ = ["AUTO_MIN_DOWNSCALE", "OVERLAP", "MERGE_IOS", "TilePlan", "View", "TilingSetting", "parse_tiling",
           "plan_tiles", "tile_regions", "merge_views", "merge_in_clusters", "intersection_over_smaller"]

# ``auto`` tiles when the model sees the frame shrunk by at least this factor (the worse axis):
# a 4K frame into 640x640 is 6x, 1080p is 3x. At 4x a 20 px animal is 5 px at the model's input,
# where detectors stop finding things.
AUTO_MIN_DOWNSCALE = 4.0
OVERLAP = 0.2  # of the tile's size, each way (SAHI's default): an animal up to this size is whole in some tile
MERGE_IOS = 0.5  # boxes of different views overlapping more than this (of the smaller box) are one object

Region = tuple[int, int, int, int]  # x0, y0, x1, y1 in frame pixels, x1/y1 exclusive


@dataclass(frozen=True)
class View:
    """One model input: ``region`` of the frame at position ``image`` in the batch, whose
    video frame index is ``frame``."""

    image: int
    frame: int
    region: Region


@dataclass(frozen=True)
class TilePlan:
    """How each frame of one video is cut: ``regions`` (tiles, then the whole frame when the
    full-frame view is on). ``tiled`` is False when the frame is seen whole, as without tiling."""

    regions: tuple[Region, ...]
    tiled: bool
    tile_size: tuple[int, int] | None  # (width, height)

    @property
    def views_per_frame(self) -> int:
        return len(self.regions)

    def describe(self, setting: TilingSetting, full_frame: bool) -> dict:
        """What stats.json records under ``processing.tiling``."""
        facts: dict = {"setting": setting.text, "tiled": self.tiled}
        if self.tiled:
            assert self.tile_size is not None
            facts.update(
                tile=f"{self.tile_size[0]}x{self.tile_size[1]}",
                tiles_per_frame=len(self.regions) - int(full_frame),
                overlap=OVERLAP,
                full_frame_pass=full_frame,
            )
        return facts


def plan_tiles(
    setting: TilingSetting,
    frame_size: tuple[int, int],
    model_input: tuple[int, int] | None,
    model_tile: tuple[int, int] | None,
    full_frame: bool = True,
) -> TilePlan:
    """The views of each frame of a ``frame_size`` (width, height) video.

    ``model_input`` is the (width, height) the model resizes such a frame to, ``model_tile``
    the tile it sees at full resolution (its input size); None for a model that takes frames
    as they are (``auto`` then never tiles). ``auto`` tiles with ``model_tile`` tiles when the
    model shrinks the frame ``AUTO_MIN_DOWNSCALE`` times or more (on its worse axis); ``WxH``
    always tiles with tiles of that size (capped at the frame). The whole-frame view comes
    last when ``full_frame``."""
    width, height = frame_size
    whole: tuple[Region, ...] = ((0, 0, width, height),)
    tile = _tile_size(setting, frame_size, model_input, model_tile)
    if tile is None:
        return TilePlan(whole, tiled=False, tile_size=None)
    tile = (min(tile[0], width), min(tile[1], height))
    regions = tuple(tile_regions(width, height, *tile))
    if len(regions) == 1:  # one tile is the frame: nothing to gain
        return TilePlan(whole, tiled=False, tile_size=None)
    return TilePlan(regions + (whole if full_frame else ()), tiled=True, tile_size=tile)


def _tile_size(
    setting: TilingSetting,
    frame_size: tuple[int, int],
    model_input: tuple[int, int] | None,
    model_tile: tuple[int, int] | None,
) -> tuple[int, int] | None:
    if setting.mode == "off":
        return None
    if setting.mode == "size":
        return setting.size
    if model_input is None or model_tile is None:
        return None
    downscale = max(frame_size[0] / model_input[0], frame_size[1] / model_input[1])
    return model_tile if downscale >= AUTO_MIN_DOWNSCALE else None


def tile_regions(width: int, height: int, tile_w: int, tile_h: int, overlap: float = OVERLAP) -> list[Region]:
    """Overlapping ``tile_w`` x ``tile_h`` tiles covering a ``width`` x ``height`` frame, row by row.

    Neighbours overlap by ``overlap`` of the tile (at least); the last row and column are
    moved back to end on the frame's edge, so every tile has the full size and none hangs
    outside the frame (as SAHI does)."""
    if not (tile_w >= 1 and tile_h >= 1):
        raise InvalidInput(f"tile size must be positive, got {tile_w}x{tile_h}")
    xs = _starts(width, min(tile_w, width), overlap)
    ys = _starts(height, min(tile_h, height), overlap)
    return [(x, y, x + min(tile_w, width), y + min(tile_h, height)) for y in ys for x in xs]


def _starts(length: int, tile: int, overlap: float) -> list[int]:
    if tile >= length:
        return [0]
    step = max(1, tile - math.ceil(overlap * tile))
    count = math.ceil((length - tile) / step) + 1
    starts = [min(i * step, length - tile) for i in range(count)]
    return sorted(set(starts))


def offset_boxes(detections: sv.Detections, region: Region) -> sv.Detections:
    """Boxes of a view, in the view's own pixels, moved to frame pixels."""
    if len(detections):
        detections.xyxy = detections.xyxy + np.array(region[:2] * 2, dtype=detections.xyxy.dtype)
    return detections


def merge_views(per_view: list[sv.Detections], match_ios: float = MERGE_IOS) -> sv.Detections:
    """One frame's detections from all its views (boxes already in frame pixels), merged
    across seams by greedy non-maximum merging (SAHI's GreedyNMM): best score first, each box
    starts a group and takes in boxes of the same class from the *other* views, at most one
    per view; the merged box is the group's union, with the best score.

    A box may join a group when it overlaps one of the group's boxes by ``match_ios`` of the
    smaller box (``intersection_over_smaller``). An animal cut by a seam is whole in one view
    and a part in another: the part lies inside the whole, so it joins. Matching against every
    box of the group, not only the first, lets a partial box that out-scores the whole one
    still gather the animal's other parts through the whole box. Of the boxes of one view that
    may join, the group takes the one most like its own boxes (highest IoU): a small
    neighbour's box lying inside a large animal's box overlaps it fully too, but it is not
    that animal's box."""
    non_empty = [d for d in per_view if len(d)]
    if not non_empty:
        return per_view[0] if per_view else sv.Detections.empty()
    view_of = np.concatenate([np.full(len(d), i) for i, d in enumerate(per_view) if len(d)])
    merged = sv.Detections.merge(non_empty)
    if len(non_empty) == 1:
        return merged
    xyxy = merged.xyxy.astype(np.float64)
    scores = merged.confidence if merged.confidence is not None else np.ones(len(merged))
    classes = merged.class_id if merged.class_id is not None else np.zeros(len(merged), dtype=int)
    boxes = _Boxes(xyxy, view_of, classes, match_ios)
    taken = np.zeros(len(merged), dtype=bool)
    keep: list[int] = []
    union = xyxy.copy()
    for i in np.argsort(-scores, kind="stable"):
        if taken[i]:
            continue
        group = boxes.gather(int(i), taken)
        keep.append(int(i))
        union[i, :2] = xyxy[group, :2].min(axis=0)
        union[i, 2:] = xyxy[group, 2:].max(axis=0)
    keep_sorted = np.sort(np.array(keep))
    result = _rows_of(merged, keep_sorted)
    result.xyxy = union[keep_sorted].astype(merged.xyxy.dtype)
    return result


def merge_in_clusters(per_view: list[sv.Detections], cell: int) -> sv.Detections:
    """``merge_views`` over a whole raster, one cluster of touching boxes at a time.

    ``merge_views`` compares every box with every other (an N x N matrix): over a mosaic of
    thousands of animals that would be gigabytes. Boxes only merge when they overlap, so the
    boxes are grouped into clusters of overlapping boxes (found through a grid of ``cell``-pixel
    cells) and each cluster is merged alone: memory follows the largest cluster (a herd whose
    boxes touch), not the raster."""
    non_empty = [d for d in per_view if len(d)]
    if len(non_empty) <= 1:
        return non_empty[0] if non_empty else sv.Detections.empty()
    view_of = np.concatenate([np.full(len(d), i) for i, d in enumerate(non_empty)])
    boxes = sv.Detections.merge(non_empty)
    labels = _overlap_clusters(boxes.xyxy.astype(np.float64), cell)
    merged = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        if len(members) == 1:
            merged.append(_rows_of(boxes, members))
            continue
        views = [_rows_of(boxes, members[view_of[members] == v]) for v in np.unique(view_of[members])]
        merged.append(merge_views(views))
    return sv.Detections.merge(merged)


def _overlap_clusters(xyxy: np.ndarray, cell: int) -> np.ndarray:
    """A cluster label per box: boxes that overlap (directly or through others) share one."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    grid: dict[tuple[int, int], list[int]] = {}
    low = np.floor(xyxy[:, :2] / cell).astype(int)
    high = np.floor(xyxy[:, 2:] / cell).astype(int)
    for index, ((x0, y0), (x1, y1)) in enumerate(zip(low, high, strict=True)):
        for gx in range(x0, x1 + 1):
            for gy in range(y0, y1 + 1):
                grid.setdefault((gx, gy), []).append(index)
    rows: list[int] = []
    cols: list[int] = []
    for members in grid.values():
        if len(members) < 2:
            continue
        group = np.array(members)
        box = xyxy[group]
        overlap = ((np.minimum(box[:, None, 2], box[None, :, 2]) > np.maximum(box[:, None, 0], box[None, :, 0]))
                   & (np.minimum(box[:, None, 3], box[None, :, 3]) > np.maximum(box[:, None, 1], box[None, :, 1])))
        a, b = np.nonzero(np.triu(overlap, 1))
        rows.extend(group[a])
        cols.extend(group[b])
    graph = coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(xyxy), len(xyxy)))
    return connected_components(graph, directed=False)[1]


PARTNER_ROWS = 256  # boxes compared with all the others at once: memory ~ 256 x boxes x 16 bytes x 3


class _Boxes:
    """One frame's boxes of every view, and which may merge with which, for ``merge_views``."""

    def __init__(self, xyxy: np.ndarray, view_of: np.ndarray, classes: np.ndarray, match_ios: float) -> None:
        self.xyxy = xyxy
        self.view_of = view_of
        # each box's partners, as one short array per box: a group only ever looks at these.
        # Compared PARTNER_ROWS boxes against all at a time: a cluster of 10,000 touching boxes
        # (a packed pen, or random weights at a low threshold) would take gigabytes at once.
        self.partners: list[np.ndarray] = []
        for start in range(0, len(xyxy), PARTNER_ROWS):
            rows = slice(start, start + PARTNER_ROWS)
            may_merge = intersection_over_smaller(xyxy[rows], xyxy) >= match_ios
            may_merge &= (classes[rows, None] == classes[None, :]) & (view_of[rows, None] != view_of[None, :])
            self.partners.extend(np.flatnonzero(row) for row in may_merge)

    def gather(self, first: int, taken: np.ndarray) -> list[int]:
        """The group ``first`` starts: round by round, from each view not in it yet, the box
        closest to the group among those matching one of its boxes. Marks them ``taken``."""
        group = [first]
        taken[first] = True
        while len(joining := self._joining(group, taken)):
            group.extend(joining.tolist())
            taken[joining] = True
        return group

    def _joining(self, group: list[int], taken: np.ndarray) -> np.ndarray:
        candidates = np.unique(np.concatenate([self.partners[m] for m in group]))
        candidates = candidates[~taken[candidates] & ~np.isin(self.view_of[candidates], self.view_of[group])]
        if not len(candidates):
            return candidates
        closeness = _iou(self.xyxy[group], self.xyxy[candidates]).max(axis=0)
        views = self.view_of[candidates]
        return np.array([candidates[views == v][np.argmax(closeness[views == v])] for v in np.unique(views)],
                        dtype=int)


def _rows_of(detections: sv.Detections, rows: np.ndarray) -> sv.Detections:
    """The detections at ``rows``. Indexing is typed as returning a data column too (for a
    string key); with an index array it is always Detections."""
    subset = detections[rows]
    assert isinstance(subset, sv.Detections)
    return subset


def intersection_over_smaller(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) intersection area over the smaller box's area, xyxy boxes."""
    inter, area_a, area_b = _intersections(a, b)
    smaller = np.minimum(area_a[:, None], area_b[None, :])
    return inter / np.maximum(smaller, 1e-9)


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) intersection over union, xyxy boxes."""
    inter, area_a, area_b = _intersections(a, b)
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


def _intersections(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The (len(a), len(b)) intersection areas, and each box's area."""
    low = np.maximum(a[:, None, :2], b[None, :, :2])
    high = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(high - low, 0, None), axis=2)
    area_a = np.prod(np.clip(a[:, 2:] - a[:, :2], 0, None), axis=1)
    area_b = np.prod(np.clip(b[:, 2:] - b[:, :2], 0, None), axis=1)
    return inter, area_a, area_b
