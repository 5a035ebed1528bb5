// Start Pagefind's UI (served from this site's own pagefind/ folder) and apply ?q= and facet
// parameters from the address, so a chip on an entry page can link to a filtered search.
(function () {
  var box = document.getElementById("lg-search");
  var note = document.getElementById("lg-search-missing");
  if (!box) return;
  if (typeof PagefindUI === "undefined") {
    if (note) note.textContent = "The search index was not built (run lakegen build with Pagefind installed).";
    return;
  }
  if (note) note.remove();
  // Pagefind stores result URLs from the site root; the site may be served under a sub-path.
  var here = window.location.href;
  var ui = new PagefindUI({
    element: "#lg-search",
    bundlePath: new URL(box.getAttribute("data-bundle"), here).pathname,
    baseUrl: new URL(box.getAttribute("data-root") || "./", here).pathname,
    showSubResults: false,
    showImages: false,
    resetStyles: false,
    openFilters: ["kind", "task", "licence"],
  });
  var params = new URLSearchParams(window.location.search);
  var filters = {};
  params.forEach(function (value, key) {
    if (key !== "q") (filters[key] = filters[key] || []).push(value);
  });
  if (Object.keys(filters).length) ui.triggerFilters(filters);
  if (params.get("q")) ui.triggerSearch(params.get("q"));
})();
