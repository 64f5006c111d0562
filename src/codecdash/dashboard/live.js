// Loading and live updates: the snapshot (the one in the page first, then the API's or a
// static export's dashboard.json), the api/v1/events stream (polling every refresh_seconds
// without one), and the connection indicator (#connection-status). What a new snapshot
// draws is app.js's business: it sets `state.hooks` (state.js).

import { ApiError, eventsUrl, fetchSnapshot, fetchStaticSnapshot } from "./api.js";
import { hideTokenPanel, showTokenPanel } from "./auth.js";
import { h, setChildren, setHidden } from "./dom.js";
import { formatClock } from "./format.js";
import { showLoadError } from "./notices.js";
import { acceptSnapshot, figuresKey, state, takeInlineSnapshot } from "./state.js";

/** Fetches the snapshot; resolves true when it changed. Falls back to a static export once. */
async function loadSnapshot() {
  const inline = state.snapshot ? null : takeInlineSnapshot();
  if (inline) return acceptSnapshot(inline);
  if (state.mode === "static") {
    const res = await fetchStaticSnapshot(state.etag);
    return acceptSnapshot(res);
  }
  try {
    return acceptSnapshot(await fetchSnapshot(state.etag));
  } catch (err) {
    const unavailable = err instanceof ApiError && (err.network || err.notJson || err.status === 404 || err.status === 403);
    if ((state.snapshot && !state.inlineOnly) || !unavailable) throw err;
    // No API here (a static export on S3, or a plain file server): read ./dashboard.json.
    const res = await fetchStaticSnapshot(null);
    state.mode = "static";
    state.etag = null;
    return acceptSnapshot(res);
  }
}

const MIN_REFRESH_GAP_MS = 1000;

/**
 * Refetches the snapshot (with If-None-Match) and, when it changed or `table` is set, the
 * table's current page. A call made while a round waits for its turn joins that round; one
 * made while its request is under way (which may miss the change) gets one more round.
 */
export function refresh({ table = false } = {}) {
  const round = state.round;
  round.tableWanted = round.tableWanted || table;
  if (round.inflight) {
    if (round.fetching) round.again = true;
    return round.inflight;
  }
  round.inflight = (async () => {
    do {
      round.again = false;
      // Bursts of events (a busy training fleet) cost at most one round per MIN_REFRESH_GAP_MS.
      const wait = round.lastAt + MIN_REFRESH_GAP_MS - Date.now();
      if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
      round.lastAt = Date.now();
      round.fetching = true;
      try {
        await refreshOnce();
      } finally {
        round.fetching = false;
      }
    } while (round.again);
  })().finally(() => {
    round.inflight = null;
  });
  return round.inflight;
}

async function refreshOnce() {
  const round = state.round;
  let changed = false;
  const wantTable = round.tableWanted;
  round.tableWanted = false;
  try {
    changed = await loadSnapshot();
    if (changed && state.mode === "api") state.hooks.alertsChanged(); // alert changes move the ETag too
    state.fetchOk = true;
    state.needsToken = false;
    hideTokenPanel();
  } catch (err) {
    state.fetchOk = false;
    if (err instanceof ApiError && err.status === 401) askForToken();
    else if (!state.snapshot) showLoadError(err);
    updateConnection();
    return;
  }
  if (changed) {
    // A new ETag with the same figures (only generated_at moved) needs no redraw.
    const key = figuresKey(state.snapshot);
    if (key !== round.renderedKey) {
      round.renderedKey = key;
      state.hooks.render(state.snapshot);
    } else changed = false;
  }
  state.hooks.afterRound({ changed, wantTable });
  updateConnection();
}

/** Sets #connection-status from the stream and the newest request. */
export function updateConnection() {
  const el = document.getElementById("connection-status") || document.createElement("p");
  const text = el.querySelector(".conn-text") || el;
  let stateName;
  let label;
  if (state.needsToken) {
    stateName = "offline";
    label = "Read token needed";
  } else if (state.fetchOk === false) {
    stateName = "offline";
    label = state.lastSuccess ? `Offline — showing data from ${formatClock(state.lastSuccess)}` : "Offline — no data yet";
  } else if (state.fetchOk === null || (state.mode === "api" && !state.streamTried && typeof EventSource !== "undefined" && streamOffered())) {
    // Before the stream is first tried (it opens once the page has loaded), a write would show
    // only when it opens: the page does not call itself live before that.
    stateName = "reconnecting";
    label = "Connecting…";
  } else if (state.stream && state.stream.readyState === EventSource.OPEN) {
    stateName = "live";
    label = "Live";
  } else if (state.stream && state.streamOpened) {
    stateName = "reconnecting";
    label = "Reconnecting…";
  } else {
    stateName = "live";
    label = state.mode === "static" ? `Live · static export, every ${state.refreshSeconds} s` : `Live · every ${state.refreshSeconds} s`;
  }
  if (el.dataset.state !== stateName) el.dataset.state = stateName;
  if (text.textContent !== label) text.textContent = label;
  const stale = stateName === "offline" && Boolean(state.snapshot) && !state.needsToken;
  if (document.documentElement.classList.contains("is-stale") !== stale) document.documentElement.classList.toggle("is-stale", stale);
  setHidden(document.getElementById("stale-note"), !stale);
  const updated = document.getElementById("last-updated");
  if (state.lastSuccess) {
    const iso = state.lastSuccess.toISOString();
    setChildren(updated, "Updated ", h("time", { datetime: iso, title: iso }, formatClock(state.lastSuccess)));
  }
  schedulePoll();
}

/** Polls while no stream is open: every refresh_seconds, sooner while offline. */
function schedulePoll() {
  clearTimeout(state.pollTimer);
  state.pollTimer = 0;
  if (state.needsToken) return;
  if (state.stream && state.stream.readyState === EventSource.OPEN) return;
  const seconds = state.fetchOk === false ? Math.min(state.refreshSeconds, 10) : state.refreshSeconds;
  state.pollTimer = setTimeout(poll, seconds * 1000);
}

async function poll() {
  if (document.hidden) {
    schedulePoll();
    return;
  }
  const wasOffline = state.fetchOk === false;
  await refresh();
  const due = wasOffline || Date.now() >= state.streamRetryAt;
  if (state.mode === "api" && state.fetchOk && !state.stream && due) openStream();
}

/** False where the page was told the API has no event stream (the AWS deployment). */
const streamOffered = () => document.querySelector('meta[name="codecdash-events"]')?.content !== "off";

/** Subscribes to api/v1/events. If it never opens (no stream here), polling carries on. */

export function openStream() {
  if (state.mode !== "api" || state.needsToken || typeof EventSource === "undefined" || !streamOffered()) return;
  closeStream();
  const stream = new EventSource(eventsUrl());
  state.stream = stream;
  state.streamTried = true;
  state.streamOpened = false;
  let heard = false; // has this connection delivered an event yet?
  // A hidden tab only notes that something changed, and catches up once it is shown again.
  const onChange = () => {
    heard = true;
    if (document.hidden) state.missedWhileHidden = true;
    else refresh({ table: true });
  };
  stream.addEventListener("message", onChange);
  stream.addEventListener("snapshot", onChange);
  stream.addEventListener("metrics", (e) => state.hooks.onMetrics(e.data)); // training curves: curves.js
  stream.addEventListener("open", () => {
    state.streamOpened = true;
    heard = false;
    updateConnection(); // "Live" now, not after the next request
    // Catch up on anything missed while the stream was down. codecdash's server sends an event
    // as soon as a connection opens, and that refresh is the catch-up (one request on page
    // load, not two); a stream that says nothing at first gets one from here.
    setTimeout(() => {
      if (!heard && state.stream === stream) refresh();
    }, 500);
  });
  stream.addEventListener("error", () => {
    if (!state.streamOpened || stream.readyState === EventSource.CLOSED) {
      // Never opened: the stream is not offered here (404, API Gateway); closed by the browser
      // after a failed reconnection. Either way poll, and try the stream again later.
      const wait = state.streamOpened ? state.refreshSeconds * 1000 : 5 * 60 * 1000;
      closeStream();
      state.streamRetryAt = Date.now() + wait;
      refresh();
      return;
    }
    updateConnection(); // "Reconnecting…" while EventSource retries on its own
    refresh(); // and find out at once whether the server is gone (→ offline, stale)
  });
}

export function closeStream() {
  if (!state.stream) return;
  state.stream.close();
  state.stream = null;
  state.streamOpened = false;
}

/**
 * After app.js drew the snapshot the page came with: what a refresh round does once it has a
 * snapshot, without a request (the event stream's first event is the catch-up).
 */
export function settleInline({ alertsDrawn = false } = {}) {
  state.fetchOk = true;
  state.needsToken = false;
  if (state.mode === "api" && !alertsDrawn) state.hooks.alertsChanged();
  state.hooks.afterRound({ changed: true, wantTable: false });
  updateConnection();
}

/** A private dashboard without a (valid) token: stop, and ask for one. */
export function askForToken() {
  state.needsToken = true;
  closeStream();
  showTokenPanel();
  updateConnection();
}
