// The job list: newest first, refreshed every ~1.5 s while a job is active and every 10 s otherwise.

import { ApiError, cancelOrDeleteJob, listJobs } from "./api.js";
import { announce, element } from "./dom.js";
import { formatBytes, formatDuration, formatTimestamp, secondsBetween } from "./format.js";
import { Poller } from "./poller.js";
import { countsSummary, hasResults, isActive, isStream, progressText, statusLabel } from "./status.js";

const ACTIVE_DELAY_MS = 1500;
const IDLE_DELAY_MS = 10000;
const ERROR_DELAY_MS = 5000;
const PAGE_SIZE = 50;
const MAX_LIMIT = 200; // the API's largest page
const CONFIRM_MS = 5000; // how long "Delete" waits for its confirming second click

export class JobList {
  constructor({ onConnectionProblem }) {
    this.list = document.getElementById("job-list");
    this.empty = document.getElementById("jobs-empty");
    this.more = document.getElementById("more-button");
    this.filter = document.getElementById("status-filter");
    this.rows = new Map(); // job id -> <li>
    this.lastStatus = new Map(); // job id -> status seen on the previous refresh
    this.limit = PAGE_SIZE;
    this.onConnectionProblem = onConnectionProblem;
    this.poller = new Poller(() => this.refresh());
    this.filter.addEventListener("change", () => {
      this.limit = PAGE_SIZE;
      this.poller.now();
    });
    document.getElementById("refresh-button").addEventListener("click", () => this.poller.now());
    this.more.addEventListener("click", () => {
      this.limit = Math.min(this.limit + PAGE_SIZE, MAX_LIMIT);
      this.poller.now();
    });
  }

  start() {
    this.poller.start();
  }

  stop() {
    this.poller.stop();
  }

  /** Refresh now, e.g. right after a job was submitted. */
  refreshNow() {
    this.poller.now();
  }

  async refresh() {
    let page;
    try {
      page = await listJobs({ status: this.filter.value, limit: this.limit });
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      this.onConnectionProblem(`Could not load the job list: ${error.message}`);
      return ERROR_DELAY_MS;
    }
    this.onConnectionProblem(null);
    this.render(page.jobs);
    this.more.hidden = !page.next_cursor || this.limit >= MAX_LIMIT;
    return page.jobs.some(isActive) ? ACTIVE_DELAY_MS : IDLE_DELAY_MS;
  }

  render(jobs) {
    this.announceChanges(jobs);
    const wanted = new Set(jobs.map((job) => job.job_id));
    for (const [id, row] of this.rows) {
      if (!wanted.has(id)) {
        row.remove();
        this.rows.delete(id);
      }
    }
    // keep existing rows where they are (moving a row would drop keyboard focus); insert new ones
    let cursor = this.list.firstElementChild;
    for (const job of jobs) {
      let row = this.rows.get(job.job_id);
      if (!row) {
        row = this.createRow(job);
        this.rows.set(job.job_id, row);
      }
      updateRow(row, job);
      if (row === cursor) cursor = cursor.nextElementSibling;
      else this.list.insertBefore(row, cursor);
    }
    this.empty.hidden = jobs.length > 0;
    this.empty.textContent = this.filter.value
      ? `No ${this.filter.value} jobs.`
      : "No jobs yet. Upload a video above to start.";
  }

  announceChanges(jobs) {
    for (const job of jobs) {
      const before = this.lastStatus.get(job.job_id);
      if (before && before !== job.status && !isActive(job)) {
        announce(`${jobName(job)}: ${job.status}${job.error ? ` — ${job.error.message}` : ""}`);
      }
      this.lastStatus.set(job.job_id, job.status);
    }
  }

  createRow(job) {
    const row = element("li", { className: "job", attrs: { "data-testid": "job-row", "data-job-id": job.job_id } });
    const head = element("div", { className: "job-head" });
    const name = element("a", { className: "job-name", attrs: { href: `#/jobs/${job.job_id}`, "data-testid": "job-open" } });
    const badge = element("span", { className: "badge", attrs: { "data-testid": "job-status" } });
    head.append(name, badge);

    const progressLine = element("div", { className: "job-progress" });
    const bar = element("progress", { attrs: { max: "1", "data-testid": "job-progress" } });
    const progressLabel = element("span", { className: "job-progress-text", attrs: { "data-testid": "job-progress-text" } });
    progressLine.append(bar, progressLabel);

    const meta = element("p", { className: "job-meta", attrs: { "data-testid": "job-meta" } });
    const counts = element("p", { className: "job-counts", attrs: { "data-testid": "job-counts" } });
    const error = element("p", { className: "job-error", attrs: { "data-testid": "job-error" } });

    const actions = element("div", { className: "job-actions" });
    const cancel = element("button", {
      className: "button button-secondary button-small", text: "Cancel",
      attrs: { type: "button", "data-testid": "job-cancel" },
    });
    const remove = element("button", {
      className: "button button-danger button-small", text: "Delete",
      attrs: { type: "button", "data-testid": "job-delete" },
    });
    actions.append(cancel, remove);
    cancel.addEventListener("click", () => this.cancel(row));
    remove.addEventListener("click", () => this.confirmThenDelete(row, remove));

    row.append(head, progressLine, meta, counts, error, actions);
    return row;
  }

  async cancel(row) {
    const id = row.dataset.jobId;
    try {
      const job = await cancelOrDeleteJob(id);
      if (job) updateRow(row, job);
      if (row.dataset.kind === "stream") announce("Stopping the stream: what it counted stays downloadable.");
      else announce(job && job.status === "cancelled" ? "Job cancelled." : "Cancelling: the worker stops at its next batch.");
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      announce(`Could not cancel: ${error.message}`);
      showRowError(row, `Could not cancel: ${error.message}`);
    }
    this.poller.now();
  }

  async confirmThenDelete(row, button) {
    if (button.dataset.confirming !== "true") {
      button.dataset.confirming = "true";
      button.textContent = "Confirm delete";
      announce("Press again to delete this job and its files.");
      window.setTimeout(() => resetDeleteButton(button), CONFIRM_MS);
      return;
    }
    resetDeleteButton(button);
    const id = row.dataset.jobId;
    try {
      await cancelOrDeleteJob(id);
      this.rows.delete(id);
      row.remove();
      announce("Job deleted.");
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      showRowError(row, `Could not delete: ${error.message}`);
    }
    this.poller.now();
  }
}

function resetDeleteButton(button) {
  button.dataset.confirming = "false";
  button.textContent = "Delete";
}

function showRowError(row, message) {
  const error = row.querySelector("[data-testid=job-error]");
  error.textContent = message;
  error.hidden = false;
}

/** What a row calls a job: its file, or a stream's camera (its URL without credentials). */
function jobName(job) {
  return (isStream(job) && job.source) || job.filename || job.job_id;
}

function updateRow(row, job) {
  row.dataset.status = job.status;
  row.dataset.kind = job.kind;
  const name = row.querySelector("[data-testid=job-open]");
  name.textContent = jobName(job);
  name.title = `Job ${job.job_id}`;

  const badge = row.querySelector("[data-testid=job-status]");
  const label = statusLabel(job);
  badge.textContent = label;
  badge.className = `badge badge-${label.replaceAll(" ", "-")}`;

  const bar = row.querySelector("[data-testid=job-progress]");
  const progressLine = bar.parentElement;
  progressLine.hidden = !(isActive(job) || hasResults(job));
  bar.hidden = isStream(job); // a stream has no end to make progress towards
  if (job.status === "processing" && !job.frames_total && !job.progress) bar.removeAttribute("value"); // indeterminate
  else bar.value = hasResults(job) ? 1 : job.progress || 0;
  bar.setAttribute("aria-label", `Progress of ${jobName(job)}`);
  row.querySelector("[data-testid=job-progress-text]").textContent = progressText(job);

  row.querySelector("[data-testid=job-meta]").textContent = metaText(job);

  const counts = row.querySelector("[data-testid=job-counts]");
  const liveCounts = isStream(job) && job.status === "processing" && job.counts; // counts so far
  counts.textContent = hasResults(job) || liveCounts ? countsSummary(job.counts) : "";
  counts.hidden = !counts.textContent;

  const error = row.querySelector("[data-testid=job-error]");
  error.textContent = job.error ? `${job.status === "failed" ? "Failed" : "Last attempt failed"}: ${job.error.message}` : "";
  error.hidden = !job.error;

  const cancel = row.querySelector("[data-testid=job-cancel]");
  cancel.hidden = !isActive(job) || job.cancel_requested;
  cancel.textContent = isStream(job) ? "Stop" : "Cancel";
  row.querySelector("[data-testid=job-delete]").hidden = isActive(job);
}

function metaText(job) {
  const parts = [`created ${formatTimestamp(job.created_at)}`];
  if (job.finished_at) {
    const took = secondsBetween(job.started_at || job.created_at, job.finished_at);
    parts.push(`finished ${formatTimestamp(job.finished_at)}${took !== null ? ` (${formatDuration(took)})` : ""}`);
  }
  if (job.size_bytes) parts.push(formatBytes(job.size_bytes));
  if (job.attempts > 1) parts.push(`attempt ${job.attempts}`);
  return parts.join(" · ");
}
