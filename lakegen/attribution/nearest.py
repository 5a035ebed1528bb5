"""One new model against many known ones: signature ranking, then exact comparison of the best."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from lakegen.attribution.copies import copy_confidence, copy_test, same_weights
from lakegen.attribution.distances import bulk_distance
from lakegen.attribution.merges import merge_test
from lakegen.attribution.roots import placement_confidence
from lakegen.attribution.views import View, compare
from lakegen.fingerprint import Fingerprint

if TYPE_CHECKING:
    import numpy as np


@dataclass(frozen=True)
class Match:
    """How one model relates to a known one."""

    id: str
    corr: float
    distance: float
    relation: str  # how the new model derives from this one ("finetune", ...), or "derived-from-new"
    confidence: float
    weight: float | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "similarity": round(self.corr, 4),
            "distance": round(self.distance, 4),
            "relation": self.relation,
            "confidence": round(self.confidence, 3),
        }
        if self.weight is not None:
            out["weight"] = round(self.weight, 4)
        return out


def rank_signatures(new: Fingerprint, signatures: np.ndarray, top: int) -> np.ndarray:
    """Indices of the ``top`` rows of ``signatures`` most similar to ``new`` (cosine)."""
    import numpy as np

    s = new.signature.astype(np.float32)
    norms = np.linalg.norm(signatures, axis=1) * max(float(np.linalg.norm(s)), 1e-12)
    scores = (signatures @ s) / np.maximum(norms, 1e-12)
    k = min(top, len(scores))
    if k == 0:
        return np.zeros(0, dtype=np.int64)
    best = np.argpartition(-scores, k - 1)[:k]
    return best[np.argsort(-scores[best])]


def closest(new: Fingerprint, known: Mapping[str, Fingerprint], top: int = 32) -> list[Match]:
    """Known models ranked by closeness to ``new``, each with how ``new`` relates to it.

    Candidates are first ranked by signature (one matrix product over all of
    ``known``), then the best ``top`` are compared exactly.
    """
    import numpy as np

    ids = list(known)
    if not ids:
        return []
    if new.kind == "adapter":
        return adapter_matches(new, known)
    read = getattr(known, "signatures", None)  # a lazily loaded mapping reads signatures alone
    sigs = read(ids) if read is not None else np.stack([known[i].signature for i in ids]).astype(np.float32)
    chosen = [ids[k] for k in rank_signatures(new, sigs, top)]
    nv = View(new)
    matches = []
    views = {i: View(known[i]) for i in chosen}
    shared: dict[str, Any] = {}  # fine-tune candidates -> the matrices they share with the new model
    for i in chosen:
        v = views[i]
        if v.fp.kind != "model":
            continue
        p = compare(v, nv)
        if p is None:
            continue
        relation, confidence = "unrelated", 0.9
        if v.fp.sha256 == new.sha256:
            relation, confidence = "identical", 1.0
        elif same_weights(v.fp, new):
            relation, confidence = "same-weights", 1.0
        elif p.related:
            test = copy_test(v, nv, p)
            back = copy_test(nv, v, p) if test is None else None
            if test is not None:
                relation, confidence = test.relation, copy_confidence(test)
            elif back is not None:
                relation, confidence = f"parent-of-{back.relation}", copy_confidence(back)
            else:
                relation, confidence, shared[i] = "finetune", 0.95, p.shared
        matches.append(Match(i, p.corr, p.distance, relation, confidence))
    if len(shared) > 1:  # the new file is the latest: each candidate's margin, as attribute() places it
        bulk = {i: bulk_distance(views[i], nv, keys) for i, keys in shared.items()}
        runner_up = {i: min(b for j, b in bulk.items() if j != i) for i in bulk}
        matches = [
            replace(m, confidence=placement_confidence(bulk[m.id], runner_up[m.id])) if m.id in bulk else m
            for m in matches
        ]
    related = [m for m in matches if m.relation not in ("unrelated",)]
    if len(related) >= 2 and not any(m.relation in (*EXACT, "quantized", "pruned") for m in related):
        pool_ids = [m.id for m in related if m.relation == "finetune"]
        allv = [nv, *(views[i] for i in pool_ids)]
        found = merge_test(0, allv, list(range(len(allv))))
        if found is not None:
            weights = {pool_ids[k - 1]: w for k, w in zip(found.parents, found.weights, strict=True)}
            matches = [
                Match(m.id, m.corr, m.distance, "merge", max(0.5, 0.99 - found.residual), weights[m.id])
                if m.id in weights
                else m
                for m in matches
            ]
    matches.sort(
        key=lambda m: (m.relation == "unrelated", m.distance, EXACT.get(m.relation, len(EXACT)), m.id)
    )
    return matches


# the new file is a known one (the same bytes), or the same weights in another file: ranked in this order
EXACT = {"identical": 0, "same-weights": 1}


def adapter_matches(new: Fingerprint, known: Mapping[str, Fingerprint]) -> list[Match]:
    wanted = {t.key for t in new.tensors}
    out = []
    base = (new.adapter or {}).get("base")
    for i, fp in known.items():
        if fp.kind != "model" or not wanted:
            continue
        have = {t.key for t in fp.tensors}
        if wanted <= have:
            named = base is not None and (i == base or i.split("@")[0] == base)
            out.append(Match(i, 0.0, 0.0, "adapter", 0.8 if named else 0.3))
    out.sort(key=lambda m: -m.confidence)
    return out
