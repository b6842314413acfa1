"""Architecture drawings: a genome as a small inline SVG graph (inputs left, nodes by depth, edges
coloured by op), made by evonas itself, no graphviz.   [no torch, no plotly]

`draw(genome)` dispatches on the genome's space through `DRAWERS` (one function per space, each
turning a genome into `Graph`s); `legend(genomes)` says what the colours mean. Spaces without a
drawer get None, and the report shows their text description only.
"""

from __future__ import annotations

import html
import math
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from evo_nas.genome import Genome
from evo_nas.spaces.base import reduction_layers
from evo_nas.spaces.cells import CELLS, live_states

# One colour per op, the same in every report. Convolutions are blues (separable) and greens
# (dilated) that darken with the kernel; parameter-free ops are dashed.
OP_COLORS = {
    "sep_conv_3x3": "#6baed6", "sep_conv_5x5": "#3182bd", "sep_conv_7x7": "#08519c",
    "dil_conv_3x3": "#74c476", "dil_conv_5x5": "#238b45", "conv_7x1_1x7": "#9467bd",
    "nor_conv_1x1": "#6baed6", "nor_conv_3x3": "#08519c",
    "avg_pool_3x3": "#fd8d3c", "max_pool_3x3": "#d62728", "skip_connect": "#7f7f7f",
}
DASHED = frozenset({"skip_connect", "avg_pool_3x3", "max_pool_3x3"})  # no weights
SPARE = ("#e377c2", "#bcbd22", "#17becf", "#8c564b", "#393b79", "#637939")  # ops of a space of one's own
PLAIN, SKIP, MUTED = "#555555", "#ff7f0e", "#bbbbbb"
LEGEND_WIDTH = 720  # pixels before the key wraps


@dataclass(frozen=True)
class Node:
    key: object  # unique within its graph
    label: str
    kind: str = "op"  # "input", "op", "output" or "dead" (cannot reach the output)
    title: str = ""
    column: int | None = None  # fixed column; None: by depth
    size: tuple[int, int] = (22, 22)  # width, height; equal sides draw a circle
    bold: bool = False


@dataclass(frozen=True)
class Edge:
    src: object
    dst: object
    color: str = PLAIN
    title: str = ""
    dashed: bool = False


@dataclass(frozen=True)
class Graph:
    name: str  # the panel's label: "normal cell", "cell", "layer stack"
    nodes: tuple[Node, ...]
    edges: tuple[Edge, ...]
    column_width: int = 52
    row_height: int = 30


def op_color(op: str) -> str:
    return OP_COLORS.get(op) or SPARE[zlib.crc32(op.encode()) % len(SPARE)]


# -- one function per space: genome -> graphs ---------------------------------------------------

def cell_graphs(genome, **_) -> list[Graph]:
    """A cells genome: the normal and the reduction cell, blocks as their state numbers."""
    graphs = []
    for which in CELLS:
        cell = getattr(genome, which)
        live, outputs = live_states(cell), cell.output_states()
        nodes = [Node(0, "k-2", "input", "state 0: the output of cell k-2"),
                 Node(1, "k-1", "input", "state 1: the output of cell k-1")]
        edges = []
        for i, block in enumerate(cell.blocks):
            state = i + 2
            alive = state in live
            nodes.append(Node(state, str(state), "op" if alive else "dead",
                              f"block {i}: state {state}" + ("" if alive else " (unused: reaches no output)")))
            for b in block.branches:
                edges.append(Edge(b.input, state, op_color(b.op) if alive else MUTED,
                                  f"{b.op}: state {b.input} to {state}", b.op in DASHED))
        nodes.append(Node("out", "out", "output", f"concat of states {', '.join(map(str, outputs))}",
                          size=(30, 22)))
        edges += [Edge(s, "out", MUTED, f"state {s} into the concat") for s in outputs]
        graphs.append(Graph(f"{'normal' if which == 'normal' else 'reduction'} cell", tuple(nodes), tuple(edges)))
    return graphs


def nb201_graphs(genome, **_) -> list[Graph]:
    """An NB201 cell: nodes 0-3 in a row, one edge per op that is not `none` (none: no edge)."""
    from evo_nas.spaces.nb201 import EDGES

    fed = {0} | {dst for op, (_, dst) in zip(genome.edges, EDGES) if op != "none"}
    labels = {0: "in", 1: "1", 2: "2", 3: "out"}
    nodes = tuple(Node(n, labels[n], "input" if n == 0 else "output" if n == 3 else "op" if n in fed else "dead",
                       f"node {n}", column=n, size=(26, 22) if n in (0, 3) else (22, 22)) for n in range(4))
    edges = tuple(Edge(src, dst, op_color(op), f"{op}: node {src} to {dst}", op in DASHED)
                  for op, (src, dst) in zip(genome.edges, EDGES) if op != "none")
    return [Graph("cell", nodes, edges, column_width=64)]


def layer_graphs(genome, reductions: int | None = None, **_) -> list[Graph]:
    """A layer stack: the image, each conv layer (kernel and filters; stride-2 ones bold), the
    classifier. Orange edges: skip inputs, concatenated in depth."""
    strided = reduction_layers(len(genome.layers), reductions) if reductions is not None else frozenset()
    nodes = [Node(0, "img", "input", "state 0: the image", size=(30, 22))]
    edges = []
    for j, layer in enumerate(genome.layers):
        stride = " (stride 2)" if j in strided else ""
        nodes.append(Node(j + 1, f"{layer.height}×{layer.width}|{layer.filters}", "op",
                          f"layer {j}: conv {layer.height}×{layer.width}, {layer.filters} filters{stride}",
                          size=(38, 28), bold=j in strided))
        edges += [Edge(s, j + 1, PLAIN if s == j else SKIP, f"state {s} into layer {j}") for s in layer.inputs]
    last = len(genome.layers)
    nodes.append(Node("fc", "fc", "output", "global pooling and the classifier", size=(26, 22)))
    edges.append(Edge(last, "fc", MUTED, f"layer {last - 1} into the classifier"))
    return [Graph("layer stack" + (" (bold: stride 2)" if strided else ""), tuple(nodes), tuple(edges),
                  column_width=56, row_height=36)]


DRAWERS: dict[str, Callable[..., list[Graph]]] = {"cells": cell_graphs, "nb201": nb201_graphs,
                                                  "layers": layer_graphs}


def draw(genome: Genome, **context) -> str | None:
    """The genome as one inline SVG (its graphs stacked), or None for a space without a drawer.
    `context`: what a drawer may use besides the genome (layers: `reductions`)."""
    drawer = DRAWERS.get(genome.space)
    if drawer is None:
        return None
    return svg(drawer(genome, **context), genome.name or genome.space)


def legend(genomes: Iterable[Genome]) -> str | None:
    """An SVG key to the colours the drawings of `genomes` use, or None when nothing to explain."""
    ops, layers, nb201 = set(), False, False
    for g in genomes:
        if g.space == "cells":
            ops |= {b.op for name in CELLS for block in getattr(g, name).blocks for b in block.branches}
        elif g.space == "nb201":
            ops |= {op for op in g.edges if op != "none"}
        layers, nb201 = layers or g.space == "layers", nb201 or g.space == "nb201"
    items = [(op, op_color(op), op in DASHED) for op in sorted(ops, key=lambda o: (o in DASHED, o))]
    if nb201:
        items.append(("none: no edge", "#ffffff", False))
    if layers:
        items += [("input: previous layer", PLAIN, False), ("skip input (concatenated)", SKIP, False)]
    if not items:
        return None
    parts, x, y, width = [], 4.0, 10, 4.0
    for label, color, dashed in items:
        step = 36 + 6.6 * len(label)
        if x > 4 and x + step > LEGEND_WIDTH:  # a new row
            x, y = 4.0, y + 18
        dash = " stroke-dasharray='4 3'" if dashed else ""
        parts.append(f"<line x1='{_n(x)}' y1='{y}' x2='{_n(x + 22)}' y2='{y}' stroke='{color}' stroke-width='2.5'"
                     f"{dash}/><text x='{_n(x + 27)}' y='{y + 4}'>{html.escape(label)}</text>")
        x += step
        width = max(width, x)
    return (f"<svg xmlns='http://www.w3.org/2000/svg' class='arch-legend' width='{_n(width)}' height='{y + 10}' "
            f"font-family='system-ui, sans-serif' font-size='11'>{''.join(parts)}</svg>")


# -- layout and SVG -------------------------------------------------------------------------------

PAD, LABEL = 8, 14  # margin around a panel; height of its label line


def columns(graph: Graph) -> dict[object, int]:
    """Each node's column: fixed, or its depth (longest path from an input); outputs last."""
    preds: dict[object, list] = {n.key: [] for n in graph.nodes}
    for e in graph.edges:
        preds[e.dst].append(e.src)
    col: dict[object, int] = {}

    def depth(key, trail=()) -> int:
        if key not in col:
            if key in trail:  # not a DAG: bugs in a drawer, not in a run
                raise ValueError(f"cycle through {key!r}")
            col[key] = 1 + max((depth(p, (*trail, key)) for p in preds[key]), default=-1)
        return col[key]

    for n in graph.nodes:
        col[n.key] = n.column if n.column is not None else (0 if n.kind == "input" else depth(n.key))
    last = max([c for k, c in col.items() if _node(graph, k).kind != "output"], default=0) + 1
    for n in graph.nodes:
        if n.kind == "output" and n.column is None:
            col[n.key] = max(col[n.key], last)
    return col


def _node(graph: Graph, key) -> Node:
    return next(n for n in graph.nodes if n.key == key)


def positions(graph: Graph, col: dict[object, int]) -> tuple[dict[object, tuple[float, float]], float, float]:
    """Node centres in pixels, and the panel's width and height: columns left to right, each
    column's nodes centred vertically in node order."""
    by_col: dict[int, list[Node]] = {}
    for n in graph.nodes:
        by_col.setdefault(col[n.key], []).append(n)
    rows = max(len(v) for v in by_col.values())
    height = rows * graph.row_height
    place = {}
    for c, members in by_col.items():
        top = (height - len(members) * graph.row_height) / 2
        for r, n in enumerate(members):
            place[n.key] = (PAD + 20 + c * graph.column_width, LABEL + PAD + top + (r + 0.5) * graph.row_height)
    width = PAD * 2 + 40 + max(by_col) * graph.column_width
    return place, width, height + LABEL + 2 * PAD


def svg(graphs: list[Graph], label: str = "") -> str:
    """Graphs stacked top to bottom in one SVG element."""
    panels, y, width = [], 0.0, 0.0
    for graph in graphs:
        body, w, h = _panel(graph)
        panels.append(f"<g class='graph' data-name='{html.escape(graph.name)}' transform='translate(0 {_n(y)})'>"
                      f"{body}</g>")
        y, width = y + h, max(width, w)
    return (f"<svg xmlns='http://www.w3.org/2000/svg' class='arch' width='{_n(width)}' height='{_n(y)}' "
            f"viewBox='0 0 {_n(width)} {_n(y)}' role='img' aria-label='{html.escape(label)}' "
            f"font-family='system-ui, sans-serif' font-size='10'>{''.join(panels)}</svg>")


def _panel(graph: Graph) -> tuple[str, float, float]:
    col = columns(graph)
    place, width, height = positions(graph, col)
    nodes = {n.key: n for n in graph.nodes}
    parts = [f"<text x='{PAD}' y='{PAD + 6}' fill='#666'>{html.escape(graph.name)}</text>"]
    seen: dict[tuple, int] = {}
    for e in graph.edges:
        twins = sum(1 for f in graph.edges if (f.src, f.dst) == (e.src, e.dst))
        k = seen[(e.src, e.dst)] = seen.get((e.src, e.dst), -1) + 1
        span = col[e.dst] - col[e.src]
        # Twins spread apart; an edge over several columns bends, up or down by its source's
        # column, so that it misses the nodes between and its neighbours' arcs.
        bend = (k - (twins - 1) / 2) * 10 + (12 * (span - 1) * (-1) ** col[e.src] if span > 1 else 0)
        parts.append(_edge(e, place, nodes, bend))
    parts += [_node_svg(n, *place[n.key]) for n in graph.nodes]
    return "".join(parts), width, height


def _edge(e: Edge, place, nodes, bend: float) -> str:
    """A quadratic curve from src to dst, `bend` pixels off the straight line, with an arrowhead."""
    (x1, y1), (x2, y2) = place[e.src], place[e.dst]
    dx, dy = x2 - x1, y2 - y1
    length = math.hypot(dx, dy) or 1.0
    nx, ny = -dy / length, dx / length  # unit normal
    cx, cy = (x1 + x2) / 2 + bend * nx, (y1 + y2) / 2 + bend * ny
    sx, sy = _boundary(nodes[e.src], x1, y1, cx - x1, cy - y1)
    ex, ey = _boundary(nodes[e.dst], x2, y2, cx - x2, cy - y2)
    ux, uy = ex - cx, ey - cy
    norm = math.hypot(ux, uy) or 1.0
    ux, uy = ux / norm, uy / norm
    head = (f"{_n(ex)},{_n(ey)} {_n(ex - 7 * ux - 3.5 * uy)},{_n(ey - 7 * uy + 3.5 * ux)} "
            f"{_n(ex - 7 * ux + 3.5 * uy)},{_n(ey - 7 * uy - 3.5 * ux)}")
    dash = " stroke-dasharray='4 3'" if e.dashed else ""
    title = f"<title>{html.escape(e.title)}</title>" if e.title else ""
    return (f"<g class='edge'>{title}<path d='M{_n(sx)} {_n(sy)}Q{_n(cx)} {_n(cy)} {_n(ex - 5 * ux)} "
            f"{_n(ey - 5 * uy)}' fill='none' stroke='{e.color}' stroke-width='1.8'{dash}/>"
            f"<polygon points='{head}' fill='{e.color}'/></g>")


def _boundary(n: Node, x: float, y: float, dx: float, dy: float) -> tuple[float, float]:
    """Where a ray from a node's centre towards (dx, dy) leaves its box."""
    w, h = n.size[0] / 2 + 1, n.size[1] / 2 + 1
    t = min(w / abs(dx) if dx else math.inf, h / abs(dy) if dy else math.inf)
    return (x + t * dx, y + t * dy) if math.isfinite(t) else (x, y)


NODE_STYLE = {"input": ("#f0f0f0", "#888"), "op": ("#ffffff", "#444"), "output": ("#fff2cc", "#b8860b"),
              "dead": ("#fafafa", "#bbb")}


def _node_svg(n: Node, x: float, y: float) -> str:
    fill, stroke = NODE_STYLE[n.kind]
    w, h = n.size
    radius = h / 2 if w == h else 5
    dash = " stroke-dasharray='3 2'" if n.kind == "dead" else ""
    lines, color = n.label.split("|"), " fill='#aaa'" if n.kind == "dead" else ""
    text = "".join(f"<text x='{_n(x)}' y='{_n(y + 3.5 + 10 * (i - (len(lines) - 1) / 2))}' text-anchor='middle'"
                   f"{color}>{html.escape(line)}</text>" for i, line in enumerate(lines))
    return (f"<g class='node {n.kind}'><title>{html.escape(n.title or n.label)}</title>"
            f"<rect x='{_n(x - w / 2)}' y='{_n(y - h / 2)}' width='{w}' height='{h}' rx='{_n(radius)}' "
            f"fill='{fill}' stroke='{stroke}' stroke-width='{2.2 if n.bold else 1.2}'{dash}/>{text}</g>")


def _n(v: float) -> str:
    """A coordinate, short: one decimal at most."""
    text = f"{v:.1f}"
    return text[:-2] if text.endswith(".0") else text
