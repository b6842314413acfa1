"""Rank statistics for measuring a fitness: Kendall's tau-b, Spearman's rho, bootstrap intervals.   [stdlib]

Written here (checked against scipy.stats in the tests) so that evonas needs no scipy at run time.
"""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass


def kendall_tau(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's tau-b (ties in either ranking are accounted for); nan when a side is constant."""
    concordant = discordant = ties_x = ties_y = 0
    n = len(x)
    for i in range(n):
        for j in range(i + 1, n):
            dx, dy = x[i] - x[j], y[i] - y[j]
            if dx == 0 and dy == 0:
                continue
            if dx == 0:
                ties_x += 1
            elif dy == 0:
                ties_y += 1
            elif (dx > 0) == (dy > 0):
                concordant += 1
            else:
                discordant += 1
    denominator = math.sqrt((concordant + discordant + ties_x) * (concordant + discordant + ties_y))
    return (concordant - discordant) / denominator if denominator else math.nan


def ranks(values: Sequence[float]) -> list[float]:
    """1-based ranks, ties sharing their average rank."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    out = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            out[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return out


def spearman_rho(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rho: Pearson's correlation of the average ranks; nan when a side is constant."""
    return pearson(ranks(x), ranks(y))


def pearson(x: Sequence[float], y: Sequence[float]) -> float:
    mx, my = statistics.fmean(x), statistics.fmean(y)
    sxy = sum((a - mx) * (b - my) for a, b in zip(x, y))
    sxx, syy = sum((a - mx) ** 2 for a in x), sum((b - my) ** 2 for b in y)
    return sxy / math.sqrt(sxx * syy) if sxx and syy else math.nan


def bootstrap(statistic: Callable[[list[int]], float], n: int, resamples: int = 2000, seed: int = 0,
              level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of statistic(indices) over resamples of the n items (drawn
    with replacement; resamples where the statistic is undefined are left out)."""
    rng = random.Random(seed)
    values = sorted(v for v in (statistic([rng.randrange(n) for _ in range(n)]) for _ in range(resamples))
                    if not math.isnan(v))
    if not values:
        return math.nan, math.nan
    low, high = (1 - level) / 2, 1 - (1 - level) / 2
    return values[int(low * (len(values) - 1))], values[int(math.ceil(high * (len(values) - 1)))]


@dataclass(frozen=True)
class Tau:
    """Kendall's tau between two rankings of n items, its bootstrap 95% interval, and Spearman's rho."""

    tau: float
    tau_low: float
    tau_high: float
    rho: float
    n: int

    def text(self) -> str:
        return f"{self.tau:+.2f} [{self.tau_low:+.2f}, {self.tau_high:+.2f}]"


def tau_with_interval(x: Sequence[float], y: Sequence[float], seed: int = 0) -> Tau:
    """Kendall's tau, Spearman's rho, and a bootstrap 95% interval of tau (items resampled)."""
    low, high = bootstrap(lambda idx: kendall_tau([x[i] for i in idx], [y[i] for i in idx]), len(x), seed=seed)
    return Tau(kendall_tau(x, y), low, high, spearman_rho(x, y), len(x))


def mean_interval(values: Sequence[float], seed: int = 0) -> tuple[float, float]:
    """A percentile bootstrap 95% interval of the mean of `values` (nan, nan for fewer than 2)."""
    if len(values) < 2:
        return math.nan, math.nan
    return bootstrap(lambda idx: statistics.fmean(values[i] for i in idx), len(values), seed=seed)


EXACT_PAIRS = 20


def wilcoxon_signed_rank(differences: Sequence[float]) -> float:
    """Two-sided p-value of Wilcoxon's signed-rank test that paired differences are centred on 0,
    exact: every assignment of signs to the ranks of |d| is enumerated (zeros dropped, as
    scipy's "wilcox" zero method; tied |d| share their average rank). nan for no nonzero d.
    Exact up to EXACT_PAIRS nonzero differences (2^20 assignments); beyond, scipy.stats.wilcoxon's
    own choice (its normal approximation for as many pairs as a 100-seed study has)."""
    d = [x for x in differences if x != 0]
    if not d:
        return math.nan
    if len(d) > EXACT_PAIRS:
        from scipy.stats import wilcoxon

        return float(wilcoxon(differences).pvalue)
    r = ranks([abs(x) for x in d])
    observed = sum(rank for rank, x in zip(r, d) if x > 0)
    centre = sum(r) / 2
    extreme = abs(observed - centre)
    hits = 0
    for mask in range(1 << len(d)):
        plus = sum(rank for k, rank in enumerate(r) if mask >> k & 1)
        hits += abs(plus - centre) >= extreme - 1e-9
    return hits / (1 << len(d))
