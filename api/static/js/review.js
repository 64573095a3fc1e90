// Review the count: mark a counted animal "not an animal", "same as #N" or "class is X", undo a
// correction, download the reviewed tracks CSV and COCO. Every change sends the review's ETag as
// If-Match, so a correction made in another tab meanwhile is never overwritten (the API answers
// 412 and this panel reloads the review instead).

import { askForApiKey, currentApiKey, keyHeaders } from "./auth.js";
import { announce, element } from "./dom.js";
import { formatCount } from "./format.js";

let current = { jobId: null, etag: null, review: null };

function byId(id) {
  return document.getElementById(id);
}

/** fetch with the API key; asks for the key again on 401. Returns the Response. */
async function send(path, { method = "GET", json, etag } = {}) {
  for (;;) {
    const headers = { Accept: "application/json", ...keyHeaders() };
    if (json !== undefined) headers["Content-Type"] = "application/json";
    if (etag) headers["If-Match"] = etag;
    const response = await fetch(path, {
      method, headers, cache: "no-store", body: json === undefined ? undefined : JSON.stringify(json),
    });
    if (response.status !== 401) return response;
    await askForApiKey(currentApiKey());
  }
}

async function errorMessage(response) {
  try {
    return (await response.json()).error.message;
  } catch {
    return `The server answered ${response.status}.`;
  }
}

function reviewPath(jobId, rest = "") {
  return `/jobs/${encodeURIComponent(jobId)}/review${rest}`;
}

/** Show the review panel of a completed video job (called once its result is shown). */
export async function renderReview(jobId) {
  const card = byId("review-card");
  if (!card) return;
  current = { jobId, etag: null, review: null };
  wireOnce();
  try {
    await reload();
  } catch {
    current.review = null; // the server cannot be reached: the rest of the page says so
  }
  card.hidden = current.review === null;
}

async function reload(note = "") {
  const jobId = current.jobId;
  const response = await send(reviewPath(jobId));
  if (jobId !== current.jobId) return; // another job was opened meanwhile
  if (!response.ok) {
    current.review = null;
    return;
  }
  current.etag = response.headers.get("ETag");
  current.review = await response.json();
  draw(note);
}

function countText(counts) {
  const classes = Object.entries(counts.by_class).map(([name, n]) => `${formatCount(n)} ${name}`).join(", ");
  return `${formatCount(counts.total_unique)}${classes ? ` (${classes})` : ""}`;
}

function draw(note) {
  const review = current.review;
  byId("review-automatic").textContent = countText(review.automatic);
  byId("review-reviewed").textContent = countText(review.reviewed);
  const classes = byId("review-class");
  classes.replaceChildren(...review.classes.map((name) => element("option", { text: name, attrs: { value: name } })));
  byId("review-message").textContent = note;
  byId("review-corrections").replaceChildren(...review.corrections.map(correctionItem));
}

function correctionItem(correction) {
  const what = correction.action === "merge" ? `#${correction.track} same as #${correction.into}`
    : correction.action === "class" ? `#${correction.track} class is ${correction.class}`
      : `#${correction.track} not an animal`;
  const who = `${correction.by}${correction.admin ? " (admin)" : ""}, ${new Date(correction.at).toLocaleString()}`;
  const item = element("li", { attrs: { "data-testid": "review-correction" } });
  item.append(element("span", { text: `${what} — ${who}` }));  // the list numbers it: n
  if (correction.undone) {
    item.classList.add("undone");
    item.append(element("span", { className: "hint", text: ` (undone by ${correction.undone.by})` }));
  } else {
    const undo = element("button", {
      className: "button button-secondary button-small", text: "Undo",
      attrs: { type: "button", "data-n": String(correction.n), "aria-label": `Undo correction ${correction.n}` },
    });
    undo.addEventListener("click", () => change("DELETE", reviewPath(current.jobId, `/${correction.n}`)));
    item.append(" ", undo);
  }
  return item;
}

async function change(method, path, json) {
  const response = await send(path, { method, json, etag: current.etag });
  if (response.status === 412) {
    await reload("Someone else changed this review meanwhile; it has been reloaded. Repeat your correction if it is still needed.");
    announce(byId("review-message").textContent);
    return;
  }
  if (!response.ok) {
    byId("review-message").textContent = await errorMessage(response);
    announce(byId("review-message").textContent);
    return;
  }
  current.etag = response.headers.get("ETag");
  current.review = await response.json();
  draw(method === "DELETE" ? "Correction undone." : "Correction saved.");
  announce(`Reviewed count: ${countText(current.review.reviewed)}`);
}

function submitCorrection(event) {
  event.preventDefault();
  const action = byId("review-action").value;
  const body = { action, track: Number(byId("review-track").value) };
  if (action === "merge") body.into = Number(byId("review-into").value);
  if (action === "class") body.class = byId("review-class").value;
  change("POST", reviewPath(current.jobId), body);
}

function showActionFields() {
  const action = byId("review-action").value;
  byId("review-into-field").hidden = action !== "merge";
  byId("review-class-field").hidden = action !== "class";
}

async function download(route, filename) {
  const response = await send(reviewPath(current.jobId, route));
  if (!response.ok) {
    byId("review-message").textContent = await errorMessage(response);
    return;
  }
  const url = URL.createObjectURL(await response.blob());
  const link = element("a", { attrs: { href: url, download: `${current.jobId}-${filename}` } });
  document.body.append(link);
  link.click();
  link.remove();
  URL.revokeObjectURL(url);
}

let wired = false;

function wireOnce() {
  if (wired) return;
  wired = true;
  byId("review-form").addEventListener("submit", submitCorrection);
  byId("review-action").addEventListener("change", showActionFields);
  byId("review-download-csv").addEventListener("click", () => download("/exports/tracks.csv", "reviewed-tracks.csv"));
  byId("review-download-coco").addEventListener("click", () => download("/exports/coco", "reviewed-coco.json"));
  showActionFields();
}
