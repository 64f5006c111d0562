// The Rate-Distortion section's charts (rd.js decides what they show): the R-D chart (anchors
// dashed, experiments solid, the Pareto frontier of the experiments' points, on a log-rate axis)
// with its key, and the scatter of cost against BD-rate saving. Each chart has an aria-label
// and a data table in <details> as its text alternative. Drawn through charts.js.

import { axisStyle, cssVar, drawUPlot, removeChart } from "./charts.js";
import { align, rateText, rdChartOptions } from "./compare-curves.js";
import { h, setChildren } from "./dom.js";
import { formatPct, formatSignedPct, formatUsd, isNum } from "./format.js";

/**
 * The Pareto frontier of `points` ([rate, quality]): those that no other point beats with a
 * lower rate and a higher quality (the upper-left envelope), by rising rate.
 */
export function paretoFrontier(points) {
  const sorted = [...points].sort((a, b) => a[0] - b[0] || b[1] - a[1]);
  const out = [];
  let best = -Infinity;
  for (const p of sorted) {
    if (p[1] > best) {
      out.push(p);
      best = p[1];
    }
  }
  return out;
}

/**
 * Draws the R-D chart into `els.chart`, its key into `els.key` and its data table into
 * `els.table`. `anchors` and `experiments` are curves `{name, color, points}` ([rate, dB]
 * pairs, in `unit`); an anchor has `selected` (the BD-rate reference), an experiment `figure`
 * (its BD figure, from rd.js). `quality` is a key of the chart (redrawn when it changes).
 */
export function drawRdCurves(els, { anchors, experiments, unit, unitLabel, qLabel, quality }) {
  const frontier = paretoFrontier(experiments.flatMap((c) => c.points));
  const onFrontier = new Set(frontier.map((p) => `${p[0]}|${p[1]}`));
  const curves = [
    ...(frontier.length > 1 ? [{ kind: "frontier", name: "Pareto frontier", color: -1, points: frontier }] : []),
    ...anchors.map((c) => ({ ...c, kind: "anchor" })),
    ...experiments.map((c) => ({ ...c, kind: "experiment" })),
  ];

  renderKey(els.key, curves);
  if (!anchors.length && !experiments.length) {
    removeChart(els.chart);
    els.chart.setAttribute("aria-label", "Rate-distortion chart: no curves to show.");
    setChildren(els.chart, h("p", { class: "chart-empty" }, "No rate-distortion points to draw yet: tick an experiment, or send experiments with rd_points."));
    setChildren(els.table);
    return;
  }

  const describe = (c) => {
    if (c.kind === "anchor") return `${c.name}${c.selected ? " (the BD-rate anchor)" : ""}`;
    const pct = c.figure && isNum(c.figure.pct) ? `, BD-rate ${formatSignedPct(c.figure.pct)}` : "";
    return `${c.name}${pct}`;
  };
  const shownAnchors = curves.filter((c) => c.kind === "anchor");
  const shownExperiments = curves.filter((c) => c.kind === "experiment");
  const label =
    `Rate-distortion chart: ${qLabel} against bitrate (${unitLabel}, log scale). ` +
    (shownAnchors.length ? `Anchors, dashed: ${shownAnchors.map(describe).join("; ")}. ` : "") +
    (shownExperiments.length ? `Experiments, solid: ${shownExperiments.map(describe).join("; ")}. ` : "No experiment shown. ") +
    (frontier.length > 1 ? `The Pareto frontier of the experiments joins ${frontier.length} points. ` : "") +
    "The data table follows the chart.";
  if (els.chart.getAttribute("aria-label") !== label) els.chart.setAttribute("aria-label", label);

  const rows = curves
    .filter((c) => c.kind !== "frontier")
    .flatMap((c) =>
      c.points.map((p) => [
        c.name,
        c.kind === "anchor" ? "Anchor" : "Experiment",
        rateText(p[0], unit),
        `${p[1].toFixed(2)} dB`,
        c.kind === "experiment" && onFrontier.has(`${p[0]}|${p[1]}`) ? "Yes" : "",
      ]),
    );
  renderTable(els.table, "Rate-distortion points", ["Curve", "Kind", unit === "bpp" ? "Bits per pixel" : "Bitrate", qLabel, "On the Pareto frontier"], rows, [2, 3]);

  const meta = curves.map((c) => [c.kind, c.name, c.color, Boolean(c.selected)]);
  const data = align(curves);
  const series = curves.map((c) => {
    const color = c.kind === "frontier" ? cssVar("--rd-frontier") : cssVar(`--rd-c${c.color + 1}`);
    if (c.kind === "frontier") {
      return { label: c.name, stroke: color, width: 7, spanGaps: true, points: { show: false } };
    }
    const anchorLine = c.kind === "anchor";
    return {
      label: c.name,
      stroke: color,
      width: anchorLine ? (c.selected ? 2.5 : 1.5) : 2,
      ...(anchorLine ? { dash: [7, 5] } : {}),
      spanGaps: true,
      points: { show: true, size: anchorLine ? 5 : 6, width: 1.5, stroke: color, fill: anchorLine ? cssVar("--surface") : color },
    };
  });
  const options = () => rdChartOptions(unit, qLabel, series);
  drawUPlot(els.chart, options, data, `rd:${unit}:${quality}:${JSON.stringify(meta)}`);
}

function renderKey(box, curves) {
  const items = curves.map((c) => {
    const style = c.kind === "frontier" ? "rd-band rd-frontier" : c.kind === "anchor" ? `rd-dash rd-c${c.color + 1}` : `rd-line rd-c${c.color + 1}`;
    const what = c.kind === "frontier" ? "" : c.kind === "anchor" ? (c.selected ? " (anchor, BD-rate reference)" : " (anchor)") : "";
    return h("li", {}, h("span", { class: `rd-swatch ${style}`, "aria-hidden": "true" }), c.name, what ? h("span", { class: "muted" }, what) : null);
  });
  setChildren(box, ...items);
}

function renderTable(host, caption, headers, rows, numeric = []) {
  const key = JSON.stringify([caption, headers, rows]);
  if (host.dataset.key === key) return;
  host.dataset.key = key;
  const wasOpen = Boolean(host.querySelector("details")?.open);
  host.replaceChildren(
    h(
      "details",
      { open: wasOpen },
      h("summary", {}, "Data table"),
      h(
        "div",
        { class: "rd-table-wrap" },
        h(
          "table",
          { class: "data-table" },
          h("caption", { class: "sr-only" }, caption),
          h("thead", {}, h("tr", {}, headers.map((label, i) => h("th", { scope: "col", class: numeric.includes(i) ? "num" : null }, label)))),
          h("tbody", {}, rows.map((cells) => h("tr", {}, cells.map((c, i) => h("td", { class: numeric.includes(i) ? "num" : null }, c))))),
        ),
      ),
    ),
  );
}

/**
 * Draws the scatter of cost against BD-rate saving of `experiments` (those with both) into
 * `els.costChart`, its one-line summary into `els.costLine` and its data table into
 * `els.costTable`.
 */
export function drawCost(els, experiments) {
  const points = experiments
    .filter((e) => e && isNum(e.cost_usd) && isNum(e.bd_rate_pct))
    .map((e) => ({ e, saving: -e.bd_rate_pct, cost: e.cost_usd }))
    .sort((a, b) => a.saving - b.saving || a.cost - b.cost);
  const anchors = [...new Set(points.map((p) => p.e.bd_rate_anchor).filter(Boolean))];
  const against = anchors.length === 1 ? anchors[0] : "each experiment's anchor";
  if (!points.length) {
    removeChart(els.costChart);
    els.costChart.setAttribute("aria-label", "Cost against BD-rate: no experiment has both a cost and a BD-rate yet.");
    setChildren(els.costChart, h("p", { class: "chart-empty" }, "No completed experiment has both a cost and a BD-rate yet."));
    setChildren(els.costLine, "What each point of bitrate saving cost appears once completed experiments report cost_usd and have a BD-rate.");
    setChildren(els.costTable);
    return;
  }
  const savers = points.filter((p) => p.saving > 0);
  const best = savers.length ? savers.reduce((a, b) => (b.saving > a.saving || (b.saving === a.saving && b.cost < a.cost) ? b : a)) : null;
  const perPoint = (p) => (p.saving > 0 ? formatUsd(p.cost / p.saving) : "—");
  if (best) {
    setChildren(
      els.costLine,
      h("strong", {}, `${perPoint(best)} per point of saving`),
      ` for the best experiment, ${best.e.name || best.e.id}: ${formatPct(best.saving)} fewer bits than ${against} for ${formatUsd(best.cost)}.`,
    );
  } else {
    setChildren(els.costLine, `No experiment saves bits against ${against} yet.`);
  }
  const label =
    `Cost against BD-rate: ${points.length} completed experiment${points.length === 1 ? "" : "s"}, ` +
    `cost from ${formatUsd(Math.min(...points.map((p) => p.cost)))} to ${formatUsd(Math.max(...points.map((p) => p.cost)))}, ` +
    `bitrate saving against ${against} from ${formatPct(points[0].saving)} to ${formatPct(points[points.length - 1].saving)}` +
    (best ? `; the best, ${best.e.name || best.e.id}, costs ${perPoint(best)} per point of saving. ` : ". ") +
    "The data table follows the chart.";
  if (els.costChart.getAttribute("aria-label") !== label) els.costChart.setAttribute("aria-label", label);
  renderTable(
    els.costTable,
    "Cost against BD-rate",
    ["Experiment", "BD-rate", "Cost", "Cost per point of saving"],
    [...points].reverse().map((p) => [p.e.name || p.e.id, formatSignedPct(-p.saving), formatUsd(p.cost), perPoint(p)]),
    [1, 2, 3],
  );
  const xs = points.map((p) => p.saving);
  const ys = points.map((p) => p.cost);
  const bestYs = points.map((p) => (p === best ? p.cost : null));
  const pad = (min, max, floorZero) => {
    const span = max - min || Math.abs(max) || 1;
    return [floorZero && min >= 0 ? 0 : min - span * 0.12, max + span * 0.12];
  };
  const noPath = () => null;
  const options = () => ({
    legend: { show: false },
    cursor: { drag: { x: false, y: false }, points: { size: 9 } },
    scales: {
      x: { time: false, range: (_u, min, max) => pad(min, max, false) },
      y: { range: (_u, min, max) => pad(min, max, true) },
    },
    axes: [
      { ...axisStyle((v) => `${v} %`, "Bitrate saving, % (BD-rate)"), size: 40 },
      { ...axisStyle((v) => formatUsd(v).replace(/\.00$/, ""), "Cost"), size: 64 },
    ],
    series: [
      {},
      { label: "Experiments", stroke: cssVar("--rd-c1"), width: 0, paths: noPath, points: { show: true, size: 7, space: 0, fill: cssVar("--rd-c1") } },
      { label: "Best saving", stroke: cssVar("--rd-best"), width: 0, paths: noPath, points: { show: true, size: 13, space: 0, width: 2.5, fill: "rgba(0,0,0,0)" } },
    ],
  });
  drawUPlot(els.costChart, options, [xs, ys, bestYs], `rd-cost:${against}`);
}
