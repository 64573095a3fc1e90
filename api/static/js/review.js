// Review the count: mark a counted animal "not an animal", "same as #N" or "class is X" (from the
// panel, or from the animal's card in the gallery), undo a correction, download the reviewed tracks
// CSV and COCO. The headline shows the reviewed count beside the automatic one. Every change sends the review's ETag as
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

/** Another job (or none) is about to be shown: its gallery's cards get no controls until its
 * own review is rendered (an images job or a stream has none). */
export function forgetReview() {
  current = { jobId: null, etag: null, review: null };
}

/** Show the review panel of a completed video job (called once its result is shown). */
export async function renderReview(jobId) {
  const card = byId("review-card");
  if (!card) return;
  current = { jobId, etag: null, review: null };
  showReviewedHeadline(null);
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
  showReviewedHeadline(review);
  document.querySelectorAll("[data-testid=animal-card]").forEach(paintCard);
}

/** Beside the automatic count, the reviewed one: once a correction stands (undone back to the
 * automatic count, it is hidden again). */
function showReviewedHeadline(review) {
  const stat = byId("count-reviewed-stat");
  if (!stat) return;
  const corrected = review !== null && review.corrections.some((correction) => !correction.undone);
  stat.hidden = !corrected;
  if (corrected) byId("count-reviewed").textContent = formatCount(review.reviewed.total_unique);
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
    undo.addEventListener("click", () => change("DELETE", undoPath(correction.n)));
    item.append(" ", undo);
  }
  return item;
}

/** The corrections still standing that name ``trackId`` as the one corrected, newest first. */
function standingCorrectionsOf(trackId) {
  return current.review.corrections.filter((c) => !c.undone && c.track === trackId).reverse();
}

function undoPath(n) {
  return reviewPath(current.jobId, `/${n}`);
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

// --- the gallery's cards ------------------------------------------------------------------------

function option(value, text) {
  return element("option", { text, attrs: { value } });
}

/**
 * Review controls on one gallery card (GalleryGrid's ``decorate`` hook): a correction chosen on
 * the card goes through the same POST (with If-Match) as the panel's, and the card then shows
 * the animal's state after the review (struck out, merged into #N, or its new class).
 */
export function decorateCard(card, item) {
  if (current.jobId === null) return; // not a job with a review
  const id = item.id;
  // shown once the review has loaded: a card never offers a correction the API cannot take
  const form = element("form", { className: "animal-review", attrs: { "data-testid": "card-review", hidden: "" } });
  const action = element("select", { attrs: { "aria-label": `Correct #${id}`, "data-testid": "card-action" } });
  action.append(option("", "Correct…"), option("not_animal", "not an animal"), option("merge", "same as #…"),
    option("class", "class is…"));
  const into = element("input", {
    attrs: { type: "number", min: "0", placeholder: "#", "aria-label": `#${id} is the same animal as #`, "data-testid": "card-into" },
  });
  const classes = element("select", { attrs: { "aria-label": `The class of #${id}`, "data-testid": "card-class" } });
  const apply = element("button", { className: "button button-small", text: "Apply", attrs: { type: "submit", "data-testid": "card-apply" } });
  const state = element("p", { className: "animal-state", attrs: { "data-testid": "card-state", "aria-live": "polite" } });
  const undo = element("button", {
    className: "button button-secondary button-small", text: "Undo",
    attrs: { type: "button", "aria-label": `Undo the last correction of #${id}`, "data-testid": "card-undo" },
  });
  const showFields = () => {
    into.hidden = action.value !== "merge";
    classes.hidden = action.value !== "class";
    apply.hidden = action.value === "";
  };
  action.addEventListener("change", showFields);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const body = cardCorrection(id, action.value, into.value, classes.value);
    if (body) change("POST", reviewPath(current.jobId), body);
  });
  undo.addEventListener("click", () => {
    const [last] = standingCorrectionsOf(id);
    if (last) change("DELETE", undoPath(last.n));
  });
  form.append(action, into, classes, apply, state, undo);
  showFields();
  card.append(form);
  if (current.review) paintCard(card);
}

/** The request body a card's choice makes; null when the choice is incomplete (said on the panel). */
function cardCorrection(track, action, into, className) {
  if (action === "merge" && into === "") {
    byId("review-message").textContent = `Type the number of the animal #${track} is the same as.`;
    return null;
  }
  if (action === "") return null;
  const body = { action, track };
  if (action === "merge") body.into = Number(into);
  if (action === "class") body.class = className;
  return body;
}

/** The card's animal as reviewed: ``data-review`` is counted, not-animal, merged or reclassified. */
function paintCard(card) {
  const id = Number(card.dataset.trackId);
  const fate = current.review.tracks.find((track) => track.id === id);
  const form = card.querySelector("[data-testid=card-review]");
  if (!fate || !form) return;
  form.hidden = false;
  const { state, label } = fateOf(fate);
  card.dataset.review = state;
  form.querySelector("[data-testid=card-state]").textContent = label;
  const classes = form.querySelector("[data-testid=card-class]");
  if (classes.options.length !== current.review.classes.length) {
    classes.replaceChildren(...current.review.classes.map((name) => option(name, name)));
  }
  const action = form.querySelector("[data-testid=card-action]");
  action.disabled = state === "not-animal"; // the API refuses corrections of a removed animal: undo first
  form.querySelector("[data-testid=card-undo]").hidden = standingCorrectionsOf(id).length === 0;
  action.value = "";
  action.dispatchEvent(new Event("change"));
}

function fateOf(fate) {
  if (fate.final_id === null) return { state: "not-animal", label: "Not an animal" };
  if (fate.final_id !== fate.id) return { state: "merged", label: `Same animal as #${fate.final_id}` };
  if (fate.class !== fate.automatic_class) return { state: "reclassified", label: `Class is ${fate.class}` };
  return { state: "counted", label: "" };
}
