"""The built site in headless Chromium, used as a person would: search, filter, follow lineage.

Needs /usr/bin/chromium (Debian: apt-get install chromium) and the playwright
package; Playwright drives the system Chromium and never downloads one.
Screenshots land in the system temporary folder (lakegen-site-*.png).
"""

from __future__ import annotations

import functools
import http.server
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from site_lake import demo_index, xss_index

from lakegen.site import build_site

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    pytest.skip("browser tests need /usr/bin/chromium (apt-get install chromium)", allow_module_level=True)
playwright_api = pytest.importorskip(
    "playwright.sync_api", reason="browser tests need the playwright package"
)
SHOTS = Path(tempfile.gettempdir())


class _Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Both fixture sites served from 127.0.0.1, under sub-paths as on a project's Pages site."""
    root = tmp_path_factory.mktemp("www")
    for name, index in (("lake", demo_index()), ("xss", xss_index())):
        (root / name / "catalog").mkdir(parents=True)
        # Three search shards for ten entries, so the search merges shards as a large lake's does.
        build_site(root / name, index, shard_size=4)
    handler = functools.partial(_Handler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


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


def test_search_with_a_facet_then_follow_lineage(served: str, browser: Any) -> None:
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.set_default_timeout(60_000)  # a loaded shared machine can be slow; a real failure still fails
    watch = Watch(page)
    page.goto(f"{served}/lake/site/index.html")
    assert page.locator("h1").first.inner_text() == "Model lake"
    assert page.locator(".lg-card").first.inner_text().startswith("7")
    page.screenshot(path=SHOTS / "lakegen-site-home.png", full_page=True)

    page.get_by_role("link", name="Search", exact=True).first.click()
    page.wait_for_url("**/search.html")
    page.locator(".pagefind-ui__search-input").fill("mlp")
    page.wait_for_selector(".pagefind-ui__result")
    page.locator("summary", has_text="owner").click()
    page.locator("label", has_text="@dave").click()
    results = page.locator(".pagefind-ui__result-link")
    results.first.wait_for()
    page.wait_for_function("document.querySelectorAll('.pagefind-ui__result').length === 1")
    assert results.first.inner_text() == "Mlp Mystery"
    page.screenshot(path=SHOTS / "lakegen-site-search.png", full_page=True)

    results.first.click()
    page.wait_for_url("**/lake/site/models/mlp-mystery.html")
    graph = page.locator("svg.lg-graph")
    assert graph.is_visible()
    edge = graph.locator('g.lg-edge[data-parent="mlp-base"][data-child="mlp-mystery"]')
    assert edge.get_attribute("class") == "lg-edge lg-e-undeclared"
    evals = page.locator("table.lg-evals")
    assert evals.is_visible() and "unchecked" in evals.inner_text()
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
    assert page.locator("svg.lg-chart g.lg-bar").count() == 5
    page.screenshot(path=SHOTS / "lakegen-site-board.png", full_page=True)
    page.goto(f"{served}/lake/site/governance.html")
    page.screenshot(path=SHOTS / "lakegen-site-governance.png", full_page=True)

    assert watch.errors == []
    assert watch.foreign == []
    page.close()


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
    page.locator(".pagefind-ui__search-input").fill("script")
    page.wait_for_selector(".pagefind-ui__result")
    assert page.evaluate("typeof window.__xss") == "undefined"
    assert watch.dialogs == []
    assert watch.foreign == []
    page.close()
