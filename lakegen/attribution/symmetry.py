"""Derivations hidden by re-parametrisation, found again: a cheap search, then an exact check on few.

Permuting a fine-tune's hidden units (or rescaling them, or flipping signs where
the activation allows) keeps its function and makes it look like an independent
root: every sampled coordinate now holds another unit. So each model that ends
up a root is compared again, with the models of other families that share its
architecture:

1. **Candidates** by a signature that no unit symmetry changes, read off the
   samples already in the fingerprint (so fingerprinting costs nothing more).
   Most matrices have one axis no symmetry touches (an MLP's inputs and
   outputs, a transformer's residual stream): along it, the Gram matrix of the
   sampled slices, each normalised, stays what it was whatever the other axis's
   units were permuted, rescaled or sign-flipped into, up to the sampling (the
   sampled units are another random draw of the same units). On generated MLP
   trees (benchmarks/attribution.py, seed 9001) a permuted and rescaled model's
   nearest signature is a member of its own family in 57 of 57 cases (the
   distribution of sampled magnitudes, tried first, put one in the first three
   in 35). The best :data:`CANDIDATES` go on, found by
   :class:`~lakegen.attribution.neighbours.Neighbours` (exact among a few
   thousand models of one architecture, hashed beyond), not by ranking them all.
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

import base64
import contextlib
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from lakegen.attribution.edges import Edge, Lineage
from lakegen.attribution.families import components
from lakegen.attribution.memo import Memo, identity, key
from lakegen.attribution.neighbours import Neighbours
from lakegen.attribution.views import View, compare
from lakegen.fingerprint import Fingerprint
from lakegen.fingerprint.align import unit_groups

if TYPE_CHECKING:
    import numpy as np

    from lakegen.fingerprint.align import Aligned

CANDIDATES = 3  # exact checks per root
# mean lead of a unit's match over its runner-up (|cosine|): derived models 0.36-0.43 on the demo
# MLPs, permuted and rescaled or not; two trainings of one architecture on one task 0.02
ALIGN_MARGIN = 0.1
REPARAMETRISED = 1e-4  # relative distance of an aligned copy to its original: float rounding only

Realign = Callable[[str, str], "Aligned | None"]


def invariant_signature(fp: Fingerprint) -> np.ndarray:
    """Unit-symmetry invariants of a model's samples: per matrix, the Gram matrix (upper triangle) of
    its sampled slices along the axis no unit group permutes, each slice normalised; the samples
    themselves where neither axis is permuted; nothing where both are. Each part has unit norm."""
    import numpy as np

    shapes = {t.name: t.shape for t in fp.tensors}
    permuted = {axis for group in unit_groups(shapes) for axis in group.members}
    view = View(fp)
    parts = []
    for t in sorted(view.mats, key=lambda t: t.key):
        g = view.grid(t.key)
        rows, cols = (t.name, 0) in permuted, (t.name, 1) in permuted
        if g is None or min(g.shape) < 2 or (rows and cols):
            continue
        g = np.nan_to_num(g)
        if rows or cols:
            h = g.T if cols else g  # units along axis 0
            h = h / np.maximum(np.linalg.norm(h, axis=1, keepdims=True), 1e-30)
            x = (h.T @ h)[np.triu_indices(h.shape[1], 1)]
        else:
            x = g.reshape(-1)
        x = x - x.mean()
        parts.append(x / max(float(np.linalg.norm(x)), 1e-30))
    return np.concatenate(parts) if parts else np.zeros(0)


def rediscover(
    lineage: Lineage,
    fingerprints: Mapping[str, Fingerprint],
    realign: Realign,
    recover: Callable[[Mapping[str, Fingerprint]], Lineage],
    order: Mapping[str, Any] | None = None,
    memo: Memo | None = None,
) -> Lineage:
    """``lineage`` with each root that an alignment of its units places in another family moved there.

    ``recover`` re-runs attribution on one family (with the caller's order and adapter hints).
    ``memo`` keeps the roots whose candidates showed no hidden derivation: the same root among the
    same candidates is not aligned again.
    """
    import numpy as np

    models = [m for m in lineage.models if fingerprints[m].kind == "model"]
    connected = _families(lineage)  # a root is not aligned with its own relatives
    group_of = {m: set(g) for m, g in connected.items()}  # models whose samples share one unit order
    frames = dict(fingerprints)  # each model's fingerprint in its group's unit order
    by_arch: dict[str, list[str]] = {}
    for m in models:
        by_arch.setdefault(fingerprints[m].architecture, []).append(m)
    position = {m: i for group in by_arch.values() for i, m in enumerate(group)}
    # per architecture: its models' signatures, indexed, and which family each model is in
    matrices: dict[str, Neighbours] = {}
    family_ids: dict[str, Any] = {}
    edges, notes = list(lineage.edges), list(lineage.notes)
    model_set = set(models)
    for root in [m for m in lineage.roots if m in model_set]:
        arch = fingerprints[root].architecture
        same_arch = by_arch[arch]
        if arch not in matrices:
            matrices[arch] = Neighbours(np.stack([kept_signature(fingerprints[m], memo) for m in same_arch]))
        if arch not in family_ids:  # numbered again after families join or frames change
            numbers: dict[int, int] = {}
            ids = [numbers.setdefault(id(connected[m]), len(numbers)) for m in same_arch]
            in_order = [frames[m] is fingerprints[m] for m in same_arch]  # in its file's order
            family_ids[arch] = (np.array(ids), np.array(in_order, dtype=bool))
        ids, in_order = family_ids[arch]
        pool = (ids != ids[position[root]]) & in_order
        index = matrices[arch]
        candidates = [same_arch[i] for i in index.nearest(index.x[position[root]], CANDIDATES, allowed=pool)]
        if not candidates:
            continue
        k = key("alone", [identity(fingerprints[m]) for m in (root, *candidates)]) if memo else ""
        if memo is not None and memo.get(k) is not None:
            continue
        hit = _best_alignment(root, candidates, fingerprints, realign)
        if hit is None:
            if memo is not None:
                memo.put(k, True)
            continue
        family_ids.clear()  # what follows joins families or moves a frame
        parent, aligned, distance = hit
        if len(group_of[parent]) < len(group_of[root]) and not any(e.child == parent for e in edges):
            # the match is a root with fewer relatives: it moves into the root's unit order instead
            swapped = _best_alignment(parent, [root], fingerprints, realign)
            if swapped is not None:
                root, (parent, aligned, distance) = parent, swapped
        joined = connected[parent] | connected[root]
        for m in joined:
            connected[m] = joined
        # the match is one of its family, whose unit order it shares: the nearest member is found on
        # fingerprints alone (by correlation: the aligned root has its match's norms), and aligned
        # with again so that the scales are its own
        best, nearest = -1.0, parent
        for m in group_of[parent]:
            pair = compare(View(frames[m]), View(aligned.fingerprint))
            if frames[m] is fingerprints[m] and pair is not None and pair.related and pair.corr > best:
                best, nearest = pair.corr, m
        again = _best_alignment(root, [nearest], fingerprints, realign) if nearest != parent else None
        if again is not None and again[2] < distance:
            parent, aligned, distance = again
        if distance <= REPARAMETRISED and not _earlier(order, root, parent):
            # the same weights re-parametrised: a lossless copy of its match, as a file saved again is
            # (see copies.same_weights); put in the tree, the twin would take its original's children
            frames[root] = aligned.fingerprint  # its file is in another order: no candidate for others
            edges.append(Edge(parent=parent, child=root, relation="quantized", confidence=0.99))
            notes.append(
                f"{root} has the weights of {parent} with its hidden units re-parametrised "
                f"({aligned.alignment.describe()}): a lossless copy, reported as quantized"
            )
            continue
        # the root joins its match's group in the match's unit order; its own descendants keep their
        # edges to it, in its old order
        frames[root] = aligned.fingerprint
        group_of[root].discard(root)
        group = group_of[parent] | {root}
        for m in group:
            group_of[m] = group
        found = recover({m: frames[m] for m in group})
        edges = [e for e in edges if not (e.child in group and e.parent in group)] + found.edges
        notes.append(
            f"{root} and {parent} are related once {root}'s hidden units are matched to {parent}'s "
            f"({aligned.alignment.describe()}): a derivation hidden by re-parametrisation"
        )
    edges.sort(key=lambda e: (e.child, e.parent))
    children = {e.child for e in edges}
    return Lineage(lineage.models, edges, [m for m in lineage.models if m not in children], notes)


def kept_signature(fp: Fingerprint, memo: Memo | None) -> np.ndarray:
    """:func:`invariant_signature` as :class:`Neighbours` ranks it (float32); the memo keeps its
    bytes in base64: as JSON numbers, 10,000 signatures took 56 MB of the memo file and 82 MB of
    Python floats while attribution ran."""
    import numpy as np

    if memo is None:
        return invariant_signature(fp).astype(np.float32)
    k = key("signature", identity(fp))
    found = memo.get(k)
    if isinstance(found, str):
        with contextlib.suppress(ValueError):
            return np.frombuffer(base64.b64decode(found), dtype="<f4")
    signature = invariant_signature(fp).astype("<f4")
    memo.put(k, base64.b64encode(signature.tobytes()).decode("ascii"))
    return signature


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
) -> tuple[str, Aligned, float] | None:
    """The candidate the root is nearest once aligned with it: (candidate, aligned root, distance)."""
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
    return None if best is None else (best[1], best[2], best[0])


def _earlier(order: Mapping[str, Any] | None, a: str, b: str) -> bool:
    try:
        return order is not None and a in order and b in order and bool(order[a] < order[b])
    except TypeError:
        return False
