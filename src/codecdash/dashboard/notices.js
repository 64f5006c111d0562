// Notices: what the page says about its data rather than the data itself. The demo banner,
// the empty state's first steps, a failing source (on each section it feeds, or on its own
// line when it feeds none), and the first load's failure.

import { h, setChildren, setHidden } from "./dom.js";

// The page sections that each snapshot section feeds. A `sources[]` row names the snapshot
// sections it provides (`sections`); a failing one marks these page sections.
const SOURCE_SECTIONS = {
  experiments: ["total-experiments", "best-compression", "best-quality", "recent-experiments", "compression-progress", "quality-progress"],
  orchestrator: ["orchestrator"],
  training_workers: ["training-workers"],
  inference_workers: ["inference-workers"],
  storage: ["storage"],
  costs: ["monthly-cost", "cost-breakdown"],
};

/** The snapshot sections (keys of SOURCE_SECTIONS) that a `sources[]` row feeds. */
export function sourceSections(source) {
  return Array.isArray(source?.sections) ? source.sections.filter((k) => k in SOURCE_SECTIONS) : [];
}

/** The demo banner and the empty state's first steps. */
export function renderBanners(snap) {
  setHidden(document.getElementById("demo-banner"), !snap.demo);
  setHidden(document.getElementById("empty-state"), (snap.summary || {}).total_experiments !== 0);
}

/** "Source unavailable: …" on each section a failing source feeds; the rest in #source-alerts. */
export function renderSourceErrors(snap) {
  const failing = new Map(); // section id → [source]
  const unplaced = [];
  for (const src of Array.isArray(snap.sources) ? snap.sources : []) {
    if (!src || src.ok !== false) continue;
    const keys = sourceSections(src);
    if (!keys.length) unplaced.push(src);
    for (const key of keys) for (const id of SOURCE_SECTIONS[key]) failing.set(id, [...(failing.get(id) || []), src]);
  }
  for (const section of document.querySelectorAll("main section[id]")) {
    const sources = failing.get(section.id) || [];
    if (section.classList.contains("has-source-error") !== sources.length > 0) section.classList.toggle("has-source-error");
    let note = section.querySelector(":scope > .source-error");
    if (!sources.length) {
      note?.remove();
      continue;
    }
    if (!note) {
      note = h("p", { class: "source-error" });
      section.querySelector("h2").after(note);
    }
    setChildren(
      note,
      ...sources.map((src, i) =>
        h("span", { "data-source": src.name || "" }, i ? " " : "", `Source unavailable: ${src.error || "no answer"}`, src.name ? ` (${src.name})` : ""),
      ),
    );
  }
  const alerts = document.getElementById("source-alerts");
  setChildren(
    alerts,
    ...unplaced.map((src) => h("p", { class: "notice notice-warn" }, `Source unavailable: ${src.error || "no answer"}${src.name ? ` (${src.name})` : ""}`)),
  );
  setHidden(alerts, unplaced.length === 0);
}

/** The first load failed: say so, where the source errors go. */
export function showLoadError(err) {
  const alerts = document.getElementById("source-alerts");
  if (!alerts) return;
  alerts.replaceChildren(
    h("p", { class: "notice notice-error" }, `The dashboard data could not be loaded (${err.message}). The page retries on its own.`),
  );
  alerts.hidden = false;
}

/** Shows the dashboard (hidden until the first snapshot is drawn or a token is asked for). */
export function revealMain() {
  const main = document.getElementById("main");
  main?.classList.remove("is-loading");
  main?.removeAttribute("aria-busy");
}
