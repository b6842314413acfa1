"""Pareto tools against DEAP's and pymoo's implementations.

DEAP (1.4.4) computes hypervolume through the `moocore` package, so moocore is DEAP's oracle.
"""

import math
import random

import pytest
from pymoo.indicators.hv import HV

from evo_nas import pareto
from evo_nas.records import Result, Status


def random_points(rng, n, d):
    return [tuple(rng.random() for _ in range(d)) for _ in range(n)]


@pytest.mark.parametrize("d", [2, 3])
def test_hypervolume_matches_deap_and_pymoo(d):
    import moocore
    import numpy as np

    rng = random.Random(d)
    for n in (1, 2, 5, 20, 60):
        pts = random_points(rng, n, d)
        ref = tuple(1.1 for _ in range(d))
        ours = pareto.hypervolume(pts, ref)
        assert ours == pytest.approx(moocore.hypervolume(np.array(pts), ref=list(ref)), rel=1e-12, abs=1e-12)
        assert ours == pytest.approx(HV(ref_point=np.array(ref))(np.array(pts)), rel=1e-9)


def test_hypervolume_edge_cases():
    assert pareto.hypervolume([], (1.0, 1.0)) == 0.0
    assert pareto.hypervolume([(2.0, 0.5)], (1.0, 1.0)) == 0.0  # outside the reference box
    assert pareto.hypervolume([(0.0, 0.0)], (1.0, 2.0)) == 2.0
    assert pareto.hypervolume([(0.5, 0.5), (0.5, 0.5)], (1.0, 1.0)) == 0.25


def test_fronts_and_selection_are_nsga2s():
    vectors = [(0, 3), (1, 2), (2, 1), (3, 0), (1, 3), (2, 2), (3, 3), (math.inf, math.inf)]
    fronts = pareto.nondominated_fronts(vectors)
    assert fronts[0] == [0, 1, 2, 3]
    assert fronts[1] == [4, 5]
    assert fronts[-1] == [7]
    assert pareto.first_front(vectors) == [0, 1, 2, 3]
    # The two extremes of the first front have infinite crowding and survive a cut to 2.
    assert sorted(pareto.select_nsga2(vectors, 2)) == [0, 3]
    assert sorted(pareto.select_nsga2(vectors, 6)) == [0, 1, 2, 3, 4, 5]


def test_vector_turns_accuracy_into_error_and_failures_into_worst():
    ok = Result(Status.OK, accuracy=0.9, macs=100, params=10)
    assert pareto.vector(ok, ["accuracy", "macs"]) == pytest.approx((0.1, 100.0))
    assert pareto.vector(Result(Status.FAILED), ["accuracy", "params"]) == (math.inf, math.inf)
    assert pareto.vector(None, ["accuracy"]) == (math.inf,)
