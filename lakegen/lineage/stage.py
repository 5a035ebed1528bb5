"""The compile stage of lineage: the weights' evidence on each declared edge, the undeclared edges,
and the findings, into the lake index."""

from __future__ import annotations

from lakegen.attribution import undirected
from lakegen.catalog.loader import Catalog
from lakegen.executor import Engine
from lakegen.fingerprint import Cache
from lakegen.lineage.declared import node, split
from lakegen.lineage.recover import attribute_catalog
from lakegen.model.index import Edge, LakeIndex


def attribution_stage(
    catalog: Catalog,
    index: LakeIndex,
    cache: Cache | None = None,
    engine: Engine = "local",
    workers: int | None = None,
    *,
    memo: bool = True,
) -> LakeIndex:
    """Put weight-verified lineage into the compiled lake (``LakeIndex``): edge statuses, findings.
    Weights are fingerprinted on the executor of ``engine`` with ``workers``; ``memo``: reuse
    attribution's results of earlier compiles (:mod:`lakegen.lineage.memo`)."""
    from lakegen.artifacts.digests import default_cache_dir

    cache = cache or Cache(default_cache_dir(catalog.root))
    result = attribute_catalog(catalog, cache, engine=engine, workers=workers, memo=memo)
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
    index.findings.extend(catalog.owned(f) for f in result.findings)
    for entry in index.entries:
        if entry.kind == "model" and entry.latest_version:
            entry.parameters = result.parameters.get(node(entry.id, entry.latest_version))
    verified = sum(d.status == "verified" for d in result.declared)
    contradicted = sum(d.status == "contradicted" for d in result.declared)
    index.stages["attribution"] = (
        f"ran ({len(result.lineage.models)} model versions; declared edges: {verified} verified, "
        f"{contradicted} contradicted, {len(result.declared) - verified - contradicted} unchecked; "
        f"{len(result.findings)} findings)"
    )
    return index
