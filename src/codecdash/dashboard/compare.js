// Compare: the methods ticked in the BD-rate table and the experiments ticked in Recent
// Experiments, their R-D curves overlaid per test set with that set's anchors (dashed), and
// what differs between the experiments' params and tags. The selection is in the URL
// (?cmp_method=NAME&cmp_exp=ID, repeated), so a comparison can be shared. Each set's chart
// downloads as SVG and as PNG.

import { ApiError, apiUrl, fetchExperiment, fetchExperiments, getJSON } from "./api.js";
import { cssVar, drawUPlot, removeChart } from "./charts.js";
import { align, curvePoints, fmtRate, logRange, rateText, rdChartOptions } from "./compare-curves.js";
import { h, setChildren, setHidden } from "./dom.js";
import { reloader } from "./reload.js";
import { addRowDecorator } from "./table.js";
import { loadVocabulary, rateUnitOf, term } from "./vocabulary.js";

const MAX_PICKED = 12;
const PALETTE = 10; // --rd-c1 … --rd-c10
const METHOD_LIMIT = 1000; // experiments read per method
const RELOAD_MS = 5000;
const UNSPECIFIED = "unspecified";

/** What is ticked, in the order it was ticked. */
export const selection = { methods: [], experiments: [] };

const els = {};
const cmp = { ctx: null, anchors: [], methods: new Map(), experiments: new Map(), error: "", vocab: null };

export function readCompareUrl(search = window.location.search) {
  const p = new URLSearchParams(search);
  const list = (key) => [...new Set(p.getAll(key).filter((v) => v && v.length <= 200))].slice(0, MAX_PICKED);
  return { methods: list("cmp_method"), experiments: list("cmp_exp") };
}

function writeCompareUrl() {
  const p = new URLSearchParams(window.location.search);
  p.delete("cmp_method");
  p.delete("cmp_exp");
  for (const m of selection.methods) p.append("cmp_method", m);
  for (const id of selection.experiments) p.append("cmp_exp", id);
  const qs = p.toString();
  history.pushState(history.state, "", `${window.location.pathname}${qs ? `?${qs}` : ""}${window.location.hash}`);
}

const listOf = (kind) => (kind === "method" ? selection.methods : selection.experiments);

/** A checkbox that ticks `id` (a method name or an experiment id) for the comparison. */
export function compareBox(kind, id) {
  const box = h("input", {
    type: "checkbox",
    class: "compare-box",
    "data-compare-kind": kind,
    "data-compare-id": `${kind}:${id}`,
    "aria-label": `Compare ${id}`,
    title: "Compare",
    onclick: (e) => e.stopPropagation(), // a row's click opens its details; this only ticks
  });
  box.checked = listOf(kind).includes(id);
  return box;
}

/** Ticks or unticks `id`; the URL, every checkbox and the compare view follow. */
export function setCompared(kind, id, on) {
  const list = listOf(kind);
  const has = list.includes(id);
  if (on === has) return;
  if (on && selection.methods.length + selection.experiments.length >= MAX_PICKED) {
    showMessage(`At most ${MAX_PICKED} curves can be compared; untick one first.`);
    syncBoxes();
    return;
  }
  if (on) list.push(id);
  else list.splice(list.indexOf(id), 1);
  writeCompareUrl();
  syncBoxes();
  load();
}

function syncBoxes() {
  for (const box of document.querySelectorAll("input[data-compare-id]")) {
    const [kind, ...rest] = box.dataset.compareId.split(":");
    const on = listOf(kind).includes(rest.join(":"));
    if (box.checked !== on) box.checked = on;
  }
}

// ---------------------------------------------------------------------------------------------
// Entry point (app.js)
// ---------------------------------------------------------------------------------------------

/** Wires the section. `ctx.isStatic()` and `ctx.getSnapshot()` as for the other sections. */
export function initCompare(ctx) {
  cmp.ctx = ctx;
  Object.assign(selection, readCompareUrl());
  els.section = document.getElementById("compare");
  // The checkboxes live in the tables: they work (and fill the URL) with or without this section.
  addRowDecorator((exp) => compareBox("experiment", exp.id));
  document.addEventListener("change", (e) => {
    const box = e.target.closest?.("input[data-compare-id]");
    if (!box) return;
    const [kind, ...rest] = box.dataset.compareId.split(":");
    setCompared(kind, rest.join(":"), box.checked);
  });
  window.addEventListener("popstate", () => {
    const next = readCompareUrl();
    if (JSON.stringify(next) === JSON.stringify(selection)) return;
    Object.assign(selection, next);
    syncBoxes();
    load();
  });
  if (!els.section) return;
  const q = (sel) => els.section.querySelector(sel);
  els.summary = q("#compare-summary");
  els.hint = q(".compare-hint");
  els.picked = q(".compare-picked");
  els.message = q(".compare-message");
  els.charts = q(".compare-charts");
  els.diff = q(".compare-diff");
  els.picked.addEventListener("click", (e) => {
    const button = e.target.closest("button[data-remove]");
    if (!button) return;
    const [kind, ...rest] = button.dataset.remove.split(":");
    setCompared(kind, rest.join(":"), false);
  });
  els.charts.addEventListener("click", (e) => {
    const button = e.target.closest("button[data-download]");
    if (!button) return;
    download(button.dataset.set, button.dataset.download).catch((err) => showMessage(`The download failed (${err.message}).`));
  });
  document.addEventListener("codecdash:results", () => scheduleLoad()); // app.js drawLater
  document.addEventListener("codecdash:bdview", () => draw());
  load();
}

function showMessage(text) {
  if (!els.message) return;
  setChildren(els.message, text);
  setHidden(els.message, !text);
}

// ---------------------------------------------------------------------------------------------
// Loading
// ---------------------------------------------------------------------------------------------

const loader = reloader(() => {
  draw(); // the picks at once; the curves when they come
  return fetchAll();
}, RELOAD_MS);

function scheduleLoad() {
  if (selection.methods.length || selection.experiments.length) loader.soon();
}

function load() {
  return els.section ? loader.now() : Promise.resolve();
}

async function fetchAll() {
  const snap = cmp.ctx.getSnapshot?.();
  const fromSnapshot = cmp.ctx.isStatic();
  const recent = Array.isArray(snap?.recent_experiments) ? snap.recent_experiments : [];
  const methods = new Map();
  const experiments = new Map();
  const errors = [];
  const noted = (what) => (err) => {
    if (err instanceof ApiError && err.status === 401) return null;
    errors.push(`${what}: ${err.message}`);
    return null;
  };
  const anchorsP = fromSnapshot || !(selection.methods.length || selection.experiments.length)
    ? Promise.resolve({ data: { items: Array.isArray(snap?.anchors) ? snap.anchors : [] } })
    : getJSON(apiUrl("api/v1/anchors")).catch(noted("the anchors"));
  const methodPs = selection.methods.map(async (m) => {
    if (fromSnapshot) return methods.set(m, recent.filter((e) => (e.method ?? e.id) === m));
    const res = await fetchExperiments({ method: m, limit: METHOD_LIMIT }).catch(noted(`method ${m}`));
    if (res) methods.set(m, (Array.isArray(res.data?.items) ? res.data.items : []).filter((e) => (e.method ?? e.id) === m));
  });
  const expPs = selection.experiments.map(async (id) => {
    if (fromSnapshot) {
      const exp = recent.find((e) => e.id === id);
      if (exp) experiments.set(id, exp);
      else errors.push(`experiment ${id}: not in this export`);
      return;
    }
    const res = await fetchExperiment(id).catch(noted(`experiment ${id}`));
    if (res?.data) experiments.set(id, res.data);
  });
  const vocabP = loadVocabulary()
    .then((vocab) => {
      cmp.vocab = vocab;
    })
    .catch(noted("the rate-distortion rules"));
  const [anchors] = await Promise.all([anchorsP, vocabP, ...methodPs, ...expPs]);
  if (anchors) cmp.anchors = (Array.isArray(anchors.data?.items) ? anchors.data.items : []).filter((a) => a && typeof a.name === "string");
  cmp.methods = methods;
  cmp.experiments = experiments;
  cmp.error = errors.length ? `Some of the comparison could not be loaded (${errors.join("; ")}).` : "";
  draw();
}

// ---------------------------------------------------------------------------------------------
// Drawing
// ---------------------------------------------------------------------------------------------

function quality() {
  return new URLSearchParams(window.location.search).get("bd_quality") === "ms_ssim" ? "ms_ssim" : "psnr";
}

const setOf = (thing) => (typeof thing?.dataset === "string" && thing.dataset ? thing.dataset : UNSPECIFIED);
const averagePoints = (points) => (Array.isArray(points) ? points.filter((p) => p && !p.sequence) : []);

/** Test set → {unit, curves}: the anchors of the set, then each picked method and experiment. */
function curvesBySet() {
  const vocab = cmp.vocab;
  if (!vocab) return new Map(); // the server's rules (rate units, quality fields) come first
  const q = quality();
  const unitOf = (points) => rateUnitOf(vocab, points);
  const sets = new Map();
  const add = (set, curve) => {
    if (!sets.has(set)) sets.set(set, []);
    sets.get(set).push(curve);
  };
  let colour = 0;
  for (const m of selection.methods) {
    const bySet = new Map();
    for (const e of cmp.methods.get(m) || []) {
      bySet.set(setOf(e), [...(bySet.get(setOf(e)) || []), ...averagePoints(e.rd_points)]);
    }
    const c = colour++ % PALETTE;
    for (const [set, points] of bySet) add(set, { kind: "method", name: m, color: c, raw: points });
  }
  for (const id of selection.experiments) {
    const e = cmp.experiments.get(id);
    const c = colour++ % PALETTE;
    if (e) add(setOf(e), { kind: "experiment", name: e.name || e.id, color: c, raw: averagePoints(e.rd_points) });
  }
  const out = new Map();
  for (const [set, picked] of [...sets.entries()].sort((a, b) => a[0].localeCompare(b[0]))) {
    const anchors = cmp.anchors.filter((a) => setOf(a) === set).map((a, i) => ({ kind: "anchor", name: a.name, color: (colour + i) % PALETTE, raw: averagePoints(a.rd_points) }));
    const all = [...anchors, ...picked];
    const units = all.map((c) => unitOf(c.raw)).filter(Boolean);
    const unit = vocab.rate_units.map((u) => u.name).find((name) => units.includes(name)) ?? null;
    const curves = all
      .map((c) => ({ ...c, points: unitOf(c.raw) === unit ? curvePoints(vocab, c.raw, unit, q) : [] }))
      .filter((c) => c.points.length);
    const left = all.filter((c) => !curves.some((k) => k.kind === c.kind && k.name === c.name)).map((c) => c.name);
    out.set(set, { unit, curves, left });
  }
  return out;
}

function draw() {
  if (!els.section) return;
  const picked = [...selection.methods.map((m) => ["method", m]), ...selection.experiments.map((id) => ["experiment", id])];
  setHidden(els.hint, picked.length > 0);
  setChildren(
    els.picked,
    ...picked.map(([kind, id]) => {
      const label = kind === "experiment" ? cmp.experiments.get(id)?.name || id : id;
      return h(
        "li",
        { class: "compare-chip" },
        h("span", { class: "muted" }, kind === "method" ? "Method " : "Experiment "),
        label,
        h("button", { type: "button", class: "icon-button compare-remove", "data-remove": `${kind}:${id}`, "aria-label": `Stop comparing ${label}` }, "×"),
      );
    }),
  );
  const summary = picked.length ? `${picked.length} picked` : "";
  if (els.summary.textContent !== summary) els.summary.textContent = summary;
  if (!loader.busy() || cmp.error) showMessage(cmp.error);
  drawCharts(picked.length ? curvesBySet() : new Map());
  drawDiff();
}

function drawCharts(sets) {
  const kept = new Set();
  for (const [set, view] of sets) {
    kept.add(set);
    let fig = [...els.charts.children].find((el) => el.dataset.set === set);
    if (!fig) {
      fig = h(
        "figure",
        { class: "compare-set", "data-set": set },
        h("h3", {}, set),
        h("div", { class: "chart compare-chart", role: "img", "aria-label": `R-D curves on ${set}` }),
        h("ul", { class: "rd-key" }),
        h(
          "div",
          { class: "compare-actions" },
          h("button", { type: "button", class: "button", "data-download": "svg", "data-set": set }, "Download SVG"),
          h("button", { type: "button", class: "button", "data-download": "png", "data-set": set }, "Download PNG"),
        ),
        h("p", { class: "compare-left muted" }),
        h("div", { class: "compare-table" }),
      );
      els.charts.append(fig);
    }
    drawSet(fig, set, view);
  }
  for (const fig of [...els.charts.children]) {
    if (kept.has(fig.dataset.set)) continue;
    removeChart(fig.querySelector(".compare-chart"));
    fig.remove();
  }
}

function chartColour(c) {
  return cssVar(`--rd-c${c.color + 1}`);
}

function qLabel() {
  return term(cmp.vocab?.quality_metrics, quality())?.axis_label || quality();
}

function drawSet(fig, set, { unit, curves, left }) {
  const box = fig.querySelector(".compare-chart");
  const keyItems = curves.map((c) =>
    h("li", {}, h("span", { class: `rd-swatch ${c.kind === "anchor" ? "rd-dash" : "rd-line"} rd-c${c.color + 1}`, "aria-hidden": "true" }), c.name, h("span", { class: "muted" }, ` (${c.kind})`)),
  );
  setChildren(fig.querySelector(".rd-key"), ...keyItems);
  setChildren(fig.querySelector(".compare-left"), left.length ? `No ${unit || ""} R-D points to draw for: ${left.join(", ")}.` : "");
  for (const b of fig.querySelectorAll("button[data-download]")) b.disabled = !curves.length;
  const label = curves.length
    ? `R-D curves on ${set}: ${qLabel()} against ${unit === "bpp" ? "bits per pixel" : "bitrate in kbps"} (log scale). ${curves.map((c) => `${c.name} (${c.kind}, ${c.points.length} points)`).join("; ")}. The data table follows.`
    : `R-D curves on ${set}: nothing to draw.`;
  if (box.getAttribute("aria-label") !== label) box.setAttribute("aria-label", label);
  if (!curves.length) {
    removeChart(box);
    setChildren(box, h("p", { class: "chart-empty" }, "No rate-distortion points to draw on this set."));
    setChildren(fig.querySelector(".compare-table"));
    return;
  }
  const rows = curves.flatMap((c) => c.points.map((p) => h("tr", {}, h("td", {}, c.name), h("td", {}, c.kind), h("td", { class: "num" }, rateText(p[0], unit)), h("td", { class: "num" }, `${p[1].toFixed(2)} dB`))));
  setChildren(
    fig.querySelector(".compare-table"),
    h(
      "details",
      {},
      h("summary", {}, "Data table"),
      h(
        "div",
        { class: "rd-table-wrap" },
        h(
          "table",
          { class: "data-table" },
          h("caption", { class: "sr-only" }, `R-D points on ${set}`),
          h("thead", {}, h("tr", {}, ["Curve", "Kind", unit === "bpp" ? "Bits per pixel" : "Bitrate", qLabel()].map((t, i) => h("th", { scope: "col", class: i > 1 ? "num" : null }, t)))),
          h("tbody", {}, rows),
        ),
      ),
    ),
  );
  const series = curves.map((c) => {
    const color = chartColour(c);
    const dashed = c.kind === "anchor";
    return { label: c.name, stroke: color, width: dashed ? 1.5 : 2, ...(dashed ? { dash: [7, 5] } : {}), spanGaps: true, points: { show: true, size: 6, width: 1.5, stroke: color, fill: dashed ? cssVar("--surface") : color } };
  });
  const options = () => rdChartOptions(unit, qLabel(), series);
  drawUPlot(box, options, align(curves), `compare:${set}:${unit}:${quality()}:${JSON.stringify(curves.map((c) => [c.kind, c.name, c.color]))}`);
}

async function download(set, format) {
  const view = curvesBySet().get(set);
  if (!view || !view.curves.length) return;
  // Imported on the first download: a visit that downloads nothing never loads them.
  const [{ chartSvg }, { savePng, saveSvg }] = await Promise.all([import("./compare-svg.js"), import("./download.js")]);
  const xs = view.curves.flatMap((c) => c.points.map((p) => p[0]));
  const ys = view.curves.flatMap((c) => c.points.map((p) => p[1]));
  const svg = chartSvg({
    title: `${set}: rate-distortion`,
    curves: view.curves.map((c) => ({ name: c.name, color: chartColour(c), dashed: c.kind === "anchor", points: c.points })),
    xRange: logRange(Math.min(...xs), Math.max(...xs)),
    yRange: [Math.floor(Math.min(...ys) - 0.5), Math.ceil(Math.max(...ys) + 0.5)],
    xLabel: view.unit === "bpp" ? "Bits per pixel (log scale)" : "Bitrate, kbps (log scale)",
    yLabel: qLabel(),
    xFormat: fmtRate(view.unit),
    colors: { surface: cssVar("--surface"), text: cssVar("--text"), axis: cssVar("--chart-axis"), grid: cssVar("--chart-grid") },
  });
  const name = `rd-${set.replace(/[^A-Za-z0-9._-]+/g, "_")}`;
  if (format === "svg") saveSvg(svg, `${name}.svg`);
  else await savePng(svg, `${name}.png`);
}

// ---------------------------------------------------------------------------------------------
// The params/tags diff
// ---------------------------------------------------------------------------------------------

function shown(v) {
  if (v === undefined || v === null) return "—";
  return typeof v === "string" ? v : JSON.stringify(v);
}

function drawDiff() {
  const exps = selection.experiments.map((id) => cmp.experiments.get(id)).filter(Boolean);
  if (exps.length < 2) {
    setChildren(els.diff, selection.experiments.length ? h("p", { class: "muted" }, "Tick two or more experiments to see how their params and tags differ.") : null);
    return;
  }
  const keys = [...new Set(exps.flatMap((e) => Object.keys(e.params && typeof e.params === "object" ? e.params : {})))].sort();
  const fields = [
    ["Method", (e) => e.method ?? null],
    ["Test set", (e) => e.dataset ?? null],
    ...keys.map((k) => [k, (e) => e.params?.[k]]),
    ["Tags", (e) => (Array.isArray(e.tags) ? [...e.tags].sort().join(", ") : null)],
  ];
  const differing = fields.filter(([, get]) => new Set(exps.map((e) => shown(get(e)))).size > 1);
  if (!differing.length) {
    setChildren(els.diff, h("p", { class: "muted" }, "These experiments have the same params and tags."));
    return;
  }
  const first = exps[0];
  setChildren(
    els.diff,
    h(
      "div",
      { class: "table-wrap" },
      h(
        "table",
        { class: "data-table compare-diff-table" },
        h("caption", {}, `What differs between the ${exps.length} experiments (highlighted: not as in the first)`),
        h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Setting"), exps.map((e) => h("th", { scope: "col" }, e.name || e.id)))),
        h(
          "tbody",
          {},
          differing.map(([label, get]) =>
            h(
              "tr",
              {},
              h("th", { scope: "row" }, label),
              exps.map((e) => {
                const value = shown(get(e));
                const differs = e !== first && value !== shown(get(first));
                return h("td", { class: differs ? "is-diff" : null }, differs ? h("mark", {}, value) : value);
              }),
            ),
          ),
        ),
      ),
    ),
  );
}
