"""NB201 canonical keys over the whole benchmark space."""

import itertools

import pytest

from evo_nas.spaces.nb201 import EDGES as NB201_EDGES
from evo_nas.spaces.nb201 import OPS as NB201_OPS
from evo_nas.spaces.nb201 import ZERO_CELL, NB201Genome, NB201Space, nb201_key


def reduced_edges(edges):
    """The stated rules, written the slow obvious way: (output node, multiset of edges)."""
    live = [(op, s, t) for op, (s, t) in zip(edges, NB201_EDGES) if op != "none"]
    changed = True
    while changed:  # drop nodes not reachable from 0 or not reaching 3
        nodes = {0, 3} | {s for _, s, _ in live} | {t for _, _, t in live}
        dead = {n for n in nodes - {0} if not any(t == n for _, _, t in live)}
        dead |= {n for n in nodes - {3} if not any(s == n for _, s, _ in live)}
        changed = any(s in dead or t in dead for _, s, t in live)
        live = [e for e in live if e[1] not in dead and e[2] not in dead]
    if not any(t == 3 for _, _, t in live):
        return None
    output = 3
    for node in (1, 2, 3):
        incoming = [e for e in live if e[2] == node]
        if len(incoming) == 1 and incoming[0][0] == "skip_connect":
            src = incoming[0][1]
            live = [(op, src if s == node else s, t) for op, s, t in live if t != node]
            output = src if node == output else output
    return output, live


def brute_isomorphism_class(edges):
    reduced = reduced_edges(edges)
    if reduced is None:
        return "zero"
    output, live = reduced
    inner = sorted(({s for _, s, _ in live} | {t for _, _, t in live} | {output}) - {0})
    forms = []
    for perm in itertools.permutations(range(1, len(inner) + 1)):
        new = {0: 0, **dict(zip(inner, perm))}
        forms.append((new[output], tuple(sorted((op, new[s], new[t]) for op, s, t in live))))
    return min(forms)


@pytest.fixture(scope="module")
def all_cells():
    return list(itertools.product(NB201_OPS, repeat=6))


@pytest.mark.slow
def test_keys_agree_with_brute_force_isomorphism_on_all_15625_cells(all_cells):
    keys = {}
    for edges in all_cells:
        keys.setdefault(nb201_key(edges), set()).add(brute_isomorphism_class(edges))
    assert all(len(classes) == 1 for classes in keys.values()), "a key merges two different networks"
    assert len(keys) == len({brute_isomorphism_class(e) for e in all_cells})
    # The issue that specified these rules quotes 7,162 classes; written out literally (above,
    # and in evo_nas.spaces.nb201) the rules give 6,985. See the note in the README.
    assert len(keys) == 6985


@pytest.mark.slow
def test_every_benchmark_arch_string_parses_round_trips_and_keys_into_6985_classes():
    from evo_nas.nb201_table import table

    archs = table().archs  # the packaged table, row i = NAS-Bench-201 index i
    assert len(archs) == 15625
    space = NB201Space()
    genomes = [NB201Genome.from_arch_string(a) for a in archs]
    assert [g.arch_string for g in genomes] == list(archs)
    assert len({space.key(g) for g in genomes}) == 6985


def test_known_equivalences():
    key = lambda s: nb201_key(NB201Genome.from_arch_string(s).edges)  # noqa: E731
    assert key("|none~0|+|none~0|none~1|+|none~0|none~1|none~2|") == ZERO_CELL
    # ResNet block: input + conv(conv(input)).
    resnet = "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|skip_connect~2|"
    # Node 1 is dead here (nothing reaches it): node 2 = conv(input), a single conv.
    one_conv = "|none~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|none~1|skip_connect~2|"
    assert key(resnet) != key(one_conv)
    # Node 1 = skip(input) is contracted: node 2 = conv(node 1) = conv(input), as in one_conv.
    assert key("|skip_connect~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|skip_connect~2|") == key(one_conv)
    # Output = skip(node 2), node 2 = conv(0): the same as output = conv(0).
    assert key("|none~0|+|nor_conv_1x1~0|none~1|+|none~0|none~1|skip_connect~2|") == \
        key("|none~0|+|none~0|none~1|+|nor_conv_1x1~0|none~1|none~2|")
    # Two parallel convs are not one conv.
    assert key("|skip_connect~0|+|none~0|none~1|+|nor_conv_1x1~0|nor_conv_1x1~1|none~2|") != \
        key("|none~0|+|none~0|none~1|+|nor_conv_1x1~0|none~1|none~2|")
    # Renumbering the intermediate nodes: conv on 0->1, pool on 0->2, both summed at the output.
    assert key("|nor_conv_1x1~0|+|avg_pool_3x3~0|none~1|+|none~0|skip_connect~1|skip_connect~2|") == \
        key("|avg_pool_3x3~0|+|nor_conv_1x1~0|none~1|+|none~0|skip_connect~1|skip_connect~2|")
