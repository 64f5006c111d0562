// The alerts strip: firing and pending alerts (since when, acknowledged or not) and, on
// demand, their history. Drawn first from the alerts `codecdash serve` puts in the page (it
// sits above the first figures: drawn later, it would push them down), then fed by
// api/v1/alerts each time the snapshot changes (alert changes
// change the data version, so the event stream announces them too). Text goes in through
// text nodes only (dom.js).

import { apiUrl, getJSON } from "./api.js";
import { badge, h, setChildren, setHidden, timeAgo } from "./dom.js";

const HISTORY_ROWS = 20;
const STATE_WORDS = { firing: "Firing", pending: "Pending", resolved: "Resolved", acknowledged: "Acknowledged" };

let inflight = null;
let again = false;
let enabled = true; // false in a static export, where the page is told there are none, or once the API says so
const announced = new Set(); // ids of firing alerts already read out

/** Fetches the current alerts and redraws the strip; calls made meanwhile get one more round. */
export function refreshAlerts() {
  if (!enabled) return Promise.resolve();
  if (inflight) {
    again = true;
    return inflight;
  }
  inflight = (async () => {
    do {
      again = false;
      await loadOnce();
    } while (again);
  })().finally(() => {
    inflight = null;
  });
  return inflight;
}

/** The strip stays as it was when the request fails (the connection indicator says why). */
async function loadOnce() {
  let data;
  try {
    data = (await getJSON(apiUrl("api/v1/alerts", { state: "pending,firing" }))).data;
  } catch (err) {
    if (err?.status === 404) enabled = false;
    return;
  }
  renderAlerts(data);
  const history = document.getElementById("alert-history");
  if (history?.open) await loadHistory();
}

function item(alert) {
  const ack = alert.acknowledged
    ? h("span", { class: "alert-ack" }, `Acknowledged${alert.acknowledged_by ? ` by ${alert.acknowledged_by}` : ""}`)
    : h("span", { class: "alert-ack alert-unack" }, "Not acknowledged");
  return h(
    "li",
    { class: `alert-item alert-${severityClass(alert.severity)} alert-${alert.state === "firing" ? "firing" : "pending"}`, "data-rule": alert.rule, "data-id": String(alert.id) },
    h("span", { class: `badge badge-sev-${severityClass(alert.severity)}` }, `${STATE_WORDS[alert.state] || alert.state} · ${alert.severity}`),
    " ",
    h("span", { class: "alert-summary" }, alert.summary || alert.rule),
    " ",
    h("span", { class: "alert-meta" }, "since ", timeAgo(alert.since), " · ", ack),
  );
}

function severityClass(severity) {
  return ["critical", "warning", "info"].includes(severity) ? severity : "info";
}

/**
 * The alerts the server put in the page (a data block, never executed, beside the snapshot):
 * the strip is drawn with the first figures instead of pushing them down later. Taken once.
 */
export function takeInlineAlerts() {
  const block = document.getElementById("codecdash-alerts");
  if (!block) return null;
  block.remove();
  try {
    return JSON.parse(block.textContent);
  } catch {
    return null;
  }
}

/**
 * Puts `items` (new <li data-id>) into `list`, keeping each alert's element where it was
 * already shown and changing only its content: an element put in anew counts as new content
 * (the page's Largest Contentful Paint would move to it), and a focused element stays.
 */
function syncItems(list, items) {
  if (!list) return;
  const old = new Map([...list.children].map((li) => [li.dataset.id, li]));
  const next = items.map((li) => {
    const before = old.get(li.dataset.id);
    if (!before) return li;
    if (!before.isEqualNode(li)) {
      before.className = li.className;
      before.dataset.rule = li.dataset.rule;
      before.replaceChildren(...li.childNodes);
    }
    return before;
  });
  if (next.length !== list.children.length || next.some((node, i) => node !== list.children[i])) list.replaceChildren(...next);
}

/** Draws the strip from an api/v1/alerts answer. Exported for the tests' sake. */
export function renderAlerts(data) {
  const strip = document.getElementById("alert-strip");
  if (!strip) return;
  const alerts = (Array.isArray(data?.alerts) ? data.alerts : []).filter((a) => a && (a.state === "firing" || a.state === "pending"));
  const firing = alerts.filter((a) => a.state === "firing");
  const list = document.getElementById("alert-list");
  syncItems(list, alerts.map(item));
  setHidden(list, alerts.length === 0);
  const title = document.getElementById("alert-strip-title");
  const heading = firing.length
    ? `${firing.length} alert${firing.length === 1 ? "" : "s"} firing`
    : alerts.length
      ? `${alerts.length} alert${alerts.length === 1 ? "" : "s"} pending`
      : "No alerts firing";
  if (title.textContent !== heading) title.textContent = heading;
  strip.dataset.state = firing.some((a) => a.severity === "critical") ? "critical" : firing.length ? "firing" : alerts.length ? "pending" : "clear";
  setHidden(strip, false);
  // Read out alerts that began firing since the last look (not the whole list each time).
  const fresh = firing.filter((a) => !announced.has(a.id));
  for (const a of firing) announced.add(a.id);
  if (fresh.length) {
    const live = document.getElementById("alert-announce");
    live.textContent = fresh.length === 1 ? `Alert firing: ${fresh[0].summary}` : `${fresh.length} new alerts firing`;
  }
}

async function loadHistory() {
  const body = document.querySelector("#alert-history .alert-history-body");
  let rows;
  try {
    rows = (await getJSON(apiUrl("api/v1/alerts/history", { limit: HISTORY_ROWS }))).data?.items || [];
  } catch {
    setChildren(body, h("p", { class: "notice notice-error" }, "The alert history could not be loaded."));
    return;
  }
  if (!rows.length) {
    setChildren(body, h("p", { class: "alert-none" }, "Nothing has happened yet."));
    return;
  }
  setChildren(
    body,
    h(
      "table",
      { class: "alert-history-table" },
      h("caption", { class: "sr-only" }, `The latest ${rows.length} alert changes, newest first`),
      h("thead", {}, h("tr", {}, ...["When", "Change", "Rule", "Summary"].map((t) => h("th", { scope: "col" }, t)))),
      h(
        "tbody",
        {},
        ...rows.map((r) =>
          h(
            "tr",
            { "data-state": r.state },
            h("td", {}, timeAgo(r.at)),
            h("td", {}, badge(r.state), r.actor ? ` by ${r.actor}` : ""),
            h("td", {}, h("code", {}, r.rule)),
            h("td", {}, r.summary),
          ),
        ),
      ),
    ),
  );
}

export function initAlerts({ isStatic }) {
  const history = document.getElementById("alert-history");
  // The AWS deployment has no alerts (only `codecdash serve` evaluates rules): `deploy` says so.
  if (isStatic() || document.querySelector('meta[name="codecdash-alerts"]')?.content === "off") {
    enabled = false;
    return;
  }
  history?.addEventListener("toggle", () => {
    if (history.open) loadHistory();
  });
}
