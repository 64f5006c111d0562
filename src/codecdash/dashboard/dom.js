// Tiny DOM helpers. Text always goes in through text nodes (never innerHTML), and attributes
// through setAttribute, so nothing that comes from data is ever parsed as markup.

import { formatRelative, parseTime } from "./format.js";

const SVG_NS = "http://www.w3.org/2000/svg";

function build(el, props, children) {
  for (const [key, value] of Object.entries(props || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") el.setAttribute("class", value);
    else if (key === "text") el.textContent = String(value);
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2), value);
    } else el.setAttribute(key, value === true ? "" : String(value));
  }
  append(el, ...children);
  return el;
}

/** Appends children: nodes as they are, strings and numbers as text nodes; skips null. */
export function append(parent, ...children) {
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    parent.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return parent;
}

/** `h("p", {class: "x"}, "text", h("strong", {}, "bold"))` */
export function h(tag, props = {}, ...children) {
  return build(document.createElement(tag), props, children);
}

/** The same for SVG elements. */
export function s(tag, props = {}, ...children) {
  return build(document.createElementNS(SVG_NS, tag), props, children);
}

/**
 * Runs `build(draft)` on a detached deep copy of `el` and changes the page only where the copy
 * differs, so a refresh that changes nothing costs no layout (and keeps focus where it is).
 * When only texts and attributes differ (a figure, a relative time), they are changed in
 * place: an element put in anew counts as new content (the Largest Contentful Paint would
 * move to it), which matters for the cards the server drew (api/first_screen.py). Otherwise
 * the copy takes `el`'s place. Returns the element now in the page.
 */
export function renderInto(el, build) {
  const draft = el.cloneNode(true);
  build(draft);
  if (draft.isEqualNode(el)) return el;
  if (sameShape(el, draft)) {
    patch(el, draft);
    return el;
  }
  el.replaceWith(draft);
  return draft;
}

/** The same tree of elements and texts (tags and child counts), whatever their contents. */
function sameShape(a, b) {
  if (a.nodeType !== b.nodeType || a.nodeName !== b.nodeName) return false;
  if (a.childNodes.length !== b.childNodes.length) return false;
  for (let i = 0; i < a.childNodes.length; i += 1) if (!sameShape(a.childNodes[i], b.childNodes[i])) return false;
  return true;
}

/** Makes `el` (of the same shape as `like`) equal to it, text by text, attribute by attribute. */
function patch(el, like) {
  if (el.nodeType === Node.TEXT_NODE) {
    if (el.data !== like.data) el.data = like.data;
    return;
  }
  if (el.nodeType !== Node.ELEMENT_NODE) return;
  for (const name of el.getAttributeNames()) if (!like.hasAttribute(name)) el.removeAttribute(name);
  for (const name of like.getAttributeNames()) {
    const value = like.getAttribute(name);
    if (el.getAttribute(name) !== value) el.setAttribute(name, value);
  }
  for (let i = 0; i < el.childNodes.length; i += 1) patch(el.childNodes[i], like.childNodes[i]);
}

/** `el.replaceChildren(...nodes)`, skipped when the children would be the same (or no `el`). */
export function setChildren(el, ...nodes) {
  if (!el) return;
  const draft = el.cloneNode(false);
  append(draft, ...nodes);
  if (!draft.isEqualNode(el)) el.replaceChildren(...draft.childNodes);
}

/** Sets `hidden` only when it changes (each write would invalidate style); no `el`, no-op. */
export function setHidden(el, hidden) {
  if (el && el.hidden !== hidden) el.hidden = hidden;
}

/** A placeholder for a missing figure, read out as "not available". */
export function missing() {
  return h("span", { class: "missing", title: "not available" }, h("span", { "aria-hidden": "true" }, "—"),
    h("span", { class: "sr-only" }, "not available"));
}

/** `<time datetime="ISO" title="ISO">3 min ago</time>`, refreshed by refreshTimes(). */
export function timeAgo(iso) {
  const d = parseTime(iso);
  if (!d) return missing();
  const iso8601 = d.toISOString();
  return h("time", { datetime: iso8601, title: iso8601, class: "rel-time" }, formatRelative(d));
}

/** Rewrites every relative time on the page against the current clock. */
export function refreshTimes(root = document) {
  const now = new Date();
  for (const t of root.querySelectorAll("time.rel-time")) {
    const text = formatRelative(parseTime(t.dateTime), now);
    if (t.textContent !== text) t.textContent = text;
  }
}

/** A status badge: text plus a class for its colour (never colour alone). */
export function badge(status) {
  const value = String(status ?? "unknown");
  const known = /^[a-z_]+$/.test(value) ? value : "unknown";
  return h("span", { class: `badge badge-${known}` }, value);
}
