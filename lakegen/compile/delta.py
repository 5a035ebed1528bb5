"""A compile that starts from the previous one: the saved index, redone where a manifest edit reaches.

A full compile walks every entry in every stage (loading and validating 10,000 manifests, planning
their evaluations, running every policy over them), although after an edit of one manifest all but
a handful of rows come out as they were. Every row the stages write about an entry is a function of
that entry's manifest and of the entries it refers to, transitively (its bases, datasets, code and
the parents the weights showed), of the files they name, and of the lake-wide inputs: policies,
owners, results, git HEAD, lakegen's code. So when only manifests changed, and not in anything
attribution or the lake-wide parts read, the compile here

- takes the changed entries and every entry that refers to one of them, transitively (the dirty set),
- loads those and what they refer to (a small catalog), runs the loader's checks, the bench and the
  governance stages over it, and keeps their rows about the dirty entries,
- and puts them in place of the previous index's rows, in the order a full compile gives.

Anything else (a changed policy, result or artifact, an added or removed manifest, a moved HEAD,
another lakegen, a rule from a plugin, a remote artifact, a changed field attribution reads, a
lineage cycle) is compiled in full. ``tests/test_incremental.py`` compares each result with a cold
compile of the same tree.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic_core import to_json

from lakegen.catalog.loader import CATALOG_DIR, load_catalog
from lakegen.compile.inputs import Inputs, Recorded, code_digest, lake_time
from lakegen.compile.scope import Scope
from lakegen.errors import Finding, by_place
from lakegen.executor import Engine
from lakegen.model.index import CompiledFrom, Edge, IndexEntry, LakeIndex, Result, dicts
from lakegen.model.manifest import is_external
from lakegen.version import __version__

MANIFEST_FOLDERS = (f"{CATALOG_DIR}/models/", f"{CATALOG_DIR}/datasets/")
SEGMENTS = {"validate": 0, "attribution": 1, "bench": 2, "governance": 3}
"""The stages whose findings a build's index holds, in the order it lists them."""
REFERENCES = (
    ("base_models", "id"),
    ("datasets", "id"),
    ("code", "id"),
    ("derived_from", "id"),
    ("evaluations", "dataset"),
)
"""Where a manifest names other entries: a list field, and the key of each item that names one."""

_CHANGED: dict[str, tuple[str, frozenset[str]]] = {}


def changed_since(index: LakeIndex) -> tuple[str, frozenset[str]] | None:
    """When this process made ``index`` from the saved index of inputs digest ``since``: ``since``
    and the ids of the entries whose rows it may have changed. Every other entry has the same rows
    (entry, edges, results, findings, history, artifacts, in the same order) as in that index, and
    the index lists the same entries. None when ``index`` was not made so.

    The site rebuilds from it what those entries reach, and keeps what it digested of the others
    (at 100,000 models, digesting every entry was most of a one-change rebuild)."""
    found = _CHANGED.get(index.inputs.digest)
    return found if found is not None and index.inputs.digest else None


def as_before(root: Path, read: Inputs, previous: Inputs, trusted: Recorded) -> Inputs:
    """``read`` (a snapshot of ``catalog/``) with the files outside it that the previous compile read
    (``previous``): the inputs of this compile when its manifests name what they named. A copy, as
    a full compile adds what its own catalog names instead."""
    now = Inputs(read.head, list(read.folders), list(read.extra), dict(read.files), read.taken_ns)
    now.add(root, previous.folders, previous.extra, trusted)
    return now


def saved_index(root: Path, previous: Inputs, options: dict[str, bool]) -> LakeIndex | None:
    """The index the previous compile saved, when it is the one ``previous`` describes and was
    compiled with ``options``."""
    from lakegen.compile.store import INDEX_FILE, load_index

    if previous.index.get("code") != code_digest():  # compiled by other code of the same version
        return None
    try:
        index = load_index(root / INDEX_FILE)
    except (OSError, ValueError):
        return None
    same = index.inputs.digest == previous.recorded_digest and index.inputs.options == options
    return index if same else None


def may_start_from(previous: Inputs, options: dict[str, bool]) -> bool:
    """Whether a compile with ``options`` may start from the index saved with ``previous`` (a reuse
    or a delta), as far as is known before the working tree is read: the same options, lakegen
    version and code."""
    same = (previous.index.get("options"), previous.version, previous.index.get("code"))
    return same == (options, __version__, code_digest())


def delta_compile(
    root: Path,
    now: Inputs,
    previous: Inputs,
    *,
    options: dict[str, bool],
    engine: Engine = "local",
    workers: int | None = None,
    before: LakeIndex | None = None,
) -> LakeIndex | None:
    """The index of the lake at ``root`` whose inputs are ``now`` (:func:`as_before`), made from the
    index the previous compile saved (whose inputs were ``previous``; ``before``: that index, when
    already read by :func:`saved_index`); None when this lake's change needs a full compile."""
    if not may_start_from(previous, options) or (previous.head, previous.version) != (now.head, now.version):
        return None
    changed = _changed_manifests(now, previous)
    if not changed:
        return None
    before = before if before is not None else saved_index(root, previous, options)
    if before is None:
        return None
    return _redo(root, before, changed, now, options, engine, workers)


def _changed_manifests(now: Inputs, previous: Inputs) -> set[str]:
    """The model and dataset manifests whose content changed; empty when anything else changed, or
    a file came or went."""
    if now.files.keys() != previous.files.keys():
        return set()
    before = previous.files
    changed = {p for p, r in now.files.items() if not r or not before[p] or r[-1] != before[p][-1]}
    if not all(p.startswith(MANIFEST_FOLDERS) and p.endswith((".yaml", ".yml")) for p in changed):
        return set()
    return changed


def _redo(
    root: Path,
    before: LakeIndex,
    changed: set[str],
    now: Inputs,
    options: dict[str, bool],
    engine: Engine,
    workers: int | None,
) -> LakeIndex | None:
    """``before`` redone for the manifests at ``changed``; None when that needs a full compile."""
    from lakegen.catalog.loader import load_record
    from lakegen.governance.history import kept_for
    from lakegen.governance.policies import builtin_rules, registered
    from lakegen.lineage import READ

    if set(registered()) != builtin_rules():
        return None  # a plugin's rule may read the whole lake
    segments = _segments(before.findings)
    if segments is None or any(f.message.startswith("lineage cycle") for f in segments[0]):
        return None
    by_path = {e.path: e for e in before.entries}
    by_id = {e.id: e for e in before.entries}
    manifests: dict[str, dict[str, Any]] = {}  # the edited ones, and those read on the way
    edited: set[str] = set()
    for path in sorted(changed):
        old = by_path.get(path)
        if old is None or (root / path).is_symlink():
            return None
        record = load_record(root / path, path, [])
        if record is None or record.entry.id != old.id or record.entry.kind == "code":
            return None
        new = record.entry.model_dump(mode="json")
        if any(new.get(k) != old.manifest.get(k) for k in READ) or _metrics(new) != _metrics(old.manifest):
            return None  # attribution's inputs, or the lake's metrics
        if any(f.path == path for f in segments[1]):
            return None  # attribution's findings there name lines, which the edit may have moved
        manifests[old.id], edited = new, edited | {old.id}
    up = _Up(by_id, manifests, before.edges)
    dirty = up.referring(edited)
    if any(not is_external(r) and r not in by_id for d in dirty for r in up(d)):
        return None  # a reference to no entry: its message suggests ids from the whole lake
    loaded = _closure(dirty, up) & by_id.keys()
    if _remote({i: up.manifest(i) for i in loaded}, loaded):
        return None
    files = sorted(root / by_id[i].path for i in loaded)
    if not kept_for(root, sorted((e.path, e.id) for e in before.entries)):
        return None
    digests = Recorded(root, now)
    catalog = load_catalog(
        root,
        verify_artifacts=options.get("verify_artifacts", True),
        engine=engine,
        workers=workers,
        digests=digests,
        files=files,
    )
    if catalog.records.keys() != loaded:
        return None
    scope = Scope(catalog, engine=engine, workers=workers, digests=digests)
    return _merged(root, before, dirty, scope, now, options, segments)


def _merged(
    root: Path,
    before: LakeIndex,
    dirty: set[str],
    scope: Scope,
    now: Inputs,
    options: dict[str, bool],
    segments: list[list[Finding]],
) -> LakeIndex | None:
    """``before`` with the rows about ``dirty`` entries taken from a compile of ``scope``'s catalog."""
    from lakegen.bench.run import stage_line
    from lakegen.compile.base import base_index
    from lakegen.compile.stages import Bench, Governance

    catalog = scope.catalog
    part = base_index(catalog)
    part.edges = before.edges  # attribution's, unchanged; governance reads the parents it showed
    part = Governance()(scope, Bench()(scope, part))
    validate, attribution, bench, governance = segments
    paths = {catalog.records[i].path for i in dirty}
    mine = _segments(part.findings)
    if mine is None:
        return None

    def kept(rows: list[Finding]) -> list[Finding]:
        return [f for f in rows if f.entry not in dirty]

    def theirs(rows: list[Finding]) -> list[Finding]:
        return [f for f in rows if f.entry in dirty]

    loaded = by_place([f for f in validate if f.path not in paths] + [f for f in mine[0] if f.path in paths])
    results = kept(bench) + theirs(mine[2])
    ran = _by_entry([f for f in results if f.rule != "not-run"])
    pending = _by_entry([f for f in results if f.rule == "not-run"])
    drift = [f for f in governance if f.rule == "codeowners"]
    policies = [f for f in kept(governance) if f.rule != "codeowners"] + theirs(mine[3])
    policies.sort(key=lambda f: (f.path, f.line, f.rule, f.message))
    index = before.model_copy()
    index.findings = [*loaded, *attribution, *ran, *pending, *policies, *drift]
    fresh = {e.id: e for e in part.entries if e.id in dirty}
    index.entries = [_entry(fresh[e.id], e) if e.id in fresh else e for e in before.entries]
    rows: list[Result] = [r for r in before.results if r.model not in dirty]
    index.results = sorted(rows + [r for r in part.results if r.model in dirty], key=lambda r: r.model)
    checks = [a for a in before.artifacts if a.entry not in dirty]
    redone = [a for a in part.artifacts if a.entry in dirty]
    if [a.status for a in redone] != [a.status for a in before.artifacts if a.entry in dirty]:
        return None  # attribution reads every artifact's status
    checks += redone
    index.artifacts = sorted(checks, key=lambda a: (a.entry, a.version))
    # the validate stage's count of verified artifacts stands, as every status does
    index.stages = {**before.stages, "bench": stage_line(index.results, len(pending), run=False)}
    index.generated_at = lake_time(root)
    index.inputs = CompiledFrom(digest=now.digest, folders=now.folders, files=now.extra, options=options)
    # the rows replaced above are the dirty entries' only, but the loader's findings, replaced by
    # the file they are in, which may name another entry: the others' rows are before's, in order
    moved = {f.entry for f in [*validate, *mine[0]] if f.path in paths and f.entry is not None}
    _CHANGED.clear()  # one compile's worth, as the inputs' snapshot is kept
    _CHANGED[index.inputs.digest] = (before.inputs.digest, frozenset(dirty | moved))
    return index


def _entry(fresh: IndexEntry, before: IndexEntry) -> IndexEntry:
    # parameters come from attribution, which this compile does not run
    return fresh.model_copy(update={"parameters": before.parameters})


def _segments(findings: list[Finding]) -> list[list[Finding]] | None:
    """A build's findings by the stage that found them, in their order; None when they are not
    listed stage by stage (then the index was not made by a build of this code)."""
    out: list[list[Finding]] = [[], [], [], []]
    last = 0
    for f in findings:
        at = SEGMENTS.get(f.stage)
        if at is None or at < last:
            return None
        out[at].append(f)
        last = at
    return out


def _by_entry(findings: list[Finding]) -> list[Finding]:
    """In the order of the bench stage's plans (model by model), each model's in its own order."""
    return sorted(findings, key=lambda f: f.entry or "")


def _refs(manifest: dict[str, Any]) -> set[str]:
    """The ids an entry refers to (bases, datasets, code, evaluation datasets, sources)."""
    out: set[Any] = set()
    for key, name in REFERENCES:
        for row in manifest.get(key) or ():
            if isinstance(row, dict):
                out.add(row.get(name))
    architecture = manifest.get("architecture")
    if isinstance(architecture, dict):
        out.add(architecture.get("code"))
    return {r for r in out if isinstance(r, str)}


class _Up:
    """What each entry refers to (its manifest's references and the parents the weights showed it
    has: they count as the manifests' do), reading only the manifests asked about.

    Decoding every manifest to find the few that refer to an edited entry was most of a one-change
    compile at 10,000 models; a manifest that refers to an id holds it as a JSON string, so only
    those whose bytes hold it are read."""

    WIDE = 64
    """Past this many ids sought at once, every manifest is read instead (one pass, not one each)."""

    def __init__(self, by_id: dict[str, IndexEntry], manifests: dict[str, dict[str, Any]], edges: list[Edge]):
        self.by_id, self.manifests = by_id, manifests
        self.shown: dict[str, set[str]] = {}
        for edge in edges:
            if edge.status == "undeclared" and edge.child in by_id:
                self.shown.setdefault(edge.child, set()).add(edge.parent)
        self._up: dict[str, set[str]] = {}
        self._down: dict[str, set[str]] | None = None

    def manifest(self, entry_id: str) -> dict[str, Any]:
        found = self.manifests.get(entry_id)
        return found if found is not None else self.by_id[entry_id].manifest

    def __call__(self, entry_id: str) -> set[str]:
        found = self._up.get(entry_id)
        if found is None:
            known = entry_id in self.by_id
            found = (_refs(self.manifest(entry_id)) | self.shown.get(entry_id, set())) if known else set()
            self._up[entry_id] = found
        return found

    def get(self, entry_id: str, default: set[str]) -> set[str]:
        """As ``dict.get`` would answer, for :func:`_closure`."""
        return self(entry_id)

    def referring(self, start: set[str]) -> set[str]:
        """``start`` and every entry that refers to one of them, transitively."""
        seen, todo = set(start), set(start)
        while todo:
            todo = self._referrers(todo) - seen
            seen |= todo
        return seen

    def _referrers(self, ids: set[str]) -> set[str]:
        if self._down is None and len(ids) > self.WIDE:
            self._down = _down({i: self(i) for i in self.by_id})
        if self._down is not None:
            return {c for i in ids for c in self._down.get(i, ())}
        needles = [to_json(i) for i in ids]  # as the manifest's bytes hold it (see IndexEntry.packed)
        # an edited manifest's bytes in the index are its old ones: its new one is read as it is
        maybe = {e.id for e in self.by_id.values() if any(n in e.packed for n in needles)}
        maybe |= self.manifests.keys() | {c for c, shown in self.shown.items() if shown & ids}
        return {c for c in maybe if self(c) & ids}


def _up(refs: dict[str, set[str]], edges: list[Edge]) -> dict[str, set[str]]:
    """What each entry refers to: its manifest's references (``refs``) and the parents the weights
    showed it has (they count as the manifests' do)."""
    up = {i: set(r) for i, r in refs.items()}
    for edge in edges:
        if edge.status == "undeclared" and edge.child in up:
            up[edge.child].add(edge.parent)
    return up


def _down(up: dict[str, set[str]]) -> dict[str, set[str]]:
    """The entries that refer to each entry: ``up`` the other way round."""
    down: dict[str, set[str]] = {}
    for child, parents in up.items():
        for parent in parents:
            down.setdefault(parent, set()).add(child)
    return down


def _remote(manifests: dict[str, dict[str, Any]], ids: set[str]) -> bool:
    """Whether one of ``ids`` has a remote artifact: what is fetched of it lives outside the lake."""
    versions = (v for i in ids for v in dicts(manifests[i].get("versions")))
    return any(":" in str(v.get("artifact", {}).get("uri", "")) for v in versions)


def _metrics(manifest: dict[str, Any]) -> set[Any]:
    return {e.get("metric") for e in dicts(manifest.get("evaluations"))}


def _closure(start: set[str], edges: _Up | dict[str, set[str]]) -> set[str]:
    seen, todo = set(start), list(start)
    while todo:
        for nxt in edges.get(todo.pop(), set()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen
