// The chart sections, loaded after the first paint (app.js `later`): the progress charts,
// declared in CHARTS (one spec per chart section, drawn by charts.js renderProgressChart), and
// the Cost Breakdown donut. renderCharts(snap) draws them all from a snapshot.

import { renderDonut, renderProgressChart } from "./charts.js";
import { h, renderInto } from "./dom.js";
import { formatDb, formatPct, formatSsim } from "./format.js";

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

/** Draws every chart section from `snap`; one failing chart spares the rest. */
export function renderCharts(snap) {
  for (const spec of CHARTS) {
    const section = document.getElementById(spec.id);
    if (!section) continue;
    try {
      renderProgressChart(section, spec, snap);
    } catch (err) {
      console.warn(`codecdash: chart ${spec.id}:`, err);
    }
  }
  const body = document.getElementById("cost-breakdown")?.querySelector(".card-body");
  if (!body) return;
  // As for the cards: drawn into a detached copy, the page changes only where the figures did.
  renderInto(body, (draft) => {
    try {
      renderDonut(draft.querySelector(".donut-figure"), draft.querySelector(".donut-legend"), snap.cost_breakdown);
    } catch (err) {
      draft.replaceChildren(h("p", { class: "notice notice-error" }, "This section could not be drawn."));
      console.warn("codecdash: section cost-breakdown:", err);
    }
  });
}
