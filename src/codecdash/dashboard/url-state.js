// URL state: the table's filter and sort and the open experiment live in the URL
// (?status=completed&q=ssf&sort=-psnr_db&exp=ID), so a view can be shared and back/forward
// work. The view itself is `state.view` (state.js); this module reads and writes it.

import { state } from "./state.js";

/** The statuses a filter may name: the options of #filter-status (the server's statuses, as
 * api/v1/vocabulary lists them); none without the table's filter. */
export const STATUSES = [...(document.getElementById("filter-status")?.options || [])].map((o) => o.value).filter(Boolean);

/** Sortable fields, their labels, and which direction a first click picks. */
export const SORT_FIELDS = {
  created_at: { label: "Created", desc: ["newest first", "oldest first"], first: "-" },
  name: { label: "Name", desc: ["Z to A", "A to Z"], first: "" },
  status: { label: "Status", desc: ["Z to A", "A to Z"], first: "" },
  bitrate_reduction_pct: { label: "Compression", desc: ["highest first", "lowest first"], first: "-" },
  psnr_db: { label: "PSNR", desc: ["highest first", "lowest first"], first: "-" },
  duration_s: { label: "Duration", desc: ["longest first", "shortest first"], first: "-" },
  cost_usd: { label: "Cost", desc: ["highest first", "lowest first"], first: "-" },
  bd_rate_pct: { label: "BD-rate", desc: ["highest first", "lowest first (best)"], first: "" },
};
export const DEFAULT_SORT = "-created_at";

/** The view: what the URL says (the same object as `state.view`). */
export const view = state.view;

/** Reads and validates the view from a query string. */
export function readUrl(search = window.location.search) {
  const p = new URLSearchParams(search);
  const status = p.get("status") || "";
  const sort = p.get("sort") || DEFAULT_SORT;
  const exp = p.get("exp");
  return {
    status: STATUSES.includes(status) ? status : "",
    q: (p.get("q") || "").slice(0, 200),
    sort: sort.replace(/^-/, "") in SORT_FIELDS ? sort : DEFAULT_SORT,
    exp: exp && exp.length <= 128 ? exp : null,
  };
}

/** The relative URL of a view, keeping any other query parameters as they are. */
export function urlFor(v) {
  const p = new URLSearchParams(window.location.search);
  const set = (key, value) => (value ? p.set(key, value) : p.delete(key));
  set("status", v.status);
  set("q", v.q);
  set("sort", v.sort === DEFAULT_SORT ? "" : v.sort);
  set("exp", v.exp);
  const qs = p.toString();
  return `${window.location.pathname}${qs ? `?${qs}` : ""}${window.location.hash}`;
}

/**
 * Writes the view into the address bar: a new history entry, or (`replace`) the same one.
 * `state` is kept with the entry (openExperiment marks the entries it pushes).
 */
export function writeUrl({ replace = false, typing = false, state: entry = null } = {}) {
  const url = urlFor(view);
  const same = url === `${window.location.pathname}${window.location.search}${window.location.hash}`;
  if (same) return;
  if (replace || (typing && state.urlTyping)) history.replaceState(entry, "", url);
  else history.pushState(entry, "", url);
  state.urlTyping = typing;
}

/**
 * Reads the view from the URL now, and again after each back or forward, then calls
 * `onChange(before)` with the view as it was.
 */
export function initUrlState(onChange) {
  Object.assign(view, readUrl());
  window.addEventListener("popstate", () => {
    const before = { ...view };
    Object.assign(view, readUrl());
    state.urlTyping = false;
    onChange(before);
  });
}
