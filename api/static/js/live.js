// A stream job's page: the live player, the counts so far, the stream's health (frames dropped,
// latency, gaps), a bar per window of counts, and, once stopped, its downloads.

import { ApiError, getModel, getSignedLinks, getWindows } from "./api.js";
import { announce, element } from "./dom.js";
import { capitalised, countedNoun, formatCount, formatDuration, formatTimestamp, secondsBetween } from "./format.js";
import { GalleryGrid, getWindowGallery } from "./gallery.js";
import { LivePlayer } from "./player.js";
import { isActive } from "./status.js";
import { renderWindowChart } from "./windowchart.js";

const MAX_WINDOWS = 1440; // a day of 1-minute windows kept in the page; windows.jsonl has them all
const CHART_REDRAW_PX = 40;
const DOWNLOAD_LABELS = { // link name -> label; other links go by their name
  result: "Stats (JSON)",
  windows: "Counts per window (JSON Lines)",
  windows_csv: "Counts per window (CSV)",
};
const NOT_DOWNLOADS = new Set(["self", "live", "files", "crops", "gallery_windows"]); // folders and the job itself
const LINK_RENEW_MARGIN_MS = 60_000; // fetch fresh signed links this long before they expire

export class LiveView {
  constructor() {
    this.byId = (id) => document.getElementById(id);
    this.root = this.byId("live-view");
    this.player = new LivePlayer(this.byId("live-video"), this.byId("live-player-note"));
    new ResizeObserver(() => this.drawChart()).observe(this.byId("window-chart"));
    this.gallery = new GalleryGrid({
      card: this.byId("live-gallery-card"), grid: this.byId("live-gallery-grid"), note: this.byId("live-gallery-note"),
      seeker: null,
    });
    this.gallery.open = (item) => window.open(this.cropUrl(item), "_blank", "noopener");
    this.gallery.openLabel = "open its picture";
    this.gallery.emptyNote = "No new animal was counted in this window.";
    this.reset();
  }

  /** Forget the job shown (another one, or none, is about to be). */
  reset() {
    this.player.stop();
    this.root.hidden = true;
    this.jobId = null;
    this.windows = new Map(); // window number -> record
    this.windowsLoaded = false; // windows.jsonl read once (a page opened mid-stream shows the earlier ones)
    this.refetchedFor = null;
    this.wasConnected = false; // "the camera is back" only after it had been there
    delete this.byId("live-connection").dataset.connected;
    this.windowS = null;
    this.chartWidth = 0;
    this.chartDrawn = null;
    this.active = true;
    this.byId("live-video").hidden = false;
    this.downloadsShown = false;
    this.byId("live-downloads-card").hidden = true;
    this.byId("live-downloads").replaceChildren();
    this.byId("window-chart").replaceChildren();
    this.byId("live-random-weights-banner").hidden = true;
    this.modelKnown = false;
    this.gallery.reset();
    this.galleryWindow = null; // the window whose new animals are shown
    this.signed = null; // signed links (the pictures open without the key), and when they expire
  }

  /** The labels say what the stream counts: the classes it chose, else "animals". */
  showWhatIsCounted(params) {
    const noun = countedNoun(params);
    this.byId("live-total-label").textContent = noun;
    this.byId("live-by-class-caption").textContent = `${capitalised(noun)} per class so far`;
  }

  /** The same warning as a video job's page when the model is a random test one: from the
   * stream's own facts once it has run (``live.model``), else from the service's model card. */
  async showTestModelBanner(live) {
    if (this.modelKnown) return;
    let model = live.model || null;
    if (!model) {
      try {
        const card = await getModel();
        model = { id: card.model_id, random_weights: card.random_weights };
      } catch (error) {
        if (!(error instanceof ApiError)) throw error;
        return; // no worker has loaded the model yet: asked again at the next poll
      }
    }
    this.modelKnown = true;
    this.byId("live-model-id").textContent = model.id || "unknown model";
    this.byId("live-random-weights-banner").hidden = !model.random_weights;
  }

  /**
   * Show ``job`` (kind "stream"), as GET /jobs/{id} has it now. Throws ApiError when something
   * it needs could not be fetched; call again to retry.
   */
  async update(job) {
    if (job.job_id !== this.jobId) {
      this.reset();
      this.jobId = job.job_id;
    }
    this.root.hidden = false;
    const live = job.live || {};
    this.showWhatIsCounted(job.params);
    await this.showTestModelBanner(live);
    this.windowS = (job.stream && job.stream.window_s) || null;
    this.active = isActive(job);
    this.renderCounts(job.counts || {}, live, isActive(job));
    this.renderHealth(live);
    this.followPlayer(job);
    // windows.jsonl once (a page opened mid-stream), and again if polls missed a window (a
    // hidden tab polls slowly); otherwise each poll's last window is the one new line
    const last = live.last_window;
    const missed = last && this.windows.size > 0 && !this.windows.has(last.window - 1)
      && this.refetchedFor !== last.window; // once per window: a number the engine skipped stays skipped
    if (last) this.addWindows([last]);
    const windowsLink = job.links && job.links.windows;
    if (windowsLink && (!this.windowsLoaded || missed)) {
      if (missed) this.refetchedFor = last.window;
      this.addWindows(await getWindows(windowsLink));
      this.windowsLoaded = true;
    }
    this.drawChart();
    if (last) await this.showNewAnimals(job, last);
    if (!isActive(job) && !this.downloadsShown) await this.showDownloads(job);
  }

  /** The newest closed window's new animals, each with its picture (once per window). */
  async showNewAnimals(job, last) {
    if (!job.links || !job.links.gallery_windows || last.window === this.galleryWindow) return;
    const jobId = job.job_id;
    let gallery;
    try {
      gallery = await getWindowGallery(jobId, last.window);
    } catch (error) {
      if (!(error instanceof ApiError) || error.status !== 404) throw error;
      this.galleryWindow = last.window; // a window closed before galleries existed has none: asked once
      return;
    }
    if (gallery.items.some((item) => item.crop)) await this.freshLinks(jobId);
    if (jobId !== this.jobId) return;
    this.galleryWindow = last.window;
    this.byId("live-gallery-card").dataset.window = String(last.window);
    this.byId("live-gallery-hint").textContent = `Each animal first counted in window ${last.window} `
      + `(${formatTimestamp(gallery.from)} to ${formatTimestamp(gallery.to)}), at its best sighting then. `
      + "Choose one to open its picture.";
    this.gallery.render(gallery, (item) => this.cropUrl(item));
  }

  /** Signed links, fetched again shortly before they expire. */
  async freshLinks(jobId) {
    if (this.signed && Date.parse(this.signed.expires_at) - Date.now() > LINK_RENEW_MARGIN_MS) return;
    const signed = await getSignedLinks(jobId);
    if (jobId === this.jobId) this.signed = signed;
  }

  /** The URL of an animal's picture: the signed ``crops`` link with ``<id>.jpg`` appended. */
  cropUrl(item) {
    const signed = new URL(this.signed.links.crops, window.location.origin);
    return `${signed.pathname}${encodeURIComponent(item.crop.split("/").pop())}${signed.search}`;
  }

  followPlayer(job) {
    if (job.status === "queued") { // not yet, or again after a worker died (it resumes)
      if (this.player.source) this.player.stop();
      this.player.showNote("Waiting for a worker to open the stream…");
      return;
    }
    // links.live appears with the first segment; until then the player waits on the same path
    const recorded = job.links && job.links.live;
    const playlist = recorded || `/jobs/${encodeURIComponent(job.job_id)}/live/index.m3u8`;
    this.byId("live-video").hidden = !isActive(job) && !recorded;
    const signedUrl = () => this.signedPlaylist(job.job_id);
    if (isActive(job)) {
      this.player.play(playlist, { live: true, signedUrl });
    } else if (!recorded) { // failed before its first segment, or cancelled while queued
      this.player.stop();
      this.player.showNote("No video was recorded: the stream never delivered a picture.");
    } else if (!this.player.source) {
      // once stopped, the same playlist (now ended) is the recording; a player already on it plays on
      this.player.play(playlist, { live: false, signedUrl });
    }
  }

  /** The playlist's signed link (POST /jobs/{id}/links), for a browser playing HLS itself;
   * null until the first segment exists. */
  async signedPlaylist(jobId) {
    const signed = await getSignedLinks(jobId);
    return signed.links.live || null;
  }

  addWindows(records) {
    for (const record of records) {
      if (record && typeof record.window === "number") this.windows.set(record.window, record);
    }
    while (this.windows.size > MAX_WINDOWS) this.windows.delete(this.windows.keys().next().value);
  }

  /** Redraw when a window was added or the box changed width (not at every poll). */
  drawChart() {
    const box = this.byId("window-chart");
    const width = box.clientWidth;
    if (!width || this.root.hidden) return;
    const newest = this.windows.size ? Math.max(...this.windows.keys()) : -1;
    const drawn = `${this.windows.size}:${newest}:${this.active}`;
    if (drawn === this.chartDrawn && Math.abs(width - this.chartWidth) < CHART_REDRAW_PX) return;
    this.chartDrawn = drawn;
    this.chartWidth = width;
    const ordered = [...this.windows.values()].sort((a, b) => a.window - b.window);
    box.replaceChildren(renderWindowChart(ordered, width, this.windowS, this.active));
  }

  /** ``active``: still streaming (or waiting to); once stopped the numbers are final. */
  renderCounts(counts, live, active) {
    this.byId("live-video-heading").textContent = active ? "Live view" : "Recording";
    this.byId("live-counts-heading").textContent = active ? "Counts so far" : "Counts";
    this.byId("live-total").textContent = formatCount(counts.total_unique ?? 0);
    const connection = this.byId("live-connection");
    const streaming = formatDuration(live.streaming_s || 0);
    const connected = active && live.connected === true;
    if (!active) connection.textContent = "ended";
    else if (live.connected === true) connection.textContent = "connected";
    else if (live.connected === false) connection.textContent = "reconnecting…";
    else connection.textContent = "–";
    if (active && connection.dataset.connected === "true" && live.connected === false) {
      announce("The camera stopped sending; reconnecting.");
    } else if (active && connection.dataset.connected === "false" && connected && this.wasConnected) {
      announce("The camera is back.");
    }
    this.wasConnected = this.wasConnected || connected;
    connection.dataset.connected = String(connected);
    const streamed = active ? `streamed ${streaming} so far` : `streamed ${streaming}`;
    this.byId("live-streaming").textContent = live.streaming_s ? streamed : "not streaming yet";

    const classes = Object.entries(counts.by_class || {}).sort((a, b) => b[1] - a[1]);
    this.byId("live-by-class-body").replaceChildren(...(classes.length
      ? classes.map(([name, n]) => tableRow([name, formatCount(n)], [false, true]))
      : [tableRow(["nothing counted yet", ""], [false, true])]));

    const lines = namedEntries(counts.lines).map(([name, line]) =>
      [name, formatCount(line.in ?? line.in_total), formatCount(line.out ?? line.out_total)]);
    renderTable(this.byId("live-lines"), "Counting lines", [["Line", false], ["In", true], ["Out", true]], lines);
    const zones = namedEntries(counts.zones).map(([name, zone]) =>
      [name, formatCount(zone.occupancy), formatCount(zone.entries), formatCount(zone.exits)]);
    renderTable(this.byId("live-zones"), "Zones",
      [["Zone", false], ["In it now", true], ["Entries", true], ["Exits", true]], zones);
  }

  renderHealth(live) {
    const received = live.frames_received || 0;
    const dropped = live.frames_dropped || 0;
    const frames = this.byId("live-frames");
    frames.textContent = `${formatCount(received)} received · ${formatCount(live.frames_processed || 0)} counted`;
    frames.dataset.received = String(received);
    frames.dataset.processed = String(live.frames_processed || 0);
    const droppedBox = this.byId("live-dropped");
    droppedBox.textContent = dropped
      ? `${formatCount(dropped)} (${(100 * dropped / Math.max(received, 1)).toFixed(1)} %): `
        + "the detector is slower than the camera, so it counts the newest frame and skips the rest"
      : "none";
    droppedBox.dataset.dropped = String(dropped);
    const p50 = live.latency_p50_s;
    const p95 = live.latency_p95_s;
    const latency = this.byId("live-latency");
    const known = typeof p50 === "number" && typeof p95 === "number";
    latency.textContent = known ? `${p50.toFixed(2)} s median, ${p95.toFixed(2)} s p95, from a frame's arrival to its count` : "–";
    latency.dataset.p50S = known ? String(p50) : "";
    latency.dataset.p95S = known ? String(p95) : "";
    const gaps = live.gaps || [];
    const total = live.gaps_total ?? gaps.length;
    const gapsBox = this.byId("live-gaps");
    gapsBox.dataset.gaps = String(total);
    gapsBox.textContent = total ? `${formatCount(total)}; the last: ${describeGap(gaps[gaps.length - 1])}` : "none";
    this.byId("live-reconnects").textContent = formatCount(live.reconnects || 0);
  }

  /** The stopped stream's files, through signed links (they open without the key). */
  async showDownloads(job) {
    const signed = await getSignedLinks(job.job_id);
    if (job.job_id !== this.jobId) return;
    const known = Object.keys(DOWNLOAD_LABELS);
    const rank = (name) => (known.includes(name) ? known.indexOf(name) : known.length);
    const links = Object.entries(signed.links).filter(([name]) => !NOT_DOWNLOADS.has(name))
      .sort(([a], [b]) => rank(a) - rank(b));
    if (signed.links.windows && !this.windowsLoaded) { // the full list, for a page opened after the end
      const records = await getWindows(signed.links.windows);
      this.addWindows(records);
      this.windowsLoaded = true;
      this.drawChart();
    }
    this.byId("live-downloads").replaceChildren(...links.map(([name, path]) => {
      const label = DOWNLOAD_LABELS[name] || name;
      const testId = `stream-download-${name}`;
      const url = new URL(path, window.location.origin);
      url.searchParams.set("download", "true");
      const item = element("li");
      item.append(element("a", { text: label, attrs: { href: url.pathname + url.search, download: "", "data-testid": testId } }));
      return item;
    }));
    this.byId("live-downloads-card").hidden = links.length === 0;
    this.downloadsShown = true;
  }
}

/** [name, value] pairs of a {name: value} object or a [{name, ...}] list. */
function namedEntries(collection) {
  if (Array.isArray(collection)) return collection.map((item) => [item.name, item]);
  return Object.entries(collection || {});
}

/** "stall, 12:01:03 to 12:01:15 (12 s)". */
function describeGap(gap) {
  if (!gap) return "";
  const took = secondsBetween(gap.from, gap.to);
  const length = took !== null ? ` (${formatDuration(took)})` : "";
  return `${gap.reason}, ${formatTimestamp(gap.from)} to ${gap.to ? formatTimestamp(gap.to) : "now"}${length}`;
}

function renderTable(box, caption, columns, rows) {
  box.hidden = rows.length === 0;
  if (!rows.length) return;
  const table = element("table", { className: "by-class" });
  table.append(element("caption", { text: caption }));
  const head = element("tr");
  for (const [title, numeric] of columns) head.append(element("th", { text: title, className: numeric ? "num" : "", attrs: { scope: "col" } }));
  const thead = element("thead");
  thead.append(head);
  const body = element("tbody");
  body.append(...rows.map((cells) => tableRow(cells, columns.map(([, numeric]) => numeric))));
  table.append(thead, body);
  box.replaceChildren(table);
}

function tableRow(cells, numeric) {
  const row = element("tr");
  cells.forEach((text, index) => row.append(element("td", { text, className: numeric[index] ? "num" : "" })));
  return row;
}
