// Starts Swagger UI on /api/docs (a file of its own: the page's policy allows no inline script).
// The document is this server's own OpenAPI document, read relative to the page, so the
// reference works under a sub-path too.
window.addEventListener("DOMContentLoaded", function () {
  window.ui = SwaggerUIBundle({
    url: new URL("../openapi.json", window.location.href).href,
    dom_id: "#swagger-ui",
    deepLinking: true,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
  });
});
