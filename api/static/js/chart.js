// Count over time as plain inline SVG: no library, works offline, scales with its container.

import { formatVideoTime } from "./format.js";

const SVG = "http://www.w3.org/2000/svg";
const DEFAULT_WIDTH = 720;
const MIN_WIDTH = 280;
const MIN_HEIGHT = 200;
const MAX_HEIGHT = 300;
export const MARGIN = { top: 12, right: 16, bottom: 34, left: 44 };
const MAX_POINTS = 600; // long videos are bucketed down to this many points (keeping each bucket's max)
const MAX_CLASS_LINES = 6;
const CLASS_COLOURS = ["#d9480f", "#1c7ed6", "#7048e8", "#0ca678", "#e8590c", "#c2255c"];

export function svgElement(tag, attrs = {}, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, String(value));
  if (text !== undefined) node.textContent = text;
  return node;
}

/**
 * An <svg> chart of ``timeline`` ([{time_s, count, by_class}]): the total in view per frame,
 * plus one line per class when there are several. Returns a <p> when there is nothing to draw.
 * ``width`` is the container's width in CSS pixels: drawing at that width keeps labels readable
 * on a phone instead of shrinking a wide drawing.
 */
export function renderCountChart(timeline, width = DEFAULT_WIDTH) {
  const chartWidth = Math.max(MIN_WIDTH, Math.round(width));
  const chartHeight = Math.round(Math.min(MAX_HEIGHT, Math.max(MIN_HEIGHT, chartWidth * 0.3)));
  if (!Array.isArray(timeline) || timeline.length === 0) {
    const note = document.createElement("p");
    note.className = "hint";
    note.textContent = "No frames were processed, so there is nothing to chart.";
    return note;
  }
  const points = downsample(timeline, MAX_POINTS);
  const classes = classNames(points);
  const maxTime = Math.max(points[points.length - 1].time_s, 0.001);
  const maxCount = Math.max(1, ...points.map((p) => p.count));
  const yMax = niceCeiling(maxCount);
  const x = (t) => MARGIN.left + (t / maxTime) * (chartWidth - MARGIN.left - MARGIN.right);
  const y = (n) => chartHeight - MARGIN.bottom - (n / yMax) * (chartHeight - MARGIN.top - MARGIN.bottom);

  const peak = points.reduce((best, p) => (p.count > best.count ? p : best), points[0]);
  const svg = svgElement("svg", {
    viewBox: `0 0 ${chartWidth} ${chartHeight}`, role: "img", class: "count-chart",
    "aria-label": `Objects in view over ${formatVideoTime(maxTime)}: at most ${peak.count}, at ${formatVideoTime(peak.time_s)}.`,
  });
  // where the plot lies and the time it spans, for a click to become a time (gallery.js seekFromChart)
  Object.assign(svg.dataset, { plotLeft: MARGIN.left, plotRight: chartWidth - MARGIN.right, maxTime });
  svg.append(svgElement("title", {}, "Objects in view over time"));
  drawAxes(svg, { x, y, maxTime, yMax, width: chartWidth, height: chartHeight });

  const total = points.map((p) => `${x(p.time_s).toFixed(1)},${y(p.count).toFixed(1)}`);
  const baseline = y(0).toFixed(1);
  svg.append(svgElement("path", {
    class: "chart-area",
    d: `M${x(points[0].time_s).toFixed(1)},${baseline}L${total.join("L")}L${x(points[points.length - 1].time_s).toFixed(1)},${baseline}Z`,
  }));
  if (classes.length > 1) {
    classes.slice(0, MAX_CLASS_LINES).forEach((name, index) => {
      const line = points.map((p) => `${x(p.time_s).toFixed(1)},${y((p.by_class || {})[name] || 0).toFixed(1)}`);
      svg.append(svgElement("path", { class: "chart-class-line", stroke: CLASS_COLOURS[index], d: `M${line.join("L")}` }));
    });
  }
  svg.append(svgElement("path", { class: "chart-line", d: `M${total.join("L")}` }));

  const figure = document.createElement("figure");
  figure.className = "chart-figure";
  figure.append(svg, legend(classes));
  return figure;
}

function drawAxes(svg, { x, y, maxTime, yMax, width, height }) {
  const axes = svgElement("g", { class: "chart-axes", "aria-hidden": "true" });
  for (const value of ticks(yMax, 4, 1)) { // counts are whole numbers
    axes.append(svgElement("line", { class: "chart-grid", x1: MARGIN.left, x2: width - MARGIN.right, y1: y(value), y2: y(value) }));
    axes.append(svgElement("text", { x: MARGIN.left - 8, y: y(value) + 4, "text-anchor": "end" }, String(value)));
  }
  for (const value of ticks(maxTime, Math.max(2, Math.floor(width / 110)))) { // a label per ~110 px
    axes.append(svgElement("text", { x: x(value), y: height - MARGIN.bottom + 18, "text-anchor": "middle" }, formatVideoTime(value)));
  }
  axes.append(svgElement("line", { class: "chart-axis", x1: MARGIN.left, x2: width - MARGIN.right, y1: y(0), y2: y(0) }));
  svg.append(axes);
}

function legend(classes) {
  const list = document.createElement("ul");
  list.className = "chart-legend";
  const entries = [["all classes", null], ...(classes.length > 1 ? classes.slice(0, MAX_CLASS_LINES).map((c, i) => [c, CLASS_COLOURS[i]]) : [])];
  for (const [name, colour] of entries) {
    const item = document.createElement("li");
    const swatch = document.createElement("span");
    swatch.className = colour ? "swatch" : "swatch swatch-total";
    if (colour) swatch.style.background = colour;
    item.append(swatch, name);
    list.append(item);
  }
  return list;
}

/** At most ``limit`` points; each bucket keeps its busiest frame so peaks survive. */
export function downsample(timeline, limit) {
  if (timeline.length <= limit) return timeline;
  const size = timeline.length / limit;
  const result = [];
  for (let bucket = 0; bucket < limit; bucket += 1) {
    const slice = timeline.slice(Math.floor(bucket * size), Math.floor((bucket + 1) * size));
    if (slice.length) result.push(slice.reduce((best, p) => (p.count > best.count ? p : best), slice[0]));
  }
  return result;
}

function classNames(points) {
  const totals = new Map();
  for (const point of points) {
    for (const [name, n] of Object.entries(point.by_class || {})) totals.set(name, (totals.get(name) || 0) + n);
  }
  return [...totals.entries()].sort((a, b) => b[1] - a[1]).map(([name]) => name);
}

/** 1, 2, 5, 10, 20, 50... at or above ``value``. */
export function niceCeiling(value) {
  const magnitude = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 5, 10]) if (step * magnitude >= value) return step * magnitude;
  return 10 * magnitude;
}

/** Evenly spaced round tick values from 0 to ``max``, at least ``minStep`` apart. */
export function ticks(max, count, minStep = 0) {
  const raw = Math.max(max / count, minStep);
  const magnitude = 10 ** Math.floor(Math.log10(raw || 1));
  const step = [1, 2, 5, 10].map((s) => s * magnitude).find((s) => s >= raw) || raw;
  const values = [];
  for (let value = 0; value <= max + 1e-9; value += step) values.push(Number(value.toPrecision(6)));
  return values;
}
