// Applies the remembered theme before the first paint (a classic script: it must block).
// The toggle itself lives in app.js; without a remembered choice, prefers-color-scheme rules.
(function () {
  try {
    var theme = localStorage.getItem("codecdash-theme");
    if (theme === "light" || theme === "dark") document.documentElement.setAttribute("data-theme", theme);
  } catch (e) {
    /* storage disabled: follow the system */
  }
})();
