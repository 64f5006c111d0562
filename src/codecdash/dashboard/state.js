// The page's one state object: what the page knows and where its live updates stand. The
// modules that app.js wires (live.js, url-state.js, auth.js, cards.js, notices.js…) keep
// nothing of their own: they read and write this object, so the flow stays easy to follow.
// (A section module loaded later keeps its own drawing state: rd.js, curves.js, details.js.)

import { staticSnapshotUrl } from "./api.js";

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
