"""The product of attribution: typed, directed edges, and the lineage they form."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Edge:
    """One recovered derivation: ``child`` was made from ``parent``."""

    parent: str
    child: str
    relation: str
    confidence: float
    weight: float | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "parent": self.parent,
            "child": self.child,
            "relation": self.relation,
            "confidence": round(self.confidence, 3),
        }
        if self.weight is not None:
            out["weight"] = round(self.weight, 4)
        return out


@dataclass
class Lineage:
    """Models, the edges between them, and the models with no parent."""

    models: list[str]
    edges: list[Edge]
    roots: list[str]
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "models": self.models,
            "edges": [e.to_json() for e in self.edges],
            "roots": self.roots,
        }

    def parents(self, child: str) -> list[Edge]:
        return [e for e in self.edges if e.child == child]
