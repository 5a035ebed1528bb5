"""Fine-tune trees per family: spanning arborescences with merge parents as siblings, or release order."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from lakegen.attribution.branching import minimum_spanning_arborescence
from lakegen.attribution.distances import bulk_distance, exactly_low_rank, lineage_distance, spectral_distance
from lakegen.attribution.edges import UNDECIDED, Edge
from lakegen.attribution.families import components
from lakegen.attribution.merges import Merge, carries_merge
from lakegen.attribution.precision import (
    CARRIED_BACK,
    NOISE_LEVEL,
    between,
    carried,
    earliest_alike,
    from_master,
    grid_parent,
)
from lakegen.attribution.roots import choose_root, edge_confidence, placement_confidence
from lakegen.attribution.views import (
    Pair,
    View,
    inherits_what_it_lacks,
    resolve,
    rounding_removed,
)

TIE_PENALTY = 0.04  # breaks near-ties in distance towards the less mature parent
INHERITED_PENALTY = 10.0  # on an edge whose child holds what its parent lacks and a relative has


def finetune_forest(
    tree: Sequence[int],
    families: Sequence[Sequence[int]],
    pair: Callable[[int, int], Pair | None],
    views: Sequence[View],
    ids: Sequence[str],
    order: Mapping[str, Any] | None,
    merged: Mapping[int, Merge],
    attached: Mapping[int, int],
) -> list[Edge]:
    """Fine-tune edges per family: by release order when it is complete, else a spanning tree on
    lineage distance, rooted by tree-level evidence."""
    members = set(tree)
    edges: list[Edge] = []
    for family in families:
        nodes = sorted(n for n in family if n in members)
        if len(nodes) < 2:
            continue
        edges.extend(_family_tree(nodes, family, pair, views, ids, order, merged, attached))
    return edges


def _family_tree(
    nodes: list[int],
    family: Sequence[int],
    pair: Callable[[int, int], Pair | None],
    views: Sequence[View],
    ids: Sequence[str],
    order: Mapping[str, Any] | None,
    merged: Mapping[int, Merge],
    attached: Mapping[int, int],
) -> list[Edge]:
    import networkx as nx

    best_precision = max(views[n].precision for n in nodes)
    high = [n for n in nodes if views[n].precision == best_precision]
    lower = [n for n in nodes if views[n].precision != best_precision]
    # the models trained from each lower-precision one, by their values on its grid (a child of a
    # bfloat16 release keeps the weights training left alone); the family's models of its
    # precision, copies included, compete for them
    trained_from: dict[int, set[int]] = {n: set() for n in lower}
    for bits in {views[n].precision for n in lower}:
        peers = [m for m in family if views[m].precision == bits]
        for h in nodes:
            if (g := grid_parent(h, peers, views, pair)) in trained_from:
                trained_from[g].add(h)
    # a lower-precision model is a leaf, unless a precise relative was trained from it
    low = [n for n in lower if not trained_from[n] & set(high)]
    promoted = [n for n in lower if n not in low]
    high += promoted
    if order is not None and _strictly_ordered(nodes, ids, order):
        return _under_nearest_earlier(nodes, set(low), views, ids, order, pair, merged)
    dist: dict[tuple[int, int], float] = {}

    common = [views[n] for n in nodes]

    def d(a: int, b: int) -> float:
        key = (a, b) if a < b else (b, a)
        if key not in dist:
            p = pair(a, b)
            dist[key] = (
                lineage_distance(views[a], views[b], shared_by(p, common)) if p is not None else math.inf
            )
        return dist[key]

    # near-ties between a parent and its barely-changed child are broken towards the less
    # mature model (lower spectral entropy), as the directed tree below would orient them
    maturity = {n: views[n].maturity for n in high}
    ordered = sorted(high, key=lambda n: maturity[n])
    rank = {n: i / max(1, len(high) - 1) for i, n in enumerate(ordered)}

    def weight(a: int, b: int) -> float | None:
        p = pair(a, b)
        if p is None or not p.related:
            return None
        w = d(a, b) * (1 + TIE_PENALTY * rank[a])
        return w * INHERITED_PENALTY if inherits(a, b) else w

    def inherits(a: int, b: int) -> bool:
        if (a, b) not in inherited:
            others = [views[m] for m in high if m not in (a, b)]
            inherited[(a, b)] = inherits_what_it_lacks(views[a], views[b], others)
        return inherited[(a, b)]

    inherited: dict[tuple[int, int], bool] = {}

    arborescence = _sibling_arborescence(high, weight, _sibling_groups(high, merged))
    tree = nx.Graph()
    tree.add_nodes_from(high)
    tree.add_edges_from((a, b, {"weight": d(a, b)}) for b, a in arborescence.items())

    def depth(m: int) -> int:
        seen = [m]
        while (up := arborescence.get(seen[-1])) is not None and up not in seen:
            seen.append(up)
        return len(seen)

    # lower-precision fine-tunes (say, saved in bfloat16) carry rounding noise in every
    # direction: they join as leaves, each next to its nearest model once that noise is removed.
    # Where no direction of the change clears the noise (a short run), the distances are nil and
    # the change left once each candidate's values are taken within the leaf's rounding decides.
    #
    # A leaf and a model that each carry all of the other's update from the model above them: a
    # fine-tune saved in bfloat16 and a child trained briefly from its float32 master, or a later
    # run saved so; which came first, nothing tells (held-out LSTM seeds 4417 and 6203: 0.949)
    unsure: set[frozenset[int]] = set()

    def mutual(n: int, m: int, g: int) -> bool:
        return (
            min(carried(views[n], views[g], views[m]), carried(views[m], views[g], views[n])) >= CARRIED_BACK
        )

    for n in low:
        options = [
            (
                d(n, m) if d(n, m) >= NOISE_LEVEL else 0.0,
                lineage_distance(views[m], rounding_removed(views[n], views[m]), p.shared),
                m,
            )
            for m in nodes
            if m != n and m not in low and (p := pair(n, m)) is not None and p.related
        ]
        if options:
            parent = earliest_alike(min(options)[2], [m for *_, m in options], d, depth)
            # the high tree's own orientation says which end of an edge would be the release's parent
            ends = [(up, True)] if (up := arborescence.get(parent)) is not None else []
            ends += [
                (c, False)
                for c, above in arborescence.items()
                if above == parent and tree.has_edge(c, parent)
            ]
            beyond = between(n, parent, ends, views, pair, d)
            if beyond is not None:
                tree.remove_edge(beyond, parent)
                tree.add_edge(beyond, n, weight=d(n, beyond))
            elif up is not None and mutual(n, parent, up):
                unsure.add(frozenset((n, parent)))
            tree.add_edge(parent, n, weight=d(n, parent))
    if tree.number_of_nodes() < 2:
        return []
    edges = []
    for component in list(nx.connected_components(tree)):
        sub = tree.subgraph(component)
        if sub.number_of_nodes() < 2:
            continue
        low_rank = {frozenset(e) for e in sub.edges() if exactly_low_rank(views[e[0]], views[e[1]], pair(*e))}
        root, scores = choose_root(sub, views, ids, order, merged, attached, low, low_rank)
        if _rehang(tree, sub, root, {n: trained_from[n] for n in promoted}, set(low), weight, views):
            root, scores = choose_root(sub, views, ids, order, merged, attached, low, low_rank)
        for a, b in nx.bfs_edges(sub, root):
            confidence = UNDECIDED if {a, b} in unsure else edge_confidence(sub, a, b, scores, d)
            edges.append(Edge(parent=ids[a], child=ids[b], relation="finetune", confidence=confidence))
    return edges


def _rehang(
    tree: Any,
    sub: Any,
    root: int,
    promoted: Mapping[int, set[int]],
    low: set[int],
    weight: Callable[[int, int], float | None],
    views: Sequence[View],
) -> bool:
    """Move each child of a lower-precision parent of ``promoted`` that was not trained from it
    (not among the models ``promoted`` names for it: its values on that grid, see
    :func:`grid_parent`) under the model outside its own subtree that the spanning
    tree's ``weight`` (parent, child) likes best; True when any moved. Leaves of ``low`` are
    placed by their own rule and are parents of none: they neither move nor take a child.

    A bfloat16-saved fine-tune a precise child's values made a parent joins the tree as any
    model, and its siblings, near it by like objectives, hung under it (held-out MiniLM seed
    5531: a grandchild, a task head and the fine-tune they came from, at 0.83). The tree's
    shape, not the spanning arborescence's directions, is constrained: the tree is rooted after.
    """
    import networkx as nx

    moved = False
    parent_of = {b: a for a, b in nx.bfs_edges(sub, root)}
    for a, mine in promoted.items():
        if a not in sub:
            continue
        strays = [
            c
            for c, up in parent_of.items()
            if up == a and c not in mine and c not in low and not from_master(a, c, parent_of, views)
        ]
        if a not in parent_of and strays:  # the root: one of them is to be its parent
            strays.remove(min(strays, key=lambda c: (weight(c, a) or math.inf, c)))
        for b in strays:
            below = nx.descendants(nx.bfs_tree(sub, root), b) | {b}
            options = [
                (w, m)
                for m in sub
                if m not in below and m != a and m not in low and (w := weight(m, b)) is not None
            ]
            if options:
                tree.remove_edge(a, b)
                tree.add_edge(min(options)[1], b)
                moved = True
    return moved


def shared_by(p: Pair, family: Sequence[View]) -> list[tuple[str, tuple[int, ...]]]:
    """The matrices of ``p`` that every model of ``family`` holds (else all of ``p``'s). Distances
    are compared on these: a model whose task head was replaced, measured on its body alone, would
    sit nearer everyone than its parent does."""
    keys = [k for k in p.shared if all(resolve(v, k) is not None for v in family)]
    return keys or list(p.shared)


SIBLING_TOLERANCE = 0.25


def _sibling_groups(nodes: Sequence[int], merged: Mapping[int, Merge]) -> list[list[int]]:
    """The merge parents among ``nodes``, grouped: parents of one merge, or of merges sharing a parent."""
    members = set(nodes)
    sets = [[q for q in m.parents if q in members] for m in merged.values()]
    sets = [ms for ms in sets if len(ms) >= 2]
    pooled = sorted({q for ms in sets for q in ms})
    return [sorted(g) for g in components(pooled, [(ms[0], q) for ms in sets for q in ms[1:]])]


def _sibling_arborescence(
    nodes: Sequence[int], weight: Callable[[int, int], float | None], groups: Sequence[Sequence[int]]
) -> dict[int, int]:
    """A minimum spanning arborescence (child -> parent) in which merge parents are siblings
    where that costs the tree little.

    People merge fine-tunes of one base (model soups), so a merge's parents are
    siblings. Where a barely changed fine-tune sits almost on its parent, its
    siblings can hang under it at almost no cost; the merge says they do not.
    Each group of merge parents is tried in turn as one unit whose members share
    a parent, and kept when that adds at most ``SIBLING_TOLERANCE`` of the
    members' own edges to the tree. A merge of a model with its own fine-tune
    (WiSE-FT) costs far more than that, or has no common parent at all, and
    keeps the unconstrained tree.
    """
    best = _arborescence(nodes, weight, [])
    assert best is not None  # without groups, every node can be a root
    accepted: list[Sequence[int]] = []
    for group in groups:
        trial = _arborescence(nodes, weight, [*accepted, group])
        if trial is None:
            continue
        extra = _tree_cost(trial, weight) - _tree_cost(best, weight)
        own = sum(weight(trial[m], m) or 0.0 for m in group)
        if extra <= SIBLING_TOLERANCE * own:
            accepted.append(group)
            best = trial
    return best


def _tree_cost(parent: Mapping[int, int], weight: Callable[[int, int], float | None]) -> float:
    return sum(weight(p, c) or 0.0 for c, p in parent.items())


def _arborescence(
    nodes: Sequence[int], weight: Callable[[int, int], float | None], groups: Sequence[Sequence[int]]
) -> dict[int, int] | None:
    """Minimum spanning arborescence over ``nodes`` (child -> parent; roots are absent) in which the
    members of each group share one parent; None when a group can only be roots.

    Each group is contracted into one unit: reaching it from ``x`` costs the sum of
    ``x``'s edges to its members, and leaving it costs its best member's edge. A
    virtual root reaches every single model at a cost above any tree, so each
    connected part gets one root, and a group only at twice that; a fixed huge
    cost (1e9) would swamp the weights' last digits in Edmonds' cycle arithmetic.
    """
    unit_of = {m: -(k + 2) for k, g in enumerate(groups) for m in g}
    units: dict[int, list[int]] = {}
    for n in nodes:
        units.setdefault(unit_of.get(n, n), []).append(n)
    edges: list[tuple[int, int, float]] = []
    source: dict[tuple[int, int], int] = {}  # (unit, unit) -> the member of the first that is the parent
    for u, us in units.items():
        for v, vs in units.items():
            if u == v:
                continue
            options = []
            for x in us:
                costs = [weight(x, m) for m in vs]
                if all(c is not None for c in costs):
                    options.append((sum(costs), x))  # type: ignore[arg-type]
            if options:
                cost, x = min(options)
                edges.append((u, v, cost))
                source[(u, v)] = x
    top = max((w for _, _, w in edges), default=1.0)
    virtual = (top + 1e-300) * (len(units) + 1)
    edges += [(-1, u, virtual * (2 if len(us) > 1 else 1)) for u, us in units.items()]
    found = minimum_spanning_arborescence([*units, -1], edges)
    assert found is not None  # the virtual root reaches every unit
    parent = {}
    for u, v in found:
        if u == -1:
            if len(units[v]) > 1:
                return None
            continue
        for m in units[v]:
            parent[m] = source[(u, v)]
    return parent


def _strictly_ordered(nodes: Sequence[int], ids: Sequence[str], order: Mapping[str, Any]) -> bool:
    """True when every model of the family has an order value (a release date) and no two share one."""
    values = [order.get(ids[n]) for n in nodes]
    if any(v is None for v in values):
        return False
    try:
        ranked: list[Any] = sorted(values)
    except TypeError:
        return False
    return all(a < b for a, b in itertools.pairwise(ranked))


def _under_nearest_earlier(
    nodes: Sequence[int],
    leaves: set[int],
    views: Sequence[View],
    ids: Sequence[str],
    order: Mapping[str, Any],
    pair: Callable[[int, int], Pair | None],
    merged: Mapping[int, Merge],
) -> list[Edge]:
    """Fine-tune edges when release order is known: each model under its nearest earlier relative.

    With the order given, direction is settled, and what is left is placement, where
    the bulk distance is right far more often than any spanning tree (see
    :func:`lineage_distance`). A merge's parents are siblings (see
    :func:`_sibling_arborescence`): a later one goes under the parent of the first
    when that is at most ``SIBLING_TOLERANCE`` further than its nearest. Confidence
    is the placement margin over the runner-up. Lower-precision models that nothing
    was trained from (see :func:`lakegen.attribution.precision.grid_parent`) are parents of none.
    """

    family = [views[n] for n in nodes]

    def distance(a: int, b: int) -> float:
        p = pair(a, b)
        return lineage_distance(views[a], views[b], shared_by(p, family)) if p is not None else math.inf

    def placing(m: int, child: int, p: Pair) -> float:
        b = bulk_distance(views[m], views[child], shared_by(p, family))
        others = [v for v in family if v is not views[m] and v is not views[child]]
        return b * INHERITED_PENALTY if inherits_what_it_lacks(views[m], views[child], others) else b

    ranked = sorted(nodes, key=lambda n: order[ids[n]])
    group_of = {m: k for k, g in enumerate(_sibling_groups(nodes, merged)) for m in g}
    group_parent: dict[int, int] = {}
    edges = []
    for i, child in enumerate(ranked):
        options = sorted(
            (placing(m, child, p), m)
            for m in ranked[:i]
            if m not in leaves and (p := pair(m, child)) is not None and p.related
        )
        if not options:
            continue
        group = group_of.get(child)
        shared = group_parent.get(group) if group is not None else None
        at = next((b for b, m in options if m == shared), None)
        if shared is not None and at is not None and at - options[0][0] <= SIBLING_TOLERANCE * at:
            options = [(at, shared), *(o for o in options if o[1] != shared)]
        best, parent = options[0]
        if child in leaves:
            parent = earliest_alike(parent, [m for _, m in options], distance, lambda m: order[ids[m]])
            best = next(b for b, m in options if m == parent)
        confidence = placement_confidence(best, options[1][0] if len(options) > 1 else None)
        # a lower-precision release between the nearest earlier model and the child: its float32
        # master, which the lake does not hold, is what the child was trained from
        inner = [
            (lineage_distance(views[child], rounding_removed(views[m], views[child]), p.shared), m)
            for m in ranked[:i]
            if m in leaves
            and (p := pair(m, child)) is not None
            and between(m, child, [(parent, True)], views, pair, distance, ordered=True) is not None
        ]
        if inner and child not in leaves:
            near, low_parent = min(inner)
            confidence = placement_confidence(near, distance(parent, child))
            parent = low_parent
        if group is not None:
            group_parent.setdefault(group, parent)
        edges.append(Edge(parent=ids[parent], child=ids[child], relation="finetune", confidence=confidence))
    return edges


def attach_to_merges(
    ft_edges: list[Edge],
    merged: Mapping[int, Merge],
    pair: Callable[[int, int], Pair | None],
    views: Sequence[View],
    ids: Sequence[str],
    fixed: Sequence[Edge],
    order: Mapping[str, Any] | None = None,
) -> list[Edge]:
    """A model fine-tuned from a merge: move it under the merge when that is clearly nearer and it
    carries the merge's parents' own updates in the merge's proportions (see :func:`carries_merge`).

    Nearness is the spectral distance the fine-tune tree uses, with a
    lower-precision child's rounding removed (see :func:`rounding_removed`): a
    fine-tune of one of the merge's parents differs from the merge by its own
    update *and* the other parents' share, so it stays with its parent. A merge
    released after the model is not its parent.
    """
    if not merged:
        return ft_edges
    import networkx as nx

    index = {name: i for i, name in enumerate(ids)}
    out = list(ft_edges)
    up = {index[e.child]: index[e.parent] for e in out}
    for k, e in enumerate(out):
        child, parent = index[e.child], index[e.parent]
        current = pair(parent, child)
        if current is None:
            continue
        here = spectral_distance(views[parent], rounding_removed(views[child], views[parent]), current.shared)
        best = None
        for m in merged:
            p = pair(m, child)
            if p is None or not p.related or later(ids[m], e.child, order):
                continue
            there = spectral_distance(views[m], rounding_removed(views[child], views[m]), p.shared)
            if (
                there < here * 0.9
                and (best is None or there < best[1])
                and (base := common_ancestor(merged[m].parents, up)) is not None
                and carries_merge(views[child], merged[m], views, views[base])
            ):
                best = (m, there)
        if best is None:
            continue
        graph = nx.DiGraph([(x.parent, x.child) for x in [*fixed, *out] if x is not e])
        graph.add_edge(ids[best[0]], e.child)
        if nx.is_directed_acyclic_graph(graph):
            out[k] = Edge(parent=ids[best[0]], child=e.child, relation="finetune", confidence=e.confidence)
    return out


def common_ancestor(nodes: Sequence[int], up: Mapping[int, int]) -> int | None:
    """The nearest model above every one of ``nodes`` in the tree ``up`` (child -> parent), if any."""

    def above(n: int) -> list[int]:
        chain: list[int] = []
        while (n := up.get(n, -1)) != -1 and n not in chain:
            chain.append(n)
        return chain

    chains = [above(n) for n in nodes]
    return next((a for a in chains[0] if all(a in c for c in chains[1:])), None)


def later(a: str, b: str, order: Mapping[str, Any] | None) -> bool:
    """True when the order hints put ``a`` after ``b``."""
    if order is None or order.get(a) is None or order.get(b) is None:
        return False
    try:
        return bool(order[a] > order[b])
    except TypeError:
        return False
