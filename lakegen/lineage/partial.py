"""A PR check's attribution from its base's results: only what the changed models reach is attributed
again.

The attribution stage's result is a function of every model, so a pull request adding one model
misses it, and attributing the whole lake again reads every fingerprint, every family's memo and
every audit. A full run of the stage therefore records, beside its result (``<key>.json``), what a
check needs to answer for a few models (``<key>.parts.json``): each model's input digest, each model
version's fingerprint identity, the lineage's connected components, the models the search for a
hidden derivation moved, the base each adapter's config names; and a signature index
(``signatures.npz``: each fingerprint's signature and invariant signature, rows keyed by the
fingerprint's identity) that ranks a new model against the lake without opening a fingerprint file.

A check then finds its base's record (every model it does not change has the same input digest;
:func:`base_of`) and attributes again, family by family as the whole lake is, only the components
the changed models reach (:func:`attribute_changed`): those their old versions were in, those of
their declared bases and of the models that declare them, those of each new version's nearest
signatures that the weights show related (the test a whole run makes), and, for a new or changed
root, the components of its nearest invariant signatures (the candidates of the search for a
hidden derivation), each closed over the other versions of the models in it. Every other model's
edges, findings and parameter count are the base's (:func:`merge`). Where the base's own search
for a hidden derivation moved a model in that reach, or an adapter's base would be read otherwise,
the check attributes the whole lake as before.

What it cannot see: a new model pushing a related pair out of each other's nearest signatures,
or entering an unchanged root's candidates (that root could find a hidden parent in it); and it
ranks signatures exactly where the whole run hashes past a few thousand models of one
architecture (:mod:`lakegen.attribution.neighbours`). Each changes at most the other models'
verdicts, never those of the models the check reports on. The record lives in the lake's own
cache, which a pull request that commits ``.lakegen/`` does not get (:mod:`lakegen.check.report`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, cast

from lakegen.atomicfile import write_atomic, writing
from lakegen.attribution import recover as lineage_of
from lakegen.attribution.families import NEIGHBOURS, components, related
from lakegen.attribution.memo import code_digest, identity
from lakegen.attribution.symmetry import CANDIDATES, invariant_signature, kept_signature
from lakegen.attribution.views import View
from lakegen.catalog.loader import Catalog
from lakegen.errors import Finding
from lakegen.executor import Engine
from lakegen.fingerprint import Cache, Fingerprint
from lakegen.lineage.declared import CatalogLineage, split
from lakegen.lineage.fingerprinting import fingerprint_all
from lakegen.lineage.known import PARTS, Known
from lakegen.lineage.recover import _adapter_resolver, artifact_paths, attribute_catalog
from lakegen.model.index import Edge, LakeIndex
from lakegen.model.manifest import Model

if TYPE_CHECKING:
    import numpy as np

SUFFIX = ".partial.json"  # a check's result, from its base's: read by checks only
SIGNATURES = "signatures.npz"


@dataclass
class Parts:
    """Digests of the stage's inputs: lakegen's code and the lake's root, the other entries' kinds,
    each model's own inputs."""

    common: str
    others: str
    models: dict[str, str]

    def key(self) -> str:
        made = [self.common, self.others, sorted(self.models.items())]
        return hashlib.sha256(json.dumps(made).encode()).hexdigest()


@dataclass
class Base:
    """The record of a full run on a tree that differs from the checked one in ``changed`` (models
    here whose inputs differ) and ``removed`` (models no longer here) only."""

    folder: Path
    key: str
    record: dict[str, Any]
    added: dict[str, Any]
    changed: set[str]
    removed: set[str]


@dataclass
class Found:
    """The changed part attributed again: its result, and the models it answers for."""

    result: CatalogLineage
    models: set[str]


def _identity(fp: Fingerprint) -> str:
    return hashlib.sha256(json.dumps(identity(fp), default=str).encode()).hexdigest()


def record(
    folder: Path, key_: str, parts: Parts, result: CatalogLineage, sources: dict[str, str] | None = None
) -> None:
    """What a check needs to start from this full run's ``result`` (see the module's text);
    ``sources``: each model's manifest by its sha256 (:func:`lakegen.lineage.known.digests_of`)."""
    import numpy as np

    fps = result.fingerprints
    lineage = result.lineage
    links = [(e.parent, e.child) for e in lineage.edges]
    data = {
        "key": key_,
        "common": parts.common,
        "models": parts.models,
        "sources": sources or {},
        "nodes": {n: [_identity(fp), fp.kind, fp.architecture] for n, fp in fps.items()},
        "components": components(lineage.models, links),
        "roots": lineage.roots,
        "rediscovered": lineage.rediscovered,
        "adapters": {n: [fps[n].adapter, base] for n, base in result.adapters.items()},
    }
    write_atomic(folder / f"{key_}{PARTS}", json.dumps(data, separators=(",", ":"), default=str))
    models = [n for n, fp in fps.items() if fp.kind == "model"]
    tables: dict[str, dict[str, np.ndarray]] = {"sig": {}}
    for n in models:
        fp = fps[n]
        tables["sig"][_identity(fp)] = np.asarray(fp.signature, np.float32)
        tables.setdefault(f"inv:{fp.architecture}", {})[_identity(fp)] = kept_signature(fp, result.memo)
    _write_signatures(folder / SIGNATURES, tables)


def _write_signatures(path: Path, tables: dict[str, dict[str, np.ndarray]]) -> None:
    """The signature index: per table, its rows (unit float32) and their fingerprints' identities. The
    rows of the index written before stay while they are no more than this run's (a base's and a
    pull request's lakes share most rows; a check may start from either)."""
    import numpy as np

    with contextlib.suppress(OSError, ValueError, KeyError, _Fallback):
        for name, (ids, matrix) in _read_signatures(path).items():
            now = tables.setdefault(name, {})
            extra = {i: row for i, row in zip(ids, matrix, strict=True) if i not in now}
            if len(extra) <= len(now):
                now.update(extra)
    names = sorted(tables)
    arrays: dict[str, np.ndarray] = {"code": np.array(code_digest()), "tables": np.array(names)}
    for t, name in enumerate(names):
        rows = tables.pop(name)  # each table's rows go once they are in its matrix
        ids = sorted(rows)
        arrays[f"t{t}.ids"] = np.array(ids, dtype="S64")
        width = max((len(v) for v in rows.values()), default=0)
        matrix = np.zeros((len(ids), width), np.float32)
        for r, i in enumerate(ids):
            matrix[r] = rows.pop(i)
        arrays[f"t{t}.rows"] = _unit(matrix, in_place=True)  # unit rows: every use is a cosine
    # written as it is zipped: 100,000 models' index is 320 MB, which a buffer held twice over
    with writing(path) as out:
        np.savez(out, **arrays)  # type: ignore[arg-type]


def _read_signatures(path: Path) -> dict[str, tuple[list[str], np.ndarray]]:
    """The signature index's tables: each its rows' identities and the rows."""
    import numpy as np

    data = np.load(path, allow_pickle=False)
    if str(data["code"]) != code_digest():
        raise _Fallback  # signatures of other code
    return {
        str(name): ([i.decode() for i in data[f"t{t}.ids"]], data[f"t{t}.rows"])
        for t, name in enumerate(data["tables"])
    }


def base_of(folder: Path, parts: Parts, changed: set[str]) -> Base | None:
    """The recorded full run closest to this tree among those differing in ``changed`` models only."""
    best: Base | None = None
    for path in folder.glob(f"*{PARTS}"):
        try:
            data = json.loads(path.read_bytes())
            models = data["models"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if data.get("common") != parts.common or not isinstance(models, dict):
            continue
        differ = {m for m, d in parts.models.items() if models.get(m) != d}
        if not differ <= changed:
            continue
        removed = set(models) - set(parts.models)
        if best is None or len(differ) + len(removed) < len(best.changed) + len(best.removed):
            best = Base(folder, str(data.get("key")), data, {}, differ, removed)
    if best is None:
        return None
    try:
        full = json.loads((folder / f"{best.key}.json").read_bytes())
    except (OSError, ValueError):
        return None
    if not isinstance(full, dict) or full.get("key") != best.key or not isinstance(full.get("added"), dict):
        return None
    best.added = full["added"]
    return best


class _Fallback(Exception):
    """The changed part cannot be told apart from the rest: attribute the whole lake."""


def attribute_changed(
    catalog: Catalog,
    index: LakeIndex,
    cache: Cache,
    base: Base,
    engine: Engine,
    workers: int | None,
    known: Known | None = None,
) -> Found | None:
    """Attribute again what the changed models reach (see the module's text); None where the whole
    lake must be attributed instead. With ``known``, the catalog holds the changed models and those
    that refer to them, and grows by the models the part attributed again holds."""
    try:
        return _attribute_changed(catalog, index, cache, base, engine, workers, known)
    except (_Fallback, KeyError, TypeError, ValueError, IndexError, OSError):
        return None  # also a record or index damaged, or missing a row: nothing is trusted of it


def _attribute_changed(
    catalog: Catalog,
    index: LakeIndex,
    cache: Cache,
    base: Base,
    engine: Engine,
    workers: int | None,
    known: Known | None,
) -> Found:
    import numpy as np

    grow = known.grow if known is not None else (lambda _: None)

    rec = base.record
    gone = base.changed | base.removed
    nodes: dict[str, list[Any]] = {n: v for n, v in rec["nodes"].items() if split(n)[0] not in gone}
    component: dict[str, int] = {}
    members: list[list[str]] = rec["components"]
    for i, group in enumerate(members):
        for n in group:
            component[n] = i
    versions_of: dict[str, list[str]] = {}
    for n in rec["nodes"]:
        versions_of.setdefault(split(n)[0], []).append(n)
    moved = set(rec["rediscovered"])
    seeds: set[int] = {component[n] for m in gone for n in versions_of.get(m, []) if n in component}

    present = sorted(m for m in base.changed if m in catalog.records)
    paths, _ = artifact_paths(catalog, present)
    new, _ = fingerprint_all(paths, cache, None, engine, workers)
    if len(nodes) + len(new) < lineage_of.PARTITION_FROM:
        raise _Fallback  # a lake this small is attributed whole, not family by family
    for m in present:
        entry = catalog.records[m].entry
        assert isinstance(entry, Model)
        seeds |= {
            component[n] for b in entry.base_models for n in versions_of.get(b.id, []) if n in component
        }
    # the models declaring a changed one: a part of the lake loaded for a check holds them all
    for record_ in catalog.records.values():
        entry = record_.entry
        if isinstance(entry, Model) and any(b.id in gone for b in entry.base_models):
            seeds |= {component[n] for n in versions_of.get(entry.id, []) if n in component}
    if known is not None:
        # an adapter's base is found by its lake id, else among every model's links and names
        metas = [meta for n, (meta, _) in rec["adapters"].items() if split(n)[0] not in gone]
        metas += [fp.adapter for fp in new.values() if fp.kind != "model"]
        bases = {str((meta or {}).get("base") or "") for meta in metas} - {""}
        if not bases <= set(known.sources) | set(catalog.records):
            raise _Fallback
        grow(bases)
    seeds |= _adapters(catalog, rec, nodes, new, component, gone)

    tables = _read_signatures(base.folder / SIGNATURES)
    ids, matrix = tables["sig"]
    row_of = {d: i for i, d in enumerate(ids)}
    lake = sorted(n for n, (_, kind, _) in nodes.items() if kind == "model")
    rows = np.array([row_of[nodes[n][0]] for n in lake], dtype=np.int64)
    sig = matrix[rows] if len(rows) else np.zeros((0, 1), np.float32)
    near: dict[str, list[str]] = {}
    for x, fp in new.items():
        if fp.kind == "model" and len(lake):
            scores = sig @ _unit(np.asarray(fp.signature, np.float32)[None, :])[0]
            near[x] = [lake[i] for i in _top(scores, NEIGHBOURS)]
    wanted = sorted({split(n)[0] for ns in near.values() for n in ns})
    grow(wanted)
    theirs = _fingerprints(catalog, cache, wanted, engine, workers)
    for x, ns in near.items():
        for n in ns:
            if n in theirs and _related(new[x], theirs[n]):
                seeds.add(component[n])

    def closed(groups: set[int]) -> set[str]:
        """The models of ``groups``, with every component any of their versions is in."""
        out: set[str] = set()
        todo = set(groups)
        done: set[int] = set()
        while todo:
            g = todo.pop()
            done.add(g)
            for n in members[g]:
                if n in moved:
                    raise _Fallback  # the base's search for a hidden derivation reached in here
                m = split(n)[0]
                if m not in out and m not in gone:
                    out.add(m)
                    todo |= {component[v] for v in versions_of.get(m, []) if v in component} - done
        return out

    models = closed(seeds) | set(present)
    grow(models)
    first = attribute_catalog(
        catalog, cache, engine=engine, workers=workers, memo=False, models=sorted(models), search=[]
    )
    # roots the whole run would search again: new ones (a new version, or one whose parent left)
    roots = set(rec["roots"])
    search = sorted(
        r
        for r in first.lineage.roots
        if first.fingerprints[r].kind == "model" and (r in new or r not in roots)
    )
    if not search:
        return _checked(index, base, Found(first, models | gone))
    links = [(e.parent, e.child) for e in first.lineage.edges]
    family = {n: set(g) for g in components(first.lineage.models, links) for n in g}
    named: dict[str, list[str]] = {}
    for n, (digest, _, _) in nodes.items():
        named.setdefault(digest, []).append(n)
    extra: set[int] = set()
    for r in search:
        fp = first.fingerprints[r]
        q = _unit(invariant_signature(fp)[None, :])[0]
        inv_ids, inv = tables.get(f"inv:{fp.architecture}", ([], np.zeros((0, len(q)), np.float32)))
        scores = inv @ q if len(inv_ids) else np.zeros(0)
        scored = [
            (float(scores[j]), n)
            for j, digest in enumerate(inv_ids)
            for n in named.get(digest, [])
            if n not in family[r]
        ]
        for n, other in first.fingerprints.items():
            if (
                n in new
                and n not in family[r]
                and other.kind == "model"
                and other.architecture == fp.architecture
            ):
                scored.append((float(_unit(invariant_signature(other)[None, :])[0] @ q), n))
        for _, n in sorted(scored, key=lambda s: (-s[0], s[1]))[:CANDIDATES]:
            if n in moved:
                raise _Fallback  # the base's search moved it: its place in the pool is the base's
            if n in component:
                extra.add(component[n])
    models |= closed(extra)
    grow(models)
    result = attribute_catalog(
        catalog, cache, engine=engine, workers=workers, memo=False, models=sorted(models), search=search
    )
    return _checked(index, base, Found(result, models | gone))


def _adapters(
    catalog: Catalog,
    rec: dict[str, Any],
    nodes: dict[str, list[Any]],
    new: dict[str, Fingerprint],
    component: dict[str, int],
    gone: set[str],
) -> set[int]:
    """Components an adapter joins through the changed models; a fallback when any adapter's base
    would be read otherwise now, or is named by a path (which needs every model's weights)."""
    known = set(nodes) | set(new)
    resolve = _adapter_resolver(catalog, known, {})
    out: set[int] = set()
    for n, (meta, before) in rec["adapters"].items():
        if split(n)[0] in gone:
            continue
        base = str((meta or {}).get("base") or "")
        if base.startswith(("/", ".", "~")) or "\\" in base:
            raise _Fallback
        if resolve(n, cast(Fingerprint, SimpleNamespace(adapter=meta))) != before:
            raise _Fallback
    for x, fp in new.items():
        if fp.kind != "model":
            base = str((fp.adapter or {}).get("base") or "")
            if base.startswith(("/", ".", "~")) or "\\" in base:
                raise _Fallback
            found = resolve(x, fp)
            if found in component:
                out.add(component[found])
    return out


def _fingerprints(
    catalog: Catalog, cache: Cache, models: Iterable[str], engine: Engine, workers: int | None
) -> dict[str, Fingerprint]:
    paths, _ = artifact_paths(catalog, list(models))
    return fingerprint_all(paths, cache, None, engine, workers)[0]


def _related(a: Fingerprint, b: Fingerprint) -> bool:
    """The relatedness test of the whole run, in its order (by sha256)."""
    first, second = (a, b) if a.sha256 <= b.sha256 else (b, a)
    return related(View(first), View(second), None)


def _unit(x: np.ndarray, *, in_place: bool = False) -> np.ndarray:
    """``x``'s rows (float32) scaled to unit norm, non-finite values as zero; ``in_place``: in
    ``x`` itself, a float32 matrix the caller gives up."""
    import numpy as np

    x = np.nan_to_num(np.asarray(x, dtype=np.float32), copy=not in_place)
    norms = np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    return np.divide(x, norms, out=x if in_place else None)


def _top(scores: np.ndarray, k: int) -> list[int]:
    import numpy as np

    k = min(k, len(scores))
    if k <= 0:
        return []
    best = np.argpartition(-scores, k - 1)[:k]
    return [int(i) for i in best[np.lexsort((best, -scores[best]))]]


def _checked(index: LakeIndex, base: Base, found: Found) -> Found:
    """``found``, once every declared edge it does not answer for is in the base's result."""
    rows = {(e["parent"], e["child"], e["relation"]) for e in base.added["edges"] if e.get("declared")}
    for row in index.edges:
        if row.child not in found.models and (row.parent, row.child, row.relation) not in rows:
            raise _Fallback
    return found


def merge(index: LakeIndex, base: Base, models: set[str], before: int) -> None:
    """The base's edges, findings and parameter counts of every model but ``models`` into ``index``,
    where :func:`lakegen.lineage.stage._put` put those of ``models``, in the order a whole run gives."""
    theirs = [Edge.model_validate(e) for e in base.added["edges"]]
    declared = {(e.parent, e.child, e.relation): e for e in theirs if e.declared}
    edges = [
        row if row.child in models or not row.declared else declared[(row.parent, row.child, row.relation)]
        for row in index.edges
    ]
    undeclared = [e for e in edges if not e.declared]
    undeclared += [e for e in theirs if not e.declared and e.child not in models and e.parent not in models]
    index.edges = [e for e in edges if e.declared] + sorted(undeclared, key=lambda e: (e.parent, e.child))
    kept = [
        Finding(**{**f, "owners": tuple(f["owners"])})
        for f in base.added["findings"]
        if f.get("entry") not in models
    ]
    index.findings[before:] = sorted([*index.findings[before:], *kept], key=Finding.key)
    parameters = base.added["parameters"]
    for entry in index.entries:
        if entry.kind == "model" and entry.latest_version and entry.id not in models:
            entry.parameters = parameters.get(entry.id)
