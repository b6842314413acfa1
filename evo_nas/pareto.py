"""Non-dominated sorting, crowding, the run-wide front, and hypervolume.   [deap, moocore]

Objectives are named; internally every objective is minimised: accuracy enters as error
(1 - accuracy), MACs and parameters as they are. Sorting and crowding are DEAP's
(`sortNondominated`, `assignCrowdingDist`); the hypervolume is our own exact sweep, tested
against DEAP's and pymoo's.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from deap import base, tools

OBJECTIVES = ("accuracy", "macs", "params")
MAXIMISED = {"accuracy"}

Vector = tuple[float, ...]


def to_minimise(name: str, value: float) -> float:
    return 1.0 - value if name in MAXIMISED else float(value)


def vector(result, objectives: Sequence[str], tie_width: float = 0.0) -> Vector:
    """A result's objective vector (all minimised); None and failures are worst in everything.
    With a tie width, accuracy is counted in boxes of that width (epsilon-box dominance,
    Laumanns et al. 2002): accuracies in one box tie, and the other objectives decide."""
    if result is None or not result.ok:
        return tuple(math.inf for _ in objectives)
    return tuple(to_minimise(name, _boxed(getattr(result, name), tie_width) if name in MAXIMISED
                             else getattr(result, name)) for name in objectives)


def _boxed(value: float, width: float) -> float:
    return math.floor(value / width + 1e-9) * width if width > 0 else value


class _Point:
    """What DEAP's selection tools expect: an object with a `fitness`."""

    __slots__ = ("fitness", "index")


_FITNESS: dict[int, type] = {}


def _points(vectors: Sequence[Vector]) -> list[_Point]:
    k = len(vectors[0]) if vectors else 1
    if k not in _FITNESS:  # DEAP reads the weights off the class; one class per arity
        _FITNESS[k] = type(f"Minimise{k}", (base.Fitness,), {"weights": (-1.0,) * k})
    points = []
    for i, v in enumerate(vectors):
        p = _Point()
        p.index, p.fitness = i, _FITNESS[k]()
        # DEAP's dominance test breaks on inf; a huge finite value orders the same way.
        p.fitness.values = tuple(min(x, 1e300) for x in v)
        points.append(p)
    return points


def nondominated_fronts(vectors: Sequence[Vector]) -> list[list[int]]:
    """Indices grouped into fronts, best first (DEAP's fast non-dominated sort)."""
    if not vectors:
        return []
    fronts = tools.sortNondominated(_points(vectors), len(vectors))
    return [sorted(p.index for p in front) for front in fronts]


def crowding(vectors: Sequence[Vector], front: Sequence[int]) -> dict[int, float]:
    """Crowding distance of each member of one front (DEAP's assignCrowdingDist)."""
    points = _points([vectors[i] for i in front])
    tools.emo.assignCrowdingDist(points)
    return {front[p.index]: p.fitness.crowding_dist for p in points}


def rank_and_crowding(vectors: Sequence[Vector]) -> tuple[list[int], list[float]]:
    """NSGA-II's crowded-comparison keys: (front rank, crowding distance) per index."""
    rank, dist = [0] * len(vectors), [0.0] * len(vectors)
    for r, front in enumerate(nondominated_fronts(vectors)):
        for i, d in crowding(vectors, front).items():
            rank[i], dist[i] = r, d
    return rank, dist


def select_nsga2(vectors: Sequence[Vector], k: int) -> list[int]:
    """Indices of the k survivors: whole fronts while they fit, then the least crowded."""
    chosen: list[int] = []
    for front in nondominated_fronts(vectors):
        if len(chosen) + len(front) <= k:
            chosen += front
            continue
        dist = crowding(vectors, front)
        chosen += sorted(front, key=lambda i: (-dist[i], i))[: k - len(chosen)]
        break
    return chosen


def first_front(vectors: Sequence[Vector]) -> list[int]:
    """Indices of the non-dominated finite vectors (the run-wide front), in index order.

    A filter in O(n * front) rather than a full sort: in lexicographic order a dominator
    always comes before what it dominates, and whatever dominates a point is itself a front
    member found earlier, or dominated by one. Equal vectors are all kept, as DEAP does."""
    front: list[int] = []
    finite = [i for i, v in enumerate(vectors) if all(math.isfinite(x) for x in v)]
    for i in sorted(finite, key=lambda i: vectors[i]):
        if not any(_dominates(vectors[j], vectors[i]) for j in front):
            front.append(i)
    return sorted(front)


def _dominates(a: Vector, b: Vector) -> bool:
    return all(x <= y for x, y in zip(a, b)) and a != b


# -- hypervolume ---------------------------------------------------------------------------

def normalise(v: Vector, ref: Vector) -> Vector:
    """Scale each objective by its reference value, so the reference point is (1, ..., 1)."""
    return tuple(x / r if r > 0 else x for x, r in zip(v, ref))


def hypervolume(points: Sequence[Vector], ref: Vector) -> float:
    """Exact volume dominated by `points` and bounded by `ref` (minimisation), any dimension;
    fast enough for the front sizes of a run (a sweep over the first objective, recursing on
    the rest: O(n^(d-1) log n))."""
    inside = [p for p in points if all(x < r for x, r in zip(p, ref))]
    if not inside:
        return 0.0
    if len(ref) == 1:
        return ref[0] - min(p[0] for p in inside)
    if len(ref) == 2:
        return _hypervolume_2d(inside, ref)
    inside.sort(key=lambda p: p[0])
    volume = 0.0
    for i, p in enumerate(inside):
        upper = inside[i + 1][0] if i + 1 < len(inside) else ref[0]
        if upper > p[0]:
            # Points up to i dominate the slab [p0, upper) in the remaining objectives.
            volume += (upper - p[0]) * hypervolume([q[1:] for q in inside[: i + 1]], ref[1:])
    return volume


def _hypervolume_2d(points: Sequence[Vector], ref: Vector) -> float:
    """Sweep along the first objective keeping the best second objective so far."""
    volume, best = 0.0, ref[1]
    for x, y in sorted(points):
        if y < best:
            volume += (ref[0] - x) * (best - y)
            best = y
    return volume
