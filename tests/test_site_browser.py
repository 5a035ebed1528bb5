"""The built site in headless Chromium, used as a person would: search, filter, follow lineage, on a
desk and on a phone, checked by axe-core against WCAG 2.1 A and AA.

Needs /usr/bin/chromium (Debian: apt-get install chromium), the playwright package and axe-core in
.lakegen-node/ (``make browser`` installs both); Playwright drives the system Chromium and never
downloads one. Screenshots land in the system temporary folder (lakegen-site-*.png).
"""

from __future__ import annotations

import functools
import http.server
import json
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from site_lake import demo_index, family_index, xss_index

from lakegen.site import build_site

pytestmark = pytest.mark.slow  # a real headless chromium per test
CHROMIUM = Path("/usr/bin/chromium")
AXE = Path(__file__).resolve().parents[1] / ".lakegen-node" / "node_modules" / "axe-core" / "axe.min.js"
if not CHROMIUM.exists():
    pytest.skip("browser tests need /usr/bin/chromium (make browser installs it)", allow_module_level=True)
playwright_api = pytest.importorskip(
    "playwright.sync_api", reason="browser tests need the playwright package"
)
SHOTS = Path(tempfile.gettempdir())
WCAG = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
# One page of every type of the demo lake's site.
PAGE_TYPES = [
    "index.html",
    "models.html",
    "models/mlp-q8.html",
    "models/ext-ft.html",
    "datasets.html",
    "datasets/digits.html",
    "code.html",
    "code/lakedemo.html",
    "leaderboards.html",
    "leaderboards/digits--test--accuracy.html",
    "governance.html",
    "lineage.html",
    "lineage/mlp-base.html",
    "search.html",
    "about.html",
]


class _Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def www(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """The fixture sites served from 127.0.0.1, under sub-paths as on a project's Pages site:
    (the server's URL, the folder it serves)."""
    root = tmp_path_factory.mktemp("www")
    for name, index in (("lake", demo_index()), ("xss", xss_index()), ("family", family_index(50))):
        (root / name / "catalog").mkdir(parents=True)
        # Three search shards for ten entries, so the search merges shards as a large lake's does.
        build_site(root / name, index, shard_size=4)
    handler = functools.partial(_Handler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", root
    server.shutdown()


@pytest.fixture(scope="module")
def served(www: tuple[str, Path]) -> str:
    return www[0]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=str(CHROMIUM),
            args=[
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--no-first-run",
            ],
        )
        yield b
        b.close()


@pytest.fixture(scope="module")
def axe_source() -> str:
    if not AXE.is_file():
        pytest.skip(f"the accessibility test needs axe-core in {AXE.parent} (make browser installs it)")
    return AXE.read_text(encoding="utf-8")


class Watch:
    """Everything a page did that it should not: console errors, dialogs, requests to other hosts."""

    def __init__(self, page: Any):
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        self.foreign: list[str] = []
        page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        page.on("dialog", self._dialog)
        page.on("request", self._request)

    def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def _request(self, request: Any) -> None:
        host = urlsplit(request.url).hostname
        if request.url.startswith(("http:", "https:", "ws:", "wss:")) and host != "127.0.0.1":
            self.foreign.append(request.url)


def new_page(browser: Any, width: int = 1280) -> tuple[Any, Watch]:
    page = browser.new_page(viewport={"width": width, "height": 900})
    page.set_default_timeout(60_000)  # a loaded shared machine can be slow; a real failure still fails
    return page, Watch(page)


def search_results(page: Any, count: int | None = None) -> Any:
    """The result links, once the search has listed ``count`` of them (or any)."""
    if count is None:
        page.wait_for_selector(".lg-results li")
    else:
        page.wait_for_function(f"document.querySelectorAll('.lg-results li').length === {count}")
    return page.locator(".lg-result-link")


def test_search_with_a_facet_then_follow_lineage(served: str, browser: Any) -> None:
    page, watch = new_page(browser)
    page.goto(f"{served}/lake/site/index.html")
    assert page.locator("h1").first.inner_text() == "Model lake"
    assert page.locator(".lg-card").first.inner_text().startswith("7")
    page.screenshot(path=SHOTS / "lakegen-site-home.png", full_page=True)

    page.get_by_role("link", name="Search", exact=True).first.click()
    page.wait_for_url("**/search.html")
    page.locator("#lg-q").fill("mlp")
    search_results(page)
    page.locator("summary", has_text="owner").click()
    page.locator("label", has_text="@dave").click()
    results = search_results(page, 1)
    assert results.first.inner_text() == "Mlp Mystery"
    state = parse_qs(urlsplit(page.url).query)
    assert state == {"q": ["mlp"], "owner": ["@dave"]}  # the search is in the address
    page.screenshot(path=SHOTS / "lakegen-site-search.png", full_page=True)

    results.first.click()
    page.wait_for_url("**/lake/site/models/mlp-mystery.html")
    graph = page.locator("svg.lg-graph")
    assert graph.is_visible()
    edge = graph.locator('g.lg-edge[data-parent="mlp-base"][data-child="mlp-mystery"]')
    assert edge.get_attribute("class") == "lg-edge lg-e-undeclared"
    evals = page.locator("table.lg-evals")
    assert evals.is_visible() and "unchecked" in evals.inner_text()
    summary = page.locator(".lg-summary")
    assert "error" in summary.inner_text() and "undeclared" in summary.inner_text()
    json_link = summary.get_by_role("link", name="this entry as JSON")
    doc = json.loads(page.request.get(json_link.evaluate("a => a.href")).text())
    assert doc["id"] == "mlp-mystery"
    page.screenshot(path=SHOTS / "lakegen-site-model.png", full_page=True)

    graph.locator('a[data-node="mlp-base"]').click()
    page.wait_for_url("**/models/mlp-base.html")
    assert page.locator("article h1").first.inner_text() == "Mlp Base"
    rows = page.locator("table.lg-evals tbody tr")
    assert rows.count() == 1 and "verified" in rows.first.inner_text()

    page.goto(f"{served}/lake/site/lineage.html")
    assert page.locator("svg.lg-graph").count() == 2
    page.screenshot(path=SHOTS / "lakegen-site-lineage.png", full_page=True)
    page.goto(f"{served}/lake/site/leaderboards/digits--test--accuracy.html")
    # one bar per reproduced number; the two claims never reproduced are listed apart, unranked
    assert page.locator(".lg-chart li.lg-bar").count() == 3
    assert page.locator("text=Claimed, not reproduced (not ranked)").count() == 1
    page.screenshot(path=SHOTS / "lakegen-site-board.png", full_page=True)
    page.goto(f"{served}/lake/site/governance.html")
    page.screenshot(path=SHOTS / "lakegen-site-governance.png", full_page=True)

    assert watch.errors == []
    assert watch.foreign == []
    page.close()


def test_filters_show_before_typing_and_live_in_the_address(served: str, browser: Any) -> None:
    page, watch = new_page(browser)
    page.goto(f"{served}/lake/site/search.html")
    page.wait_for_selector("details.lg-filter summary")
    kinds = page.locator("details.lg-filter", has_text="kind")
    assert kinds.get_attribute("open") is not None and page.locator(".lg-results li").count() == 0
    kinds.locator("label", has_text="dataset").click()  # a filter alone lists its entries
    results = search_results(page, 2)
    assert sorted(results.all_inner_texts()) == ["Digits", "Digits-Noisy"]
    assert parse_qs(urlsplit(page.url).query) == {"kind": ["dataset"]}

    page.goto(f"{served}/lake/site/search.html?q=mlp&owner=%40dave")  # a shared address
    results = search_results(page, 1)
    assert results.first.inner_text() == "Mlp Mystery"
    assert page.locator("#lg-q").input_value() == "mlp"
    assert page.locator('input[name="owner"][value="@dave"]').is_checked()
    excerpt = page.locator(".lg-excerpt").first.inner_text()
    assert "Owners:" not in excerpt and "Manifest:" not in excerpt  # the text, not the chips
    assert watch.errors == []
    page.close()


def test_search_opened_from_a_file_says_why_it_cannot_run(www: tuple[str, Path], browser: Any) -> None:
    page, watch = new_page(browser)
    page.goto((www[1] / "lake" / "site" / "search.html").as_uri())
    status = page.locator("#lg-search-status")
    assert "served over HTTP" in status.inner_text() and "lakegen serve" in status.inner_text()
    assert watch.errors == []  # it says so at once, without first trying (and failing) to load the index
    page.close()


def test_no_page_scrolls_sideways_on_a_phone(served: str, browser: Any) -> None:
    page, watch = new_page(browser, width=390)
    for path in PAGE_TYPES:
        page.goto(f"{served}/lake/site/{path}")
        width = page.evaluate("Math.max(document.documentElement.scrollWidth, document.body.scrollWidth)")
        assert width <= 390, f"{path} is {width} px wide at 390 px"
        # Ids in tables and id chips stay on one line: a table scrolls inside itself instead.
        broken = page.evaluate(
            "[...document.querySelectorAll('.lg-table a, code.lg-id')]"
            ".filter(e => e.getClientRects().length > 1).map(e => e.textContent)"
        )
        assert broken == [], f"{path}: ids broken across lines: {broken}"
    page.goto(f"{served}/lake/site/models/mlp-merge.html")
    page.screenshot(path=SHOTS / "lakegen-site-model-390.png", full_page=True)
    assert watch.errors == []
    page.close()


def test_a_family_of_50_models_is_legible(served: str, browser: Any) -> None:
    page, watch = new_page(browser, width=1400)
    page.goto(f"{served}/family/site/lineage/family-base-model.html")
    graph = page.locator("svg.lg-graph")
    labels = page.evaluate(
        "[...document.querySelectorAll('svg.lg-graph text')]"
        ".map(t => t.getScreenCTM().a * parseFloat(getComputedStyle(t).fontSize))"
    )
    assert len(labels) >= 50 + 49 and min(labels) >= 11  # node and edge labels, as drawn on screen
    viewport = page.locator(".lg-viewport")
    assert viewport.evaluate("v => v.clientWidth") >= 1000  # the page's whole width, not a column
    nodes = graph.locator("[data-node]")
    assert nodes.count() == 50
    names = set(nodes.evaluate_all("ns => ns.map(n => n.querySelector('title').textContent)"))
    assert names == set(nodes.evaluate_all("ns => ns.map(n => n.getAttribute('data-node'))"))
    table = page.locator(".lg-scroll table").inner_text()
    assert all(name in table for name in names)  # every name whole in the text alternative
    dashes = {
        status: graph.locator(f"g.lg-edge.lg-e-{status} path").first.get_attribute("stroke-dasharray")
        for status in ("verified", "contradicted", "undeclared")
    }
    assert dashes["verified"] is None and None not in (dashes["contradicted"], dashes["undeclared"])
    assert dashes["contradicted"] != dashes["undeclared"]

    for _ in range(30):  # keyboard: Tab reaches the nodes, which are links
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.closest('svg.lg-graph') !== null"):
            break
    focused = page.evaluate("document.activeElement.getAttribute('data-node')")
    assert focused in names
    width = float(graph.get_attribute("width") or 0)
    page.get_by_role("button", name="Zoom in").click()
    assert float(graph.get_attribute("width") or 0) == pytest.approx(width * 1.25, abs=1)
    page.get_by_role("button", name="Fit").click()
    assert float(graph.get_attribute("height") or 0) <= viewport.evaluate("v => v.clientHeight") + 1
    page.get_by_role("button", name="Actual size").click()
    page.screenshot(path=SHOTS / "lakegen-site-family.png", full_page=True)
    assert watch.errors == []
    page.close()


def test_pictures_work_without_javascript(served: str, browser: Any) -> None:
    context = browser.new_context(java_script_enabled=False, viewport={"width": 1400, "height": 900})
    page = context.new_page()
    page.goto(f"{served}/family/site/lineage/family-base-model.html")
    assert not page.locator(".lg-zoombar").is_visible()  # its buttons would do nothing
    viewport = page.locator(".lg-viewport")
    assert viewport.evaluate("v => v.scrollHeight > v.clientHeight")  # it still scrolls, at full size
    size = page.evaluate(
        "(() => { const t = document.querySelector('svg.lg-graph text');"
        " return t.getScreenCTM().a * parseFloat(getComputedStyle(t).fontSize); })()"
    )
    assert size >= 11
    context.close()


def test_axe_finds_no_wcag_violation_on_any_page_type(served: str, browser: Any, axe_source: str) -> None:
    found = []
    for width in (1280, 390):
        page, watch = new_page(browser, width=width)
        pages = [f"lake/site/{p}" for p in PAGE_TYPES] + ["family/site/lineage/family-base-model.html"]
        for path in [*pages, "lake/site/search.html?q=mlp"]:
            page.goto(f"{served}/{path}")
            if "search" in path:
                page.wait_for_selector("details.lg-filter summary")
                if "q=" in path:
                    search_results(page)
            page.add_script_tag(content=axe_source)
            violations = page.evaluate(
                "async tags => (await axe.run(document, {runOnly: {type: 'tag', values: tags}})).violations"
                ".map(v => ({rule: v.id, impact: v.impact, help: v.help,"
                " nodes: v.nodes.slice(0, 5).map(n => n.target.join(' ') + ': ' + n.failureSummary)}))",
                WCAG,
            )
            found += [{"page": path, "width": width, **v} for v in violations]
        assert watch.errors == [], watch.errors
        page.close()
    assert found == [], json.dumps(found, indent=1)


def test_xss_lake_runs_no_injected_script(served: str, browser: Any) -> None:
    page = browser.new_page()
    watch = Watch(page)
    links = []
    for start in ("index.html", "models.html"):  # the home page and every model page
        page.goto(f"{served}/xss/site/{start}")
        links += page.eval_on_selector_all("a[href$='.html']", "els => els.map(e => e.href)")
    pages = {u for u in links if u.startswith(served)} | {
        f"{served}/xss/site/models/evil.html",
        f"{served}/xss/site/governance.html",
        f"{served}/xss/site/lineage.html",
        f"{served}/xss/site/datasets/digits.html",
        f"{served}/xss/site/code/lakedemo.html",
    }
    for url in sorted(pages):
        page.goto(url)
        assert page.evaluate("typeof window.__xss") == "undefined", url
    page.goto(f"{served}/xss/site/models/evil.html")
    assert page.locator("article h1").first.inner_text() == "<script>"
    page.screenshot(path=SHOTS / "lakegen-site-xss.png", full_page=True)
    page.goto(f"{served}/xss/site/search.html")
    page.wait_for_selector("details.lg-filter summary")  # the filters, whose names and values are hostile too
    page.locator("#lg-q").fill("script")
    search_results(page)
    assert page.evaluate("typeof window.__xss") == "undefined"
    assert watch.dialogs == []
    assert watch.foreign == []
    page.close()


def test_a_query_reads_only_the_first_page_index_until_everything_is_asked_for(
    served: str, browser: Any
) -> None:
    """The first page comes from pagefind/first/ (a meta file and a bucket per word and filter
    value), ranked as lakegen.site.firstpage ranks; Pagefind's shards load only on "search
    everything"."""
    from lakegen.search import entry_facets
    from lakegen.site import firstpage

    index = family_index(50)
    facets = entry_facets(index)
    records = [
        firstpage.record_of(f"models/{e.id}.html", e.id, e.kind, e.manifest, facets[e.id])
        for e in index.entries
        if e.kind == "model"
    ]

    def best(word: str, keep: Any = lambda r: True) -> list[str]:
        found = [r for r in records if firstpage.score(word, r) > 0 and keep(r)]
        found.sort(key=lambda r: (-firstpage.score(word, r), r.kind, r.id))
        return [r.id for r in found]

    page, watch = new_page(browser)
    fetched: list[str] = []
    page.on("requestfinished", lambda r: fetched.append(urlsplit(r.url).path))
    page.goto(f"{served}/family/site/search.html?q=family")
    search_results(page, 30)
    expected = best("family")
    assert len(expected) == 50 > firstpage.TOP  # longer than its list: the top decides
    assert page.locator(".lg-id").all_inner_texts() == expected[:30]
    assert page.locator("#lg-search-status").inner_text() == "50 entries match; the first 30 are listed."
    index_files = [p for p in fetched if "/pagefind/" in p]
    assert all("/pagefind/first/" in p for p in index_files)
    assert 2 <= len(index_files) <= 2 + 1  # the meta file and the word's bucket (once each)

    fetched.clear()
    page.goto(f"{served}/family/site/search.html?q=fine&relation=quantized")  # a word beginning, filtered
    quantized = best("fine", lambda r: "quantized" in dict(r.facets).get("relation", ()))
    assert 0 < len(quantized) < 30
    results = search_results(page, len(quantized))
    assert page.locator(".lg-id").all_inner_texts() == quantized
    assert page.locator('input[name="relation"][value="quantized"]').is_checked()
    assert all("/pagefind/first/" in p for p in fetched if "/pagefind/" in p)
    assert page.locator(".lg-excerpt mark").first.inner_text().lower().startswith("fine")

    fetched.clear()
    page.goto(f"{served}/family/site/search.html?kind=model&owner=%40alice")  # two filters, 50 each
    search_results(page, 30)
    assert page.locator(".lg-id").all_inner_texts() == sorted(r.id for r in records)[:30]
    assert page.locator("#lg-search-status").inner_text() == "50 entries match; the first 30 are listed."
    assert all("/pagefind/first/" in p for p in fetched if "/pagefind/" in p)

    page.goto(f"{served}/family/site/search.html?q=fine&relation=quantized")
    search_results(page, len(quantized))
    page.get_by_role("button", name="Search everything").click()  # Pagefind, every shard
    page.wait_for_function(
        "document.getElementById('lg-search-status').textContent.includes('Full text of every page')"
    )
    assert any("/pagefind/shard-" in p for p in fetched)
    assert sorted(results.all_inner_texts()) == sorted(r.title for r in records if r.id in set(quantized))
    assert watch.errors == [] and watch.foreign == []
    page.close()
