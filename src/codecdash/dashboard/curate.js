// Curation from the details dialog (docs/curation.md): rename, tags, the note, delete and
// restore, each followed by a notice with Undo. Only for a viewer who has entered a WRITE
// token: it is kept for this tab only (sessionStorage), like the read token of a private
// dashboard (api.js). The form to enter one shows when the page's address has `?curate`;
// without a token and without `?curate`, nothing here shows: public viewers see no change.

import { ApiError, apiUrl } from "./api.js";
import { h, timeAgo } from "./dom.js";

const KEY = "codecdash-write-token";
const UNDO_MS = 15000;
let pageToken = ""; // when storage is disabled: this page only
let toastTimer = null;

/** The write token entered on this tab ("" when none). */
export function getWriteToken() {
  try {
    return sessionStorage.getItem(KEY) || pageToken;
  } catch {
    return pageToken;
  }
}

/** Keeps `token` for this tab; "" forgets it. */
export function setWriteToken(token) {
  pageToken = token;
  try {
    if (token) sessionStorage.setItem(KEY, token);
    else sessionStorage.removeItem(KEY);
  } catch {
    /* storage disabled: the token lives for this page only */
  }
}

function asked() {
  return new URLSearchParams(window.location.search).has("curate");
}

const expPath = (id, tail = "") => `api/v1/experiments/${encodeURIComponent(id)}${tail}`;

/** A write with the write token: resolves the JSON answer, rejects with ApiError. */
async function send(method, path, body) {
  const headers = { Accept: "application/json", Authorization: `Bearer ${getWriteToken()}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let res;
  try {
    res = await fetch(apiUrl(path), {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
    });
  } catch {
    throw new ApiError("The server could not be reached", { network: true });
  }
  const text = await res.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    /* not JSON: the status says enough */
  }
  if (!res.ok) {
    const message = data?.error?.message;
    throw new ApiError(typeof message === "string" ? message : `HTTP ${res.status}`, {
      status: res.status,
    });
  }
  return data;
}

const patch = (id, body) => send("PATCH", expPath(id), body);
const remove = (id) => send("DELETE", expPath(id));
const restore = (id) => send("POST", expPath(id, "/restore"));

/**
 * The "Curate" section of the details dialog for experiment `e`, or null (no write token and
 * no `?curate`). `show(experiment)` draws the dialog again with an experiment as answered.
 */
export function curationPanel(e, show) {
  if (!getWriteToken()) return asked() ? tokenForm(e, show) : null;
  return e.deleted_at ? trashedPanel(e, show) : controls(e, show);
}

function section(...children) {
  return h("section", { class: "curate", "aria-labelledby": "curate-title" },
    h("h3", { id: "curate-title" }, "Curate"), ...children);
}

function errorLine() {
  return h("p", { class: "curate-error notice notice-error", role: "alert", hidden: true });
}

function fail(line, err) {
  line.textContent = err instanceof ApiError && err.status === 401
    ? "The write token was refused (unknown or revoked). Forget it and enter another."
    : `Not done: ${err.message}`;
  line.hidden = false;
}

function tokenForm(e, show) {
  const input = h("input", { id: "curate-token", type: "password", autocomplete: "off", spellcheck: "false", required: true });
  const line = errorLine();
  const form = h(
    "form",
    { class: "curate-token" },
    h("p", {}, "Enter a write token to rename, tag, annotate or delete experiments. It is kept in this tab only, until it closes."),
    h("div", { class: "field" }, h("label", { for: "curate-token" }, "Write token"), input),
    h("button", { type: "submit", class: "button button-primary" }, "Use this token"),
    line,
  );
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    setWriteToken(input.value.trim());
    try {
      // A write that changes nothing: a dry run of deleting this experiment.
      await send("POST", "api/v1/experiments/delete", { ids: [e.id], dry_run: true });
    } catch (err) {
      setWriteToken("");
      fail(line, err);
      return;
    }
    show(e);
  });
  return section(form);
}

function trashedPanel(e, show) {
  const line = errorLine();
  const button = h("button", { type: "button", class: "button button-primary", id: "curate-restore" }, "Restore");
  button.addEventListener("click", async () => {
    try {
      const back = await restore(e.id);
      show(back);
      toast(`Restored ${e.name || e.id}.`, async () => show(await remove(e.id)));
    } catch (err) {
      fail(line, err);
    }
  });
  return section(
    h("p", { class: "notice notice-warn", id: "curate-trashed" }, "In the trash since ", timeAgo(e.deleted_at), ". It is hidden from lists and figures until restored."),
    button,
    line,
  );
}

function controls(e, show) {
  const line = errorLine();
  const act = async (work, done, undo) => {
    line.hidden = true;
    try {
      const answer = await work();
      show(answer);
      toast(done, async () => show(await undo()));
    } catch (err) {
      fail(line, err);
    }
  };

  const name = h("input", { id: "curate-name", type: "text", value: e.name || "", maxlength: "200" });
  const renameForm = h(
    "form",
    { class: "curate-row" },
    h("div", { class: "field field-grow" }, h("label", { for: "curate-name" }, "Name"), name),
    h("button", { type: "submit", class: "button" }, "Rename"),
  );
  renameForm.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const before = e.name ?? null;
    act(() => patch(e.id, { name: name.value.trim() || null }), "Renamed.", () => patch(e.id, { name: before }));
  });

  const tags = Array.isArray(e.tags) ? e.tags.map(String) : [];
  const restoreTags = () => patch(e.id, { tags: tags.length ? tags : null });
  const tagList = h(
    "ul",
    { class: "tag-list curate-tags" },
    tags.map((t) => {
      const x = h("button", { type: "button", class: "icon-button tag-remove", "aria-label": `Remove tag ${t}` }, "×");
      x.addEventListener("click", () => act(() => patch(e.id, { remove_tags: [t] }), `Removed tag ${t}.`, restoreTags));
      return h("li", { class: "tag" }, t, " ", x);
    }),
  );
  const newTag = h("input", { id: "curate-tag", type: "text", maxlength: "64" });
  const tagForm = h(
    "form",
    { class: "curate-row" },
    h("div", { class: "field field-grow" }, h("label", { for: "curate-tag" }, "Add a tag"), newTag),
    h("button", { type: "submit", class: "button" }, "Add tag"),
  );
  tagForm.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const t = newTag.value.trim();
    if (t) act(() => patch(e.id, { add_tags: [t] }), `Added tag ${t}.`, restoreTags);
  });

  const note = h("textarea", { id: "curate-note", rows: "4", maxlength: "10000" });
  note.value = e.notes || ""; // a property: the text as it is, never parsed
  const noteForm = h(
    "form",
    { class: "curate-note" },
    h("div", { class: "field" }, h("label", { for: "curate-note" }, "Note (Markdown, shown as text)"), note),
    h("button", { type: "submit", class: "button" }, "Save note"),
  );
  noteForm.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const before = e.notes ?? null;
    act(() => patch(e.id, { notes: note.value || null }), "Note saved.", () => patch(e.id, { notes: before }));
  });

  const del = h("button", { type: "button", class: "button curate-delete", id: "curate-delete" }, "Delete");
  del.addEventListener("click", () => act(() => remove(e.id), `Moved ${e.name || e.id} to the trash.`, () => restore(e.id)));
  const forget = h("button", { type: "button", class: "link-button" }, "Forget the write token");
  forget.addEventListener("click", () => {
    setWriteToken("");
    show(e);
  });

  return section(renameForm, tagList, tagForm, noteForm, h("div", { class: "curate-row" }, del, forget), line);
}

/** A notice with Undo, inside the open dialog (the rest of the page is inert behind it). */
function toast(message, undo) {
  document.getElementById("curate-toast")?.remove();
  clearTimeout(toastTimer);
  const button = h("button", { type: "button", class: "link-button" }, "Undo");
  const box = h("div", { id: "curate-toast", class: "curate-toast", role: "status" }, h("span", {}, message), " ", button);
  button.addEventListener("click", async () => {
    box.remove();
    try {
      await undo();
    } catch (err) {
      const again = h("div", { id: "curate-toast", class: "curate-toast notice-error", role: "alert" }, `Undo failed: ${err.message}`);
      (document.querySelector("dialog[open]") || document.body).append(again);
    }
  });
  (document.querySelector("dialog[open]") || document.body).append(box);
  button.focus(); // the dialog was drawn again: focus goes to what can be done next
  toastTimer = setTimeout(() => box.remove(), UNDO_MS);
}
