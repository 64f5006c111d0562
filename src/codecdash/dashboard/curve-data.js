// Training-curve data as the page uses it: the API's series decoded (NaN and the
// infinities come as strings), live points appended, EMA smoothing, the steps where a
// value is not finite. Pure functions: no DOM.

const NON_FINITE = { NaN: Number.NaN, Infinity: Number.POSITIVE_INFINITY, "-Infinity": Number.NEGATIVE_INFINITY };

function num(v) {
  if (typeof v === "number") return v;
  return Object.hasOwn(NON_FINITE, v) ? NON_FINITE[v] : Number.NaN;
}

/**
 * One series of GET api/v1/experiments/{id}/metrics as plain arrays of numbers:
 * `{step, value, time, min, max, bucket, points}` (min and max null for raw points).
 */
export function decodeSeries(s) {
  const steps = Array.isArray(s?.step) ? s.step : [];
  const arr = (a) => (Array.isArray(a) ? a.map(num) : null);
  return {
    step: steps.slice(),
    value: arr(s.value) || [],
    time: arr(s.time) || [],
    min: arr(s.min),
    max: arr(s.max),
    bucket: Number(s.bucket_steps) || 1,
    points: Number(s.points) || steps.length,
  };
}

/** `old` followed by the raw points of `add` (an answer to `after_step`). */
export function appendSeries(old, add) {
  if (!old) return add;
  const last = old.step.length ? old.step[old.step.length - 1] : -1;
  const keep = add.step.map((step, i) => (step > last ? i : -1)).filter((i) => i >= 0);
  const pick = (a) => keep.map((i) => a[i]);
  const fill = (a, fallback) => (a ? a.concat(pick(fallback)) : null);
  return {
    step: old.step.concat(pick(add.step)),
    value: old.value.concat(pick(add.value)),
    time: old.time.concat(pick(add.time)),
    // Older buckets keep their min and max; appended raw points are their own.
    min: fill(old.min, add.value),
    max: fill(old.max, add.value),
    bucket: old.bucket,
    points: Math.max(old.points, add.points),
  };
}

/**
 * Exponential moving average with TensorBoard's debiasing (the first points are not pulled
 * towards 0): `weight` 0 is the raw curve, 0.99 very smooth. Non-finite values are skipped
 * (left out of the average, and null in the result).
 */
export function smooth(values, weight) {
  const out = new Array(values.length);
  let last = 0;
  let n = 0;
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (!Number.isFinite(v)) {
      out[i] = null;
      continue;
    }
    last = last * weight + (1 - weight) * v;
    n += 1;
    const debias = weight > 0 ? 1 - weight ** n : 1;
    out[i] = last / debias;
  }
  return out;
}

/** The steps whose value is NaN or infinite: `[{step, time, kind}]`, kind "NaN", "+∞", "−∞". */
export function nonFinite(series) {
  const found = [];
  series.value.forEach((v, i) => {
    if (Number.isFinite(v)) return;
    const kind = Number.isNaN(v) ? "NaN" : v > 0 ? "+∞" : "−∞";
    found.push({ step: series.step[i], time: series.time[i], kind });
  });
  return found;
}

/** Figures for the text alternative: newest step and value, lowest and highest finite values. */
export function summarize(series) {
  const n = series.step.length;
  let lo = Number.POSITIVE_INFINITY;
  let hi = Number.NEGATIVE_INFINITY;
  for (const v of series.min || series.value) if (Number.isFinite(v) && v < lo) lo = v;
  for (const v of series.max || series.value) if (Number.isFinite(v) && v > hi) hi = v;
  return {
    lastStep: n ? series.step[n - 1] : null,
    last: n ? series.value[n - 1] : null,
    lowest: Number.isFinite(lo) ? lo : null,
    highest: Number.isFinite(hi) ? hi : null,
  };
}

/** `0.0213`, `1.52e-5`, `41,200`: a metric's value in few characters. */
export function formatValue(v) {
  if (v === null || v === undefined) return "—";
  if (Number.isNaN(v)) return "NaN";
  if (!Number.isFinite(v)) return v > 0 ? "+∞" : "−∞";
  const a = Math.abs(v);
  if (a !== 0 && (a < 1e-3 || a >= 1e6)) return v.toExponential(2);
  return String(Number(v.toPrecision(4)));
}
