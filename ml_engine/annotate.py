"""Drawing the results onto frames: boxes, "class #id" labels, motion traces, lines, zones, counts.

Frames are RGB. supervision's annotators draw with OpenCV, which takes colours as BGR, so
their palette is handed over with red and blue swapped; our own drawing passes RGB tuples.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np
import supervision as sv

from core.jobs import CountingLine, CountingZone
from ml_engine.counting import anchors

WHITE = (255, 255, 255)
BLACK = (0, 0, 0)
LINE_COLOUR = (255, 214, 0)  # amber: stands out on grass and sky
ZONE_COLOUR = (0, 200, 255)


def _swap_red_blue(palette: sv.ColorPalette) -> sv.ColorPalette:
    return sv.ColorPalette([sv.Color(r=c.b, g=c.g, b=c.r) for c in palette.colors])


_PALETTE_FOR_RGB = _swap_red_blue(sv.ColorPalette.DEFAULT)


class FrameAnnotator:
    """Draws tracked detections and running counts onto RGB frames (in place).

    ``trace_points``: how many past anchor positions a track's trace keeps. ``provisional``:
    the counts drawn are live ones that stitching may still change (a live preview), and the
    overlay says so; the rendering pass after stitching draws final ones.
    """

    def __init__(
        self,
        lines: Sequence[CountingLine] = (),
        zones: Sequence[CountingZone] = (),
        trace_points: int = 20,
        provisional: bool = True,
    ) -> None:
        self.lines = list(lines)
        self.zones = list(zones)
        self.trace_points = trace_points
        self.counted_label = "Counted (provisional)" if provisional else "Counted"
        self._traces: dict[int, deque[tuple[int, int]]] = {}
        self._last_seen: dict[int, int] = {}
        self._updates = 0
        self._style: _Style | None = None

    def annotate(
        self, image: np.ndarray, tracked: sv.Detections, counts: dict[str, Any], *, processed: bool = True
    ) -> np.ndarray:
        """Draw onto ``image`` (HxWx3 RGB uint8) and return it.

        ``counts`` is ``ObjectCounter.live_counts()`` (or ``render.RunningCounts.counts()``, which
        adds each zone's ``inside`` and ``visited``). ``processed=False`` marks a frame drawn
        with the tracks of an earlier processed frame (frame stride): traces are not extended.
        """
        style = self._style_for(image)
        if processed:
            self._extend_traces(tracked)
        for zone in self.zones:
            _draw_zone(image, zone, counts.get("zones", {}).get(zone.name), style)
        for line in self.lines:
            _draw_line(image, line, counts.get("lines", {}).get(line.name, {}), style)
        self._draw_traces(image, tracked, style)
        if len(tracked):
            style.boxes.annotate(image, tracked)
            style.labels.annotate(image, tracked, labels=_labels(tracked))
        _draw_counts(image, self.counted_label, counts, style)
        return image

    def _style_for(self, image: np.ndarray) -> _Style:
        size = (image.shape[1], image.shape[0])
        if self._style is None or self._style.size != size:
            self._style = _Style(size)
        return self._style

    # --- traces ----------------------------------------------------------------------------

    def _extend_traces(self, tracked: sv.Detections) -> None:
        self._updates += 1
        if len(tracked):
            for track_id, (x, y) in zip(_track_ids(tracked), anchors(tracked.xyxy), strict=True):
                trace = self._traces.setdefault(track_id, deque(maxlen=self.trace_points))
                trace.append((int(x), int(y)))
                self._last_seen[track_id] = self._updates
        self._forget_old_traces()

    def _forget_old_traces(self) -> None:
        """Drop traces of tracks unseen for a trace's length: memory stays bounded."""
        stale = [t for t, seen in self._last_seen.items() if self._updates - seen > self.trace_points]
        for track_id in stale:
            del self._traces[track_id], self._last_seen[track_id]

    def _draw_traces(self, image: np.ndarray, tracked: sv.Detections, style: _Style) -> None:
        if not len(tracked):
            return
        for track_id in _track_ids(tracked):
            trace = self._traces.get(track_id)
            if trace and len(trace) > 1:
                points = np.array(trace, dtype=np.int32).reshape(-1, 1, 2)
                colour = _PALETTE_FOR_RGB.by_idx(track_id).as_bgr()  # swapped palette: BGR of it is RGB
                cv2.polylines(image, [points], False, colour, style.thickness, cv2.LINE_AA)


class _Style:
    """Sizes scaled to the frame, and the supervision annotators built with them."""

    def __init__(self, size: tuple[int, int]) -> None:
        self.size = size
        self.thickness = sv.calculate_optimal_line_thickness(resolution_wh=size)
        self.text_scale = sv.calculate_optimal_text_scale(resolution_wh=size)
        self.text_thickness = max(1, self.thickness // 2)
        self.boxes = sv.BoxAnnotator(
            color=_PALETTE_FOR_RGB, thickness=self.thickness, color_lookup=sv.ColorLookup.TRACK
        )
        self.labels = sv.LabelAnnotator(
            color=_PALETTE_FOR_RGB,
            color_lookup=sv.ColorLookup.TRACK,
            text_scale=self.text_scale,
            text_thickness=self.text_thickness,
            text_padding=max(2, int(4 * self.text_scale)),
            text_color=sv.Color.WHITE,
        )


def _track_ids(tracked: sv.Detections) -> list[int]:
    assert tracked.tracker_id is not None  # the tracker's output always carries them
    ids: list[int] = tracked.tracker_id.tolist()
    return ids


def _labels(tracked: sv.Detections) -> list[str]:
    names = tracked.data.get("class_name", np.full(len(tracked), "object"))
    return [f"{name} #{track_id}" for name, track_id in zip(names, _track_ids(tracked), strict=True)]


def _draw_zone(image: np.ndarray, zone: CountingZone, counts: dict[str, int] | None, style: _Style) -> None:
    points = np.array(zone.polygon, dtype=np.int32).reshape(-1, 1, 2)
    cv2.polylines(image, [points], True, ZONE_COLOUR, style.thickness, cv2.LINE_AA)
    x, y = points[0, 0]
    label = zone.name or ""
    if counts is not None:
        label += f": {counts.get('inside', 0)} inside / {counts.get('visited', 0)} visited"
    _text(image, label, (int(x) + 4, int(y) + 4), style, ZONE_COLOUR)


def _draw_line(image: np.ndarray, line: CountingLine, counts: dict[str, int], style: _Style) -> None:
    start = tuple(int(v) for v in line.start)
    end = tuple(int(v) for v in line.end)
    cv2.line(image, start, end, LINE_COLOUR, style.thickness + 1, cv2.LINE_AA)
    label = f"{line.name}: in {counts.get('in', 0)} / out {counts.get('out', 0)}"
    middle = ((start[0] + end[0]) // 2, (start[1] + end[1]) // 2)
    _text(image, label, middle, style, LINE_COLOUR)


def counted_text(label: str, counts: dict[str, Any]) -> str:
    """The running count's line, e.g. ``Counted: 40 (cow 38, sheep 2)``."""
    by_class = ", ".join(f"{cls} {n}" for cls, n in counts.get("by_class", {}).items())
    return f"{label}: {counts.get('total_unique', 0)}" + (f" ({by_class})" if by_class else "")


def _draw_counts(image: np.ndarray, label: str, counts: dict[str, Any], style: _Style) -> None:
    rows = [counted_text(label, counts)]
    rows.append(f"In view: {counts.get('in_frame', 0)}")
    line_height = int(28 * style.text_scale) + 8
    for row, text in enumerate(rows):
        _text(image, text, (8, 8 + row * line_height), style, BLACK)


def _text(image: np.ndarray, text: str, top_left: tuple[int, int], style: _Style, background: tuple) -> None:
    """Text on a filled box; the box is clipped to the frame."""
    font = cv2.FONT_HERSHEY_SIMPLEX
    (width, height), baseline = cv2.getTextSize(text, font, style.text_scale, style.text_thickness)
    pad = max(2, int(4 * style.text_scale))
    x = min(max(top_left[0], 0), max(image.shape[1] - width - 2 * pad, 0))
    y = min(max(top_left[1], 0), max(image.shape[0] - height - baseline - 2 * pad, 0))
    cv2.rectangle(image, (x, y), (x + width + 2 * pad, y + height + baseline + 2 * pad), background, -1)
    colour = BLACK if sum(background) > 400 else WHITE
    cv2.putText(
        image,
        text,
        (x + pad, y + pad + height),
        font,
        style.text_scale,
        colour,
        style.text_thickness,
        cv2.LINE_AA,
    )
