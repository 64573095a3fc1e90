// Counting lines and zones drawn on a picture, in the browser, before the job starts: a video's
// first frame before the upload, or a live camera's snapshot (POST /streams/snapshot) before the
// stream starts.
//
// A video's frame is decoded by a <video> on an object URL (nothing is uploaded to see it), a
// snapshot shown by an <img>; either is drawn onto a <canvas> whose own size is the picture's
// (videoWidth x videoHeight, naturalWidth x naturalHeight): the canvas is only scaled for display, so every point kept here is already in the source's pixels, which is what
// the API counts in. A line counts "in" what crosses it from its left to its right, walking from
// its start to its end in image coordinates (ml_engine/counting/lines.py): the arrow shows that side.

import { element } from "./dom.js";

const MIN_LINE_PX = 4; // a drag shorter than this (in source pixels) is a click, not a line
const CLOSE_PX = 12; // a click this close to a zone's first point (in screen pixels) closes it
let panels = 0; // each panel's tool buttons are a radio group of their own

export class DrawingPanel {
  /**
   * ``container``: the empty element the panel is built in (hidden until there is a picture);
   * ``title``: what the pictures are ("the first frame", "the camera's snapshot").
   */
  constructor(container, { title = "Lines and zones on the first frame " } = {}) {
    this.container = container;
    this.title = title;
    this.toolGroup = `drawing-tool-${(panels += 1)}`;
    this.file = null; // the video File, or the snapshot's Blob, shown
    this.name = ""; // what the size line calls it
    this.url = null;
    this.lines = []; // {name, start: [x, y], end: [x, y]} in source pixels
    this.zones = []; // {name, polygon: [[x, y], ...]}
    this.pending = null; // the line being dragged, or the zone's points so far
    this.numbered = 0; // default names stay unique even after removals
    this.build();
  }

  build() {
    const heading = element("p", { className: "drawing-title", text: this.title });
    heading.append(element("span", { className: "optional", text: "(optional)" }));
    this.tools = element("div", { className: "drawing-tools", attrs: { role: "radiogroup", "aria-label": "Draw" } });
    for (const [tool, label] of [["line", "Draw a line (drag)"], ["zone", "Draw a zone (click points, double-click to close)"]]) {
      const radio = element("input", { attrs: { type: "radio", name: this.toolGroup, value: tool, "data-testid": `draw-${tool}` } });
      radio.checked = tool === "line";
      radio.addEventListener("change", () => this.cancelPending());
      const wrap = element("label");
      wrap.append(radio, ` ${label}`);
      this.tools.append(wrap);
    }
    this.canvas = element("canvas", {
      className: "drawing-canvas",
      attrs: { "data-testid": "drawing-canvas", "aria-label": "The picture: drag across it for a line, click points for a zone" },
    });
    this.size = element("p", { className: "hint", attrs: { "data-testid": "drawing-size" } });
    this.list = element("ul", { className: "drawing-list", attrs: { "data-testid": "drawing-list", "aria-label": "Drawn lines and zones" } });
    this.container.append(heading, this.tools, this.canvas, this.size, this.list);
    this.video = element("video", { attrs: { muted: "", playsinline: "", preload: "auto" } });
    this.video.muted = true;
    this.video.addEventListener("loadeddata", () => this.seekToStart());
    this.video.addEventListener("seeked", () => this.showPicture(this.video.videoWidth, this.video.videoHeight));
    this.video.addEventListener("error", () => this.unreadable());
    this.image = element("img", { attrs: { alt: "" } });
    this.image.addEventListener("load", () => this.showPicture(this.image.naturalWidth, this.image.naturalHeight));
    this.image.addEventListener("error", () => this.unreadable());
    this.picture = this.video; // what the canvas draws: the video's frame, or the snapshot
    this.listenForPointer();
    window.addEventListener("resize", () => this.render());
  }

  /** Show ``file``'s first frame (a video File), or hide the panel (null). A new file starts afresh. */
  showVideo(file) {
    if (file === this.file) return;
    if (!this.start(file, this.video, file && file.name)) {
      this.video.removeAttribute("src");
      return;
    }
    this.video.src = this.url;
  }

  /** Show a picture (an image Blob, e.g. a camera's snapshot) called ``name``; null hides the panel. */
  showImage(blob, name) {
    if (!this.start(blob, this.image, name)) {
      this.image.removeAttribute("src");
      return;
    }
    this.image.src = this.url;
  }

  /** Forget the old picture and what was drawn on it; false when there is no new one (hidden). */
  start(file, picture, name) {
    this.file = file;
    this.name = name || "";
    this.picture = picture;
    this.lines = [];
    this.zones = [];
    this.pending = null;
    this.numbered = 0;
    if (this.url) URL.revokeObjectURL(this.url);
    this.url = null;
    this.container.hidden = !file;
    this.container.dataset.state = file ? "loading" : "empty";
    this.renderList();
    if (!file) return false;
    this.url = URL.createObjectURL(file);
    this.size.textContent = `Reading ${this.name}…`;
    return true;
  }

  seekToStart() {
    this.video.currentTime = 0; // "seeked" follows, with frame 0 ready to draw
  }

  showPicture(width, height) {
    this.canvas.width = width;
    this.canvas.height = height;
    this.size.textContent = `${this.name}: ${width} × ${height} pixels. Drawn lines and zones are sent in these pixels.`;
    this.container.dataset.state = "ready";
    this.render();
  }

  unreadable() {
    if (!this.file) return;
    this.container.dataset.state = "unreadable";
    this.size.textContent = this.picture === this.video
      ? "This browser cannot show this video's frames: type the counting line below instead."
      : "This browser cannot show the picture: type the counting line above instead.";
  }

  /** What was drawn, as the API's ``lines`` and ``zones``; or {problem} (names must be unique). */
  shapes() {
    for (const [kind, items] of [["line", this.lines], ["zone", this.zones]]) {
      const names = items.map((item) => item.name.trim());
      const repeated = names.find((name, index) => !name || names.indexOf(name) !== index);
      if (repeated !== undefined) {
        return { problem: repeated ? `Two drawn ${kind}s are both called “${repeated}”: rename one.` : `Name every drawn ${kind}.` };
      }
    }
    return {
      lines: this.lines.map(({ name, start, end }) => ({ name: name.trim(), start, end })),
      zones: this.zones.map(({ name, polygon }) => ({ name: name.trim(), polygon })),
    };
  }

  tool() {
    return this.tools.querySelector("input:checked").value;
  }

  /** A pointer event's place in source pixels (the canvas is scaled for display). */
  sourcePoint(event) {
    const box = this.canvas.getBoundingClientRect();
    const x = ((event.clientX - box.left) * this.canvas.width) / box.width;
    const y = ((event.clientY - box.top) * this.canvas.height) / box.height;
    return [clamp(Math.round(x), 0, this.canvas.width), clamp(Math.round(y), 0, this.canvas.height)];
  }

  listenForPointer() {
    const canvas = this.canvas;
    canvas.addEventListener("pointerdown", (event) => {
      if (this.container.dataset.state !== "ready" || this.tool() !== "line") return;
      canvas.setPointerCapture(event.pointerId);
      const point = this.sourcePoint(event);
      this.pending = { start: point, end: point };
    });
    canvas.addEventListener("pointermove", (event) => {
      if (!this.pending) return;
      if (this.tool() === "line") this.pending.end = this.sourcePoint(event);
      else this.pending.hover = this.sourcePoint(event);
      this.render();
    });
    canvas.addEventListener("pointerup", (event) => {
      if (this.tool() !== "line" || !this.pending) return;
      const { start } = this.pending;
      const end = this.sourcePoint(event);
      this.pending = null;
      if (Math.hypot(end[0] - start[0], end[1] - start[1]) >= MIN_LINE_PX) {
        this.lines.push({ name: this.nextName("line"), start, end });
        this.renderList();
      }
      this.render();
    });
    canvas.addEventListener("click", (event) => {
      if (this.container.dataset.state !== "ready" || this.tool() !== "zone") return;
      this.addZonePoint(event);
    });
    canvas.addEventListener("dblclick", () => {
      if (this.tool() === "zone") this.closeZone();
    });
    canvas.addEventListener("keydown", (event) => {
      if (event.key === "Escape") this.cancelPending();
    });
  }

  addZonePoint(event) {
    const points = this.pending ? this.pending.points : [];
    if (points.length >= 3 && this.nearFirstPoint(event, points[0])) {
      this.closeZone();
      return;
    }
    const point = this.sourcePoint(event);
    const last = points[points.length - 1];
    if (!last || last[0] !== point[0] || last[1] !== point[1]) points.push(point); // a double-click clicks twice
    this.pending = { points, hover: point };
    this.render();
  }

  nearFirstPoint(event, first) {
    const box = this.canvas.getBoundingClientRect();
    const scale = box.width / this.canvas.width;
    const dx = (event.clientX - box.left) - first[0] * scale;
    const dy = (event.clientY - box.top) - first[1] * scale;
    return Math.hypot(dx, dy) <= CLOSE_PX;
  }

  closeZone() {
    const points = this.pending && this.pending.points;
    this.pending = null;
    if (points && points.length >= 3) {
      this.zones.push({ name: this.nextName("zone"), polygon: points });
      this.renderList();
    }
    this.render();
  }

  cancelPending() {
    this.pending = null;
    this.render();
  }

  nextName(kind) {
    this.numbered += 1;
    return `${kind} ${this.numbered}`;
  }

  /** The frame, then the zones, the lines with their "in" arrows, and what is being drawn. */
  render() {
    if (this.container.dataset.state !== "ready") return;
    const context = this.canvas.getContext("2d");
    context.drawImage(this.picture, 0, 0, this.canvas.width, this.canvas.height);
    // lines and labels the same size on screen whatever the frame is scaled to (a phone shrinks it)
    const shown = this.canvas.getBoundingClientRect().width || this.canvas.width;
    const stroke = Math.max(1, (2.5 * this.canvas.width) / shown);
    for (const zone of this.zones) drawZone(context, zone.polygon, zone.name, stroke, true);
    for (const line of this.lines) drawLine(context, line.start, line.end, line.name, stroke);
    const pending = this.pending;
    if (pending && pending.points) {
      drawZone(context, [...pending.points, pending.hover].filter(Boolean), "", stroke, false);
    } else if (pending && (pending.end[0] !== pending.start[0] || pending.end[1] !== pending.start[1])) {
      drawLine(context, pending.start, pending.end, "", stroke);
    }
  }

  renderList() {
    const rows = [];
    for (const [kind, items] of [["line", this.lines], ["zone", this.zones]]) {
      items.forEach((item, index) => rows.push(this.listRow(kind, items, item, index)));
    }
    this.list.replaceChildren(...rows);
    this.list.hidden = rows.length === 0;
  }

  listRow(kind, items, item, index) {
    const row = element("li", { className: "drawing-item", attrs: { "data-testid": `drawn-${kind}` } });
    const name = element("input", {
      attrs: { type: "text", maxlength: "100", "aria-label": `Name of ${kind} ${index + 1}`, "data-testid": `drawn-${kind}-name` },
    });
    name.value = item.name;
    name.addEventListener("input", () => {
      item.name = name.value;
      this.render();
    });
    const where = kind === "line"
      ? `${item.start.join(",")} → ${item.end.join(",")}`
      : `${item.polygon.length} points`;
    row.append(element("span", { className: "drawing-kind", text: kind === "line" ? "Line" : "Zone" }), name,
      element("span", { className: "hint", text: where }));
    if (kind === "line") {
      const flip = element("button", {
        className: "button-link", text: "Flip direction",
        attrs: { type: "button", "aria-label": `Flip the direction of ${item.name}` },
      });
      flip.addEventListener("click", () => {
        [item.start, item.end] = [item.end, item.start];
        this.renderList();
        this.render();
      });
      row.append(flip);
    }
    const remove = element("button", {
      className: "button-link", text: "Remove",
      attrs: { type: "button", "aria-label": `Remove ${item.name}`, "data-testid": `remove-drawn-${kind}` },
    });
    remove.addEventListener("click", () => {
      items.splice(items.indexOf(item), 1);
      this.renderList();
      this.render();
    });
    row.append(remove);
    return row;
  }
}

function clamp(value, low, high) {
  return Math.min(high, Math.max(low, value));
}

function drawLine(context, start, end, name, stroke) {
  context.lineWidth = stroke;
  context.strokeStyle = "#ffd400";
  context.fillStyle = "#ffd400";
  context.beginPath();
  context.moveTo(...start);
  context.lineTo(...end);
  context.stroke();
  // "in" is the right-hand side walking start -> end with y down: the normal (-dy, dx)
  const [dx, dy] = [end[0] - start[0], end[1] - start[1]];
  const length = Math.hypot(dx, dy) || 1;
  const [nx, ny] = [-dy / length, dx / length];
  const arrow = Math.min(length / 2, stroke * 14);
  const [mx, my] = [(start[0] + end[0]) / 2, (start[1] + end[1]) / 2];
  const [tx, ty] = [mx + nx * arrow, my + ny * arrow];
  context.beginPath();
  context.moveTo(mx, my);
  context.lineTo(tx, ty);
  context.stroke();
  const head = stroke * 4;
  context.beginPath();
  context.moveTo(tx + nx * head, ty + ny * head);
  context.lineTo(tx - (dx / length) * head, ty - (dy / length) * head);
  context.lineTo(tx + (dx / length) * head, ty + (dy / length) * head);
  context.closePath();
  context.fill();
  if (name) label(context, `${name}: in`, tx + nx * head * 2, ty + ny * head * 2, stroke);
}

function drawZone(context, points, name, stroke, closed) {
  if (points.length < 2) return;
  context.lineWidth = stroke;
  context.strokeStyle = "#3ad1ff";
  context.fillStyle = "rgba(58, 209, 255, 0.2)";
  context.beginPath();
  context.moveTo(...points[0]);
  for (const point of points.slice(1)) context.lineTo(...point);
  if (closed) {
    context.closePath();
    context.fill();
  }
  context.stroke();
  if (name) label(context, name, points[0][0], points[0][1], stroke);
}

function label(context, text, x, y, stroke) {
  context.font = `${Math.round(stroke * 5.5)}px sans-serif`;
  context.lineWidth = stroke;
  context.strokeStyle = "rgba(0, 0, 0, 0.8)";
  context.strokeText(text, x, y);
  context.fillStyle = "#ffffff";
  context.fillText(text, x, y);
}
