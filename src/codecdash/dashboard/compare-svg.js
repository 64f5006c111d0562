// The compare view's R-D chart as a standalone SVG (for the SVG and PNG downloads): the same
// curves as the on-page chart, log-scale rate axis, colours resolved from the current theme.

import { s } from "./dom.js";

const WIDTH = 720;
const HEIGHT = 440;
const PAD = { left: 64, right: 16, top: 40, bottom: 52 };
const FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif";

/** Ticks of a log axis over [lo, hi]: 1, 2 and 5 × 10^k. */
function logTicks(lo, hi) {
  const out = [];
  for (let k = Math.floor(Math.log10(lo)); k <= Math.ceil(Math.log10(hi)); k++) {
    for (const m of [1, 2, 5]) {
      const v = m * 10 ** k;
      if (v >= lo * 0.999 && v <= hi * 1.001) out.push(v);
    }
  }
  return out;
}

/** About `count` round ticks over [lo, hi]. */
function linearTicks(lo, hi, count = 6) {
  const raw = (hi - lo) / count;
  const p = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * p).find((c) => c >= raw) ?? raw;
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(Number(v.toFixed(10)));
  return out;
}

/**
 * An <svg> of `curves` ([{name, color, dashed, points: [[rate, quality], …]}]) with a title,
 * axis labels, a key, and a <title>/<desc> for screen readers.
 */
export function chartSvg({ title, curves, xRange, yRange, xLabel, yLabel, xFormat, colors }) {
  const [x0, x1] = xRange;
  const [y0, y1] = yRange;
  const plotW = WIDTH - PAD.left - PAD.right;
  const plotH = HEIGHT - PAD.top - PAD.bottom;
  const px = (v) => PAD.left + ((Math.log10(v) - Math.log10(x0)) / (Math.log10(x1) - Math.log10(x0))) * plotW;
  const py = (v) => PAD.top + (1 - (v - y0) / (y1 - y0)) * plotH;
  const text = (x, y, value, extra = {}) =>
    s("text", { x: x.toFixed(1), y: y.toFixed(1), "font-family": FONT, "font-size": "12", fill: colors.axis, ...extra }, value);

  const grid = [];
  for (const v of logTicks(x0, x1)) {
    const x = px(v);
    grid.push(s("line", { x1: x.toFixed(1), x2: x.toFixed(1), y1: PAD.top, y2: PAD.top + plotH, stroke: colors.grid }));
    grid.push(text(x, PAD.top + plotH + 16, xFormat(v), { "text-anchor": "middle" }));
  }
  for (const v of linearTicks(y0, y1)) {
    const y = py(v);
    grid.push(s("line", { x1: PAD.left, x2: PAD.left + plotW, y1: y.toFixed(1), y2: y.toFixed(1), stroke: colors.grid }));
    grid.push(text(PAD.left - 6, y + 4, String(v), { "text-anchor": "end" }));
  }

  const lines = curves.map((c) => {
    const pts = c.points.filter(([x, y]) => x >= x0 && x <= x1 && y >= y0 && y <= y1);
    const d = pts.map(([x, y], i) => `${i ? "L" : "M"}${px(x).toFixed(1)} ${py(y).toFixed(1)}`).join(" ");
    return s(
      "g",
      { class: "curve" },
      s("title", {}, c.name),
      d ? s("path", { d, fill: "none", stroke: c.color, "stroke-width": c.dashed ? "1.5" : "2", ...(c.dashed ? { "stroke-dasharray": "7 5" } : {}) }) : null,
      pts.map(([x, y]) =>
        s("circle", { cx: px(x).toFixed(1), cy: py(y).toFixed(1), r: "3", fill: c.dashed ? colors.surface : c.color, stroke: c.color, "stroke-width": "1.5" }),
      ),
    );
  });

  const key = curves.map((c, i) => {
    const y = PAD.top + 8 + i * 16;
    const x = PAD.left + plotW - 190;
    return s(
      "g",
      {},
      s("line", { x1: x, x2: x + 22, y1: y, y2: y, stroke: c.color, "stroke-width": "2", ...(c.dashed ? { "stroke-dasharray": "5 3" } : {}) }),
      text(x + 28, y + 4, c.name, { fill: colors.text }),
    );
  });

  return s(
    "svg",
    { xmlns: "http://www.w3.org/2000/svg", width: String(WIDTH), height: String(HEIGHT), viewBox: `0 0 ${WIDTH} ${HEIGHT}`, role: "img" },
    s("title", {}, title),
    s("desc", {}, `${yLabel} against ${xLabel}: ${curves.map((c) => c.name).join(", ")}.`),
    s("rect", { width: String(WIDTH), height: String(HEIGHT), fill: colors.surface }),
    text(PAD.left, 24, title, { "font-size": "15", "font-weight": "600", fill: colors.text }),
    ...grid,
    s("rect", { x: PAD.left, y: PAD.top, width: plotW, height: plotH, fill: "none", stroke: colors.axis }),
    ...lines,
    ...key,
    text(PAD.left + plotW / 2, HEIGHT - 12, xLabel, { "text-anchor": "middle", "font-weight": "600" }),
    text(16, PAD.top + plotH / 2, yLabel, { "text-anchor": "middle", "font-weight": "600", transform: `rotate(-90 16 ${PAD.top + plotH / 2})` }),
  );
}
