"""Weight-verified lineage of a lake: what the weights show, next to what the manifests declare.

:func:`attribute_catalog` fingerprints every local model version (from the
cache when unchanged), recovers lineage with :mod:`lakegen.attribution`, and
compares it with each manifest's ``base_models``:

- every declared edge gets a status: ``verified`` (the weights show it, with
  that relation), ``contradicted`` (they show another relation, another
  parent, or no relation at all) or ``unchecked`` (the base is outside the
  lake, such as ``hf:...``, or its weights are not local);
- every disagreement is a :class:`Finding` tied to the manifest line:
  ``undeclared-derivation`` (the weights show a parent the manifest does not
  name), ``unsupported-claim`` (a declared parent the weights do not support),
  ``wrong-relation`` (the parent is right, the relation or merge weight is not).

Versions of one model may derive from one another (1.1.0 continuing 1.0.0);
that is what versions are, so it is never a finding. Release dates order the
versions: a model is never made the fine-tuned child of one released after it.
:func:`search_like` ranks the lake's models by closeness to a weight file.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from lakegen import artifacts, remote
from lakegen.attribution import Edge, Lineage, Match, attribute, closest
from lakegen.audit import AUDITED, MIN_SHARE, Audit, AuditCache, audit_edge
from lakegen.catalog import Catalog, Record, latest_version
from lakegen.fingerprint import Cache, Cached, Fingerprint, cache_key, fingerprint
from lakegen.manifest import Artifact, Model, is_external
from lakegen.weights import WeightsError, is_adapter, model_location

FindingKind = Literal["undeclared-derivation", "unsupported-claim", "wrong-relation", "unreadable-weights"]
Status = Literal["verified", "contradicted", "unchecked"]
MERGE_WEIGHT_TOLERANCE = 0.05


def node(model_id: str, version: str) -> str:
    """The id of one model version in lineage output: ``model@version``."""
    return f"{model_id}@{version}"


def split(node_id: str) -> tuple[str, str]:
    model_id, _, version = node_id.rpartition("@")
    return model_id, version


@dataclass(frozen=True)
class Finding:
    """A disagreement between the weights and a manifest, at a manifest line."""

    model: str
    path: str
    line: int
    kind: FindingKind
    message: str
    severity: Literal["error", "warning"] = "error"
    version: str | None = None

    def __str__(self) -> str:
        tag = "" if self.severity == "error" else "warning: "
        return f"{self.path}:{self.line}: {tag}{self.kind}: {self.message}"

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "version": self.version,
            "path": self.path,
            "line": self.line,
            "kind": self.kind,
            "message": self.message,
            "severity": self.severity,
        }


@dataclass(frozen=True)
class DeclaredEdge:
    """One ``base_models`` entry, and whether the weights bear it out."""

    model: str
    base: str
    base_version: str | None
    relation: str
    status: Status
    detail: str
    path: str
    line: int
    evidence: Edge | None = None  # the recovered edge that bears it out, when verified
    audit: Audit | None = None  # the check at coordinates drawn from the child's sha256

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "base": self.base,
            "base_version": self.base_version,
            "relation": self.relation,
            "status": self.status,
            "detail": self.detail,
            "path": self.path,
            "line": self.line,
            "audit": self.audit.to_json() if self.audit else None,
        }


@dataclass
class CatalogLineage:
    """Lineage recovered from a lake's weights, compared with its manifests."""

    lineage: Lineage
    declared: list[DeclaredEdge] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # model@version -> why it was not compared
    parameters: dict[str, int] = field(default_factory=dict)  # model@version -> parameter count

    def to_json(self) -> dict[str, Any]:
        return {
            **self.lineage.to_json(),
            "declared": [d.to_json() for d in self.declared],
            "findings": [f.to_json() for f in self.findings],
            "skipped": dict(sorted(self.skipped.items())),
        }


# ----------------------------------------------------------------------------- artifacts


def artifact_paths(catalog: Catalog) -> tuple[dict[str, Path], dict[str, str]]:
    """Each model version's local weights (file, or adapter folder); and why others have none."""
    paths: dict[str, Path] = {}
    skipped: dict[str, str] = {}
    for record in catalog.records.values():
        entry = record.entry
        if not isinstance(entry, Model):
            continue
        for version in entry.versions:
            key = node(entry.id, version.version)
            if version.yanked:
                skipped[key] = f"yanked: {version.yanked}"
                continue
            if catalog.artifacts.get((entry.id, version.version)) == "contradicted":
                skipped[key] = "the artifact does not match its manifest's sha256 and size; not read"
                continue
            try:
                where = artifacts.resolve(version.artifact.uri, record.file, catalog.root)
            except artifacts.ArtifactPathError as e:
                skipped[key] = str(e)
                continue
            if where.path is None:
                local = remote.local_weights(catalog.root, version.artifact)
                if isinstance(local, str):
                    skipped[key] = local
                else:
                    paths[key] = model_location(local)
                continue
            if not where.path.is_file():
                skipped[key] = f"artifact not found: {version.artifact.uri}"
                continue
            paths[key] = model_location(where.path)
    return paths, skipped


def fingerprints(
    paths: dict[str, Path], cache: Cache | None, progress: Callable[[str], None] | None = None
) -> tuple[dict[str, Fingerprint], dict[str, str]]:
    """Fingerprints of ``paths`` (id -> path), from the cache when a file is unchanged."""
    out: dict[str, Fingerprint] = {}
    failed: dict[str, str] = {}
    for key, path in paths.items():
        try:
            out[key] = fingerprint(path, cache)
        except WeightsError as e:
            failed[key] = e.reason
        if progress is not None:
            progress(key)
    return out, failed


def _lazily(
    paths: dict[str, Path], cache: Cache | None, progress: Callable[[str], None] | None
) -> Mapping[str, Fingerprint]:
    """Fingerprints of ``paths``; those cached and unchanged are loaded only when needed."""
    if cache is None:
        return fingerprints(paths, None, progress)[0]
    keys: dict[str, str] = {}
    for model_id, path in paths.items():
        key = cache.known_key(path)
        if key is None or not cache.path_of(key).is_file():
            try:
                key = cache_key(path, fingerprint(path, cache).sha256)
            except WeightsError:
                key = None
        if key is not None:
            keys[model_id] = key
        if progress is not None:
            progress(model_id)
    return Cached(cache, keys)


# ------------------------------------------------------------------------------ catalog


def _release_order(catalog: Catalog) -> dict[str, tuple[Any, ...]]:
    order = {}
    for model in catalog.models():
        for v in model.versions:
            order[node(model.id, v.version)] = (v.released.isoformat(),)
    return order


def _adapter_resolver(catalog: Catalog, known: set[str]) -> Callable[[str, Fingerprint], str | None]:
    def resolve(adapter_id: str, fp: Fingerprint) -> str | None:
        meta = fp.adapter or {}
        base, revision = meta.get("base"), meta.get("revision")
        if not base or base not in catalog.records:
            return None
        entry = catalog.records[base].entry
        if not isinstance(entry, Model):
            return None
        versions = [revision] if revision else []
        latest = latest_version(entry)
        versions += [latest] if latest else []
        for version in versions:
            if node(base, version) in known:
                return node(base, version)
        return None

    return resolve


def attribute_catalog(
    catalog: Catalog, cache: Cache | None = None, progress: Callable[[str], None] | None = None
) -> CatalogLineage:
    """Recover lineage from every local model version of ``catalog`` and check it against the manifests."""
    paths, skipped = artifact_paths(catalog)
    fps, failed = fingerprints(paths, cache, progress)
    for model in catalog.models():
        for v in model.versions:
            key = node(model.id, v.version)
            why = _unpinned(fps[key], paths[key], v.artifact) if key in fps else None
            if why is not None:
                del fps[key]
                failed[key] = f"{why}; its weights are not used"
    result = CatalogLineage(
        attribute(fps, order=_release_order(catalog), adapter_base=_adapter_resolver(catalog, set(fps)))
    )
    result.skipped = {**skipped, **{k: f"unreadable weights: {why}" for k, why in failed.items()}}
    result.parameters = {k: fp.parameters for k, fp in fps.items()}
    for key, why in failed.items():
        model_id, version = split(key)
        record = catalog.records[model_id]
        index = [v.version for v in record.entry.versions].index(version)  # type: ignore[union-attr]
        result.findings.append(
            Finding(
                model_id,
                record.path,
                record.line("versions", index, "artifact", "uri"),
                "unreadable-weights",
                why,
                version=version,
            )
        )
    _compare(catalog, result)
    _audit_verified(result, paths, fps, AuditCache(cache.folder) if cache is not None else None)
    result.findings.sort(key=lambda f: (f.path, f.line, f.kind, f.message))
    return result


def _unpinned(fp: Fingerprint, path: Path, art: Artifact) -> str | None:
    """Why the weights just read are not the ones the manifest pins (None when they are).

    The fingerprint pass hashes every file it reads, so weights changed after
    validation are caught here; a sharded checkpoint's shards are pinned in the
    artifact's ``files``, by name.
    """
    if is_adapter(path):
        return None
    if fp.shards is None:
        return None if fp.sha256 == art.sha256 else "the file changed since its sha256 was recorded"
    pinned = {f.path: f.sha256 for f in art.files}
    for shard in fp.shards:
        if shard["file"] not in pinned:
            return f"shard {shard['file']} is not pinned in the artifact's files"
        if pinned[shard["file"]] != shard["sha256"]:
            return f"shard {shard['file']} changed since its sha256 was recorded"
    return None


def _compare(catalog: Catalog, result: CatalogLineage) -> None:
    edges = result.lineage.edges
    attributed = set(result.lineage.models)
    for record in sorted(catalog.records.values(), key=lambda r: r.path):
        model = record.entry
        if not isinstance(model, Model):
            continue
        mine = {node(model.id, v.version) for v in model.versions} & attributed
        for i in range(len(model.base_models)):
            result.declared.append(
                _check_declared(catalog, record, model, i, mine, edges, attributed, result)
            )
        declared_ids = {b.id for b in model.base_models}
        for e in edges:
            if e.child not in mine:
                continue
            parent_model = split(e.parent)[0]
            if parent_model == model.id or parent_model in declared_ids:
                continue
            line = record.line("base_models") if model.base_models else record.line("id")
            result.findings.append(
                Finding(
                    model.id,
                    record.path,
                    line,
                    "undeclared-derivation",
                    f"the weights show {e.child} is a {e.relation} of {e.parent} "
                    f"(confidence {e.confidence:.2f}); base_models does not name {parent_model}",
                    version=split(e.child)[1],
                )
            )


def _check_declared(
    catalog: Catalog,
    record: Record,
    model: Model,
    i: int,
    mine: set[str],
    edges: list[Edge],
    attributed: set[str],
    result: CatalogLineage,
) -> DeclaredEdge:
    base = model.base_models[i]
    line = record.line("base_models", i, "id")

    def declared(status: Status, detail: str, evidence: Edge | None = None) -> DeclaredEdge:
        return DeclaredEdge(
            model.id, base.id, base.version, base.relation, status, detail, record.path, line, evidence
        )

    def finding(kind: FindingKind, message: str, severity: Literal["error", "warning"] = "error") -> None:
        result.findings.append(Finding(model.id, record.path, line, kind, message, severity))

    if is_external(base.id) or base.id not in catalog.records:
        return declared("unchecked", "base is outside the lake")
    base_entry = catalog.records[base.id].entry
    if not isinstance(base_entry, Model):
        return declared("unchecked", f"'{base.id}' is not a model")
    versions = [base.version] if base.version else [v.version for v in base_entry.versions]
    theirs = {node(base.id, v) for v in versions} & attributed
    if not theirs:
        return declared("unchecked", f"no local weights for {base.id} {base.version or ''}".strip())
    if not mine:
        return declared("unchecked", f"no local weights for {model.id}")
    found = [e for e in edges if e.parent in theirs and e.child in mine]
    same = [e for e in found if e.relation == base.relation]
    if same:
        e = max(same, key=lambda e: e.confidence)
        declared_weight = base.weight if base.relation == "merge" else None
        off = declared_weight is not None and e.weight is not None
        if off and abs(e.weight - declared_weight) > MERGE_WEIGHT_TOLERANCE:  # type: ignore[operator]
            finding(
                "wrong-relation",
                f"merge weight of {base.id} is {base.weight}; the weights show {e.weight:.3f}",
                "warning",
            )
            return declared("contradicted", f"merge weight {e.weight:.3f}, not {base.weight}")
        return declared(
            "verified", f"{e.parent} -> {e.child}: {e.relation} (confidence {e.confidence:.2f})", e
        )
    if found:
        e = found[0]
        finding(
            "wrong-relation",
            f"declared {base.relation} of {base.id}; the weights show {e.relation} "
            f"({e.parent} -> {e.child}, confidence {e.confidence:.2f})",
            "warning",
        )
        return declared("contradicted", f"the weights show {e.relation}")
    reverse = [e for e in edges if e.parent in mine and e.child in theirs]
    if reverse:
        e = reverse[0]
        message = (
            f"declared {base.relation} of {base.id}; the weights show the reverse: "
            f"{e.child} derives from {e.parent}"
        )
    else:
        parents = sorted({e.parent for e in edges if e.child in mine and split(e.parent)[0] != model.id})
        shown = (
            f"the weights show {', '.join(parents)} as its parent"
            if parents
            else "the weights show no parent"
        )
        message = f"declared {base.relation} of {base.id} is not supported: {shown}"
    finding("unsupported-claim", message)
    return declared("contradicted", message)


def _audit_verified(
    result: CatalogLineage,
    paths: Mapping[str, Path],
    fps: Mapping[str, Fingerprint],
    cache: AuditCache | None,
) -> None:
    """Keep an edge verified only if the audit (see :mod:`lakegen.audit`) bears the fingerprints out.

    The fingerprints compare public coordinates, which a contributor can aim at; the audit reads
    the child and its parents again at coordinates drawn from the child's sha256.
    """
    for i, d in enumerate(result.declared):
        e = d.evidence
        if d.status != "verified" or e is None or e.relation not in AUDITED:
            continue
        if e.relation == "merge":
            mix = [m for m in result.lineage.edges if m.child == e.child and m.relation == "merge"]
            parents = [(m.parent, m.weight if m.weight is not None else 1 / len(mix)) for m in mix]
        else:
            parents = [(e.parent, 1.0)]
        child_sha = fps[e.child].sha256
        key_parents = [(fps[p].sha256, w) for p, w in parents]
        audit = cache.get(child_sha, key_parents, e.relation) if cache is not None else None
        if audit is None:
            audit = audit_edge(paths[e.child], child_sha, [(paths[p], w) for p, w in parents], e.relation)
            if cache is not None:
                cache.put(child_sha, key_parents, e.relation, audit)
        if audit.status == "verified":
            result.declared[i] = replace(d, audit=audit, detail=f"{d.detail}; {audit.statement}")
        elif audit.status == "inconclusive":
            result.declared[i] = replace(d, status="unchecked", audit=audit, detail=audit.statement)
        else:
            message = (
                f"declared {d.relation} of {d.base} is not borne out by the weights: at entries drawn from "
                f"the file's sha256 only {audit.observed:.0%} of {audit.worst} lies near {e.parent} "
                f"(at least {MIN_SHARE:.0%} needed), although the fingerprint's public sample coordinates "
                "match it; they were probably made to"
            )
            result.findings.append(
                Finding(d.model, d.path, d.line, "unsupported-claim", message, version=split(e.child)[1])
            )
            result.declared[i] = replace(d, status="contradicted", audit=audit, detail=message)


# ------------------------------------------------------------------------------- search


@dataclass
class SearchResult:
    """Catalog models ranked by closeness to a weight file, with the likeliest parent."""

    query: dict[str, Any]
    matches: list[Match]
    best: Match | None

    @property
    def sentence(self) -> str:
        if self.best is None:
            return "no model of the lake is related to this file"
        b = self.best
        model_id, version = split(b.id)
        what = f"{model_id} {version}"
        texts = {
            "identical": f"this file is identical to {what}",
            "same-weights": f"this file holds the same weights as {what} (every tensor equal, saved apart)",
            "quantized": f"this file is a quantized copy of {what}",
            "pruned": f"this file is a pruned copy of {what}",
            "finetune": f"this file is a fine-tune of {what}",
            "adapter": f"this file is an adapter for {what}",
            "merge": "this file is a merge of "
            + ", ".join(
                f"{split(m.id)[0]} {split(m.id)[1]} ({m.weight:.2f})"
                for m in self.matches
                if m.relation == "merge"
            ),
        }
        if b.relation.startswith("parent-of-"):
            return f"{what} is a {b.relation.removeprefix('parent-of-')} copy of this file"
        return texts.get(b.relation, f"this file is related to {what}")

    def to_json(self) -> dict[str, Any]:
        return {
            "query": self.query,
            "best": self.best.to_json() if self.best else None,
            "sentence": self.sentence,
            "matches": [m.to_json() for m in self.matches],
        }


def search_like(
    catalog: Catalog,
    file: Path,
    cache: Cache | None = None,
    progress: Callable[[str], None] | None = None,
    limit: int = 10,
) -> SearchResult:
    """The lake's models ranked by closeness to the weights in ``file``."""
    query = fingerprint(file, cache)
    paths, _ = artifact_paths(catalog)
    known = _lazily(paths, cache, progress)
    matches = [m for m in closest(query, known) if m.relation != "unrelated"][:limit]
    best = matches[0] if matches else None
    summary = {"path": str(file), **query.summary()}
    return SearchResult(summary, matches, best)


# -------------------------------------------------------------------------- lake index


def attribution_stage(catalog: Catalog, index: Any, cache: Cache | None = None) -> CatalogLineage:
    """Put weight-verified lineage into the compiled lake (``LakeIndex``): edge statuses, findings."""
    from lakegen.digests import default_cache_dir
    from lakegen.index import Edge as IndexEdge
    from lakegen.index import Finding as IndexFinding

    result = attribute_catalog(catalog, cache or Cache(default_cache_dir(catalog.root)))
    declared = {(d.base, d.model, d.relation): d for d in result.declared}
    shown: dict[tuple[str, str], Edge] = {}
    for e in result.lineage.edges:
        pair = (split(e.parent)[0], split(e.child)[0])
        if pair[0] != pair[1] and (pair not in shown or e.confidence > shown[pair].confidence):
            shown[pair] = e
    for row in index.edges:
        check = declared.get((row.parent, row.child, row.relation))
        evidence = shown.get((row.parent, row.child))
        if check is not None:
            row.status = check.status
            # what the audit proved, or why the edge could not be checked (remote weights, no audit)
            row.proof = check.audit.statement if check.audit is not None else None
            if check.status == "unchecked":
                row.proof = f"not checked: {check.detail}"
        if evidence is not None:
            row.weights_relation, row.confidence = evidence.relation, round(evidence.confidence, 3)
            if row.relation == "merge" and evidence.weight is not None:
                row.weight = round(evidence.weight, 4)
    listed = {(row.parent, row.child) for row in index.edges}
    for (parent, child), e in sorted(shown.items()):
        if (parent, child) not in listed:
            index.edges.append(
                IndexEdge(
                    parent=parent,
                    child=child,
                    relation=e.relation,
                    declared=False,
                    status="undeclared",
                    weights_relation=e.relation,
                    confidence=round(e.confidence, 3),
                    weight=e.weight,
                )
            )
    for f in result.findings:
        owners = list(catalog.records[f.model].entry.owners) if f.model in catalog.records else []
        index.findings.append(
            IndexFinding(
                stage="attribution",
                rule=f.kind,
                severity=f.severity,
                entry=f.model,
                owners=owners,
                path=f.path,
                line=f.line,
                field="base_models",
                message=f.message,
            )
        )
    for row in index.entries:
        if row.kind == "model" and row.latest_version:
            row.parameters = result.parameters.get(node(row.id, row.latest_version))
    verified = sum(d.status == "verified" for d in result.declared)
    contradicted = sum(d.status == "contradicted" for d in result.declared)
    index.stages["attribution"] = (
        f"ran ({len(result.lineage.models)} model versions; declared edges: {verified} verified, "
        f"{contradicted} contradicted, {len(result.declared) - verified - contradicted} unchecked; "
        f"{len(result.findings)} findings)"
    )
    return result
