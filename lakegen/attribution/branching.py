"""Minimum spanning arborescences of small graphs: networkx's Edmonds, step for step, on plain dicts.

A family's fine-tune tree is a minimum spanning arborescence of a graph of about ten nodes
(:func:`lakegen.attribution.trees._arborescence`), 1,250 of them at 10,000 models. networkx's
``minimum_spanning_arborescence`` spent 9 ms on each, almost all in building and copying its
multigraphs, which is more than the distances the tree is built on. This is the same algorithm
(``networkx.algorithms.tree.branchings.maximum_branching`` with ``minimal_branching``'s weight
transform, networkx 3.6) doing the same arithmetic in the same order over dicts that iterate
as networkx's graphs do, so that ties are broken as networkx breaks them and the result, the
order of its edges included, is networkx's (tests/test_branching.py checks that on random
graphs full of ties).
"""

from __future__ import annotations

import itertools
from collections.abc import Hashable, Sequence
from typing import TypeVar

Node = Hashable
N = TypeVar("N", bound=Hashable)
Adjacency = dict[Node, dict[Node, dict[int, list[float]]]]  # node -> node -> key -> [weight]


class _Multi:
    """The parts of a networkx ``MultiDiGraph`` Edmonds reads, iterating in the same orders."""

    def __init__(self) -> None:
        self.succ: Adjacency = {}
        self.pred: Adjacency = {}

    def add_node(self, n: Node) -> None:
        if n not in self.succ:
            self.succ[n] = {}
            self.pred[n] = {}

    def add_edge(self, u: Node, v: Node, key: int, data: list[float]) -> None:
        self.add_node(u)
        self.add_node(v)
        if v in self.succ[u]:
            self.succ[u][v][key] = data
        else:
            keys = {key: data}
            self.succ[u][v] = keys
            self.pred[v][u] = keys

    def remove_node(self, n: Node, index: dict[int, tuple[Node, Node, list[float]]]) -> None:
        """Remove ``n`` and its edges, and those edges' keys from ``index``."""
        for keys in (*self.pred[n].values(), *self.succ[n].values()):
            for key in keys:
                index.pop(key, None)
        for v in self.succ[n]:
            del self.pred[v][n]
        for u in self.pred[n]:
            del self.succ[u][n]
        del self.succ[n]
        del self.pred[n]

    def edges(self) -> list[tuple[Node, Node, int, list[float]]]:
        return [(u, v, k, d) for u, vs in self.succ.items() for v, ks in vs.items() for k, d in ks.items()]


class _UnionFind:
    def __init__(self) -> None:
        self.up: dict[Node, Node] = {}

    def find(self, n: Node) -> Node:
        up = self.up
        root = up.setdefault(n, n)
        while up[root] != root:
            root = up[root]
        while n != root:
            n, up[n] = up[n], root
        return root

    def union(self, a: Node, b: Node) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.up[ra] = rb


# the two weight slots of an edge: its weight, and whether Edmonds made it a candidate (in B)
W, CANDIDATE = 0, 1


def minimum_spanning_arborescence(
    nodes: Sequence[N], edges: Sequence[tuple[N, N, float]]
) -> list[tuple[N, N]] | None:
    """The edges (parent, child) of networkx's ``minimum_spanning_arborescence`` of the digraph
    with ``nodes`` and ``edges`` (u, v, weight), in the order its result's ``edges()`` gives them;
    None where networkx raises (no spanning arborescence).

    ``nodes`` and ``edges`` must be in the order a ``networkx.DiGraph`` built from them iterates
    them (its node order; edges grouped by tail in node order, each tail's in insertion order),
    with no repeated edge.
    """
    INF = float("inf")
    high = max((w for *_, w in edges), default=-INF)
    low = min((w for *_, w in edges), default=INF)
    top = high + 1 + (high - low)  # minimal_branching's transform: maximise top - w, all positive
    G = _Multi()  # its nodes in the order the edges bring them, as networkx's copy has them
    G_index: dict[int, tuple[Node, Node, list[float]]] = {}
    for key, (a, b, w) in enumerate(edges):
        data = [top - w, 0.0]
        G.add_edge(a, b, key, data)
        G_index[key] = (a, b, data)

    B = _Multi()
    B_index: dict[int, tuple[Node, Node, list[float]]] = {}
    graphs: list[tuple[Adjacency, dict[int, tuple[Node, Node, list[float]]]]] = []  # pred and index of G^i
    branchings: list[dict[int, tuple[Node, Node, list[float]]]] = []
    circuits: list[list[int]] = []
    minedge_circuit: list[int | None] = []
    selected: set[Node] = set()
    uf = _UnionFind()
    level = 0

    def keep() -> None:
        pred = {v: {u: dict(keys) for u, keys in us.items()} for v, us in G.pred.items()}
        graphs.append((pred, dict(G_index)))
        branchings.append(dict(B_index))

    def contract(v: Node, desired: tuple[Node, int], level: int) -> None:
        u = desired[0]
        path = [u]  # B is a branching plus the desired edge: v's path to u is unique
        while path[-1] != v:
            path.append(next(iter(B.pred[path[-1]])))
        Q_nodes = path[::-1]
        Q_edges = [next(iter(B.succ[a][b])) for a, b in itertools.pairwise(Q_nodes)]
        Q_edges.append(desired[1])
        minweight, minedge = INF, None
        incoming: dict[Node, float] = {}
        for key in Q_edges:
            _, head, data = B_index[key]
            incoming[head] = data[W]
            if data[W] < minweight:
                minweight, minedge = data[W], key
        circuits.append(Q_edges)
        minedge_circuit.append(minedge)
        keep()
        new = ("edmonds", level)
        G.add_node(new)
        new_edges: list[tuple[Node, Node, int, list[float]]] = []
        for a, b, key, data in G.edges():
            if a in incoming:
                if b not in incoming:
                    new_edges.append((new, b, key, list(data)))
            elif b in incoming:
                new_edges.append((a, new, key, [data[W] + (minweight - incoming[b]), data[CANDIDATE]]))
        for n in Q_nodes:
            G.remove_node(n, G_index)
            B.remove_node(n, B_index)
        selected.difference_update(Q_nodes)
        for a, b, key, data in new_edges:
            G.add_edge(a, b, key, data)
            G_index[key] = (a, b, data)
            if data[CANDIDATE]:
                plain = [data[W], 0.0]
                B.add_edge(a, b, key, plain)
                B_index[key] = (a, b, plain)
                uf.union(a, b)

    order = list(G.succ)
    at = 0
    while True:
        if at == len(order):
            keep()
            circuits.append([])
            minedge_circuit.append(None)
            break
        v = order[at]
        at += 1
        if v in selected:
            continue
        selected.add(v)
        B.add_node(v)
        best: tuple[Node, int, list[float]] | None = None
        best_w = -INF
        for u, keys in G.pred[v].items():
            for key, data in keys.items():
                if data[W] > best_w:
                    best_w, best = data[W], (u, key, data)
        if best is not None and best_w > 0:
            u, key, data = best
            closes = uf.find(u) == uf.find(v)  # a circuit in B
            plain = [best_w, 0.0]
            B.add_edge(u, v, key, plain)
            B_index[key] = (u, v, plain)
            data[CANDIDATE] = 1.0
            uf.union(u, v)
            if closes:
                contract(v, (u, key), level)
                order, at = list(G.succ), 0
                level += 1

    chosen = set(branchings[level])
    while level > 0:
        level -= 1
        merged = ("edmonds", level)
        pred, _ = graphs[level + 1]
        entering = next((k for keys in pred[merged].values() for k in keys if k in chosen), None)
        circuit = circuits[level]
        chosen.update(circuit)
        if entering is None:
            minedge = minedge_circuit[level]
            if minedge is None:
                return None
            chosen.remove(minedge)
        else:
            index = graphs[level][1]
            target = index[entering][1]
            chosen.remove(next(k for k in circuit if index[k][1] == target))
    by_tail: dict[N, list[N]] = {n: [] for n in nodes}
    heads: set[N] = set()
    for key in chosen:
        tail, head = edges[key][:2]  # an edge's key is its place in ``edges``
        if head not in by_tail[tail]:
            by_tail[tail].append(head)
        heads.add(head)
    out = [(u, v) for u, vs in by_tail.items() for v in vs]
    # networkx's is_arborescence: a tree (n - 1 edges, connected) with in-degree at most one
    if len(out) != len(nodes) - 1 or len(heads) != len(out):
        return None
    return out
