"""What lets a rebuild skip pages that did not change.

Each build records, in the site itself, a digest of every generated page and a
digest of everything else a page's HTML depends on (lakegen, mkdocs and theme
versions, mkdocs.yml, the templates). The next build renders each page's
body (cheap), and hands mkdocs only the pages whose digest changed; the others
are hard-linked from the previous site.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from lakegen import __version__
from lakegen.site.pages import Page, url_of

RECORD = ".lakegen-pages.json"


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return ""


def context_digest(config: Any, templates: Path, plugin_config: dict[str, Any]) -> str:
    """A digest of everything outside a page's own body that its HTML depends on."""
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
        "theme": config.theme.name,
        "plugin": {k: v for k, v in plugin_config.items() if k != "reuse"},
    }
    h.update(json.dumps(settings, sort_keys=True, default=str).encode())
    for file in sorted(templates.rglob("*")):
        if file.is_file():
            h.update(file.relative_to(templates).as_posix().encode() + b"\0" + file.read_bytes())
    return h.hexdigest()


def page_digest(page: Page) -> str:
    data = json.dumps([page.title, page.toc, page.in_nav], ensure_ascii=False).encode() + page.body.encode()
    return hashlib.sha256(data).hexdigest()


def dest_path(src_uri: str, directory_urls: bool) -> str:
    """The file a docs page is written to, relative to the site root."""
    url = url_of(src_uri, directory_urls)
    return url + "index.html" if url.endswith("/") or url == "" else url


def load(site: Path | None, context: str) -> dict[str, str] | None:
    """The page digests of the build in ``site``, or None when there is none or its context differs."""
    if site is None:
        return None
    try:
        record = json.loads((site / RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("context") != context:
        return None
    pages = record.get("pages")
    return pages if isinstance(pages, dict) else None


def save(site: Path, context: str, pages: dict[str, str]) -> None:
    (site / RECORD).write_text(json.dumps({"context": context, "pages": pages}), encoding="utf-8")


def link(src: Path, dst: Path) -> None:
    """Make ``dst`` the same file as ``src``: a hard link where the file system allows, else a copy."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
