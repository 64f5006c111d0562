// Talking to the codecdash API (or to a static export's dashboard.json).
//
// All URLs are relative, so the page works at "/", under a sub-path and from an S3 export.
// <meta name="codecdash-api-base" content="https://…"> in index.html, when non-empty, is
// prefixed to every API path (an API on another origin, such as API Gateway).

const TOKEN_KEY = "codecdash-token";

function apiBase() {
  const meta = document.querySelector('meta[name="codecdash-api-base"]');
  return (meta?.getAttribute("content") || "").trim().replace(/\/+$/, "");
}

/** An HTTP or network failure. `status` is 0 for a network error. */
export class ApiError extends Error {
  constructor(message, { status = 0, network = false, notJson = false } = {}) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.network = network;
    this.notJson = notJson;
  }
}

/** `apiUrl("api/v1/experiments", {status: "failed"})` → `api/v1/experiments?status=failed` */
export function apiUrl(path, params) {
  const base = apiBase();
  let url = base ? `${base}/${path}` : path;
  if (params) {
    const qs = new URLSearchParams();
    for (const [k, v] of Object.entries(params)) {
      if (v !== undefined && v !== null && v !== "") qs.set(k, String(v));
    }
    const text = qs.toString();
    if (text) url += (url.includes("?") ? "&" : "?") + text;
  }
  return url;
}

// The read token of a private dashboard lives in sessionStorage: it survives reloads of this
// tab and is gone when the tab closes. Only when the reader ticks "Remember on this device" is
// it kept in localStorage (every tab, until "Forget token"). docs/security.md says why.
let pageToken = ""; // when storage is disabled: this page only

function stores() {
  const found = [];
  for (const name of ["sessionStorage", "localStorage"]) {
    try {
      found.push(window[name]);
    } catch {
      /* storage disabled */
    }
  }
  return found;
}

/** The read token of a private dashboard ("" when none). */
export function getToken() {
  for (const store of stores()) {
    try {
      const token = store.getItem(TOKEN_KEY);
      if (token) return token;
    } catch {
      /* storage disabled */
    }
  }
  return pageToken;
}

/** Keeps `token` for this tab, or on this device when `remember`; "" forgets it everywhere. */
export function setToken(token, { remember = false } = {}) {
  pageToken = token;
  for (const store of stores()) {
    try {
      store.removeItem(TOKEN_KEY);
    } catch {
      /* storage disabled */
    }
  }
  if (!token) return;
  try {
    (remember ? localStorage : sessionStorage).setItem(TOKEN_KEY, token);
  } catch {
    /* storage disabled: the token lives for this page only */
  }
}

/** The first snapshot request, when theme.js started it early (see there); taken once. */
function takeFirstSnapshot(url, etag) {
  const first = window.codecdashFirstSnapshot;
  if (!first || etag || url !== apiUrl("api/v1/dashboard")) return null;
  window.codecdashFirstSnapshot = null;
  return first;
}

/**
 * GET a JSON document. Resolves `{status, data, etag}`; `status` 304 (with `data` null) when
 * `etag` still matches. `cache`: the fetch cache mode ("no-store" unless the answer may be
 * reused, as the vocabulary's). Rejects with ApiError on network errors, HTTP errors and non-JSON bodies.
 */
export async function getJSON(url, { etag = null, signal, auth = true, cache = "no-store" } = {}) {
  const headers = { Accept: "application/json" };
  if (etag) headers["If-None-Match"] = etag;
  const token = auth ? getToken() : "";
  if (token) headers.Authorization = `Bearer ${token}`;
  let res;
  try {
    res = await (takeFirstSnapshot(url, etag) || fetch(url, { headers, cache, signal }));
  } catch (err) {
    if (err?.name === "AbortError") throw err;
    throw new ApiError("The server could not be reached", { network: true });
  }
  if (res.status === 304) return { status: 304, data: null, etag };
  const text = await res.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    if (res.ok) throw new ApiError("The answer was not JSON", { status: res.status, notJson: true });
  }
  if (!res.ok) {
    const message = data?.error?.message || data?.detail || res.statusText || `HTTP ${res.status}`;
    throw new ApiError(typeof message === "string" ? message : `HTTP ${res.status}`, {
      status: res.status,
    });
  }
  return { status: res.status, data, etag: res.headers.get("ETag") };
}

const shared = new Map(); // url → {version, promise}

/**
 * getJSON(url), one request for every section asking it for the same `version` (the
 * snapshot's results_version): rd.js and bdtable.js both read api/v1/anchors. A failed
 * request is not kept. Without a version, a request each time.
 */
export function getSharedJSON(url, version) {
  if (version == null) return getJSON(url);
  const hit = shared.get(url);
  if (hit && hit.version === version) return hit.promise;
  const promise = getJSON(url);
  shared.set(url, { version, promise });
  promise.catch(() => {
    if (shared.get(url)?.promise === promise) shared.delete(url);
  });
  return promise;
}

export const fetchSnapshot = (etag) => getJSON(apiUrl("api/v1/dashboard"), { etag });

/**
 * <meta name="codecdash-snapshot-url" content="dashboard.json">, when non-empty, makes the page
 * a static export from the start: it reads that file and never tries the API (no 404 first).
 */
export function staticSnapshotUrl() {
  const meta = document.querySelector('meta[name="codecdash-snapshot-url"]');
  return (meta?.getAttribute("content") || "").trim();
}

/** The snapshot of a static export, beside index.html (never behind the API base). */
export const fetchStaticSnapshot = (etag) =>
  getJSON(staticSnapshotUrl() || "./dashboard.json", { etag, auth: false });

export const fetchExperiments = (params, signal) =>
  getJSON(apiUrl("api/v1/experiments", params), { signal });

export const fetchExperiment = (id, signal) =>
  getJSON(apiUrl(`api/v1/experiments/${encodeURIComponent(id)}`), { signal });

/** EventSource cannot send headers: a private dashboard's token rides in the query. */
export function eventsUrl() {
  const token = getToken();
  return apiUrl("api/v1/events", token ? { token } : null);
}
