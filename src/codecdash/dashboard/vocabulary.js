// The server's rules and labels, so that the page keeps no copy of them: statuses, metrics,
// rate units, the BD-rate rules (minimum points, the overlap threshold, why a curve has no
// BD-rate). Read once from api/v1/vocabulary (cached by the browser for a day), or from
// ./vocabulary.json beside a static export's index.html. Loaded with the sections that use
// it (after the first paint); the promise is kept in `state.vocabulary`.

import { ApiError, apiUrl, getJSON } from "./api.js";
import { isStatic, state } from "./state.js";

const FILE = "./vocabulary.json";

async function fetchVocabulary() {
  if (isStatic()) return (await getJSON(FILE, { auth: false })).data;
  try {
    // The browser's cache answers for a day; "default" lets it (getJSON asks for no-store).
    return (await getJSON(apiUrl("api/v1/vocabulary"), { cache: "default" })).data;
  } catch (err) {
    if (!(err instanceof ApiError) || !(err.status === 404 || err.network || err.notJson)) throw err;
    return (await getJSON(FILE, { auth: false })).data; // an API without the route: the site's copy
  }
}

/** The vocabulary (a promise, fetched once; a failure is tried again on the next call). */
export function loadVocabulary() {
  state.vocabulary ??= fetchVocabulary().then((v) => {
    if (!v || typeof v !== "object" || !v.bd_rate) throw new ApiError("The vocabulary was empty", { notJson: true });
    return v;
  });
  state.vocabulary.catch(() => {
    state.vocabulary = null;
  });
  return state.vocabulary;
}

/** `template` with each {name} replaced by `values[name]` ("{min_points} points" → "4 points"). */
export function fill(template, values = {}) {
  return String(template ?? "").replace(/\{(\w+)\}/g, (all, name) => (name in values ? String(values[name]) : all));
}

/** The rate unit of a curve's points, by the vocabulary's rule: the first field any point has. */
export function rateUnitOf(vocab, points) {
  if (!Array.isArray(points)) return null;
  const unit = vocab.rate_units.find((u) => points.some((p) => typeof p?.[u.field] === "number" && Number.isFinite(p[u.field])));
  return unit ? unit.name : null;
}

/** A rate unit's or quality metric's entry by name (e.g. term(vocab.rate_units, "bpp")). */
export function term(list, name) {
  return (Array.isArray(list) ? list : []).find((t) => t.name === name) || null;
}
