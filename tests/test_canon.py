"""The canonical form of labelled DAGs against brute force over all renumberings."""

import itertools
import random

from evo_nas.canon import Node, canonical_form


def brute_force(nodes: list[Node], fixed: int) -> tuple:
    """Smallest edge-list over every renumbering of the non-fixed nodes (any order at all)."""
    movable = range(fixed, len(nodes))
    best = None
    for perm in itertools.permutations(movable):
        new = {**{i: i for i in range(fixed)}, **{old: fixed + k for k, old in enumerate(perm)}}
        labels = tuple(sorted((new[v], nodes[v].label) for v in range(len(nodes))))
        edges = tuple(sorted((lab, new[s], new[v]) for v in range(len(nodes)) for lab, s in nodes[v].inputs))
        form = (labels, edges)
        best = form if best is None or form < best else best
    return best


def random_dag(rng: random.Random, n: int, fixed: int) -> list[Node]:
    nodes = [Node(f"in{i}", ()) for i in range(fixed)]
    for v in range(fixed, n):
        k = rng.randint(1, 3)
        nodes.append(Node(rng.choice("ab"), tuple((rng.choice("xy"), rng.randrange(v)) for _ in range(k))))
    return nodes


def shuffled(nodes: list[Node], fixed: int, rng: random.Random) -> list[Node]:
    """The same graph, its movable nodes renumbered in another topological order."""
    order, placed = list(range(fixed)), set(range(fixed))
    while len(order) < len(nodes):
        ready = [v for v in range(len(nodes)) if v not in placed and all(s in placed for _, s in nodes[v].inputs)]
        v = rng.choice(ready)
        order.append(v)
        placed.add(v)
    new = {old: i for i, old in enumerate(order)}
    return [Node(nodes[old].label, tuple((lab, new[s]) for lab, s in nodes[old].inputs)) for old in order]


def test_isomorphic_graphs_share_a_form_and_only_they_do():
    rng = random.Random(3)
    graphs = [random_dag(rng, rng.randint(3, 7), 2) for _ in range(400)]
    by_form, by_brute = {}, {}
    for g in graphs:
        by_form.setdefault(canonical_form(g), set()).add(brute_force(g, 2))
        by_brute.setdefault(brute_force(g, 2), set()).add(canonical_form(g))
        assert canonical_form(shuffled(g, 2, rng)) == canonical_form(g)
    assert all(len(v) == 1 for v in by_form.values()), "two different graphs share a form"
    assert all(len(v) == 1 for v in by_brute.values()), "one graph has two forms"


def test_many_identical_parallel_nodes_stay_fast():
    # 14 twins: without twin pruning this would be 14! orders.
    nodes = [Node("in", ())] + [Node("a", (("x", 0),)) for _ in range(14)]
    assert canonical_form(nodes).count("a<x:0>") == 14
