// Training curves in the experiment details dialog: one chart per metric (loss first), live
// while the run logs, with a log-scale option, EMA smoothing, a step or wall-time axis, and
// the same metrics of other experiments overlaid (picked from the table; kept in the URL as
// ?cmp=ID,ID so a view can be shared). Imported with the dialog (app.js detailsDialog).
//
// Data: api/v1/experiments/{id}/metrics (downsampled to MAX_POINTS per series). Live: the
// event stream's `metrics` events (app.js hands them to onMetricsEvent) name experiments and
// their newest step; for a run on screen the page then asks only for the steps after the
// ones it has (after_step), and asks for the whole curve again when that answer is
// downsampled or the curve has grown past twice MAX_POINTS. Charts: overlay.js.

import { apiUrl, getJSON } from "./api.js";
import { appendSeries, decodeSeries, formatValue, nonFinite, summarize } from "./curve-data.js";
import { h, setChildren } from "./dom.js";
import { formatCount, formatRelative } from "./format.js";
import { drawOverlay, runClass } from "./overlay.js";

const MAX_POINTS = 1000;
const MAX_COMPARED = 5;
const URL_PARAM = "cmp";

const opts = { log: false, smoothing: 0.6, x: "step" }; // kept while the page is open
let ctx = { isStatic: () => false, candidates: () => [] };
let cur = null; // the dialog's curves: see renderCurves

/** `ctx.isStatic()`: a static export (no API); `ctx.candidates()`: experiments to offer for comparison. */
export function initCurves(context) {
  ctx = { ...ctx, ...context };
  document.addEventListener("visibilitychange", () => {
    if (document.hidden || !cur?.missed) return;
    cur.missed = false;
    for (const run of cur.runs) schedule(run);
  });
}

/** Fills `host` (a section of the details dialog) with experiment `exp`'s curves. */
export function renderCurves(host, exp) {
  stopCurves({ keepUrl: true });
  if (ctx.isStatic()) {
    host.hidden = true;
    return;
  }
  const controller = new AbortController();
  cur = {
    host,
    exp,
    controller,
    runs: [newRun(exp.id, exp.name || exp.id)],
    names: [],
    busy: new Set(),
    again: new Set(),
    missed: false,
    els: {},
  };
  buildSection(host);
  for (const id of readCompared().filter((id) => id !== exp.id)) addRun(id, nameOf(id));
  schedule(cur.runs[0], true);
}

/** The dialog closed (or shows another experiment): stop fetching, forget the overlay. */
export function stopCurves({ keepUrl = false } = {}) {
  if (!cur) return;
  cur.controller.abort();
  cur = null;
  if (!keepUrl) writeCompared([]);
}

/** A `metrics` event of the stream: `{"experiments": {id: newest step}}` (text or parsed). */
export function onMetricsEvent(data) {
  if (!cur) return;
  let steps;
  try {
    steps = (typeof data === "string" ? JSON.parse(data) : data)?.experiments || {};
  } catch {
    return;
  }
  for (const run of cur.runs) {
    const step = steps[run.id];
    if (step === undefined || step === run.lastStep) continue;
    if (document.hidden) cur.missed = true;
    else schedule(run);
  }
}

// ---------------------------------------------------------------------------------------------
// The section
// ---------------------------------------------------------------------------------------------

function newRun(id, label) {
  return { id, label, series: new Map(), lastStep: null, loaded: false, error: "" };
}

function nameOf(id) {
  const found = ctx.candidates().find((e) => e.id === id);
  return found?.name || id;
}

function buildSection(host) {
  const els = cur.els;
  host.hidden = false;
  els.status = h("p", { class: "curves-status muted" }, "Loading the training curves…");
  const log = h("input", { type: "checkbox", id: "curves-log", checked: opts.log });
  const smoothing = h("input", { type: "range", id: "curves-smoothing", min: "0", max: "0.99", step: "0.01", value: String(opts.smoothing) });
  const shown = h("output", { for: "curves-smoothing", class: "curves-smoothing-value" }, opts.smoothing.toFixed(2));
  const axis = h(
    "select",
    { id: "curves-x" },
    h("option", { value: "step", selected: opts.x === "step" }, "Step"),
    h("option", { value: "time", selected: opts.x === "time" }, "Wall time"),
  );
  log.addEventListener("change", () => {
    opts.log = log.checked;
    draw();
  });
  smoothing.addEventListener("input", () => {
    opts.smoothing = Number(smoothing.value);
    shown.textContent = opts.smoothing.toFixed(2);
    draw();
  });
  axis.addEventListener("change", () => {
    opts.x = axis.value;
    draw();
  });
  els.controls = h(
    "div",
    { class: "curves-controls" },
    h("div", { class: "field field-check" }, log, h("label", { for: "curves-log" }, "Log scale")),
    h("div", { class: "field" }, h("label", { for: "curves-smoothing" }, "Smoothing"), h("span", { class: "curves-range" }, smoothing, shown)),
    h("div", { class: "field" }, h("label", { for: "curves-x" }, "X axis"), axis),
  );
  els.picks = h("ul", { class: "curves-picks-list" });
  els.compare = h(
    "details",
    { class: "curves-compare" },
    h("summary", {}, "Compare with other experiments"),
    h("fieldset", { class: "curves-picks" }, h("legend", {}, `Overlay the curves of up to ${MAX_COMPARED} experiments from the table`), els.picks),
  );
  els.compare.addEventListener("toggle", () => {
    if (els.compare.open) renderPicks();
  });
  els.picks.addEventListener("change", (e) => {
    const input = e.target.closest("input[data-id]");
    if (!input || !cur) return;
    if (input.checked) addRun(input.dataset.id, input.dataset.label, true);
    else removeRun(input.dataset.id);
    renderPicks();
  });
  els.grid = h("div", { class: "curves-grid" });
  host.replaceChildren(h("h3", { id: "curves-title" }, "Training curves"), els.status, els.controls, els.compare, els.grid);
  host.setAttribute("aria-labelledby", "curves-title");
}

function renderPicks() {
  const chosen = new Set(cur.runs.slice(1).map((r) => r.id));
  const offered = ctx.candidates().filter((e) => e.id !== cur.runs[0].id);
  for (const id of chosen) if (!offered.some((e) => e.id === id)) offered.push({ id, name: nameOf(id) });
  const full = chosen.size >= MAX_COMPARED;
  setChildren(
    cur.els.picks,
    offered.length
      ? offered.map((e) => {
          const id = `curves-pick-${e.id}`;
          const run = cur.runs.findIndex((r) => r.id === e.id);
          return h(
            "li",
            {},
            h("input", { type: "checkbox", id, "data-id": e.id, "data-label": e.name || e.id, checked: chosen.has(e.id), disabled: full && !chosen.has(e.id) }),
            h("label", { for: id }, run > 0 ? h("span", { class: `rd-swatch ${runClass(run)}`, "aria-hidden": "true" }) : null, e.name || e.id),
          );
        })
      : h("li", { class: "muted" }, "The table shows no other experiment: filter it to find the ones to compare."),
  );
}

function addRun(id, label, announce = false) {
  if (cur.runs.some((r) => r.id === id) || cur.runs.length > MAX_COMPARED) return;
  const run = newRun(id, label || id);
  cur.runs.push(run);
  writeCompared(cur.runs.slice(1).map((r) => r.id));
  if (cur.runs[0].loaded) schedule(run, true); // else once the main run's metrics are known
  if (announce) draw();
}

function removeRun(id) {
  cur.runs = cur.runs.filter((r, i) => i === 0 || r.id !== id);
  writeCompared(cur.runs.slice(1).map((r) => r.id));
  draw();
}

// ---------------------------------------------------------------------------------------------
// Fetching: one request per run at a time; events during a request ask for one more.
// ---------------------------------------------------------------------------------------------

function schedule(run, full = !run.loaded) {
  if (!cur) return;
  const key = run.id;
  if (cur.busy.has(key)) {
    cur.again.add(key);
    return;
  }
  cur.busy.add(key);
  const state = cur;
  load(run, full)
    .catch((err) => {
      if (err?.name === "AbortError") return;
      run.error = err?.message || String(err);
      if (state === cur) draw();
    })
    .finally(() => {
      state.busy.delete(key);
      if (state === cur && state.again.delete(key)) schedule(run);
    });
}

async function load(run, full) {
  const state = cur;
  const params = { max_points: MAX_POINTS };
  const main = run === state.runs[0];
  if (!main || !full) params.names = state.names.join(",") || undefined;
  if (!full && run.lastStep !== null) params.after_step = run.lastStep;
  const url = apiUrl(`api/v1/experiments/${encodeURIComponent(run.id)}/metrics`, params);
  const { data } = await getJSON(url, { signal: state.controller.signal });
  if (state !== cur) return;
  const answer = data?.series || {};
  let again = false;
  if (full) {
    run.series = new Map(Object.entries(answer).map(([name, s]) => [name, decodeSeries(s)]));
  } else {
    for (const [name, s] of Object.entries(answer)) {
      const add = decodeSeries(s);
      if (add.bucket > 1) again = true;
      const merged = appendSeries(run.series.get(name), add);
      if (merged.step.length > 2 * MAX_POINTS) again = true;
      run.series.set(name, merged);
    }
  }
  if (main) {
    const all = Array.isArray(data?.names) ? data.names : [];
    if (full) state.names = all.filter((n) => run.series.has(n));
    else if (all.some((n) => !state.names.includes(n)) && state.names.length < all.length) again = true;
  }
  run.loaded = true;
  run.error = "";
  run.lastStep = newest(run);
  if (main && full) for (const other of state.runs.slice(1)) if (!other.loaded) schedule(other, true);
  draw();
  if (again) {
    run.loaded = false; // the next round fetches the whole curve
    state.again.add(run.id);
  }
}

function newest(run) {
  let step = null;
  for (const s of run.series.values()) {
    const last = s.step.length ? s.step[s.step.length - 1] : null;
    if (last !== null && (step === null || last > step)) step = last;
  }
  return step;
}

// ---------------------------------------------------------------------------------------------
// Drawing
// ---------------------------------------------------------------------------------------------

function draw() {
  if (!cur) return;
  const main = cur.runs[0];
  renderStatus(main);
  const figures = [];
  for (const name of cur.names) {
    let figure = cur.els.grid.querySelector(`figure[data-metric="${CSS.escape(name)}"]`);
    if (!figure) {
      figure = h(
        "figure",
        { class: "curve", "data-metric": name },
        h("figcaption", {}, h("h4", {}, name)),
        h("div", { class: "chart chart-curve", role: "img", "aria-label": `${name}: loading.` }),
        h("ul", { class: "rd-key curve-key" }),
        h("p", { class: "curve-note" }),
      );
    }
    figures.push(figure);
  }
  setChildren(cur.els.grid, ...figures);
  for (const figure of figures) drawFigure(figure, figure.dataset.metric);
}

function drawFigure(figure, name) {
  const runs = cur.runs
    .map((run, i) => ({ run, i }))
    .filter(({ run }) => run.series.has(name))
    .map(({ run, i }) => ({ id: run.id, label: run.label, series: run.series.get(name), color: i }));
  const box = figure.querySelector(".chart-curve");
  if (!runs.length || runs[0].id !== cur.runs[0].id) {
    box.replaceChildren(h("p", { class: "chart-empty" }, "No points for this metric."));
    return;
  }
  drawOverlay(box, { metric: name, runs, log: opts.log, smoothing: opts.smoothing, x: opts.x });
  // Palette positions follow the run's place in the overlay (the compare list's swatches).
  const main = runs[0].series;
  box.dataset.lastStep = String(main.step.length ? main.step[main.step.length - 1] : "");
  setChildren(
    figure.querySelector(".curve-key"),
    ...cur.runs.map((run, i) => {
      const s = run.series.get(name);
      const f = s ? summarize(s) : null;
      const what = run.error ? ` — ${run.error}` : !run.loaded ? " — loading" : !s ? " — never logged" : ` — ${formatValue(f.last)} at step ${formatCount(f.lastStep)}`;
      return h("li", {}, h("span", { class: `rd-swatch ${runClass(i)}`, "aria-hidden": "true" }), run.label, h("span", { class: "muted" }, what));
    }),
  );
  const notes = runs
    .map(({ label, series }) => {
      const bad = nonFinite(series);
      return bad.length ? `${label}: ${bad[0].kind} from step ${formatCount(bad[0].step)} (${formatCount(bad.length)} ${bad.length === 1 ? "point" : "points"} not drawn; marked on the edge).` : "";
    })
    .filter(Boolean);
  const note = figure.querySelector(".curve-note");
  const text = notes.join(" ");
  if (note.textContent !== text) note.textContent = text;
  note.hidden = !text;
  note.classList.toggle("curve-note-bad", Boolean(text));
}

function renderStatus(main) {
  const el = cur.els.status;
  let text;
  if (main.error) text = `The training curves could not be loaded: ${main.error}`;
  else if (!main.loaded) text = "Loading the training curves…";
  else if (!cur.names.length) {
    text =
      cur.exp.status === "running" || cur.exp.status === "queued"
        ? "No training step logged yet: the curves appear here as the run logs them (exp.log_step(step, loss=…))."
        : "This experiment logged no training steps.";
  } else {
    const loss = main.series.get(cur.names[0]);
    const f = summarize(loss);
    const at = loss.time.length ? new Date(loss.time[loss.time.length - 1] * 1000) : null;
    text = `Step ${formatCount(main.lastStep)}${at ? `, ${formatRelative(at)}` : ""} · ${cur.names[0]} ${formatValue(f.last)} · ${cur.names.length} ${cur.names.length === 1 ? "metric" : "metrics"}`;
  }
  if (el.textContent !== text) el.textContent = text;
  cur.els.controls.hidden = !cur.names.length;
  cur.els.compare.hidden = !cur.names.length;
}

// ---------------------------------------------------------------------------------------------
// The overlay in the URL
// ---------------------------------------------------------------------------------------------

function readCompared() {
  const raw = new URLSearchParams(window.location.search).get(URL_PARAM) || "";
  return raw
    .split(",")
    .filter((id) => id && id.length <= 128)
    .slice(0, MAX_COMPARED);
}

function writeCompared(ids) {
  const p = new URLSearchParams(window.location.search);
  if (ids.length) p.set(URL_PARAM, ids.join(","));
  else p.delete(URL_PARAM);
  const qs = p.toString();
  const url = `${window.location.pathname}${qs ? `?${qs}` : ""}${window.location.hash}`;
  if (url !== `${window.location.pathname}${window.location.search}${window.location.hash}`) {
    history.replaceState(history.state, "", url);
  }
}
