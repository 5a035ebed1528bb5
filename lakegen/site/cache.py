"""What lets a rebuild skip pages that did not change.

Each build records, in the site itself, a digest of everything outside the
pages that their HTML depends on (lakegen, mkdocs and theme versions,
mkdocs.yml, the templates) and, per page, a digest of its body and, for entry
pages, of the index rows it reads ("deps"). The next build does not even
render an entry page whose deps are unchanged; other pages are rendered (cheap)
and handed to mkdocs only when their body changed. Unchanged pages and API
files are hard-linked from the previous site. The record also keeps the whole
site's key (the compiled lake's inputs digest and the context): while it is
unchanged there is no build at all.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lakegen import fastjson
from lakegen.site.pages import Page, url_of
from lakegen.site.views import LakeView, stem
from lakegen.version import __version__

if TYPE_CHECKING:
    from lakegen.model.index import LakeIndex

RECORD = ".lakegen-pages.json"
EXPORTS_RECORD = ".lakegen-exports.json"
"""The exports' record (per document, its key and the entries it read), beside the build's record
and named by it by sha256: only the build's exports read it (59 MB of the 100 MB that a
100,000-model site's one record was, which every rebuild parsed to ask whether the site is current)."""
EXPORTS = "api/exports"
HOW = ("reuse", "stamp", "pagefind", "shard_size")


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return ""


def rendering_code() -> list[Path]:
    """lakegen's own code that the site's files are made by: a change to it changes them without
    changing lakegen's version. The exports are among it: with them left out, an edit of an
    export's code and an unchanged index gave a no-op build that kept the old exports."""
    code = Path(__file__).resolve().parent
    exports = code.parent / "exports"
    return [*sorted(code.glob("*.py")), *sorted(exports.glob("*.py")), code.parent / "search.py"]


def context_digest(config: Any, templates: Path, plugin_config: dict[str, Any]) -> str:
    """A digest of everything outside a page's own inputs that its HTML depends on."""
    h = hashlib.sha256()
    for part in (__version__, _version("mkdocs"), _version("mkdocs-material")):
        h.update(part.encode() + b"\0")
    if config.config_file_path and Path(config.config_file_path).is_file():
        h.update(Path(config.config_file_path).read_bytes())
    settings = {
        "site_name": config.site_name,
        "site_url": config.site_url,
        "nav": config.nav,
        "use_directory_urls": config.use_directory_urls,
        "extra_css": list(config.extra_css),
        "extra_javascript": [str(script) for script in config.extra_javascript],
        "theme": config.theme.name,
        # Options that change how pages are made, not what they are, stay out.
        "plugin": {k: v for k, v in plugin_config.items() if k not in HOW},
    }
    h.update(json.dumps(settings, sort_keys=True, default=str).encode())
    for file in rendering_code():
        h.update(file.name.encode() + b"\0" + file.read_bytes())
    for file in sorted(templates.rglob("*")):
        if file.is_file():
            h.update(file.relative_to(templates).as_posix().encode() + b"\0" + file.read_bytes())
    return h.hexdigest()


def page_digest(page: Page, body: bytes | None = None) -> str:
    """A digest of a page's title, contents, place and body (``body``: the body already encoded)."""
    h = hashlib.sha256(json.dumps([page.title, page.toc, page.in_nav], ensure_ascii=False).encode())
    h.update(page.body.encode() if body is None else body)
    return h.hexdigest()


def dest_path(src_uri: str, directory_urls: bool) -> str:
    """The file a docs page is written to, relative to the site root."""
    url = url_of(src_uri, directory_urls)
    return url + "index.html" if url.endswith("/") or url == "" else url


@dataclass
class Record:
    """What a build left for the next: per page (deps, body digest); per API file and shard, a
    digest; the sha256 of the exports' record (:data:`EXPORTS_RECORD`)."""

    context: str
    pages: dict[str, tuple[str | None, str]] = field(default_factory=dict)
    api: dict[str, str] = field(default_factory=dict)
    search: dict[str, str] = field(default_factory=dict)
    exports: str = ""
    """The sha256 of the exports' record this build wrote (:func:`save_exports`); "" for none."""
    site: str | None = None  # the whole site's key (LakegenPlugin.site_key): equal, nothing to build
    index: str = ""
    """The inputs digest of the index the site was built from: a rebuild from an index compiled
    from that one (:func:`lakegen.compile.delta.changed_since`) keeps the unchanged entries' digests."""
    shared: str = ""
    """What every export document depended on (:func:`lakegen.exports.context`)."""
    others: list[str] = field(default_factory=list)
    """The site's other files (the theme's, ``api/lake.json``): with the above and the exports'
    record, every file the site has, so a rebuild that patches the site in place knows which to
    remove."""

    def files(self, directory_urls: bool) -> set[str]:
        """Every file of the site this record describes, relative to its root, but the exports
        (:data:`EXPORTS`, which their own record describes); a search shard is one entry, its folder."""
        found = {dest_path(src, directory_urls) for src in self.pages}
        found.update(self.api, self.search, self.others)
        return found


_READ: dict[tuple[str, int, int, int], Any] = {}


def _record_data(site: Path) -> Any:
    """The record's JSON in ``site``, read once for as long as the file is unchanged: a build asks
    whether the site is current and then reads it for reuse (100 MB at 100,000 models)."""
    path = site / RECORD
    st = os.stat(path)
    key = (os.path.abspath(path), st.st_ino, st.st_size, st.st_mtime_ns)
    if key not in _READ:
        _READ.clear()  # one record kept
        _READ[key] = fastjson.loads(path.read_bytes())
    return _READ[key]


def unchanged(site: Path, key: str | None) -> int | None:
    """The page count of the site in ``site`` when it was built with ``key``; else None."""
    try:
        data = _record_data(site)
        return len(data["pages"]) if key is not None and data.get("site") == key else None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def load(site: Path | None, context: str) -> Record | None:
    """The record of the build in ``site``, or None when there is none or its context differs."""
    if site is None:
        return None
    try:
        data = _record_data(site)
        _READ.clear()  # what is kept of it is copied into the Record below
        if data.get("context") != context:
            return None
        pages = {k: (v[0], v[1]) for k, v in data["pages"].items()}
        exports = data.get("exports")
        return Record(
            context,
            pages,
            dict(data["api"]),
            dict(data["search"]),
            exports if isinstance(exports, str) else "",
            data.get("site"),
            str(data.get("index") or ""),
            str(data.get("shared") or ""),
            list(data["others"]),
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError, IndexError):
        return None


def save(site: Path, record: Record) -> None:
    data = {
        "context": record.context,
        "pages": record.pages,
        "api": record.api,
        "search": record.search,
        "exports": record.exports,
        "site": record.site,
        "index": record.index,
        "shared": record.shared,
        "others": record.others,
    }
    (site / RECORD).write_bytes(fastjson.compact(data))


def link(src: Path, dst: Path) -> None:
    """Make ``dst`` the same file as ``src``: a hard link where the file system allows, else a copy."""
    try:
        os.link(src, dst)
        return
    except FileNotFoundError:
        # the folder first, only when missing: a rebuild links tens of thousands of files into a
        # few dozen folders, and a mkdir for each cost as much as the link
        dst.parent.mkdir(parents=True, exist_ok=True)
    except OSError:
        pass
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def keep_digests(index: LakeIndex, previous: Record | None, view: LakeView) -> frozenset[str] | None:
    """When ``index`` was compiled from the index the previous site was built from
    (:func:`lakegen.compile.delta.changed_since`): the entries it changed, having handed ``view``
    the previous build's digests of all the others; else None (every entry is digested)."""
    from lakegen.compile.delta import changed_since

    found = changed_since(index)
    if found is None or previous is None or not previous.index or previous.index != found[0]:
        return None
    changed = found[1]
    digests = {}
    for entry in index.entries:
        if entry.id not in changed:
            digest = previous.api.get(f"api/entries/{stem(entry.id)}.json")
            if digest is None:
                return None
            digests[entry.id] = digest
    view.keep(digests, changed)
    return changed


def others(site: Path, record: Record, directory_urls: bool, unread: str) -> list[str]:
    """The files in ``site`` that ``record`` does not already name (the theme's, ``api/lake.json``);
    the folder ``unread`` (the search index's) and the exports' are not looked into."""
    named = record.files(directory_urls) | {RECORD, EXPORTS_RECORD}
    top, found = str(site), []
    for folder, dirs, files in os.walk(top):
        rel = folder[len(top) + 1 :]
        if rel in (unread, EXPORTS):
            dirs.clear()
            continue
        for name in files:
            path = f"{rel}/{name}" if rel else name
            if path not in named:
                found.append(path)
    return sorted(found)


def save_exports(site: Path, record: dict[str, list[Any]]) -> str:
    """Write the exports' record into ``site``; its sha256, for the build's record to name it by."""
    data = fastjson.compact(record)
    (site / EXPORTS_RECORD).write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def load_exports(site: Path | None, digest: str) -> dict[str, list[Any]] | None:
    """The exports' record in ``site`` when it is the one of sha256 ``digest``; else None."""
    if site is None or not digest:
        return None
    try:
        data = (site / EXPORTS_RECORD).read_bytes()
        if hashlib.sha256(data).hexdigest() != digest:
            return None
        record = fastjson.loads(data)
    except (OSError, ValueError):
        return None
    # written by save_exports, whose sha256 the site's record holds: its shape is the one written
    return record if isinstance(record, dict) else None
