// Formatting of figures for display. Pure functions: no DOM, no globals but the clock passed in.
// Hand-written rather than Intl-based: en-US style figures everywhere, and no ICU start-up cost.

const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/** Digits with thousands separators: `group("1234567.89")` → `1,234,567.89`. */
function group(text) {
  const [whole, frac] = text.split(".");
  const grouped = whole.replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  return frac === undefined ? grouped : `${grouped}.${frac}`;
}

/** True for a finite number (null, undefined, NaN and strings are not). */
export function isNum(v) {
  return typeof v === "number" && Number.isFinite(v);
}

/** `$1,234.56` (and `-$12.00`) */
export function formatUsd(v) {
  if (!isNum(v)) return "—";
  return `${v < 0 ? "-" : ""}$${group(Math.abs(v).toFixed(2))}`;
}

/** `$1,235`: for the donut's centre. */
export function formatUsdWhole(v) {
  if (!isNum(v)) return "—";
  return `${v < 0 ? "-" : ""}$${group(Math.abs(v).toFixed(0))}`;
}

/** `12,345` (a count; fractions are kept as given) */
export function formatCount(v) {
  if (!isNum(v)) return "—";
  return `${v < 0 ? "-" : ""}${group(String(Math.abs(v)))}`;
}

/** `87.3 %`: percentages always carry one decimal. */
export function formatPct(v) {
  return isNum(v) ? `${v.toFixed(1)} %` : "—";
}

/** A 0–1 ratio as a percentage: `0.875` → `87.5 %`. */
export function formatRatio(v) {
  return isNum(v) ? formatPct(v * 100) : "—";
}

/** `34.81 dB` */
export function formatDb(v) {
  return isNum(v) ? `${v.toFixed(2)} dB` : "—";
}

/** `0.9712`: MS-SSIM and other unit-less quality figures. */
export function formatSsim(v) {
  return isNum(v) ? v.toFixed(4) : "—";
}

/** MS-SSIM on a decibel scale, as codecdash.codec_metrics.ms_ssim_db: −10·log10(1 − x); null where undefined (x ≥ 1). */
export function msSsimDb(x) {
  return isNum(x) && x < 1 ? -10 * Math.log10(1 - x) : null;
}

/** `-23.4 %` with an explicit sign: BD-rate, where negative means fewer bits. */
export function formatSignedPct(v) {
  if (!isNum(v)) return "—";
  const s = v.toFixed(1);
  return `${v > 0 ? "+" : ""}${s} %`;
}

/** Bytes in binary units: `512 B`, `1.5 KiB`, `3.52 TiB`. */
export function formatBytes(v) {
  if (!isNum(v)) return "—";
  const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
  let n = Math.abs(v);
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i += 1;
  }
  if (i === 0) return `${v} B`;
  const digits = n >= 100 ? 0 : n >= 10 ? 1 : 2;
  return `${v < 0 ? "-" : ""}${n.toFixed(digits)} ${units[i]}`;
}

const pad2 = (n) => String(n).padStart(2, "0");

/** Durations: `42 s`, `5 min 30 s`, `25 min`, `1 h 02 min`, `2 d 03 h`. */
export function formatDuration(seconds) {
  if (!isNum(seconds) || seconds < 0) return "—";
  const s = Math.round(seconds);
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 10) return s % 60 ? `${m} min ${pad2(s % 60)} s` : `${m} min`;
  if (m < 60) return `${m} min`;
  const h = Math.floor(m / 60);
  if (h < 24) return `${h} h ${pad2(m % 60)} min`;
  const d = Math.floor(h / 24);
  return `${d} d ${pad2(h % 24)} h`;
}

/** Parses an ISO 8601 string; null when absent or invalid. */
export function parseTime(iso) {
  if (!iso) return null;
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? null : d;
}

/** Relative time against `now`: `just now`, `42 s ago`, `3 min ago`, `2 h ago`, `5 d ago`, `in 3 min`. */
export function formatRelative(iso, now = new Date()) {
  const d = iso instanceof Date ? iso : parseTime(iso);
  if (!d) return "—";
  const diff = Math.round((now.getTime() - d.getTime()) / 1000);
  const abs = Math.abs(diff);
  let text;
  if (abs < 10) return "just now";
  if (abs < 60) text = `${abs} s`;
  else if (abs < 3600) text = `${Math.floor(abs / 60)} min`;
  else if (abs < 86400) text = `${Math.floor(abs / 3600)} h`;
  else text = `${Math.floor(abs / 86400)} d`;
  return diff >= 0 ? `${text} ago` : `in ${text}`;
}

/** Local wall-clock time `HH:MM:SS`. */
export function formatClock(date) {
  const d = date instanceof Date ? date : parseTime(date);
  if (!d) return "—";
  return `${pad2(d.getHours())}:${pad2(d.getMinutes())}:${pad2(d.getSeconds())}`;
}

/** Short local date and time: `14 Mar 15:04`. */
export function formatDateTime(date) {
  const d = date instanceof Date ? date : parseTime(date);
  if (!d) return "—";
  return `${d.getDate()} ${MONTHS[d.getMonth()]} ${pad2(d.getHours())}:${pad2(d.getMinutes())}`;
}

/** Turns a snake_case or kebab-case word into a label: `training_workers` → `Training workers`. */
export function humanize(word) {
  const s = String(word ?? "").replace(/[_-]+/g, " ").trim();
  return s ? s[0].toUpperCase() + s.slice(1) : "";
}
