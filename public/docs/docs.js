// Renders the chosen OpenAPI document with Redoc, served from this site (no CDN).
(() => {
  const known = ["loginwa", "spwp", "admin"];
  const asked = new URLSearchParams(location.search).get("spec");
  const spec = known.includes(asked) ? asked : "loginwa";
  document.querySelectorAll("nav a").forEach((a) => {
    if (a.dataset.spec === spec) a.setAttribute("aria-current", "page");
  });
  Redoc.init(`/openapi/${spec}.json`, { hideDownloadButton: false, expandResponses: "200,201,202" }, document.getElementById("reference"));
})();
