// One metric of one or several experiments on one chart: the overlay of training curves.
//
// Self-contained, so that any view can use it (the details dialog does; a compare view can):
//
//   drawOverlay(box, {
//     metric: "loss",
//     runs: [{ id, label, series }],   // series from curve-data.js's decodeSeries; the first
//                                      // run is the main one (its min–max band is drawn)
//     log: false,                      // log-scale y axis (values ≤ 0 are left out)
//     smoothing: 0.6,                  // EMA weight, 0–0.99; the raw curve stays, faint
//     x: "step",                       // or "time": wall time
//   });
//
// `box` is a `.chart` element (sized by CSS); the chart is drawn through charts.js (uPlot
// loaded on demand, resized, re-themed) and `box` gets an aria-label, its text alternative.
// NaN and infinite values cannot be drawn as points: each one gets a marker on the plot's
// edge (top for NaN and +∞, bottom for −∞), in the run's colour, and the aria-label says
// from which step. Run colours are the palette's --rd-c1 … --rd-c10 (class `rd-cN`).

import { axisStyle, cssVar, drawUPlot } from "./charts.js";
import { formatCount, formatDateTime } from "./format.js";
import { formatValue, nonFinite, smooth, summarize } from "./curve-data.js";

const PALETTE = 10;
const latest = new WeakMap(); // box → what its NaN markers draw (read by the draw hook)

/** The class giving run `i` its colour (`--swatch` for keys, as the R-D chart's). */
export function runClass(i) {
  return `rd-c${(i % PALETTE) + 1}`;
}

function runColor(i) {
  return cssVar(`--rd-c${(i % PALETTE) + 1}`);
}

function withAlpha(color, alpha) {
  const m = /^#([0-9a-f]{6})$/i.exec(color);
  if (!m) return color;
  const n = Number.parseInt(m[1], 16);
  return `rgba(${n >> 16}, ${(n >> 8) & 255}, ${n & 255}, ${alpha})`;
}

/** Aligns runs' [x, ...ys] tables on the union of their x values (null where a run has none). */
function align(tables) {
  const xs = [...new Set(tables.flatMap((t) => t[0]))].sort((a, b) => a - b);
  const at = new Map(xs.map((x, i) => [x, i]));
  const out = [xs];
  for (const [tx, ...ys] of tables) {
    for (const y of ys) {
      const col = new Array(xs.length).fill(null);
      tx.forEach((x, i) => {
        col[at.get(x)] = y[i];
      });
      out.push(col);
    }
  }
  return out;
}

function plotted(values, log) {
  return values.map((v) => (Number.isFinite(v) && (!log || v > 0) ? v : null));
}

/** Draws the overlay; returns its text alternative (also set as the box's aria-label). */
export function drawOverlay(box, spec) {
  const { metric, runs, log = false, x = "step" } = spec;
  const weight = Math.min(0.99, Math.max(0, Number(spec.smoothing) || 0));
  const tables = [];
  const series = [{}];
  const bands = [];
  const markers = [];
  runs.forEach((run, i) => {
    const s = run.series;
    const color = runColor(i);
    let xs = x === "time" ? s.time : s.step;
    let order = null;
    if (x === "time" && xs.some((v, k) => k > 0 && v < xs[k - 1])) {
      order = xs.map((_v, k) => k).sort((a, b) => xs[a] - xs[b]);
      xs = order.map((k) => xs[k]);
    }
    const pick = (a) => (order ? order.map((k) => a[k]) : a);
    const values = pick(s.value);
    const ys = [plotted(values, log)];
    const main = i === 0;
    if (weight > 0) ys.push(plotted(smooth(values, weight), log));
    const band = main && s.bucket > 1 && s.min && s.max;
    if (band) ys.push(plotted(pick(s.max), log), plotted(pick(s.min), log));
    tables.push([xs, ...ys]);
    const base = series.length;
    series.push({
      label: weight > 0 ? `${run.label} (raw)` : run.label,
      stroke: weight > 0 ? withAlpha(color, 0.3) : color,
      width: weight > 0 ? 1 : main ? 2 : 1.5,
      spanGaps: true,
      points: { show: false },
    });
    if (weight > 0) series.push({ label: run.label, stroke: color, width: main ? 2 : 1.5, spanGaps: true, points: { show: false } });
    if (band) {
      series.push({ label: `${run.label} max`, stroke: "transparent", width: 0, spanGaps: true, points: { show: false } });
      series.push({ label: `${run.label} min`, stroke: "transparent", width: 0, spanGaps: true, points: { show: false } });
      bands.push({ series: [base + (weight > 0 ? 2 : 1), base + (weight > 0 ? 3 : 2)], fill: withAlpha(color, 0.12) });
    }
    for (const bad of nonFinite(s)) markers.push({ x: x === "time" ? bad.time : bad.step, kind: bad.kind, color });
  });
  latest.set(box, markers);

  const data = align(tables);
  const options = () => ({
    legend: { show: false },
    cursor: { drag: { x: true, y: false }, points: { size: 6 } },
    scales: {
      x: { time: x === "time" },
      y: log ? { distr: 3, log: 10 } : {},
    },
    bands,
    axes: [
      { ...axisStyle(), ...(x === "time" ? {} : { values: (_u, vals) => vals.map((v) => formatCount(v)) }) },
      { ...axisStyle(), size: 60, values: (_u, vals) => vals.map((v) => formatValue(v)) },
    ],
    series,
    hooks: { draw: [(u) => drawMarkers(u, latest.get(box) || [])] },
  });
  const key = `overlay:${x}:${log}:${weight > 0}:${runs.map((r, i) => `${r.id}:${i === 0 && r.series.bucket > 1}`).join(",")}`;
  drawUPlot(box, options, data, key);

  const label = describe(metric, runs, x);
  if (box.getAttribute("aria-label") !== label) box.setAttribute("aria-label", label);
  return label;
}

/** Triangles on the plot's edge where values are NaN (top), +∞ (top) or −∞ (bottom). */
function drawMarkers(u, markers) {
  if (!markers.length) return;
  const { ctx } = u;
  const { left, top, width, height } = u.bbox;
  const size = 5 * devicePixelRatio;
  ctx.save();
  for (const m of markers) {
    const px = u.valToPos(m.x, "x", true);
    if (!(px >= left && px <= left + width)) continue;
    const bottom = m.kind === "−∞";
    const edge = bottom ? top + height : top;
    const dir = bottom ? -1 : 1;
    ctx.beginPath();
    ctx.moveTo(px - size, edge);
    ctx.lineTo(px + size, edge);
    ctx.lineTo(px, edge + dir * size * 1.6);
    ctx.closePath();
    ctx.fillStyle = m.color;
    ctx.fill();
  }
  ctx.restore();
}

function describe(metric, runs, x) {
  const parts = runs.map((run) => {
    const s = run.series;
    const f = summarize(s);
    if (f.lastStep === null) return `${run.label}: no points yet`;
    const bad = nonFinite(s);
    const buckets = s.bucket > 1 ? `, in buckets of ${formatCount(s.bucket)} steps` : "";
    const text =
      `${run.label}: ${formatCount(s.points)} points${buckets}; newest ${formatValue(f.last)} at step ${formatCount(f.lastStep)}` +
      (f.lowest !== null ? `, lowest ${formatValue(f.lowest)}, highest ${formatValue(f.highest)}` : "");
    return bad.length ? `${text}; ${bad[0].kind} from step ${formatCount(bad[0].step)} (${bad.length} such points)` : text;
  });
  const axis = x === "time" ? "wall time" : "step";
  const when = x === "time" && runs[0]?.series.time.length ? ` since ${formatDateTime(new Date(runs[0].series.time[0] * 1000))}` : "";
  return `${metric} against ${axis}${when}. ${parts.join(". ")}.`;
}
