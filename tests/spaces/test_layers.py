"""Layer space: operators, and keys that see through renumbering but not through strides."""

import random

from evo_nas.spaces.layers import Layer, LayerGenome, LayerSpace, delete_layer, insert_layer, reduction_layers

SPACE = LayerSpace(min_layers=3, max_layers=8)


def test_reduction_layers_follow_the_cell_skeleton_rule():
    assert reduction_layers(20, 2) == {6, 13}  # DARTS: layers//3, 2*layers//3
    assert reduction_layers(8, 2) == {2, 5}
    assert reduction_layers(5, 0) == frozenset()


def test_independent_layers_can_be_swapped_without_changing_the_key():
    a = Layer(3, 3, 24, (0,))
    b = Layer(5, 5, 36, (0,))
    tail = Layer(1, 1, 48, (1, 2))
    space = LayerSpace(reductions=0)
    assert space.key(LayerGenome(layers=(a, b, tail))) == space.key(LayerGenome(layers=(b, a, tail)))
    # ... unless one of them sits at a reduction position: then the networks differ.
    strided = LayerSpace(reductions=1)  # depth 3: layer 1 reduces
    assert strided.key(LayerGenome(layers=(a, b, tail))) != strided.key(LayerGenome(layers=(b, a, tail)))


def test_input_order_and_filter_changes():
    g = LayerGenome(layers=(Layer(3, 3, 24, (0,)), Layer(3, 3, 24, (0, 1))))
    h = LayerGenome(layers=(Layer(3, 3, 24, (0,)), Layer(3, 3, 36, (0, 1))))
    assert SPACE.key(g) != SPACE.key(h)


def test_insert_then_delete_at_the_same_place_is_the_identity():
    rng = random.Random(0)
    for _ in range(300):
        g = SPACE.sample(rng)
        p = rng.randrange(len(g.layers) + 1)
        child = insert_layer(g, p, Layer(1, 1, 24, (p,)))
        assert child.layers[p] == Layer(1, 1, 24, (p,))
        if p < len(g.layers):
            assert p + 1 in child.layers[p + 1].inputs  # the follower reads the new layer
        assert delete_layer(child, p) == g


def test_every_operator_keeps_genomes_valid():
    rng = random.Random(1)
    g = SPACE.sample(rng)
    seen = set()
    for _ in range(3000):
        if rng.random() < 0.2:
            g, name = SPACE.crossover(g, SPACE.sample(rng), rng)
        else:
            g, name = SPACE.mutate(g, rng)
        SPACE.validate(g, name)
        seen.add(name)
    assert seen == set(SPACE.mutations()) | set(SPACE.crossovers())
