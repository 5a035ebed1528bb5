"""What the exports say about an entry, read from the compiled lake index only.

Every export goes through here, so none re-derives lineage or results: a parent is *verified*
only when the index has a declared edge whose status is ``verified`` (the weights agree), and a
result is *reproduced* only when the bench stage re-ran it within tolerance. Everything else a
manifest says is a claim, and the exports say so.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from lakegen.model.index import Edge, Finding, IndexEntry, LakeIndex, Result

_HUB_LINK = re.compile(
    r"^https://huggingface\.co/(datasets/)?([A-Za-z0-9][\w.-]*/[\w.-]+|[A-Za-z0-9][\w.-]*)/?$"
)


class ExportError(LookupError):
    """An export was asked for an entry the index does not hold, or of the wrong kind."""


@dataclass(frozen=True)
class Claim:
    """A manifest's evaluation, with what the bench stage made of it (``claimed`` when not re-run)."""

    dataset: str
    split: str
    metric: str
    value: float
    status: str
    reproduced: float | None = None
    subset: str | None = None
    source: dict[str, str] | None = None
    version: str | None = None


class Evidence:
    """Lookups over one index; nothing here computes evidence of its own."""

    def __init__(self, index: LakeIndex):
        self.index = index
        self.entries = {e.id: e for e in index.entries}
        self.read: set[str] = set()
        """Ids looked up through :meth:`entry`: what a document depends on beyond its own entry."""
        self.memo: dict[str, Any] = {}
        """What a format works out once for all the documents made from this index."""
        # grouped once, so exporting a whole lake stays linear in its size
        self._edges: dict[str, list[Edge]] = defaultdict(list)
        for edge in index.edges:
            if edge.declared:
                self._edges[edge.child].append(edge)
        self._results: dict[str, dict[tuple[str, str, str, str], Result]] = defaultdict(dict)
        for r in index.results:
            self._results[r.model][(r.version, r.dataset, r.split, r.metric)] = r
        self._artifacts = {(a.entry, a.version): a.status for a in index.artifacts}
        self._findings: dict[str | None, list[Finding]] = defaultdict(list)
        for f in index.findings:
            self._findings[f.entry].append(f)

    def select(self, kind: str, ids: list[str] | None) -> list[IndexEntry]:
        """The entries of ``kind`` named by ``ids`` (all of that kind when none are named)."""
        if not ids:
            return [e for e in self.index.entries if e.kind == kind]
        out = []
        for entry_id in ids:
            entry = self.entries.get(entry_id)
            if entry is None:
                raise ExportError(f"no entry '{entry_id}' in the lake index")
            if entry.kind != kind:
                raise ExportError(f"'{entry_id}' is a {entry.kind}; this export describes {kind}s")
            out.append(entry)
        return out

    def entry(self, ref: str) -> IndexEntry | None:
        """The entry ``ref`` names, None outside the lake; remembered in :attr:`read`."""
        self.read.add(ref)
        return self.entries.get(ref)

    def parents(self, model_id: str) -> list[Edge]:
        """Declared lineage edges into ``model_id``, whatever their status."""
        return self._edges.get(model_id, [])

    def verified_parents(self, model_id: str) -> list[Edge]:
        return [e for e in self.parents(model_id) if e.status == "verified"]

    def unverified_parents(self, model_id: str) -> list[Edge]:
        """Declared parents the weights did not confirm: unchecked (not compared) or contradicted."""
        return [e for e in self.parents(model_id) if e.status != "verified"]

    def ancestors(self, model_id: str) -> list[Edge]:
        """Verified edges from ``model_id`` up to its roots, nearest first (each parent once)."""
        out, seen, frontier = [], {model_id}, [model_id]
        while frontier:
            nxt = []
            for child in frontier:
                for edge in self.verified_parents(child):
                    if edge.parent not in seen:
                        seen.add(edge.parent)
                        out.append(edge)
                        nxt.append(edge.parent)
            frontier = nxt
        return out

    def claims(self, entry: IndexEntry, every_version: bool = False) -> list[Claim]:
        """The evaluations of a model's latest version (of every version with ``every_version``),
        each with its result when the bench stage has one."""
        results = self._results.get(entry.id, {})
        out = []
        for ev in entry.manifest.get("evaluations") or []:
            version = ev.get("version") or entry.latest_version or ""
            if not every_version and version != (entry.latest_version or ""):
                continue
            result = results.get((version, ev["dataset"], ev["split"], ev["metric"]))
            out.append(
                Claim(
                    dataset=ev["dataset"],
                    split=ev["split"],
                    metric=ev["metric"],
                    value=float(ev["value"]),
                    status=result.status if result else "claimed",
                    reproduced=result.reproduced if result else None,
                    subset=ev.get("subset"),
                    source=ev.get("source"),
                    version=version or None,
                )
            )
        return out

    def artifact_status(self, entry_id: str, version: str) -> str:
        return self._artifacts.get((entry_id, version), "unchecked")

    def findings(self, entry_id: str) -> list[Finding]:
        return self._findings.get(entry_id, [])

    def hub_id(self, ref: str) -> str | None:
        """The Hugging Face repo of ``ref``: an ``hf:`` reference, or a lake entry that links to the Hub."""
        if ref.startswith("hf:"):
            return ref[3:]
        entry = self.entry(ref)
        for link in (entry.manifest.get("links") or []) if entry else []:
            m = _HUB_LINK.match(str(link.get("url", "")))
            if m and m.group(2) not in ("datasets", "models", "spaces"):
                return m.group(2)
        return None

    def name(self, ref: str) -> str:
        entry = self.entry(ref)
        return str(entry.manifest.get("name") or ref) if entry else self.hub_id(ref) or ref


def latest(entry: IndexEntry) -> dict[str, Any] | None:
    """The manifest's entry in ``versions`` for the latest version, if any."""
    versions = entry.manifest.get("versions") or []
    return next((v for v in versions if v.get("version") == entry.latest_version), None)


def status_words(status: str) -> str:
    """What a lineage or result status means, for people reading an export."""
    return {
        "verified": "verified by the weights",
        "contradicted": "contradicted by the weights",
        "unchecked": "declared, not checked against weights",
        "claimed": "claimed, not reproduced",
        "unreproducible": "claimed; lakegen cannot re-run it",
        "failed": "claimed; the re-run failed",
    }.get(status, status)


def dumped(value: Any) -> bytes:
    """``value`` as a whole-lake document's compact text has it (``json.dumps``, unescaped UTF-8):
    the bytes its parts are cut from and put together as (:mod:`~lakegen.exports.cyclonedx`,
    :mod:`~lakegen.exports.spdx`)."""
    return json.dumps(value, ensure_ascii=False).encode()
