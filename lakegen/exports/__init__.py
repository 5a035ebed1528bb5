"""Documents other tools read, written from the compiled lake index (never from the manifests
alone): Hugging Face model cards, CycloneDX ML-BOMs, SPDX 3 AI/Dataset documents, Croissant
dataset descriptions and EU AI Act technical documentation.

Each format is a :class:`Format` in :data:`FORMATS`. A per-entry format writes one document for
each entry (a model card per model); a lake format writes one document for all of them (one
BOM). :func:`export` returns the documents by file name; :func:`write_site` lays every export
out under the site's ``api/exports/``.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from lakegen.atomicfile import write_atomic
from lakegen.exports import aiact, croissant, cyclonedx, hfcard, spdx
from lakegen.exports.evidence import Evidence, ExportError
from lakegen.index import IndexEntry, LakeIndex

__all__ = ["FORMATS", "ExportError", "Format", "export", "write_site"]


@dataclass(frozen=True)
class Format:
    """One export format: which entries it describes, how, and what its files are called."""

    name: str
    kind: Literal["model", "dataset"]
    suffix: str
    per_entry: Callable[[Evidence, IndexEntry], str] | None = None
    whole: Callable[[Evidence, list[IndexEntry]], str] | None = None

    @property
    def is_json(self) -> bool:
        return self.suffix.endswith(".json")

    def filename(self, entry_id: str | None = None) -> str:
        return f"{entry_id}{self.suffix}" if entry_id else f"lake{self.suffix}"


FORMATS: dict[str, Format] = {
    f.name: f
    for f in (
        Format("hf-card", "model", "/README.md", per_entry=hfcard.render),
        Format("cyclonedx", "model", ".cdx.json", whole=cyclonedx.render),
        Format("spdx", "model", ".spdx.json", whole=spdx.render),
        Format("croissant", "dataset", ".croissant.json", per_entry=croissant.render),
        Format("ai-act", "model", ".ai-act.md", per_entry=aiact.render),
    )
}


def export(index: LakeIndex, name: str, ids: list[str] | None = None) -> dict[str, str]:
    """The documents of format ``name`` for ``ids`` (default: every entry the format describes).

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
        return {fmt.filename(e.id): fmt.per_entry(ev, e) for e in entries}
    assert fmt.whole is not None
    return {fmt.filename(): fmt.whole(ev, entries)}


def write_site(index: LakeIndex, folder: Path) -> None:
    """Write every export of the whole lake under ``folder`` (the site's ``api/exports/``) as
    ``<format>/<file>``, replacing what an earlier build left there."""
    documents = {f"{name}/{file}": text for name in FORMATS for file, text in export(index, name).items()}
    shutil.rmtree(folder, ignore_errors=True)
    for name, text in documents.items():
        write_atomic(folder / name, text)
