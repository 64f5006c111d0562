// Runs in <head> before the first paint (a classic script: it must block, so it stays tiny; `serve`
// writes it into index.html, allowed by its hash in the page's CSP).
// 1. Applies the remembered theme. The toggle itself lives in theme-toggle.js; without a remembered
//    choice, prefers-color-scheme rules.
// 2. Starts the first snapshot request, so that it loads alongside the modules instead of after
//    them (api.js takes it up once: takeFirstSnapshot). Only in the plain case: the API beside
//    the page and no read token; a static export, an API elsewhere or a private dashboard are
//    left to api.js. Not at all when the server put the snapshot in the page (#codecdash-snapshot).
// 3. When the server drew the first screen into the page (api/first_screen.py), the modules are
//    not needed for the first paint: the server put their tags in <template id="codecdash-modules">,
//    and they are put in the page once the browser reports that paint (a tab opened in the
//    background paints only when shown: then after 3 s at the latest), so nothing competes with it.
(function () {
  var done = false;
  function load() {
    var modules = document.getElementById("codecdash-modules");
    if (done || !modules) return;
    done = true;
    document.head.appendChild(modules.content.cloneNode(true));
  }
  try {
    new PerformanceObserver(function (list) {
      if (list.getEntriesByName("first-contentful-paint").length) setTimeout(load, 0);
    }).observe({ type: "paint", buffered: true });
  } catch (e) {
    /* no paint timing: the timer below */
  }
  setTimeout(load, 3000);
})();
(function () {
  var token = "";
  try {
    var theme = localStorage.getItem("codecdash-theme");
    if (theme === "light" || theme === "dark") document.documentElement.setAttribute("data-theme", theme);
    token = sessionStorage.getItem("codecdash-token") || localStorage.getItem("codecdash-token") || "";
  } catch (e) {
    /* storage disabled: follow the system; no token either */
  }
  function meta(name) {
    var el = document.querySelector('meta[name="' + name + '"]');
    return el ? (el.getAttribute("content") || "").trim() : "";
  }
  if (document.getElementById("codecdash-snapshot")) return;
  if (token || meta("codecdash-snapshot-url") || meta("codecdash-api-base") || !window.fetch) return;
  var first = fetch("api/v1/dashboard", { headers: { Accept: "application/json" }, cache: "no-store" });
  first.catch(function () {
    /* a failure is handled where the response is used */
  });
  window.codecdashFirstSnapshot = first;
})();
