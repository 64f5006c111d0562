// The experiments table's mark for a running experiment whose loss is NaN or rising (the
// server's `training.alert`): a small module of its own, so the table needs none of the
// training curves' code (curves.js, imported with the details dialog).

import { h } from "./dom.js";
import { formatCount } from "./format.js";

/** The experiments table's mark for a running experiment whose loss is NaN or rising, or null. */
export function trainingFlag(e) {
  const t = e?.status === "running" ? e.training : null;
  if (!t?.alert) return null;
  if (t.alert === "non_finite_loss") {
    const text = t.loss === "NaN" ? "NaN loss" : "Infinite loss";
    const since = Number.isFinite(t.non_finite_step) ? ` (first at step ${formatCount(t.non_finite_step)})` : "";
    return h("span", { class: "badge badge-alert badge-nan", title: `The newest ${t.loss_metric || "loss"} is ${t.loss}${since}` }, text);
  }
  if (t.alert === "loss_rising") {
    return h("span", { class: "badge badge-alert badge-rising", title: `The smoothed ${t.loss_metric || "loss"} is well above its lowest` }, "Loss rising");
  }
  return null;
}
