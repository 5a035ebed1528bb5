"""The machine-readable side of the site: ``api/lake.json`` and ``api/entries/<id>.json``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lakegen.atomicfile import Listing
from lakegen.compile.store import write_json_atomic
from lakegen.exports import write_site
from lakegen.model.index import LakeIndex
from lakegen.site.cache import link
from lakegen.site.views import LakeView, stem


def write(
    index: LakeIndex,
    view: LakeView,
    site: Path,
    previous: Path | None = None,
    known: dict[str, str] | None = None,
    saved: Path | None = None,
    known_exports: dict[str, list[Any]] | None = None,
    keep: bool = False,
    changed: frozenset[str] | None = None,
) -> tuple[dict[str, str], dict[str, list[Any]], int]:
    """Write ``api/lake.json``, ``api/entries/<id>.json`` and ``api/exports/`` (docs/exports.md).

    ``api/lake.json`` is linked from ``saved`` when given (a file holding ``index`` as
    :func:`lakegen.compile.store.save` wrote it: the same bytes).

    An entry file whose digest is in ``known`` (the previous build's) and exists in
    ``previous`` is linked from there rather than written again; so is an export whose key is in
    ``known_exports`` (:func:`lakegen.exports.write_site`). With ``keep`` (``site`` is to patch
    ``previous`` in place), such a file is left where it is instead. ``changed``: the only ids whose
    digest may differ from the previous build's, for the exports (:func:`lakegen.exports.write_site`).

    Returns:
        The digest of every entry file, the exports' record, and how many files were linked.
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
    old_exports = previous / "api" / "exports" if previous is not None and not same_dir else None
    exports, reused = write_site(
        index, site / "api" / "exports", view.digest, old_exports, known_exports, keep=keep, changed=changed
    )
    return digests, exports, linked + reused
