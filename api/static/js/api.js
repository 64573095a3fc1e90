// The API client: JSON calls with the API key and the API's typed errors, and uploads with progress.

import { askForApiKey, currentApiKey, keyHeaders } from "./auth.js";

/** Files at least this big go through POST /uploads + PUT (straight to storage on Azure). */
export const DIRECT_UPLOAD_BYTES = 32 * 1024 * 1024;

/** An error answer from the API ({"error": {"code", "message"}}), or a network failure (status 0). */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
  }
}

const NETWORK_ERROR = "The server cannot be reached. Check that it is running and your connection works.";

function errorFromBody(status, statusText, text) {
  try {
    const body = JSON.parse(text);
    if (body && body.error && body.error.message) {
      return new ApiError(status, body.error.code || `http_${status}`, body.error.message);
    }
  } catch {
    /* not JSON: a proxy's error page, say */
  }
  return new ApiError(status, `http_${status}`, `The server answered ${status} ${statusText || ""}`.trim());
}

/**
 * Call the JSON API. Asks for the API key and retries on 401.
 * Returns the parsed body (null for 204); throws ApiError.
 */
export async function request(path, { method = "GET", json } = {}) {
  const text = await requestText(path, { method, json });
  return text ? JSON.parse(text) : null;
}

/** As ``request``, returning the body as text (JSON Lines downloads). */
export async function requestText(path, { method = "GET", json } = {}) {
  const response = await fetchWithKey(path, { method, json, accept: "application/json" });
  return response.text();
}

/** One fetch with the API key, asking for the key again on 401; throws ApiError on an error answer. */
async function fetchWithKey(path, { method, json, accept }) {
  for (;;) {
    const headers = { Accept: accept, ...keyHeaders() };
    const init = { method, headers, cache: "no-store" };
    if (json !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(json);
    }
    let response;
    try {
      response = await fetch(path, init);
    } catch {
      throw new ApiError(0, "network_error", NETWORK_ERROR);
    }
    if (response.status === 401) {
      await askForApiKey(currentApiKey());
      continue;
    }
    if (!response.ok) throw errorFromBody(response.status, response.statusText, await response.text());
    return response;
  }
}

/**
 * Why no job can run on this service now, or null. /health answers 503 with a ``problem`` while
 * the all-in-one's worker takes no job (its model cannot be loaded, say); it needs no key. A
 * server that cannot be reached is the connection banner's business, not this one's: null.
 */
export async function getServiceProblem() {
  let response;
  try {
    response = await fetch("/health", { cache: "no-store" });
  } catch {
    return null;
  }
  if (response.status !== 503) return null;
  try {
    const body = await response.json();
    return body.problem || "the service reports that it is unhealthy";
  } catch {
    return "the service reports that it is unhealthy";
  }
}

export function listJobs({ status = "", limit = 50 } = {}) {
  const query = new URLSearchParams({ limit: String(limit) });
  if (status) query.set("status", status);
  return request(`/jobs?${query}`);
}

export function getJob(jobId) {
  return request(`/jobs/${encodeURIComponent(jobId)}`);
}

/** Cancels a queued/processing job (returns the job) or deletes a finished one (returns null). */
export function cancelOrDeleteJob(jobId) {
  return request(`/jobs/${encodeURIComponent(jobId)}`, { method: "DELETE" });
}

/**
 * Start a stream job (POST /streams): ``body`` is {source_url, classes?, threshold?, lines?,
 * duration_s?, window_s?}. Returns the new job (JobOut, kind "stream"). The URL goes only in
 * this request's body: the service keeps it as a secret and shows it back redacted (job.source).
 */
export function startStream(body) {
  return request("/streams", { method: "POST", json: body });
}

/**
 * What a camera shows now (POST /streams/snapshot), as a JPEG Blob in the camera's own pixels, to
 * draw lines and zones on before the stream starts. Nothing is stored; the URL goes only in the body.
 */
export async function getStreamSnapshot(sourceUrl) {
  const response = await fetchWithKey("/streams/snapshot", {
    method: "POST", json: { source_url: sourceUrl }, accept: "image/jpeg, application/json",
  });
  return response.blob();
}

/** windows.jsonl of a stream job, parsed: one record per window that has ended. ``url`` is its
 * link (JobOut.links or a signed link). */
export async function getWindows(url) {
  const text = await requestText(url);
  return text.split("\n").filter((line) => line.trim()).map((line) => JSON.parse(line));
}

/** The model card: the class names jobs can choose from. 404 (ApiError) until a worker has loaded the model. */
export function getModel() {
  return request("/model");
}

export function getStats(jobId) {
  return request(`/jobs/${encodeURIComponent(jobId)}/result`);
}

/**
 * Signed URLs of a completed job's downloads ({links: {video, result, ...}, expires_at}): they
 * open without the API key, so <video src> and download links never carry the key itself.
 */
export function getSignedLinks(jobId) {
  return request(`/jobs/${encodeURIComponent(jobId)}/links`, { method: "POST" });
}

/**
 * Upload one video and create its job. ``onProgress(fraction)`` follows the upload.
 * Small files go in one multipart POST /jobs; big ones through POST /uploads, a PUT of the
 * bytes to the URL it hands out, then POST /jobs with the upload id. ``telemetry``: the
 * video's flight telemetry (a drone's .SRT File), sent beside it, or null.
 * Returns the new job (JobOut).
 */
export async function submitVideo(file, params, onProgress, telemetry = null) {
  if (file.size >= DIRECT_UPLOAD_BYTES) return submitViaDirectUpload(file, params, onProgress, telemetry);
  const form = new FormData();
  form.append("params", JSON.stringify(params));
  form.append("file", file, file.name);
  if (telemetry) form.append("telemetry", telemetry, telemetry.name);
  const answer = await sendWithKeyRetry({ method: "POST", url: "/jobs", body: form, onProgress });
  return JSON.parse(answer);
}

/**
 * Upload images (and ZIPs of images) as ONE images job, all in one multipart POST /jobs.
 * Returns the new job (JobOut): its files_failed already counts files that are not images.
 */
export async function submitImages(files, params, onProgress) {
  const total = files.reduce((sum, file) => sum + file.size, 0);
  const zips = files.some((file) => /\.zip$/i.test(file.name));
  if (total >= DIRECT_UPLOAD_BYTES && !zips) return submitImagesViaDirectUploads(files, params, onProgress, total);
  const form = new FormData();
  form.append("params", JSON.stringify(params));
  for (const file of files) form.append("files", file, file.webkitRelativePath || file.name);
  const answer = await sendWithKeyRetry({ method: "POST", url: "/jobs", body: form, onProgress });
  return JSON.parse(answer);
}

/**
 * A big set: each file PUT to its own upload URL (a SAS URL on Azure: the bytes skip the API),
 * then one job of all the upload ids. ``onProgress`` follows the bytes of all files together.
 */
async function submitImagesViaDirectUploads(files, params, onProgress, total) {
  const ids = [];
  let sent = 0;
  for (const file of files) {
    const ticket = await request("/uploads", { method: "POST", json: { filename: file.name } });
    await putUpload(ticket, file, (fraction) => onProgress && onProgress((sent + fraction * file.size) / total));
    sent += file.size;
    ids.push(ticket.upload_id);
  }
  return request("/jobs", { method: "POST", json: { upload_ids: ids, params } });
}

/** results.jsonl of an images job, parsed: one {name, ok, counts, error, kind, ...} per file. */
export async function getResults(jobId) {
  const text = await requestText(`/jobs/${encodeURIComponent(jobId)}/results`);
  return text.split("\n").filter((line) => line.trim()).map((line) => JSON.parse(line));
}

async function submitViaDirectUpload(file, params, onProgress, telemetry) {
  const body = { params };
  if (telemetry) {
    const srtTicket = await request("/uploads", { method: "POST", json: { filename: telemetry.name } });
    await putUpload(srtTicket, telemetry, null);
    body.telemetry_upload_id = srtTicket.upload_id;
  }
  const ticket = await request("/uploads", { method: "POST", json: { filename: file.name } });
  await putUpload(ticket, file, onProgress);
  body.upload_id = ticket.upload_id;
  return request("/jobs", { method: "POST", json: body });
}

/** PUT a file's bytes to the write URL of its upload ticket (POST /uploads). */
async function putUpload(ticket, file, onProgress) {
  const target = new URL(ticket.upload_url, window.location.href);
  const sameOrigin = target.host === window.location.host;
  const headers = { ...(ticket.headers || {}) };
  if (file.type) headers["Content-Type"] = file.type;
  if (sameOrigin) {
    // our own PUT route: the key goes with it; a storage URL (Azure SAS) needs no key of ours
    await sendWithKeyRetry({ method: "PUT", url: target.pathname + target.search, body: file, headers, onProgress });
  } else {
    await send({ method: "PUT", url: target.href, body: file, headers, onProgress });
  }
}

async function sendWithKeyRetry(options) {
  for (;;) {
    try {
      return await send({ ...options, headers: { ...(options.headers || {}), ...keyHeaders() } });
    } catch (error) {
      if (!(error instanceof ApiError) || error.status !== 401) throw error;
      await askForApiKey(currentApiKey());
    }
  }
}

/** One XMLHttpRequest (fetch has no upload progress). Resolves with the body text of a 2xx answer. */
function send({ method, url, body, headers = {}, onProgress }) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open(method, url);
    for (const [name, value] of Object.entries(headers)) xhr.setRequestHeader(name, value);
    if (onProgress) {
      xhr.upload.addEventListener("progress", (event) => {
        if (event.lengthComputable && event.total > 0) onProgress(event.loaded / event.total);
      });
    }
    xhr.addEventListener("load", () => {
      if (xhr.status >= 200 && xhr.status < 300) resolve(xhr.responseText);
      else reject(errorFromBody(xhr.status, xhr.statusText, xhr.responseText));
    });
    xhr.addEventListener("error", () =>
      reject(new ApiError(0, "network_error", "The upload was interrupted: " + NETWORK_ERROR)));
    xhr.addEventListener("abort", () => reject(new ApiError(0, "aborted", "The upload was stopped.")));
    xhr.send(body);
  });
}
