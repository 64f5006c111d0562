// The page's one state object: what the page knows and where its live updates stand. The
// modules that app.js wires (live.js, url-state.js, auth.js, cards.js, notices.js…) keep
// nothing of their own: they read and write this object, so the flow stays easy to follow.
// (A section module loaded later keeps its own drawing state: rd.js, curves.js, details.js.)

import { ApiError, staticSnapshotUrl } from "./api.js";

export const DEFAULT_REFRESH_SECONDS = 30;

export const state = {
  snapshot: null,
  etag: null,
  mode: staticSnapshotUrl() ? "static" : "api", // "static": a static export's dashboard.json
  fetchOk: null, // did the newest snapshot request succeed? null before the first
  lastSuccess: null, // Date of the newest successful request (200 or 304)
  refreshSeconds: DEFAULT_REFRESH_SECONDS,
  stream: null, // the EventSource while one exists
  streamOpened: false, // has the current stream ever opened?
  streamTried: false, // has the page tried the stream yet? (until then it is not live)
  streamRetryAt: 0,
  pollTimer: 0,
  needsToken: false,
  inlineOnly: false, // the snapshot so far is the one in the page, not yet one fetched
  missedWhileHidden: false, // stream events that came while the tab was hidden

  /** Refresh rounds (live.js refresh): one at a time, at most one a second. */
  round: {
    inflight: null, // the promise of the round under way
    again: false, // one more round once this one ends
    fetching: false, // is the current round's request under way?
    tableWanted: false, // refresh the table's page too
    lastAt: 0, // when the last round started (ms)
    renderedKey: "", // the figures last drawn (a new ETag with the same figures needs no redraw)
    tableLoaded: false,
  },

  /** The view the URL holds (?status=&q=&sort=&exp=): filled from the URL by url-state.js. */
  view: { status: "", q: "", sort: "", exp: null },
  urlTyping: false, // was the last URL change typing in the search box?

  vocabulary: null, // the promise of the server's rules and labels (vocabulary.js)

  /** Modules loaded after the first paint (app.js `later`), by name, once they have arrived. */
  modules: {},

  /**
   * What live.js and auth.js call back into; app.js sets them. `render(snap)` draws a new
   * snapshot; `afterRound({changed, wantTable})` follows each round; `onMetrics(data)` gets the
   * stream's training-curve events; `alertsChanged()` when the snapshot did.
   */
  hooks: {
    render: () => {},
    afterRound: () => {},
    onMetrics: () => {},
    alertsChanged: () => {},
  },
};

/** True when the page reads a static export (no API). */
export const isStatic = () => state.mode === "static";

/**
 * The snapshot the server put in the page (a data block, never executed): the headline
 * figures come with the first response, and no request is needed to draw them. Taken once.
 */
export function takeInlineSnapshot() {
  const block = document.getElementById("codecdash-snapshot");
  if (!block) return null;
  block.remove();
  try {
    return { status: 200, data: JSON.parse(block.textContent), etag: block.dataset.etag || null, inline: true };
  } catch {
    return null;
  }
}

/** Takes a snapshot answer (`{status, data, etag, inline}`) into the state; true when it changed. */
export function acceptSnapshot(res) {
  state.inlineOnly = Boolean(res.inline); // no answer from the API (or dashboard.json) yet
  state.lastSuccess = new Date();
  if (res.status === 304) return false;
  if (!res.data || typeof res.data !== "object") throw new ApiError("The snapshot was empty", { notJson: true });
  state.snapshot = res.data;
  state.etag = res.etag || null;
  const seconds = Number(res.data.refresh_seconds);
  state.refreshSeconds = Number.isFinite(seconds) && seconds >= 1 ? seconds : DEFAULT_REFRESH_SECONDS;
  return true;
}

/** What a snapshot shows: all of it but `generated_at` (a new ETag with the same figures needs no redraw). */
export function figuresKey(snap) {
  const { generated_at: _at, ...figures } = snap;
  return JSON.stringify(figures);
}

/**
 * A gate that opens (returns true) for a snapshot whose `key` (`experiments_version`, or
 * `results_version`) differs from the one it last opened for, `seen` at first; always for a
 * snapshot without one (an older server).
 */
export function changeGate(key, seen = undefined) {
  let last = seen;
  return (snap) => {
    const version = snap?.[key] ?? null;
    if (version !== null && version === last) return false;
    last = version;
    return true;
  };
}
