// The R-D charts' curves and axes (the compare view's and the Rate-Distortion section's): R-D
// points as [rate, quality dB] pairs, uPlot's data layout for several curves, the log-rate axis.

import { axisStyle } from "./charts.js";
import { isNum, msSsimDb } from "./format.js";
import { term } from "./vocabulary.js";

/**
 * [rate, quality dB] pairs of `points` in `unit`, sorted by rate: the fields of the unit and of
 * the quality metric are those the server's vocabulary (vocabulary.js) names.
 */
export function curvePoints(vocab, points, unit, quality) {
  const rateKey = term(vocab.rate_units, unit)?.field;
  const qualityKey = term(vocab.quality_metrics, quality)?.field;
  const out = [];
  for (const p of Array.isArray(points) ? points : []) {
    const rate = p?.[rateKey];
    const q = quality === "ms_ssim" ? msSsimDb(p?.[qualityKey]) : p?.[qualityKey];
    if (isNum(rate) && rate > 0 && isNum(q)) out.push([rate, q]);
  }
  return out.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
}

/** Aligns curves of different rates on one x array (uPlot's data layout); gaps are null. */
export function align(curves) {
  const xs = [...new Set(curves.flatMap((c) => c.points.map((p) => p[0])))].sort((a, b) => a - b);
  const at = new Map(xs.map((x, i) => [x, i]));
  return [
    xs,
    ...curves.map((c) => {
      const col = new Array(xs.length).fill(null);
      for (const [x, y] of c.points) col[at.get(x)] = y;
      return col;
    }),
  ];
}

/** A log axis' range around [min, max], from and to 1, 2 or 5 × 10^k (where ticks read well). */
export function logRange(min, max) {
  if (!(min > 0) || !(max > 0)) return [1, 10];
  const below = (v) => {
    const p = 10 ** Math.floor(Math.log10(v));
    return [5, 2, 1].map((m) => m * p).find((c) => c <= v) ?? p;
  };
  const above = (v) => {
    const p = 10 ** Math.floor(Math.log10(v));
    return [1, 2, 5, 10].map((m) => m * p).find((c) => c >= v) ?? 10 * p;
  };
  return [below(min / 1.1), above(max * 1.1)];
}

/** Tick labels of a rate axis: `5k`, `120k`, `0.25`. */
export function fmtRate(unit) {
  return (v) => {
    if (v === null || v === undefined) return "";
    if (unit === "bpp") return String(Number(v.toPrecision(2)));
    return v >= 1000 ? `${Number((v / 1000).toPrecision(3))}k` : String(Number(v.toPrecision(3)));
  };
}

/** A rate for the data table: `12,345 kbps`, `0.2512 bpp`. */
export function rateText(v, unit) {
  if (!isNum(v)) return "—";
  return unit === "bpp" ? `${Number(v.toPrecision(4))} bpp` : `${Number(v.toPrecision(5)).toLocaleString("en-US")} kbps`;
}

/** uPlot options of an R-D chart: the rate on a log x axis in `unit`, the quality (dB) on y. */
export function rdChartOptions(unit, qLabel, series) {
  return {
    legend: { show: false },
    cursor: { drag: { x: false, y: false }, points: { size: 8 } },
    scales: {
      x: { time: false, distr: 3, log: 10, range: (_u, min, max) => logRange(min, max) },
      y: { range: (_u, min, max) => [Math.floor(min - 0.5), Math.ceil(max + 0.5)] },
    },
    axes: [
      { ...axisStyle(fmtRate(unit), unit === "bpp" ? "Bits per pixel (log scale)" : "Bitrate, kbps (log scale)"), size: 40 },
      { ...axisStyle((v) => `${v}`, qLabel), size: 48 },
    ],
    series: [{}, ...series],
  };
}
