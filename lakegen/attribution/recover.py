"""Lineage among a set of fingerprints: the steps of :mod:`lakegen.attribution` in order."""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

from lakegen.attribution.adapters import adapter_edge, default_adapter_base
from lakegen.attribution.copies import (
    UNDIRECTED,
    Copy,
    best_copy_parent,
    copy_confidence,
    copy_test,
    original_of,
    same_weights,
    vectors_kept,
)
from lakegen.attribution.edges import Edge, Lineage
from lakegen.attribution.families import PARTITION_FROM, components, families_by_signature
from lakegen.attribution.memo import Memo, identity, key, lineage_from_json, lineage_json
from lakegen.attribution.merges import Merge, merge_test
from lakegen.attribution.precision import grid_parent
from lakegen.attribution.symmetry import Realign, rediscover
from lakegen.attribution.trees import attach_to_merges, finetune_forest, later
from lakegen.attribution.views import Pair, View, pairwise
from lakegen.executor.forked import map_forked, workers
from lakegen.fingerprint import Fingerprint

FORK_FAMILIES_FROM = 64  # families to recover before a fork pays for itself (about 2 ms each)


def attribute(
    fingerprints: Mapping[str, Fingerprint],
    *,
    order: Mapping[str, Any] | None = None,
    adapter_base: Callable[[str, Fingerprint], str | None] | None = None,
    realign: Realign | None = None,
    memo: Memo | None = None,
    partition: bool = False,
    search: Collection[str] | None = None,
) -> Lineage:
    """Recover typed, directed lineage among ``fingerprints`` (model id -> fingerprint).

    ``order`` (optional) maps a model to a sortable value, such as its release
    date: a model is never made the fine-tuned child of one that sorts after it.
    ``adapter_base`` maps an adapter to the id its config names (default: the
    config's ``base_model_name_or_path`` matched against the ids).
    ``realign(child, parent)`` (optional; see
    :func:`lakegen.fingerprint.align.realigner`) puts a child's units in a parent's
    order; with it, roots are checked for derivations hidden by permuting,
    rescaling or sign-flipping hidden units (:mod:`lakegen.attribution.symmetry`).

    Comparing every pair is quadratic; a large lake is first split into families
    of related models, and each family is attributed on its own.

    With ``memo`` (see :mod:`lakegen.attribution.memo`), results of earlier runs on the same
    fingerprints and hints are reused: the whole lineage, each family's, each root found alone.

    A PR check attributes part of a lake (:mod:`lakegen.lineage.partial`) as the whole lake's run
    attributes it: ``partition`` splits it into families however small it is, and ``search`` names
    the only roots searched for a hidden derivation (the others' outcome is the whole lake's).
    """
    resolve = adapter_base or default_adapter_base(sorted(fingerprints))
    part = (
        [partition, sorted(search) if search is not None else None] if partition or search is not None else []
    )
    whole = _key("lineage", fingerprints, order, resolve, realign is not None, *part) if memo else ""
    if memo is not None and (found := lineage_from_json(memo.get(whole))) is not None:
        return found
    lineage = _by_family(fingerprints, order, resolve, memo, partition)
    if realign is not None:
        searched = lineage.roots if search is None else [r for r in lineage.roots if r in search]
        before = {(e.parent, e.child, e.relation) for e in lineage.edges}
        lineage = rediscover(
            Lineage(lineage.models, lineage.edges, searched, lineage.notes),
            fingerprints,
            realign,
            lambda fps: _attribute(fps, order=order, adapter_base=resolve),
            order,
            memo,
        )
        after = {(e.parent, e.child, e.relation) for e in lineage.edges}
        lineage.rediscovered = sorted({n for e in before ^ after for n in e[:2]})
    if memo is not None:
        memo.put(whole, lineage_json(lineage))
    return lineage


def _key(
    step: str,
    fingerprints: Mapping[str, Fingerprint],
    order: Mapping[str, Any] | None,
    resolve: Callable[[str, Fingerprint], str | None],
    *extra: Any,
) -> str:
    """The memo key of ``step`` on ``fingerprints``: their identities and every hint about them."""
    rows = [
        [
            i,
            identity(fp),
            (order or {}).get(i),
            resolve(i, fp) if fp.kind == "adapter" else None,
        ]
        for i, fp in sorted(fingerprints.items())
    ]
    return key(step, rows, *extra)


def _by_family(
    fingerprints: Mapping[str, Fingerprint],
    order: Mapping[str, Any] | None,
    resolve: Callable[[str, Fingerprint], str | None],
    memo: Memo | None = None,
    partition: bool = False,
) -> Lineage:
    if len(fingerprints) < PARTITION_FROM and not partition:
        return _attribute(fingerprints, order=order, adapter_base=resolve)

    def family(fps: dict[str, Fingerprint]) -> Lineage:
        return _attribute(fps, order=order, adapter_base=resolve)

    members = [{i: fingerprints[i] for i in g} for g in families_by_signature(fingerprints, resolve, memo)]
    keys = [_key("family", fps, order, resolve) if memo is not None else "" for fps in members]
    found = [lineage_from_json(memo.get(k)) if memo is not None else None for k in keys]
    # each family's lineage is its own (families are independent): those not kept are recovered
    # side by side, and put into the memo in the order one after another would
    todo = [fps for fps, lin in zip(members, found, strict=True) if lin is None]
    made = iter(map_forked(family, todo, workers(len(todo), FORK_FAMILIES_FROM)))
    lineages = []
    for k, lin in zip(keys, found, strict=True):
        if lin is None:
            lin = next(made)
            if memo is not None:
                memo.put(k, lineage_json(lin))
        lineages.append(lin)
    ids = sorted(fingerprints)
    edges = sorted((e for lin in lineages for e in lin.edges), key=lambda e: (e.child, e.parent))
    children = {e.child for e in edges}
    notes = [n for lin in lineages for n in lin.notes]
    return Lineage(ids, edges, [m for m in ids if m not in children], notes)


def _attribute(
    fingerprints: Mapping[str, Fingerprint],
    *,
    order: Mapping[str, Any] | None = None,
    adapter_base: Callable[[str, Fingerprint], str | None] | None = None,
) -> Lineage:
    import numpy as np

    ids = sorted(fingerprints)
    views = [View(fingerprints[i]) for i in ids]
    models = [i for i, v in enumerate(views) if v.fp.kind == "model"]
    model_views = [views[i] for i in models]
    pairs_local = pairwise(model_views)
    pairs = {(models[a], models[b]): p for (a, b), p in pairs_local.items()}
    edges: list[Edge] = []
    notes: list[str] = []

    def pair(i: int, j: int) -> Pair | None:
        return pairs.get((i, j)) if i < j else pairs.get((j, i))

    related = {k: p for k, p in pairs.items() if p.related}
    families = components(models, related)

    # 2. copies: first the same weights saved again (twins), then lossy and sparse copies
    copy_parent: dict[int, tuple[int, Copy]] = {}
    twin_of: dict[int, int] = {}  # model -> the original of its twins
    twin_links = [k for k in related if same_weights(views[k[0]].fp, views[k[1]].fp)]
    for group in components(sorted({n for k in twin_links for n in k}), twin_links):
        original, dated = original_of(group, ids, order)
        for n in group:
            twin_of[n] = original
            if n != original:
                # undated twins: which is the copy is a guess, and the confidence says so
                copy_parent[n] = (original, Copy("quantized", 1.0, True) if dated else UNDIRECTED)
                notes.append(
                    f"{ids[n]} has the same weights as {ids[original]} (every tensor equal): "
                    "a lossless copy, reported as quantized"
                    + ("" if dated else "; nothing says which came first")
                )
    # the same weight matrices, other vectors: biases, normalisation statistics (a BatchNorm
    # recalibration), buffers. The matrices, all the tree reads, cannot orient such a pair.
    flat = [
        k
        for k in related
        if not {*k} & set(copy_parent)
        and views[k[0]].keys == views[k[1]].keys
        and np.array_equal(views[k[0]].x, views[k[1]].x, equal_nan=True)
    ]
    for group in components(sorted({n for k in flat for n in k}), flat):
        original, dated = original_of(group, ids, order)
        if not dated:
            # undated, the one whose other tensors its relatives share (a recalibration's statistics
            # are its own; its parent's are its parent's and its children's), when that is one model
            rest = [m for m in models if m not in group and pair(m, group[0]) is not None]
            kept = {n: sum(vectors_kept(views[n], views[m]) for m in rest) for n in group}
            top = max(kept.values())
            if top > 0 and sum(1 for v in kept.values() if v == top) == 1:
                original = max(group, key=kept.__getitem__)
        for n in group:
            if n != original:
                copy_parent[n] = (original, Copy("finetune", 1.0, True, directed=dated))
                notes.append(
                    f"{ids[n]} has the weight matrices of {ids[original]}; only its other tensors differ"
                    + ("" if dated else "; nothing says which came first")
                )
    for child in models:
        if child in copy_parent:
            continue
        found = []
        for parent in models:
            p = pair(parent, child)
            if parent == child or p is None or not p.related or twin_of.get(parent, parent) != parent:
                continue  # a twin's copies are the original's
            test = copy_test(views[parent], views[child], p)
            if test is not None:
                found.append((parent, test, p))
        if found:
            copy_parent[child] = best_copy_parent(child, found, views)
    for child, (parent, test) in copy_parent.items():
        edges.append(
            Edge(
                parent=ids[parent], child=ids[child], relation=test.relation, confidence=copy_confidence(test)
            )
        )

    # 3. merges, among the models that are not copies
    core = [i for i in models if i not in copy_parent]
    merged: dict[int, Merge] = {}
    for family in families:
        pool = [i for i in family if i in core]
        for target in pool:
            mix = merge_test(target, views, pool)
            if mix is not None:
                merged[target] = mix
    for target, m in merged.items():
        for parent, w in zip(m.parents, m.weights, strict=True):
            edges.append(
                Edge(
                    parent=ids[parent],
                    child=ids[target],
                    relation="merge",
                    confidence=max(0.5, 0.99 - m.residual),
                    weight=w,
                )
            )

    # 4. adapters
    resolve = adapter_base or default_adapter_base(ids)
    for i, v in enumerate(views):
        if v.fp.kind != "adapter":
            continue
        edge, note = adapter_edge(ids[i], v, resolve, fingerprints)
        if edge is not None:
            edges.append(edge)
        if note:
            notes.append(note)

    # 5. fine-tunes
    tree = [i for i in core if i not in merged]
    index = {name: i for i, name in enumerate(ids)}
    attached: dict[int, int] = {}
    for e in edges:
        attached[index[e.parent]] = attached.get(index[e.parent], 0) + 1
    ft_edges = finetune_forest(tree, families, pair, views, ids, order, merged, attached)
    ft_edges = attach_to_merges(ft_edges, merged, pair, views, ids, edges, order)
    edges.extend(under_copies(ft_edges, copy_parent, pair, views, ids, order))

    edges.sort(key=lambda e: (e.child, e.parent))
    children = {e.child for e in edges}
    return Lineage(ids, edges, [m for m in ids if m not in children], notes)


def under_copies(
    ft_edges: list[Edge],
    copy_parent: Mapping[int, tuple[int, Copy]],
    pair: Callable[[int, int], Pair | None],
    views: Sequence[View],
    ids: Sequence[str],
    order: Mapping[str, Any] | None = None,
) -> list[Edge]:
    """A fine-tune made from a copy (a bfloat16 release of a float32 master, say) goes under that copy.

    Copies stay out of the fine-tune tree, which puts such a child under the
    copy's original, or under a barely changed sibling of it. Trained from the
    copy, the child differs from the original by its own update *and* the copy's
    rounding, and from the copy by its update alone; trained from the original,
    the reverse. Rounding is independent of the update, so the plain relative
    distance (squared, the two add) says which. Every copy is tried whose
    original is related to the child, not only the copies of the parent the tree
    chose. A child as coarse as the copy (a fine-tune saved in bfloat16) carries a
    rounding of its own, which the distances cannot tell from the copy's, and a
    copy released after the child is not its parent: both stay where they are.
    Where the child's values say which model of the copy's format it was trained from
    (see :func:`grid_parent`; the copies of that format and the fine-tunes of it the tree
    made parents compete), that decides, whatever the distances: a barely changed fine-tune
    of the original, moved the same way, can sit nearer than the copy.
    """
    import networkx as nx

    index = {name: i for i, name in enumerate(ids)}
    graph = nx.DiGraph([(index[e.parent], index[e.child]) for e in ft_edges])
    graph.add_edges_from((parent, child) for child, (parent, _) in copy_parent.items())
    parents = {index[e.parent] for e in ft_edges}  # a lower-precision fine-tune that is none is a leaf
    out = []
    for e in ft_edges:
        parent, child = index[e.parent], index[e.child]
        now = pair(parent, child)
        below = nx.descendants(graph, child) if child in graph else set()
        options = []
        by_grid = []
        for q, (original, _) in copy_parent.items() if now is not None else []:
            if views[child].precision <= views[q].precision or later(ids[q], e.child, order):
                continue
            if original in below or q in below:
                continue
            peers = [m for m in parents | set(copy_parent) if views[m].precision == views[q].precision]
            if grid_parent(child, peers, views, pair, base=original) == q:
                by_grid.append(q)
                continue
            here, p, rounding = pair(original, child), pair(q, child), pair(original, q)
            if here is None or p is None or rounding is None or not p.related or rounding.distance == 0:
                continue
            if p.distance >= now.distance:  # type: ignore[union-attr]
                continue
            # from the copy, the original is further by the copy's rounding: d(p,c)² ≈ d(q,c)² + d(p,q)²;
            # from the original, the reverse. The gap must sit near the first, past the noise of the
            # cross term (rounding × update, over the samples) three times over; a gap the rounding
            # cannot explain is no evidence either way.
            gap = here.distance**2 - p.distance**2
            r2 = rounding.distance**2
            noise = 3 * 2 * rounding.distance * p.distance / math.sqrt(max(p.samples, 1))
            if r2 / 2 + noise < gap < 1.5 * r2 + noise:
                options.append((p.distance, q))
        if by_grid or options:
            q = min(by_grid) if by_grid else min(options)[1]
            e = Edge(parent=ids[q], child=e.child, relation=e.relation, confidence=e.confidence)
        out.append(e)
    return out
