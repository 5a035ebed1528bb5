"""The product of attribution: typed, directed edges (the lake index's :class:`Edge`), and the lineage
they form."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lakegen.model.index import Edge

# The confidence of an edge whose direction the weights cannot tell (undated twins, a fine-tune
# pair nothing orders): which end is called the parent is a guess, and nothing may rest on it.
UNDECIDED = 0.5


def undirected(e: Edge) -> bool:
    """Whether ``e``'s direction is a guess (see ``UNDECIDED``)."""
    return e.confidence is not None and e.confidence <= UNDECIDED


@dataclass
class Lineage:
    """Models, the edges between them, and the models with no parent."""

    models: list[str]
    edges: list[Edge]
    roots: list[str]
    notes: list[str] = field(default_factory=list)
    # models whose edges the search for hidden derivations changed (see :mod:`.symmetry`): a PR
    # check that reuses a family's result must not reuse one that search reached into
    rediscovered: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "models": self.models,
            "edges": [_edge_json(e) for e in self.edges],
            "roots": self.roots,
        }

    def parents(self, child: str) -> list[Edge]:
        return [e for e in self.edges if e.child == child]


def _edge_json(e: Edge) -> dict[str, Any]:
    out: dict[str, Any] = {
        "parent": e.parent,
        "child": e.child,
        "relation": e.relation,
        "confidence": round(e.confidence or 0.0, 3),
    }
    if e.weight is not None:
        out["weight"] = round(e.weight, 4)
    return out
