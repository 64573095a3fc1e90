// Counts per window of a stream job as plain inline SVG bars: one bar per window that has
// ended (its unique count), the newest on the right; a window with a gap in it is marked.

import { MARGIN, niceCeiling, svgElement, ticks } from "./chart.js";
import { formatTimestamp } from "./format.js";

const MIN_WIDTH = 280;
const HEIGHT = 220;
const MAX_BARS = 120; // the newest ones; windows.jsonl has them all
const ZERO_BAR_PX = 2; // an empty window still shows, as a stub on the baseline

/**
 * An <svg> bar chart of ``windows`` (window records of windows.jsonl, in order), or a <p>
 * saying when the first bar will come (``active``: the stream still runs). ``windowS`` is the
 * window length, for that message.
 */
export function renderWindowChart(windows, width, windowS, active = true) {
  if (!windows.length) {
    const note = document.createElement("p");
    note.className = "hint";
    const every = windowS ? ` (every ${windowS} s)` : "";
    note.textContent = active
      ? `No window has ended yet: a bar appears as each window of counts ends${every}.`
      : "The stream ended before its first window of counts.";
    return note;
  }
  const shown = windows.slice(-MAX_BARS);
  const chartWidth = Math.max(MIN_WIDTH, Math.round(width));
  const yMax = niceCeiling(Math.max(1, ...shown.map(uniqueOf)));
  const plotWidth = chartWidth - MARGIN.left - MARGIN.right;
  const slot = plotWidth / shown.length;
  const barWidth = Math.max(1, slot * 0.8);
  const y = (n) => HEIGHT - MARGIN.bottom - (n / yMax) * (HEIGHT - MARGIN.top - MARGIN.bottom);
  const busiest = shown.reduce((best, w) => (uniqueOf(w) > uniqueOf(best) ? w : best), shown[0]);
  const svg = svgElement("svg", {
    viewBox: `0 0 ${chartWidth} ${HEIGHT}`, role: "img", class: "count-chart window-chart",
    "aria-label": `New objects per window over the last ${shown.length} windows: at most ${uniqueOf(busiest)}, `
      + `in the window ending ${formatTimestamp(busiest.to)}.`,
  });
  svg.append(svgElement("title", {}, "New objects per window"));
  drawAxes(svg, { y, yMax, width: chartWidth, shown, slot });
  shown.forEach((record, index) => {
    const unique = uniqueOf(record);
    const top = unique > 0 ? y(unique) : y(0) - ZERO_BAR_PX;
    const gaps = record.gaps || 0;
    const bar = svgElement("rect", {
      class: `window-bar${gaps ? " window-bar-gap" : ""}`,
      x: (MARGIN.left + index * slot + (slot - barWidth) / 2).toFixed(1), y: top.toFixed(1),
      width: barWidth.toFixed(1), height: (y(0) - top).toFixed(1),
      "data-window": record.window, "data-unique": unique,
    });
    bar.append(svgElement("title", {}, describeWindow(record)));
    svg.append(bar);
  });
  return svg;
}

function uniqueOf(record) {
  return typeof record.unique === "number" ? record.unique : 0;
}

/** "Window 4, 12:01:00 to 12:02:00: 3 new (cow 2, sheep 1); gate 2 in, 1 out; pen 2 entered,
 * 1 left, at most 3 in it; 1 gap in the stream": a bar's tooltip. */
export function describeWindow(record) {
  const parts = [`${uniqueOf(record)} new`];
  const classes = Object.entries(record.by_class || {});
  if (classes.length) parts[0] += ` (${classes.map(([name, n]) => `${name} ${n}`).join(", ")})`;
  for (const [name, line] of Object.entries(record.lines || {})) parts.push(`${name} ${line.in} in, ${line.out} out`);
  for (const [name, zone] of Object.entries(record.zones || {})) {
    parts.push(`${name} ${zone.entries} entered, ${zone.exits} left, at most ${zone.max_occupancy} in it`);
  }
  if (record.frames_dropped) parts.push(`${record.frames_dropped} frames dropped`);
  if (record.gaps) parts.push(`${record.gaps} gap${record.gaps === 1 ? "" : "s"} in the stream`);
  return `Window ${record.window}, ${formatTimestamp(record.from)} to ${formatTimestamp(record.to)}: ${parts.join("; ")}`;
}

function drawAxes(svg, { y, yMax, width, shown, slot }) {
  const axes = svgElement("g", { class: "chart-axes", "aria-hidden": "true" });
  for (const value of ticks(yMax, 4, 1)) {
    axes.append(svgElement("line", { class: "chart-grid", x1: MARGIN.left, x2: width - MARGIN.right, y1: y(value), y2: y(value) }));
    axes.append(svgElement("text", { x: MARGIN.left - 8, y: y(value) + 4, "text-anchor": "end" }, String(value)));
  }
  // the end time of a few windows: one label per ~110 px, the newest always labelled
  const every = Math.max(1, Math.ceil(110 / slot));
  for (let index = shown.length - 1; index >= 0; index -= every) {
    const newest = index === shown.length - 1; // flush with the right edge: never cut off there
    const x = MARGIN.left + (newest ? index + 1 : index + 0.5) * slot;
    axes.append(svgElement("text", { x, y: HEIGHT - MARGIN.bottom + 18, "text-anchor": newest ? "end" : "middle" },
      formatTimestamp(shown[index].to)));
  }
  axes.append(svgElement("line", { class: "chart-axis", x1: MARGIN.left, x2: width - MARGIN.right, y1: y(0), y2: y(0) }));
  svg.append(axes);
}
