// Private dashboards: the read-token panel (#auth-panel) and the "Forget the read token" button.

import { getToken, setToken } from "./api.js";
import { setHidden } from "./dom.js";
import { revealMain } from "./notices.js";

/** Shows the token panel; with an error when a token was already tried. */
export function showTokenPanel() {
  const hadToken = Boolean(getToken());
  setHidden(document.getElementById("auth-panel"), false);
  const error = document.getElementById("auth-error");
  if (error) error.textContent = hadToken ? "That token was not accepted. Check it and try again." : "";
  setHidden(error, !hadToken);
  revealMain();
}

export function hideTokenPanel() {
  setHidden(document.getElementById("auth-panel"), true);
}

/** Wires the panel's form; `onToken()` runs once a new token is kept. */
export function initAuth(onToken) {
  document.getElementById("auth-form")?.addEventListener("submit", (e) => {
    e.preventDefault();
    const input = document.getElementById("auth-token");
    const token = input.value.trim();
    if (!token) return;
    setToken(token, { remember: document.getElementById("auth-remember")?.checked === true });
    input.value = "";
    syncForgetButton();
    onToken();
  });
  document.getElementById("forget-token")?.addEventListener("click", () => {
    setToken("");
    syncForgetButton();
    window.location.reload();
  });
  syncForgetButton();
}

function syncForgetButton() {
  setHidden(document.getElementById("forget-token"), !getToken());
}
