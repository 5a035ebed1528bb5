"""Every page of the site as HTML from the Jinja2 templates in ``lakegen/site/templates/pages``.

The templates run with autoescape on: a manifest string is always text.
Markdown fields go through :func:`lakegen.site.markup.markdown` (rendered, then
sanitised) and pictures through :mod:`lakegen.site.svg`; both return markup the
templates insert as is.
"""

from __future__ import annotations

import functools
import hashlib
import math
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import networkx as nx
from markupsafe import Markup, escape
from pydantic_core import to_json

from lakegen import fastjson
from lakegen.governance.changetext import readable
from lakegen.governance.history import provenance
from lakegen.search import FACET_LABELS, FACETS
from lakegen.site import filters, svg
from lakegen.site.environment import page_environment
from lakegen.site.markup import markdown, safe_url
from lakegen.site.views import NEIGHBOURS, SEVERITIES, Board, EvalRow, LakeView, stem
from lakegen.terminal import printable

LIST_PAGE = 200  # entries per listing page
# Lineage pictures: families drawn on the explorer page (whole, or not at all), and on a family's page.
INLINE_FAMILIES, INLINE_MEMBERS, FAMILY_MEMBERS = 6, 60, 200
HOME_BOARDS = 10  # leaderboards whose best result the home page shows
CHART_ROWS = 25  # bars on a leaderboard's chart (its table lists every row)
NAV = (
    ("Home", "index.md"),
    ("Models", "models.md"),
    ("Datasets", "datasets.md"),
    ("Code", "code.md"),
    ("Leaderboards", "leaderboards.md"),
    ("Governance", "governance.md"),
    ("Lineage", "lineage.md"),
    ("Search", "search.md"),
    ("How to read", "about.md"),
)

IN_NAV = frozenset(path for _, path in NAV)
LISTED = ("task", "license", "owner", "lineage", "evaluation")  # the facets a listing page shows


@dataclass
class Page:
    """A generated page: where it goes, its title, its HTML body and its table of contents."""

    src_uri: str
    title: str
    body: str
    toc: list[tuple[str, str]] = field(default_factory=list)
    in_nav: bool = False
    wide: bool = False
    """Drawn without the theme's side columns, so a lineage picture gets the page's whole width."""


@dataclass
class Job:
    """A page to be: where it goes, and how to render it.

    ``deps`` digests everything the page reads from the index, when that is
    known without rendering it (entry pages): equal ``deps`` mean an equal page.
    """

    src_uri: str
    render: Callable[[], Page]
    deps: str | None = None
    in_nav: bool = False


def url_of(src_uri: str, directory_urls: bool) -> str:
    """The site URL (relative to the site root) of a docs page, as mkdocs would write it."""
    base = src_uri.removesuffix(".md")
    if not directory_urls:
        return base + ".html"
    if base == "index" or base.endswith("/index"):
        return base.removesuffix("index")
    return base + "/"


class Renderer:
    """Renders the pages of one lake with one set of templates."""

    def __init__(
        self,
        view: LakeView,
        templates: Path,
        *,
        directory_urls: bool = False,
        site_name: str = "",
        search_bundles: list[str] | None = None,
    ):
        self.view = view
        self.directory_urls = directory_urls
        self.search_bundles = search_bundles or ["pagefind/shard-0/"]
        self.env = page_environment(templates)
        self.env.filters.update(
            md=lambda t: Markup(markdown(t)),
            num=filters.num,
            size=filters.size,
            short=filters.short_sha,
            facet=filters.facet_text,
            count=filters.count,
            signed=filters.signed,
            readable=readable,
            printable=printable,
            provenance=provenance,
        )
        self.env.globals.update(
            safe_url=safe_url,
            facet_labels=FACET_LABELS,
            facet_names=FACETS,
            severities=SEVERITIES,
            site_name=site_name,
        )
        self._current = self._root = ""
        self._boards: dict[str, str] = {}
        self._family: dict[str, str] = {}
        self._links: dict[tuple[str, str], Markup] = {}
        self.env.globals["href"] = self.href
        self.env.globals["entry_href"] = self.entry_href
        self.env.globals["root"] = self.root
        self.env.globals["json_href"] = self.json_href
        self.env.globals.update(link=self.link, badge=filters.badge, owners=filters.owners, h2=filters.h2)

    def href(self, target: str) -> str:
        """A link from the page being rendered to docs page ``target`` (``models/x.md``)."""
        return self._root + (url_of(target, self.directory_urls) or "./")

    def json_href(self, entry_id: str) -> str:
        """A link from the page being rendered to an entry's JSON document."""
        return f"{self._root}api/entries/{stem(entry_id)}.json"

    def root(self) -> str:
        """The relative prefix from the page being rendered to the site root (``""`` or ``../``...)."""
        return self._root

    def _at(self, src_uri: str) -> None:
        self._current = src_uri
        self._root = "../" * url_of(src_uri, self.directory_urls).count("/")

    def entry_href(self, entry_id: str) -> str | None:
        path = self.view.path(entry_id)
        return self.href(path) if path else None

    def link(self, entry_id: object) -> Markup:
        """A link to an entry's page, or its id as plain text when it is outside the lake."""
        key = (self._root, entry_id) if type(entry_id) is str else None
        made = self._links.get(key) if key else None
        if made is None:
            url = self.entry_href(str(entry_id))
            if url:
                made = Markup(f'<a href="{escape(url)}">{escape(entry_id)}</a>')
            else:
                made = Markup(f'<span class="lg-ext" title="outside the lake">{escape(entry_id)}</span>')
            if key:  # a model is linked from twenty pages, mostly at the same depth
                self._links[key] = made
        return made

    def render(self, template: str, src_uri: str, title: str, *, wide: bool = False, **context: Any) -> Page:
        self._at(src_uri)
        toc: list[tuple[str, str]] = []
        body = self.env.get_template(template).render(title=title, toc=toc, **context)
        return Page(src_uri, title, body, toc, in_nav=src_uri in IN_NAV, wide=wide)

    def jobs(self) -> Iterator[Job]:
        """Every page, to be rendered; model pages say what they depend on first."""
        view = self.view
        boards = view.boards()
        self._boards = {b.key: b.path for b in boards}
        self._family = {n: _family_path(comp) for comp in view.components() for n in comp}
        # a family no larger than what a model's page may draw of it is digested once for all its
        # pages, rather than each page walking the graph for its own neighbourhood
        self._families = {comp[0]: view.family_digest(comp) for comp in view.components()}
        self._small = {
            n: self._families[comp[0]] for comp in view.components() if len(comp) <= NEIGHBOURS for n in comp
        }
        yield _done(self.home(boards))
        for kind, folder in (("model", "models"), ("dataset", "datasets"), ("code", "code")):
            yield from self.listing(kind, folder)
        # each dataset's boards, found once: a lake of 1,000 datasets has as many boards
        on: dict[str, list[str]] = defaultdict(list)
        for b in boards:
            on[b.dataset].append(b.path)
        for entry in view.index.entries:
            path = view.path(entry.id) or ""
            if entry.kind == "model":
                yield Job(path, functools.partial(self.model, entry.id), self.model_deps(entry.id))
            elif entry.kind == "dataset":
                deps = [view.by_dataset.get(entry.id, []), view.derived.get(entry.id, [])]
                deps.append(on.get(entry.id, []))
                yield Job(path, functools.partial(self.dataset, entry.id, boards), self._deps(entry.id, deps))
            else:
                deps = [view.by_code.get(entry.id, [])]
                yield Job(path, functools.partial(self.code, entry.id), self._deps(entry.id, deps))
        yield _done(self.render("leaderboards.html", "leaderboards.md", "Leaderboards", boards=boards))
        for board in boards:
            deps = [board.key, sorted({r.model for r in board.rows}), view.kind(board.dataset)]
            yield Job(board.path, functools.partial(self.board, board), self._deps(None, deps, *board.rows))
        yield Job("governance.md", self.governance, self.governance_deps(), in_nav=True)
        yield from self.lineage()
        yield _done(
            self.render("search.html", "search.md", "Search", facets=FACETS, bundles=self.search_bundles)
        )

    def _deps(self, entry_id: str | None, extra: object, *rows: EvalRow) -> str:
        """A digest of a page's inputs: an entry's rows, what else the page lists, and cited kinds."""
        view = self.view
        cited: set[str] = {r.model for r in rows}
        if entry_id is not None:
            cited.update(view.sources[entry_id])
        payload = [
            view.digest(entry_id) if entry_id else None,
            extra,
            sorted((c, view.kind(c), view.digest(c)) for c in cited),
        ]
        return hashlib.sha256(fastjson.compact(payload, default=repr)).hexdigest()

    def model_deps(self, entry_id: str) -> str:
        """A digest of what a model page shows: its lineage neighbourhood, and the kinds of what it cites."""
        view = self.view
        cited = view.cites[entry_id]
        family = self._family.get(entry_id)
        small = self._small.get(entry_id)
        if small is not None:  # the page shows no more than its family, all of which this digests
            lineage: list[Any] = [entry_id, small]
        else:
            nodes = view.lineage_nodes(entry_id)
            lineage = [nodes, [view.digest(n) for n in nodes]]
        payload = [*lineage, [(c, view.kind(c)) for c in cited], family]
        return hashlib.sha256(fastjson.compact(payload)).hexdigest()

    def home(self, boards: list[Board]) -> Page:
        index = self.view.index
        kinds = Counter(e.kind for e in index.entries)
        attention = sorted(
            (f for f in index.findings if f.severity in ("error", "warning")),
            key=lambda f: (SEVERITIES.index(f.severity), f.entry or "", f.line),
        )
        return self.render(
            "home.html",
            "index.md",
            "Model lake",
            kinds=kinds,
            edges=Counter(e.status for e in index.edges),
            results=Counter(r.status for r in index.results),
            findings=Counter(f.severity for f in index.findings),
            recent=sorted(index.history, key=lambda c: c.date, reverse=True)[:15],
            attention=attention[:20],
            attention_total=len(attention),
            boards=len(boards),
            best=[(b, top[0]) for b in boards if (top := b.ranked())][:HOME_BOARDS],
            artifacts=Counter(a.status for a in index.artifacts),
            index=index,
        )

    def listing(self, kind: str, folder: str) -> Iterator[Job]:
        """The pages listing entries of ``kind``; each says what it shows of them (its deps), so a
        rebuild renders only the page holding a changed entry (and the first, in the navigation)."""
        entries = [e for e in self.view.index.entries if e.kind == kind]
        chunks = [entries[i : i + LIST_PAGE] for i in range(0, len(entries), LIST_PAGE)] or [[]]
        names = [f"{folder}.md"] + [f"{folder}-{n}.md" for n in range(2, len(chunks) + 1)]
        title = {"model": "Models", "dataset": "Datasets", "code": "Code"}[kind]
        facets = self.view.facets
        for number, (chunk, name) in enumerate(zip(chunks, names, strict=True), start=1):
            render = functools.partial(
                self.render,
                "listing.html",
                name,
                title if number == 1 else f"{title} ({number})",
                kind=kind,
                entries=chunk,
                facets=facets,
                pages=names,
                number=number,
                total=len(entries),
            )
            shown = [
                [e.id, self.view.names[e.id], *(getattr(facets[e.id], n) for n in LISTED)] for e in chunk
            ]
            deps = [kind, names, number, len(entries), shown]
            digest = hashlib.sha256(fastjson.compact(deps, default=repr)).hexdigest()
            yield Job(name, render, digest, name in IN_NAV)

    def _common(self, entry_id: str) -> dict[str, Any]:
        view = self.view
        entry = view.entries[entry_id]
        m = entry.manifest
        versions = []
        for v in m.get("versions") or []:
            if isinstance(v, dict):
                key = (entry.id, str(v.get("version")))
                signature = view.signatures.get(key)
                versions.append({**v, "status": view.artifacts.get(key), "signature": signature})
        return {
            "e": entry,
            "m": m,
            "versions": versions,
            "findings": sorted(
                view.findings.get(entry.id, []), key=lambda f: (SEVERITIES.index(f.severity), f.line)
            ),
            "history": view.history.get(entry.id, []),
            "facets": view.facets[entry.id],
        }

    def model(self, entry_id: str) -> Page:
        view = self.view
        ctx = self._common(entry_id)
        self._at(view.path(entry_id) or "")
        nodes = view.lineage_nodes(entry_id)
        keep = set(nodes)
        edges = [e for n in nodes for e in view.edges_in.get(n, []) if e.parent in keep]
        above = nx.ancestors(view.graph, entry_id) if entry_id in view.graph else set()
        ancestors = [n for n in nodes if n in above]
        picture = svg.lineage_svg(
            {n: self.entry_href(n) for n in nodes},
            list(edges),
            focus=entry_id,
            title=f"Lineage of {entry_id}",
        )
        return self.render(
            "model.html",
            view.path(entry_id) or "",
            _title(ctx["m"], entry_id),
            **ctx,
            lineage=Markup(picture) if len(nodes) > 1 else "",
            parents=view.edges_in.get(entry_id, []),
            children=view.edges_out.get(entry_id, []),
            evaluations=view.evaluations.get(entry_id, []),
            ancestors=[(a, view.entries[a].manifest.get("license")) for a in ancestors if a in view.entries],
            boards=self._boards,
            family=self._family.get(entry_id),
            drawn=len(nodes),
            picture_edges=edges,
        )

    def dataset(self, entry_id: str, boards: list[Board]) -> Page:
        view = self.view
        ctx = self._common(entry_id)
        uses = view.by_dataset.get(entry_id, [])
        return self.render(
            "dataset.html",
            view.path(entry_id) or "",
            _title(ctx["m"], entry_id),
            **ctx,
            trained=[(m, r) for m, r in uses if r in ("train", "finetune")],
            evaluated=sorted({m for m, r in uses if r == "eval"}),
            boards=[b for b in boards if b.dataset == entry_id],
            derived=view.derived.get(entry_id, []),
        )

    def code(self, entry_id: str) -> Page:
        ctx = self._common(entry_id)
        return self.render(
            "code.html",
            self.view.path(entry_id) or "",
            _title(ctx["m"], entry_id),
            **ctx,
            used_by=self.view.by_code.get(entry_id, []),
        )

    def board(self, board: Board) -> Page:
        self._at(board.path)
        ranked = board.ranked()
        shown = [
            (r, r.reproduced)
            for r in ranked[:CHART_ROWS]
            if r.reproduced is not None and math.isfinite(r.reproduced)
        ]
        bars: list[tuple[EvalRow, float]] = []  # a row, and its bar's length in % of the axis
        ticks: list[tuple[float, float]] = []  # a tick's value, and where it sits in %
        if shown:
            lo, hi, step = svg.axis([v for _, v in shown])
            bars = [(r, max(0.5, (v - lo) / (hi - lo) * 100)) for r, v in shown]
            ticks = [(lo + k * step, k * step / (hi - lo) * 100) for k in range(round((hi - lo) / step) + 1)]
        return self.render(
            "board.html",
            board.path,
            f"Leaderboard: {board.key}",
            board=board,
            ranked=ranked,
            bars=bars,
            ticks=ticks,
            lower=board.higher_is_better is False,
        )

    def governance_deps(self) -> str:
        """A digest of what the governance page shows: every finding, and the kinds of the entries
        they name (a link, or plain text outside the lake)."""
        index = self.view.index
        cited = sorted({f.entry for f in index.findings if f.entry})
        payload = [
            [(c, self.view.kind(c)) for c in cited],
            len(index.entries),
            index.stages,
            index.generated_at,
        ]
        # the findings digested as pydantic dumps them, not copied into the payload as a string to
        # escape again (every finding of the lake)
        h = hashlib.sha256(to_json(index.findings))
        h.update(b"\0" + fastjson.compact(payload))
        return h.hexdigest()

    def governance(self) -> Page:
        findings = sorted(
            self.view.index.findings,
            key=lambda f: (SEVERITIES.index(f.severity), f.entry or "", f.path, f.line),
        )
        owners: dict[str, Counter[str]] = {}
        for f in findings:
            for owner in f.owners or ["(no owner)"]:
                owners.setdefault(owner, Counter())[f.severity] += 1
        return self.render(
            "governance.html",
            "governance.md",
            "Governance",
            findings=findings,
            counts=Counter(f.severity for f in findings),
            owners=sorted(owners.items(), key=lambda kv: (-kv[1]["error"], -kv[1]["warning"], kv[0])),
            rules=Counter((f.stage, f.rule) for f in findings).most_common(),
            index=self.view.index,
        )

    def lineage(self) -> Iterator[Job]:
        view = self.view
        comps = view.components()
        pictures = []
        for comp in comps:
            pictures.append((comp, _family_path(comp)))
        inline = []
        self._at("lineage.md")
        for comp, path in pictures[:INLINE_FAMILIES]:
            if len(comp) <= INLINE_MEMBERS:
                edges_of = [e for n in comp for e in view.edges_in.get(n, [])]
                inline.append((comp, path, Markup(self._component_svg(comp, INLINE_MEMBERS)), edges_of))
        edges = view.index.edges
        yield _done(
            self.render(
                "lineage.html",
                "lineage.md",
                "Lineage explorer",
                wide=True,
                components=pictures,
                inline=inline,
                statuses=Counter(e.status for e in edges),
                relations=Counter(e.relation for e in edges),
                models=sum(1 for e in view.index.entries if e.kind == "model"),
                edges=edges,
            )
        )
        for comp, path in pictures:
            yield Job(path, functools.partial(self.component, comp, path), self._families[comp[0]])

    def component(self, comp: list[str], path: str) -> Page:
        self._at(path)
        return self.render(
            "component.html",
            path,
            f"Lineage family of {comp[0]}",
            wide=True,
            comp=comp,
            drawn=min(len(comp), FAMILY_MEMBERS),
            picture=Markup(self._component_svg(comp, FAMILY_MEMBERS)),
            edges=[e for n in comp for e in self.view.edges_in.get(n, [])],
        )

    def _component_svg(self, comp: list[str], limit: int) -> str:
        keep = set(comp[:limit])
        edges = [e for n in comp for e in self.view.edges_in.get(n, []) if e.parent in keep and n in keep]
        return svg.lineage_svg(
            {n: self.entry_href(n) for n in comp[:limit]},
            list(edges),
            title=f"Lineage family of {comp[0]}",
            max_nodes=limit,
        )


def _family_path(comp: list[str]) -> str:
    return f"lineage/{stem(comp[0])}.md"


def _done(page: Page) -> Job:
    return Job(page.src_uri, lambda: page, None, page.in_nav)


def _title(manifest: dict[str, Any], entry_id: str) -> str:
    name = manifest.get("name")
    return name if isinstance(name, str) and name else entry_id
