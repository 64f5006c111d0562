// The metric cards: CARD_RENDERERS, one function per card section (keyed by the section's
// id), each drawing the snapshot's figures into the section's .card-body with renderStat().
// The longer parts have their own functions below: what Storage counts (storageView), the
// Quality card's scale (qualityBar), and when the cost figures are from (costsAsOf).

import { append, badge, h, missing, timeAgo } from "./dom.js";
import {
  formatBytes,
  formatCount,
  formatDateTime,
  formatDb,
  formatPct,
  formatRatio,
  formatSsim,
  formatUsd,
  isNum,
  msSsimDb,
  parseTime,
} from "./format.js";
import { isStatic } from "./state.js";
import { urlFor, view } from "./url-state.js";

/**
 * The standard body of a metric card: a big value, an optional unit or context line after it,
 * and optional facts (label → value) below. Values are strings or nodes.
 */
export function renderStat(body, { value, unit = null, facts = [], extra = [] }) {
  body.replaceChildren();
  append(
    body,
    h(
      "p",
      { class: "stat" },
      h("span", { class: "stat-value" }, value ?? missing()),
      unit ? h("span", { class: "stat-unit" }, unit) : null,
    ),
    ...extra,
    facts.length
      ? h(
          "dl",
          { class: "facts" },
          facts.map(([label, v]) => h("div", { class: "fact" }, h("dt", {}, label), h("dd", {}, v ?? missing()))),
        )
      : null,
  );
}

/** A link that opens an experiment's details (and puts it in the URL). */
function experimentLink(id, snap) {
  if (!id) return null;
  const exp = (snap.recent_experiments || []).find((e) => e.id === id);
  return h(
    "p",
    { class: "card-link" },
    h("a", { href: urlFor({ ...view, exp: id }), "data-exp": id, class: "exp-link" }, `Open ${exp?.name || id}`),
  );
}

/** A <progress> towards a target, labelled for screen readers. */
function targetBar(value, max, label, warn = false) {
  if (!isNum(value) || !isNum(max) || max <= 0) return null;
  return h("progress", {
    class: warn ? "bar bar-warn" : "bar",
    max: String(max),
    value: String(Math.max(0, Math.min(value, max))),
    "aria-label": label,
  });
}

function gapLine(value, target, fmt, unitWord) {
  if (!isNum(value) || !isNum(target)) return null;
  if (value >= target) return h("p", { class: "stat-note good" }, "Target reached");
  return h("p", { class: "stat-note" }, `${fmt(target - value)}${unitWord} below target`);
}

/** Facts shown only when something needs attention: silent workers, lost spot instances. */
function poolAlerts(pool) {
  const out = [];
  if (isNum(pool.stale) && pool.stale > 0) out.push(["Stale", formatCount(pool.stale)]);
  if (isNum(pool.spot_interruptions) && pool.spot_interruptions > 0) {
    out.push(["Spot interruptions", formatCount(pool.spot_interruptions)]);
  }
  return out;
}

export const CARD_RENDERERS = {
  "total-experiments": (body, snap) => {
    const s = snap.summary || {};
    renderStat(body, {
      value: formatCount(s.total_experiments),
      unit: "experiments",
      facts: [
        ["Running", formatCount(s.running)],
        ["Last 24 h", formatCount(s.experiments_24h)],
        ["Success rate", isNum(s.success_rate) ? formatRatio(s.success_rate) : null],
      ],
    });
  },

  "best-compression": (body, snap) => {
    const best = snap.summary?.best_compression;
    const target = snap.targets?.compression_pct;
    const bdRate = (best?.metric || snap.targets?.compression_metric) === "bd_rate";
    const how = bdRate
      ? h("p", { class: "stat-note" }, `Bitrate saved at equal quality (BD-rate)${best?.anchor ? ` against ${best.anchor}` : ""}`)
      : null;
    if (!best || !isNum(best.value_pct)) {
      renderStat(body, { value: missing(), unit: `target ${formatPct(target)}`, extra: [h("p", { class: "stat-note" }, "No completed experiment yet."), how] });
      return;
    }
    renderStat(body, {
      value: formatPct(best.value_pct),
      unit: `of ${formatPct(target)} target`,
      extra: [
        targetBar(best.value_pct, target, `Bitrate reduction: ${formatPct(best.value_pct)} of the ${formatPct(target)} target`),
        gapLine(best.value_pct, target, (v) => v.toFixed(1), " points"),
        how,
        experimentLink(best.experiment_id, snap),
      ],
    });
  },

  "best-quality": (body, snap) => {
    const best = snap.summary?.best_quality;
    const targets = snap.targets || {};
    const useSsim = (best?.metric || targets.quality_metric) === "ms_ssim";
    const value = useSsim ? best?.ms_ssim : best?.psnr_db;
    const target = useSsim ? targets.ms_ssim : targets.psnr_db;
    const fmt = useSsim ? formatSsim : formatDb;
    const name = useSsim ? "MS-SSIM" : "PSNR";
    if (!best || !isNum(value)) {
      renderStat(body, { value: missing(), unit: `${name}, target ${fmt(target)}`, extra: [h("p", { class: "stat-note" }, "No completed experiment yet.")] });
      return;
    }
    renderStat(body, {
      value: fmt(value),
      unit: `${name}, target ${fmt(target)}`,
      extra: [
        ...qualityBar(snap, value, target, useSsim),
        gapLine(value, target, useSsim ? (v) => v.toFixed(4) : (v) => `${v.toFixed(2)} dB`, ""),
        experimentLink(best.experiment_id, snap),
      ],
    });
  },

  "monthly-cost": (body, snap) => {
    const s = snap.summary || {};
    const budget = snap.targets?.monthly_budget_usd;
    const over = isNum(s.forecast_month_usd) && isNum(budget) && s.forecast_month_usd > budget;
    document.getElementById("monthly-cost")?.classList.toggle("is-warning", over);
    const forecast = h("p", { class: "stat-note" }, `Forecast ${formatUsd(s.forecast_month_usd)} by month end`);
    const warning = over
      ? h(
          "p",
          { class: "stat-note warn" },
          h("span", { class: "warn-icon", "aria-hidden": "true" }, "▲ "),
          h("strong", {}, `${formatUsd(s.forecast_month_usd - budget)} over budget`),
        )
      : null;
    renderStat(body, {
      value: formatUsd(s.month_to_date_usd),
      unit: `of ${formatUsd(budget)} budget`,
      extra: [
        targetBar(s.month_to_date_usd, budget, `Month to date: ${formatUsd(s.month_to_date_usd)} of the ${formatUsd(budget)} budget`, over),
        forecast,
        warning,
        costsAsOf(snap, isStatic()),
      ],
    });
  },

  orchestrator: (body, snap) => {
    const o = snap.infrastructure?.orchestrator || {};
    const status = o.status || "unknown";
    renderStat(body, {
      value: badge(status),
      facts: [
        ["CPU", isNum(o.cpu_pct) ? formatPct(o.cpu_pct) : null],
        ["Memory", isNum(o.mem_pct) ? formatPct(o.mem_pct) : null],
        ["Last seen", o.last_seen ? timeAgo(o.last_seen) : "never"],
      ],
    });
    body.querySelector(".stat-value").classList.add("stat-badge");
  },

  "training-workers": (body, snap) => {
    const t = snap.infrastructure?.training_workers || {};
    renderStat(body, {
      value: formatCount(t.active),
      unit: "active",
      facts: [
        ["Queue", formatCount(t.queue_depth)],
        ["Spot share", isNum(t.spot_pct) ? formatPct(t.spot_pct) : null],
        ...(isNum(t.gpu_util_pct) ? [["GPU use", formatPct(t.gpu_util_pct)]] : []),
        ...poolAlerts(t),
      ],
    });
  },

  "inference-workers": (body, snap) => {
    const i = snap.infrastructure?.inference_workers || {};
    renderStat(body, {
      value: formatCount(i.active),
      unit: "active",
      facts: [
        ["Queue", formatCount(i.queue_depth)],
        ["FPS", isNum(i.fps) ? i.fps.toFixed(1) : null],
        ...(isNum(i.gpu_util_pct) ? [["GPU use", formatPct(i.gpu_util_pct)]] : []),
        ...poolAlerts(i),
      ],
    });
  },

  storage: (body, snap) => renderStat(body, storageView(snap.infrastructure?.storage || {})),

};

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
  const db = useSsim ? (v) => msSsimDb(Math.min(v, 1 - 1e-12)) : (v) => v;
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
