// Downloads made in the page: a file the API answers (with the read token of a private
// dashboard, which a plain <a download> could not send), and charts as SVG or PNG.

import { ApiError, getToken } from "./api.js";

/** Saves `blob` as `name` through a temporary link (the browser's own download flow). */
export function saveBlob(blob, name) {
  const url = URL.createObjectURL(blob);
  const a = document.createElement("a");
  a.href = url;
  a.download = name;
  a.hidden = true;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

/** Fetches `url` (with the read token unless `auth` is false) and saves the answer as `name`. */
export async function downloadUrl(url, name, type, { auth = true } = {}) {
  const headers = { Accept: type };
  const token = auth ? getToken() : "";
  if (token) headers.Authorization = `Bearer ${token}`;
  let res;
  try {
    res = await fetch(url, { headers, cache: "no-store" });
  } catch {
    throw new ApiError("the server could not be reached", { network: true });
  }
  if (!res.ok) {
    let message = res.statusText || `HTTP ${res.status}`;
    try {
      const body = await res.json();
      message = body?.error?.message || body?.detail || message;
    } catch {
      /* not JSON: keep the status text */
    }
    throw new ApiError(typeof message === "string" ? message : `HTTP ${res.status}`, { status: res.status });
  }
  saveBlob(new Blob([await res.arrayBuffer()], { type }), name);
}

/** The text of an <svg> element, as a standalone SVG file. */
export function svgText(svg) {
  const copy = svg.cloneNode(true);
  copy.setAttribute("xmlns", "http://www.w3.org/2000/svg");
  return `<?xml version="1.0" encoding="UTF-8"?>\n${new XMLSerializer().serializeToString(copy)}\n`;
}

export function saveSvg(svg, name) {
  saveBlob(new Blob([svgText(svg)], { type: "image/svg+xml" }), name);
}

/**
 * Draws `svg` on a canvas at `scale` × its size and saves it as a PNG. The SVG goes in as a
 * data: URL (which the page's Content-Security-Policy allows for images), so the canvas is
 * never tainted.
 */
export async function savePng(svg, name, scale = 2) {
  const width = Number(svg.getAttribute("width"));
  const height = Number(svg.getAttribute("height"));
  const img = new Image();
  img.width = width;
  img.height = height;
  const loaded = new Promise((resolve, reject) => {
    img.addEventListener("load", resolve, { once: true });
    img.addEventListener("error", () => reject(new Error("the chart could not be drawn as an image")), { once: true });
  });
  img.src = `data:image/svg+xml;charset=utf-8,${encodeURIComponent(svgText(svg))}`;
  await loaded;
  const canvas = document.createElement("canvas");
  canvas.width = Math.round(width * scale);
  canvas.height = Math.round(height * scale);
  const ctx = canvas.getContext("2d");
  ctx.scale(scale, scale);
  ctx.drawImage(img, 0, 0, width, height);
  const blob = await new Promise((resolve, reject) =>
    canvas.toBlob((b) => (b ? resolve(b) : reject(new Error("the PNG could not be made"))), "image/png"),
  );
  saveBlob(blob, name);
}
