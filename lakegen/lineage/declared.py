"""Declared lineage against the weights' evidence: each declared edge's status, and the findings
(``undeclared-derivation``, ``unsupported-claim``, ``wrong-relation``) tied to manifest lines."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from lakegen.attribution import Edge, Lineage, undirected
from lakegen.attribution.memo import Memo
from lakegen.catalog.loader import Catalog, Record
from lakegen.errors import Finding
from lakegen.executor.forked import map_forked, workers
from lakegen.fingerprint import Fingerprint
from lakegen.lineage.audit import AUDITED, MIN_SHARE, Audit, AuditCache, audit_edge
from lakegen.model.manifest import Model, is_external

FindingKind = Literal["undeclared-derivation", "unsupported-claim", "wrong-relation", "unreadable-weights"]
Status = Literal["verified", "contradicted", "unchecked"]

MERGE_WEIGHT_TOLERANCE = 0.05
FORK_AUDITS_FROM = 64  # audits to run before a fork pays for itself (about 1.4 ms each)


def finding_at(
    model: str,
    path: str,
    line: int,
    rule: FindingKind,
    message: str,
    severity: Literal["error", "warning"] = "error",
    field: str = "base_models",
) -> Finding:
    """A disagreement between the weights and a manifest, at a manifest line."""
    return Finding(path, line, field, message, severity, stage="attribution", rule=rule, entry=model)


def node(model_id: str, version: str) -> str:
    """The id of one model version in lineage output: ``model@version``."""
    return f"{model_id}@{version}"


def split(node_id: str) -> tuple[str, str]:
    model_id, _, version = node_id.rpartition("@")
    return model_id, version


@dataclass(frozen=True)
class DeclaredCheck:
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
    declared: list[DeclaredCheck] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # model@version -> why it was not compared
    parameters: dict[str, int] = field(default_factory=dict)  # model@version -> parameter count
    # what the run read, for the PR check's record of it (lakegen.lineage.partial); not output
    fingerprints: Mapping[str, Fingerprint] = field(default_factory=dict)
    memo: Memo | None = None
    adapters: dict[str, str | None] = field(default_factory=dict)  # adapter -> the base its config names

    def to_json(self) -> dict[str, Any]:
        return {
            **self.lineage.to_json(),
            "declared": [d.to_json() for d in self.declared],
            "findings": [f.to_json() for f in self.findings],
            "skipped": dict(sorted(self.skipped.items())),
        }


# ----------------------------------------------------------------------------- artifacts


def compare_declared(catalog: Catalog, result: CatalogLineage, models: Collection[str] | None = None) -> None:
    """Each declared edge's status and the findings, of every model or of ``models``."""
    edges = _ByChild(result.lineage.edges)
    attributed = set(result.lineage.models)
    records = catalog.records.values() if models is None else [catalog.records[m] for m in models]
    for record in sorted(records, key=lambda r: r.path):
        model = record.entry
        if not isinstance(model, Model):
            continue
        mine = {node(model.id, v.version) for v in model.versions} & attributed
        for i in range(len(model.base_models)):
            result.declared.append(
                _check_declared(catalog, record, model, i, mine, edges, attributed, result)
            )
        declared_ids = {b.id for b in model.base_models}
        for e in edges.of(mine):
            parent_model = split(e.parent)[0]
            if parent_model == model.id or parent_model in declared_ids:
                continue
            if undirected(e):
                _undecided(catalog, record, model, e, parent_model, result)
                continue
            line = record.line("base_models") if model.base_models else record.line("id")
            result.findings.append(
                finding_at(
                    model.id,
                    record.path,
                    line,
                    "undeclared-derivation",
                    f"the weights show {e.child} is a {e.relation} of {e.parent} "
                    f"(confidence {e.confidence or 0.0:.2f}); base_models does not name {parent_model}",
                )
            )


def _undecided(
    catalog: Catalog, record: Record, model: Model, e: Edge, other: str, result: CatalogLineage
) -> None:
    """An undeclared edge whose direction the weights cannot tell. Which end attribution called the
    child is a guess, so the finding goes to both manifests (a pull request adding either one sees
    it), and none when the other one declares this one: its declared check takes the edge."""
    theirs = catalog.records.get(other)
    if theirs is None or not isinstance(theirs.entry, Model):
        return
    if any(b.id == model.id for b in theirs.entry.base_models):
        return
    for rec, me, them in ((record, e.child, e.parent), (theirs, e.parent, e.child)):
        entry = rec.entry
        assert isinstance(entry, Model)
        line = rec.line("base_models") if entry.base_models else rec.line("id")
        result.findings.append(
            finding_at(
                entry.id,
                rec.path,
                line,
                "undeclared-derivation",
                f"the weights show {me} and {them} are related ({e.relation}) but cannot tell which "
                f"came first (confidence {e.confidence or 0.0:.2f}); neither manifest's base_models "
                "names the other: the one made from the other should declare it",
            )
        )


class _ByChild:
    """A lineage's edges by child, so each model's are found without a scan of all of them."""

    def __init__(self, edges: list[Edge]):
        self.at: dict[str, list[tuple[int, Edge]]] = {}
        for i, e in enumerate(edges):
            self.at.setdefault(e.child, []).append((i, e))

    def of(self, children: set[str]) -> list[Edge]:
        """The edges into ``children``, in the lineage's order."""
        return [e for _, e in sorted((x for c in children for x in self.at.get(c, [])), key=lambda x: x[0])]


def _check_declared(
    catalog: Catalog,
    record: Record,
    model: Model,
    i: int,
    mine: set[str],
    edges: _ByChild,
    attributed: set[str],
    result: CatalogLineage,
) -> DeclaredCheck:
    base = model.base_models[i]
    line = record.line("base_models", i, "id")

    def declared(status: Status, detail: str, evidence: Edge | None = None) -> DeclaredCheck:
        return DeclaredCheck(
            model.id, base.id, base.version, base.relation, status, detail, record.path, line, evidence
        )

    def finding(kind: FindingKind, message: str, severity: Literal["error", "warning"] = "error") -> None:
        result.findings.append(finding_at(model.id, record.path, line, kind, message, severity))

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
    found = [e for e in edges.of(mine) if e.parent in theirs]
    # an edge whose direction is a guess bears out the declaration either way round
    found += [
        e.model_copy(update={"parent": e.child, "child": e.parent})
        for e in edges.of(theirs)
        if e.parent in mine and undirected(e)
    ]
    same = [e for e in found if e.relation == base.relation]
    if same:
        e = max(same, key=lambda e: e.confidence or 0.0)
        declared_weight = base.weight if base.relation == "merge" else None
        off = declared_weight is not None and e.weight is not None
        if off and abs(e.weight - declared_weight) > MERGE_WEIGHT_TOLERANCE:  # type: ignore[operator]
            finding(
                "wrong-relation",
                f"merge weight of {base.id} is {base.weight}; the weights show {e.weight:.3f}",
                "warning",
            )
            return declared("contradicted", f"merge weight {e.weight:.3f}, not {base.weight}")
        guess = "; which came first the weights cannot tell: taken as declared" if undirected(e) else ""
        return declared(
            "verified",
            f"{e.parent} -> {e.child}: {e.relation} (confidence {e.confidence or 0.0:.2f}{guess})",
            e,
        )
    if found:
        e = found[0]
        finding(
            "wrong-relation",
            f"declared {base.relation} of {base.id}; the weights show {e.relation} "
            f"({e.parent} -> {e.child}, confidence {e.confidence or 0.0:.2f})",
            "warning",
        )
        return declared("contradicted", f"the weights show {e.relation}")
    reverse = [e for e in edges.of(theirs) if e.parent in mine]
    if reverse:
        e = reverse[0]
        message = (
            f"declared {base.relation} of {base.id}; the weights show the reverse: "
            f"{e.child} derives from {e.parent}"
        )
    else:
        parents = sorted({e.parent for e in edges.of(mine) if split(e.parent)[0] != model.id})
        shown = (
            f"the weights show {', '.join(parents)} as its parent"
            if parents
            else "the weights show no parent"
        )
        message = f"declared {base.relation} of {base.id} is not supported: {shown}"
    finding("unsupported-claim", message)
    return declared("contradicted", message)


def audit_verified(
    result: CatalogLineage,
    paths: Mapping[str, Path],
    fps: Mapping[str, Fingerprint],
    cache: AuditCache | None,
) -> None:
    """Keep an edge verified only if the audit (see :mod:`lakegen.lineage.audit`) bears the fingerprints out.

    The fingerprints compare public coordinates, which a contributor can aim at; the audit reads
    the child and its parents again at coordinates drawn from the child's sha256.
    """
    planned = []
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
        planned.append(
            (i, e, parents, (child_sha, tuple((fps[p].sha256, w) for p, w in parents), e.relation))
        )
    # each audit is a function of its files: those not kept run side by side, once each
    runs: dict[tuple[Any, ...], tuple[Any, ...]] = {}
    for _, e, parents, k in planned:
        if k not in runs and (cache is None or cache.get(*k) is None):
            runs[k] = (paths[e.child], k[0], [(paths[p], w) for p, w in parents], e.relation)
    audits = map_forked(
        lambda job: audit_edge(*job), list(runs.values()), workers(len(runs), FORK_AUDITS_FROM)
    )
    done = dict(zip(runs, audits, strict=True))
    for i, e, _, k in planned:
        d = result.declared[i]
        # as one audit after another would: an audit kept a moment ago is read back from the cache
        audit = cache.get(*k) if cache is not None else None
        if audit is None:
            audit = done[k]
            if cache is not None:
                cache.put(*k, audit)
        if audit.status == "verified":
            result.declared[i] = replace(d, audit=audit, detail=f"{d.detail}; {audit.statement}")
        elif audit.status == "inconclusive":
            result.declared[i] = replace(d, status="unchecked", audit=audit, detail=audit.statement)
        else:
            matched = f" (its units matched to {e.parent}'s: {audit.alignment})" if audit.alignment else ""
            message = (
                f"declared {d.relation} of {d.base} is not borne out by the weights: at entries drawn from "
                f"the file's sha256 only {audit.observed:.0%} of {audit.worst}{matched} lies near {e.parent} "
                f"(at least {MIN_SHARE:.0%} needed), although the fingerprint's public sample coordinates "
                "match it; they were probably made to"
            )
            result.findings.append(finding_at(d.model, d.path, d.line, "unsupported-claim", message))
            result.declared[i] = replace(d, status="contradicted", audit=audit, detail=message)


# ------------------------------------------------------------------------------- search
