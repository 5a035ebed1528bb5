"""Lookups over a LakeIndex that the pages need: grouping and graph walks, never new evidence.

Everything shown on the site comes from the index; this module only groups it
by entry (edges in and out, results, findings, history) and maps ids to page
paths that are always safe file names.
"""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from collections.abc import Collection
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import networkx as nx
from pydantic_core import to_json

from lakegen import fastjson
from lakegen.errors import Finding
from lakegen.model.index import Edge, IndexEntry, LakeIndex, Result, dicts, evaluations
from lakegen.model.index import Evaluation as EvalRow
from lakegen.search import EntryFacets, facets_of

_SAFE_STEM = re.compile(r"^[a-z0-9](?:[a-z0-9._-]{0,62}[a-z0-9])?$")
FOLDERS = {"model": "models", "dataset": "datasets", "code": "code"}
SEVERITIES = ("error", "warning", "info")
NEIGHBOURS = 40  # models of its lineage a model's page draws


def stem(key: str) -> str:
    """A file-name-safe stem for ``key``: the key itself when it is a plain slug, else a hash."""
    if _SAFE_STEM.match(key):
        return key
    return "x-" + hashlib.sha1(key.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def page_of(entry_id: str, kind: str) -> str:
    """The page (docs-relative ``.md`` path) of the entry ``entry_id`` of ``kind``."""
    return f"{FOLDERS.get(kind, 'other')}/{stem(entry_id)}.md"


@dataclass
class Board:
    """A leaderboard: every model's number on one dataset, split and metric."""

    dataset: str
    split: str
    metric: str
    higher_is_better: bool | None = None  # from the metric's registry entry; None: lakegen cannot compute it
    rows: list[EvalRow] = field(default_factory=list)

    @property
    def key(self) -> str:
        return f"{self.dataset}/{self.split}/{self.metric}"

    @property
    def path(self) -> str:
        return f"leaderboards/{stem(f'{self.dataset}--{self.split}--{self.metric}')}.md"

    def ranked(self) -> list[EvalRow]:
        """The rows lakegen reproduced, best first: a claim never re-run does not rank, whatever it
        says (it could say anything)."""
        rows = [r for r in self.rows if r.reproduced is not None]
        return sorted(rows, key=lambda r: (r.reproduced, r.model), reverse=self.higher_is_better is not False)

    def unranked(self) -> list[EvalRow]:
        """Claims lakegen did not reproduce (not run, unreproducible, failed, remote weights)."""
        return sorted(
            (r for r in self.rows if r.reproduced is None), key=lambda r: (r.model, r.version or "")
        )


class LakeView:
    """The index, grouped for rendering.

    Each entry's manifest is read once here, in one pass that takes from it all that the site's
    passes over every entry need: decoding a manifest costs more
    than all the rest of what a one-change rebuild does with an unchanged entry, and the passes
    did it seven times an entry.
    """

    def __init__(self, index: LakeIndex):
        self.index = index
        self.entries: dict[str, IndexEntry] = {e.id: e for e in index.entries}
        self.edges_in: dict[str, list[Edge]] = defaultdict(list)
        self.edges_out: dict[str, list[Edge]] = defaultdict(list)
        self.graph = nx.DiGraph()
        for edge in index.edges:
            self.edges_in[edge.child].append(edge)
            self.edges_out[edge.parent].append(edge)
            self.graph.add_edge(edge.parent, edge.child)
        self.findings: dict[str | None, list[Finding]] = defaultdict(list)
        for finding in index.findings:
            self.findings[finding.entry].append(finding)
        self.history: dict[str, list[Any]] = defaultdict(list)
        for change in index.history:
            self.history[change.entry].append(change)
        for changes in self.history.values():
            changes.sort(key=lambda c: c.date, reverse=True)
        self.artifacts = {(a.entry, a.version): a.status for a in index.artifacts}
        self.signatures = {
            (a.entry, a.version): (a.signature, a.signer) for a in index.artifacts if a.signature
        }
        self.facets: dict[str, EntryFacets] = {}
        self.names: dict[str, Any] = {}
        """Each entry's manifest ``name``, as it is (a listing shows it)."""
        self.cites: dict[str, list[str]] = {}
        """The ids each model's manifest names as its datasets, code and architecture's code."""
        self.sources: dict[str, list[str]] = {}
        """The ids each entry's manifest says it is derived from."""
        self.evaluations: dict[str, list[EvalRow]] = {}
        self.by_dataset: dict[str, list[tuple[str, str]]] = defaultdict(list)
        self.by_code: dict[str, list[tuple[str, str]]] = defaultdict(list)
        results: dict[str, list[Result]] = defaultdict(list)
        for r in index.results:
            results[r.model].append(r)
        self._digests: dict[str, str] = {}
        self._changed: frozenset[str] | None = None
        self.derived: dict[str, list[str]] = defaultdict(list)
        for entry in index.entries:
            m = entry.manifest
            rows = evaluations(entry, results.get(entry.id, []))
            self.facets[entry.id] = facets_of(entry, m, self.edges_in.get(entry.id, []), rows)
            self.names[entry.id] = m.get("name")
            self.sources[entry.id] = sources = [str(d.get("id")) for d in dicts(m.get("derived_from"))]
            for source in sources:
                self.derived[source].append(entry.id)
            if entry.kind == "model":
                self.evaluations[entry.id] = rows
                self._uses(entry, m)
        for model, ran in results.items():  # results of models the lake no longer lists
            if model not in self.entries:
                self.evaluations[model] = [EvalRow.of(r) for r in ran]

    @cached_property
    def documents(self) -> dict[str, bytes]:
        """Each entry's JSON document (``api/entries/<id>.json``): its manifest and every row about
        it; after :meth:`keep`, only the changed entries'."""
        return entry_documents(self.index, self._changed)

    def document(self, entry_id: str) -> bytes:
        found = self.documents.get(entry_id)
        return found if found is not None else entry_documents(self.index, {entry_id})[entry_id]

    def keep(self, digests: dict[str, str], changed: frozenset[str]) -> None:
        """Take ``digests`` as those of every entry but ``changed`` (the previous build's, of an
        index whose other entries' rows are the same): only the changed entries' documents are made."""
        self._digests.update(digests)
        self._changed = changed

    def digest(self, entry_id: str) -> str:
        """A digest of everything the index says about ``entry_id`` ("absent" for ids outside the lake)."""
        found = self._digests.get(entry_id)
        if found is None:
            doc = self.documents.get(entry_id)
            found = hashlib.sha256(doc).hexdigest() if doc is not None else "absent"
            self._digests[entry_id] = found
        return found

    def kind(self, entry_id: str) -> str | None:
        entry = self.entries.get(entry_id)
        return entry.kind if entry else None

    def _uses(self, entry: IndexEntry, m: dict[str, Any]) -> None:
        for use in dicts(m.get("datasets")):
            self.by_dataset[str(use.get("id"))].append((entry.id, str(use.get("role", ""))))
        seen = set()
        for row in self.evaluations[entry.id]:
            if row.dataset not in seen:
                seen.add(row.dataset)
                self.by_dataset[row.dataset].append((entry.id, "eval"))
        arch = m.get("architecture")
        arch = arch if isinstance(arch, dict) else {}
        if arch.get("code"):
            self.by_code[str(arch["code"])].append((entry.id, "architecture"))
        for use in dicts(m.get("code")):
            self.by_code[str(use.get("id"))].append((entry.id, str(use.get("role", ""))))
        cited = [str(u.get("id")) for key in ("datasets", "code") for u in dicts(m.get(key))]
        self.cites[entry.id] = [*cited, str(arch.get("code"))]

    def path(self, entry_id: str) -> str | None:
        """The page (docs-relative ``.md`` path) of an entry, or None for ids outside the lake."""
        entry = self.entries.get(entry_id)
        return page_of(entry.id, entry.kind) if entry is not None else None

    @cached_property
    def _upward(self) -> nx.DiGraph:
        return self.graph.reverse(copy=False)  # a view: made once, not once per model page

    def lineage_nodes(self, entry_id: str, limit: int = NEIGHBOURS) -> list[str]:
        """The entry, then its ancestors and descendants nearest first, at most ``limit``."""
        if entry_id not in self.graph:
            return [entry_id]
        up = nx.single_source_shortest_path_length(self._upward, entry_id)
        down = nx.single_source_shortest_path_length(self.graph, entry_id)
        ranked = sorted({**up, **down}.items(), key=lambda kv: (kv[1], kv[0]))
        return [n for n, _ in ranked[:limit]]

    def components(self) -> list[list[str]]:
        """Families of the lineage graph (weakly connected, two or more members), largest first."""
        return self._components

    @cached_property
    def _components(self) -> list[list[str]]:
        comps = [sorted(c) for c in nx.weakly_connected_components(self.graph) if len(c) > 1]
        return sorted(comps, key=lambda c: (-len(c), c[0]))

    def family_digest(self, comp: list[str]) -> str:
        """A digest of a family: its members, and everything the index says about each."""
        return hashlib.sha256(fastjson.compact([comp, [self.digest(n) for n in comp]])).hexdigest()

    def boards(self) -> list[Board]:
        boards: dict[tuple[str, str, str], Board] = {}
        for rows in self.evaluations.values():
            for row in rows:
                key = (row.dataset, row.split, row.metric)
                boards.setdefault(key, Board(*key, self.index.higher_is_better(row.metric))).rows.append(row)
        return [boards[k] for k in sorted(boards)]


def entry_documents(index: LakeIndex, only: Collection[str] | None = None) -> dict[str, bytes]:
    """One compact JSON document per entry (of the ids ``only``, when given): the entry and every
    row of the index that concerns it.

    Each row is serialised by pydantic on its own and a document is those bytes joined, with no
    Python dict made on the way: a rebuild digests every document to find the few that changed, and
    dumping the whole index into dicts first cost ten times as much (4 s at 10,000 models).
    """
    names = ("parents", "children", "results", "findings", "history", "artifacts")
    rows: dict[str, dict[str, list[bytes]]] = defaultdict(lambda: {n: [] for n in names})
    wanted = (lambda _: True) if only is None else set(only).__contains__
    for edge in index.edges:
        if wanted(edge.child) or wanted(edge.parent):
            data = to_json(edge, by_alias=False)
            rows[edge.child]["parents"].append(data)
            rows[edge.parent]["children"].append(data)
    for result in index.results:
        if wanted(result.model):
            rows[result.model]["results"].append(to_json(result, by_alias=False))
    for name, listed in (
        ("findings", index.findings),
        ("history", index.history),
        ("artifacts", index.artifacts),
    ):
        for row in listed:
            if row.entry is not None and wanted(row.entry):
                rows[row.entry][name].append(to_json(row, by_alias=False))
    docs = {}
    for entry in index.entries:
        if not wanted(entry.id):
            continue
        mine = rows.get(entry.id)
        parts = [to_json(entry)[:-1]]  # the entry's own fields, then its rows
        for name in names:
            parts.append(b',"%s":[%s]' % (name.encode(), b",".join(mine[name]) if mine else b""))
        docs[entry.id] = b"".join(parts) + b"}"
    return docs
