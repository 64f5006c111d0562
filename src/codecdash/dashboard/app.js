// codecdash dashboard: loads the snapshot, renders the sections, and keeps them live.
//
// Data flow: api/v1/dashboard (or ./dashboard.json in a static export) → render(snapshot) →
// CARD_RENDERERS (one function per card section) and CHARTS (one spec per chart section).
// Live updates come from the api/v1/events stream; without one, the page polls every
// refresh_seconds. See docs/customizing.md to add a card or a chart.

import {
  ApiError,
  eventsUrl,
  fetchExperiment,
  fetchSnapshot,
  fetchStaticSnapshot,
  getToken,
  setToken,
  staticSnapshotUrl,
} from "./api.js";
import { initAlerts, refreshAlerts } from "./alerts.js";
import { costsAsOf, qualityBar, storageView } from "./cards.js";
import { renderDonut, renderProgressChart, rethemeCharts } from "./charts.js";
import { initCurves, onMetricsEvent } from "./curves.js";
import { closeDetails, initDetails, openId, showExperiment } from "./details.js";
import { append, badge, h, missing, refreshTimes, renderInto, setChildren, setHidden, timeAgo } from "./dom.js";
import {
  formatClock,
  formatCount,
  formatDb,
  formatPct,
  formatRatio,
  formatSsim,
  formatUsd,
  isNum,
} from "./format.js";
import { followDetails, initRateDistortion, renderRateDistortion } from "./rd.js";
import { initTable, refreshTable, shownExperiments, urlFor, view, writeUrl } from "./table.js";

const DEFAULT_REFRESH_SECONDS = 30;
const THEME_KEY = "codecdash-theme";

/** Everything the page knows; one object so the flow stays easy to follow. */
const state = {
  snapshot: null,
  etag: null,
  mode: staticSnapshotUrl() ? "static" : "api", // "static": a static export's dashboard.json
  fetchOk: null, // did the newest snapshot request succeed? null before the first
  lastSuccess: null, // Date of the newest successful request (200 or 304)
  refreshSeconds: DEFAULT_REFRESH_SECONDS,
  stream: null, // the EventSource while one exists
  streamOpened: false, // has the current stream ever opened?
  streamRetryAt: 0,
  pollTimer: 0,
  needsToken: false,
  inlineOnly: false, // the snapshot so far is the one in the page, not yet one fetched
  missedWhileHidden: false, // stream events that came while the tab was hidden
};

// ---------------------------------------------------------------------------------------------
// Card renderers: one per section id. Each gets the section's .card-body and the snapshot.
// ---------------------------------------------------------------------------------------------

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
        costsAsOf(snap, state.mode === "static"),
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

  "cost-breakdown": (body, snap) => {
    renderDonut(body.querySelector(".donut-figure"), body.querySelector(".donut-legend"), snap.cost_breakdown);
  },
};

/**
 * Progress charts: one spec per chart section (drawn by charts.js renderProgressChart).
 * `series(snap)` picks the points, the field to plot, the target line and the formatting.
 */
export const CHARTS = [
  {
    id: "compression-progress",
    title: "Compression progress",
    empty: "The best-so-far line starts with the first completed experiment that reports a bitrate reduction.",
    series: (snap) => ({
      points: snap.progress?.compression,
      field: "best_pct",
      column: snap.targets?.compression_metric === "bd_rate" ? "Best bitrate saving (BD-rate)" : "Best bitrate reduction",
      target: snap.targets?.compression_pct,
      format: formatPct,
      axis: (v) => `${v} %`,
    }),
  },
  {
    id: "quality-progress",
    title: "Quality progress",
    empty: "The best-so-far line starts with the first completed experiment that reports its quality.",
    series: (snap) =>
      snap.targets?.quality_metric === "ms_ssim"
        ? {
            points: snap.progress?.quality,
            field: "best_ms_ssim",
            column: "Best MS-SSIM",
            target: snap.targets?.ms_ssim,
            format: formatSsim,
            axis: (v) => v.toFixed(3),
          }
        : {
            points: snap.progress?.quality,
            field: "best_psnr_db",
            column: "Best PSNR",
            target: snap.targets?.psnr_db,
            format: formatDb,
            axis: (v) => `${v} dB`,
          },
  },
];

// Which sections each data source feeds (sources[].sections, or guessed from its name).
const SOURCE_SECTIONS = {
  experiments: ["total-experiments", "best-compression", "best-quality", "recent-experiments", "compression-progress", "quality-progress"],
  orchestrator: ["orchestrator"],
  training_workers: ["training-workers"],
  inference_workers: ["inference-workers"],
  storage: ["storage"],
  costs: ["monthly-cost", "cost-breakdown"],
};
const NAME_HINTS = [
  ["experiment", ["experiments"]],
  ["orchestrat", ["orchestrator"]],
  ["training", ["training_workers"]],
  ["inference", ["inference_workers"]],
  ["heartbeat", ["orchestrator", "training_workers", "inference_workers"]],
  ["worker", ["training_workers", "inference_workers"]],
  ["queue", ["training_workers", "inference_workers"]],
  ["storage", ["storage"]],
  ["s3", ["storage"]],
  ["efs", ["storage"]],
  ["cost", ["costs"]],
  ["billing", ["costs"]],
];

/** The snapshot sections (keys of SOURCE_SECTIONS) that a `sources[]` row feeds. */
export function sourceSections(source) {
  if (Array.isArray(source.sections)) return source.sections.filter((k) => k in SOURCE_SECTIONS);
  const name = String(source.name || "").toLowerCase().replace(/[\s-]+/g, "_");
  const exact = Object.keys(SOURCE_SECTIONS).filter((k) => name.includes(k));
  if (exact.length) return exact;
  return [...new Set(NAME_HINTS.filter(([hint]) => name.includes(hint)).flatMap(([, keys]) => keys))];
}

function renderSourceErrors(snap) {
  const failing = new Map(); // section id → [source]
  const unplaced = [];
  for (const src of Array.isArray(snap.sources) ? snap.sources : []) {
    if (!src || src.ok !== false) continue;
    const keys = sourceSections(src);
    if (!keys.length) unplaced.push(src);
    for (const key of keys) for (const id of SOURCE_SECTIONS[key]) failing.set(id, [...(failing.get(id) || []), src]);
  }
  for (const section of document.querySelectorAll("main section[id]")) {
    const sources = failing.get(section.id) || [];
    if (section.classList.contains("has-source-error") !== sources.length > 0) section.classList.toggle("has-source-error");
    let note = section.querySelector(":scope > .source-error");
    if (!sources.length) {
      note?.remove();
      continue;
    }
    if (!note) {
      note = h("p", { class: "source-error" });
      section.querySelector("h2").after(note);
    }
    setChildren(
      note,
      ...sources.map((src, i) =>
        h("span", { "data-source": src.name || "" }, i ? " " : "", `Source unavailable: ${src.error || "no answer"}`, src.name ? ` (${src.name})` : ""),
      ),
    );
  }
  const alerts = document.getElementById("source-alerts");
  setChildren(
    alerts,
    ...unplaced.map((src) => h("p", { class: "notice notice-warn" }, `Source unavailable: ${src.error || "no answer"}${src.name ? ` (${src.name})` : ""}`)),
  );
  setHidden(alerts, unplaced.length === 0);
}

/** Renders a whole snapshot. Each section is independent: one failing renderer spares the rest. */
export function render(snap) {
  const summary = snap.summary || {};
  setHidden(document.getElementById("demo-banner"), !snap.demo);
  setHidden(document.getElementById("empty-state"), summary.total_experiments !== 0);
  for (const [id, renderer] of Object.entries(CARD_RENDERERS)) {
    const body = document.getElementById(id)?.querySelector(".card-body");
    if (!body) continue;
    // The renderer fills a detached copy; the page changes only where the figures did.
    renderInto(body, (draft) => {
      try {
        renderer(draft, snap);
      } catch (err) {
        draft.replaceChildren(h("p", { class: "notice notice-error" }, "This section could not be drawn."));
        console.warn(`codecdash: section ${id}:`, err);
      }
    });
  }
  for (const spec of CHARTS) {
    const section = document.getElementById(spec.id);
    if (!section) continue;
    try {
      renderProgressChart(section, spec, snap);
    } catch (err) {
      console.warn(`codecdash: chart ${spec.id}:`, err);
    }
  }
  try {
    renderRateDistortion(snap);
  } catch (err) {
    console.warn("codecdash: section rate-distortion:", err);
  }
  renderSourceErrors(snap);
  document.dispatchEvent(new CustomEvent("codecdash:snapshot", { detail: snap }));
}

// ---------------------------------------------------------------------------------------------
// Loading, live updates and the connection indicator.
// ---------------------------------------------------------------------------------------------

/**
 * The snapshot the server put in the page (a data block, never executed): the headline
 * figures come with the first response, and no request is needed to draw them. Taken once.
 */
function takeInlineSnapshot() {
  const block = document.getElementById("codecdash-snapshot");
  if (!block) return null;
  block.remove();
  try {
    return { status: 200, data: JSON.parse(block.textContent), etag: block.dataset.etag || null, inline: true };
  } catch {
    return null;
  }
}

/** Fetches the snapshot; resolves true when it changed. Falls back to a static export once. */
async function loadSnapshot() {
  const inline = state.snapshot ? null : takeInlineSnapshot();
  if (inline) return accept(inline);
  if (state.mode === "static") {
    const res = await fetchStaticSnapshot(state.etag);
    return accept(res);
  }
  try {
    return accept(await fetchSnapshot(state.etag));
  } catch (err) {
    const unavailable = err instanceof ApiError && (err.network || err.notJson || err.status === 404 || err.status === 403);
    if ((state.snapshot && !state.inlineOnly) || !unavailable) throw err;
    // No API here (a static export on S3, or a plain file server): read ./dashboard.json.
    const res = await fetchStaticSnapshot(null);
    state.mode = "static";
    state.etag = null;
    return accept(res);
  }
}

function accept(res) {
  state.inlineOnly = Boolean(res.inline); // no answer from the API (or dashboard.json) yet
  state.lastSuccess = new Date();
  if (res.status === 304) return false;
  if (!res.data || typeof res.data !== "object") throw new ApiError("The snapshot was empty", { notJson: true });
  state.snapshot = res.data;
  state.etag = res.etag || null;
  const seconds = Number(res.data.refresh_seconds);
  state.refreshSeconds = Number.isFinite(seconds) && seconds >= 1 ? seconds : DEFAULT_REFRESH_SECONDS;
  return true;
}

const MIN_REFRESH_GAP_MS = 1000;
let inflight = null;
let again = false;
let tableWanted = false;
let lastRefreshAt = 0;
let renderedKey = "";

let fetching = false; // is the current round's request under way?

/**
 * Refetches the snapshot (with If-None-Match) and, when it changed or `table` is set, the
 * table's current page. A call made while a round waits for its turn joins that round; one
 * made while its request is under way (which may miss the change) gets one more round.
 */
export function refresh({ table = false } = {}) {
  tableWanted = tableWanted || table;
  if (inflight) {
    if (fetching) again = true;
    return inflight;
  }
  inflight = (async () => {
    do {
      again = false;
      // Bursts of events (a busy training fleet) cost at most one round per MIN_REFRESH_GAP_MS.
      const wait = lastRefreshAt + MIN_REFRESH_GAP_MS - Date.now();
      if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
      lastRefreshAt = Date.now();
      fetching = true;
      try {
        await refreshOnce();
      } finally {
        fetching = false;
      }
    } while (again);
  })().finally(() => {
    inflight = null;
  });
  return inflight;
}

async function refreshOnce() {
  let changed = false;
  const wantTable = tableWanted;
  tableWanted = false;
  try {
    changed = await loadSnapshot();
    if (changed && state.mode === "api") refreshAlerts(); // alert changes move the ETag too
    state.fetchOk = true;
    state.needsToken = false;
    setHidden(document.getElementById("auth-panel"), true);
  } catch (err) {
    state.fetchOk = false;
    if (err instanceof ApiError && err.status === 401) askForToken();
    else if (!state.snapshot) showLoadError(err);
    updateConnection();
    return;
  }
  if (changed) {
    // A new ETag with the same figures (only generated_at moved) needs no redraw.
    const { generated_at: _at, ...figures } = state.snapshot;
    const key = JSON.stringify(figures);
    if (key !== renderedKey) {
      renderedKey = key;
      render(state.snapshot);
    } else changed = false;
  }
  if (changed || wantTable || !tableLoaded) {
    const quiet = tableLoaded;
    tableLoaded = true;
    refreshTable({ quiet });
  }
  updateConnection();
}

let tableLoaded = false;

function showLoadError(err) {
  const alerts = document.getElementById("source-alerts");
  if (!alerts) return;
  alerts.replaceChildren(
    h("p", { class: "notice notice-error" }, `The dashboard data could not be loaded (${err.message}). The page retries on its own.`),
  );
  alerts.hidden = false;
}

/** Sets #connection-status from the stream and the newest request. */
function updateConnection() {
  const el = document.getElementById("connection-status") || document.createElement("p");
  const text = el.querySelector(".conn-text") || el;
  let stateName;
  let label;
  if (state.needsToken) {
    stateName = "offline";
    label = "Read token needed";
  } else if (state.fetchOk === false) {
    stateName = "offline";
    label = state.lastSuccess ? `Offline — showing data from ${formatClock(state.lastSuccess)}` : "Offline — no data yet";
  } else if (state.fetchOk === null) {
    stateName = "reconnecting";
    label = "Connecting…";
  } else if (state.stream && state.stream.readyState === EventSource.OPEN) {
    stateName = "live";
    label = "Live";
  } else if (state.stream && state.streamOpened) {
    stateName = "reconnecting";
    label = "Reconnecting…";
  } else {
    stateName = "live";
    label = state.mode === "static" ? `Live · static export, every ${state.refreshSeconds} s` : `Live · every ${state.refreshSeconds} s`;
  }
  if (el.dataset.state !== stateName) el.dataset.state = stateName;
  if (text.textContent !== label) text.textContent = label;
  const stale = stateName === "offline" && Boolean(state.snapshot) && !state.needsToken;
  if (document.documentElement.classList.contains("is-stale") !== stale) document.documentElement.classList.toggle("is-stale", stale);
  setHidden(document.getElementById("stale-note"), !stale);
  const updated = document.getElementById("last-updated");
  if (state.lastSuccess) {
    const iso = state.lastSuccess.toISOString();
    setChildren(updated, "Updated ", h("time", { datetime: iso, title: iso }, formatClock(state.lastSuccess)));
  }
  schedulePoll();
}

/** Polls while no stream is open: every refresh_seconds, sooner while offline. */
function schedulePoll() {
  clearTimeout(state.pollTimer);
  state.pollTimer = 0;
  if (state.needsToken) return;
  if (state.stream && state.stream.readyState === EventSource.OPEN) return;
  const seconds = state.fetchOk === false ? Math.min(state.refreshSeconds, 10) : state.refreshSeconds;
  state.pollTimer = setTimeout(poll, seconds * 1000);
}

async function poll() {
  if (document.hidden) {
    schedulePoll();
    return;
  }
  const wasOffline = state.fetchOk === false;
  await refresh();
  const due = wasOffline || Date.now() >= state.streamRetryAt;
  if (state.mode === "api" && state.fetchOk && !state.stream && due) openStream();
}

/** Subscribes to api/v1/events. If it never opens (no stream here), polling carries on. */
function openStream() {
  if (state.mode !== "api" || state.needsToken || typeof EventSource === "undefined") return;
  closeStream();
  const stream = new EventSource(eventsUrl());
  state.stream = stream;
  state.streamOpened = false;
  let heard = false; // has this connection delivered an event yet?
  // A hidden tab only notes that something changed, and catches up once it is shown again.
  const onChange = () => {
    heard = true;
    if (document.hidden) state.missedWhileHidden = true;
    else refresh({ table: true });
  };
  stream.addEventListener("message", onChange);
  stream.addEventListener("snapshot", onChange);
  stream.addEventListener("metrics", (e) => onMetricsEvent(e.data)); // training curves: curves.js
  stream.addEventListener("open", () => {
    state.streamOpened = true;
    heard = false;
    updateConnection(); // "Live" now, not after the next request
    // Catch up on anything missed while the stream was down. codecdash's server sends an event
    // as soon as a connection opens, and that refresh is the catch-up (one request on page
    // load, not two); a stream that says nothing at first gets one from here.
    setTimeout(() => {
      if (!heard && state.stream === stream) refresh();
    }, 500);
  });
  stream.addEventListener("error", () => {
    if (!state.streamOpened || stream.readyState === EventSource.CLOSED) {
      // Never opened: the stream is not offered here (404, API Gateway); closed by the browser
      // after a failed reconnection. Either way poll, and try the stream again later.
      const wait = state.streamOpened ? state.refreshSeconds * 1000 : 5 * 60 * 1000;
      closeStream();
      state.streamRetryAt = Date.now() + wait;
      refresh();
      return;
    }
    updateConnection(); // "Reconnecting…" while EventSource retries on its own
    refresh(); // and find out at once whether the server is gone (→ offline, stale)
  });
}

function closeStream() {
  if (!state.stream) return;
  state.stream.close();
  state.stream = null;
  state.streamOpened = false;
}

// ---------------------------------------------------------------------------------------------
// Private dashboards: a read token.
// ---------------------------------------------------------------------------------------------

function askForToken() {
  const hadToken = Boolean(getToken());
  state.needsToken = true;
  closeStream();
  setHidden(document.getElementById("auth-panel"), false);
  const error = document.getElementById("auth-error");
  if (error) error.textContent = hadToken ? "That token was not accepted. Check it and try again." : "";
  setHidden(error, !hadToken);
  revealMain();
  updateConnection();
}

function initAuth() {
  document.getElementById("auth-form")?.addEventListener("submit", (e) => {
    e.preventDefault();
    const input = document.getElementById("auth-token");
    const token = input.value.trim();
    if (!token) return;
    setToken(token, { remember: document.getElementById("auth-remember")?.checked === true });
    input.value = "";
    state.needsToken = false;
    state.etag = null;
    syncForgetButton();
    refresh().then(() => {
      if (!state.needsToken) openStream();
    });
  });
  document.getElementById("forget-token")?.addEventListener("click", () => {
    setToken("");
    syncForgetButton();
    window.location.reload();
  });
  syncForgetButton();
}

function syncForgetButton() {
  setHidden(document.getElementById("forget-token"), !getToken());
}

// ---------------------------------------------------------------------------------------------
// Theme: prefers-color-scheme by default; #theme-toggle overrides it (data-theme on <html>).
// ---------------------------------------------------------------------------------------------

const darkQuery = window.matchMedia("(prefers-color-scheme: dark)");

function currentTheme() {
  const forced = document.documentElement.dataset.theme;
  return forced === "dark" || forced === "light" ? forced : darkQuery.matches ? "dark" : "light";
}

function syncThemeButton() {
  document.getElementById("theme-toggle")?.setAttribute("aria-pressed", String(currentTheme() === "dark"));
}

function initTheme() {
  document.getElementById("theme-toggle")?.addEventListener("click", () => {
    const next = currentTheme() === "dark" ? "light" : "dark";
    document.documentElement.dataset.theme = next;
    try {
      localStorage.setItem(THEME_KEY, next);
    } catch {
      /* not remembered: fine */
    }
    syncThemeButton();
    rethemeCharts();
  });
  darkQuery.addEventListener("change", () => {
    syncThemeButton();
    if (!document.documentElement.dataset.theme) rethemeCharts();
  });
  syncThemeButton();
}

// ---------------------------------------------------------------------------------------------
// Experiment details and URL state.
// ---------------------------------------------------------------------------------------------

function loadExperiment(id, signal) {
  // The Rate-Distortion section also shows the experiment open in the dialog (followDetails).
  if (state.mode === "static") {
    const exp = (state.snapshot?.recent_experiments || []).find((e) => e.id === id);
    if (exp) followDetails(exp);
    return exp ? Promise.resolve(exp) : Promise.reject(new ApiError("not found", { status: 404 }));
  }
  return fetchExperiment(id, signal).then((res) => {
    if (view.exp === id) followDetails(res.data);
    return res.data;
  });
}

/** Opens experiment `id` in #experiment-details and records it in the URL. */
export function openExperiment(id, returnFocus = null) {
  const replace = Boolean(view.exp); // switching experiments keeps one entry
  view.exp = id;
  writeUrl({ replace, state: { codecdashOpened: id } });
  showExperiment(id, loadExperiment, returnFocus);
}

/** Makes the dialog match the URL (after load, back and forward). */
function syncDetailsWithUrl() {
  if (view.exp && openId() !== view.exp) showExperiment(view.exp, loadExperiment);
  else if (!view.exp) {
    closeDetails();
    followDetails(null);
  }
}

function revealMain() {
  const main = document.getElementById("main");
  main?.classList.remove("is-loading");
  main?.removeAttribute("aria-busy");
}

function fillServerUrl() {
  const meta = document.querySelector('meta[name="codecdash-api-base"]')?.getAttribute("content")?.trim();
  const url = meta || new URL(".", window.location.href).href.replace(/\/$/, "");
  for (const el of document.querySelectorAll(".js-server-url")) el.textContent = url;
}

async function boot() {
  initTheme();
  initAuth();
  fillServerUrl();
  initDetails({
    onClosed: (id) => {
      view.exp = null;
      followDetails(null);
      // Closing undoes the opening: step back over the entry openExperiment pushed, so Back
      // does not reopen the dialog; for a shared ?exp= link, just drop exp from the URL.
      if (history.state?.codecdashOpened === id) history.back();
      else writeUrl({ replace: true });
    },
  });
  initRateDistortion({ isStatic: () => state.mode === "static" });
  initAlerts({ isStatic: () => state.mode === "static" });
  initCurves({ isStatic: () => state.mode === "static", candidates: shownExperiments });
  initTable({
    isStatic: () => state.mode === "static",
    getSnapshot: () => state.snapshot,
    openExperiment,
    onUrlChange: syncDetailsWithUrl,
    onUnauthorized: askForToken,
  });
  document.addEventListener("click", (e) => {
    const link = e.target.closest(".card a[data-exp]");
    if (!link || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
    e.preventDefault();
    openExperiment(link.dataset.exp, link);
  });

  await refresh();
  revealMain();
  // The BD-rate Table and Compare sections (bdtable.js wires compare.js), after the first paint;
  // they follow each snapshot through the "codecdash:snapshot" event that render() sends.
  import("./bdtable.js")
    .then((m) => m.initBdTable({ isStatic: () => state.mode === "static", getSnapshot: () => state.snapshot }))
    .catch((err) => console.warn("codecdash: BD-rate table:", err));
  if (state.fetchOk) syncDetailsWithUrl();
  // The stream opens once the page has loaded, so that the first paint is not competing.
  if (document.readyState !== "complete") await new Promise((resolve) => window.addEventListener("load", resolve, { once: true }));
  if (state.mode === "api" && !state.needsToken) openStream();

  document.addEventListener("visibilitychange", () => {
    if (document.hidden) return;
    const live = state.stream && state.stream.readyState === EventSource.OPEN;
    if (!live || state.missedWhileHidden) refresh({ table: state.missedWhileHidden });
    state.missedWhileHidden = false;
  });
  window.addEventListener("online", () => refresh());
  setInterval(() => refreshTimes(), 15000);
}

boot();
