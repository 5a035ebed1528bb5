// The search page: Pagefind's index (this site's own pagefind/ folders, one per shard, merged) behind
// a small form of lakegen's own. Filters show before anything is typed, a filter alone lists its
// entries, and the query and filters live in the address (?q=...&task=...), so a chip on an entry
// page can link to a filtered search and a search can be shared. Text from the index is put in the
// page as text only: an excerpt keeps Pagefind's <mark> highlights and nothing else.
(function () {
  "use strict";
  var form = document.getElementById("lg-search");
  if (!form) return;
  var input = document.getElementById("lg-q");
  var status = document.getElementById("lg-search-status");
  var panel = document.getElementById("lg-filters");
  var list = document.getElementById("lg-results");
  var ORDER = (form.getAttribute("data-order") || "").split("|");
  // Filter groups open from the start (kind, task, licence); on a phone, where the results come
  // after the filters, only those already in use.
  var OPEN = window.matchMedia("(max-width: 40em)").matches ? 0 : 3;
  var SHOWN = 30; // results listed

  function say(text) { status.textContent = text; }

  if (window.location.protocol === "file:") {
    // Browsers do not let a page opened from a file fetch other files (the index, its WebAssembly).
    say("Search needs the site served over HTTP: browsers block a page opened from a file from reading the " +
        "search index. Run `lakegen serve`, or `python3 -m http.server -d site`, and open " +
        "http://127.0.0.1:8000/search.html.");
    return;
  }

  var here = window.location.href;
  var bundles = form.getAttribute("data-bundles").split(" ").map(function (b) { return new URL(b, here).href; });
  var baseUrl = new URL(form.getAttribute("data-root") || "./", here).pathname;
  var params = new URLSearchParams(window.location.search);
  var chosen = {}; // filter name -> [values]
  params.forEach(function (value, key) {
    if (key !== "q") (chosen[key] = chosen[key] || []).push(value);
  });
  input.value = params.get("q") || "";

  var pagefind = null, boxes = {}, counts = {}, run = 0, timer = null;

  function remember() {
    var next = new URLSearchParams();
    if (input.value.trim()) next.set("q", input.value.trim());
    Object.keys(chosen).sort().forEach(function (k) { chosen[k].forEach(function (v) { next.append(k, v); }); });
    var query = next.toString();
    window.history.replaceState(null, "", window.location.pathname + (query ? "?" + query : ""));
  }

  function order(names) {
    return names.sort(function (a, b) {
      var ia = ORDER.indexOf(a), ib = ORDER.indexOf(b);
      return (ia < 0 ? 99 : ia) - (ib < 0 ? 99 : ib) || a.localeCompare(b);
    });
  }

  function drawFilters(all) {
    panel.textContent = "";
    order(Object.keys(all)).forEach(function (name, i) {
      var values = Object.keys(all[name]).sort();
      if (!values.length) return;
      var group = document.createElement("details");
      group.className = "lg-filter";
      group.open = i < OPEN || !!chosen[name];
      var summary = document.createElement("summary");
      summary.textContent = name;
      group.appendChild(summary);
      var fieldset = document.createElement("fieldset");
      var legend = document.createElement("legend");
      legend.className = "lg-visually-hidden";
      legend.textContent = name;
      fieldset.appendChild(legend);
      values.forEach(function (value) {
        var label = document.createElement("label");
        var box = document.createElement("input");
        box.type = "checkbox";
        box.name = name;
        box.value = value;
        box.checked = (chosen[name] || []).indexOf(value) >= 0;
        box.addEventListener("change", function () {
          var now = (chosen[name] || []).filter(function (v) { return v !== value; });
          if (box.checked) now.push(value);
          if (now.length) chosen[name] = now; else delete chosen[name];
          update();
        });
        var count = document.createElement("span");
        count.className = "lg-count";
        (boxes[name] = boxes[name] || {})[value] = count;
        label.appendChild(box);
        label.appendChild(document.createTextNode(" " + value + " "));
        label.appendChild(count);
        fieldset.appendChild(label);
      });
      group.appendChild(fieldset);
      panel.appendChild(group);
    });
    showCounts(all);
  }

  function showCounts(found) {
    Object.keys(boxes).forEach(function (name) {
      Object.keys(boxes[name]).forEach(function (value) {
        var n = (found[name] || {})[value] || 0;
        boxes[name][value].textContent = "(" + n + ")";
      });
    });
  }

  // Pagefind's excerpt is text with <mark> around the words found: parse it inert, keep only that.
  function excerpt(html) {
    var out = document.createElement("p");
    out.className = "lg-excerpt";
    var doc = new DOMParser().parseFromString("<body>" + html + "</body>", "text/html");
    doc.body.childNodes.forEach(function (node) {
      if (node.nodeType === 3) out.appendChild(document.createTextNode(node.textContent));
      else if (node.nodeName === "MARK") {
        var mark = document.createElement("mark");
        mark.textContent = node.textContent;
        out.appendChild(mark);
      } else out.appendChild(document.createTextNode(node.textContent));
    });
    return out;
  }

  function drawResult(data, term) {
    var item = document.createElement("li");
    var link = document.createElement("a");
    link.className = "lg-result-link";
    link.href = data.url;
    link.textContent = (data.meta && data.meta.title) || data.url;
    var head = document.createElement("p");
    head.className = "lg-result-title";
    head.appendChild(link);
    if (data.meta && data.meta.id) {
      var id = document.createElement("code");
      id.className = "lg-id";
      id.textContent = data.meta.id;
      head.appendChild(document.createTextNode(" "));
      head.appendChild(id);
    }
    item.appendChild(head);
    if (term) item.appendChild(excerpt(data.excerpt || ""));
    else if (data.meta && data.meta.description) {
      var text = document.createElement("p");
      text.className = "lg-excerpt";
      var d = data.meta.description;
      text.textContent = d.length > 220 ? d.slice(0, 219) + "…" : d;
      item.appendChild(text);
    }
    return item;
  }

  async function update() {
    remember();
    var mine = ++run;
    var term = input.value.trim();
    var filters = {};
    Object.keys(chosen).forEach(function (k) { filters[k] = { any: chosen[k] }; });
    if (!term && !Object.keys(filters).length) {
      list.textContent = "";
      showCounts(counts);
      say("Type a word, or pick a filter: " + Object.keys(counts).length + " filters over the whole lake.");
      return;
    }
    say("Searching…");
    var found = await pagefind.search(term || null, { filters: filters });
    if (mine !== run) return; // a newer search has started
    var shown = await Promise.all(found.results.slice(0, SHOWN).map(function (r) { return r.data(); }));
    if (mine !== run) return;
    list.textContent = "";
    shown.forEach(function (data) { list.appendChild(drawResult(data, term)); });
    showCounts(found.filters || counts);
    var n = found.results.length;
    say(n === 0 ? "No entry matches." :
        n + (n === 1 ? " entry matches" : " entries match") + (n > SHOWN ? "; the first " + SHOWN + " are listed." : "."));
  }

  form.addEventListener("submit", function (event) { event.preventDefault(); update(); });
  input.addEventListener("input", function () {
    clearTimeout(timer);
    timer = setTimeout(update, 200);
  });

  (async function start() {
    try {
      pagefind = await import(bundles[0] + "pagefind.js");
      await pagefind.options({ baseUrl: baseUrl, excerptLength: 24 });
      for (var i = 1; i < bundles.length; i++) await pagefind.mergeIndex(bundles[i], { baseUrl: baseUrl });
      counts = await pagefind.filters();
    } catch (error) {
      say("The search index could not be loaded (" + error + "). Build the site with Pagefind installed " +
          "(pip install 'pagefind[bin]'), and serve it over HTTP.");
      return;
    }
    drawFilters(counts);
    update();
  })();
})();
