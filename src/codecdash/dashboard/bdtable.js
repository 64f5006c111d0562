// The BD-rate table: methods down, test sets across, each cell the method's BD-rate (and
// BD-PSNR) against its set's anchor in force, as codec papers print it.
//
// Everything the reader picks lives in the URL, so a view can be shared and a reload restores
// it: ?bd_quality=ms_ssim&bd_anchor=UVG-1080p:VTM&bd_sort=-set:UVG-1080p&bd_filter=ssf&bd_open=M.
// An anchor override is "SET:ANCHOR", as the API's anchor= takes it (":ANCHOR": the unspecified
// set); bd_per=experiment makes every experiment a row.
// With the API the table comes from api/v1/bd-rates (and its CSV and LaTeX formats); in a
// static export from ./bd-rates.json beside the page (the anchors in force, no overrides).

import { ApiError, apiUrl, getJSON, getSharedJSON } from "./api.js";
import { compareBox, initCompare } from "./compare.js";
import { h, setChildren, setHidden } from "./dom.js";
import { formatCount, formatSignedPct, isNum } from "./format.js";
import { reloader } from "./reload.js";

const RELOAD_MS = 3000;
const PAGE_ROWS = 100; // rows drawn at first (a 1,000-row table takes seconds to lay out)
const QUALITIES = { psnr: "PSNR", ms_ssim: "MS-SSIM" };
const UNSPECIFIED = "unspecified";
export const STATIC_FILE = "./bd-rates.json";

/** The table's view, as the URL says. `anchors`: "SET:ANCHOR" overrides. */
export const bdView = { quality: "psnr", per: "method", anchors: [], sort: "method", filter: "", open: [] };

/** The key of a test set in `cells` and in overrides: its name, "" for the unspecified set. */
const setKey = (name) => (typeof name === "string" ? name : "");
const pickText = (key, name) => `${key}:${name}`;

const els = {};
const bd = { ctx: null, limit: PAGE_ROWS, data: null, anchors: [], error: "", breakdown: new Map() };

/** Reads the view from a query string (unknown values fall back to the defaults). */
export function readBdUrl(search = window.location.search) {
  const p = new URLSearchParams(search);
  const quality = p.get("bd_quality") || "psnr";
  return {
    quality: quality in QUALITIES ? quality : "psnr",
    per: p.get("bd_per") === "experiment" ? "experiment" : "method",
    anchors: [...new Set(p.getAll("bd_anchor").filter((a) => a.includes(":") && a.length <= 302))].slice(0, 50),
    sort: (p.get("bd_sort") || "method").slice(0, 220),
    filter: (p.get("bd_filter") || "").slice(0, 200),
    open: p.getAll("bd_open").filter((m) => m && m.length <= 200).slice(0, 20),
  };
}

function writeBdUrl({ replace = false } = {}) {
  const p = new URLSearchParams(window.location.search);
  const setAll = (key, values) => {
    p.delete(key);
    for (const v of values) p.append(key, v);
  };
  setAll("bd_quality", bdView.quality === "psnr" ? [] : [bdView.quality]);
  setAll("bd_per", bdView.per === "method" ? [] : [bdView.per]);
  setAll("bd_anchor", bdView.anchors);
  setAll("bd_sort", bdView.sort === "method" ? [] : [bdView.sort]);
  setAll("bd_filter", bdView.filter ? [bdView.filter] : []);
  setAll("bd_open", bdView.open);
  const qs = p.toString();
  const url = `${window.location.pathname}${qs ? `?${qs}` : ""}${window.location.hash}`;
  if (url === `${window.location.pathname}${window.location.search}${window.location.hash}`) return;
  if (replace) history.replaceState(history.state, "", url);
  else history.pushState(history.state, "", url);
}

/** The URL of api/v1/bd-rates for the current view (format: "csv", "latex" or none). */
export function bdUrl(format = null, extra = {}) {
  const url = apiUrl("api/v1/bd-rates", { quality: bdView.quality, per: bdView.per === "method" ? null : bdView.per, format, ...extra });
  const anchors = bdView.anchors.map((a) => `anchor=${encodeURIComponent(a)}`).join("&");
  return anchors ? `${url}${url.includes("?") ? "&" : "?"}${anchors}` : url;
}

// ---------------------------------------------------------------------------------------------
// Entry point (app.js)
// ---------------------------------------------------------------------------------------------

/**
 * Wires the section, and Compare (compare.js) with the same `ctx`: `isStatic()` (the page
 * reads a static export) and `getSnapshot()`. Called once the page has its first snapshot.
 */
export function initBdTable(ctx) {
  initCompare(ctx);
  bd.ctx = ctx;
  Object.assign(bdView, readBdUrl());
  els.section = document.getElementById("bd-table");
  if (!els.section) return;
  const q = (sel) => els.section.querySelector(sel);
  els.quality = q("#bd-quality");
  els.per = q("#bd-per");
  els.filter = q("#bd-filter");
  els.anchors = q(".bd-anchors");
  els.message = q(".bd-message");
  els.summary = q("#bd-summary");
  els.head = q("thead");
  els.body = q("tbody");
  els.csv = q("#bd-download-csv");
  els.latex = q("#bd-download-latex");
  syncControls();

  q("form")?.addEventListener("submit", (e) => e.preventDefault());
  els.quality?.addEventListener("change", () => change({ quality: els.quality.value }, true));
  els.per?.addEventListener("change", () => change({ per: els.per.value, open: [] }, true));
  let typing = 0;
  els.filter?.addEventListener("input", () => {
    clearTimeout(typing);
    typing = setTimeout(() => change({ filter: els.filter.value.trim() }, false, { replace: true }), 250);
  });
  els.anchors?.addEventListener("change", (e) => {
    const select = e.target.closest("select[data-dataset]");
    if (!select) return;
    const key = select.dataset.dataset;
    const mine = new Set(bd.anchors.filter((a) => setKey(a.dataset) === key).map((a) => pickText(key, a.name)));
    const others = bdView.anchors.filter((a) => !mine.has(a));
    change({ anchors: select.value ? [...others, pickText(key, select.value)] : others }, true);
  });
  els.head?.addEventListener("click", (e) => {
    const th = e.target.closest("th[data-sort]");
    if (!th || !e.target.closest("button")) return;
    const key = th.dataset.sort;
    const current = bdView.sort.replace(/^-/, "");
    const next = current === key ? (bdView.sort.startsWith("-") ? key : `-${key}`) : key === "experiments" ? `-${key}` : key;
    change({ sort: next });
  });
  els.body?.addEventListener("click", (e) => {
    if (e.target.closest("button[data-more]")) {
      const first = bd.limit; // the first row added: focus moves there
      bd.limit += PAGE_ROWS * 5;
      draw();
      els.body.querySelectorAll("tr[data-method]")[first]?.querySelector(".bd-expand")?.focus();
      return;
    }
    const button = e.target.closest("button[data-open]");
    if (!button) return;
    const method = button.dataset.open;
    const open = bdView.open.includes(method) ? bdView.open.filter((m) => m !== method) : [...bdView.open, method];
    change({ open });
  });
  els.csv?.addEventListener("click", () => download("csv", "text/csv", "bd-rates.csv"));
  els.latex?.addEventListener("click", () => download("latex", "application/x-tex", "bd-rates.tex"));
  window.addEventListener("popstate", () => {
    const before = bdQueryKey();
    Object.assign(bdView, readBdUrl());
    syncControls();
    document.dispatchEvent(new CustomEvent("codecdash:bdview"));
    if (bdQueryKey() !== before) load();
    else draw();
  });
  document.addEventListener("codecdash:results", () => scheduleLoad()); // app.js drawLater
  load();
}

function bdQueryKey() {
  return JSON.stringify([bdView.quality, bdView.per, bdView.anchors]);
}

function change(next, reload = false, { replace = false } = {}) {
  Object.assign(bdView, next);
  writeBdUrl({ replace });
  syncControls();
  document.dispatchEvent(new CustomEvent("codecdash:bdview")); // compare.js follows the quality
  if (reload) load();
  else draw();
}

function syncControls() {
  if (els.quality && els.quality.value !== bdView.quality) els.quality.value = bdView.quality;
  if (els.per && els.per.value !== bdView.per) els.per.value = bdView.per;
  if (els.filter && document.activeElement !== els.filter && els.filter.value !== bdView.filter) els.filter.value = bdView.filter;
}

// ---------------------------------------------------------------------------------------------
// Loading
// ---------------------------------------------------------------------------------------------

const loader = reloader(fetchTable, RELOAD_MS);

function scheduleLoad() {
  loader.soon();
}

function load() {
  return els.section ? loader.now() : Promise.resolve();
}

async function fetchTable() {
  const isStatic = bd.ctx.isStatic();
  try {
    if (isStatic) {
      bd.data = (await getJSON(STATIC_FILE, { auth: false })).data;
      bd.anchors = [];
    } else {
      const anchorsList = getSharedJSON(apiUrl("api/v1/anchors"), bd.ctx.getSnapshot?.()?.results_version);
      const [table, anchors] = await Promise.all([getJSON(bdUrl()), anchorsList]);
      bd.data = table.data;
      bd.anchors = (Array.isArray(anchors.data?.items) ? anchors.data.items : []).filter((a) => a && typeof a.name === "string");
    }
    bd.error = "";
    bd.breakdown.clear();
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) return; // app.js asks for a read token
    if (isStatic && err instanceof ApiError && err.status === 404) {
      bd.data = null;
      bd.error = "This export has no BD-rate table (bd-rates.json is missing).";
    } else {
      bd.error = `The BD-rate table could not be loaded (${err.message}). It is tried again with the next update.`;
    }
  }
  draw();
  for (const method of bdView.open) loadBreakdown(method);
}

/** The per-sequence breakdown of one row (the API's `sequences=true` answer, per cell). */
async function loadBreakdown(method) {
  if (bd.ctx.isStatic() || bd.breakdown.has(method)) return;
  bd.breakdown.set(method, { loading: true });
  try {
    const res = await getJSON(bdUrl(null, { method, sequences: "true" }));
    const row = (res.data?.rows || []).find((r) => r.method === method);
    const sequences = Object.fromEntries(Object.entries(row?.cells || {}).map(([key, cell]) => [key, cell?.sequences || {}]));
    bd.breakdown.set(method, { sequences });
  } catch (err) {
    bd.breakdown.set(method, { error: err.message });
  }
  draw();
}

// ---------------------------------------------------------------------------------------------
// Drawing
// ---------------------------------------------------------------------------------------------

function datasets() {
  return Array.isArray(bd.data?.datasets)
    ? bd.data.datasets.filter((d) => d).map((d) => ({ ...d, key: typeof d.key === "string" ? d.key : setKey(d.name), label: d.name ?? UNSPECIFIED }))
    : [];
}

function rows() {
  return Array.isArray(bd.data?.rows) ? bd.data.rows.filter((r) => r && typeof r.method === "string") : [];
}

/** A cell's figure ({bd_rate_pct, …}) or null when it says why there is none. */
function figure(cell) {
  return cell && isNum(cell.bd_rate_pct) ? cell : null;
}

/** Dataset name → the best (lowest) BD-rate of its column: the API's mark, else computed. */
function bestPerColumn(sets, list) {
  const best = new Map();
  for (const d of sets) {
    const cells = list.map((r) => r.cells?.[d.key]).filter(figure);
    const marked = cells.filter((c) => c.best === true);
    if (marked.length) best.set(d.key, new Set(marked));
    else if (cells.length) {
      const low = Math.min(...cells.map((c) => c.bd_rate_pct));
      best.set(d.key, new Set(cells.filter((c) => c.bd_rate_pct === low)));
    }
  }
  return best;
}

function sorted(list) {
  const desc = bdView.sort.startsWith("-");
  const key = bdView.sort.replace(/^-/, "");
  const value = (r) => {
    if (key === "method") return r.method.toLowerCase();
    if (key === "experiments") return isNum(r.experiments) ? r.experiments : null;
    if (key.startsWith("set:")) return figure(r.cells?.[key.slice(4)])?.bd_rate_pct ?? null;
    return null;
  };
  return [...list].sort((a, b) => {
    const x = value(a);
    const y = value(b);
    if (x === null || y === null) return x === y ? 0 : x === null ? 1 : -1; // missing last
    const order = x < y ? -1 : x > y ? 1 : 0;
    return (desc ? -order : order) || a.method.localeCompare(b.method);
  });
}

/** A selector that finds the focused control again after a redraw replaced it. */
function focusKey(el) {
  if (!el || !els.section?.contains(el)) return null;
  if (el.dataset.open) return `button[data-open="${CSS.escape(el.dataset.open)}"]`;
  if (el.dataset.compareId) return `input[data-compare-id="${CSS.escape(el.dataset.compareId)}"]`;
  const th = el.closest("th[data-sort]");
  return th ? `th[data-sort="${CSS.escape(th.dataset.sort)}"] button` : null;
}

function sortHeader(key, label, extra = null, num = false) {
  const current = bdView.sort.replace(/^-/, "");
  const aria = current === key ? (bdView.sort.startsWith("-") ? "descending" : "ascending") : null;
  return h(
    "th",
    { scope: "col", class: num ? "num" : null, "data-sort": key, "aria-sort": aria },
    h("button", { type: "button", class: "sort-button" }, label, h("span", { class: "sort-icon", "aria-hidden": "true" })),
    extra,
  );
}

function draw() {
  if (!els.section) return;
  setChildren(els.message, bd.error);
  setHidden(els.message, !bd.error);
  const sets = datasets();
  const all = rows();
  const filter = bdView.filter.toLowerCase();
  const shown = sorted(all.filter((r) => !filter || r.method.toLowerCase().includes(filter)));
  const best = bestPerColumn(sets, all);
  const quality = QUALITIES[bd.data?.quality_metric] || QUALITIES[bdView.quality];
  const noun = bdView.per === "experiment" ? "experiment" : "method";
  drawAnchors(sets);

  const focusedHead = focusKey(document.activeElement);
  setChildren(
    els.head,
    h(
      "tr",
      {},
      h("th", { scope: "col", class: "bd-pick" }, h("span", { class: "sr-only" }, "Compare")),
      sortHeader("method", bdView.per === "experiment" ? "Experiment" : "Method"),
      sortHeader("experiments", "Runs", null, true),
      sets.map((d) =>
        sortHeader(`set:${d.key}`, d.label, h("span", { class: "bd-anchor-name" }, d.anchor ? `vs ${d.anchor}` : "no anchor"), true),
      ),
    ),
  );
  if (focusedHead && !els.section.contains(document.activeElement)) els.section.querySelector(focusedHead)?.focus();
  const body = [];
  for (const r of shown.slice(0, bd.limit)) {
    const open = bdView.open.includes(r.method);
    body.push(
      h(
        "tr",
        { "data-method": r.method },
        // A row that is one experiment (no method, or per experiment) compares that experiment.
        h("td", { class: "bd-pick" }, typeof r.experiment_id === "string" ? compareBox("experiment", r.experiment_id) : compareBox("method", r.method)),
        h(
          "th",
          { scope: "row", class: "bd-method" },
          h(
            "button",
            { type: "button", class: "bd-expand", "data-open": r.method, "aria-expanded": String(open), title: "Per-sequence results" },
            h("span", { class: "bd-caret", "aria-hidden": "true" }),
            r.method,
          ),
        ),
        h("td", { class: "num" }, formatCount(r.experiments)),
        sets.map((d) => cellNode(r.cells?.[d.key], best.get(d.key), d, quality)),
      ),
    );
    if (open) body.push(breakdownRow(r.method, sets, quality));
  }
  if (shown.length > bd.limit) {
    const left = shown.length - bd.limit;
    body.push(
      h(
        "tr",
        { class: "bd-more-row" },
        h("td", { colspan: String(3 + sets.length) }, h("button", { type: "button", class: "button", "data-more": "" }, `Show ${formatCount(Math.min(left, PAGE_ROWS * 5))} more of ${formatCount(left)}`)),
      ),
    );
  }
  if (!body.length) {
    const text = !bd.data ? (bd.error ? "" : "Loading…") : filter ? `No ${noun} matches this filter.` : `No ${noun} has R-D points on a test set yet.`;
    body.push(h("tr", { class: "empty-row" }, h("td", { colspan: String(3 + sets.length), class: "table-empty" }, text)));
  }
  const focused = focusKey(document.activeElement);
  setChildren(els.body, ...body);
  if (focused && !els.section.contains(document.activeElement)) els.section.querySelector(focused)?.focus();
  const summary = all.length
    ? `${shown.length > bd.limit ? `${formatCount(bd.limit)} shown, ` : ""}${formatCount(shown.length)} of ${formatCount(all.length)} ${noun}${all.length === 1 ? "" : "s"} · ${sets.length} test set${sets.length === 1 ? "" : "s"} · ${quality}`
    : "";
  if (els.summary && els.summary.textContent !== summary) els.summary.textContent = summary;
  for (const b of [els.csv, els.latex]) if (b) b.disabled = !bd.data;
}

/** One select per test set: its anchors (the API's anchor list), the one in force picked. */
function drawAnchors(sets) {
  const isStatic = bd.ctx.isStatic();
  // A static export holds one table: the anchors in force, its quality, one row per method.
  for (const select of [els.quality, els.per]) if (select && select.disabled !== isStatic) select.disabled = isStatic;
  if (!els.anchors) return;
  const fields = sets.map((d, i) => {
    const key = d.key;
    const options = bd.anchors.filter((a) => setKey(a.dataset) === key);
    const picked = options.find((o) => bdView.anchors.includes(pickText(key, o.name)))?.name || "";
    const id = `bd-anchor-${i}`;
    const select = h(
      "select",
      { id, "data-dataset": key, disabled: isStatic || options.length === 0 },
      h("option", { value: "" }, picked ? "The configured anchor" : d.anchor ? `${d.anchor} (in force)` : "No anchor"),
      options.filter((a) => a.name !== d.anchor || picked).map((a) => h("option", { value: a.name }, a.name)),
    );
    select.value = picked;
    return h("div", { class: "field" }, h("label", { for: id }, `Anchor, ${d.label}`), select);
  });
  const key = JSON.stringify([sets, bd.anchors.map((a) => [a.name, a.dataset]), bdView.anchors, isStatic]);
  if (els.anchors.dataset.key === key) return;
  els.anchors.dataset.key = key;
  els.anchors.replaceChildren(...fields);
}

function cellNode(cell, best, dataset, quality) {
  const fig = figure(cell);
  if (!fig) {
    const reason = typeof cell?.reason === "string" ? cell.reason : "no result on this set";
    return h(
      "td",
      { class: "num bd-cell bd-none", title: reason, "data-set": dataset.key },
      h("span", { class: "missing", "aria-hidden": "true" }, "—"),
      h("span", { class: "bd-reason" }, reason),
    );
  }
  const isBest = Boolean(best?.has(cell));
  const warning = typeof fig.warning === "string" && fig.warning ? fig.warning : null;
  const title = [
    `BD-rate ${formatSignedPct(fig.bd_rate_pct)} against ${dataset.anchor || "the anchor"} (${quality})`,
    isNum(fig.bd_psnr_db) ? `BD-${quality} ${signedDb(fig.bd_psnr_db)}` : null,
    isNum(fig.overlap) ? `curves overlap over ${Math.round(fig.overlap * 100)} % of the quality range` : null,
    warning,
    isBest ? "best in this column" : null,
  ]
    .filter(Boolean)
    .join("; ");
  return h(
    "td",
    { class: `num bd-cell${isBest ? " is-best" : ""}${warning ? " has-warning" : ""}`, title, "data-set": dataset.key },
    h("span", { class: "bd-rate" }, isBest ? h("span", { class: "bd-best-mark", "aria-hidden": "true" }, "★ ") : null, formatSignedPct(fig.bd_rate_pct)),
    isBest ? h("span", { class: "sr-only" }, " (best in column)") : null,
    isNum(fig.bd_psnr_db) ? h("span", { class: "bd-psnr" }, signedDb(fig.bd_psnr_db)) : null,
    warning ? h("span", { class: "bd-warning" }, h("span", { "aria-hidden": "true" }, "⚠ "), warning) : null,
  );
}

function signedDb(v) {
  return `${v > 0 ? "+" : ""}${v.toFixed(2)} dB`;
}

/** The row under an expanded method: one line per sequence of each set. */
function breakdownRow(method, sets, quality) {
  const state = bd.breakdown.get(method);
  if (!state && !bd.ctx.isStatic()) loadBreakdown(method);
  let content;
  if (bd.ctx.isStatic()) content = h("p", { class: "muted" }, "The per-sequence breakdown needs the API (this is a static export).");
  else if (!state || state.loading) content = h("p", { class: "muted" }, "Loading the per-sequence results…");
  else if (state.error) content = h("p", { class: "notice notice-warn" }, `The per-sequence results could not be loaded (${state.error}).`);
  else {
    const parts = sets
      .map((d) => [d, Object.entries(state.sequences?.[d.key] || {})])
      .filter(([, seqs]) => seqs.length);
    content = parts.length
      ? parts.map(([d, seqs]) =>
          h(
            "table",
            { class: "bd-sequences" },
            h("caption", {}, `${method} on ${d.label}, per sequence, against ${d.anchor || "the anchor"}`),
            h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Sequence"), h("th", { scope: "col", class: "num" }, "BD-rate"), h("th", { scope: "col", class: "num" }, `BD-${quality}`))),
            h(
              "tbody",
              {},
              seqs.map(([name, cell]) =>
                h(
                  "tr",
                  {},
                  h("th", { scope: "row" }, name),
                  figure(cell) ? h("td", { class: "num" }, formatSignedPct(cell.bd_rate_pct)) : h("td", { class: "num bd-reason", title: cell?.reason || "" }, cell?.reason || "—"),
                  h("td", { class: "num" }, isNum(cell?.bd_psnr_db) ? signedDb(cell.bd_psnr_db) : "—"),
                ),
              ),
            ),
          ),
        )
      : h("p", { class: "muted" }, "No per-sequence results for this method.");
  }
  return h("tr", { class: "bd-breakdown", "data-breakdown": method }, h("td", { colspan: String(3 + sets.length) }, content));
}

async function download(format, type, name) {
  const { downloadUrl } = await import("./download.js"); // on the first download only
  if (bd.ctx.isStatic()) {
    const file = format === "csv" ? "./bd-rates.csv" : "./bd-rates.tex";
    await downloadUrl(file, name, type, { auth: false }).catch((err) => showError(err));
    return;
  }
  await downloadUrl(bdUrl(format), name, type).catch((err) => showError(err));
}

function showError(err) {
  bd.error = `The download failed (${err.message}).`;
  draw();
}
