// The Recent Experiments table: filter, sort and the open experiment live in the URL
// (?status=completed&q=ssf&sort=-psnr_db&exp=ID; url-state.js), so a view can be shared and
// back/forward work.
// With the API it asks the server to filter and sort; from a static export it filters and sorts
// the snapshot's recent_experiments itself.

import { ApiError, fetchExperiments } from "./api.js";
import { trainingFlag } from "./training-flag.js";
import { badge, h, missing, setHidden, timeAgo } from "./dom.js";
import { formatCount, formatDb, formatDuration, formatPct, formatSignedPct, formatUsd, isNum } from "./format.js";
import { DEFAULT_SORT, SORT_FIELDS, urlFor, view, writeUrl } from "./url-state.js";

// The URL state moved to url-state.js; these names stay importable from here.
export { DEFAULT_SORT, readUrl, SORT_FIELDS, STATUSES, urlFor, view, writeUrl } from "./url-state.js";

const PAGE_SIZE = 20;

const COLUMNS = [
  { key: "id", label: "ID" },
  { key: "name", label: "Name" },
  { key: "status", label: "Status" },
  { key: "bitrate_reduction_pct", label: "Compression", num: true, fmt: formatPct },
  { key: "psnr_db", label: "PSNR", num: true, fmt: formatDb },
  // Against the anchor in force (named in the cell's title); negative: fewer bits.
  { key: "bd_rate_pct", label: "BD-rate", num: true, fmt: formatSignedPct, title: (e) => (e.bd_rate_anchor ? `BD-rate against ${e.bd_rate_anchor}` : null) },
  { key: "duration_s", label: "Duration", num: true, fmt: formatDuration },
  { key: "cost_usd", label: "Cost", num: true, fmt: formatUsd },
];

/** Functions that add a control to each row's first cell (compare.js: a checkbox). */
const rowDecorators = [];

/** Registers `fn(experiment)` → a node (or null) put in each row's first cell. */
export function addRowDecorator(fn) {
  rowDecorators.push(fn);
  // Rows drawn before now get theirs at once (the table keeps unchanged rows as they are).
  for (const tr of els.body?.querySelectorAll("tr[data-id]") || []) {
    const exp = table.items.find((e) => String(e.id) === tr.dataset.id);
    const node = exp ? fn(exp) : null;
    if (node) tr.querySelector("td")?.prepend(node);
  }
}

const els = {};
// `want`: how many rows the reader asked for (grows with "Load more", resets with the view).
const table = { on: false, items: [], total: 0, want: PAGE_SIZE, controller: null, ctx: null };

/**
 * Wires the table. `ctx` gives `isStatic()`, `getSnapshot()`, `openExperiment(id, focusBack)`
 * and `onUnauthorized()` (a private dashboard's 401). The view comes from url-state.js.
 */
export function initTable(ctx) {
  table.ctx = ctx;
  els.section = document.getElementById("recent-experiments");
  els.body = document.getElementById("experiments-body");
  if (!els.section || !els.body) return; // the section was removed from index.html
  table.on = true;
  els.form = document.getElementById("experiment-filters");
  els.status = document.getElementById("filter-status");
  els.q = document.getElementById("filter-q");
  els.sort = document.getElementById("filter-sort");
  els.summary = document.getElementById("table-summary");
  els.message = document.getElementById("table-message");
  els.more = document.getElementById("load-more");
  els.headers = [...document.querySelectorAll("#experiments-table th[data-sort]")];

  for (const [field, meta] of Object.entries(SORT_FIELDS)) {
    for (const dir of ["-", ""]) {
      const text = `${meta.label}, ${meta.desc[dir === "-" ? 0 : 1]}`;
      els.sort?.append(h("option", { value: `${dir}${field}` }, text));
    }
  }
  syncControls();

  els.form?.addEventListener("submit", (e) => {
    e.preventDefault();
    applyFilter({ q: els.q.value.trim() });
  });
  els.status?.addEventListener("change", () => applyFilter({ status: els.status.value }));
  els.sort?.addEventListener("change", () => applyFilter({ sort: els.sort.value }));
  let timer = 0;
  els.q?.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(() => applyFilter({ q: els.q.value.trim() }, { typing: true }), 300);
  });
  for (const th of els.headers) {
    th.querySelector("button").addEventListener("click", () => {
      const field = th.dataset.sort;
      const current = view.sort.replace(/^-/, "");
      const next = current === field ? (view.sort.startsWith("-") ? field : `-${field}`) : `${SORT_FIELDS[field].first}${field}`;
      applyFilter({ sort: next });
    });
  }
  els.more?.addEventListener("click", () => {
    table.want = Math.min(1000, table.items.length + PAGE_SIZE);
    loadTable();
  });
  els.body.addEventListener("click", (e) => {
    const link = e.target.closest("a[data-exp]");
    if (link) {
      if (e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
      e.preventDefault();
      ctx.openExperiment(link.dataset.exp, link);
      return;
    }
    const row = e.target.closest("tr[data-id]");
    if (row && !window.getSelection()?.toString()) ctx.openExperiment(row.dataset.id, row.querySelector("a"));
  });
}

/** After back or forward (url-state.js): the controls follow the URL, and a new filter reloads. */
export function followUrl(before) {
  syncControls();
  if (before.status !== view.status || before.q !== view.q || before.sort !== view.sort) {
    table.want = PAGE_SIZE;
    refreshTable();
  }
}

function applyFilter(change, { typing = false } = {}) {
  const before = `${view.status}|${view.q}|${view.sort}`;
  Object.assign(view, change);
  if (`${view.status}|${view.q}|${view.sort}` === before) return;
  writeUrl({ typing });
  syncControls({ keepQ: typing });
  table.want = PAGE_SIZE;
  refreshTable();
}

/** Puts the view into the form controls and the header's aria-sort. */
function syncControls({ keepQ = false } = {}) {
  if (!table.on) return;
  if (els.status) els.status.value = view.status;
  if (!keepQ && els.q) els.q.value = view.q;
  if (els.sort) els.sort.value = view.sort;
  const field = view.sort.replace(/^-/, "");
  for (const th of els.headers) {
    if (th.dataset.sort === field) th.setAttribute("aria-sort", view.sort.startsWith("-") ? "descending" : "ascending");
    else th.removeAttribute("aria-sort");
  }
}

function compare(field, desc) {
  return (a, b) => {
    const x = a[field];
    const y = b[field];
    const xm = x === null || x === undefined;
    const ym = y === null || y === undefined;
    if (xm || ym) return xm === ym ? 0 : xm ? 1 : -1; // missing values last either way
    let order;
    if (typeof x === "number" && typeof y === "number") order = x - y;
    else {
      const xs = String(x).toLowerCase(); // plain code-point order: fast, and what the API does
      const ys = String(y).toLowerCase();
      order = xs < ys ? -1 : xs > ys ? 1 : 0;
    }
    return desc ? -order : order;
  };
}

/** The experiments the table shows (others to compare an experiment's curves with). */
export function shownExperiments() {
  return table.items;
}

/** Client-side filter and sort, for a static export (the snapshot's recent experiments). */
export function filterSort(items, v) {
  const q = v.q.toLowerCase();
  const field = v.sort.replace(/^-/, "");
  return items
    .filter((e) => !v.status || e.status === v.status)
    .filter((e) => !q || [e.id, e.name, ...(e.tags || [])].some((t) => String(t ?? "").toLowerCase().includes(q)))
    .sort(compare(field, v.sort.startsWith("-")));
}

/** True while the view is the default one, whose first page the snapshot already holds. */
export function isDefaultView() {
  return !view.status && !view.q && view.sort === DEFAULT_SORT;
}

/** Shows the snapshot's recent experiments (already filtered and sorted for the default view). */
export function showSnapshotRows(snap) {
  const items = filterSort(snap.recent_experiments || [], view);
  const isStatic = table.ctx.isStatic();
  const total = isStatic ? items.length : (snap.summary?.total_experiments ?? items.length);
  render(items, total, !isStatic && total > items.length);
  showMessage("");
}

/**
 * Brings the table up to date. The default view's first page is the snapshot's
 * recent_experiments, so it costs no request; other views (a filter, a sort, more rows) ask the
 * API. `quiet` (live refreshes) leaves aria-busy alone.
 */
export function refreshTable({ quiet = false } = {}) {
  if (!table.on) return Promise.resolve();
  const snap = table.ctx.getSnapshot();
  if (table.ctx.isStatic() || (snap && isDefaultView() && table.want <= PAGE_SIZE)) {
    table.controller?.abort();
    if (snap) showSnapshotRows(snap);
    return Promise.resolve();
  }
  return loadTable({ quiet });
}

/** Loads the current view's first `want` rows from the API. */
export async function loadTable({ quiet = false } = {}) {
  table.controller?.abort();
  const controller = new AbortController();
  table.controller = controller;
  const params = { status: view.status, q: view.q, sort: view.sort, limit: table.want };
  if (!quiet) els.section.setAttribute("aria-busy", "true"); // live refreshes stay quiet
  try {
    const { data } = await fetchExperiments(params, controller.signal);
    const items = Array.isArray(data?.items) ? data.items : [];
    const total = isNum(data?.total) ? data.total : items.length;
    render(items, total, Boolean(data?.next_cursor) || total > items.length);
    showMessage("");
  } catch (err) {
    if (err?.name === "AbortError") return;
    if (err instanceof ApiError && err.status === 401) {
      table.ctx.onUnauthorized();
      return;
    }
    showMessage(`The experiments could not be loaded: ${err.message}. Showing the last rows received.`);
  } finally {
    if (table.controller === controller && els.section.hasAttribute("aria-busy")) els.section.removeAttribute("aria-busy");
  }
}

function showMessage(text) {
  if (!els.message) return;
  if (els.message.textContent !== text) els.message.textContent = text;
  setHidden(els.message, !text);
}

function cell(col, e) {
  const td = h("td", { class: col.num ? "num" : `col-${col.key}`, "data-label": col.label });
  if (col.key === "id") {
    td.append(...rowDecorators.map((fn) => fn(e)).filter(Boolean), h("code", { class: "exp-id", title: e.id }, e.id));
  } else if (col.key === "name") {
    td.append(
      h("a", { href: urlFor({ ...view, exp: e.id }), "data-exp": e.id, class: "exp-link" }, e.name || e.id),
      h("span", { class: "row-time" }, timeAgo(e.created_at)),
    );
  } else if (col.key === "status") {
    td.append(badge(e.status));
    const flag = trainingFlag(e); // a running experiment's NaN or rising loss
    if (flag) td.append(" ", flag);
  } else {
    td.append(isNum(e[col.key]) ? col.fmt(e[col.key]) : missing());
    const title = col.title && isNum(e[col.key]) ? col.title(e) : null;
    if (title) td.title = title;
  }
  return td;
}

let renderedKey = "";
const rowKeys = new WeakMap(); // tr → the data it shows

/** Makes `parent`'s children `nodes`, moving only what moved (kept rows cost no layout). */
function reconcile(parent, nodes) {
  let cursor = parent.firstChild;
  for (const node of nodes) {
    if (node === cursor) {
      cursor = cursor.nextSibling;
      continue;
    }
    parent.insertBefore(node, cursor);
  }
  while (cursor) {
    const next = cursor.nextSibling;
    cursor.remove();
    cursor = next;
  }
}

function render(items, total, more) {
  // Live refreshes often bring the same rows: leave the DOM (and focus) alone then.
  const key = JSON.stringify([items, total, more, view.status, view.q, view.sort]);
  if (key === renderedKey) return;
  renderedKey = key;
  table.items = items;
  table.total = total;
  const rows = items.map((e) => {
    const key = `${JSON.stringify(e)}|${urlFor({ ...view, exp: e.id })}`;
    const old = els.body.querySelector(`tr[data-id="${CSS.escape(String(e.id))}"]`);
    if (old && rowKeys.get(old) === key) return old; // unchanged: keep the node (no layout)
    const tr = h("tr", { "data-id": e.id, "data-status": e.status }, COLUMNS.map((col) => cell(col, e)));
    rowKeys.set(tr, key);
    return tr;
  });
  if (!rows.length) {
    const filtered = view.status || view.q;
    const td = h(
      "td",
      { colspan: COLUMNS.length, class: "table-empty" },
      filtered ? "No experiment matches these filters. " : "No experiments yet. Send one and it appears here.",
    );
    if (filtered) {
      td.append(h("button", { type: "button", class: "link-button", onclick: () => applyFilter({ status: "", q: "" }) }, "Clear filters"));
    }
    rows.push(h("tr", { class: "empty-row" }, td));
  }
  reconcile(els.body, rows);
  const filtered = view.status || view.q ? " matching" : "";
  const summary = items.length
    ? `Showing ${formatCount(items.length)} of ${formatCount(total)}${filtered} experiment${total === 1 ? "" : "s"}`
    : "";
  if (els.summary && els.summary.textContent !== summary) els.summary.textContent = summary;
  setHidden(els.more, !more || items.length >= 1000);
}
