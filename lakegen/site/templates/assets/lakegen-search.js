// The search page: a small form of lakegen's own over two indexes of this site. The first page of
// results comes from lakegen's own (pagefind/first/, see lakegen/site/firstpage.py): a meta file and
// one bucket per word and per chosen filter value, so a query's bytes do not grow with the lake.
// "Search everything" runs Pagefind over all its shards (pagefind/shard-*/, merged), as full text
// of every page. Filters show before anything is typed, a filter alone lists its entries, and the
// query and filters live in the address (?q=...&task=...), so a chip on an entry page can link to a
// filtered search and a search can be shared. Text from either index is put in the page as text
// only: an excerpt keeps <mark> highlights and nothing else.
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
  var firstUrl = new URL(form.getAttribute("data-first"), here).href;
  var more = document.getElementById("lg-more");
  var baseUrl = new URL(form.getAttribute("data-root") || "./", here).pathname;
  var params = new URLSearchParams(window.location.search);
  var chosen = {}; // filter name -> [values]
  params.forEach(function (value, key) {
    if (key !== "q") (chosen[key] = chosen[key] || []).push(value);
  });
  input.value = params.get("q") || "";

  var pagefind = null, meta = null, buckets = {}, boxes = {}, counts = {}, run = 0, timer = null;
  var everything = false; // the visitor asked Pagefind, over every shard, for this query

  // Words as firstpage.tokens splits them: letters and digits, lower case.
  function tokens(text) { return text.toLowerCase().match(/[\p{L}\p{N}]+/gu) || []; }

  async function gunzipJson(url) {
    var response = await fetch(url);
    if (!response.ok) throw new Error(url + ": " + response.status);
    var text = await new Response(response.body.pipeThrough(new DecompressionStream("gzip"))).text();
    return JSON.parse(text);
  }

  function bucketOf(key) { // FNV-1a of the key's UTF-8, as firstpage.bucket_of
    var h = 0x811c9dc5;
    new TextEncoder().encode(key).forEach(function (b) { h = Math.imul(h ^ b, 0x01000193) >>> 0; });
    return h % meta.buckets;
  }

  function record(row) {
    return { url: new URL(row[0], new URL(baseUrl, here)).href, title: row[1], id: row[2], kind: row[3],
             words: row[4].map(tokens), description: row[5], facets: row[6] };
  }

  // One key's list: how many entries match, up to meta.top of them (the best first), and per filter
  // value how many of them have it (null when every match is in the list: count them here).
  async function keyList(key) {
    var b = bucketOf(key);
    if (!buckets[b]) buckets[b] = gunzipJson(firstUrl + b + ".json.gz");
    var data = await buckets[b];
    var found = data.keys[key];
    if (!found) return { count: 0, records: [], counts: null, complete: true };
    return { count: found[0], records: found[1].map(function (i) { return record(data.records[i]); }),
             counts: found[2], complete: found[0] <= found[1].length };
  }

  function score(word, rec) { // as firstpage.score, with its weights (id, name, tags, task, owners, text) and prefix from meta
    var best = 0;
    rec.words.forEach(function (words, f) {
      if (words.indexOf(word) >= 0) best = Math.max(best, 2 * meta.weights[f]);
      else if (word.length >= meta.prefix && words.some(function (w) { return w.startsWith(word); })) best = Math.max(best, meta.weights[f]);
    });
    return best;
  }

  function tally(records) {
    var out = {};
    records.forEach(function (r) {
      Object.keys(r.facets).forEach(function (name) {
        r.facets[name].forEach(function (v) { (out[name] = out[name] || {})[v] = ((out[name] || {})[v] || 0) + 1; });
      });
    });
    return out;
  }

  // The first page from lakegen's own index: {results, count (null: unknown), atLeast, filters
  // (null: unknown), exact (the page is the one a full ranking gives)}.
  async function firstPage(term, chosen) {
    var words = tokens(term).filter(function (w, i, all) { return all.indexOf(w) === i; });
    var wordLists = await Promise.all(words.map(function (w) { return keyList("w:" + w); }));
    var groups = await Promise.all(Object.keys(chosen).map(async function (name) {
      var lists = await Promise.all(chosen[name].map(function (v) { return keyList("f:" + name + "\u0000" + v); }));
      var seen = {}, records = [];
      lists.forEach(function (l) { l.records.forEach(function (r) { if (!seen[r.id]) { seen[r.id] = 1; records.push(r); } }); });
      return { name: name, values: chosen[name], lists: lists, records: records,
               complete: lists.every(function (l) { return l.complete; }) };
    }));
    var pools = wordLists.concat(groups).filter(function (p) { return p.complete; });
    var driver = null, candidates;
    if (pools.length) {
      candidates = pools.sort(function (a, b) { return a.records.length - b.records.length; })[0].records;
    } else if (words.length === 1) {
      driver = wordLists[0];
    } else if (!words.length) {
      var single = groups.filter(function (g) { return g.lists.length === 1; });
      single.sort(function (a, b) { return a.lists[0].count - b.lists[0].count; });
      if (single.length) driver = single[0].lists[0];
    }
    if (!pools.length) {
      candidates = driver ? driver.records : [];
      if (!driver) { // every list is longer than its top: look among all the tops, and say so
        var taken = {};
        wordLists.concat(groups).forEach(function (l) {
          l.records.forEach(function (r) { if (!taken[r.id]) { taken[r.id] = 1; candidates.push(r); } });
        });
      }
    }
    var passing = candidates.map(function (r) {
      var total = 0;
      for (var i = 0; i < words.length; i++) {
        var s = score(words[i], r);
        if (!s) return null;
        total += s;
      }
      var ok = groups.every(function (g) {
        var have = r.facets[g.name] || [];
        return g.values.some(function (v) { return have.indexOf(v) >= 0; });
      });
      return ok ? { record: r, score: total } : null;
    }).filter(Boolean);
    passing.sort(function (a, b) {
      return b.score - a.score || a.record.kind.localeCompare(b.record.kind) || (a.record.id < b.record.id ? -1 : a.record.id > b.record.id ? 1 : 0);
    });
    var results = passing.map(function (p) { return p.record; });
    var count = null, filters = null;
    if (pools.length) {
      count = results.length;
      filters = tally(results);
    } else if (driver) {
      // the driver's counts per filter value count its matches that also have that one value
      var others = groups.filter(function (g) { return g.lists[0] !== driver; });
      if (!others.length) { count = driver.count; filters = driver.counts; }
      else if (others.length === 1 && others[0].values.length === 1) {
        count = ((driver.counts || {})[others[0].name] || {})[others[0].values[0]] || 0;
      }
    }
    var exact = !!pools.length || (!!driver && (results.length >= SHOWN || results.length === count));
    return { results: results, count: count, atLeast: results.length, filters: filters, exact: exact };
  }

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
          everything = false;
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

  // found: filter name -> value -> entries; null when a query's counts are not known (its matches
  // are more than the first page's index lists, and more than one word or filter narrows them)
  function showCounts(found) {
    Object.keys(boxes).forEach(function (name) {
      Object.keys(boxes[name]).forEach(function (value) {
        var n = found ? (found[name] || {})[value] || 0 : null;
        boxes[name][value].textContent = n === null ? "" : "(" + n + ")";
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

  // A first-page result's description, the words that begin with a query word marked.
  function marked(text, words) {
    var out = document.createElement("p");
    out.className = "lg-excerpt";
    var short = text.length > 220 ? text.slice(0, 219) + "…" : text;
    short.split(/([\p{L}\p{N}]+)/u).forEach(function (part, i) {
      var low = part.toLowerCase();
      var hit = i % 2 === 1 && words.some(function (w) { return low === w || (w.length >= meta.prefix && low.startsWith(w)); });
      if (hit) {
        var mark = document.createElement("mark");
        mark.textContent = part;
        out.appendChild(mark);
      } else out.appendChild(document.createTextNode(part));
    });
    return out;
  }

  function drawRecord(rec, words) {
    return drawResult({ url: rec.url, meta: { title: rec.title, id: rec.id, description: rec.description } },
                      null, words);
  }

  function drawResult(data, term, words) {
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
    else if (words && words.length) item.appendChild(marked(data.meta.description || "", words));
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
    more.hidden = true;
    if (!term && !Object.keys(chosen).length) {
      list.textContent = "";
      showCounts(counts);
      say("Type a word, or pick a filter: " + Object.keys(counts).length + " filters over the whole lake.");
      return;
    }
    say("Searching…");
    if (everything) return searchEverything(mine, term);
    var found = await firstPage(term, chosen);
    if (mine !== run) return; // a newer search has started
    list.textContent = "";
    var words = tokens(term);
    found.results.slice(0, SHOWN).forEach(function (rec) { list.appendChild(drawRecord(rec, words)); });
    showCounts(found.filters);
    var n = found.count;
    var listed = Math.min(found.results.length, SHOWN);
    if (n === 0 || !found.results.length) say("No entry's id, name, tags, task, owners or description has that; Pagefind searches the full text.");
    else if (n !== null) say(n + (n === 1 ? " entry matches" : " entries match") + (n > SHOWN ? "; the first " + SHOWN + " are listed." : "."));
    else say("At least " + found.atLeast + " entries match; " + (found.exact ? "the first " + listed + " are listed." : "the best " + listed + " found among each word's first matches are listed."));
    more.hidden = false; // Pagefind also finds what only a page's full text says
  }

  // Pagefind over every shard: the full text of every page, all matches counted; it reads a
  // little of every shard, so it is loaded only when asked for.
  async function searchEverything(mine, term) {
    try {
      if (!pagefind) {
        var loading = await import(bundles[0] + "pagefind.js");
        await loading.options({ baseUrl: baseUrl, excerptLength: 24 });
        for (var i = 1; i < bundles.length; i++) await loading.mergeIndex(bundles[i], { baseUrl: baseUrl });
        pagefind = loading;
      }
    } catch (error) {
      say("The full-text index could not be loaded (" + error + "). Build the site with Pagefind installed " +
          "(pip install 'pagefind[bin]'), and serve it over HTTP.");
      return;
    }
    var filters = {};
    Object.keys(chosen).forEach(function (k) { filters[k] = { any: chosen[k] }; });
    var found = await pagefind.search(term || null, { filters: filters });
    if (mine !== run) return;
    var shown = await Promise.all(found.results.slice(0, SHOWN).map(function (r) { return r.data(); }));
    if (mine !== run) return;
    list.textContent = "";
    shown.forEach(function (data) { list.appendChild(drawResult(data, term)); });
    showCounts(found.filters || counts);
    var n = found.results.length;
    say((n === 0 ? "No page matches." :
        n + (n === 1 ? " entry matches" : " entries match") + (n > SHOWN ? "; the first " + SHOWN + " are listed." : ".")) +
        " (Full text of every page.)");
  }

  form.addEventListener("submit", function (event) { event.preventDefault(); update(); });
  input.addEventListener("input", function () {
    clearTimeout(timer);
    everything = false;
    timer = setTimeout(update, 200);
  });
  more.addEventListener("click", function () { everything = true; update(); });

  (async function start() {
    try {
      meta = await gunzipJson(firstUrl + "meta.json.gz");
      counts = meta.filters;
    } catch (error) {
      say("The search index could not be loaded (" + error + "). Build the site with Pagefind installed " +
          "(pip install 'pagefind[bin]'), and serve it over HTTP.");
      return;
    }
    drawFilters(counts);
    update();
  })();
})();
