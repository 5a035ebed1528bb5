"""Documents other tools read, written from the compiled lake index (never from the manifests
alone): Hugging Face model cards, CycloneDX ML-BOMs, SPDX 3 AI/Dataset documents, Croissant
dataset descriptions and EU AI Act technical documentation.

Each format is a :class:`Format` in :data:`FORMATS`. A per-entry format writes one document for
each entry (a model card per model); a lake format writes one document for all of them (one
BOM). :func:`export` returns the documents by file name; :func:`write_site` lays every export
out under the site's ``api/exports/``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from lakegen.atomicfile import Listing
from lakegen.exports import aiact, croissant, cyclonedx, hfcard, spdx
from lakegen.exports.evidence import Evidence, ExportError
from lakegen.model.index import IndexEntry, LakeIndex

__all__ = ["FORMATS", "ExportError", "Format", "export", "write_site"]


Document = str | dict[str, Any]  # Markdown, or JSON(-LD) to serialise


@dataclass(frozen=True)
class Format:
    """One export format: which entries it describes, how, and what its files are called."""

    name: str
    kind: Literal["model", "dataset"]
    suffix: str
    per_entry: Callable[[Evidence, IndexEntry], Document] | None = None
    whole: Callable[[Evidence, list[IndexEntry]], Document] | None = None
    parts: Callable[[Evidence, IndexEntry], tuple[list[bytes], Any]] | None = None
    """A whole-lake document's text for one entry, which ``assemble`` puts together (``whole``'s
    text, unindented), and what else ``assemble`` needs to know of the entry (its *facts*, JSON): a
    rebuild keeps the unchanged entries' parts and facts."""
    assemble: (
        Callable[
            [Evidence, list[IndexEntry], list[list[bytes]], list[Any]], tuple[list[bytes], list[list[int]]]
        ]
        | None
    ) = None
    rebase: Callable[[Evidence, list[IndexEntry], bytes], Callable[[bytes], bytes]] | None = None
    """Given the previous document's text, what turns a part cut from it into this document's (ids
    that differ between the two documents); None: the parts are kept as they are."""

    def filename(self, entry_id: str | None = None) -> str:
        return f"{entry_id}{self.suffix}" if entry_id else f"lake{self.suffix}"


FORMATS: dict[str, Format] = {
    f.name: f
    for f in (
        Format("hf-card", "model", "/README.md", per_entry=hfcard.render),
        Format(
            "cyclonedx",
            "model",
            ".cdx.json",
            whole=cyclonedx.bom,
            parts=cyclonedx.parts,
            assemble=cyclonedx.assemble,
        ),
        Format(
            "spdx",
            "model",
            ".spdx.json",
            whole=spdx.document,
            parts=spdx.parts,
            assemble=spdx.assemble,
            rebase=spdx.rebase,
        ),
        Format("croissant", "dataset", ".croissant.json", per_entry=croissant.description),
        Format("ai-act", "model", ".ai-act.md", per_entry=aiact.render),
    )
}


def export(
    index: LakeIndex, name: str, ids: list[str] | None = None, *, indent: int | None = 2
) -> dict[str, str]:
    """The documents of format ``name`` for ``ids`` (default: every entry the format describes).

    JSON is indented by ``indent`` spaces (None: compact, and several times faster to write).

    Returns:
        File name -> text: one file per entry for a per-entry format, else one file.

    Raises:
        ExportError: an unknown format, or an id that is not in the index or of the wrong kind.
    """
    fmt = FORMATS.get(name)
    if fmt is None:
        raise ExportError(f"unknown format '{name}' (known: {', '.join(FORMATS)})")
    ev = Evidence(index)
    entries = ev.select(fmt.kind, ids)
    if fmt.per_entry is not None:
        documents = {fmt.filename(e.id): fmt.per_entry(ev, e) for e in entries}
    else:
        assert fmt.whole is not None
        documents = {fmt.filename(): fmt.whole(ev, entries)}
    return {name: _text(doc, indent) for name, doc in documents.items()}


def _text(document: Document, indent: int | None) -> str:
    if isinstance(document, str):
        return document
    return json.dumps(document, indent=indent, ensure_ascii=False) + "\n"


def write_site(
    index: LakeIndex,
    folder: Path,
    digest: Callable[[str], str] | None = None,
    previous: Path | None = None,
    known: dict[str, list[Any]] | None = None,
    keep: bool = False,
    changed: frozenset[str] | None = None,
) -> tuple[dict[str, list[Any]], int]:
    """Write every export of the whole lake under ``folder`` (the site's ``api/exports/``) as
    ``<format>/<file>``, replacing what an earlier build left there.

    A per-entry document depends on its entry's rows in the index and on the entries it looked up
    (:attr:`Evidence.read`: a parent's Hub id, a dataset's splits). With ``digest`` (a digest of
    everything the index says about an entry id), each document's key is recorded; one whose key
    is in ``known`` (the previous build's record) and whose file is in ``previous`` (that build's
    exports folder) is linked from there, not rendered again; with ``keep``, it is left where it
    is (``folder`` is to patch ``previous`` in place) and nothing is written for it. ``changed``
    (given only when that build's documents had this index's :func:`context`) holds the only ids
    whose digest may differ from that build's: a document reading none keeps its key uncomputed.

    Returns:
        The record for the next build (document -> [key, ids it looked up]), and how many were linked.
    """
    shutil.rmtree(folder, ignore_errors=True)
    ev = Evidence(index)
    shared = context(index)
    known = known or {}
    there = Listing(previous) if previous is not None else None

    def kept(fmt: str, entry_id: str, before: list[Any]) -> bool:
        if changed is not None and entry_id not in changed and changed.isdisjoint(before[1]):
            return True
        assert digest is not None  # asked only of documents keyed by digests
        return bool(before[0] == _key(shared, fmt, entry_id, before[1], digest))

    record: dict[str, list[Any]] = {}
    made: set[Path] = set()
    linked = 0

    # Each document is written once made, not held until the last is (20,000 documents, 150 MB
    # at 10,000 models). The folder is new (the site is built aside, then swapped in or moved
    # into place): a temporary file and a rename per document would double the cost of 20,000 files.
    def place(doc: str) -> Path:
        path = folder / doc
        if path.parent not in made:
            path.parent.mkdir(parents=True, exist_ok=True)
            made.add(path.parent)
        return path

    for name, fmt in FORMATS.items():
        entries = ev.select(fmt.kind, None)
        if fmt.per_entry is None:
            doc = f"{name}/{fmt.filename()}"
            if fmt.parts is not None and digest is not None:
                old = previous / doc if previous is not None else None
                record[doc] = _in_parts(
                    fmt, ev, entries, shared, digest, old, known.get(doc), kept, place(doc)
                )
            else:
                assert fmt.whole is not None
                place(doc).write_bytes(_text(fmt.whole(ev, entries), None).encode())
            continue
        for entry in entries:
            doc = f"{name}/{fmt.filename(entry.id)}"
            if digest is not None:
                before = known.get(doc)
                if (
                    before is not None
                    and previous is not None
                    and there is not None
                    and kept(name, entry.id, before)
                    and (_there(there, doc) if keep else _link(previous / doc, folder / doc, made))
                ):
                    record[doc] = before
                    linked += 1
                    continue
            ev.read = set()
            place(doc).write_bytes(_text(fmt.per_entry(ev, entry), None).encode())
            if digest is not None:
                refs = sorted(ev.read - {entry.id})
                record[doc] = [_key(shared, name, entry.id, refs, digest), refs]
    return record, linked


def _in_parts(
    fmt: Format,
    ev: Evidence,
    entries: list[IndexEntry],
    context: str,
    digest: Callable[[str], str],
    previous: Path | None,
    before: list[Any] | None,
    same: Callable[[str, str, list[Any]], bool],
    out: Path,
) -> list[Any]:
    """A whole-lake document put together from each entry's parts; those of an entry whose key
    is unchanged are cut out of the previous build's document (``previous``; ``before`` is its
    record: its sha256, and each entry's key, the ids it read, and where its parts are in it;
    ``same`` tells whether an entry's key, so recorded, is still its key), with its facts.

    The document is written into ``out`` a part at a time, never joined in memory (the SPDX
    document of 100,000 models is 311 MB, and was the cold build's peak, held twice).

    Returns:
        The document's record.
    """
    assert fmt.parts is not None and fmt.assemble is not None
    old, kept = b"", {}
    if previous is not None and before is not None:
        with contextlib.suppress(OSError):
            old = previous.read_bytes()
        if old and hashlib.sha256(old).hexdigest() == before[0]:  # the document the spans are of
            kept = before[1]
    moved: Callable[[bytes], bytes] | None = None
    if kept and fmt.rebase is not None:
        try:
            moved = fmt.rebase(ev, entries, old)
        except ValueError:
            kept = {}
    if moved is not None and kept:
        whole = moved(old)
        if len(whole) == len(old):  # the parts are where they were: moved once, not one by one
            old, moved = whole, None
        del whole
    made, keys, facts = [], [], []
    for entry in entries:
        was = kept.get(entry.id)
        if was is not None and len(was) == 4 and same(fmt.name, entry.id, was):
            spans = was[2]
            cut = [old[spans[i] : spans[i + 1]] for i in range(0, len(spans), 2)]
            made.append(cut if moved is None else [moved(c) for c in cut])
            keys.append(was[:2])
            facts.append(was[3])
            continue
        ev.read = set()
        mine, fact = fmt.parts(ev, entry)
        made.append(mine)
        facts.append(fact)
        refs = sorted(ev.read - {entry.id})
        keys.append([_key(context, fmt.name, entry.id, refs, digest), refs])
    old = b""  # every kept part is cut from it by now: the previous document is let go first
    chunks, spans = fmt.assemble(ev, entries, made, facts)
    h = hashlib.sha256()
    with out.open("wb") as f:
        for batch in _batches(chunks):
            h.update(batch)
            f.write(batch)
    parts = {e.id: [*k, s, f] for e, k, s, f in zip(entries, keys, spans, facts, strict=True)}
    return [h.hexdigest(), parts]


def _batches(chunks: list[bytes], size: int = 1 << 20) -> Iterator[bytes]:
    """``chunks`` joined into pieces of about ``size`` bytes: a whole-lake document is a few small
    chunks a model (1.6 million writes and hash updates at 100,000 models, one call each)."""
    batch: list[bytes] = []
    held = 0
    for chunk in chunks:
        batch.append(chunk)
        held += len(chunk)
        if held >= size:
            yield b"".join(batch)
            batch, held = [], 0
    if batch:
        yield b"".join(batch)


def context(index: LakeIndex) -> str:
    """What every document depends on besides its entries: the exports' code, lakegen's version,
    the index's ``generated_at``."""
    h = hashlib.sha256(f"{index.lakegen_version}\0{index.generated_at}\0{yaml.__version__}\0".encode())
    for file in sorted(Path(__file__).resolve().parent.glob("*.py")):
        h.update(file.name.encode() + b"\0" + file.read_bytes())
    return h.hexdigest()


def _key(context: str, fmt: str, entry_id: str, refs: list[str], digest: Callable[[str], str]) -> str:
    # joined rather than dumped as JSON (a third of the cost; 30,000 keys a build): which ids an
    # entry reads follows from its own rows, which its digest covers
    parts = [context, fmt, entry_id, digest(entry_id), *(f"{r}\0{digest(r)}" for r in refs)]
    return hashlib.sha256("\0".join(parts).encode("utf-8", "surrogatepass")).hexdigest()


def _there(there: Listing, doc: str) -> bool:
    # a model card is a folder of its own (<id>/README.md): its folder is looked for in one read of
    # the format's folder, not a stat for each of 100,000 cards (a build writes a card's folder
    # and file together and removes them together)
    folder = doc.rpartition("/")[0]
    return there.is_file(doc) if "/" not in folder else there.is_dir(folder)


def _link(src: Path, dst: Path, made: set[Path]) -> bool:
    """Make ``dst`` the same file as ``src`` (a hard link, else a copy); False when ``src`` is gone.
    ``made``: the folders made so far (a model card has a folder of its own: 10,000 mkdir calls)."""
    if dst.parent not in made:
        dst.parent.mkdir(parents=True, exist_ok=True)
        made.add(dst.parent)
    try:
        os.link(src, dst)
    except FileNotFoundError:
        return False
    except OSError:
        try:
            shutil.copy2(src, dst)
        except OSError:
            return False
    return True
