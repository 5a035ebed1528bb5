"""The index of a catalog before any stage runs: its entries, the declared edges, what loading found."""

from __future__ import annotations

from typing import Any

from pydantic_core import to_json

from lakegen.bench.metrics import REGISTRY
from lakegen.catalog.loader import Catalog, latest_version
from lakegen.compile.inputs import lake_time
from lakegen.model.index import ArtifactCheck, Edge, IndexEntry, LakeIndex, MetricInfo
from lakegen.model.manifest import Code


def base_index(catalog: Catalog) -> LakeIndex:
    """The index of a catalog before any evidence is gathered: entries, declared edges, validation."""
    index = LakeIndex(generated_at=lake_time(catalog.root))
    for record in sorted(catalog.records.values(), key=lambda r: r.entry.id):
        entry = record.entry
        versions = getattr(entry, "versions", None)
        index.entries.append(
            IndexEntry(
                id=entry.id,
                kind=entry.kind,
                path=record.path,
                latest_version=latest_version(entry) if versions is not None else None,  # type: ignore[arg-type]
                packed=to_json(entry),  # as model_dump(mode="json") would, with no dict on the way
            )
        )
    for model in catalog.models():
        for base in model.base_models:
            index.edges.append(
                Edge(
                    parent=base.id,
                    child=model.id,
                    relation=base.relation,
                    declared=True,
                    status="unchecked",
                    weight=base.weight,
                )
            )
    index.findings.extend(p for p in catalog.problems)
    index.metrics = {**_code_metrics(catalog), **REGISTRY.describe()}  # a built-in name wins
    index.artifacts = [
        ArtifactCheck(entry=e, version=v, status=s, **_signed(catalog.signatures.get((e, v))))
        for (e, v), s in sorted(catalog.artifacts.items())
    ]
    return index


def _signed(verdict: Any) -> dict[str, Any]:
    return {} if verdict is None else {"signature": verdict.state, "signer": verdict.signer}


def _code_metrics(catalog: Catalog) -> dict[str, MetricInfo]:
    """Metrics that code entries provide (an evaluation names an entry point of one), with the
    direction the entry declares."""
    named = {ev.metric for model in catalog.models() for ev in model.evaluations}
    out: dict[str, MetricInfo] = {}
    for code in sorted(catalog.entries("code"), key=lambda c: c.id):
        assert isinstance(code, Code)
        for name in sorted(named & set(code.entrypoints)):
            higher = name not in code.lower_is_better
            out.setdefault(name, MetricInfo(name=name, version=f"code:{code.id}", higher_is_better=higher))
    return out
