"""Canonical form of a small labelled DAG, up to renumbering of its nodes (docs/design.md).   [stdlib only]
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Node:
    label: str
    inputs: tuple[tuple[str, int], ...]  # (edge label, source node index); parallel edges allowed


def canonical_form(nodes: list[Node]) -> str:
    """Nodes must be listed in a topological order (every input index is smaller)."""
    colors = _refine(nodes)
    succs = _successors(nodes)
    best: list[str] | None = None
    order_index: dict[int, int] = {}

    def serial(v: int) -> str:
        edges = sorted((label, order_index[src]) for label, src in nodes[v].inputs)
        return f"{nodes[v].label}<{','.join(f'{lab}:{s}' for lab, s in edges)}>"

    def search(prefix: list[str], placed: set[int]) -> None:
        nonlocal best
        if best is not None and prefix > best[: len(prefix)]:
            return  # this branch can only produce larger serialisations
        if len(placed) == len(nodes):
            best = list(prefix)
            return
        ready = [v for v in range(len(nodes)) if v not in placed
                 and all(src in placed for _, src in nodes[v].inputs)]
        low = min(colors[v] for v in ready)
        for v in _without_twins([v for v in ready if colors[v] == low], nodes, succs):
            order_index[v] = len(prefix)
            search(prefix + [serial(v)], placed | {v})
            del order_index[v]

    search([], set())
    return ";".join(best or [])


def _refine(nodes: list[Node]) -> list[int]:
    """Colour refinement: a node's colour summarises its label and, round after round, the
    colours of its neighbours. Colours are ranks of sorted signatures, hence invariant."""
    succs = _successors(nodes)
    colors = _rank([n.label for n in nodes])
    for _ in range(len(nodes)):
        signatures = [
            (colors[v],
             tuple(sorted((lab, colors[s]) for lab, s in nodes[v].inputs)),
             tuple(sorted((lab, colors[t]) for lab, t in succs[v])))
            for v in range(len(nodes))
        ]
        new = _rank(signatures)
        if len(set(new)) == len(set(colors)):
            break
        colors = new
    return colors


def _rank(values: list) -> list[int]:
    table = {value: i for i, value in enumerate(sorted(set(values)))}
    return [table[v] for v in values]


def _successors(nodes: list[Node]) -> list[list[tuple[str, int]]]:
    out: list[list[tuple[str, int]]] = [[] for _ in nodes]
    for v, node in enumerate(nodes):
        for label, src in node.inputs:
            out[src].append((label, v))
    return out


def _without_twins(candidates: list[int], nodes: list[Node], succs) -> list[int]:
    """Keep one node of each group of twins: swapping twins maps the graph onto itself."""
    seen, keep = set(), []
    for v in candidates:
        signature = (nodes[v].label, tuple(sorted(nodes[v].inputs)), tuple(sorted(succs[v])))
        if signature not in seen:
            seen.add(signature)
            keep.append(v)
    return keep
