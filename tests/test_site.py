"""The governance site built from fixture lakes: pages, pictures, safety, search, incremental builds."""

from __future__ import annotations

import gzip
import html
import json
import os
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
from site_lake import demo_index, xss_index

from lakegen.cli.main import main
from lakegen.compile.store import save
from lakegen.model.index import Edge, LakeIndex
from lakegen.search import Where, entry_facets, search
from lakegen.site import build_site
from lakegen.site.markup import markdown, safe_url, sanitise
from lakegen.site.svg import EDGE_DASH, axis, layered_layout, lineage_svg
from lakegen.site.views import stem

REPO = Path(__file__).resolve().parents[1]
# Anything that makes a browser fetch: src/href of loading elements, CSS url() and @import.
LOADS = re.compile(
    r"<(?:script|link|img|iframe|source|video|audio|embed|object)\b[^>]*?\b(?:src|href|data)\s*=\s*[\"']?"
    r"\s*(?:https?:)?//"
    r"|url\(\s*[\"']?\s*(?:https?:)?//|@import\s+[\"']?(?:url\()?\s*[\"']?(?:https?:)?//",
    re.I,
)


def _site(root: Path, index: LakeIndex, **kw: object) -> Path:
    (root / "catalog").mkdir(parents=True, exist_ok=True)
    return build_site(root, index, **kw).site  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _site(tmp_path_factory.mktemp("lake"), demo_index())


@pytest.fixture(scope="module")
def xss_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _site(tmp_path_factory.mktemp("xss"), xss_index())


def read(site: Path, path: str) -> str:
    return (site / path).read_text(encoding="utf-8")


def test_every_page_type_is_built(site: Path) -> None:
    index = demo_index()
    for entry in index.entries:
        folder = {"model": "models", "dataset": "datasets", "code": "code"}[entry.kind]
        assert (site / folder / f"{entry.id}.html").is_file(), entry.id
        assert (site / "api" / "entries" / f"{entry.id}.json").is_file()
    for page in ("index", "models", "datasets", "code", "leaderboards", "governance", "lineage", "search"):
        assert (site / f"{page}.html").is_file(), page
    assert (site / "leaderboards" / "digits--test--accuracy.html").is_file()
    assert (site / "lineage" / "mlp-base.html").is_file()
    assert (site / "pagefind" / "shard-0" / "pagefind-ui.js").is_file()
    assert not list(site.parent.glob(".site.*"))  # the temporary folder was renamed, none left over


def test_home_counts_changes_and_attention(site: Path) -> None:
    home = read(site, "index.html")
    assert re.search(r'<span class="lg-n">7</span> models', home)
    assert "Bump licence" in home and "(PR #12)" in home
    attention = home.split('id="attention"')[1].split('id="recent"')[0]
    assert "GPL-3.0-only model derived" in attention and "high-risk model" not in attention  # info stays out


def test_model_page_shows_lineage_evaluations_findings_and_audit_trail(site: Path) -> None:
    page = read(site, "models/mlp-q8.html")
    svg = page.split('<svg class="lg-graph"')[1].split("</svg>")[0]
    assert 'data-parent="mlp-ft" data-child="mlp-q8"' in svg
    assert 'href="../models/mlp-ft.html"' in svg  # nodes link to the model pages
    evals = page.split('class="lg-table lg-evals"')[1].split("</table>")[0]
    assert "<td>0.96</td><td>0.91</td>" in evals and "lg-s-contradicted" in evals
    assert "-0.0500" in evals
    assert "claimed 0.96, reproduced 0.91" in page  # the governance finding
    assert '<a href="../datasets/digits.html">digits</a>' in page
    ft = read(site, "models/mlp-ft.html")
    assert "Bump licence" in ft and "<del>Apache-2.0</del>" in ft and "<ins>MIT</ins>" in ft
    assert "mlp-base</a>: Apache-2.0" in ft  # licences along the lineage


def test_a_sharded_checkpoint_lists_its_pinned_shards(site: Path) -> None:
    page = read(site, "models/mlp-base.html")
    files = page.split('<details class="lg-files">')[1].split("</details>")[0]
    assert "<summary>2 pinned files</summary>" in files
    assert "<code>model-00001-of-00002.safetensors</code> 1.0 MB" in files
    assert f'<code title="{"02" * 32}">{"02" * 6}</code>' in files
    assert '<td class="lg-nowrap">2.2 MB in 3 files</td>' in page  # the index and its shards
    assert "lg-files" not in read(site, "models/mlp-ft.html")  # a single file has no list


def test_declared_and_weight_verified_edges_look_different(site: Path) -> None:
    page = read(site, "models/mlp-base.html")
    edges = dict(
        re.findall(r'<g class="lg-edge (lg-e-\w+)" data-parent="mlp-base" data-child="([\w-]+)"', page)
    )
    styles = {child: cls for cls, child in edges.items()}
    assert styles == {
        "mlp-ft": "lg-e-verified",
        "mlp-lora": "lg-e-unchecked",
        "mlp-mystery": "lg-e-undeclared",
    }
    undeclared = page.split('data-child="mlp-mystery"')[1].split("</g>")[0]
    assert f'stroke-dasharray="{EDGE_DASH["undeclared"]}"' in undeclared  # dotted
    assert "(weights only)" in undeclared
    verified = page.split('data-child="mlp-ft"')[1].split("</g>")[0]
    assert "stroke-dasharray" not in verified
    contradicted = read(site, "models/mlp-q8.html").split('data-child="mlp-q8"')[1].split("</g>")[0]
    assert f'stroke-dasharray="{EDGE_DASH["contradicted"]}"' in contradicted  # dashed
    assert len({EDGE_DASH["undeclared"], EDGE_DASH["contradicted"], ""}) == 3
    ext = read(site, "models/ext-ft.html")
    assert 'class="lg-node lg-external" data-node="hf:org/tiny-mlp"' in ext


def test_dataset_code_leaderboard_governance_and_lineage_pages(site: Path) -> None:
    digits = read(site, "datasets/digits.html")
    trained = digits.split('id="used"')[1]
    assert "mlp-base</a> (train)" in trained and "digits-noisy" in digits
    assert "mlp-q8" in read(site, "code/lakedemo.html")
    board = read(site, "leaderboards/digits--test--accuracy.html")
    assert '<figure class="lg-figure lg-chart">' in board
    ranked = re.findall(r'<td>\d+</td><td><a href="../models/([\w-]+).html"', board)
    assert ranked[:2] == ["mlp-ft", "mlp-base"]  # reproduced numbers rank, higher first
    # a claim never reproduced does not rank, whatever it says: it is listed apart
    assert "mlp-mystery" not in ranked
    unranked = board.split("Claimed, not reproduced (not ranked)")[1]
    assert 'href="../models/mlp-mystery.html"' in unranked
    loss = read(site, "leaderboards/digits--test--loss.html")
    assert "lower is better" in loss
    gov = read(site, "governance.html")
    assert gov.index('id="error"') < gov.index('id="warning"') < gov.index('id="info"')
    assert "<td>@dave</td><td>1</td><td>1</td>" in gov
    lineage = read(site, "lineage.html")
    assert lineage.count('<svg class="lg-graph"') == 2  # the mlp family and ext-ft's
    assert "undeclared" in lineage


def test_leaderboard_axis_shows_the_differences_and_labels_versions(site: Path) -> None:
    lo, hi, step = axis([0.93, 0.976])
    assert 0.5 < lo < 0.93 and hi >= 0.976 and step > 0  # not from 0, where both look the same
    assert axis([0.05, 0.5])[0] == 0.0  # never below 0 for positive values
    board = read(site, "leaderboards/digits--test--accuracy.html")
    widths = {
        model: float(w)
        for model, w in re.findall(
            r'models/([\w-]+)\.html">[^<]+</a> <span class="lg-ver">v1\.0\.0</span>'
            r'</span><span class="lg-track"><span class="lg-fill" style="width: ([\d.]+)%"',
            board,
        )
    }
    first = re.search(r'<span class="lg-tick" style="left: 0.00%">([\d.]+)</span>', board)
    assert first is not None and float(first.group(1)) > 0  # the axis does not start at 0, and says so
    # Bars from 0 would stand 0.972 : 0.91; on this axis the difference shows more.
    assert widths["mlp-ft"] / widths["mlp-q8"] > 0.972 / 0.91
    assert "mlp-mystery" not in widths  # never reproduced: no bar


def test_lineage_pictures_are_whole_accessible_and_full_width(site: Path) -> None:
    long_id = "a-model-with-a-rather-long-identifier-v2"
    picture = lineage_svg(
        {"base": "base.html", long_id: None},
        [Edge(parent="base", child=long_id, relation="finetune", status="contradicted", declared=True)],
        focus="base",
    )
    assert f">{long_id}</text>" in picture  # the whole name, not cut to a fixed box
    assert 'role="group"' in picture and 'role="img"' not in picture  # it holds links
    page = read(site, "models/mlp-q8.html")
    assert '<figure class="lg-figure lg-graphbox"' in page and "lg-zoombar" in page
    assert "Every edge in the picture" in page  # the text alternative
    for wide in ("lineage.html", "lineage/mlp-base.html"):
        assert 'data-md-type="navigation" hidden' in read(site, wide)
    assert 'data-md-type="navigation" hidden' not in page
    assert 'src="../assets/lakegen-graph.js"' in page


def test_model_page_opens_with_a_summary(site: Path) -> None:
    page = read(site, "models/mlp-q8.html")
    summary = page.split('<section class="lg-summary"')[1].split("</section>")[0]
    assert page.index("lg-summary") < page.index('id="lineage"')
    assert "lg-s-error" in summary and "contradicted" in summary
    assert 'href="../api/entries/mlp-q8.json"' in summary
    assert "../artifacts/1.0.0.safetensors" in summary  # the artifact of the latest version


def test_home_page_of_a_clean_lake_says_so(tmp_path: Path) -> None:
    clean = demo_index().model_copy(update={"findings": []})
    home = read(_site(tmp_path, clean), "index.html")
    assert "Nothing needs attention" in home and "no errors or warnings" in home
    assert "0 errors" not in home
    assert 'id="best"' in home and "mlp-ft</a> v1.0.0" in home  # each board's best result
    assert "edges: " in home and "Nothing needs attention" in home.split('id="attention"')[1]
    gov = read(tmp_path / "site", "governance.html")
    assert "No findings." in gov and "Checks that ran: validate (ran)" in gov and "<table" not in gov


def test_entries_stay_out_of_the_global_navigation(site: Path) -> None:
    for page in ("index.html", "models/mlp-ft.html"):
        nav = read(site, page).split('class="md-nav md-nav--primary"')[1].split("</nav>")[0]
        assert "mlp-" not in nav
        assert len(re.findall(r"<a\b", nav)) <= 12


def test_nothing_is_loaded_from_another_host(site: Path, xss_site: Path) -> None:
    for root in (site, xss_site):
        for file in root.rglob("*"):
            if file.suffix in (".html", ".css") or file.name == "lakegen-search.js":
                text = file.read_text(encoding="utf-8", errors="replace")
                match = LOADS.search(text)
                assert match is None, f"{file.relative_to(root)} loads {match.group(0)!r}"
                assert "fonts.googleapis" not in text and "fonts.gstatic" not in text
    home = read(site, "index.html")
    assert "cdn." not in home and "unpkg" not in home and "jsdelivr" not in home


def test_search_index_has_every_entry_and_the_facets(site: Path) -> None:
    entry = json.loads(read(site, "pagefind/shard-0/pagefind-entry.json"))
    pages = sum(lang["page_count"] for lang in entry["languages"].values())
    assert pages == len(demo_index().entries)  # only entry pages carry data-pagefind-body
    page = read(site, "models/mlp-q8.html")
    filters = dict(re.findall(r'<span data-pagefind-filter="([^"]+)">([^<]+)</span>', page))
    assert filters["lineage status"] == "contradicted"
    assert filters["relation"] == "quantized" and filters["accuracy range"] == "0.9–1.0"
    search_page = read(site, "search.html")
    assert (
        'data-bundles="pagefind/shard-0/"' in search_page and 'src="assets/lakegen-search.js"' in search_page
    )
    assert 'type="module"' not in search_page  # module scripts do not run from file://


def test_search_shards_are_reindexed_only_when_their_pages_change(tmp_path: Path) -> None:
    index = demo_index()
    first = build_site(tmp_path, index, shard_size=4, stamp=False)
    assert first.stats["search_shards"] == first.stats["search_indexed"] == 3
    shards = sorted((first.site / "pagefind").glob("shard-*"))
    counts = [
        json.loads((s / "pagefind-entry.json").read_text())["languages"]["en"]["page_count"] for s in shards
    ]
    assert sum(counts) == len(index.entries)
    bundles = re.search(r'data-bundles="([^"]+)"', read(first.site, "search.html"))
    assert bundles is not None and bundles.group(1).split() == [f"pagefind/{s.name}/" for s in shards]
    changed = index.model_copy(deep=True)
    edit = next(e for e in changed.entries if e.id == "mlp-q8")
    edit.manifest = {**edit.manifest, "description": "Edited."}
    again = build_site(tmp_path, changed, shard_size=4)
    assert again.stats["search_indexed"] == 1


def test_shards_indexed_two_at_once_equal_shards_indexed_one_by_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Pagefind's own files differ from run to run (their order inside a shard), serial or not;
    # what each shard indexed (each page's fragment: its URL, text, filters) does not
    built = {}
    for parallel in (1, 2):
        monkeypatch.setattr("lakegen.site.searchindex.PARALLEL", parallel)
        (tmp_path / f"lake{parallel}" / "catalog").mkdir(parents=True)
        report = build_site(tmp_path / f"lake{parallel}", demo_index(), shard_size=4)
        assert report.stats["search_indexed"] == 3
        fragments = (report.site / "pagefind").rglob("*.pf_fragment")
        built[parallel] = sorted((f.parent.parent.name, gzip.decompress(f.read_bytes())) for f in fragments)
    assert len(built[2]) == len(demo_index().entries) and built[2] == built[1]


def test_api_has_the_lake_and_one_file_per_entry(site: Path) -> None:
    lake = LakeIndex.model_validate_json(read(site, "api/lake.json"))
    assert lake == demo_index()
    doc = json.loads(read(site, "api/entries/mlp-q8.json"))
    assert doc["manifest"]["name"] == "Mlp Q8"
    assert [e["parent"] for e in doc["parents"]] == ["mlp-ft"]
    assert doc["results"][0]["status"] == "contradicted"
    assert [f["rule"] for f in doc["findings"]] == ["claim-contradicted"]


def test_xss_payloads_render_as_text(xss_site: Path) -> None:
    evil = read(xss_site, "models/evil.html")
    assert "<title>&lt;script&gt; - Model lake</title>" in evil
    assert '<h1 data-pagefind-meta="title">&lt;script&gt;</h1>' in evil
    assert "{{ 7*7 }}{% raw %}" in evil  # template syntax in a manifest is text, never evaluated
    # Filter names and values reach the search page's filter list: none may carry markup.
    filters = re.findall(r'<span data-pagefind-filter="([^"]*)">([^<]*)</span>', evil)
    assert len(filters) > 5
    for name, value in filters:
        assert not re.search(r"[<>&'\"`]", html.unescape(name) + html.unescape(value)), (name, value)
    for file in xss_site.rglob("*.html"):
        audit = _Audit()
        audit.feed(file.read_text(encoding="utf-8"))
        assert audit.problems == [], file.relative_to(xss_site)
    strange = xss_site / "models" / f"{stem('x<script>y')}.html"
    assert strange.is_file() and stem("x<script>y").startswith("x-")
    assert "&lt;/title&gt;&lt;script&gt;" in strange.read_text(encoding="utf-8")


class _Audit(HTMLParser):
    """Collects what would run in a browser: event handlers, script URLs, inline scripts."""

    def __init__(self) -> None:
        super().__init__()
        self.problems: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._in_script = tag == "script"
        for name, value in attrs:
            if name.startswith("on"):
                self.problems.append(f"<{tag} {name}=...>")
            url = (name in ("href", "src", "xlink:href", "action", "formaction") and value) or ""
            if re.match(r"\s*(javascript|data|vbscript):", url, re.I):
                self.problems.append(f"<{tag} {name}={value!r}>")

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script and "__xss" in data:
            self.problems.append(f"script: {data[:60]!r}")


def test_markdown_is_rendered_then_sanitised() -> None:
    html = markdown(
        "**bold** [ok](https://example.org) [js](javascript:alert(1)) [d](data:text/html,x)\n\n<b>raw</b>"
    )
    assert "<strong>bold</strong>" in html
    assert 'href="https://example.org"' in html and 'rel="noopener noreferrer nofollow"' in html
    assert 'href="javascript' not in html and 'href="data' not in html
    assert "nope" not in sanitise(
        '<a href="javascript:x" onclick="nope">a</a><img src="data:x" onerror="nope">'
    )
    assert "<b>" not in html and "&lt;b&gt;raw" in html
    assert markdown(None) == "" and markdown(["x"]) == ""
    assert safe_url("https://a.b/c") == "https://a.b/c"
    assert safe_url("javascript:alert(1)") is None and safe_url('https://a"><x') is None


def test_incremental_rebuild_renders_only_what_changed(tmp_path: Path) -> None:
    index = demo_index()
    site = _site(tmp_path, index, pagefind=False)
    untouched = site / "models" / "mlp-base.html"
    before = untouched.stat().st_ino
    changed = index.model_copy(deep=True)
    edit = next(e for e in changed.entries if e.id == "mlp-mystery")
    edit.manifest = {**edit.manifest, "description": "Now *documented*."}
    report = build_site(tmp_path, changed, pagefind=False)
    assert report.stats["reused"] > 0
    # The changed page and the few pages in the navigation: nothing else.
    assert report.stats["rendered"] <= 10, report.stats
    assert "Now <em>documented</em>." in read(site, "models/mlp-mystery.html")
    assert (site / "models" / "mlp-base.html").stat().st_ino == before
    # Evidence that reaches other pages: an edge is verified, a claim is re-run.
    again = changed.model_copy(deep=True)
    again.edges[2].status = "verified"
    again.results.append(again.results[0].model_copy(update={"model": "mlp-mystery", "reproduced": 0.5}))
    report = build_site(tmp_path, again, pagefind=False)
    assert 3 <= report.stats["rendered"] - 8 <= 12, report.stats
    for index_, name in ((again, "full"),):
        full = _site(tmp_path / name, index_, pagefind=False)
        for file in full.rglob("*.html"):
            assert file.read_bytes() == (site / file.relative_to(full)).read_bytes(), file
        for file in (full / "api").rglob("*.json"):
            assert file.read_bytes() == (site / file.relative_to(full)).read_bytes(), file


def test_stamped_pages_equal_pages_rendered_one_by_one(site: Path, tmp_path: Path) -> None:
    slow = _site(tmp_path, demo_index(), stamp=False, pagefind=False)
    pages = sorted(p.relative_to(site) for p in site.rglob("*.html") if "pagefind" not in p.parts)
    assert pages == sorted(p.relative_to(slow) for p in slow.rglob("*.html"))
    for page in pages:
        assert (site / page).read_bytes() == (slow / page).read_bytes(), page
    assert not list(site.rglob("_lakegen-shell-*"))


def test_directory_urls_work_the_same(tmp_path: Path) -> None:
    config = tmp_path / "dirs.yml"
    config.write_text(
        "site_name: Model lake\nuse_directory_urls: true\ntheme: {name: material, font: false}\n"
        f"docs_dir: {REPO / 'lakegen' / 'site' / 'templates' / 'docs'}\nplugins:\n  - lakegen:\n      pagefind: false\n",
        encoding="utf-8",
    )
    sites = [
        _site(tmp_path / name, demo_index(), config_file=config, stamp=stamp)
        for name, stamp in (("stamped", True), ("one-by-one", False))
    ]
    page = read(sites[0], "models/mlp-ft/index.html")
    assert 'href="../../models/mlp-base/"' in page and 'href="../../datasets/digits/"' in page
    assert (sites[0] / "models" / "mlp-base" / "index.html").is_file()
    for file in sites[1].rglob("*.html"):
        assert file.read_bytes() == (sites[0] / file.relative_to(sites[1])).read_bytes(), file


def tree(site: Path) -> dict[str, bytes]:
    """Every file of a site, by path, with its bytes."""
    return {p.relative_to(site).as_posix(): p.read_bytes() for p in sorted(site.rglob("*")) if p.is_file()}


def searched(files: dict[str, bytes]) -> dict[str, tuple[int, int]]:
    """Each search shard of a site's files: how many files it has, and how many pages it indexes."""
    shards: dict[str, tuple[int, int]] = {}
    for name, data in files.items():
        if name.startswith("pagefind/"):
            shard = name.split("/")[1]
            count, pages = shards.get(shard, (0, 0))
            if name.endswith("/pagefind-entry.json"):
                pages = json.loads(data)["languages"]["en"]["page_count"]
            shards[shard] = (count + 1, pages)
    return shards


def edited(index: LakeIndex, entry: str = "mlp-q8", text: str = "Edited.") -> LakeIndex:
    changed = index.model_copy(deep=True)
    edit = next(e for e in changed.entries if e.id == entry)
    edit.manifest = {**edit.manifest, "description": text}
    return changed


def test_an_interrupted_build_leaves_the_previous_site(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = _site(tmp_path, demo_index(), pagefind=False)
    before = tree(site)

    def boom(*_: object, **__: object) -> str:
        raise RuntimeError("interrupted")

    monkeypatch.setattr("lakegen.site.searchindex.build", boom)
    for reuse in (False, True):  # built whole, or built to patch the previous site
        with pytest.raises(RuntimeError, match="interrupted"):
            build_site(tmp_path, edited(demo_index()), pagefind=True, reuse=reuse)
        assert tree(site) == before
        assert sorted(p.name for p in tmp_path.iterdir()) == ["catalog", "site"]


def test_a_patched_site_equals_a_cold_built_one(tmp_path: Path) -> None:
    from lakegen.site.cache import RECORD

    index = demo_index()
    site = _site(tmp_path / "lake", index, shard_size=4)
    # pages the description edit below does not reach: an entry's, and one in the navigation
    untouched = {page: (site / page).stat().st_ino for page in ("models/mlp-base.html", "governance.html")}
    gone = next(e for e in index.entries if e.kind == "model" and e.id != "mlp-q8")
    added = gone.model_copy(update={"id": "mlp-added", "path": "catalog/models/mlp-added.yaml"})
    changes = {
        "a description": edited(index),
        "a removed model": index.model_copy(update={"entries": [e for e in index.entries if e != gone]}),
        "an added model": index.model_copy(update={"entries": [*index.entries, added]}),
        "fewer search shards": index,
    }
    for n, (what, changed) in enumerate(changes.items()):
        shards = 4 if what != "fewer search shards" else 100
        report = build_site(tmp_path / "lake", changed, shard_size=shards)
        assert report.stats["patched"] < 150, what  # the theme's files, the changed pages and shards
        # the first page's index patched where the entries are the same ones (then built whole)
        assert report.stats["first_index"] == ("patched" if what == "a description" else "whole"), what
        cold = build_site(
            tmp_path / "lake", changed, site_dir=tmp_path / f"cold{n}", reuse=False, shard_size=shards
        )
        assert "patched" not in cold.stats
        patched, fresh = tree(site), tree(cold.site)
        assert RECORD in patched
        # Pagefind names its files by hashes that differ from one run to the next: its shards
        # are compared by what they index (the record names each shard's pages and their digests)
        assert searched(patched) == searched(fresh), what
        patched = {k: v for k, v in patched.items() if not k.startswith("pagefind/shard-")}
        fresh = {k: v for k, v in fresh.items() if not k.startswith("pagefind/shard-")}
        assert "pagefind/first/meta.json.gz" in fresh  # the first page's index: the same bytes
        assert patched.keys() == fresh.keys(), what
        assert patched == fresh, [k for k in patched if patched[k] != fresh[k]]
        if what == "a description":  # left as they were
            assert {page: (site / page).stat().st_ino for page in untouched} == untouched
    assert not [p for p in (tmp_path / "lake").iterdir() if p.name.startswith(".site")]


def test_an_exports_record_not_the_one_the_site_names_is_not_used(tmp_path: Path) -> None:
    """The exports' record is a file of its own, named by the site's record by sha256: one that was
    changed (or is missing) is not trusted; the exports are made again and those the previous site
    has but this one does not are found by looking, so the patched site still equals a cold one."""
    from lakegen.site.cache import EXPORTS_RECORD, RECORD

    index = demo_index()
    gone = next(e for e in index.entries if e.kind == "model" and e.id != "mlp-q8")
    changed = edited(index.model_copy(update={"entries": [e for e in index.entries if e != gone]}))
    cold = tree(_site(tmp_path / "cold", changed, pagefind=False))
    assert any(k.startswith(f"api/exports/hf-card/{gone.id}") for k in tree(_site(tmp_path / "x", index)))
    for damage in ("edited", "missing"):
        site = _site(tmp_path / damage, index, pagefind=False)
        record = json.loads((site / RECORD).read_bytes())
        assert record["exports"] and "api/exports/" not in (site / RECORD).read_text()
        if damage == "edited":
            (site / EXPORTS_RECORD).write_bytes((site / EXPORTS_RECORD).read_bytes() + b" ")
        else:
            (site / EXPORTS_RECORD).unlink()
        report = build_site(tmp_path / damage, changed, pagefind=False)
        assert "patched" in report.stats
        assert tree(site) == cold, damage


def test_a_patch_cut_short_is_built_whole_next_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from lakegen.site.cache import RECORD

    site = _site(tmp_path, demo_index(), pagefind=False)
    changed = edited(demo_index())

    def cut(*_: object, **__: object) -> int:
        raise RuntimeError("cut")

    monkeypatch.setattr("lakegen.site.build._move_tree", cut)
    with pytest.raises(RuntimeError, match="cut"):
        build_site(tmp_path, changed, pagefind=False)
    monkeypatch.undo()
    assert not (site / RECORD).exists()  # half patched: nothing in it is trusted
    report = build_site(tmp_path, changed, pagefind=False)
    assert "patched" not in report.stats and report.stats["reused"] == 0
    assert tree(site) == tree(_site(tmp_path / "cold", changed, pagefind=False))


def test_mkdocs_build_with_the_repository_config(tmp_path: Path) -> None:
    lake = save(demo_index(), tmp_path)
    env = {**os.environ, "LAKEGEN_INDEX": str(lake), "NO_MKDOCS_2_WARNING": "1"}
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "mkdocs", "build", "-q", "-f", str(REPO / "mkdocs.yml"), "-d", str(out)]
    subprocess.run(cmd, check=True, env=env, cwd=tmp_path, timeout=120)
    assert (out / "models" / "mlp-q8.html").is_file() and (
        out / "pagefind" / "shard-0" / "pagefind.js"
    ).is_file()
    assert (out / "about.html").is_file() and (out / "api" / "lake.json").is_file()


def test_cli_build_and_search(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "catalog").mkdir()
    lake = save(demo_index(), tmp_path)
    assert main(["--root", str(tmp_path), "build", "--index", str(lake), "--no-search", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["pages"] >= 20 and (tmp_path / "site" / "index.html").is_file()
    search = ["--root", str(tmp_path), "search", "--index", str(lake)]  # made by hand: not of the lake
    assert main([*search, "mlp", "--owner", "@dave", "--json"]) == 0
    assert [h["id"] for h in json.loads(capsys.readouterr().out)] == ["mlp-mystery"]
    assert main([*search, "--where", "digits/test/accuracy>=0.95", "--json"]) == 0
    assert {h["id"] for h in json.loads(capsys.readouterr().out)} == {"mlp-base", "mlp-ft"}
    assert main([*search, "--where", "accuracy>>1"]) == 2
    assert "--where" in capsys.readouterr().err


def test_search_facets_ranking_and_conditions() -> None:
    index = demo_index()
    facets = entry_facets(index)
    assert facets["mlp-q8"].relation == ["quantized"] and facets["mlp-q8"].lineage == ["contradicted"]
    assert facets["mlp-lora"].evaluation == ["unreproducible"]
    assert facets["ext-ft"].evaluation == []
    assert search(index, "mlp-ft")[0].id == "mlp-ft"  # the exact id ranks first
    assert {h.id for h in search(index, filters={"license": ["mit"]})} == {"mlp-ft", "lakedemo"}
    assert {h.id for h in search(index, filters={"lineage": ["undeclared"]})} == {"mlp-mystery"}
    assert {h.id for h in search(index, where=["loss<=0.2"])} == {"mlp-q8"}
    assert {h.id for h in search(index, where=["test/accuracy<0.92"])} == {
        "mlp-q8",
        "mlp-mystery",
        "mlp-merge",
    }
    assert {h.id for h in search(index, where=["digits/test/accuracy<0.92"])} == {"mlp-q8", "mlp-mystery"}
    assert search(index, "nothing-like-this") == []
    assert Where.parse("params >= 1e6") == Where("params", ">=", 1e6)
    sized = index.model_copy(deep=True)
    sized.entries[3].parameters = 2_500_000
    assert [h.id for h in search(sized, where=["params>1e6"])] == [sized.entries[3].id]
    assert [h.id for h in search(sized, filters={"params": ["1M–10M"]})] == [sized.entries[3].id]
    assert [h.id for h in search(sized, filters={"params": ["1m-10m"]})] == [sized.entries[3].id]


def test_layered_layout_puts_parents_above_children() -> None:
    import networkx as nx

    graph = nx.DiGraph([("a", "b"), ("b", "c"), ("a", "c"), ("x", "c")])
    pos = layered_layout(graph)
    assert pos["a"][0] < pos["b"][0] < pos["c"][0] and pos["x"][0] == 0
