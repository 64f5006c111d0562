// codecdash dashboard, the entry point: it wires the page's modules, one concern each.
//
// Data flow: the snapshot (in index.html, then api/v1/dashboard or a static export's
// dashboard.json: live.js) → render(snap) → the cards (cards.js CARD_RENDERERS), the
// notices (notices.js) and, once loaded, the later sections. Only what the first screen
// needs is imported here, and the snapshot the page came with is drawn at once; everything
// else is imported once those figures are painted: live updates (live.js), the read-token
// panel (auth.js), the theme button (theme-toggle.js), then the charts, Rate-Distortion, the
// table, the BD-rate table and Compare (`later`); the details dialog with its training
// curves when an experiment is first opened (`detailsDialog`). The alert strip, at the
// top, is drawn with the cards (from the alerts the server put in the page too). state.js holds
// what the page knows; url-state.js the URL. See docs/customizing.md to add a card or a chart.

import { initAlerts, refreshAlerts, renderAlerts, takeInlineAlerts } from "./alerts.js";
import { ApiError, fetchExperiment } from "./api.js";
import { CARD_RENDERERS } from "./cards.js";
import { h, refreshTimes, renderInto } from "./dom.js";
import { renderBanners, renderSourceErrors, revealMain } from "./notices.js";
import { acceptSnapshot, changeGate, figuresKey, isStatic, state, takeInlineSnapshot } from "./state.js";
import { initUrlState, view, writeUrl } from "./url-state.js";

/** Renders a whole snapshot. Each section is independent: one failing renderer spares the rest. */
export function render(snap) {
  renderBanners(snap);
  for (const [id, renderer] of Object.entries(CARD_RENDERERS)) {
    const body = document.getElementById(id)?.querySelector(".card-body");
    if (!body) continue;
    // The renderer fills a detached copy; the page changes only where the figures did.
    renderInto(body, (draft) => {
      try {
        renderer(draft, snap);
      } catch (err) {
        draft.replaceChildren(h("p", { class: "notice notice-error" }, "This section could not be drawn."));
        console.warn(`codecdash: section ${id}:`, err);
      }
    });
  }
  if (state.modules.rest) drawLater(state.modules.rest, snap);
  renderSourceErrors(snap);
}

// ---------------------------------------------------------------------------------------------
// The sections below the first screen: imported after the first paint, all at once.
// ---------------------------------------------------------------------------------------------

/** The later modules, imported and wired once; resolves to {charts, rd, table, bdtable}. */
function later() {
  state.modules.loading ??= Promise.all([
    import("./live.js"),
    import("./chart-sections.js"),
    import("./rd.js"),
    import("./table.js"),
    import("./bdtable.js"),
  ]).then(([live, charts, rd, table, bdtable]) => {
    const rest = { charts, rd, table, bdtable };
    rd.initRateDistortion({ isStatic });
    // The BD-rate table wires Compare, whose checkboxes decorate the experiments table's rows:
    // both are set up before the table draws any.
    bdtable.initBdTable({ isStatic, getSnapshot: () => state.snapshot });
    table.initTable({ isStatic, getSnapshot: () => state.snapshot, openExperiment, onUnauthorized: live.askForToken });
    state.modules.rest = rest;
    resultsGate(state.snapshot); // the sections have just read what this snapshot shows
    if (state.snapshot) drawLater(rest, state.snapshot);
    if (state.fetchOk) afterRound({ changed: false, wantTable: false }); // the table's first page
    return rest;
  });
  return state.modules.loading;
}

function drawLater(rest, snap) {
  rest.charts.renderCharts(snap);
  try {
    rest.rd.renderRateDistortion(snap);
  } catch (err) {
    console.warn("codecdash: section rate-distortion:", err);
  }
  // The BD-rate table and Compare (bdtable.js, compare.js) read again on this event, sent
  // when the snapshot's results_version moved (other figures changing needs no new read).
  if (resultsGate(snap)) document.dispatchEvent(new CustomEvent("codecdash:results", { detail: snap }));
}

const tableGate = changeGate("experiments_version");
const resultsGate = changeGate("results_version");

/**
 * After each refresh round: the table's page, when it was asked for or the experiments changed
 * (the snapshot's experiments_version moved: other figures changing needs no new page).
 */
function afterRound({ changed, wantTable }) {
  const table = state.modules.rest?.table;
  if (!table) return;
  const moved = (changed || !state.round.tableLoaded) && tableGate(state.snapshot);
  if (!(moved || wantTable || !state.round.tableLoaded)) return;
  const quiet = state.round.tableLoaded;
  state.round.tableLoaded = true;
  table.refreshTable({ quiet });
}

/** Resolves once the browser has painted what is on the page now. */
function afterPaint() {
  return new Promise((resolve) => requestAnimationFrame(() => setTimeout(resolve, 0)));
}

// ---------------------------------------------------------------------------------------------
// Experiment details and the URL.
// ---------------------------------------------------------------------------------------------

function loadExperiment(id, signal) {
  // The Rate-Distortion section also shows the experiment open in the dialog (followDetails).
  const { rd } = state.modules.rest;
  if (state.mode === "static") {
    const exp = (state.snapshot?.recent_experiments || []).find((e) => e.id === id);
    if (exp) rd.followDetails(exp);
    return exp ? Promise.resolve(exp) : Promise.reject(new ApiError("not found", { status: 404 }));
  }
  return fetchExperiment(id, signal).then((res) => {
    if (view.exp === id) rd.followDetails(res.data);
    return res.data;
  });
}

/**
 * The details dialog (details.js, with its curation panel and training curves): imported when
 * an experiment is first opened, not with the page (a visit that opens none never loads it).
 */
function detailsDialog() {
  state.modules.details ??= Promise.all([later(), import("./details.js"), import("./curves.js")]).then(([rest, details, curves]) => {
    curves.initCurves({ isStatic, candidates: rest.table.shownExperiments });
    state.modules.curves = curves; // live curves: the event stream's metrics events
    details.initDetails({
      onClosed: (id) => {
        view.exp = null;
        rest.rd.followDetails(null);
        // Closing undoes the opening: step back over the entry openExperiment pushed, so Back
        // does not reopen the dialog; for a shared ?exp= link, just drop exp from the URL.
        if (history.state?.codecdashOpened === id) history.back();
        else writeUrl({ replace: true });
      },
    });
    return details;
  });
  return state.modules.details;
}

/** Opens experiment `id` in #experiment-details and records it in the URL. */
export async function openExperiment(id, returnFocus = null) {
  const replace = Boolean(view.exp); // switching experiments keeps one entry
  view.exp = id;
  writeUrl({ replace, state: { codecdashOpened: id } });
  const details = await detailsDialog();
  details.showExperiment(id, loadExperiment, returnFocus);
}

/** Makes the dialog match the URL (after load, back and forward). */
async function syncDetailsWithUrl() {
  const { rd } = await later();
  if (view.exp) {
    const details = await detailsDialog();
    if (view.exp && details.openId() !== view.exp) details.showExperiment(view.exp, loadExperiment); // still asked for
  } else {
    if (state.modules.details) (await state.modules.details).closeDetails();
    rd.followDetails(null);
  }
}

function fillServerUrl() {
  const meta = document.querySelector('meta[name="codecdash-api-base"]')?.getAttribute("content")?.trim();
  const url = meta || new URL(".", window.location.href).href.replace(/\/$/, "");
  for (const el of document.querySelectorAll(".js-server-url")) el.textContent = url;
}

/**
 * Draws the snapshot (and the alerts) the server put in the page, if any: the first paint
 * needs no request. Returns null when there was none, else whether the alerts were drawn.
 */
function firstPaint() {
  const inline = takeInlineSnapshot();
  if (!inline || !acceptSnapshot(inline)) return null;
  state.round.renderedKey = figuresKey(state.snapshot);
  render(state.snapshot);
  const alerts = takeInlineAlerts();
  if (alerts && state.mode === "api") renderAlerts(alerts);
  revealMain();
  return { alerts: Boolean(alerts) };
}

/** Live updates, the read-token panel and the theme button: imported after the first paint. */
async function startLive(painted) {
  const [live, auth, theme] = await Promise.all([import("./live.js"), import("./auth.js"), import("./theme-toggle.js")]);
  theme.initTheme(() => {
    if (state.modules.rest) import("./charts.js").then((m) => m.rethemeCharts());
  });
  auth.initAuth(() => {
    state.needsToken = false;
    state.etag = null;
    live.refresh().then(() => {
      if (!state.needsToken) live.openStream();
    });
  });
  if (painted) live.settleInline({ alertsDrawn: painted.alerts });
  else await live.refresh();
  return live;
}

async function boot() {
  state.hooks.render = render;
  state.hooks.afterRound = afterRound;
  state.hooks.alertsChanged = refreshAlerts;
  state.hooks.onMetrics = (data) => state.modules.curves?.onMetricsEvent(data);
  initUrlState((before) => {
    state.modules.rest?.table.followUrl(before);
    syncDetailsWithUrl();
  });
  fillServerUrl();
  initAlerts({ isStatic });
  document.addEventListener("click", (e) => {
    const link = e.target.closest(".card a[data-exp]");
    // A table's own handler took it already (the tables are cards too): one opening, one request.
    if (!link || e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
    e.preventDefault();
    openExperiment(link.dataset.exp, link);
  });

  const painted = firstPaint();
  await afterPaint(); // the first figures are on screen: now the rest
  const live = await startLive(painted);
  revealMain();
  await later();
  if (state.fetchOk) syncDetailsWithUrl();
  // The stream opens once the page has loaded, so that the first paint is not competing.
  if (document.readyState !== "complete") await new Promise((resolve) => window.addEventListener("load", resolve, { once: true }));
  if (state.mode === "api" && !state.needsToken) live.openStream();

  document.addEventListener("visibilitychange", () => {
    if (document.hidden) return;
    const open = state.stream && state.stream.readyState === EventSource.OPEN;
    if (!open || state.missedWhileHidden) live.refresh({ table: state.missedWhileHidden });
    state.missedWhileHidden = false;
  });
  window.addEventListener("online", () => live.refresh());
  setInterval(() => refreshTimes(), 15000);
}

boot();
