// What a job's state means to a person: badge text, progress line, headline counts.

import { formatCount, formatDuration, formatPercent } from "./format.js";

const ACTIVE = new Set(["queued", "processing"]);

export function isActive(job) {
  return ACTIVE.has(job.status);
}

/** A stream job: counts a live camera until stopped (kind "stream"). */
export function isStream(job) {
  return job.kind === "stream";
}

/** The word on the badge. A processing job the user cancelled shows "cancelling" until the worker stops. */
export function statusLabel(job) {
  // a stream stopped between two runs stays queued until a worker finalises its files: "stopping" too
  if (isStream(job) && isActive(job) && job.cancel_requested) return "stopping";
  if (isStream(job) && job.status === "processing") return "live";
  if (job.status === "processing" && job.cancel_requested) return "cancelling";
  if (job.status === "completed_with_errors") return "completed with errors";
  return job.status;
}

/** Whether the job has results to show: completed, completed with errors (the good files). */
export function hasResults(job) {
  return job.status === "completed" || job.status === "completed_with_errors";
}

/** "45 % · 12.3 fps · 20 s left", "waiting for a worker", ... */
export function progressText(job) {
  if (isStream(job)) return streamProgressText(job);
  if (job.status === "queued") {
    if (job.error) return `waiting to retry (attempt ${job.attempts} failed)`;
    return "waiting for a worker";
  }
  if (job.status === "processing" && job.kind === "images") {
    const parts = [formatPercent(job.progress)];
    parts.push(`file ${formatCount(Math.min(job.files_done + job.files_failed + 1, job.files_total))} of ${formatCount(job.files_total)}`);
    if (job.files_failed) parts.push(`${formatCount(job.files_failed)} failed`);
    if (job.tiles_total) parts.push(`tile ${formatCount(job.tiles_done)} of ${formatCount(job.tiles_total)}`);
    return parts.join(" · ");
  }
  if (job.status === "processing") {
    const parts = [formatPercent(job.progress)];
    if (job.frames_total) parts.push(`frame ${formatCount(job.frames_done)} of ${formatCount(job.frames_total)}`);
    if (job.fps) parts.push(`${job.fps.toFixed(1)} fps`);
    if (job.eta_seconds !== null && job.eta_seconds !== undefined) parts.push(`${formatDuration(job.eta_seconds)} left`);
    return parts.join(" · ");
  }
  if (job.status === "completed") return "100 %";
  if (job.status === "completed_with_errors") return `100 % · ${formatCount(job.files_failed)} of ${formatCount(job.files_total)} files failed`;
  return "";
}

/** "live for 5 min 2 s · 1,200 frames · 30 dropped", "reconnecting…", "streamed 1 h 2 min". */
function streamProgressText(job) {
  const live = job.live || {};
  const streamed = formatDuration(live.streaming_s || 0);
  if (job.status === "queued" && job.cancel_requested) return "stopping: waiting for a worker to finish its files";
  if (job.status === "queued") return job.error ? `waiting to resume (attempt ${job.attempts} failed)` : "waiting for a worker";
  if (job.status !== "processing") return live.streaming_s ? `streamed ${streamed}` : "";
  if (job.cancel_requested) return "stopping: finishing its files";
  const parts = [live.connected === false ? "reconnecting…" : `live for ${streamed}`];
  if (live.frames_processed) parts.push(`${formatCount(live.frames_processed)} frames`);
  if (live.frames_dropped) parts.push(`${formatCount(live.frames_dropped)} dropped`);
  return parts.join(" · ");
}

/** The peak from stats/counts, which may be a number or {count, frame, time_s, by_class}. */
export function peakCount(peak) {
  if (typeof peak === "number") return peak;
  if (peak && typeof peak.count === "number") return peak.count;
  return null;
}

/** "12 unique · at most 5 at once" for a completed job's list row. */
export function countsSummary(counts) {
  if (!counts) return "";
  if (counts.total_unique === undefined && counts.per_image_sum !== undefined) {  // an images job
    const dedup = counts.deduplicated || {};
    if (dedup.applied) {
      return `${formatCount(dedup.total)} animals, deduplicated · ${formatCount(counts.per_image_sum)} summed over the images`;
    }
    return `${formatCount(counts.per_image_sum)} summed over the images, overlap not removed`;
  }
  const parts = [`${formatCount(counts.total_unique)} unique`];
  const peak = peakCount(counts.peak);
  if (peak !== null) parts.push(`at most ${formatCount(peak)} at once`);
  const classes = Object.entries(counts.by_class || {});
  if (classes.length > 1) parts.push(classes.map(([name, n]) => `${name} ${formatCount(n)}`).join(", "));
  return parts.join(" · ");
}
