// The parts of the metric cards that need more than one line of app.js: what Storage counts,
// the Quality card's scale, and when the cost figures are from. Each function reads the
// snapshot and returns what renderStat() (app.js) draws, or nodes for its `extra`.

import { h, timeAgo } from "./dom.js";
import { formatBytes, formatCount, formatDateTime, formatDb, formatSsim, isNum, parseTime } from "./format.js";

/**
 * The Storage card, `{value, unit, facts, extra}` for renderStat. Three kinds of store:
 * S3 and/or EFS (AWS: each on its own line, a cut-short S3 listing marked as a lower bound);
 * an artifacts directory (local, `artifacts_dir`); or the database alone (local, nothing else).
 */
export function storageView(st) {
  const items = ["Database items", isNum(st.db_items) ? formatCount(st.db_items) : null];
  if (isNum(st.s3_bytes) || isNum(st.efs_bytes)) {
    const cut = (Array.isArray(st.buckets) ? st.buckets : []).filter((b) => b && b.partial);
    const atLeast = cut.length ? "≥ " : "";
    const facts = [];
    if (isNum(st.s3_bytes)) {
      facts.push(["S3", `${atLeast}${formatBytes(st.s3_bytes)}`]);
      if (isNum(st.objects)) facts.push(["S3 objects", `${atLeast}${formatCount(st.objects)}`]);
    }
    if (isNum(st.efs_bytes)) facts.push(["EFS", formatBytes(st.efs_bytes)]);
    facts.push(items);
    const names = cut.map((b) => b.name).join(", ");
    return {
      value: `${atLeast}${formatBytes(st.bytes)}`,
      unit: isNum(st.s3_bytes) && isNum(st.efs_bytes) ? "S3 + EFS" : isNum(st.s3_bytes) ? "S3" : "EFS",
      facts,
      extra: cut.length
        ? [h("p", { class: "stat-note warn partial" }, `Partial: the listing of ${names} was cut short, so S3 holds at least this much.`)]
        : [],
    };
  }
  const database = ["Database", isNum(st.db_bytes) ? formatBytes(st.db_bytes) : null];
  if (st.artifacts === true || isNum(st.objects) || isNum(st.bytes)) {
    const counted = isNum(st.bytes);
    return {
      value: counted ? formatBytes(st.bytes) : "counting…",
      unit: "artifacts directory",
      facts: [["Files", isNum(st.objects) ? formatCount(st.objects) : "counting…"], database, items],
    };
  }
  // A local store without an artifacts directory: the database is all it keeps.
  return {
    value: isNum(st.db_bytes) ? formatBytes(st.db_bytes) : formatCount(st.db_items),
    unit: isNum(st.db_bytes) ? "database" : "database items",
    facts: isNum(st.db_bytes) ? [items] : [],
  };
}

const ssimDb = (v) => -10 * Math.log10(Math.max(1 - v, 1e-12));

/**
 * The Quality card's bar, on the scale that matters for a logarithmic quantity: the dB between
 * the first result (the first point of `progress.quality`) and the target, so 30 dB of 35 from
 * a start at 29 dB fills a sixth, not 86 %. MS-SSIM is measured in dB too (−10·log10(1 − x)).
 * Returns `[bar, note]`, or `[]` when there is nothing to measure from.
 */
export function qualityBar(snap, value, target, useSsim) {
  const field = useSsim ? "best_ms_ssim" : "best_psnr_db";
  const first = (snap.progress?.quality || []).map((p) => p?.[field]).find(isNum);
  if (!isNum(first) || !isNum(value) || !isNum(target)) return [];
  const db = useSsim ? ssimDb : (v) => v;
  const fmt = useSsim ? formatSsim : formatDb;
  const name = useSsim ? "MS-SSIM" : "PSNR";
  const span = db(target) - db(first);
  if (span <= 0) return []; // the first result already met the target
  const gained = Math.max(0, Math.min(db(value) - db(first), span));
  const pct = Math.round((gained / span) * 100);
  return [
    h("progress", {
      class: "bar",
      max: span.toFixed(3),
      value: gained.toFixed(3),
      "aria-label": `${name}: ${pct} % of the way in dB from the first result, ${fmt(first)}, to the ${fmt(target)} target`,
    }),
    h("p", { class: "stat-note scale-note" }, `Bar: dB gained from the first result (${fmt(first)}) to the target`),
  ];
}

/**
 * "As of …" for the cost figures, when they are not live: Cost Explorer's cached figures, a
 * static export, a costs source that is down (its last figures). The server says which with
 * `costs_live` (true: computed for this snapshot); null when they are live.
 */
export function costsAsOf(snap, isStatic) {
  const at = parseTime(snap.costs_as_of);
  if (!at || (snap.costs_live === true && !isStatic)) return null;
  const iso = at.toISOString();
  return h(
    "p",
    { class: "stat-note as-of" },
    "Costs as of ",
    h("time", { datetime: iso, title: iso }, formatDateTime(at)),
    " (",
    timeAgo(iso),
    ")",
  );
}
