// The upload form: pick or drop videos, set what to count, upload each with its own progress bar;
// or, with "A live camera" chosen, start a stream job from a camera's URL.

import { ApiError, getModel, getStreamSnapshot, startStream, submitImages, submitVideo } from "./api.js";
import { announce, element } from "./dom.js";
import { DrawingPanel } from "./drawing.js";
import { formatBytes, formatPercent } from "./format.js";

export class UploadForm {
  /** ``onJobCreated(job)`` runs after each video has become a job. */
  constructor({ onJobCreated }) {
    this.onJobCreated = onJobCreated;
    this.form = document.getElementById("upload-form");
    this.input = document.getElementById("file-input");
    this.telemetryInput = document.getElementById("telemetry-input");
    this.dropZone = document.getElementById("drop-zone");
    this.selectedList = document.getElementById("selected-files");
    this.uploadList = document.getElementById("upload-list");
    this.formError = document.getElementById("form-error");
    this.submitButton = document.getElementById("submit-button");
    this.selected = []; // Files waiting for "Start counting"
    this.uploading = 0;
    this.mode = "files"; // or "camera"
    this.model = null; // the model card (GET /model) once a worker has loaded the model
    this.drawing = new DrawingPanel(document.getElementById("drawing-panel"));
    this.streamDrawing = null; // built on the first snapshot: until then the page has one canvas
    this.snapshotButton = document.getElementById("snapshot-button");
    this.snapshotStatus = document.getElementById("snapshot-status");
    this.snapshotButton.addEventListener("click", () => this.takeSnapshot());
    this.loadModel();

    document.getElementById("choose-button").addEventListener("click", () => this.input.click());
    this.input.addEventListener("change", () => {
      this.addFiles(this.input.files);
      this.input.value = ""; // choosing the same file again fires "change" again
    });
    const folderInput = document.getElementById("folder-input");
    document.getElementById("folder-button").addEventListener("click", () => folderInput.click());
    folderInput.addEventListener("change", () => {
      // a folder: its images (anything else in it, such as notes, the server lists as failed files)
      this.addFiles([...folderInput.files].filter((file) => !isVideo(file) && !file.name.startsWith(".")));
      folderInput.value = "";
    });
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      if (this.mode === "camera") this.startStream();
      else this.submit();
    });
    for (const radio of this.form.elements.source) {
      radio.addEventListener("change", () => this.setMode(radio.value));
    }
    this.listenForDrops();
    window.addEventListener("beforeunload", (event) => {
      if (this.uploading > 0) event.preventDefault(); // the browser asks "leave the page?"
    });
  }

  listenForDrops() {
    const zone = this.dropZone;
    for (const type of ["dragenter", "dragover"]) {
      zone.addEventListener(type, (event) => {
        event.preventDefault();
        zone.classList.add("dragging");
      });
    }
    zone.addEventListener("dragleave", (event) => {
      if (!zone.contains(event.relatedTarget)) zone.classList.remove("dragging");
    });
    zone.addEventListener("drop", (event) => {
      event.preventDefault();
      zone.classList.remove("dragging");
      if (event.dataTransfer && event.dataTransfer.files.length) this.addFiles(event.dataTransfer.files);
    });
  }

  /** Files (a job per video, one for images) or a camera (a stream job): the fields each needs. */
  setMode(mode) {
    this.mode = mode;
    const camera = mode === "camera";
    document.getElementById("files-source").hidden = camera;
    document.getElementById("camera-source").hidden = !camera;
    document.getElementById("stride-field").hidden = camera; // a stream keeps up by dropping frames
    document.getElementById("stream-timing").hidden = !camera;
    this.showError("");
    this.renderSelection();
  }

  addFiles(files) {
    for (const file of files) this.selected.push(file);
    this.renderSelection();
    if (files.length) {
      this.showError("");
      announce(`${this.selected.length} file${this.selected.length === 1 ? "" : "s"} selected.`);
    }
  }

  renderSelection() {
    this.selectedList.replaceChildren(
      ...this.selected.map((file, index) => {
        const item = element("li", { className: "selected-file", attrs: { "data-testid": "selected-file" } });
        const name = element("span", { className: "file-name", text: file.name });
        const size = element("span", { className: "file-size", text: formatBytes(file.size) });
        const remove = element("button", {
          className: "button-link", text: "Remove",
          attrs: { type: "button", "aria-label": `Remove ${file.name}` },
        });
        remove.addEventListener("click", () => {
          this.selected.splice(index, 1);
          this.renderSelection();
          this.submitButton.focus();
        });
        item.append(name, size, remove);
        return item;
      }),
    );
    // lines and zones are drawn on the first chosen video's frame (the same ones go with each video)
    this.drawing.showVideo(this.mode === "files" ? this.selected.find(isVideo) || null : null);
    if (this.mode === "camera") {
      this.submitButton.textContent = "Start the stream";
      return;
    }
    const videos = this.selected.filter(isVideo).length;
    const images = this.selected.filter((file) => !isVideo(file) && !isTelemetry(file)).length;
    const parts = [];
    if (videos > 1) parts.push(`${videos} videos`);
    if (images > 0 && this.selected.length > 1) parts.push(`${images} image${images === 1 ? "" : "s"} as one job`);
    this.submitButton.textContent = parts.length ? `Start counting (${parts.join(", ")})` : "Start counting";
  }

  /** Learn the model's class names: listed under the field, and a typo is caught before the upload. */
  async loadModel() {
    try {
      this.model = await getModel();
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      return; // 404 until a worker has loaded the model; the server checks the names from then on
    }
    document.getElementById("known-classes-count").textContent = String(this.model.classes.length);
    document.getElementById("known-classes-list").textContent = this.model.classes.join(", ");
    document.getElementById("known-classes").hidden = false;
    document.getElementById("test-model-id").textContent = this.model.model_id;
    document.getElementById("test-model-banner").hidden = !this.model.random_weights;
  }

  async submit() {
    if (!this.model) await this.loadModel();
    const { params, problem, field } = readParams(this.form, this.model);
    if (!problem && this.selected.length === 0) {
      this.showError("Choose at least one video or image first (or drop it on the box above).");
      document.getElementById("choose-button").focus();
      return;
    }
    if (problem) {
      this.showError(problem);
      field.setAttribute("aria-invalid", "true");
      field.focus();
      return;
    }
    const drawn = this.drawing.shapes();
    if (drawn.problem) {
      this.showError(drawn.problem);
      return;
    }
    if (drawn.lines.length) params.lines = [...(params.lines || []), ...drawn.lines];
    if (drawn.zones.length) params.zones = drawn.zones;
    this.showError("");
    const videos = this.selected.filter(isVideo);
    const telemetry = pairTelemetry(videos, [...this.selected.filter(isTelemetry), ...this.telemetryInput.files]);
    if (telemetry.problem) {
      this.showError(telemetry.problem);
      this.telemetryInput.setAttribute("aria-invalid", "true");
      this.telemetryInput.focus();
      return;
    }
    const files = this.selected.splice(0);
    this.telemetryInput.value = "";
    this.renderSelection();
    // videos one at a time: uploads share the same connection, and the server probes each as it
    // lands; every image, folder and ZIP together: one images job
    const images = files.filter((file) => !isVideo(file) && !isTelemetry(file));
    if (images.length) await this.uploadImages(images, params);
    for (const file of videos) await this.upload(file, params, telemetry.byVideo.get(file) || null);
  }

  /**
   * Show what the camera sees now (POST /streams/snapshot) on a drawing panel, in the camera's
   * pixels: lines and zones drawn on it go with the stream. A new snapshot starts the drawing afresh.
   */
  async takeSnapshot() {
    const urlField = this.form.elements.source_url;
    const problem = streamUrlProblem(urlField.value.trim());
    if (problem) {
      this.showError(problem);
      urlField.setAttribute("aria-invalid", "true");
      urlField.focus();
      return;
    }
    urlField.removeAttribute("aria-invalid");
    this.showError("");
    this.snapshotButton.disabled = true;
    this.snapshotStatus.textContent = "Connecting to the camera…";
    try {
      const picture = await getStreamSnapshot(urlField.value.trim());
      if (!this.streamDrawing) {
        this.streamDrawing = new DrawingPanel(document.getElementById("stream-drawing-panel"),
          { title: "Lines and zones on the camera's snapshot " });
      }
      this.streamDrawing.showImage(picture, `Snapshot taken at ${new Date().toLocaleTimeString()}`);
      this.snapshotStatus.textContent = "";
      this.snapshotButton.textContent = "Take another snapshot";
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      // the service's message names the camera without its password
      this.snapshotStatus.textContent = "";
      this.showError(`No snapshot: ${error.message}`);
    } finally {
      this.snapshotButton.disabled = false;
    }
  }

  /** Start a stream job from the camera fields; the job's page opens once it exists. */
  async startStream() {
    if (!this.model) await this.loadModel();
    const { body, problem, field } = readStreamRequest(this.form, this.model);
    if (problem) {
      this.showError(problem);
      field.setAttribute("aria-invalid", "true");
      field.focus();
      return;
    }
    const drawn = this.streamDrawing ? this.streamDrawing.shapes() : { lines: [], zones: [] };
    if (drawn.problem) {
      this.showError(drawn.problem);
      return;
    }
    if (drawn.lines.length) body.lines = [...(body.lines || []), ...drawn.lines];
    if (drawn.zones.length) body.zones = drawn.zones;
    this.showError("");
    this.submitButton.disabled = true;
    try {
      const job = await startStream(body);
      this.form.elements.source_url.value = ""; // the URL (and any password in it) leaves the page
      if (this.streamDrawing) this.streamDrawing.showImage(null); // what was drawn went with the stream
      this.snapshotButton.textContent = "Take snapshot";
      announce("The stream has been started; its page shows it live.");
      this.onJobCreated(job);
      window.location.hash = `#/jobs/${job.job_id}`;
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      // the URL stays in its field, to be corrected; the service's message never repeats it
      this.showError(`The stream was not started: ${error.message}`);
      if (/source|url/i.test(error.code)) {
        const urlField = this.form.elements.source_url;
        urlField.setAttribute("aria-invalid", "true");
        urlField.focus();
      }
    } finally {
      this.submitButton.disabled = false;
    }
  }

  async uploadImages(files, params) {
    const label = files.length === 1 ? files[0].name : `${files.length} files`;
    const item = new UploadItem({ name: label });
    this.uploadList.prepend(item.node);
    this.uploading += 1;
    try {
      const job = await submitImages(files, params, (fraction) => item.progress(fraction));
      item.done(job);
      const failed = job.files_failed ? `; ${job.files_failed} of them are not images and are listed as failed` : "";
      announce(`${label} uploaded as one job of ${job.files_total} files${failed}.`);
      this.onJobCreated(job);
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      item.failed(error);
      announce(`${label} was not accepted: ${error.message}`);
    } finally {
      this.uploading -= 1;
    }
  }

  /** Upload one video as a job, with its flight telemetry (a .SRT File) when there is one. */
  async upload(file, params, telemetry = null) {
    const item = new UploadItem(file);
    this.uploadList.prepend(item.node);
    this.uploading += 1;
    try {
      const job = await submitVideo(file, params, (fraction) => item.progress(fraction), telemetry);
      item.done(job);
      announce(`${file.name} uploaded; counting has been queued.`);
      this.onJobCreated(job);
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      item.failed(error);
      announce(`${file.name} was not accepted: ${error.message}`);
    } finally {
      this.uploading -= 1;
    }
  }

  showError(message) {
    this.formError.textContent = message;
    this.formError.hidden = !message;
    // the caller marks the field of a new problem after this: an earlier one is no longer invalid
    for (const field of this.form.querySelectorAll("[aria-invalid]")) field.removeAttribute("aria-invalid");
  }
}

/** One upload's row: name, progress bar, then the job link or the error. */
class UploadItem {
  constructor(file) {
    this.node = element("li", { className: "upload", attrs: { "data-testid": "upload-item", "data-state": "uploading" } });
    const name = element("span", { className: "file-name", text: file.name });
    this.bar = element("progress", {
      attrs: { max: "1", value: "0", "aria-label": `Upload of ${file.name}`, "data-testid": "upload-progress" },
    });
    this.status = element("span", { className: "upload-status", text: "starting…", attrs: { "data-testid": "upload-status" } });
    this.node.append(name, this.bar, this.status);
  }

  progress(fraction) {
    this.bar.value = fraction;
    this.status.textContent = fraction >= 1 ? "checking the files…" : `uploading ${formatPercent(fraction)}`;
  }

  done(job) {
    this.node.dataset.state = "done";
    this.node.dataset.jobId = job.job_id;
    this.bar.value = 1;
    const link = element("a", { text: "view job", attrs: { href: `#/jobs/${job.job_id}` } });
    this.status.replaceChildren("uploaded · ", link);
  }

  failed(error) {
    this.node.dataset.state = "failed";
    this.bar.hidden = true;
    this.status.textContent = error.message;
    this.status.classList.add("upload-error");
  }
}

/**
 * The job parameters from the form, as the API's params object. ``model`` (the model card, or
 * null while unknown) lets class names be checked here, as the server checks them.
 * Returns {params} or {problem, field} naming the first invalid field.
 */
export function readParams(form, model, { frameStride = true } = {}) {
  const params = {};
  const classes = form.elements.classes.value.split(",").map((name) => name.trim()).filter(Boolean);
  if (classes.length) {
    const known = new Set((model ? model.classes : []).map((name) => name.toLowerCase()));
    const unknown = model ? classes.filter((name) => !known.has(name.toLowerCase())) : [];
    if (unknown.length) {
      const names = unknown.map((name) => `“${name}”`).join(", ");
      return {
        problem: `The model does not know ${names}. It knows: ${model.classes.join(", ")}.`,
        field: form.elements.classes,
      };
    }
    params.classes = classes;
  }

  const thresholdText = form.elements.threshold.value.trim();
  if (thresholdText) {
    const threshold = Number(thresholdText);
    if (!Number.isFinite(threshold) || threshold < 0 || threshold > 1) {
      return { problem: "The confidence threshold must be a number from 0 to 1.", field: form.elements.threshold };
    }
    params.threshold = threshold;
  }

  const lineText = form.elements.line.value.trim();
  if (lineText) {
    const line = parseLine(lineText);
    if (!line) {
      return {
        problem: "The counting line needs four numbers x1,y1,x2,y2 for two different points, e.g. 0,300,768,300.",
        field: form.elements.line,
      };
    }
    params.lines = [line];
  }

  const strideText = frameStride ? form.elements.frame_stride.value.trim() : "";
  if (strideText) {
    const stride = Number(strideText);
    if (!Number.isInteger(stride) || stride < 1 || stride > 1000) {
      return { problem: "“Process every Nth frame” must be a whole number from 1 to 1000.", field: form.elements.frame_stride };
    }
    params.frame_stride = stride;
  }
  return { params };
}

const STREAM_SCHEMES = /^(rtsps?|https?):\/\/[^\s/]/i;

/** What is wrong with a stream URL typed in the form, or null. Never quotes it: it may hold a password. */
function streamUrlProblem(url) {
  if (!url) return "Enter the camera's stream URL: rtsp://, rtsps:// or an http(s):// HLS playlist.";
  if (!STREAM_SCHEMES.test(url)) return "The stream URL must start with rtsp://, rtsps://, http:// or https:// and name a host.";
  return null;
}
const WINDOW_S = [5, 3600]; // StreamOptions.window_s's range (core/jobs.py)

/**
 * The POST /streams body from the form's camera fields and the counting fields.
 * Returns {body} or {problem, field}. Problems never quote the URL: it may hold a password.
 */
export function readStreamRequest(form, model) {
  const urlField = form.elements.source_url;
  const url = urlField.value.trim();
  const urlProblem = streamUrlProblem(url);
  if (urlProblem) return { problem: urlProblem, field: urlField };
  const { params, problem, field } = readParams(form, model, { frameStride: false });
  if (problem) return { problem, field };
  const body = { source_url: url, ...params };

  const durationText = form.elements.duration_min.value.trim();
  if (durationText) {
    const minutes = Number(durationText);
    if (!Number.isFinite(minutes) || minutes <= 0) {
      return { problem: "“Stop after” must be a number of minutes above 0, or empty to run until stopped.",
        field: form.elements.duration_min };
    }
    body.duration_s = minutes * 60;
  }
  const windowText = form.elements.window_s.value.trim();
  if (windowText) {
    const windowS = Number(windowText);
    if (!Number.isFinite(windowS) || windowS < WINDOW_S[0] || windowS > WINDOW_S[1]) {
      return { problem: `“Counts every” must be a number of seconds from ${WINDOW_S[0]} to ${WINDOW_S[1]}.`,
        field: form.elements.window_s };
    }
    body.window_s = windowS;
  }
  return { body };
}

const VIDEO_EXTENSIONS = /\.(mp4|mov|avi|mkv|webm|m4v|mpg|mpeg|ts)$/i;

/** Videos become a job each; everything else (images, ZIPs, TIFFs) goes into one images job. */
export function isVideo(file) {
  return (file.type || "").startsWith("video/") || VIDEO_EXTENSIONS.test(file.name);
}

function parseLine(text) {
  const numbers = text.split(/[\s,]+/).filter(Boolean).map(Number);
  if (numbers.length !== 4 || !numbers.every(Number.isFinite)) return null;
  const [x1, y1, x2, y2] = numbers;
  if (x1 === x2 && y1 === y2) return null;
  return { name: "line", start: [x1, y1], end: [x2, y2] };
}

/** A drone's flight telemetry file (DJI's .SRT), chosen in its own field or among the files. */
export function isTelemetry(file) {
  return /\.srt$/i.test(file.name);
}

/**
 * Which video each .SRT goes with: the video of the same name (DJI_0001.SRT with DJI_0001.MP4),
 * or a lone .SRT with a lone video. Returns {byVideo: Map(video -> .SRT)} or {problem} naming a
 * .SRT that goes with no video, or with one that has another already.
 */
export function pairTelemetry(videos, srts) {
  const byVideo = new Map();
  const stem = (name) => name.replace(/\.[^.]*$/, "").toLowerCase();
  for (const srt of srts) {
    const video = videos.find((candidate) => stem(candidate.name) === stem(srt.name))
      || (videos.length === 1 && srts.length === 1 ? videos[0] : null);
    if (!video) {
      return { problem: videos.length
        ? `${srt.name} goes with none of the chosen videos: give it its video's name (${videos[0].name.replace(/\.[^.]*$/, "")}.SRT).`
        : `${srt.name} is flight telemetry: choose its video too (telemetry goes with a video, not with images).` };
    }
    if (byVideo.has(video)) return { problem: `${video.name} has two telemetry files: keep one.` };
    byVideo.set(video, srt);
  }
  return { byVideo };
}
