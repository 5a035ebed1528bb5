"""The search index: Pagefind over the entry pages, in shards.

Pagefind has no incremental mode and costs about a millisecond per page
whatever the page holds, so a lake of thousands of entries is indexed in
shards of about :data:`SHARD_PAGES` pages (``pagefind/shard-<k>/``), which the
search page merges (Pagefind's ``mergeIndex``). A rebuild re-indexes only the
shards whose pages changed and links the others from the previous site. More
shards mean a few more small requests per query; a lake under
:data:`SHARD_PAGES` entries has one.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from lakegen.model.index import LakeIndex
from lakegen.site import firstpage, firstpatch
from lakegen.site.cache import link
from lakegen.site.pages import url_of
from lakegen.site.views import LakeView, page_of

# a rebuild re-indexes each shard holding a changed page (Pagefind: ~1.4 ms of CPU a page), and a
# query fetches a little of every shard: 1,000 keeps one changed model's re-index near a second
SHARD_PAGES = 1000
PARALLEL = 2  # Pagefind processes at once
FOLDER = "pagefind"


def shard_count(entries: int, size: int = SHARD_PAGES) -> int:
    return max(1, math.ceil(entries / max(1, size)))


def shard_of(src_uri: str, count: int) -> int:
    """The shard of a page: stable for as long as the number of shards is."""
    return int(hashlib.sha256(src_uri.encode()).hexdigest()[:8], 16) % count


def bundle(shard: int) -> str:
    """A shard's folder, relative to the site root (with a trailing slash, as Pagefind wants)."""
    return f"{FOLDER}/shard-{shard}/"


def available() -> bool:
    return _command() is not None


@functools.cache
def _command() -> list[str] | None:
    """How to run Pagefind: its binary itself when installed (``python -m pagefind`` only starts
    Python to exec it, a fifth of a second a shard), else the one on ``PATH``."""
    try:
        import pagefind_bin
    except ImportError:
        found = shutil.which("pagefind")
        return [found] if found else None
    binary = pagefind_bin.get_executable()
    return [str(binary)] if binary is not None else [sys.executable, "-m", "pagefind"]


def _pagefind_version() -> str:
    try:
        return version("pagefind")
    except PackageNotFoundError:
        return ""


def build(
    site: Path,
    shards: dict[int, list[tuple[str, str]]],
    previous: Path | None = None,
    known: dict[str, str] | None = None,
    keep: bool = False,
) -> tuple[dict[str, str], int]:
    """Index each shard's pages (``(file, body digest)`` pairs) into ``site/pagefind/shard-<k>``
    (the first page's index is :func:`first`'s).

    A shard whose digest is in ``known`` (the previous build's) is linked from ``previous``
    instead of being made again; with ``keep`` (``site`` is to patch ``previous`` in place, and
    holds only the pages that changed), it is left where it is.

    Returns:
        The digest of every shard, and how many shards were indexed.
    """
    digests: dict[str, str] = {}
    todo: list[tuple[list[str], Path]] = []
    for shard, pages in sorted(shards.items()):
        name = bundle(shard).rstrip("/")
        digest = hashlib.sha256(json.dumps([_pagefind_version(), sorted(pages)]).encode()).hexdigest()
        digests[name] = digest
        out, old = site / name, (previous / name if previous is not None else None)
        if old is not None and (known or {}).get(name) == digest and (old / "pagefind-entry.json").is_file():
            if not keep and old.resolve() != out.resolve():
                _link_tree(old, out)
            continue
        shutil.rmtree(out, ignore_errors=True)
        todo.append(([dest for dest, _ in pages], out))
    # Pagefind waits on the disk for a third of its time (a fragment file per page): two shards at
    # once keep a core busy meanwhile; each shard is its own process and folder, so the same bytes
    with ThreadPoolExecutor(min(PARALLEL, max(1, len(todo)))) as pool:
        kept = previous if keep else None
        running = [pool.submit(_index, site, dests, out, kept) for dests, out in todo]
        for done in running:
            done.result()
    return digests, len(todo)


def first(
    site: Path, records: list[firstpage.Record], previous: Path | None, known: str | None, keep: bool
) -> tuple[str, str]:
    """Write the first page's index (or link the previous one, when made of the same records; or
    patch it, when a few records changed: :mod:`lakegen.site.firstpatch`)."""
    made = firstpage.Index(records)
    out, old = site / firstpage.FOLDER, (previous / firstpage.FOLDER if previous is not None else None)
    if old is not None and known == made.digest and (old / "meta.json.gz").is_file():
        if not keep and old.resolve() != out.resolve():
            _link_tree(old, out)
        return made.digest, "linked"
    shutil.rmtree(out, ignore_errors=True)
    # the previous index is read only while it is another folder than the one written
    usable = old is not None and old.is_dir() and old.resolve() != out.resolve()
    patched = firstpatch.write(made, out, old if usable else None)
    return made.digest, "patched" if patched else "whole"


def _index(site: Path, pages: Iterable[str], out: Path, kept: Path | None = None) -> None:
    """Run Pagefind over ``pages`` only: they are linked into a scratch folder at the same paths
    (from ``site``, else from ``kept``: the site it patches, which holds the unchanged ones)."""
    scratch = Path(tempfile.mkdtemp(prefix=".pagefind-", dir=site.parent))
    try:
        for dest in pages:
            src = site / dest
            link(src if kept is None or src.is_file() else kept / dest, scratch / dest)
        command = _command() or [sys.executable, "-m", "pagefind"]
        proc = subprocess.run(
            [*command, "--site", str(scratch), "--output-path", str(out), "--quiet"],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"pagefind failed:\n{proc.stdout}\n{proc.stderr}")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _link_tree(src: Path, dst: Path) -> None:
    top, out = str(src), str(dst)
    for folder, _, files in os.walk(top):
        there = out + folder[len(top) :]  # strings: a shard holds a file per page
        for name in files:
            link(Path(folder, name), Path(there, name))


def first_of_view(
    index: LakeIndex,
    view: LakeView,
    directory_urls: bool,
    site: Path,
    previous: Path | None,
    known: str | None,
    keep: bool,
) -> tuple[str, str]:
    """Make the first page's records of every entry and write its index into ``site``
    (:func:`lakegen.site.searchindex.first`): its digest, and how it was made."""
    records = [
        firstpage.record_of(
            url_of(page_of(e.id, e.kind), directory_urls), e.id, e.kind, e.manifest, view.facets[e.id]
        )
        for e in index.entries
    ]
    return first(site, records, previous, known, keep)
