"""The lakegen mkdocs plugin: turns the compiled lake into mkdocs pages.

Registered as the ``lakegen`` entry point of ``mkdocs.plugins``, so both
``lakegen build`` and a plain ``mkdocs build`` with the repository's
``mkdocs.yml`` produce the same site. Each page is rendered once by
:mod:`lakegen.site.pages`; mkdocs gets a one-line Markdown stub for it
(``on_page_markdown``) and the rendered HTML replaces the stub
(``on_page_content``), so no page's HTML goes through the Markdown parser.
Entry pages stay out of the global navigation, so each page's navigation is
the same handful of sections however large the lake grows.

Per-page work is kept small because a lake has thousands of entries:

- pages outside the navigation that share a folder and a table of contents
  differ, once rendered by the theme, only in title and body. mkdocs renders
  one *shell* page for each such group and the pages are stamped out of it
  (``stamp: false`` sends every page through mkdocs instead; both give the
  same bytes, which the tests check);
- a page whose rendered HTML is unchanged since the previous build is not
  rendered again: its file is linked from the previous site
  (see :mod:`lakegen.site.cache`).
"""

from __future__ import annotations

import functools
import hashlib
import html
import json
import logging
import os
import posixpath
import tempfile
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import IO, Any

from jinja2 import Environment
from mkdocs.config import base
from mkdocs.config import config_options as c
from mkdocs.config.defaults import MkDocsConfig
from mkdocs.plugins import BasePlugin
from mkdocs.structure.files import File, Files, InclusionLevel
from mkdocs.structure.pages import Page as MkPage
from mkdocs.structure.toc import get_toc

from lakegen import exports
from lakegen.atomicfile import Listing
from lakegen.executor import forked
from lakegen.model.index import LakeIndex
from lakegen.site import api, cache, firstpage, searchindex
from lakegen.site.pages import NAV, Job, Page, Renderer, url_of
from lakegen.site.templatecache import template_cache
from lakegen.site.views import LakeView

log = logging.getLogger("mkdocs.plugins.lakegen")
STUB = "LAKEGEN-PAGE-BODY"
STUB_HTML = f"<p>{STUB}</p>"
SHELL_TITLE = "LAKEGEN-SHELL-TITLE-5d1c"
# Says "<h1" so that material, seeing a heading, adds none of its own: every lake page has one.
SHELL_BODY = "<!--LAKEGEN-SHELL-BODY-5d1c <h1> -->"
ASSETS = ("lakegen.css", "lakegen-search.js", "lakegen-graph.js")


def default_templates() -> Path:
    """lakegen's own templates, shipped as package data (``lakegen/site/templates``)."""
    # A wheel installs as plain files (never zipped), so the resource is a folder mkdocs and Jinja can read.
    return Path(str(resources.files("lakegen.site") / "templates"))


class LakegenConfig(base.Config):
    root = c.Optional(c.Type(str))
    """The lake (a folder holding ``catalog/``); default: the folder of ``mkdocs.yml``."""
    index = c.Optional(c.Type(str))
    """A compiled ``lake.json`` to read instead of compiling the lake."""
    templates = c.Optional(c.Type(str))
    """The templates folder; default: ``site_templates`` beside ``mkdocs.yml``, else lakegen's own."""
    pagefind = c.Type(bool, default=True)
    """Build the Pagefind search index after the pages."""
    shard_size = c.Type(int, default=searchindex.SHARD_PAGES)
    """Entries per search shard: a rebuild re-indexes only the shards whose pages changed."""
    reuse = c.Type(bool, default=True)
    """Link pages that did not change from the previous build instead of rendering them again."""
    stamp = c.Type(bool, default=True)
    """Let mkdocs render one shell per folder and table of contents, and stamp pages out of it."""


class LakegenPlugin(BasePlugin[LakegenConfig]):
    """Generates every page of the lake site from a :class:`~lakegen.model.index.LakeIndex`."""

    def __init__(self) -> None:
        self.index: LakeIndex | None = None
        self.root_override: Path | None = None
        self.reuse_from: Path | None = None
        self.patch = False
        """Build only what changed since the site in :attr:`reuse_from`, to patch it in place
        (:func:`lakegen.site.build.build_site` does, once the build is complete)."""
        self.patching = False
        """Set once the previous build's record is read: this build makes only what changed."""
        self.stale: list[str] = []
        """When patching: the previous site's files this one does not have (search shards as folders)."""
        self.replaced: list[str] = []
        """When patching: the search shards indexed again, to replace whole."""
        self.stats: dict[str, Any] = {}
        self._dirty = False
        self._pages: dict[str, Page] = {}
        self._shells: dict[str, list[_Stamped]] = {}
        self._stubs: list[str] = []
        self._reused: list[str] = []
        self._record = cache.Record("")
        self._previous: cache.Record | None = None
        self._shards: dict[int, list[str]] = {}
        self._first: forked.Pending[tuple[str, str]] | None = None
        self._reuse_dir: Path | None = None
        self._view: LakeView | None = None
        self._changed: frozenset[str] | None = None
        self._bodies: IO[bytes] | None = None

    def on_startup(self, *, command: str, dirty: bool) -> None:
        self._dirty = dirty

    def on_config(self, config: MkDocsConfig) -> MkDocsConfig:
        """Resolve the lake and templates, add lakegen's stylesheet and script, and default the navigation.

        Args:
            config: the mkdocs configuration.

        Returns:
            The configuration, with ``extra_css``, ``extra_javascript`` and (when unset) ``nav`` filled in.
        """
        here = Path(config.config_file_path).parent if config.config_file_path else Path.cwd()
        self.root = self.root_override or (here / self.config.root if self.config.root else here)
        if self.config.templates:
            self.templates = (here / self.config.templates).resolve()
        elif (here / "site_templates" / "pages").is_dir():
            self.templates = here / "site_templates"
        else:
            self.templates = default_templates()
        if "assets/lakegen.css" not in config.extra_css:
            config.extra_css.append("assets/lakegen.css")
        if "assets/lakegen-graph.js" not in config.extra_javascript:
            config.extra_javascript.append("assets/lakegen-graph.js")
        if config.nav is None:
            config.nav = [{title: path} for title, path in NAV]
        # The sitemap would list only the pages rendered in this run; without site_url it has no use.
        config.theme.static_templates.discard("sitemap.xml")
        return config

    def on_env(self, env: Environment, *, config: MkDocsConfig, files: Files) -> Environment:
        """Keep the theme's compiled templates between builds, as lakegen's own are
        (:func:`~lakegen.site.pages.template_cache`).

        Args:
            env: the theme's Jinja environment.
            config: the mkdocs configuration.
            files: all files.

        Returns:
            The environment.
        """
        env.bytecode_cache = template_cache()
        return env

    def site_key(self, config: MkDocsConfig, index: LakeIndex) -> str | None:
        """What the whole site is a function of: the compiled lake and how it is rendered; None
        when the index does not say what it was compiled from."""
        return self.key_of(config, index.inputs.digest, index.inputs.options, index.generated_at)

    def key_of(self, config: MkDocsConfig, digest: str, options: Any, generated_at: str) -> str | None:
        """:meth:`site_key` of the index of inputs ``digest``, compiled with ``options`` at
        ``generated_at``."""
        if not digest:
            return None
        context = cache.context_digest(config, self.templates, dict(self.config))
        made = [context, digest, options, generated_at, dict(self.config)]
        return hashlib.sha256(json.dumps(made, sort_keys=True, default=str).encode()).hexdigest()

    def on_files(self, files: Files, *, config: MkDocsConfig) -> Files:
        """Render every lake page and add it to mkdocs' files (or mark it for reuse or stamping).

        Args:
            files: the files mkdocs found in ``docs_dir``.
            config: the mkdocs configuration.

        Returns:
            The files, with the lake's pages, their shells and lakegen's assets added.
        """
        start = time.perf_counter()
        self.stats = {}  # mkdocs keeps one instance of the plugin for every build of the process
        index = self._load_index()
        view = LakeView(index)
        entry_pages = [p for p in (view.path(e.id) for e in index.entries) if p]
        count = searchindex.shard_count(len(entry_pages), self.config.shard_size)
        self._shards = defaultdict(list)
        for src in entry_pages:
            self._shards[searchindex.shard_of(src, count)].append(src)
        renderer = Renderer(
            view,
            self.templates,
            directory_urls=config.use_directory_urls,
            site_name=config.site_name,
            search_bundles=[searchindex.bundle(k) for k in sorted(self._shards)],
        )
        reuse_from = self.reuse_from or (Path(config.site_dir) if self._dirty else None)
        context = cache.context_digest(config, self.templates, dict(self.config))
        previous = cache.load(reuse_from, context) if self.config.reuse and reuse_from else None
        self._reuse_dir = reuse_from
        here = Path(config.site_dir).resolve()
        self.patching = bool(self.patch and previous and reuse_from and reuse_from.resolve() != here)
        self._view = renderer.view
        self._record = cache.Record(context)
        self._previous = previous
        self._changed = cache.keep_digests(index, previous, view)
        self.abort()  # a fork an earlier build of this plugin left unasked
        if self.config.pagefind and searchindex.available():
            # The first page's index reads nothing the pages do: a fork makes it on the other core
            # while this process renders (at 100,000 models, 10 s of a one-change rebuild that held
            # the interpreter's lock against the rest when it ran in the search step's thread).
            known = previous.search.get(firstpage.FOLDER) if previous is not None else None
            args = (index, view, config.use_directory_urls, here, reuse_from, known, self.patching)
            self._first = forked.start(functools.partial(searchindex.first_of_view, *args))
        self._pages, self._reused, self._shells, self._stubs = {}, [], {}, []
        # Rendered bodies wait for their shell in a temporary file, not in memory: most pages are
        # stamped after every page is rendered (80 MB of bodies at 10,000 models).
        if self._bodies is not None:
            self._bodies.close()
        self._bodies = tempfile.TemporaryFile(prefix="lakegen-bodies-")  # noqa: SIM115 (closed once stamped)
        groups: dict[tuple[str, tuple[tuple[str, str], ...], bool], list[_Stamped]] = defaultdict(list)
        there = Listing(reuse_from) if reuse_from is not None else None
        for job in renderer.jobs():
            dest = cache.dest_path(job.src_uri, config.use_directory_urls)
            before = _before(previous, there, job, dest)
            if before is not None and job.deps is not None and before[0] == job.deps:
                self._record.pages[job.src_uri] = before
                self._reused.append(dest)
                if job.in_nav:  # the navigation needs the page: mkdocs gets a stub, its file is dropped
                    self._add(files, config, Page(job.src_uri, "", "", in_nav=True))
                    self._stubs.append(dest)
                continue
            page = job.render()
            body = page.body.encode()
            digest = cache.page_digest(page, body)
            self._record.pages[job.src_uri] = (job.deps, digest)
            if page.in_nav:
                self._add(files, config, page)
            elif before is not None and before[1] == digest:
                self._reused.append(dest)
            else:
                key = (posixpath.dirname(page.src_uri), tuple(page.toc), page.wide)
                groups[key].append(_Stamped(page.src_uri, page.title, self._bodies.tell(), len(body)))
                self._bodies.write(body)
        self._bodies.flush()
        for (folder, toc, wide), pages in groups.items():
            if not self.config.stamp or len(pages) < 2:
                for p in pages:
                    text = self._body(p).decode()
                    self._add(files, config, Page(p.src_uri, p.title, text, list(toc), wide=wide))
                continue
            name = f"_lakegen-shell-{len(self._shells)}.md"
            shell = Page(posixpath.join(folder, name), SHELL_TITLE, SHELL_BODY, list(toc), wide=wide)
            self._shells[shell.src_uri] = pages
            self._add(files, config, shell)
        sitemap = files.get_file_from_path("sitemap.xml")
        if sitemap is not None and not sitemap.is_documentation_page():
            files.remove(sitemap)  # the raw template, copied once it is no longer a static template
        for name in ASSETS:
            asset = self.templates / "assets" / name
            files.append(File.generated(config, f"assets/{name}", abs_src_path=str(asset)))
        stamped = sum(len(p) for p in self._shells.values())
        self.stats.update(
            rendered=len(self._pages) - len(self._shells) - len(self._stubs) + stamped,
            stamped=stamped,
            reused=len(self._reused),
            render_s=time.perf_counter() - start,
        )
        return files

    def _add(self, files: Files, config: MkDocsConfig, page: Page) -> None:
        self._pages[page.src_uri] = page
        inclusion = InclusionLevel.INCLUDED if page.in_nav else InclusionLevel.NOT_IN_NAV
        files.append(File.generated(config, page.src_uri, content=STUB + "\n", inclusion=inclusion))

    def on_page_markdown(self, markdown: str, *, page: MkPage, config: MkDocsConfig, files: Files) -> str:
        """Give a lake page its title (escaped: material prints it as is) and its stub body.

        Args:
            markdown: the page's Markdown source.
            page: the page.
            config: the mkdocs configuration.
            files: all files.

        Returns:
            The Markdown to convert: a stub for lake pages, unchanged for others.
        """
        ours = self._pages.get(page.file.src_uri)
        if ours is None:
            return markdown
        if not page.is_homepage:  # the theme titles the home page with the site's name
            page.meta["title"] = html.escape(ours.title)
        if ours.wide:
            page.meta["hide"] = ["navigation", "toc"]
        return STUB

    def on_page_content(self, html_: str, *, page: MkPage, config: MkDocsConfig, files: Files) -> str:
        """Put the rendered HTML of a lake page in place of its stub, and set its table of contents.

        Args:
            html_: the HTML mkdocs made from the stub.
            page: the page.
            config: the mkdocs configuration.
            files: all files.

        Returns:
            The page's HTML.
        """
        ours = self._pages.get(page.file.src_uri)
        if ours is None:
            return html_
        page.toc = get_toc(
            [{"level": 2, "id": i, "name": html.escape(t), "children": []} for i, t in ours.toc]
        )
        return html_.replace(STUB_HTML, ours.body, 1)

    def on_post_build(self, *, config: MkDocsConfig) -> None:
        """Stamp pages from their shells, link reused pages, write the API, run Pagefind.

        Args:
            config: the mkdocs configuration.
        """
        site = Path(config.site_dir)
        start = time.perf_counter()
        self._stamp(site, config.use_directory_urls)
        for dest in self._stubs:
            (site / dest).unlink()
        if not self.patching and self._reuse_dir is not None and self._reuse_dir.resolve() != site.resolve():
            for dest in self._reused:
                cache.link(self._reuse_dir / dest, site / dest)
        previous = self._previous or cache.Record("")
        assert self._view is not None
        from lakegen.compile.store import saved_as

        use = config.use_directory_urls
        search = self.config.pagefind and searchindex.available()
        if self.config.pagefind and not search:
            log.warning(
                "Pagefind is not installed (pip install 'pagefind[bin]'): the site has no search index"
            )
        # Pagefind (a process of its own) indexes the pages while this one writes the API and the
        # exports: on two cores, the one waited for the other for a second or two a rebuild.
        with ThreadPoolExecutor(1) as pool:
            if search:
                shards = {
                    k: [(cache.dest_path(src, use), self._record.pages[src][1]) for src in srcs]
                    for k, srcs in self._shards.items()
                }
                indexing = pool.submit(self._index, site, shards, previous)
            index = self._load_index()
            saved = saved_as(self.root, index)
            self._record.api, linked = api.write(
                index, self._view, site, self._reuse_dir, previous.api, saved, self.patching
            )
            self._record.index, self._record.shared = index.inputs.digest, exports.context(index)
            # the exports' keys are kept too only when they share what every document depends on
            changed = self._changed if previous.shared == self._record.shared else None
            self._record.exports, exported, stale_exports = api.write_exports(
                index, self._view, site, self._reuse_dir, previous.exports, self.patching, changed
            )
            self.stats.update(api_linked=linked + exported, post_s=time.perf_counter() - start)
            self._record.site = self.site_key(config, index)
            if search:
                indexing.result()
        self._record.others = cache.others(site, self._record, config.use_directory_urls, searchindex.FOLDER)
        if self.patching:
            self.stale = sorted((previous.files(use) - self._record.files(use)).union(stale_exports))
            self.replaced = [name for name in self._record.search if (site / name).is_dir()]
        cache.save(site, self._record)

    def on_build_error(self, *, error: Exception) -> None:
        """Stop the first page's fork: the build it was for is abandoned.

        Args:
            error: what failed.
        """
        self.abort()

    def abort(self) -> None:
        """Stop what this build runs aside (the first page's fork) and wait for it, so that nothing
        writes into the abandoned build's folder once it is removed."""
        if self._first is not None:
            self._first.cancel()
            self._first = None

    def _index(self, site: Path, shards: dict[int, list[tuple[str, str]]], previous: cache.Record) -> None:
        start = time.perf_counter()
        self._record.search, indexed = searchindex.build(
            site, shards, self._reuse_dir, previous.search, keep=self.patching
        )
        first = None
        if self._first is not None:
            self._record.search[firstpage.FOLDER], first = self._first.result()
            self._first = None
        self.stats.update(
            search_shards=len(shards),
            search_indexed=indexed,
            first_index=first,
            pagefind_s=time.perf_counter() - start,
        )

    def _stamp(self, site: Path, directory_urls: bool) -> None:
        """Write the pages of each shell: the shell's HTML with their title, name and body put in.

        A shell is rendered by mkdocs like any page in its folder with the same table of
        contents; what differs between those pages is only what is substituted here.
        """
        for shell_uri, pages in self._shells.items():
            shell_file = site / cache.dest_path(shell_uri, directory_urls)
            head, tail = shell_file.read_text(encoding="utf-8").split(SHELL_BODY, 1)
            shell_name = _name(shell_uri, directory_urls)
            shell_file.unlink()
            if directory_urls:
                shell_file.parent.rmdir()
            made: set[str] = set()
            for page in pages:
                dest = cache.dest_path(page.src_uri, directory_urls)
                title = html.escape(page.title)
                name = _name(page.src_uri, directory_urls)
                start, end = (p.replace(SHELL_TITLE, title).replace(shell_name, name) for p in (head, tail))
                folder = posixpath.dirname(dest)
                if folder not in made:
                    os.makedirs(site / folder, exist_ok=True)
                    made.add(folder)
                with open(site / dest, "wb") as out:
                    out.write(start.encode() + self._body(page) + end.encode())
        if self._bodies is not None:
            self._bodies.close()
            self._bodies = None

    def _body(self, page: _Stamped) -> bytes:
        assert self._bodies is not None
        return os.pread(self._bodies.fileno(), page.size, page.offset)

    def _load_index(self) -> LakeIndex:
        if self.index is None:
            if self.config.index:
                from lakegen.compile.store import load_index

                self.index = load_index(self.root / self.config.index)
            else:
                from lakegen.compile import compile_lake

                self.index = compile_lake(self.root)
        return self.index


@dataclass(slots=True)
class _Stamped:
    """A rendered page waiting for its shell: where it goes, its title, where its body (as UTF-8)
    is in the plugin's temporary file of bodies."""

    src_uri: str
    title: str
    offset: int
    size: int


def _before(
    previous: cache.Record | None, site: Listing | None, job: Job, dest: str
) -> tuple[str | None, str] | None:
    """What the previous build recorded for ``job``'s page, when its file is there to reuse."""
    if previous is None or site is None:
        return None
    found = previous.pages.get(job.src_uri)
    return found if found is not None and site.is_file(dest) else None


def _name(src_uri: str, directory_urls: bool) -> str:
    """The last part of a page's URL: ``x.html``, or ``x`` for ``.../x/``."""
    return url_of(src_uri, directory_urls).rstrip("/").rsplit("/", 1)[-1]


__all__ = ["LakegenConfig", "LakegenPlugin"]
