"""Documents other tools read, written from the compiled lake index (never from the manifests
alone): Hugging Face model cards, CycloneDX ML-BOMs, SPDX 3 AI/Dataset documents, Croissant
dataset descriptions and EU AI Act technical documentation.

Each format is a :class:`Format` in :data:`FORMATS`. A per-entry format writes one document for
each entry (a model card per model); a lake format writes one document for all of them (one
BOM). :func:`export` returns the documents by file name; :func:`write_site` lays every export
out under the site's ``api/exports/``.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

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

    def filename(self, entry_id: str | None = None) -> str:
        return f"{entry_id}{self.suffix}" if entry_id else f"lake{self.suffix}"


FORMATS: dict[str, Format] = {
    f.name: f
    for f in (
        Format("hf-card", "model", "/README.md", per_entry=hfcard.render),
        Format("cyclonedx", "model", ".cdx.json", whole=cyclonedx.bom),
        Format("spdx", "model", ".spdx.json", whole=spdx.document),
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


def write_site(index: LakeIndex, folder: Path) -> None:
    """Write every export of the whole lake under ``folder`` (the site's ``api/exports/``) as
    ``<format>/<file>``, replacing what an earlier build left there."""
    documents = {
        f"{name}/{file}": text for name in FORMATS for file, text in export(index, name, indent=None).items()
    }
    shutil.rmtree(folder, ignore_errors=True)
    # The folder is new (the site is built aside and swapped in whole): a temporary file and a
    # rename per document would only double the cost of 20,000 files.
    made: set[Path] = set()
    for name, text in documents.items():
        path = folder / name
        if path.parent not in made:
            path.parent.mkdir(parents=True, exist_ok=True)
            made.add(path.parent)
        path.write_bytes(text.encode("utf-8"))
