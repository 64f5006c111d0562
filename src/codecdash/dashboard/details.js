// The experiment details dialog (#experiment-details): params, tags, notes, error and the
// rate-distortion points of one experiment, opened from the table or a shared ?exp= link;
// with a write token, its curation controls (curate.js).

import { ApiError } from "./api.js";
import { pruneCharts, renderRdChart } from "./charts.js";
import { curationPanel } from "./curate.js";
import { renderCurves, stopCurves } from "./curves.js";
import { badge, h, missing, timeAgo } from "./dom.js";
import {
  formatDb,
  formatDuration,
  formatPct,
  formatSignedPct,
  formatSsim,
  formatUsd,
  isNum,
} from "./format.js";

const els = {};
let current = { id: null, controller: null, returnFocus: null };

/** Wires the dialog; `onClosed()` runs when the user closes it (Esc, the button, the backdrop). */
export function initDetails({ onClosed }) {
  els.dialog = document.getElementById("experiment-details");
  els.title = document.getElementById("details-title");
  els.body = document.getElementById("details-body");
  if (!els.dialog || !els.title || !els.body) {
    els.dialog = null; // removed from index.html: experiments open nowhere
    return;
  }
  document.getElementById("details-close")?.addEventListener("click", () => els.dialog.close());
  els.dialog.addEventListener("click", (e) => {
    if (e.target === els.dialog) els.dialog.close(); // a click on the backdrop
  });
  els.dialog.addEventListener("close", () => {
    current.controller?.abort();
    stopCurves();
    const id = current.id;
    current.id = null;
    els.body.replaceChildren();
    pruneCharts();
    const back = current.returnFocus;
    current.returnFocus = null;
    if (back?.isConnected) back.focus();
    if (id) onClosed(id);
  });
}

export function openId() {
  return current.id;
}

/** Closes the dialog without telling onClosed (the URL already says it is closed). */
export function closeDetails() {
  if (!els.dialog?.open) return;
  current.id = null;
  els.dialog.close();
}

/** Opens the dialog on experiment `id`; `load(id, signal)` resolves the Experiment. */
export async function showExperiment(id, load, returnFocus = null) {
  if (!els.dialog) return;
  current.controller?.abort();
  const controller = new AbortController();
  current = { id, controller, returnFocus: returnFocus || current.returnFocus || document.activeElement };
  els.title.textContent = id;
  els.body.replaceChildren(h("p", { class: "muted" }, "Loading…"));
  if (!els.dialog.open) els.dialog.showModal();
  try {
    const exp = await load(id, controller.signal);
    if (current.id !== id) return;
    renderExperiment(exp);
  } catch (err) {
    if (err?.name === "AbortError" || current.id !== id) return;
    const text =
      err instanceof ApiError && err.status === 404
        ? "There is no experiment with this id. It may have been deleted, or the link is mistyped."
        : `The experiment could not be loaded: ${err.message}`;
    els.body.replaceChildren(h("p", { class: "notice notice-error" }, text));
  }
}

/** The snapshot leaves an experiment's largest fields out (`omitted`); the API has them all. */
function omittedNote(e) {
  const omitted = Array.isArray(e.omitted) ? e.omitted.map(String) : [];
  if (!omitted.length) return null;
  return h(
    "p",
    { class: "notice notice-warn" },
    `Too large for the snapshot, so left out or shortened here: ${omitted.join(", ")}. The API has the whole experiment: GET api/v1/experiments/${e.id}.`,
  );
}

function fact(label, value) {
  const shown = value === null || value === undefined || value === "—" ? missing() : value;
  return h("div", { class: "fact" }, h("dt", {}, label), h("dd", {}, shown));
}

function valueText(v) {
  if (v === null || v === undefined) return "null";
  if (typeof v === "object") return JSON.stringify(v);
  return String(v);
}

/** Draws the dialog again with `exp` as a write answered it (curate.js), if still open on it. */
function redraw(exp) {
  if (exp && current.id === exp.id && els.dialog?.open) renderExperiment(exp);
}

function renderExperiment(e) {
  els.title.textContent = e.name || e.id;
  const parts = [];
  parts.push(
    h("p", { class: "details-meta" }, badge(e.status), " ", h("code", { class: "exp-id" }, e.id)),
    h(
      "dl",
      { class: "details-grid" },
      fact("Compression", isNum(e.bitrate_reduction_pct) ? formatPct(e.bitrate_reduction_pct) : null),
      fact("PSNR", isNum(e.psnr_db) ? formatDb(e.psnr_db) : null),
      fact("MS-SSIM", isNum(e.ms_ssim) ? formatSsim(e.ms_ssim) : null),
      fact("Bits per pixel", isNum(e.bpp) ? e.bpp.toFixed(4) : null),
      fact("Bitrate", isNum(e.bitrate_kbps) ? `${e.bitrate_kbps.toFixed(1)} kbps` : null),
      fact(
        "BD-rate",
        isNum(e.bd_rate_pct)
          ? [formatSignedPct(e.bd_rate_pct), e.bd_rate_anchor ? h("span", { class: "fact-sub" }, `vs ${e.bd_rate_anchor}`) : null]
          : null,
      ),
      fact("Duration", isNum(e.duration_s) ? formatDuration(e.duration_s) : null),
      fact("Cost", isNum(e.cost_usd) ? formatUsd(e.cost_usd) : null),
      fact("Worker", e.worker_id || null),
      fact("Created", e.created_at ? timeAgo(e.created_at) : null),
      fact("Started", e.started_at ? timeAgo(e.started_at) : null),
      fact("Finished", e.finished_at ? timeAgo(e.finished_at) : null),
    ),
  );
  const note = omittedNote(e);
  if (note) parts.splice(1, 0, note);
  const curate = curationPanel(e, redraw); // null for public viewers
  if (curate) parts.push(curate);
  const curves = h("section", { class: "curves" });
  parts.push(curves);
  if (e.error) {
    parts.push(
      h("h3", {}, "Error"),
      h("pre", { class: "error-box", tabindex: "0" }, String(e.error)),
    );
  }
  if (e.notes) {
    // Markdown as plain text: a text node, never parsed as HTML.
    parts.push(h("h3", {}, "Notes"), h("div", { class: "notes-box", tabindex: "0" }, String(e.notes)));
  }
  const tags = Array.isArray(e.tags) ? e.tags : [];
  parts.push(
    h("h3", {}, "Tags"),
    tags.length ? h("ul", { class: "tag-list" }, tags.map((t) => h("li", { class: "tag" }, String(t)))) : h("p", { class: "muted" }, "No tags."),
  );
  const params = e.params && typeof e.params === "object" ? Object.entries(e.params) : [];
  parts.push(h("h3", {}, "Parameters"));
  parts.push(
    params.length
      ? h(
          "table",
          { class: "data-table params-table" },
          h("caption", { class: "sr-only" }, "Parameters"),
          h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Name"), h("th", { scope: "col" }, "Value"))),
          h("tbody", {}, params.map(([k, v]) => h("tr", {}, h("th", { scope: "row" }, k), h("td", {}, h("code", {}, valueText(v)))))),
        )
      : h("p", { class: "muted" }, "No parameters recorded."),
  );
  const points = Array.isArray(e.rd_points) ? e.rd_points : [];
  parts.push(h("h3", {}, "Rate-distortion points"));
  if (points.length) {
    const rateKey = points.some((p) => isNum(p.bitrate_kbps)) ? "bitrate_kbps" : "bpp";
    const rateLabel = rateKey === "bpp" ? "bpp" : "kbps";
    const box = h("div", {
      class: "chart chart-rd",
      role: "img",
      "aria-label": `Rate-distortion curve of ${e.name || e.id}: ${points.length} points; the table below lists them.`,
    });
    parts.push(
      box,
      h(
        "table",
        { class: "data-table" },
        h("caption", { class: "sr-only" }, "Rate-distortion points"),
        h(
          "thead",
          {},
          h("tr", {}, h("th", { scope: "col", class: "num" }, rateKey === "bpp" ? "Bits per pixel" : "Bitrate (kbps)"), h("th", { scope: "col", class: "num" }, "PSNR"), h("th", { scope: "col", class: "num" }, "MS-SSIM")),
        ),
        h(
          "tbody",
          {},
          points.map((p) =>
            h(
              "tr",
              {},
              h("td", { class: "num" }, isNum(p[rateKey]) ? String(p[rateKey]) : missing()),
              h("td", { class: "num" }, isNum(p.psnr_db) ? formatDb(p.psnr_db) : missing()),
              h("td", { class: "num" }, isNum(p.ms_ssim) ? formatSsim(p.ms_ssim) : missing()),
            ),
          ),
        ),
      ),
    );
    els.body.replaceChildren(...parts);
    renderRdChart(box, points, rateKey, rateLabel);
    drawCurves(curves, e);
    return;
  }
  parts.push(h("p", { class: "muted" }, "No rate-distortion points recorded."));
  els.body.replaceChildren(...parts);
  drawCurves(curves, e);
}

/** Its training curves; none for an experiment in the trash (they are kept, not served). */
function drawCurves(host, e) {
  if (e.deleted_at) {
    stopCurves({ keepUrl: true });
    host.hidden = true;
    return;
  }
  renderCurves(host, e);
}
