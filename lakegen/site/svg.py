"""Pictures drawn at build time: lineage graphs as inline SVG, and the scale of leaderboard charts.

A layered layout (networkx topological generations, then a few barycentre
sweeps to untangle edges) is all a lineage graph of a lake needs. Pictures are
drawn at their natural size (12 px labels) inside a scrolling viewport that
``assets/lakegen-graph.js`` can zoom and pan, rather than shrunk to the
column: a family of 50 models stays legible. Every string that reaches the SVG goes
through :func:`esc`; the SVGs are ``role="group"`` (they hold links, so they
cannot be images) and each is followed by the same facts as a table. Leaderboard bars are
HTML (``board.html``), so they reflow on a phone; :func:`axis` gives them a scale.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from html import escape

import networkx as nx

from lakegen.model.index import Edge

# Columns are generations (parents left of their children), so long names sit side by side and a
# family of 50 grows downwards, the way a page scrolls; GAP_X leaves room for the edge labels.
NODE_H, GAP_X, GAP_Y, PAD = 34, 110, 12, 16
# A generous width per character of the 12 px label font (DejaVu Sans, Debian's default, is wide),
# so a name fits its box whatever sans-serif the reader has; longer names are cut and shown whole
# on hover and in the table beside the picture.
CHAR_W, MIN_W, MAX_W = 7.4, 96, 340
# How an edge looks, by status: declared-and-verified solid green, declared-not-checked solid grey,
# contradicted dashed red and thicker, weights-only dotted blue.
EDGE_DASH = {"verified": "", "unchecked": "", "contradicted": "9 5", "undeclared": "1 6"}


def esc(text: object) -> str:
    return escape(str(text), quote=True)


def text_width(text: str, char_w: float = CHAR_W) -> float:
    return len(text) * char_w


def _fit(text: str, width: float) -> str:
    """``text``, cut with an ellipsis to about ``width`` pixels of label font."""
    limit = max(4, int(width / CHAR_W))
    return text if len(text) <= limit else text[: limit - 1] + "…"


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


def _place(graph: nx.DiGraph, pos: dict[str, tuple[int, int]]) -> dict[str, float]:
    """Node -> row (0, 1, ...) within its column, tree-like: each node first as near its parents'
    mean row as the nodes above it allow, then each parent moved level with its children's middle."""
    columns: dict[int, list[str]] = {}
    for node in sorted(pos, key=pos.__getitem__):
        columns.setdefault(pos[node][0], []).append(node)
    rows: dict[str, float] = {}

    def settle(column: list[str], near: Callable[[str], Iterable[str]]) -> None:
        last = -1.0
        for node in column:
            seen = [rows[n] for n in near(node) if n in rows and n not in column]
            want = sum(seen) / len(seen) if seen else rows.get(node, 0.0)
            rows[node] = last = max(want, last + 1)

    for c in sorted(columns):
        settle(columns[c], graph.predecessors)
    for c in sorted(columns, reverse=True)[1:]:
        settle(columns[c], graph.successors)
    top = min(rows.values())
    return {n: r - top for n, r in rows.items()}


def lineage_svg(
    nodes: dict[str, str | None],
    edges: Sequence[Edge],
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
    widths = {n: min(MAX_W, max(MIN_W, text_width(n) + 24)) for n in pos}
    columns = 1 + max(p[0] for p in pos.values())
    col_w = [max(widths[n] for n in pos if pos[n][0] == c) for c in range(columns)]
    col_x = [PAD + sum(col_w[:c]) + GAP_X * c for c in range(columns)]
    rows = _place(graph, pos)
    box = {n: (col_x[pos[n][0]], PAD + rows[n] * (NODE_H + GAP_Y), col_w[pos[n][0]]) for n in pos}
    width = col_x[-1] + col_w[-1] + PAD
    height = max(y for _, y, _ in box.values()) + NODE_H + PAD
    drawn = [e for e in edges if e.parent in box and e.child in box]
    out = [
        f'<svg class="lg-graph" xmlns="http://www.w3.org/2000/svg" role="group" '
        f'aria-label="{esc(title)}: {len(box)} entries, {len(drawn)} edges (listed in the table)" '
        f'viewBox="0 0 {width:.0f} {height:.0f}" width="{width:.0f}" height="{height:.0f}"'
        + (f' data-focus="{esc(focus)}"' if focus in box else "")
        + ">",
        "<defs>"
        + "".join(
            f'<marker id="lg-arrow-{s}" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
            f'markerHeight="7" orient="auto-start-reverse"><path d="M0 0L10 5L0 10z" class="lg-arrow-{s}"/>'
            "</marker>"
            for s in EDGE_DASH
        )
        + "</defs>",
    ]
    labels: list[str] = []
    placed: list[tuple[float, float, float]] = []  # x, y, half width of each edge label
    for e in drawn:
        (x1, y1, w1), (x2, y2, w2) = box[e.parent], box[e.child]
        sx, sy, tx, ty = x1 + w1, y1 + NODE_H / 2, x2, y2 + NODE_H / 2
        if tx <= sx:  # one column (a cycle, which the catalog reports): a loop out to the right
            tx = x2 + w2
            c1 = c2 = max(sx, tx) + 48
        else:
            bend = max(30.0, (tx - sx) / 2)
            c1, c2 = sx + bend, tx - bend
        status = e.status if e.status in EDGE_DASH else "unchecked"
        dash = EDGE_DASH[status]
        label = e.relation + ("" if e.declared else " (weights only)")
        out.append(
            f'<g class="lg-edge lg-e-{status}" data-parent="{esc(e.parent)}" data-child="{esc(e.child)}">'
            f"<title>{esc(e.parent)} → {esc(e.child)}: {esc(label)}, {esc(status)}</title>"
            f'<path d="M{sx:.0f} {sy:.0f}C{c1:.0f} {sy:.0f} {c2:.0f} {ty:.0f} {tx:.0f} {ty:.0f}" '
            f'fill="none" marker-end="url(#lg-arrow-{status})"'
            + (f' stroke-dasharray="{dash}"' if dash else "")
            + "/></g>"
        )
        # The label sits past the middle of its edge, where a parent's edges have fanned apart, or
        # elsewhere along it where another label (a second parent's) is already there.
        text = _fit(e.relation, 120)
        half = text_width(text, 6.2) / 2 + 2
        for t in (0.6, 0.42, 0.75, 0.28):
            lx = (1 - t) ** 3 * sx + 3 * (1 - t) ** 2 * t * c1 + 3 * (1 - t) * t**2 * c2 + t**3 * tx
            ly = (1 - t) ** 3 * sy + 3 * (1 - t) ** 2 * t * sy + 3 * (1 - t) * t**2 * ty + t**3 * ty
            if all(abs(lx - px) > half + ph or abs(ly - py) > 13 for px, py, ph in placed):
                break
        placed.append((lx, ly, half))
        labels.append(
            f'<text x="{lx:.0f}" y="{ly - 4:.0f}" text-anchor="middle" class="lg-elabel lg-e-{status}" '
            f'aria-hidden="true">{esc(text)}</text>'
        )
    out.extend(labels)
    for node, (x, y, w) in box.items():
        url = nodes.get(node)
        cls = "lg-node" + (" lg-focus" if node == focus else "") + ("" if url else " lg-external")
        shape = (
            f'<rect x="{x:.0f}" y="{y:.0f}" width="{w:.0f}" height="{NODE_H}" rx="6"/>'
            f'<text x="{x + w / 2:.0f}" y="{y + NODE_H / 2 + 4:.0f}" text-anchor="middle">'
            f"{esc(_fit(node, w - 16))}</text>"
        )
        tip = f"<title>{esc(node)}{'' if url else ' (outside the lake)'}</title>"
        if url:
            here = ' aria-current="page"' if node == focus else ""
            out.append(f'<a href="{esc(url)}" class="{cls}" data-node="{esc(node)}"{here}>{tip}{shape}</a>')
        else:
            out.append(f'<g class="{cls}" data-node="{esc(node)}">{tip}{shape}</g>')
    out.append("</svg>")
    return "".join(out)


def nice_step(span: float) -> float:
    """A round tick step (1, 2 or 5 times a power of ten) giving about four ticks over ``span``."""
    raw = span / 4 if span > 0 else 1.0
    power = 10 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= raw)


def axis(values: Sequence[float]) -> tuple[float, float, float]:
    """(low, high, step) of an axis that shows the differences between ``values``.

    Bars of 0.93 and 0.976 drawn from 0 look the same; the axis starts a step
    below the smallest value instead (never below 0 for values that are all
    positive), and its ticks are labelled, so the cut is shown.
    """
    vmin, vmax = min(values), max(values)
    step = nice_step(vmax - vmin if vmax > vmin else abs(vmax) * 0.1 or 1.0)
    lo = math.floor(vmin / step) * step - step
    hi = math.ceil(vmax / step) * step
    if vmin >= 0 > lo:
        lo = 0.0
    return lo, max(hi, lo + step), step
