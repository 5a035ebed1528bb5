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
  // The index comes in shards (one for a lake of up to a couple of thousand entries): merge them.
  var bundles = box.getAttribute("data-bundles").split(" ").map(function (b) {
    return new URL(b, here).pathname;
  });
  var ui = new PagefindUI({
    element: "#lg-search",
    bundlePath: bundles[0],
    mergeIndex: bundles.slice(1).map(function (b) { return { bundlePath: b }; }),
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
