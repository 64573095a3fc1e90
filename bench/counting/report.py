"""Aggregate the rows over seeds and print them as markdown tables."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np


def aggregate(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (scenario, stride, column): means over seeds (|err| is the mean of each
    seed's absolute error, not the error of the mean count)."""
    groups: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[(row["scenario"], row["stride"], row["column"])].append(row)
    out = []
    for (scenario, stride, column), group in groups.items():
        frames = sum(r["processed_frames"] for r in group)
        tracker_s = sum(r["tracker_ms_per_frame"] * r["processed_frames"] for r in group) / 1000
        out.append({
            "scenario": scenario,
            "stride": stride,
            "column": column,
            "seeds": len(group),
            "true": float(np.mean([r["true"] for r in group])),
            "count": float(np.mean([r["count"] for r in group])),
            "abs_err_pct": float(np.mean([abs(r["err_pct"]) for r in group])),
            "err_pct": float(np.mean([r["err_pct"] for r in group])),
            "abs_err_half_visible_pct": float(np.mean([abs(r["err_half_visible_pct"]) for r in group])),
            "idsw": float(np.mean([r["idsw"] for r in group])),
            "idf1": float(np.mean([r["idf1"] for r in group])),
            "hota": float(np.mean([r["hota"] for r in group])),
            **{k: float(np.mean([r[k] for r in group])) for k in BREAKDOWN},
            "tracker_fps": round(frames / tracker_s, 1) if tracker_s > 0 else None,
            "cmc_ms_per_frame": float(np.mean([r["cmc_ms_per_frame"] for r in group])),
        })
    return out


BREAKDOWN = ("false_tracks", "extra_after_occlusion", "extra_after_leaving", "extra_other", "uncounted_animal",
             "missed")


def summary(aggregated: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (column, stride): the mean over scenarios."""
    groups: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for row in aggregated:
        groups[(row["column"], row["stride"])].append(row)
    return [
        {
            "column": column,
            "stride": stride,
            "abs_err_pct": float(np.mean([r["abs_err_pct"] for r in group])),
            "err_pct": float(np.mean([r["err_pct"] for r in group])),
            "abs_err_half_visible_pct": float(np.mean([r["abs_err_half_visible_pct"] for r in group])),
            "idsw": float(np.mean([r["idsw"] for r in group])),
            "idf1": float(np.mean([r["idf1"] for r in group])),
            "hota": float(np.mean([r["hota"] for r in group])),
            "cmc_ms_per_frame": float(np.mean([r["cmc_ms_per_frame"] for r in group])),
            **{k: float(np.mean([r[k] for r in group])) for k in BREAKDOWN},
        }
        for (column, stride), group in groups.items()
    ]


def _order(values: list, preferred: list) -> list:
    return [v for v in preferred if v in values] + sorted(v for v in values if v not in preferred)


def summary_table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    strides = sorted({r["stride"] for r in rows})
    by = {(r["column"], r["stride"]): r for r in rows}
    head = ["column"] + [f"stride {s}: mean \\|err\\| % (signed)" for s in strides] + \
        [f"IDF1 / HOTA @ {s}" for s in strides] + \
        [f"\\|err\\| % against animals half visible (the old count) @ {s}" for s in strides]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for column in _order(list({r["column"] for r in rows}), columns):
        cells = [column]
        cells += [f"{by[column, s]['abs_err_pct']:.1f} ({by[column, s]['err_pct']:+.1f})" for s in strides]
        cells += [f"{by[column, s]['idf1']:.3f} / {by[column, s]['hota']:.3f}" for s in strides]
        cells += [f"{by[column, s]['abs_err_half_visible_pct']:.1f}" for s in strides]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def detail_table(rows: list[dict[str, Any]], columns: list[str], scenarios: list[str]) -> str:
    """Rows: scenario x stride. Cells: our count (|err| %) · ID switches · IDF1 · HOTA."""
    by = {(r["scenario"], r["stride"], r["column"]): r for r in rows}
    cols = _order(list({r["column"] for r in rows}), columns)
    head = ["scenario", "stride", "true"] + cols
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for scenario in _order(list({r["scenario"] for r in rows}), scenarios):
        for stride in sorted({r["stride"] for r in rows}):
            first = by.get((scenario, stride, cols[0]))
            if first is None:
                continue
            cells = [scenario, str(stride), f"{first['true']:.1f}"]
            for column in cols:
                r = by.get((scenario, stride, column))
                cells.append("" if r is None else
                             f"{r['count']:.1f} ({r['abs_err_pct']:.1f}%) · {r['idsw']:.0f} · "
                             f"{r['idf1']:.3f} · {r['hota']:.3f}")
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def speed_table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    """Tracker frames per second (counting stage alone, CMC included) at stride 1, by scenario."""
    cols = _order(list({r["column"] for r in rows}), columns)
    by = {(r["scenario"], r["column"]): r for r in rows if r["stride"] == 1}
    scenarios = sorted({s for s, _ in by})
    head = ["scenario"] + cols
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for scenario in scenarios:
        lines.append("| " + " | ".join([scenario] + [
            f"{by[scenario, c]['tracker_fps']:.0f}" if (scenario, c) in by and by[scenario, c]["tracker_fps"] else ""
            for c in cols]) + " |")
    return "\n".join(lines)


def pipeline_table(checks: list[dict[str, Any]]) -> str:
    head = ["scenario", "size", "frames", "stride", "true", "pipeline count", "counting stage count",
            "tracks identical", "pipeline fps"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for c in checks:
        lines.append("| " + " | ".join(str(v) for v in (
            c["scenario"], c["size"], c["frames"], c["stride"], c["true"], c["pipeline_count"],
            c["counting_stage_count"], "yes" if c["tracks_identical"] else "**NO**", c["pipeline_fps"])) + " |")
    return "\n".join(lines)


def cmc_table(rows: list[dict[str, Any]]) -> str:
    lines = ["| frame | method | what CMC is given | ms per frame (grey + downscale, estimate) |", "|---|---|---|---|"]
    for r in rows:
        split = f" ({r['prepare_ms']:.1f} + {r['estimate_ms']:.1f})" if "prepare_ms" in r else ""
        lines.append(f"| {r['size']} | {r['method']} | {r['input']} | {r['ms_per_frame']:.1f}{split} |")
    return "\n".join(lines)


def breakdown_table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    """Per column and stride, mean per sequence: where the count's errors come from."""
    head = ["column", "stride", "false tracks", "extra ids after occlusion", "extra ids after leaving frame",
            "extra ids, other (tracker lost it)", "tracks of animals the truth does not count",
            "animals never counted"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for column in _order(list({r["column"] for r in rows}), columns):
        for r in sorted((r for r in rows if r["column"] == column), key=lambda r: r["stride"]):
            lines.append("| " + " | ".join([column, str(r["stride"])] + [f"{r[k]:.1f}" for k in BREAKDOWN]) + " |")
    return "\n".join(lines)
