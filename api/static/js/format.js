// Turning numbers and timestamps into short text people read at a glance.

const numberFormat = new Intl.NumberFormat();

export function formatCount(value) {
  return typeof value === "number" ? numberFormat.format(value) : "–";
}

export function formatBytes(bytes) {
  if (!Number.isFinite(bytes)) return "";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value >= 10 || unit === 0 ? Math.round(value) : value.toFixed(1)} ${units[unit]}`;
}

export function formatPercent(fraction) {
  return `${Math.floor(Math.max(0, Math.min(1, fraction || 0)) * 100)} %`;
}

/** "45 s", "3 min 5 s", "1 h 2 min". */
export function formatDuration(seconds) {
  if (!Number.isFinite(seconds) || seconds < 0) return "";
  const total = Math.round(seconds);
  if (total < 60) return `${total} s`;
  const minutes = Math.floor(total / 60);
  if (minutes < 60) return `${minutes} min ${total % 60} s`;
  return `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
}

/** Seconds into a video as m:ss.s (or ss.s s for short clips). */
export function formatVideoTime(seconds) {
  if (!Number.isFinite(seconds)) return "";
  if (seconds < 60) return `${seconds.toFixed(1)} s`;
  const minutes = Math.floor(seconds / 60);
  const rest = (seconds - minutes * 60).toFixed(1).padStart(4, "0");
  return `${minutes}:${rest}`;
}

const sameDayFormat = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit" });
const otherDayFormat = new Intl.DateTimeFormat(undefined, {
  year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit",
});

/** A timestamp from the API (ISO 8601) in local time; just the time when it is today. */
export function formatTimestamp(iso) {
  if (!iso) return "";
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return "";
  const today = new Date();
  return date.toDateString() === today.toDateString() ? sameDayFormat.format(date) : otherDayFormat.format(date);
}

/** Seconds between two ISO timestamps, or null. */
export function secondsBetween(startIso, endIso) {
  if (!startIso || !endIso) return null;
  const seconds = (new Date(endIso) - new Date(startIso)) / 1000;
  return Number.isFinite(seconds) ? seconds : null;
}

/** What a job counts, for its labels: the class names it chose ("cow, sheep"), else "animals". */
export function countedNoun(params) {
  const classes = (params && params.classes) || [];
  return classes.length ? classes.join(", ") : "animals";
}

/** ``countedNoun`` at the start of a sentence or a heading. */
export function capitalised(text) {
  return text.charAt(0).toUpperCase() + text.slice(1);
}
