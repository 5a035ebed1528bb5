"""The machine-readable side of the site: ``api/lake.json``, ``api/entries/<id>.json`` and
``api/exports/``."""

from __future__ import annotations

import os
from pathlib import Path

from lakegen.atomicfile import Listing
from lakegen.compile.store import write_json_atomic
from lakegen.exports import write_site
from lakegen.model.index import LakeIndex
from lakegen.site import cache
from lakegen.site.cache import link
from lakegen.site.views import LakeView, stem


def write(
    index: LakeIndex,
    view: LakeView,
    site: Path,
    previous: Path | None = None,
    known: dict[str, str] | None = None,
    saved: Path | None = None,
    keep: bool = False,
) -> tuple[dict[str, str], int]:
    """Write ``api/lake.json`` and ``api/entries/<id>.json`` (docs/exports.md).

    ``api/lake.json`` is linked from ``saved`` when given (a file holding ``index`` as
    :func:`lakegen.compile.store.save` wrote it: the same bytes).

    An entry file whose digest is in ``known`` (the previous build's) and exists in
    ``previous`` is linked from there rather than written again. With ``keep`` (``site`` is to
    patch ``previous`` in place), such a file is left where it is instead.

    Returns:
        The digest of every entry file, and how many files were linked.
    """
    folder = site / "api" / "entries"
    folder.mkdir(parents=True, exist_ok=True)
    if saved is not None:
        link(saved, site / "api" / "lake.json")
    else:
        write_json_atomic(site / "api" / "lake.json", index.model_dump(mode="json"))
    same_dir = previous is not None and previous.resolve() == site.resolve()
    digests, linked = {}, 0
    known = known or {}
    there = Listing(previous) if previous is not None else None
    for entry in index.entries:
        name = f"api/entries/{stem(entry.id)}.json"
        digest = digests[name] = view.digest(entry.id)
        if previous is not None and there is not None and known.get(name) == digest and there.is_file(name):
            if not (same_dir or keep):
                link(previous / name, site / name)
            linked += 1
            continue
        (site / name).write_bytes(view.document(entry.id))
    return digests, linked


def write_exports(
    index: LakeIndex,
    view: LakeView,
    site: Path,
    previous: Path | None,
    known: str,
    keep: bool = False,
    changed: frozenset[str] | None = None,
) -> tuple[str, int, list[str]]:
    """Write ``api/exports/`` (:func:`lakegen.exports.write_site`) and the exports' record beside
    the site's (:func:`lakegen.site.cache.save_exports`).

    ``previous``: the previous site, whose exports' record of sha256 ``known`` says which documents
    are unchanged (linked from there; with ``keep``, left where they are). ``changed``: the only ids
    whose digest may differ from that build's (:func:`lakegen.exports.write_site`).

    Returns:
        The sha256 of the record written, how many documents were linked, and, with ``keep``, the
        previous site's export files this one does not have (to remove).
    """
    same_dir = previous is not None and previous.resolve() == site.resolve()
    before = cache.load_exports(previous, known)
    old = previous / cache.EXPORTS if previous is not None and not same_dir else None
    record, linked = write_site(
        index, site / cache.EXPORTS, view.digest, old, before, keep=keep, changed=changed
    )
    stale: list[str] = []
    if keep and previous is not None:
        now = {f"{cache.EXPORTS}/{doc}" for doc in record}
        if before is not None:
            was = {f"{cache.EXPORTS}/{doc}" for doc in before}
        else:  # no record of what it held: what it holds
            top = str(previous)
            was = {
                os.path.relpath(os.path.join(folder, name), top)
                for folder, _, files in os.walk(previous / cache.EXPORTS)
                for name in files
            }
        stale = sorted(was - now)
    return cache.save_exports(site, record), linked, stale
