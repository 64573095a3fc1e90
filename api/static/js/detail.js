// One job: its state while it runs; once completed, the annotated video, counts, chart, tracks and downloads.

import { ApiError, cancelOrDeleteJob, getJob, getResults, getSignedLinks, getStats } from "./api.js";
import { renderCountChart } from "./chart.js";
import { announce, element } from "./dom.js";
import {
  capitalised, countedNoun, formatBytes, formatCount, formatDuration, formatTimestamp, formatVideoTime,
} from "./format.js";
import { GalleryGrid, VideoSeeker, getGallery, seekFromChart, seekFromTrackRows } from "./gallery.js";
import { LiveView } from "./live.js";
import { Poller } from "./poller.js";
import { decorateCard, forgetReview, renderReview } from "./review.js";
import { hasResults, isActive, isStream, peakCount, progressText, statusLabel } from "./status.js";

const ACTIVE_DELAY_MS = 1000;
const ERROR_DELAY_MS = 5000;
const MAX_TRACK_ROWS = 500; // a long video can have thousands; the full list is in stats.json
const MAX_FILE_ROWS = 2000; // an images job can have thousands of files; results.jsonl has them all
const H264 = 'video/mp4; codecs="avc1.42E01E"';
const CONFIRM_MS = 5000;
const CHART_REDRAW_PX = 40; // redraw the chart when its box changes width by this much
const LINK_RENEW_MARGIN_MS = 60_000; // fetch fresh signed links this long before they expire

export class JobDetail {
  constructor({ onConnectionProblem, onDeleted }) {
    this.onConnectionProblem = onConnectionProblem;
    this.onDeleted = onDeleted;
    this.jobId = null;
    this.resultShown = false;
    this.poller = new Poller(() => this.refresh());
    this.byId = (id) => document.getElementById(id);
    this.byId("detail-cancel").addEventListener("click", () => this.cancel());
    this.byId("detail-delete").addEventListener("click", (event) => this.confirmThenDelete(event.currentTarget));
    this.byId("result-video").addEventListener("error", () => this.videoProblem());
    this.timeline = null;
    this.chartWidth = 0;
    this.signed = null; // the signed download links of the job shown, and when they expire
    this.linkTimer = null;
    new ResizeObserver(() => this.drawChart()).observe(this.byId("count-chart"));
    this.live = new LiveView();
    this.setUpGallery();
  }

  /** The counted animals' grid, and seeking the video from it, the tracks table and the chart. */
  setUpGallery() {
    this.seeker = new VideoSeeker(this.byId("result-video"), this.byId("video-highlight"));
    this.gallery = new GalleryGrid({
      card: this.byId("gallery-card"), grid: this.byId("gallery-grid"), note: this.byId("gallery-note"),
      seeker: this.seeker,
    });
    this.gallery.decorate = decorateCard; // each animal's card can correct the count
    seekFromChart(this.byId("count-chart"), this.seeker);
  }

  /** gallery.json, when the job has one (a job completed before galleries existed has none). */
  async renderGallery(job, stats) {
    const tracks = stats.tracks || [];
    this.seeker.setFrameSize((stats.video || {}).width, (stats.video || {}).height);
    seekFromTrackRows(this.byId("track-body"), tracks.slice(0, MAX_TRACK_ROWS), this.gallery);
    const images = job.kind === "images";
    // an images job's card opens the file its picture was taken from, annotated
    this.gallery.open = images ? (item) => window.open(this.fileImageUrl(item.crop_image || item.first_image), "_blank", "noopener") : null;
    this.byId("gallery-hint").textContent = images
      ? "Each animal counted, at its best sighting. Choose one to open the image it was taken from."
      : "Each animal counted, at its best sighting. Choose one to see where it was first seen in the video.";
    if (!job.links || !job.links.gallery) return;
    const jobId = this.jobId;
    const gallery = await getGallery(jobId);
    if (jobId !== this.jobId) return;
    this.gallery.render(gallery, (item) => this.cropUrl(item));
  }

  /** The URL of an animal's picture: the signed ``crops`` link with ``<id>.jpg`` appended. */
  cropUrl(item) {
    const signed = new URL(this.signed.links.crops, window.location.origin);
    return `${signed.pathname}${encodeURIComponent(item.crop.split("/").pop())}${signed.search}`;
  }

  show(jobId) {
    this.forgetLinks();
    this.jobId = jobId;
    this.resultShown = false;
    this.timeline = null;
    this.byId("detail-heading").textContent = "Job";
    this.byId("detail-status").textContent = "";
    this.byId("detail-meta").replaceChildren();
    this.byId("detail-error").hidden = true;
    this.byId("detail-progress").hidden = true;
    this.byId("result").hidden = true;
    this.byId("detail-cancel").hidden = true;
    this.byId("detail-delete").hidden = true;
    this.live.reset();
    forgetReview();
    this.gallery.reset();
    this.seeker.clearHighlight();
    this.poller.start();
  }

  hide() {
    this.poller.stop();
    this.jobId = null;
    this.forgetLinks();
    this.live.reset(); // stops the live player and its requests
    const video = this.byId("result-video");
    video.pause();
    video.removeAttribute("src");
    video.load(); // drop the connection the video held open
  }

  async refresh() {
    const jobId = this.jobId;
    let job;
    try {
      job = await getJob(jobId);
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      if (error.status === 404) {
        this.showMissing(jobId);
        return null;
      }
      this.onConnectionProblem(`Could not load the job: ${error.message}`);
      return ERROR_DELAY_MS;
    }
    if (jobId !== this.jobId) return null; // the user moved on while we waited
    this.onConnectionProblem(null);
    this.renderJob(job);
    if (isStream(job)) return this.refreshStream(job);
    const resultsReady = hasResults(job) || (job.kind === "images" && job.links && job.links.results);
    if (resultsReady && !this.resultShown) {
      try {
        const images = job.kind === "images";
        const [stats, signed, files] = await Promise.all(
          [getStats(jobId), getSignedLinks(jobId), images ? getResults(jobId) : Promise.resolve(null)]);
        if (jobId !== this.jobId) return null;
        this.useLinks(signed);
        if (images) {
          this.renderImagesResult(job, stats, files);
          await this.renderGallery(job, stats);
        } else {
          this.renderResult(job, stats);
          await this.renderGallery(job, stats);
        }
        this.resultShown = true;
      } catch (error) {
        if (!(error instanceof ApiError)) throw error;
        this.onConnectionProblem(`Could not load the results: ${error.message}`);
        return ERROR_DELAY_MS;
      }
    }
    return isActive(job) ? ACTIVE_DELAY_MS : null;
  }

  /** A stream job: its live view follows each poll; polling ends once it has stopped and its
   * downloads are shown. */
  async refreshStream(job) {
    try {
      await this.live.update(job);
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      this.onConnectionProblem(`Could not load the stream's files: ${error.message}`);
      return ERROR_DELAY_MS;
    }
    return isActive(job) ? ACTIVE_DELAY_MS : null;
  }

  showMissing(jobId) {
    this.live.reset();
    this.byId("detail-heading").textContent = "Job not found";
    const problem = this.byId("detail-error");
    problem.textContent = `There is no job ${jobId}. It may have been deleted.`;
    problem.hidden = false;
  }

  renderJob(job) {
    const wasActive = this.byId("detail-status").dataset.active === "true";
    this.kind = job.kind;
    const name = (isStream(job) && job.source) || job.filename;
    this.byId("detail-heading").textContent = name || `Job ${job.job_id}`;
    document.title = `${name || "Job"} · CattleCounter`;
    const badge = this.byId("detail-status");
    const label = statusLabel(job);
    badge.textContent = label;
    badge.className = `badge badge-${label.replaceAll(" ", "-")}`;
    badge.dataset.active = String(isActive(job));
    if (wasActive && !isActive(job)) announce(`This job is now ${job.status}.`);

    this.byId("detail-meta").replaceChildren(...metaEntries(job));
    this.renderProgress(job);

    const problem = this.byId("detail-error");
    problem.hidden = !job.error;
    if (job.error) {
      const prefix = job.status === "failed" ? "This job failed" : "The last attempt failed; it will be retried";
      problem.textContent = `${prefix}: ${job.error.message} (${job.error.code})`;
    }
    const cancel = this.byId("detail-cancel");
    cancel.hidden = !isActive(job) || job.cancel_requested;
    cancel.textContent = isStream(job) ? "Stop stream" : "Cancel job";
    this.byId("detail-delete").hidden = isActive(job);
  }

  renderProgress(job) {
    const box = this.byId("detail-progress");
    box.hidden = !isActive(job) || isStream(job); // a stream's page shows its live state instead
    if (box.hidden) return;
    let bar = box.querySelector("progress");
    if (!bar) {
      bar = element("progress", { attrs: { max: "1", "aria-label": "Processing progress" } });
      box.append(bar, element("span", { className: "job-progress-text" }));
    }
    bar.value = job.progress || 0;
    box.querySelector("span").textContent = progressText(job);
  }

  /** Show the video parts of the result view, or the images parts. */
  showResultKind(images) {
    this.byId("images-result").hidden = !images;
    for (const id of ["video-result-grid", "chart-card", "tracks-card"]) this.byId(id).hidden = images;
    if (images) this.byId("gallery-card").hidden = true; // shown by renderGallery once it has loaded
    if (images) this.byId("review-card").hidden = true;
    for (const id of ["download-mot", "download-video"]) this.byId(id).parentElement.hidden = images;
    this.byId("download-results").parentElement.hidden = !images;
  }

  renderImagesResult(job, stats, files) {
    const model = stats.model || {};
    this.byId("random-weights-banner").hidden = !model.random_weights;
    this.byId("model-id").textContent = model.id || "unknown model";
    this.showResultKind(true);
    const counts = stats.counts || {};
    const dedup = counts.deduplicated || {};
    const perImageSum = counts.per_image_sum ?? counts.total ?? 0;
    // the headline is the herd: the deduplicated total whenever there is one, else the sum, labelled as such
    this.byId("images-total").textContent = formatCount(dedup.applied ? dedup.total : perImageSum);
    this.byId("images-total-label").textContent = dedup.applied
      ? "animals, each counted once (deduplicated on the ground)" : "sum over images, overlap not removed";
    this.byId("images-sum-stat").hidden = !dedup.applied;
    this.byId("images-sum").textContent = formatCount(perImageSum);
    this.byId("images-overlap-warning").hidden = Boolean(dedup.applied) || !dedup.footprints_overlap;
    this.byId("images-dedup-note").textContent = dedup.applied
      ? `Deduplicated: an animal seen in several overlapping placed images counts once (${dedup.method || ""}).`
      : `Not deduplicated: ${dedup.reason || "no georeferenced images"}. The per-image sum counts an animal once per image it is in.`;
    const images = stats.images || {};
    this.byId("images-files").textContent = `${formatCount(images.ok ?? 0)} / ${formatCount(images.total ?? 0)}`;
    this.byId("images-files-label").textContent = images.failed
      ? `files counted; ${formatCount(images.failed)} failed (listed below)` : "files counted";
    const deduplicated = dedup.by_class || {};
    const classes = Object.entries(counts.by_class || {}).sort((a, b) => b[1] - a[1]);
    this.byId("images-by-class-body").replaceChildren(
      ...(classes.length
        ? classes.map(([name, n]) => tableRow(
          [name, formatCount(n), dedup.applied ? formatCount(deduplicated[name] || 0) : "–"], [false, true, true]))
        : [tableRow(["nothing counted", "", ""], [false, true, true])]),
    );
    this.renderOverviews(files);
    this.renderFileTable(files);
    this.renderDownloads();
    this.byId("result").hidden = false;
  }

  /** The URL of a file's annotated image: the signed ``files`` link with the name appended. */
  fileImageUrl(name) {
    const signed = new URL(this.signed.links.files, window.location.origin);
    return `${signed.pathname}${encodeURIComponent(name)}${signed.search}`;
  }

  renderOverviews(files) {
    const rasters = files.filter((file) => file.ok && file.kind === "raster");
    this.byId("overview-card").hidden = rasters.length === 0;
    this.byId("overviews").replaceChildren(...rasters.slice(0, 12).map((file) => {
      const figure = element("figure", { attrs: { "data-testid": "overview" } });
      const image = element("img", {
        attrs: { src: this.fileImageUrl(file.name), alt: `${file.name} with its ${file.counts.total} detections drawn`,
          loading: "lazy" },
      });
      figure.append(image, element("figcaption", { className: "hint", text: `${file.name}: ${formatCount(file.counts.total)} counted` }));
      return figure;
    }));
  }

  renderFileTable(files) {
    // failed files first: they are what a person has to act on
    const ordered = [...files.filter((file) => !file.ok), ...files.filter((file) => file.ok)];
    const note = this.byId("files-note");
    note.hidden = ordered.length <= MAX_FILE_ROWS;
    note.textContent = `Showing ${MAX_FILE_ROWS} of ${formatCount(ordered.length)} files; the per-file results download has them all.`;
    this.byId("file-body").replaceChildren(...ordered.slice(0, MAX_FILE_ROWS).map((file) => {
      const row = element("tr", {
        className: file.ok ? "" : "file-failed",
        attrs: { "data-testid": "file-row", "data-state": file.ok ? "ok" : "failed", "data-name": file.name },
      });
      const nameCell = element("td");
      if (file.ok) {
        nameCell.append(element("a", { text: file.name, attrs: { href: this.fileImageUrl(file.name), target: "_blank", rel: "noopener" } }));
      } else {
        nameCell.textContent = file.name;
      }
      const detail = file.ok
        ? Object.entries(file.counts.by_class || {}).map(([name, n]) => `${name} ${n}`).join(", ")
        : `${file.error.message} (${file.error.code})`;
      row.append(
        nameCell,
        element("td", { text: file.ok ? "counted" : "failed" }),
        element("td", { text: file.ok ? formatCount(file.counts.total) : "–", className: "num" }),
        element("td", { text: detail, attrs: { "data-testid": "file-detail" } }),
      );
      return row;
    }));
  }

  renderResult(job, stats) {
    const model = stats.model || {};
    this.byId("random-weights-banner").hidden = !model.random_weights;
    this.byId("model-id").textContent = model.id || "unknown model";
    this.showResultKind(false);
    this.renderVideo(job, stats);
    this.noun = countedNoun(job.params);
    this.renderCounts(stats);
    this.renderTracks(stats.tracks || []);
    renderReview(job.job_id);
    this.renderDownloads();
    this.byId("result").hidden = false;
    this.timeline = stats.timeline;
    this.chartWidth = 0;
    this.drawChart(); // after un-hiding: the chart is drawn at its box's real width
  }

  drawChart() {
    const box = this.byId("count-chart");
    const width = box.clientWidth;
    if (!this.timeline || !width || Math.abs(width - this.chartWidth) < CHART_REDRAW_PX) return;
    this.chartWidth = width;
    box.replaceChildren(renderCountChart(this.timeline, width));
  }

  /** Keep ``signed`` and renew it shortly before it expires (the download links with it). */
  useLinks(signed) {
    this.forgetLinks();
    this.signed = signed;
    const renewIn = Date.parse(signed.expires_at) - Date.now() - LINK_RENEW_MARGIN_MS;
    this.linkTimer = setTimeout(() => this.renewLinks(), Math.max(renewIn, 1000));
  }

  forgetLinks() {
    clearTimeout(this.linkTimer);
    this.linkTimer = null;
    this.signed = null;
  }

  async renewLinks() {
    const jobId = this.jobId;
    let signed;
    try {
      signed = await getSignedLinks(jobId);
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      if (error.status !== 404) this.linkTimer = setTimeout(() => this.renewLinks(), ERROR_DELAY_MS);
      return;
    }
    if (jobId !== this.jobId) return;
    this.useLinks(signed);
    this.renderDownloads();
    const video = this.byId("result-video");
    if (video.error) this.reloadVideo(); // it failed on the old link (expired while paused, say)
  }

  reloadVideo() {
    const video = this.byId("result-video");
    const position = video.currentTime;
    video.src = this.signed.links.video;
    video.addEventListener("loadedmetadata", () => { video.currentTime = position; }, { once: true });
  }

  renderVideo(job, stats) {
    const video = this.byId("result-video");
    const note = this.byId("video-note");
    const info = stats.video || {};
    video.width = info.width || 640;
    video.height = info.height || 360;
    video.src = this.signed.links.video;
    if (!video.canPlayType(H264)) {
      note.textContent = "This browser cannot play H.264 video. Download the MP4 below to watch it in a video player.";
      note.hidden = false;
    } else {
      note.hidden = true;
    }
  }

  videoProblem() {
    if (!this.jobId || !this.byId("result-video").getAttribute("src")) return;
    if (this.signed && Date.parse(this.signed.expires_at) <= Date.now()) {
      this.renewLinks(); // the link expired: play on from a fresh one
      return;
    }
    const note = this.byId("video-note");
    note.textContent = "The video could not be played here. Download the MP4 below to watch it in a video player.";
    note.hidden = false;
  }

  renderCounts(stats) {
    const counts = stats.counts || {};
    this.byId("count-total").textContent = formatCount(counts.total_unique);
    this.byId("count-total-label").textContent = this.noun; // what was counted, not "objects"
    this.byId("by-class-caption").textContent = `${capitalised(this.noun)} per class`;
    this.byId("chart-heading").textContent = `${capitalised(this.noun)} in view over time`;
    const peak = peakCount(counts.peak);
    this.byId("count-peak").textContent = peak === null ? "–" : formatCount(peak);
    const peakTime = counts.peak && counts.peak.time_s;
    this.byId("count-peak-label").textContent =
      typeof peakTime === "number" ? `most in view at once (at ${formatVideoTime(peakTime)})` : "most in view at once";

    const rows = Object.entries(counts.by_class || {}).sort((a, b) => b[1] - a[1]);
    this.byId("by-class-body").replaceChildren(
      ...(rows.length
        ? rows.map(([name, n]) => tableRow([name, formatCount(n)], [false, true]))
        : [tableRow(["nothing counted", ""], [false, true])]),
    );
    const lines = stats.lines || [];
    this.renderCountTable("line-counts", "Counting lines", [["Line", false], ["In", true], ["Out", true]],
      lines.map((line) => [line.name, formatCount(line.in_total), formatCount(line.out_total)]));
    const zones = stats.zones || [];
    this.renderCountTable(
      "zone-counts", "Zones",
      [["Zone", false], ["Most at once", true], ["Average", true], [`${capitalised(this.noun)} seen in it`, true]],
      zones.map((zone) => [
        zone.name, formatCount(zone.max_total), zone.mean_total.toFixed(1),
        formatCount(Object.values(zone.unique).reduce((sum, n) => sum + n, 0)),
      ]),
    );
  }

  /** A small table of per-line or per-zone counts; hidden when the job had none. */
  renderCountTable(boxId, caption, columns, rows) {
    const box = this.byId(boxId);
    box.hidden = rows.length === 0;
    if (!rows.length) return;
    const numeric = columns.map(([, isNumber]) => isNumber);
    const table = element("table", { className: "by-class" });
    table.append(element("caption", { text: caption }));
    const head = element("tr");
    for (const [title, isNumber] of columns) {
      head.append(element("th", { text: title, className: isNumber ? "num" : "", attrs: { scope: "col" } }));
    }
    const thead = element("thead");
    thead.append(head);
    const body = element("tbody");
    body.append(...rows.map((cells) => tableRow(cells, numeric)));
    table.append(thead, body);
    box.replaceChildren(table);
  }

  renderTracks(tracks) {
    const shown = tracks.slice(0, MAX_TRACK_ROWS);
    const note = this.byId("tracks-note");
    note.hidden = tracks.length > 0 && tracks.length <= MAX_TRACK_ROWS;
    note.textContent = tracks.length === 0
      ? "Nothing was tracked long enough to be counted."
      : `Showing the first ${MAX_TRACK_ROWS} of ${formatCount(tracks.length)} tracks; the stats JSON has them all.`;
    this.byId("track-body").replaceChildren(
      ...shown.map((track) =>
        tableRow(
          [
            `#${track.id}`, track.class,
            formatVideoTime(track.first_time_s), formatVideoTime(track.last_time_s),
            formatCount(track.frames_seen),
            typeof track.mean_confidence === "number" ? track.mean_confidence.toFixed(2) : "",
          ],
          [true, false, true, true, true, true],
        ),
      ),
    );
  }

  renderDownloads() {
    const links = this.signed.links;
    const byButton = {
      "download-stats": links.result,
      "download-detections": links.detections,
      "download-coco": links.coco,
      "download-mot": links.mot,
      "download-video": links.video,
      "download-results": links.results,
      "download-geojson": links.geojson,
      "download-tracks-csv": links.tracks_csv,
      "download-timeline-csv": links.timeline_csv,
      "download-lines-csv": links.lines_csv,
      "download-results-csv": links.results_csv,
      "download-gallery-zip": links.gallery_zip,
    };
    this.byId("download-gallery-zip").parentElement.hidden = !links.gallery_zip;
    this.byId("download-geojson").parentElement.hidden = !links.geojson;
    // a job completed before the CSV exports existed has none: no dead links
    for (const id of ["download-tracks-csv", "download-timeline-csv", "download-lines-csv", "download-results-csv"]) {
      this.byId(id).parentElement.hidden = !byButton[id];
    }
    for (const [id, signedUrl] of Object.entries(byButton)) {
      if (!signedUrl) continue; // not an output of this kind of job
      const url = new URL(signedUrl, window.location.origin);
      url.searchParams.set("download", "true");
      this.byId(id).href = url.pathname + url.search;
    }
  }

  async cancel() {
    const stream = this.kind === "stream";
    try {
      await cancelOrDeleteJob(this.jobId);
      announce(stream ? "Stopping the stream: its counts and video stay downloadable." : "Cancelling this job.");
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      announce(`Could not cancel: ${error.message}`);
    }
    this.poller.start(); // the job may have gone final; make sure its new state is fetched
  }

  async confirmThenDelete(button) {
    if (button.dataset.confirming !== "true") {
      button.dataset.confirming = "true";
      button.textContent = "Confirm delete";
      announce("Press again to delete this job and its files.");
      window.setTimeout(() => {
        button.dataset.confirming = "false";
        button.textContent = "Delete job";
      }, CONFIRM_MS);
      return;
    }
    button.dataset.confirming = "false";
    button.textContent = "Delete job";
    try {
      await cancelOrDeleteJob(this.jobId);
      announce("Job deleted.");
      this.onDeleted();
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      announce(`Could not delete: ${error.message}`);
    }
  }
}

function metaEntries(job) {
  if (isStream(job)) return streamMetaEntries(job);
  const entries = [
    ["Job id", job.job_id],
    [job.kind === "images" ? "Files" : "File", job.kind === "images"
      ? `${formatCount(job.files_total)} files (${formatBytes(job.size_bytes)})${/ files$/.test(job.filename) ? "" : ` from ${job.filename}`}`
      : `${job.filename} (${formatBytes(job.size_bytes)})`],
    ["Created", formatTimestamp(job.created_at)],
  ];
  if (job.started_at) entries.push(["Started", formatTimestamp(job.started_at)]);
  if (job.finished_at) entries.push(["Finished", formatTimestamp(job.finished_at)]);
  if (job.started_at && job.finished_at) {
    entries.push(["Took", formatDuration((new Date(job.finished_at) - new Date(job.started_at)) / 1000)]);
  }
  if (job.attempts > 1) entries.push(["Attempts", String(job.attempts)]);
  entries.push(["Settings", paramsText(job.params || {})]);
  return entries.flatMap(([term, value]) => [element("dt", { text: term }), element("dd", { text: value })]);
}

function streamMetaEntries(job) {
  const params = job.params || {};
  const stream = job.stream || {};
  const entries = [
    ["Job id", job.job_id],
    ["Camera", job.source || "–"], // the URL without its credentials: the service never shows them
    ["Created", formatTimestamp(job.created_at)],
  ];
  if (job.started_at) entries.push(["Started", formatTimestamp(job.started_at)]);
  if (job.finished_at) entries.push(["Stopped", formatTimestamp(job.finished_at)]);
  const runs = [];
  if (typeof stream.duration_s === "number") runs.push(`for ${formatDuration(stream.duration_s)}`);
  if (stream.end_at) runs.push(`until ${formatTimestamp(stream.end_at)}`);
  entries.push(["Runs", runs.length ? runs.join(", or ") : "until stopped"]);
  if (typeof stream.window_s === "number") entries.push(["Window", `${formatDuration(stream.window_s)} per window of counts`]);
  if (job.attempts > 1) entries.push(["Attempts", String(job.attempts)]);
  entries.push(["Settings", paramsText(params)]);
  return entries.flatMap(([term, value]) => [element("dt", { text: term }), element("dd", { text: value })]);
}

function paramsText(params) {
  const parts = [];
  parts.push(params.classes && params.classes.length ? `classes ${params.classes.join(", ")}` : "all classes");
  if (params.threshold !== null && params.threshold !== undefined) parts.push(`threshold ${params.threshold}`);
  if (params.frame_stride > 1) parts.push(`every ${params.frame_stride}th frame`);
  if (params.tiling) parts.push(params.tiling === "off" ? "no tiling" : `tiling ${params.tiling}`);
  if (params.tracker) parts.push(`tracker ${params.tracker}`);
  if (params.stitching === false) parts.push("no stitching");
  for (const line of params.lines || []) parts.push(`line ${[...line.start, ...line.end].join(",")}`);
  for (const zone of params.zones || []) parts.push(`zone “${zone.name}”`);
  return parts.join(" · ");
}

function tableRow(cells, numeric) {
  const row = element("tr");
  cells.forEach((text, index) => row.append(element("td", { text, className: numeric[index] ? "num" : "" })));
  return row;
}
