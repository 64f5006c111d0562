// The theme toggle (#theme-toggle): prefers-color-scheme by default; the button overrides it
// (data-theme on <html>) and remembers the choice. theme.js applies a remembered choice
// before the first paint; this module is the button, loaded with the page's modules.

const THEME_KEY = "codecdash-theme";

function darkQuery() {
  return window.matchMedia("(prefers-color-scheme: dark)");
}

function currentTheme() {
  const forced = document.documentElement.dataset.theme;
  return forced === "dark" || forced === "light" ? forced : darkQuery().matches ? "dark" : "light";
}

function syncThemeButton() {
  document.getElementById("theme-toggle")?.setAttribute("aria-pressed", String(currentTheme() === "dark"));
}

/** Wires the button; `retheme()` redraws what takes its colours from the theme (the charts). */
export function initTheme(retheme) {
  document.getElementById("theme-toggle")?.addEventListener("click", () => {
    const next = currentTheme() === "dark" ? "light" : "dark";
    document.documentElement.dataset.theme = next;
    try {
      localStorage.setItem(THEME_KEY, next);
    } catch {
      /* not remembered: fine */
    }
    syncThemeButton();
    retheme();
  });
  darkQuery().addEventListener("change", () => {
    syncThemeButton();
    if (!document.documentElement.dataset.theme) retheme();
  });
  syncThemeButton();
}
