"""The compile stage of lineage: the weights' evidence on each declared edge, the undeclared edges,
and the findings, into the lake index.

What the stage adds is a function of the parts of the model manifests it reads (ids, versions and
their artifacts, declared bases, links, owners, and the lines of all of those), the artifacts'
verified contents and lakegen's code. The additions of the last few compiles are kept under a
digest of those (``.lakegen/cache/attribution-stage/<digest>.json``), so a compile after an edit
elsewhere (a description, a dataset, a policy) reads them back instead of walking every model's
fingerprint again. The digest is taken a model at a time, so that a PR check finds the results of
its base (the tree that differs in the models it changes only) and attributes again only what
those models reach (:mod:`lakegen.lineage.partial`).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

from lakegen.artifacts.digests import Digests
from lakegen.atomicfile import write_atomic
from lakegen.attribution import undirected
from lakegen.catalog.loader import Catalog
from lakegen.errors import Finding
from lakegen.executor import Engine
from lakegen.fingerprint import Cache
from lakegen.lineage import READ, partial
from lakegen.lineage.declared import CatalogLineage, node, split
from lakegen.lineage.known import Known, WholeLake, digests_of, source
from lakegen.lineage.recover import attribute_catalog
from lakegen.model.index import Edge, LakeIndex
from lakegen.version import __version__

STAGE_FOLDER = "attribution-stage"
KEEP = 4  # compiles whose results are kept


def attribution_stage(
    catalog: Catalog,
    index: LakeIndex,
    cache: Cache | None = None,
    engine: Engine = "local",
    workers: int | None = None,
    *,
    memo: bool = True,
    digests: Digests | None = None,
    changed: Collection[str] | None = None,
    known: Known | None = None,
) -> LakeIndex:
    """Put weight-verified lineage into the compiled lake (``LakeIndex``): edge statuses, findings.
    Weights are fingerprinted on the executor of ``engine`` with ``workers``; ``memo``: reuse
    attribution's results of earlier compiles (:mod:`lakegen.lineage.memo`); ``digests``: the
    artifacts' sha256 as the loader had them, so that finding each cached fingerprint reads no
    memo of its own (with the lake's cache only, whose memos they stand for). ``changed``: the
    models a PR check reports on, which may be attributed from the base's results
    (:mod:`lakegen.lineage.partial`). ``known``: the catalog holds part of the lake, the rest is
    known from its base (:class:`lakegen.lineage.known.Known`); then the stage runs from the
    base's results or raises :class:`lakegen.lineage.known.WholeLake`."""
    from lakegen.artifacts.digests import default_cache_dir

    if cache is None:
        cache = Cache(default_cache_dir(catalog.root))
        if digests is not None and digests.folder == cache.digests.folder:
            cache.digests = digests
    folder = cache.folder / STAGE_FOLDER
    parts = _parts(catalog, index, known, folder) if memo else None
    key = parts.key() if parts is not None else None
    if known is not None and (key is None or changed is None):
        raise WholeLake
    if key is not None and _apply(index, _read(folder / f"{key}.json", key)):
        return index
    before = len(index.findings)
    if key is not None and parts is not None and changed is not None:
        fast = folder / f"{key}{partial.SUFFIX}"
        if _apply(index, _read(fast, key)):
            return index
        base = partial.base_of(folder, parts, set(changed))
        if base is not None:
            found = partial.attribute_changed(catalog, index, cache, base, engine, workers, known)
            if found is not None:
                index.stages["attribution"] = (
                    f"ran (from the base's results; {len(found.models)} models attributed again)"
                )
                _put(catalog, index, found.result, found.models)
                partial.merge(index, base, found.models, before)
                _keep(fast, key, index, before)
                return index
    if known is not None:
        raise WholeLake
    result = attribute_catalog(catalog, cache, engine=engine, workers=workers, memo=memo)
    _put(catalog, index, result)
    if key is not None and parts is not None:
        _keep(folder / f"{key}.json", key, index, before)
        with contextlib.suppress(OSError):  # a read-only cache only costs speed
            partial.record(folder, key, parts, result, _sources(catalog, index, cache.digests))
    return index


def _keep(path: Path, key: str, index: LakeIndex, before: int) -> None:
    """What the stage added to ``index`` (past its first ``before`` findings), kept under ``key``."""
    added = {
        "edges": [e.model_dump(mode="json") for e in index.edges],
        "findings": [f.to_json() for f in index.findings[before:]],
        "parameters": {e.id: e.parameters for e in index.entries if e.parameters is not None},
        "stage": index.stages["attribution"],
    }
    with contextlib.suppress(OSError):  # a read-only cache only costs speed
        write_atomic(path, json.dumps({"key": key, "added": added}, separators=(",", ":")))
        _prune(path.parent)


def _prune(folder: Path) -> None:
    """Keep the stage's results of the last few compiles (a branch, its base, a pull request), and
    what was recorded beside each."""
    by_age = sorted(folder.glob("*.json"), key=lambda p: p.stat().st_mtime_ns, reverse=True)
    keys: list[str] = []
    for path in by_age:
        stem = path.name.split(".", 1)[0]
        if stem not in keys:
            keys.append(stem)
        if keys.index(stem) >= KEEP:
            path.unlink(missing_ok=True)


def _put(catalog: Catalog, index: LakeIndex, result: CatalogLineage, only: set[str] | None = None) -> None:
    """``result`` into ``index``: the declared edges' statuses, the undeclared edges, the findings,
    the parameter counts; of the models in ``only`` alone when given (the rest is the base's)."""
    declared = {(d.base, d.model, d.relation): d for d in result.declared}
    shown: dict[tuple[str, str], Edge] = {}
    listed = {(row.parent, row.child) for row in index.edges}
    for e in result.lineage.edges:
        pair = (split(e.parent)[0], split(e.child)[0])
        if undirected(e) and pair not in listed and pair[::-1] in listed:
            pair = pair[::-1]  # a guessed direction is evidence for the declared edge either way round
        if pair[0] != pair[1] and (
            pair not in shown or (e.confidence or 0.0) > (shown[pair].confidence or 0.0)
        ):
            shown[pair] = e
    for row in index.edges:
        if only is not None and row.child not in only:
            continue
        check = declared.get((row.parent, row.child, row.relation))
        evidence = shown.get((row.parent, row.child))
        if check is not None:
            row.status = check.status
            # what the audit proved, or why the edge could not be checked (remote weights, no audit)
            row.proof = check.audit.statement if check.audit is not None else None
            if check.status == "unchecked":
                row.proof = f"not checked: {check.detail}"
        if evidence is not None:
            row.weights_relation, row.confidence = evidence.relation, round(evidence.confidence or 0.0, 3)
            if row.relation == "merge" and evidence.weight is not None:
                row.weight = round(evidence.weight, 4)
    for (parent, child), e in sorted(shown.items()):
        if (parent, child) not in listed:
            index.edges.append(
                Edge(
                    parent=parent,
                    child=child,
                    relation=e.relation,
                    declared=False,
                    status="undeclared",
                    weights_relation=e.relation,
                    confidence=round(e.confidence or 0.0, 3),
                    weight=e.weight,
                )
            )
    findings = (catalog.owned(f) for f in result.findings)
    index.findings.extend(f for f in findings if only is None or f.entry in only)
    for entry in index.entries:
        if entry.kind == "model" and entry.latest_version and (only is None or entry.id in only):
            entry.parameters = result.parameters.get(node(entry.id, entry.latest_version))
    if only is not None:
        return
    verified = sum(d.status == "verified" for d in result.declared)
    contradicted = sum(d.status == "contradicted" for d in result.declared)
    index.stages["attribution"] = (
        f"ran ({len(result.lineage.models)} model versions; declared edges: {verified} verified, "
        f"{contradicted} contradicted, {len(result.declared) - verified - contradicted} unchecked; "
        f"{len(result.findings)} findings)"
    )


@functools.cache
def _code_digest() -> str:
    """The code whose results the stage's memo keeps: lineage, attribution, fingerprints, weights,
    artifacts."""
    h = hashlib.sha256(__version__.encode())
    top = Path(__file__).resolve().parents[1]
    for folder in ("lineage", "attribution", "fingerprint", "weights", "artifacts"):
        for file in sorted((top / folder).rglob("*.py")):
            h.update(file.relative_to(top).as_posix().encode() + b"\0" + file.read_bytes())
    return h.hexdigest()


def _parts(
    catalog: Catalog, index: LakeIndex, known: Known | None = None, folder: Path | None = None
) -> partial.Parts | None:
    """The digests of everything the stage reads, a model at a time (a PR check finds its base's
    results by them); None when that is not known from the lake alone: an artifact whose bytes were
    not verified against its manifest, or a remote one (what is fetched of it lives outside the
    lake). With ``known``, the catalog's models are digested and the others' digests are those of a
    recorded full run whose models had the same sources (:func:`lakegen.lineage.known.digests_of`)."""
    statuses = _statuses(catalog)
    kinds = {e.id: e.kind for e in index.entries}  # every entry's, whether its manifest is loaded
    declared: dict[str, list[Any]] = {}
    for row in index.edges:
        declared.setdefault(row.child, []).append(row.model_dump(mode="json"))
    entries = {e.id: e for e in index.entries}  # each manifest read when digested, not all held
    models: dict[str, str] = {}
    for entry_id, record in sorted(catalog.records.items()):
        if record.entry.kind != "model":
            continue
        mine = statuses.get(entry_id, {})
        for v in getattr(record.entry, "versions", []):
            if not v.yanked and (":" in v.artifact.uri or mine.get(v.version) != "verified"):
                return None
        manifest = entries[entry_id].manifest
        # in the document's order: the same text gives the same order
        lines = [(loc, n) for loc, n in record.doc.lines.items() if loc and loc[0] in READ]
        bases = _bases(record.entry, kinds)
        made = [record.path, {k: manifest.get(k) for k in READ}, lines, mine, bases, declared.get(entry_id)]
        models[entry_id] = hashlib.sha256(json.dumps(made, sort_keys=True, default=str).encode()).hexdigest()
    others = sorted((i, k) for i, k in kinds.items() if k != "model")
    common = _digest([_code_digest(), str(catalog.root.resolve())])
    if known is not None and folder is not None:
        rest = digests_of(folder, common, known.sources)
        if rest is None:
            return None
        models.update(rest)
    return partial.Parts(common, _digest(others), dict(sorted(models.items())))


def _sources(catalog: Catalog, index: LakeIndex, digests: Digests) -> dict[str, str]:
    """Each model by its manifest's sha256 (through ``digests``: the compile's record of what it
    read, where it has one), its artifacts' statuses and its bases' kinds: what a check that loads
    only part of the lake knows the other models by (:func:`lakegen.lineage.known.source`)."""
    statuses = _statuses(catalog)
    kinds = {e.id: e.kind for e in index.entries}
    out: dict[str, str] = {}
    for entry_id, record in catalog.records.items():
        if record.entry.kind != "model":
            continue
        with contextlib.suppress(OSError):
            sha = digests.sha256(record.file)
            out[entry_id] = source(sha, statuses.get(entry_id, {}), _bases(record.entry, kinds))
    return out


def _statuses(catalog: Catalog) -> dict[str, dict[str, str]]:
    """Each entry's artifact status, version by version."""
    statuses: dict[str, dict[str, str]] = {}
    for (entry_id, v), status in catalog.artifacts.items():
        statuses.setdefault(entry_id, {})[v] = status
    return statuses


def _bases(entry: Any, kinds: Mapping[str, str]) -> list[tuple[str, str | None]]:
    """A model's bases with their kinds (None: not in the lake), by id."""
    return sorted({b.id: kinds.get(b.id) for b in getattr(entry, "base_models", [])}.items())


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value).encode()).hexdigest()


def _read(path: Path, key: str) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    return data.get("added") if isinstance(data, dict) and data.get("key") == key else None


def _apply(index: LakeIndex, added: dict[str, Any] | None) -> bool:
    """Put what an earlier run of the stage on the same inputs added into ``index``; False when
    ``added`` is missing or damaged (then the stage runs)."""
    if not isinstance(added, dict):
        return False
    try:
        edges = [Edge.model_validate(e) for e in added["edges"]]
        findings = [Finding(**{**f, "owners": tuple(f["owners"])}) for f in added["findings"]]
        parameters = dict(added["parameters"])
        stage = str(added["stage"])
    except (KeyError, TypeError, ValueError):
        return False
    index.edges = edges
    index.findings.extend(findings)
    for entry in index.entries:
        if entry.kind == "model" and entry.latest_version:
            entry.parameters = parameters.get(entry.id)
    index.stages["attribution"] = stage
    return True
