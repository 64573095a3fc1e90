// Every counted animal as a picture, and the annotated video taken to where it was first seen:
// from the gallery's cards, the tracks table's rows and the chart, with the animal's box
// highlighted over the video (scaled to the size the video is shown at).

import { request } from "./api.js";
import { element } from "./dom.js";
import { formatCount, formatTimestamp, formatVideoTime } from "./format.js";

const MAX_CARDS = 500; // a long video can count thousands; gallery.zip has every picture
const SEEK_INTO_FRAME_S = 0.001; // just past the frame's own timestamp, so the frame shown is that one

/** gallery.json of a completed video job: {video: {width, height}, count, items: [...]}. */
export function getGallery(jobId) {
  return request(`/jobs/${encodeURIComponent(jobId)}/gallery`);
}

/** A stream's gallery of window ``window``: the animals first counted in it (count, items). */
export function getWindowGallery(jobId, window) {
  return request(`/jobs/${encodeURIComponent(jobId)}/gallery/windows/${encodeURIComponent(window)}`);
}

/** Seeks a <video> and outlines a box (source pixels) over the picture while it stays paused there. */
export class VideoSeeker {
  constructor(video, highlight) {
    this.video = video;
    this.highlight = highlight;
    this.frameSize = null; // {width, height}: the pixels boxes are given in
    this.box = null;
    video.addEventListener("play", () => this.clearHighlight());
    video.addEventListener("loadedmetadata", () => this.place());
    new ResizeObserver(() => this.place()).observe(video);
  }

  setFrameSize(width, height) {
    this.frameSize = width && height ? { width, height } : null;
    this.clearHighlight();
  }

  /** Pause at ``timeS``; outline ``box`` ([x1, y1, x2, y2] in source pixels) with ``label``. */
  seek(timeS, box = null, label = "") {
    const video = this.video;
    video.pause();
    const go = () => { video.currentTime = timeS + SEEK_INTO_FRAME_S; };
    if (video.readyState >= HTMLMediaElement.HAVE_METADATA) go();
    else video.addEventListener("loadedmetadata", go, { once: true });
    this.box = box;
    this.highlight.dataset.label = label;
    this.highlight.querySelector("span").textContent = label;
    this.place();
    if (video.getBoundingClientRect().bottom < 0 || video.getBoundingClientRect().top > window.innerHeight) {
      video.scrollIntoView({ block: "nearest" });
    }
  }

  clearHighlight() {
    this.box = null;
    this.highlight.hidden = true;
  }

  /** Where the picture lies inside the element (a <video> letterboxes it: object-fit contain). */
  pictureRect() {
    const video = this.video;
    const width = video.videoWidth || (this.frameSize && this.frameSize.width);
    const height = video.videoHeight || (this.frameSize && this.frameSize.height);
    if (!width || !height || !video.clientWidth || !video.clientHeight) return null;
    const scale = Math.min(video.clientWidth / width, video.clientHeight / height);
    return {
      left: video.offsetLeft + (video.clientWidth - width * scale) / 2,
      top: video.offsetTop + (video.clientHeight - height * scale) / 2,
      scale: (scale * width) / ((this.frameSize && this.frameSize.width) || width), // source px -> CSS px
    };
  }

  place() {
    const rect = this.box && this.pictureRect();
    if (!rect) {
      this.highlight.hidden = true;
      return;
    }
    const [x1, y1, x2, y2] = this.box;
    Object.assign(this.highlight.style, {
      left: `${rect.left + x1 * rect.scale}px`,
      top: `${rect.top + y1 * rect.scale}px`,
      width: `${(x2 - x1) * rect.scale}px`,
      height: `${(y2 - y1) * rect.scale}px`,
    });
    this.highlight.hidden = false;
  }
}

/** The grid of counted animals: one card per item of gallery.json, each a button that seeks. */
export class GalleryGrid {
  constructor({ card, grid, note, seeker }) {
    this.card = card;
    this.grid = grid;
    this.note = note;
    this.seeker = seeker;
    this.firstBoxes = new Map(); // final id -> the box of its first sighting
    this.decorate = null; // (card, item) => void: more controls on each card (say, a review's)
    this.open = null; // (item) => void: what choosing a card does instead of seeking (an images job's file)
    this.openLabel = "open its image"; // what ``open`` does, for the card's label
    this.emptyNote = null; // what an empty gallery says instead of the default
  }

  reset() {
    this.firstBoxes.clear();
    this.grid.replaceChildren();
    this.card.hidden = true;
  }

  /** ``cropUrl(item)``: the URL of the item's picture. */
  render(gallery, cropUrl) {
    const items = gallery.items || [];
    this.firstBoxes = new Map(items.map((item) => [item.id, item.first_box]));
    this.note.hidden = items.length > 0 && items.length <= MAX_CARDS && !gallery.truncated;
    this.note.textContent = this.noteOf(gallery, items);
    this.grid.replaceChildren(...items.slice(0, MAX_CARDS).map((item) => this.cardOf(item, cropUrl)));
    this.card.hidden = false;
  }

  noteOf(gallery, items) {
    if (items.length === 0) {
      return this.emptyNote || (this.open ? "No animal was counted." : "No animal was tracked long enough to be counted.");
    }
    // an images job lists at most so many animals (gallery.json's truncated says so): the download has those
    const cut = gallery.truncated ? ` ${gallery.truncated.note}` : "";
    if (items.length <= MAX_CARDS) return cut.trim();
    const all = gallery.truncated ? `the ${formatCount(items.length)} listed` : "them all";
    return `Showing the first ${MAX_CARDS} of ${formatCount(items.length)} animals; the pictures download has ${all}.${cut}`;
  }

  cardOf(item, cropUrl) {
    // an images job's animal is seen in files, a stream's counted at a time of day, a video's between two times
    let seen = `${formatVideoTime(item.first_time_s)} – ${formatVideoTime(item.last_time_s)}`;
    if (item.first_image !== undefined) seen = item.crop_image || item.first_image;
    else if (item.counted_at !== undefined) seen = formatTimestamp(item.counted_at);
    const action = this.open ? this.openLabel : "show its first sighting in the video";
    const card = element("li", { className: "animal-card", attrs: { "data-testid": "animal-card", "data-track-id": String(item.id) } });
    const button = element("button", {
      className: "animal-button",
      attrs: { type: "button", "aria-label": `#${item.id}, ${item.class}, seen ${seen}: ${action}` },
    });
    const picture = element("div", { className: "animal-picture" });
    if (item.crop) {
      picture.append(element("img", {
        attrs: { src: cropUrl(item), alt: "", loading: "lazy", width: String(item.crop_width), height: String(item.crop_height) },
      }));
    }
    button.append(
      picture,
      element("span", { className: "animal-id", text: `#${item.id}` }),
      element("span", { className: "animal-class", text: item.class }),
      element("span", { className: "animal-seen", text: seen }),
    );
    button.addEventListener("click", () => (this.open
      ? this.open(item) : this.showFirstSighting(item.id, item.first_time_s, item.class)));
    card.append(button);
    if (this.decorate) this.decorate(card, item);
    return card;
  }

  showFirstSighting(trackId, timeS, className) {
    this.seeker.seek(timeS, this.firstBoxes.get(trackId) || null, `#${trackId} ${className}`);
  }
}

/** Each row of the tracks table (``tracks`` in the same order) seeks to that track's first sighting. */
export function seekFromTrackRows(body, tracks, grid) {
  [...body.rows].forEach((row, index) => {
    const track = tracks[index];
    if (!track) return;
    row.classList.add("seekable");
    row.tabIndex = 0;
    row.dataset.trackId = String(track.id);
    row.title = `Show #${track.id} in the video at ${formatVideoTime(track.first_time_s)}`;
    const go = () => grid.showFirstSighting(track.id, track.first_time_s, track.class);
    row.addEventListener("click", go);
    row.addEventListener("keydown", (event) => {
      if (event.key === "Enter" || event.key === " ") {
        event.preventDefault();
        go();
      }
    });
  });
}

/** A click on the count chart seeks the video to the time under the pointer (the chart's svg
 * carries its plot's left and right edges and its time span, in its own units). */
export function seekFromChart(box, seeker) {
  box.addEventListener("click", (event) => {
    const svg = box.querySelector("svg");
    if (!svg) return;
    const rect = svg.getBoundingClientRect();
    const viewWidth = svg.viewBox.baseVal.width || rect.width;
    const x = ((event.clientX - rect.left) / rect.width) * viewWidth;
    const left = Number(svg.dataset.plotLeft);
    const right = Number(svg.dataset.plotRight);
    const maxTime = Number(svg.dataset.maxTime);
    if (!(right > left) || !(maxTime > 0)) return;
    const share = Math.min(1, Math.max(0, (x - left) / (right - left)));
    seeker.seek(share * maxTime);
  });
}
