"""Pictures drawn at build time as inline SVG: lineage graphs and bar charts.

A layered layout (networkx topological generations, then a few barycentre
sweeps to untangle edges) is all a lineage graph of a lake needs; no browser,
no JavaScript. Every string that reaches the SVG goes through :func:`esc`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from html import escape

import networkx as nx

NODE_W, NODE_H, GAP_X, GAP_Y, PAD = 168, 34, 28, 62, 12
# How an edge looks, by status: declared-and-verified edges are solid green; edges only the weights
# show are dotted; contradicted ones are red and dashed.
EDGE_STYLE = {
    "verified": ("lg-e-verified", ""),
    "unchecked": ("lg-e-unchecked", ""),
    "contradicted": ("lg-e-contradicted", "7 4"),
    "undeclared": ("lg-e-undeclared", "2 4"),
}


def esc(text: object) -> str:
    return escape(str(text), quote=True)


def _short(text: str, limit: int = 22) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(frozen=True)
class GraphEdge:
    parent: str
    child: str
    relation: str
    status: str
    declared: bool


def layered_layout(graph: nx.DiGraph) -> dict[str, tuple[int, int]]:
    """Node -> (layer, position in layer): layers by topological generation, ordered by barycentre."""
    try:
        layers = [sorted(g) for g in nx.topological_generations(graph)]
    except nx.NetworkXUnfeasible:  # a cycle (the catalog reports it as an error): draw one row
        layers = [sorted(graph.nodes)]
    order = {n: i for layer in layers for i, n in enumerate(layer)}
    for sweep in range(4):
        down = sweep % 2 == 0
        near = graph.predecessors if down else graph.successors
        for layer in layers[1:] if down else layers[-2::-1]:
            keys = {n: (_centre(near(n), order, n), n) for n in layer}
            layer.sort(key=keys.__getitem__)
            order.update({n: i for i, n in enumerate(layer)})
    return {n: (li, i) for li, layer in enumerate(layers) for i, n in enumerate(layer)}


def _centre(neighbours: Iterable[str], order: dict[str, int], node: str) -> float:
    """The mean position of a node's neighbours in the next layer (its own position when it has none)."""
    positions = [order[p] for p in neighbours]
    return sum(positions) / len(positions) if positions else order[node]


def lineage_svg(
    nodes: dict[str, str | None],
    edges: Sequence[GraphEdge],
    *,
    focus: str | None = None,
    title: str = "Lineage",
    max_nodes: int = 60,
) -> str:
    """An SVG of a lineage graph. ``nodes`` maps id -> link URL (None for entries outside the lake)."""
    graph = nx.DiGraph()
    graph.add_nodes_from(list(nodes)[:max_nodes])
    for e in edges:
        if e.parent in graph and e.child in graph:
            graph.add_edge(e.parent, e.child)
    pos = layered_layout(graph)
    if not pos:
        return ""
    widest = max(sum(1 for p in pos.values() if p[0] == layer) for layer in {p[0] for p in pos.values()})
    n_layers = 1 + max(p[0] for p in pos.values())
    width = PAD * 2 + widest * NODE_W + (widest - 1) * GAP_X
    height = PAD * 2 + n_layers * NODE_H + (n_layers - 1) * GAP_Y
    counts = {layer: sum(1 for p in pos.values() if p[0] == layer) for layer in range(n_layers)}

    def xy(node: str) -> tuple[float, float]:
        layer, i = pos[node]
        row = counts[layer] * NODE_W + (counts[layer] - 1) * GAP_X
        x0 = (width - row) / 2
        return x0 + i * (NODE_W + GAP_X), PAD + layer * (NODE_H + GAP_Y)

    out = [
        f'<svg class="lg-graph" xmlns="http://www.w3.org/2000/svg" role="img" '
        f'viewBox="0 0 {width} {height}" width="{width}" height="{height}">',
        f"<title>{esc(title)}</title>",
        '<defs><marker id="lg-arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto-start-reverse"><path d="M0 0L10 5L0 10z" class="lg-arrow"/>'
        "</marker></defs>",
    ]
    for e in edges:
        if e.parent not in pos or e.child not in pos:
            continue
        (x1, y1), (x2, y2) = xy(e.parent), xy(e.child)
        sx, sy, tx, ty = x1 + NODE_W / 2, y1 + NODE_H, x2 + NODE_W / 2, y2
        if pos[e.child][0] <= pos[e.parent][0]:  # drawn against the layering (a cycle)
            sy, ty = y1, y2 + NODE_H
        cls, dash = EDGE_STYLE.get(e.status, EDGE_STYLE["unchecked"])
        mid = (sy + ty) / 2
        label = e.relation + ("" if e.declared else " (weights)")
        out.append(
            f'<g class="lg-edge {cls}" data-parent="{esc(e.parent)}" data-child="{esc(e.child)}">'
            f"<title>{esc(e.parent)} → {esc(e.child)}: {esc(label)}, {esc(e.status)}</title>"
            f'<path d="M{sx:.0f} {sy:.0f}C{sx:.0f} {mid:.0f} {tx:.0f} {mid:.0f} {tx:.0f} {ty - 2:.0f}" '
            f'fill="none" marker-end="url(#lg-arrow)"'
            + (f' stroke-dasharray="{dash}"' if dash else "")
            + "/>"
            f'<text x="{(sx + tx) / 2:.0f}" y="{mid - 3:.0f}" text-anchor="middle" class="lg-elabel">'
            f"{esc(_short(e.relation, 14))}</text></g>"
        )
    for node in pos:
        x, y = xy(node)
        url = nodes.get(node)
        cls = "lg-node" + (" lg-focus" if node == focus else "") + ("" if url else " lg-external")
        box = (
            f'<rect x="{x:.0f}" y="{y:.0f}" width="{NODE_W}" height="{NODE_H}" rx="6"/>'
            f'<text x="{x + NODE_W / 2:.0f}" y="{y + NODE_H / 2 + 4:.0f}" text-anchor="middle">'
            f"{esc(_short(node))}</text>"
        )
        tip = f"<title>{esc(node)}</title>"
        if url:
            out.append(f'<a href="{esc(url)}" class="{cls}" data-node="{esc(node)}">{tip}{box}</a>')
        else:
            out.append(f'<g class="{cls}" data-node="{esc(node)}">{tip}{box}</g>')
    out.append("</svg>")
    return "".join(out)


def bar_chart(
    rows: Sequence[tuple[str, float, str]],
    *,
    title: str,
    links: dict[str, str] | None = None,
    width: int = 640,
) -> str:
    """A horizontal bar chart of (label, value, status) rows, largest first as given."""
    if not rows:
        return ""
    label_w, bar_h, gap, value_w = 190, 18, 6, 70
    lo = min(0.0, *(v for _, v, _ in rows))
    hi = max(v for _, v, _ in rows)
    span = (hi - lo) or 1.0
    plot = width - label_w - value_w
    height = len(rows) * (bar_h + gap) + gap
    out = [
        f'<svg class="lg-chart" xmlns="http://www.w3.org/2000/svg" role="img" '
        f'viewBox="0 0 {width} {height}" width="{width}" height="{height}"><title>{esc(title)}</title>'
    ]
    for i, (label, value, status) in enumerate(rows):
        y = gap + i * (bar_h + gap)
        w = max(1.0, (value - lo) / span * plot) if math.isfinite(value) else 1.0
        name = esc(_short(label, 26))
        url = (links or {}).get(label)
        text = f'<text x="{label_w - 6}" y="{y + bar_h - 5}" text-anchor="end">{name}</text>'
        if url:
            text = f'<a href="{esc(url)}">{text}</a>'
        out.append(
            f'<g class="lg-bar lg-s-{esc(status)}"><title>{esc(label)}: {value:.4g} ({esc(status)})</title>'
            f'{text}<rect x="{label_w}" y="{y}" width="{w:.1f}" height="{bar_h}" rx="3"/>'
            f'<text x="{label_w + w + 4:.1f}" y="{y + bar_h - 5}">{value:.4g}</text></g>'
        )
    out.append("</svg>")
    return "".join(out)
