// Charts: best-so-far progress lines (uPlot, vendored and loaded on demand), the rate-distortion
// curve of one experiment, and the cost donut (hand-written SVG). Every chart has a text
// alternative: an aria-label on its role="img" box and a data table a screen reader reaches.

import { h, s, setChildren } from "./dom.js";
import { formatDateTime, formatPct, formatUsd, formatUsdWhole, humanize, isNum, parseTime } from "./format.js";

const UPLOT_SRC = "./vendor/uPlot-1.6.32.iife.min.js";
const UPLOT_CSS = "./vendor/uPlot-1.6.32.min.css";
const CHART_HEIGHT = 220;
let uPlotPromise = null;

/**
 * Loads the vendored uPlot once, when the first chart scrolls into view: its stylesheet and
 * the classic script that defines window.uPlot. Neither blocks the first paint.
 */
export function loadUPlot() {
  if (window.uPlot) return Promise.resolve(window.uPlot);
  if (!uPlotPromise) {
    if (!document.querySelector("link[data-uplot]")) {
      const css = document.createElement("link");
      css.rel = "stylesheet";
      css.href = new URL(UPLOT_CSS, import.meta.url).href;
      css.dataset.uplot = "";
      document.head.append(css);
    }
    uPlotPromise = new Promise((resolve, reject) => {
      const script = document.createElement("script");
      script.src = new URL(UPLOT_SRC, import.meta.url).href;
      script.addEventListener("load", () => resolve(window.uPlot));
      script.addEventListener("error", () => {
        uPlotPromise = null;
        reject(new Error("The chart library could not be loaded"));
      });
      document.head.append(script);
    });
  }
  return uPlotPromise;
}

/** The value of a CSS custom property on <html>, e.g. cssVar("--chart-line"). */
export function cssVar(name) {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
}

// Live uPlot instances by box element (so they can be updated, resized, re-themed, destroyed),
// and the charts still waiting to scroll into view: uPlot is fetched and drawn only then.
const plots = new Map();
const waiting = new Map();
let viewObserver = null;

function whenVisible(box, draw) {
  if (typeof IntersectionObserver === "undefined") {
    draw();
    return;
  }
  viewObserver ??= new IntersectionObserver(
    (entries) => {
      for (const entry of entries) {
        if (!entry.isIntersecting) continue;
        const pending = waiting.get(entry.target);
        waiting.delete(entry.target);
        viewObserver.unobserve(entry.target);
        pending?.();
      }
    },
    { rootMargin: "200px 0px" },
  );
  waiting.set(box, draw);
  viewObserver.observe(box);
}

function destroyPlot(box) {
  if (waiting.delete(box)) viewObserver?.unobserve(box);
  const entry = plots.get(box);
  if (!entry) return;
  entry.observer.disconnect();
  entry.plot.destroy();
  plots.delete(box);
}

const FONT = "12px system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif";

/**
 * A uPlot axis in the page's chart colours (every chart of the page draws its axes with it);
 * with `valueFormat`, its ticks are formatted (gaps stay blank); with `label`, it is named.
 */
export function axisStyle(valueFormat = null, label = "") {
  const grid = cssVar("--chart-grid");
  return {
    stroke: cssVar("--chart-axis"),
    grid: { stroke: grid, width: 1 },
    ticks: { stroke: grid, width: 1, size: 4 },
    font: FONT,
    ...(valueFormat ? { values: (_u, vals) => vals.map((v) => (v === null || v === undefined ? "" : valueFormat(v))) } : {}),
    ...(label ? { label, labelSize: 18, labelFont: `600 ${FONT}` } : {}),
  };
}

function axis(valueFormat) {
  return { ...axisStyle(), ...(valueFormat ? { values: (_u, vals) => vals.map(valueFormat), size: 58 } : {}) };
}

function setAttr(el, name, value) {
  if (el.getAttribute(name) !== value) el.setAttribute(name, value);
}

function boxSize(box) {
  return {
    width: Math.max(160, Math.floor(box.clientWidth || 300)),
    height: Math.max(160, Math.floor(box.clientHeight || CHART_HEIGHT)),
  };
}

/**
 * Creates a uPlot filling `box` (sized by CSS; the plot is absolutely placed inside it, so it
 * never feeds back into the box's size). `makeOptions` is called again to re-theme it.
 */
function mountPlot(box, makeOptions, data, key) {
  const uPlot = window.uPlot;
  destroyPlot(box);
  box.replaceChildren();
  const plot = new uPlot({ ...makeOptions(), ...boxSize(box) }, data, box);
  let frame = 0;
  const observer = new ResizeObserver(() => {
    cancelAnimationFrame(frame);
    frame = requestAnimationFrame(() => {
      const size = boxSize(box);
      if (Math.abs(size.width - plot.width) > 1 || Math.abs(size.height - plot.height) > 1) plot.setSize(size);
    });
  });
  observer.observe(box);
  plots.set(box, { plot, observer, makeOptions, data, key, dataKey: JSON.stringify(data) });
}

/**
 * Draws `data` in `box`: new data for the same kind of chart (same `key`) only redraws the
 * canvas; otherwise the chart is (re)built once the box is in view.
 */
function drawChart(box, makeOptions, data, key) {
  const entry = plots.get(box);
  const dataKey = JSON.stringify(data);
  if (entry && entry.key === key) {
    if (entry.dataKey !== dataKey) {
      entry.data = data;
      entry.dataKey = dataKey;
      entry.plot.setData(data);
    }
    return;
  }
  whenVisible(box, () =>
    loadUPlot()
      .then(() => {
        if (box.isConnected) mountPlot(box, makeOptions, data, key);
      })
      .catch((err) => {
        box.replaceChildren(h("p", { class: "chart-empty" }, `${err.message}; the data table has the figures.`));
      }),
  );
}

/** Re-creates every chart with the current theme's colours (after a theme change). */
export function rethemeCharts() {
  for (const [box, entry] of [...plots.entries()]) mountPlot(box, entry.makeOptions, entry.data, entry.key);
}

function dataTable(caption, headers, rows) {
  return h(
    "table",
    { class: "data-table" },
    h("caption", { class: "sr-only" }, caption),
    h("thead", {}, h("tr", {}, headers.map((label) => h("th", { scope: "col" }, label)))),
    h("tbody", {}, rows.map((cells) => h("tr", {}, cells.map((c) => h("td", {}, c))))),
  );
}

/**
 * Draws a best-so-far line with its target in `section` (which holds .chart, .chart-summary and
 * .chart-table). `spec` comes from CHARTS in app.js.
 */
export function renderProgressChart(section, chart, snap) {
  const box = section.querySelector(".chart");
  const summary = section.querySelector(".chart-summary");
  const tableHost = section.querySelector(".chart-table");
  const spec = { ...chart, ...chart.series(snap) };
  const points = (Array.isArray(spec.points) ? spec.points : [])
    .map((p) => ({ t: parseTime(p.t), v: p[spec.field] }))
    .filter((p) => p.t && isNum(p.v))
    .sort((a, b) => a.t - b.t);
  const target = spec.target;
  const targetText = isNum(target) ? spec.format(target) : "not set";

  if (!points.length) {
    destroyPlot(box);
    delete tableHost.dataset.key;
    box.setAttribute("aria-label", `${spec.title}: no completed experiments yet.`);
    box.replaceChildren(h("p", { class: "chart-empty" }, spec.empty));
    summary.textContent = `Target ${targetText}`;
    tableHost.replaceChildren();
    return;
  }

  const best = points[points.length - 1];
  setChildren(
    summary,
    h("span", {}, h("span", { class: "key-line", "aria-hidden": "true" }), "Best so far ", h("strong", {}, spec.format(best.v))),
    h("span", {}, h("span", { class: "key-target", "aria-hidden": "true" }), `Target ${targetText}`),
  );
  setAttr(
    box,
    "aria-label",
    `${spec.title}: best ${spec.format(best.v)} reached ${formatDateTime(best.t)}, target ${targetText}; ` +
      `${points.length} improvement${points.length === 1 ? "" : "s"} since ${formatDateTime(points[0].t)}. ` +
      "The data table follows the chart.",
  );
  const tableKey = `${spec.column}|${targetText}|${points.map((p) => `${p.t.getTime()}:${p.v}`).join(",")}`;
  if (tableHost.dataset.key === tableKey) return drawProgress(box, spec, snap, points, target);
  tableHost.dataset.key = tableKey;
  const wasOpen = Boolean(tableHost.querySelector("details")?.open);
  tableHost.replaceChildren(
    h(
      "details",
      { open: wasOpen },
      h("summary", {}, "Data table"),
      dataTable(
        `${spec.title}: best so far over time`,
        ["Time", spec.column],
        points.map((p) => [h("time", { datetime: p.t.toISOString() }, formatDateTime(p.t)), spec.format(p.v)]),
      ),
    ),
  );

  drawProgress(box, spec, snap, points, target);
}

function drawProgress(box, spec, snap, points, target) {
  const best = points[points.length - 1];
  // The step holds the best value until now (the snapshot's time, to the minute: redrawing
  // for every second that passes is not worth it).
  const end = parseTime(snap.generated_at);
  const xs = points.map((p) => p.t.getTime() / 1000);
  const ys = points.map((p) => p.v);
  const real = xs.length;
  const endX = end ? Math.floor(end.getTime() / 60000) * 60 : null;
  if (endX && endX > xs[xs.length - 1]) {
    xs.push(endX);
    ys.push(best.v);
  }
  const tg = xs.map(() => (isNum(target) ? target : null));
  const options = () => ({
    legend: { show: false },
    cursor: { drag: { x: false, y: false }, points: { size: 8 } },
    scales: {
      x: { time: true },
      y: {
        range: (_u, min, max) => {
          const span = max - min || Math.abs(max) || 1;
          return [min - span * 0.15, max + span * 0.15];
        },
      },
    },
    axes: [axis(null), axis(spec.axis)],
    series: [
      {},
      {
        label: spec.column,
        stroke: cssVar("--chart-line"),
        fill: cssVar("--chart-fill"),
        width: 2,
        paths: window.uPlot.paths.stepped({ align: 1 }),
        // Markers on the real improvements only, not on the "until now" end of the step.
        points: { show: false, size: 6, fill: cssVar("--chart-line"), filter: () => [...Array(real).keys()] },
        value: (_u, v) => (v === null ? "—" : spec.format(v)),
      },
      {
        label: "Target",
        stroke: cssVar("--chart-target"),
        width: 1.5,
        dash: [6, 4],
        points: { show: false },
        value: (_u, v) => (v === null ? "—" : spec.format(v)),
      },
    ],
  });
  drawChart(box, options, [xs, ys, tg], `progress:${spec.field}:${real}`);
}

/** The rate-distortion curve of one experiment (inside the details dialog). */
export function renderRdChart(box, points, rateKey, rateLabel) {
  destroyPlot(box);
  const sorted = points
    .filter((p) => isNum(p[rateKey]) && isNum(p.psnr_db))
    .sort((a, b) => a[rateKey] - b[rateKey]);
  if (sorted.length < 2) {
    box.replaceChildren(h("p", { class: "chart-empty" }, "Too few points with PSNR for a curve."));
    return;
  }
  const options = () => ({
    legend: { show: false },
    cursor: { drag: { x: false, y: false } },
    scales: { x: { time: false }, y: { range: (_u, min, max) => [Math.floor(min - 0.5), Math.ceil(max + 0.5)] } },
    axes: [
      { ...axis((v) => String(v)), label: rateLabel, labelSize: 20, size: 40 },
      { ...axis((v) => `${v} dB`), label: "PSNR", labelSize: 20 },
    ],
    series: [
      {},
      { label: "PSNR", stroke: cssVar("--chart-line"), width: 2, points: { show: true, size: 7, fill: cssVar("--chart-line") } },
    ],
  });
  drawChart(box, options, [sorted.map((p) => p[rateKey]), sorted.map((p) => p.psnr_db)], "rd");
}

/** Removes charts whose boxes have left the page (the dialog's, when it closes). */
export function pruneCharts() {
  for (const box of [...plots.keys(), ...waiting.keys()]) if (!box.isConnected) destroyPlot(box);
}

const COMPONENT_CLASSES = ["training", "inference", "storage", "orchestrator", "other"];

/**
 * The cost donut: an SVG ring of stroke-dasharray arcs (no inline style, CSP-safe) and a legend
 * table with each component's dollar figure and share, which is also the text alternative.
 */
export function renderDonut(figure, legend, items) {
  const rows = (items || [])
    .filter((r) => r && isNum(r.usd) && r.usd >= 0)
    .sort((a, b) => b.usd - a.usd);
  const total = rows.reduce((sum, r) => sum + r.usd, 0);
  if (!rows.length || total <= 0) {
    figure.replaceChildren(h("p", { class: "chart-empty" }, "No costs recorded this month yet. They appear as cost records arrive."));
    legend.replaceChildren();
    return;
  }
  const r = 48;
  const c = 2 * Math.PI * r;
  const gap = rows.filter((row) => row.usd > 0).length > 1 ? 1.2 : 0;
  const label = `Cost breakdown, total ${formatUsd(total)}: ` +
    rows.map((row) => `${humanize(row.component)} ${formatUsd(row.usd)} (${formatPct((row.usd / total) * 100)})`).join(", ");
  const ring = s("g", { transform: "rotate(-90 60 60)" });
  let offset = 0;
  rows.forEach((row, i) => {
    const len = (row.usd / total) * c;
    const cls = COMPONENT_CLASSES.includes(row.component) ? row.component : `extra-${i % 3}`;
    if (len > 0) {
      ring.append(
        s("circle", {
          class: `donut-seg seg-${cls}`,
          cx: 60,
          cy: 60,
          r,
          fill: "none",
          "stroke-width": 18,
          "stroke-dasharray": `${Math.max(len - gap, 0.5).toFixed(2)} ${(c - Math.max(len - gap, 0.5)).toFixed(2)}`,
          "stroke-dashoffset": (-offset).toFixed(2),
        }),
      );
    }
    offset += len;
    row.cls = cls;
  });
  figure.replaceChildren(
    s(
      "svg",
      { viewBox: "0 0 120 120", role: "img", "aria-label": label, class: "donut", focusable: "false" },
      s("circle", { class: "donut-track", cx: 60, cy: 60, r, fill: "none", "stroke-width": 18 }),
      ring,
      s("text", { x: 60, y: 58, class: "donut-total", "text-anchor": "middle" }, formatUsdWhole(total)),
      s("text", { x: 60, y: 74, class: "donut-caption", "text-anchor": "middle" }, "this month"),
    ),
  );
  legend.replaceChildren(
    h(
      "table",
      { class: "legend-table" },
      h("caption", { class: "sr-only" }, "Cost by component"),
      h(
        "thead",
        {},
        h("tr", {}, h("th", { scope: "col" }, "Component"), h("th", { scope: "col", class: "num" }, "Cost"), h("th", { scope: "col", class: "num" }, "Share")),
      ),
      h(
        "tbody",
        {},
        rows.map((row) =>
          h(
            "tr",
            {},
            h("th", { scope: "row" }, h("span", { class: `swatch seg-${row.cls}`, "aria-hidden": "true" }), humanize(row.component)),
            h("td", { class: "num" }, formatUsd(row.usd)),
            h("td", { class: "num" }, formatPct((row.usd / total) * 100)),
          ),
        ),
      ),
      h(
        "tfoot",
        {},
        h("tr", {}, h("th", { scope: "row" }, "Total"), h("td", { class: "num" }, formatUsd(total)), h("td", { class: "num" }, "100.0 %")),
      ),
    ),
  );
}

// For uPlot charts drawn by other modules (rd.js): drawn once in view, resized, re-themed and
// removed like the ones above. `drawUPlot(box, makeOptions, data, key)`; `removeChart(box)`.
export { drawChart as drawUPlot, destroyPlot as removeChart };
