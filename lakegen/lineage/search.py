"""Search a lake by weights: the catalog's models ranked by closeness to one weight file."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lakegen.attribution import Match, closest
from lakegen.catalog.loader import Catalog
from lakegen.fingerprint import Cache, fingerprint
from lakegen.lineage.declared import split
from lakegen.lineage.recover import artifact_paths, lazily


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
    known = lazily(paths, cache, progress)
    matches = [m for m in closest(query, known) if m.relation != "unrelated"][:limit]
    best = matches[0] if matches else None
    summary = {"path": str(file), **query.summary()}
    return SearchResult(summary, matches, best)


# -------------------------------------------------------------------------- lake index
