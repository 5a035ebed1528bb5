"""Derivations hidden by re-parametrisation, found again: a cheap search, then an exact check on few.

Permuting a fine-tune's hidden units (or rescaling them, or flipping signs where
the activation allows) keeps its function and makes it look like an independent
root: every sampled coordinate now holds another unit. So each model that ends
up a root is compared again, with the models of other families that share its
architecture:

1. **Candidates** by a signature that no unit symmetry changes: per matrix, the
   distribution of its sampled magnitudes (a permutation moves entries, a sign
   flip changes their signs, neither changes the distribution; a rescaling
   shifts it a little). It is read off the samples already in the fingerprint,
   so it costs nothing to compute and nothing to store; one vector product per
   model of the architecture ranks them, and only the best :data:`CANDIDATES`
   go on.
2. **Exact check**: ``realign(root, candidate)`` (see
   :func:`lakegen.fingerprint.align.realigner`) reads both files once, matches
   the root's units to the candidate's and returns the root's fingerprint in the
   candidate's unit order. Models that share no ancestor also match, partly (the
   units of two trainings on one task resemble each other), so a match counts
   only when each unit's partner stands out from its runner-up by
   :data:`ALIGN_MARGIN`; then the aligned fingerprint must pass the usual
   relatedness test.
3. The root joins the candidate's family, whose lineage is recovered again with
   the aligned fingerprint (copy tests, merges, fine-tune tree, release order as
   for any family); the root's own descendants stay under it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from lakegen.attribution.edges import Lineage
from lakegen.attribution.families import components
from lakegen.attribution.memo import Memo, identity, key
from lakegen.attribution.views import View, compare
from lakegen.fingerprint import Fingerprint

if TYPE_CHECKING:
    import numpy as np

    from lakegen.fingerprint.align import Aligned

CANDIDATES = 3  # exact checks per root
QUANTILES = 16  # points of each matrix's magnitude distribution in the invariant signature
# mean lead of a unit's match over its runner-up (|cosine|): derived models 0.36-0.43 on the demo
# MLPs, permuted and rescaled or not; two trainings of one architecture on one task 0.02
ALIGN_MARGIN = 0.1

Realign = Callable[[str, str], "Aligned | None"]


def invariant_signature(fp: Fingerprint) -> np.ndarray:
    """Per matrix (by name), :data:`QUANTILES` quantiles of its sampled magnitudes over their RMS."""
    import numpy as np

    levels = (np.arange(QUANTILES) + 0.5) / QUANTILES
    parts = []
    for t in sorted((t for t in fp.tensors if t.is_matrix and t.count >= QUANTILES), key=lambda t: t.key):
        x = np.abs(fp.values(t).astype(np.float64))
        x = x[np.isfinite(x)]
        rms = float(np.sqrt(np.mean(x * x))) if x.size else 0.0
        parts.append(np.quantile(x, levels) / rms if rms > 0 else np.zeros(QUANTILES))
    return np.concatenate(parts) if parts else np.zeros(0)


def rank_invariant(target: np.ndarray, pool: np.ndarray, top: int) -> list[int]:
    """The ``top`` rows of ``pool`` nearest ``target`` (Euclidean: the signatures share one scale)."""
    import numpy as np

    if not len(pool):
        return []
    d = np.linalg.norm(pool - target[None, :], axis=1)
    return [int(i) for i in np.argsort(d, kind="stable")[:top]]


def rediscover(
    lineage: Lineage,
    fingerprints: Mapping[str, Fingerprint],
    realign: Realign,
    recover: Callable[[Mapping[str, Fingerprint]], Lineage],
    memo: Memo | None = None,
) -> Lineage:
    """``lineage`` with each root that an alignment of its units places in another family moved there.

    ``recover`` re-runs attribution on one family (with the caller's order and adapter hints).
    ``memo`` keeps the roots whose candidates showed no hidden derivation: the same root among the
    same candidates is not aligned again.
    """
    import numpy as np

    models = [m for m in lineage.models if fingerprints[m].kind == "model"]
    family_of = _families(lineage)
    by_arch: dict[str, list[str]] = {}
    for m in models:
        by_arch.setdefault(fingerprints[m].architecture, []).append(m)
    position = {m: i for group in by_arch.values() for i, m in enumerate(group)}
    # per architecture: its models' signatures as one matrix, and which family each model is in,
    # so each root ranks all of them in one vector operation
    matrices: dict[str, Any] = {}
    family_ids: dict[str, Any] = {}
    edges, notes = list(lineage.edges), list(lineage.notes)
    model_set = set(models)
    for root in [m for m in lineage.roots if m in model_set]:
        arch = fingerprints[root].architecture
        same_arch = by_arch[arch]
        if arch not in matrices:
            matrices[arch] = np.stack([_signature(fingerprints[m], memo) for m in same_arch])
        if arch not in family_ids:
            numbers: dict[int, int] = {}
            family_ids[arch] = np.array(
                [numbers.setdefault(id(family_of[m]), len(numbers)) for m in same_arch]
            )
        ids = family_ids[arch]
        mine = ids[position[root]]
        pool = np.flatnonzero(ids != mine)
        if not len(pool):
            continue
        ranked = rank_invariant(matrices[arch][position[root]], matrices[arch][pool], CANDIDATES)
        candidates = [same_arch[pool[i]] for i in ranked]
        k = key("alone", [identity(fingerprints[m]) for m in (root, *candidates)]) if memo else ""
        if memo is not None and memo.get(k) is not None:
            continue
        hit = _best_alignment(root, candidates, fingerprints, realign)
        if hit is None:
            if memo is not None:
                memo.put(k, True)
            continue
        parent, aligned = hit
        family = family_of[parent]
        sub = {m: fingerprints[m] for m in family} | {root: aligned.fingerprint}
        found = recover(sub)
        edges = [e for e in edges if not (e.child in family and e.parent in family)]
        edges += found.edges
        notes.append(
            f"{root} and {parent} are related once {root}'s hidden units are matched to {parent}'s "
            f"({aligned.alignment.describe()}): a derivation hidden by re-parametrisation"
        )
        merged = family | family_of[root]
        for m in merged:
            family_of[m] = merged
        family_ids.clear()  # families joined: number them again
    edges.sort(key=lambda e: (e.child, e.parent))
    children = {e.child for e in edges}
    return Lineage(lineage.models, edges, [m for m in lineage.models if m not in children], notes)


def _signature(fp: Fingerprint, memo: Memo | None) -> np.ndarray:
    import numpy as np

    if memo is None:
        return invariant_signature(fp)
    k = key("signature", identity(fp))
    found = memo.get(k)
    if found is None:
        found = [float(x) for x in invariant_signature(fp)]
        memo.put(k, found)
    return np.asarray(found, dtype=np.float64)


def _families(lineage: Lineage) -> dict[str, set[str]]:
    links = [(e.parent, e.child) for e in lineage.edges]
    out: dict[str, set[str]] = {}
    for group in components(lineage.models, links):
        members = set(group)
        for m in members:
            out[m] = members
    return out


def _best_alignment(
    root: str, candidates: Sequence[str], fingerprints: Mapping[str, Fingerprint], realign: Realign
) -> tuple[str, Aligned] | None:
    best: tuple[float, str, Aligned] | None = None
    for candidate in candidates:
        aligned = realign(root, candidate)
        if aligned is None or aligned.alignment.margin < ALIGN_MARGIN:
            continue
        pair = compare(View(fingerprints[candidate]), View(aligned.fingerprint))
        if pair is None or not pair.related:
            continue
        if best is None or pair.distance < best[0]:
            best = (pair.distance, candidate, aligned)
    return None if best is None else (best[1], best[2])
