"""The tiling column: the oracle asked once per tile, exactly as the product tiles.

For each (scenario, seed) and each ``TILING`` value, the frames are planned with the
product's ``ml_engine.tiling.plan_tiles`` (the oracle plays a 640 px model: tiles of 640x640
when ``auto`` decides to tile), the oracle answers for every view at that view's scale (its
resolution limit applies per tile), the views are merged with the product's ``merge_views``,
and the product's counting stage (the ``baseline`` column) counts the result.

Reported per run: the count and its error; ``hidden``: the counted animals that the same
counting stage never follows with ``TILING=off`` (on ``small_4k``: all of them, the
resolution limit hides every animal); ``recovered``: how many of those tiling now follows;
views per frame, and the merge's cost per frame (real product cost; the oracle's own time is
not a model's, see ``bench/pipeline_bench.py --tiling`` for that). The seam merge's own faults,
from the oracle's answers (each box knows its animal): ``doubled``, the (frame, animal) pairs
left with two or more merged boxes, and ``merged_away``, the (frame, animal) pairs some view
detected that no merged box is (an animal absorbed into its neighbour's box).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import supervision as sv

from bench.counting import columns as cols
from bench.counting.metrics import count_breakdown, count_error_pct
from bench.counting.oracle import Oracle, OracleDetector
from bench.counting.runner import (
    Prepared,
    _cache_key,
    _track_key,
    counting_stage_on_video,
    prepare,
    write_video,
)
from bench.counting.scene import SCENARIOS, Scene
from ml_engine.tiling import TilePlan, View, merge_views, parse_tiling, plan_tiles


def plan_for(detector: OracleDetector, setting: str) -> TilePlan:
    sc = detector.oracle.scene.scenario
    return plan_tiles(parse_tiling(setting), (sc.width, sc.height), detector.model_input_size(sc.width, sc.height),
                      detector.tile_size(), full_frame=True)


def tiled_detections(scene: Scene, setting: str, frames: list[int], threshold: float
                     ) -> tuple[list[sv.Detections], TilePlan, float, dict[str, int]]:
    """Per frame: the merged detections of every view; the plan; merge seconds in all; the
    merge's faults summed over the frames (``seam_faults``)."""
    detector = OracleDetector(Oracle(scene), stride=1)
    plan = plan_for(detector, setting)
    sc = scene.scenario
    blank = np.broadcast_to(np.zeros(3, dtype=np.uint8), (sc.height, sc.width, 3))  # shape only, no memory
    merged, merge_s = [], 0.0
    faults = {"doubled": 0, "merged_away": 0}
    for f in frames:
        per_view = detector.detect_views([blank], [View(0, f, region) for region in plan.regions], threshold)
        started = time.perf_counter()
        merged.append(merge_views(per_view))
        merge_s += time.perf_counter() - started
        for key, value in seam_faults(per_view, merged[-1]).items():
            faults[key] += value
    return merged, plan, merge_s, faults


def seam_faults(per_view: list[sv.Detections], merged: sv.Detections) -> dict[str, int]:
    """One frame's merge faults: animals with two or more merged boxes, and animals some view
    detected that no merged box stands for. False positives (truth -1) are left out."""
    kept = _animals(merged)
    ids, boxes = np.unique(kept, return_counts=True)
    seen: set[int] = set()
    for det in per_view:
        seen.update(_animals(det).tolist())
    return {"doubled": int((boxes > 1).sum()), "merged_away": len(seen - set(ids.tolist()))}


def _animals(det: sv.Detections) -> np.ndarray:
    truth = np.asarray(det.data.get("truth", []), dtype=int)
    return truth[truth >= 0]


def followed_animals(tracked: cols.Tracked) -> set[int]:
    """The animals some confirmed track follows (each track: the animal most of its boxes came from)."""
    votes: dict[int, dict[int, int]] = {}
    for ids, truths in zip(tracked.ids, tracked.truths, strict=True):
        for t, a in zip(ids.tolist(), truths.tolist(), strict=True):
            votes.setdefault(t, {}).setdefault(a, 0)
            votes[t][a] += 1
    return {max(v, key=v.get) for v in votes.values()} - {-1}


def _sequence(prep: Prepared, detections: list[sv.Detections], frames: list[int]) -> cols.Sequence:
    sc = prep.scene.scenario
    return cols.Sequence(frames=frames, fps=sc.fps, source_fps=sc.fps, detections=detections,
                         small_grey=[np.asarray(prep.grey[f]) for f in frames], frame_width=sc.width)


def detection_recall(gt: Any, frames: list[int], detections: list[sv.Detections], animals: set[int]) -> float | None:
    """Of the (frame, animal) pairs where one of ``animals`` is present, the share detected."""
    wanted = np.zeros(gt.present.shape[1], dtype=bool)
    wanted[list(animals)] = True
    present = found = 0
    for f, det in zip(frames, detections, strict=True):
        here = gt.present[f] & wanted
        present += int(here.sum())
        truth = np.asarray(det.data.get("truth", []), dtype=int)
        found += int(here[np.unique(truth[truth >= 0])].sum())
    return found / present if present else None


def run_tiling(name: str, seed: int, settings: list[str], columns: list[str], cache_dir: str,
               frames: int | None = None) -> list[dict[str, Any]]:
    """Every TILING value on one (scenario, seed), at stride 1, counted by each column."""
    scenario = SCENARIOS[name] if frames is None else SCENARIOS[name].short(frames)
    prep = prepare(scenario, seed, Path(cache_dir))
    scene, gt = prep.scene, prep.scene.ground_truth
    chosen = list(range(scenario.frames))
    counted = set(gt.counted_ids().tolist())
    off_dets, _, _, _ = tiled_detections(scene, "off", chosen, cols.LOW_THRESHOLD)
    seen_at_off: set[int] = set()
    for det in off_dets:
        seen_at_off.update(np.asarray(det.data["truth"], dtype=int).tolist())
    hidden = counted - seen_at_off  # counted animals the whole frame never shows the detector
    rows = []
    for setting in ["off", *[s for s in settings if s != "off"]]:
        dets, plan, merge_s, faults = tiled_detections(scene, setting, chosen, cols.LOW_THRESHOLD)
        n = max(len(chosen), 1)
        base = {
            "scenario": name, "seed": seed, "tiling": setting, "tiled": plan.tiled,
            "size": f"{scenario.width}x{scenario.height}", "views_per_frame": plan.views_per_frame,
            "true": gt.true_count, "hidden": len(hidden),
            "hidden_recall": detection_recall(gt, chosen, dets, hidden),
            "recall": detection_recall(gt, chosen, dets, counted),
            "merge_ms_per_frame": round(1000 * merge_s / n, 3), **faults,
        }
        seq = _sequence(prep, dets, chosen)
        for column in columns:
            tracked = cols.run_column(column, seq)
            rows.append({
                **base, "column": column, "count": tracked.count,
                "err_pct": round(count_error_pct(gt.true_count, tracked.count), 3),
                "hidden_counted": len(hidden & followed_animals(tracked)),
                "missed": count_breakdown(gt, chosen, tracked.ids, tracked.truths)["missed"],
            })
    return rows


def aggregate(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean over seeds per (scenario, tiling, column); recall and recovery pooled over seeds."""
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["scenario"], row["tiling"], row["column"]), []).append(row)
    out = []
    for (scenario, tiling, column), group in groups.items():
        hidden = sum(r["hidden"] for r in group)
        out.append({
            "scenario": scenario, "tiling": tiling, "column": column, "seeds": len(group),
            "size": group[0]["size"], "tiled": group[0]["tiled"], "views_per_frame": group[0]["views_per_frame"],
            "true": _mean(group, "true"), "count": _mean(group, "count"),
            "abs_err_pct": round(float(np.mean([abs(r["err_pct"]) for r in group])), 1),
            "err_pct": _mean(group, "err_pct"),
            "recall_pct": _pct_mean(group, "recall"),
            "hidden": round(hidden / len(group), 1),
            "hidden_recall_pct": _pct_mean(group, "hidden_recall"),
            "hidden_counted_pct": round(100 * sum(r["hidden_counted"] for r in group) / hidden, 1) if hidden else None,
            "missed": _mean(group, "missed"),
            "merge_ms_per_frame": round(float(np.mean([r["merge_ms_per_frame"] for r in group])), 2),
            "doubled": _mean(group, "doubled"), "merged_away": _mean(group, "merged_away"),
        })
    return out


def _mean(group: list[dict[str, Any]], key: str) -> float:
    return round(float(np.mean([r[key] for r in group])), 1)


def _pct_mean(group: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in group if r[key] is not None]
    return round(100 * float(np.mean(values)), 1) if values else None


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f} %"


def table(aggregated: list[dict[str, Any]]) -> str:
    lines = [
        "| scenario | size | TILING | tiled | views / frame | detection recall | hidden by the limit "
        "| their recall | counted by | true | count (mean \\|err\\| %, signed) | hidden counted | never counted "
        "| merge ms / frame | doubled (frame, animal) | merged away |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in aggregated:
        lines.append(
            f"| {r['scenario']} | {r['size']} | {r['tiling']} | {'yes' if r['tiled'] else 'no'} "
            f"| {r['views_per_frame']} | {_pct(r['recall_pct'])} | {r['hidden']} | {_pct(r['hidden_recall_pct'])} "
            f"| {r['column']} | {r['true']} | {r['count']} ({r['abs_err_pct']}, {r['err_pct']:+.1f}) "
            f"| {_pct(r['hidden_counted_pct'])} | {r['missed']} | {r['merge_ms_per_frame']} "
            f"| {r['doubled']} | {r['merged_away']} |"
        )
    return "\n".join(lines)


def pipeline_check(name: str, seed: int, frames: int | None, setting: str, cache_dir: str) -> dict[str, Any]:
    """The real pipeline with ``TILING=setting`` (x264 file -> PyAV decode -> the oracle per
    tile through ``detect_views`` -> merge -> tracking -> counting -> x264 outputs) against
    this module's tiled detections counted by the counting stage alone: the same tracks."""
    from ml_engine.detection import DetectionConfig
    from ml_engine.pipeline import PipelineConfig, process_video

    scenario = SCENARIOS[name] if frames is None else SCENARIOS[name].short(frames)
    cache = Path(cache_dir)
    prep = prepare(scenario, seed, cache)
    video = cache / f"{_cache_key(scenario, seed)}.mp4"
    if not video.exists():
        write_video(prep.scene, video)
    detector = OracleDetector(Oracle(prep.scene), stride=1)
    with tempfile.TemporaryDirectory(prefix="counting-bench-tiling-") as out:
        started = time.perf_counter()
        result = process_video(video, out, detector,
                               PipelineConfig(detection=DetectionConfig(tiling=parse_tiling(setting))))
        seconds = time.perf_counter() - started
    chosen = list(range(scenario.frames))
    dets, _, _, _ = tiled_detections(prep.scene, setting, chosen, cols.LOW_THRESHOLD)
    # the pipeline's defaults (TRACKER, STITCHING) on the frames it decodes, as runner.pipeline_check does
    alone = counting_stage_on_video(video, _sequence(prep, dets, chosen))
    stats = result.stats
    return {
        "scenario": name, "seed": seed, "frames": scenario.frames, "tiling": setting,
        "size": f"{scenario.width}x{scenario.height}", "true": prep.scene.ground_truth.true_count,
        "pipeline_count": stats["counts"]["total_unique"], "counting_stage_count": alone.count,
        "tracks_identical": [_track_key(t) for t in stats["tracks"]] == [_track_key(t) for t in alone.tracks],
        "forward_passes": detector.calls, "views": detector.views_seen,
        "pipeline_fps": round(scenario.frames / seconds, 2), "processing": stats["processing"],
    }
