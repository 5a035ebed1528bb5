"""lakegen.attribution.branching gives networkx's minimum spanning arborescence, edge order and ties included."""

from __future__ import annotations

import random

import networkx as nx
import pytest

from lakegen.attribution.branching import minimum_spanning_arborescence


def networkx_edges(nodes: list[int], edges: list[tuple[int, int, float]]) -> list[tuple[int, int]] | None:
    graph = nx.DiGraph()
    graph.add_nodes_from(nodes)
    graph.add_weighted_edges_from(edges)
    try:
        return list(nx.minimum_spanning_arborescence(graph).edges())
    except nx.NetworkXException:
        return None


def random_graph(rng: random.Random) -> tuple[list[int], list[tuple[int, int, float]]]:
    """A digraph as trees._arborescence builds them: units (some negative: merge groups), dense
    edges whose weights come from a few values (ties everywhere), often a virtual root -1."""
    n = rng.randint(1, 9)
    nodes = rng.sample([*range(12), -2, -3], n)
    values = [rng.choice([0.5, 1.0, 1.5, 2.0, 3.0]) for _ in range(rng.randint(1, 4))]
    if rng.random() < 0.3:  # or floats, as distances are
        values = [rng.random() for _ in range(8)]
    density = rng.choice([0.3, 0.7, 1.0])
    edges = [(u, v, rng.choice(values)) for u in nodes for v in nodes if u != v and rng.random() < density]
    if rng.random() < 0.8:
        top = max((w for *_, w in edges), default=1.0)
        virtual = (top + 1e-300) * (n + 1)
        edges += [(-1, u, virtual * rng.choice([1, 1, 2])) for u in nodes]
        nodes = [*nodes, -1]
    return nodes, edges


@pytest.mark.parametrize("seed", range(40))
def test_the_same_edges_as_networkx_in_the_same_order(seed: int) -> None:
    rng = random.Random(seed)
    compared = 0
    for _ in range(100):
        nodes, edges = random_graph(rng)
        expected = networkx_edges(nodes, edges)
        assert minimum_spanning_arborescence(nodes, edges) == expected, (nodes, edges)
        compared += expected is not None
    assert compared > 20  # most have an arborescence: the comparison is not of Nones


def test_a_cycle_of_equal_weights_is_broken_as_networkx_breaks_it() -> None:
    nodes = [0, 1, 2, 3]
    edges = [(u, v, 1.0) for u in nodes for v in nodes if u != v]
    expected = networkx_edges(nodes, edges)
    assert expected is not None and len(expected) == 3
    assert minimum_spanning_arborescence(nodes, edges) == expected


def test_no_arborescence_where_networkx_finds_none() -> None:
    nodes = [0, 1, 2, 3]
    edges = [(0, 1, 1.0), (2, 3, 1.0)]  # two parts, no root reaches both
    assert networkx_edges(nodes, edges) is None
    assert minimum_spanning_arborescence(nodes, edges) is None
