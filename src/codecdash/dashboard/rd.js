// The Rate-Distortion section (#rate-distortion): the rate-distortion curves of the anchors
// (dashed) and of the chosen experiments (solid) on a log-rate axis, the Pareto frontier of
// the experiments' points, each experiment's BD-rate against the anchor picked in
// #anchor-select, and a scatter of cost against BD-rate saving.
//
// The rules (minimum points, the overlap threshold, the reasons' texts, rate units and labels)
// are the server's: api/v1/vocabulary (vocabulary.js).
// Data (read once the section nears the viewport): api/v1/anchors and
// api/v1/experiments?status=completed&sort=bd_rate_pct, fetched again
// when the snapshot changes (at most every RELOAD_MS); BD reports from
// api/v1/experiments/{id}/bd-rate?anchor=NAME, cached per anchor and curve. A static export has
// no API: the section then draws the snapshot's recent experiments with their stored BD-rates.
// The charts are drawn by rd-chart.js (through charts.js: uPlot loaded when they scroll into
// view, re-themed, resized); this module holds the data, the anchor switcher and the list.

import { ApiError, apiUrl, fetchExperiments, getJSON, getSharedJSON } from "./api.js";
import { removeChart } from "./charts.js";
import { h, setChildren, setHidden } from "./dom.js";
import { curvePoints } from "./compare-curves.js";
import { formatSignedPct, isNum } from "./format.js";
import { drawCost, drawRdCurves } from "./rd-chart.js";
import { reloader } from "./reload.js";
import { changeGate } from "./state.js";
import { view } from "./url-state.js";
import { fill, loadVocabulary, rateUnitOf, term } from "./vocabulary.js";

const OFFERED = 8; // experiments offered in the list (the best by BD-rate)
const SHOWN_FIRST = 5; // of which ticked until the reader says otherwise
const LIST_LIMIT = 50; // completed experiments fetched (the cost scatter's points)
const RELOAD_MS = 5000;
const PALETTE = 10; // --rd-c1 … --rd-c10 in styles.css

const els = {};
const rd = {
  ctx: null,
  loaded: false,
  error: "",
  vocab: null, // the server's rules and labels (vocabulary.js): min points, reasons, units
  anchors: [], // [{name, description, rd_points, rate_unit}], oldest first
  serverDefault: null, // the anchor in force for the stored bd_rate_pct
  anchor: "", // the anchor picked in #anchor-select
  quality: "psnr", // "psnr" or "ms_ssim": the y axis and the BD-rates' quality
  completed: [], // completed experiments, best BD-rate first
  open: null, // the experiment open in the details dialog
  ticks: new Map(), // experiment id → shown on the chart (what the reader ticked)
  reports: new Map(), // report key → BD report, or {failed: message}
  pending: new Set(), // report keys being fetched
  snap: null,
  recomputing: false, // the server derives the stored BD-rates again (a new anchor in force)
  updateQueued: false,
  near: false, // has the section come within a screen of the viewport (its data is read then)
  watch: null, // the IntersectionObserver waiting for that
};

// ---------------------------------------------------------------------------------------------
// Entry points (app.js)
// ---------------------------------------------------------------------------------------------

/** Wires the section. `ctx.isStatic()` says whether the page reads a static export. */
export function initRateDistortion(ctx) {
  rd.ctx = ctx;
  els.section = document.getElementById("rate-distortion");
  if (!els.section) return;
  const q = (sel) => els.section.querySelector(sel);
  els.select = document.getElementById("anchor-select");
  els.anchorField = q(".rd-anchor-field");
  els.message = q(".rd-message");
  els.empty = q(".rd-empty");
  els.body = q(".rd-body");
  els.status = q(".rd-status");
  els.chart = q(".rd-chart");
  els.key = q(".rd-key");
  els.table = q(".rd-table");
  els.picks = q(".rd-picks-list");
  els.cost = q(".rd-cost");
  els.costLine = q(".rd-cost-line");
  els.costChart = q(".rd-cost-chart");
  els.costTable = q(".rd-cost-table");
  els.select.addEventListener("change", () => {
    rd.anchor = els.select.value;
    update();
  });
  els.picks.addEventListener("change", (e) => {
    const input = e.target.closest("input[data-id]");
    if (!input) return;
    rd.ticks.set(input.dataset.id, input.checked);
    update();
  });
}

/**
 * Called with each new snapshot: re-reads the section's data (API) or draws the snapshot's.
 * Nothing is read until the section is within a screen's height of the viewport: on a phone
 * it is far below the first screen, and its data is the largest part of a first load.
 */
export function renderRateDistortion(snap) {
  if (!els.section) return;
  rd.snap = snap;
  if (!nearViewport()) return;
  const recomputing = snap?.summary?.bd_rate_recomputing === true;
  if (recomputing !== rd.recomputing) {
    rd.recomputing = recomputing;
    update();
  }
  if (rd.ctx.isStatic()) {
    rd.quality = snap?.targets?.quality_metric === "ms_ssim" ? "ms_ssim" : "psnr";
    rd.anchors = [];
    rd.completed = sortByBdRate((snap?.recent_experiments || []).filter((e) => e && e.status === "completed"));
    loadVocabulary()
      .then((vocab) => {
        rd.vocab = vocab;
        rd.error = "";
      })
      .catch((err) => {
        rd.error = `The rate-distortion rules could not be loaded (${err.message}); the page tries again with the next update.`;
      })
      .finally(() => {
        rd.loaded = true;
        update();
      });
    return;
  }
  if (resultsMoved(snap)) scheduleLoad();
}

/** Whether the section is (or has been) near the viewport; watches it until it is. */
function nearViewport() {
  if (rd.near || typeof IntersectionObserver === "undefined") return true;
  rd.watch ??= new IntersectionObserver(
    (entries) => {
      if (!entries.some((e) => e.isIntersecting)) return;
      rd.near = true;
      rd.watch.disconnect();
      if (rd.snap) renderRateDistortion(rd.snap);
    },
    { rootMargin: "0px 0px 100% 0px" },
  );
  rd.watch.observe(els.section);
  return false;
}

/** The details dialog opened on `exp` (an Experiment), or closed (null). */
export function followDetails(exp) {
  if (!els.section) return;
  if (exp && exp.id !== rd.open?.id) rd.ticks.delete(exp.id); // shown, unless unticked again
  rd.open = exp || null;
  update();
}

// ---------------------------------------------------------------------------------------------
// Loading
// ---------------------------------------------------------------------------------------------

const loader = reloader(load, RELOAD_MS);
const resultsMoved = changeGate("results_version"); // the first snapshot near the viewport reads

function scheduleLoad() {
  loader.soon();
}

async function load() {
  try {
    const [anchors, list, vocab] = await Promise.all([
      getSharedJSON(apiUrl("api/v1/anchors"), rd.snap?.results_version),
      fetchExperiments({ status: "completed", sort: "bd_rate_pct", limit: LIST_LIMIT }),
      loadVocabulary(),
    ]);
    rd.vocab = vocab;
    const a = anchors.data || {};
    rd.anchors = (Array.isArray(a.items) ? a.items : []).filter((x) => x && typeof x.name === "string");
    rd.serverDefault = typeof a.default === "string" ? a.default : null;
    rd.quality = a.quality_metric === "ms_ssim" ? "ms_ssim" : "psnr";
    rd.recomputing = a.recomputing === true || rd.snap?.summary?.bd_rate_recomputing === true;
    rd.completed = Array.isArray(list.data?.items) ? list.data.items : [];
    rd.error = "";
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) return; // app.js asks for a read token
    rd.error = `The rate-distortion data could not be loaded (${err.message}); the page tries again with the next update.`;
  }
  rd.loaded = true;
  update();
}

function reportKey(anchor, exp) {
  return JSON.stringify([anchor.name, anchor.rd_points, rd.quality, exp.id, exp.rd_points]);
}

/** Why `exp` can have no BD-rate against `anchor` of another test set (null: the unspecified). */
function otherSet(anchor, exp) {
  return (anchor.dataset ?? null) === (exp.dataset ?? null) ? null : `of another test set than ${anchor.name}`;
}

/** Asks the API for the BD reports the list needs against `anchor`, a few at a time. */
function requestReports(anchor, experiments) {
  if (!anchor || rd.ctx.isStatic()) return;
  const wanted = experiments.filter((e) => {
    const key = reportKey(anchor, e);
    return !rd.reports.has(key) && !rd.pending.has(key) && !otherSet(anchor, e) && !whyNoBdRate(anchor, e);
  });
  for (const exp of wanted) {
    const key = reportKey(anchor, exp);
    rd.pending.add(key);
    const url = apiUrl(`api/v1/experiments/${encodeURIComponent(exp.id)}/bd-rate`, { anchor: anchor.name, quality: rd.quality });
    getJSON(url)
      .then((res) => rd.reports.set(key, res.data || { failed: "no answer" }))
      .catch((err) => rd.reports.set(key, { failed: err.message || "no BD-rate" }))
      .finally(() => {
        rd.pending.delete(key);
        queueUpdate();
      });
  }
}

function queueUpdate() {
  if (rd.updateQueued) return;
  rd.updateQueued = true;
  setTimeout(() => {
    rd.updateQueued = false;
    update();
  }, 0);
}

// ---------------------------------------------------------------------------------------------
// Curves
// ---------------------------------------------------------------------------------------------

/** The rate unit of a curve's points (the server's rule, told by the vocabulary). */
function unitOf(points) {
  return rateUnitOf(rd.vocab, points);
}

function anchorUnit(anchor) {
  return term(rd.vocab.rate_units, anchor.rate_unit) ? anchor.rate_unit : unitOf(anchor.rd_points);
}

/** `rdPoints` as [rate, dB] pairs in `unit` on the chosen quality axis. */
function curveOf(rdPoints, unit) {
  return curvePoints(rd.vocab, rdPoints, unit, rd.quality);
}

/** Why `exp` can have no BD-rate against `anchor` (checked before asking), or null. */
function whyNoBdRate(anchor, exp) {
  const { min_points: minPoints, reasons } = rd.vocab.bd_rate;
  const values = { unit: unitOf(exp.rd_points), anchor_unit: anchorUnit(anchor), min_points: minPoints, quality: qualityName() };
  if (!values.unit) return fill(reasons.no_unit, values);
  if (values.unit !== values.anchor_unit) return fill(reasons.unit_mismatch, values);
  const a = curveOf(anchor.rd_points, values.unit);
  const t = curveOf(exp.rd_points, values.unit);
  if (t.length < minPoints) return fill(reasons.too_few_points, values);
  if (a.length < minPoints) return fill(reasons.anchor_too_few_points, values);
  const qa = a.map((p) => p[1]);
  const qt = t.map((p) => p[1]);
  if (Math.max(Math.min(...qa), Math.min(...qt)) >= Math.min(Math.max(...qa), Math.max(...qt))) {
    return fill(reasons.no_overlap, values);
  }
  return null;
}

function qualityName() {
  return term(rd.vocab.quality_metrics, rd.quality)?.label || rd.quality;
}

function sortByBdRate(items) {
  return [...items].sort((a, b) => {
    const x = isNum(a.bd_rate_pct);
    const y = isNum(b.bd_rate_pct);
    if (x !== y) return x ? -1 : 1;
    return x ? a.bd_rate_pct - b.bd_rate_pct : 0;
  });
}

// ---------------------------------------------------------------------------------------------
// Drawing
// ---------------------------------------------------------------------------------------------

function showMessage(text) {
  if (els.message.textContent !== text) els.message.textContent = text;
  setHidden(els.message, !text);
}

function currentAnchor() {
  if (!rd.anchors.length) return null;
  let anchor = rd.anchors.find((a) => a.name === rd.anchor);
  if (!anchor) {
    anchor = rd.anchors.find((a) => a.name === rd.serverDefault) || rd.anchors[0];
    rd.anchor = anchor.name;
  }
  return anchor;
}

function syncSelect() {
  const options = rd.anchors.map((a) =>
    h("option", { value: a.name }, a.name === rd.serverDefault ? `${a.name} (default)` : a.name),
  );
  setChildren(els.select, ...options);
  if (els.select.value !== rd.anchor) els.select.value = rd.anchor;
}

/** The experiments offered in the list: the best few by BD-rate, plus the one open in details. */
function offered() {
  const hasPoints = (e) => Array.isArray(e?.rd_points) && e.rd_points.length > 0;
  const list = rd.completed.filter(hasPoints).slice(0, OFFERED);
  const openId = view.exp && rd.open?.id === view.exp ? rd.open.id : null;
  if (openId && !list.some((e) => e.id === openId) && hasPoints(rd.open)) list.push(rd.completed.find((e) => e.id === openId) || rd.open);
  return list.map((exp, i) => ({
    exp,
    open: exp.id === openId,
    shown: rd.ticks.get(exp.id) ?? (exp.id === openId || i < SHOWN_FIRST),
  }));
}

/** Renders everything from `rd`. Cheap when nothing changed: each part skips equal output. */
function update() {
  if (!els.section || !rd.ctx) return;
  const isStatic = rd.ctx.isStatic();
  if (!view.exp) rd.open = null;
  showMessage(rd.error);
  if (!rd.loaded || !rd.vocab) return;
  const noAnchor = !isStatic && rd.anchors.length === 0;
  // No anchor: how to import one; or, when the anchors could not be read, only the message.
  setHidden(els.empty, !noAnchor || Boolean(rd.error));
  setHidden(els.body, noAnchor);
  setHidden(els.anchorField, isStatic || noAnchor);
  if (noAnchor) {
    removeChart(els.chart);
    removeChart(els.costChart);
    return;
  }
  const anchor = isStatic ? null : currentAnchor();
  if (anchor) syncSelect();
  const items = offered();
  items.forEach((item, i) => {
    item.color = (rd.anchors.length + i) % PALETTE;
  });
  const unit = anchor ? anchorUnit(anchor) : unitOf(items.find((it) => unitOf(it.exp.rd_points))?.exp.rd_points) || rd.vocab.rate_units[0]?.name;
  const reports = new Map(items.map((item) => [item.exp.id, bdFigure(anchor, item.exp)]));
  renderStatus(anchor, items, reports);
  renderPicks(items, reports, unit);
  renderCurves(anchor, items, reports, unit);
  drawCost(els, rd.completed);
  requestReports(anchor, items.map((it) => it.exp));
}

/**
 * What to say about an experiment's BD-rate: `{pct, anchor, overlap, warning}`, `{pending}`, or
 * `{none: reason}`. Static exports (no API) show the stored figure against its own anchor.
 */
function bdFigure(anchor, exp) {
  if (!anchor) {
    return isNum(exp.bd_rate_pct)
      ? { pct: exp.bd_rate_pct, anchor: exp.bd_rate_anchor || null }
      : { none: rd.vocab.bd_rate.reasons.not_stored };
  }
  const why = otherSet(anchor, exp) || whyNoBdRate(anchor, exp);
  if (why) return { none: why };
  const report = rd.reports.get(reportKey(anchor, exp));
  if (!report) return { pending: true };
  if (report.failed || !isNum(report.bd_rate_pct)) return { none: report.failed || rd.vocab.bd_rate.reasons.no_answer };
  return { pct: report.bd_rate_pct, anchor: anchor.name, overlap: report.overlap, warning: report.warning };
}

function renderStatus(anchor, items, reports) {
  const shown = items.filter((it) => it.shown);
  let text;
  if (anchor) {
    const ready = shown.filter((it) => isNum(reports.get(it.exp.id).pct)).length;
    const waiting = shown.some((it) => reports.get(it.exp.id).pending);
    text =
      `BD-rate against ${anchor.name} on ${qualityName()} (negative: fewer bits for the same quality)` +
      (waiting ? ": computing…" : `: ${ready} of ${shown.length} shown experiment${shown.length === 1 ? "" : "s"}.`);
  } else {
    text = "BD-rates as stored with each experiment (this static export cannot switch anchors).";
  }
  if (rd.recomputing) {
    text = `Stored BD-rates: recomputing… (the anchor in force changed; the order below and Best Compression follow when done). ${text}`;
  }
  if (els.status.textContent !== text) els.status.textContent = text;
}

function bdNodes(figure) {
  if (figure.pending) return [h("span", { class: "rd-bd muted" }, "BD-rate: computing…")];
  if (!isNum(figure.pct)) return [h("span", { class: "rd-bd muted" }, `No BD-rate: ${figure.none}`)];
  const nodes = [
    h(
      "span",
      { class: "rd-bd" },
      "BD-rate ",
      h("strong", { class: figure.pct < 0 ? "rd-better" : "rd-worse" }, formatSignedPct(figure.pct)),
      figure.anchor ? h("span", { class: "muted" }, ` vs ${figure.anchor}`) : "",
    ),
  ];
  const threshold = rd.vocab.bd_rate.overlap_warning;
  if (isNum(figure.overlap) && figure.overlap < threshold) {
    nodes.push(
      h(
        "span",
        { class: "rd-warning", title: figure.warning || "" },
        h("span", { "aria-hidden": "true" }, "⚠ "),
        fill(rd.vocab.bd_rate.overlap_warning_text, { overlap: Math.round(figure.overlap * 100), threshold: Math.round(threshold * 100) }),
      ),
    );
  }
  return nodes;
}

function renderPicks(items, reports, unit) {
  const rows = items.map((item, i) => {
    const e = item.exp;
    const id = `rd-pick-${i}`;
    const own = unitOf(e.rd_points);
    const otherUnit = own !== unit;
    return h(
      "li",
      { class: "rd-pick", "data-id": e.id },
      h(
        "div",
        { class: "rd-pick-head" },
        h("input", { type: "checkbox", id, "data-id": e.id, checked: item.shown }),
        h(
          "label",
          { for: id },
          h("span", { class: `rd-swatch rd-line rd-c${item.color + 1}`, "aria-hidden": "true" }),
          e.name || e.id,
          item.open ? h("span", { class: "rd-open" }, " (open in details)") : null,
        ),
      ),
      h(
        "p",
        { class: "rd-pick-facts" },
        ...bdNodes(reports.get(e.id)),
        otherUnit ? h("span", { class: "muted" }, `Not on the chart: ${own ? `rates in ${own}` : rd.vocab.bd_rate.reasons.no_unit}`) : null,
      ),
    );
  });
  if (!rows.length) rows.push(h("li", { class: "rd-pick muted" }, "No completed experiment has rate-distortion points yet."));
  // Rows are replaced only where they differ, and a checkbox's own state is kept: focus stays.
  const old = new Map([...els.picks.children].map((li) => [li.dataset.id, li]));
  const next = rows.map((row) => {
    const before = old.get(row.dataset.id);
    if (before && before.isEqualNode(row)) {
      const input = before.querySelector("input");
      if (input) input.checked = row.querySelector("input").checked;
      return before;
    }
    return row;
  });
  if (next.length !== els.picks.children.length || next.some((node, i) => node !== els.picks.children[i])) {
    const focused = document.activeElement;
    els.picks.replaceChildren(...next);
    if (focused && !focused.isConnected && focused.dataset?.id) {
      els.picks.querySelector(`input[data-id="${CSS.escape(focused.dataset.id)}"]`)?.focus();
    }
  }
}

/** The curves of the R-D chart in `unit`: every anchor's, and those of the ticked experiments. */
function renderCurves(anchor, items, reports, unit) {
  const anchors = rd.anchors
    .map((a, i) => ({ name: a.name, color: i % PALETTE, selected: a.name === anchor?.name, points: anchorUnit(a) === unit ? curveOf(a.rd_points, unit) : [] }))
    .filter((c) => c.points.length);
  const experiments = items
    .filter((it) => it.shown && unitOf(it.exp.rd_points) === unit)
    .map((it) => ({ name: it.exp.name || it.exp.id, color: it.color, points: curveOf(it.exp.rd_points, unit), figure: reports.get(it.exp.id) }))
    .filter((c) => c.points.length);
  const unitLabel = term(rd.vocab.rate_units, unit)?.label || unit;
  const qLabel = term(rd.vocab.quality_metrics, rd.quality)?.axis_label || qualityName();
  drawRdCurves(els, { anchors, experiments, unit, unitLabel, qLabel, quality: rd.quality });
}
