"""What a study on real training found: a row per trained network, per arm the test accuracy and
hypervolume over seeds with bootstrap intervals, each algorithm paired with random search, and
the proxy's validity at the study's scale (docs/study.md).   [no torch]
"""

from __future__ import annotations

import csv
import io
import math
import statistics
from dataclasses import dataclass, fields

from evo_nas import pareto
from evo_nas.records import History
from evo_nas.stats import Tau, mean_interval, tau_with_interval, wilcoxon_signed_rank

HV_PARAMS_MARGIN = 1.1  # the reference point: error 1.0, 10% above the study's largest network


@dataclass(frozen=True)
class Row:
    """One network trained by the final protocol: a search's returned one, or a baseline."""

    kind: str  # "search" or "baseline"
    arm: str  # the search's algorithm, or the baseline's name
    seed: int | None  # the search's seed
    rank: int | None  # 0: the search's best by proxy accuracy; then front members by size
    id: int  # the final training's id in the study's journal
    search_id: int | None  # its id in the search's journal
    status: str
    proxy_accuracy: float | None  # the search's validation accuracy at the proxy
    test_accuracy: float | None  # after the final training, on the test split
    params: int | None
    macs: int | None
    search_seconds: float | None  # the whole search's training seconds
    final_seconds: float | None  # this final training's seconds
    error: str
    genome: str


@dataclass(frozen=True)
class Arm:
    """One arm over its seeds: the test accuracy of each search's best-by-proxy network, the
    hypervolume of (test error, params) of everything each search returned, and the cost."""

    arm: str
    seeds: int
    evaluations: float  # trained evaluations per search (mean)
    search_minutes: float  # training minutes of all its searches together
    test_mean: float | None
    test_sd: float | None
    test_low: float | None  # bootstrap 95% interval of the mean
    test_high: float | None
    params_median: float | None  # of the best-by-proxy networks
    hv_mean: float | None
    hv_low: float | None
    hv_high: float | None


@dataclass(frozen=True)
class Comparison:
    """An algorithm against random search, paired by seed (the same seeds, the same budget)."""

    arm: str
    pairs: int
    test_diff: float | None  # mean of (algorithm - random), test accuracy of the best-by-proxy network
    test_low: float | None
    test_high: float | None
    test_p: float | None  # exact two-sided Wilcoxon signed-rank
    hv_diff: float | None
    hv_low: float | None
    hv_high: float | None
    hv_p: float | None


@dataclass(frozen=True)
class Summary:
    name: str
    space: str
    dataset: str
    preset: str
    budget: int
    final_epochs: int
    rows: list[Row]
    arms: list[Arm]
    comparisons: list[Comparison]
    proxy_vs_final: Tau | None  # over every retrained network of the searches
    hv_reference_params: float
    seconds: float  # training seconds of the whole study: searches and final trainings


def summary(plan, searches, finals: History) -> Summary:
    """The study's rows and statistics (`searches`: protocol.SearchDone; `finals`: the final
    trainings' history, ids as protocol assigns them)."""
    by_id = {r.id: r for r in finals.finals()}
    rows = _search_rows(plan, searches, by_id) + _baseline_rows(by_id, len(plan.searches()) * plan.settings.returns)
    ok = [r for r in rows if r.status == "ok"]
    reference = HV_PARAMS_MARGIN * max((r.params for r in ok), default=1)
    arms = [_arm(a, [r for r in rows if r.arm == a and r.kind == "search"], searches, reference)
            for a in plan.arms]
    retrained = [r for r in ok if r.kind == "search"]
    tau = tau_with_interval([r.proxy_accuracy for r in retrained], [r.test_accuracy for r in retrained],
                            seed=plan.settings.first_seed) if len(retrained) >= 4 else None
    return Summary(plan.path.name, plan.options.get("space", "cells"), plan.options.get("dataset", "fashion-mnist"),
                   plan.settings.preset, int(plan.options["budget"]), plan.settings.final_epochs, rows, arms,
                   [_compare(a, rows, reference) for a in plan.arms if a != "random" and "random" in plan.arms],
                   tau, reference, sum(s.seconds for s in searches) + sum(r.final_seconds or 0.0 for r in rows))


def _search_rows(plan, searches, by_id: dict) -> list[Row]:
    rows = []
    for s in searches:
        for rank, record in enumerate(s.returned):
            final = by_id.get(s.index * plan.settings.returns + rank)
            rows.append(_row("search", s.arm, s.seed, rank, record, final, s.seconds))
    return rows


def _baseline_rows(by_id: dict, first: int) -> list[Row]:
    return [_row("baseline", r.operator.removeprefix("baseline:"), None, None, None, r, None)
            for i, r in sorted(by_id.items()) if i >= first]


def _row(kind, arm, seed, rank, searched, final, search_seconds) -> Row:
    genome = (final or searched).genome
    return Row(kind, arm, seed, rank, final.id if final else -1, searched.id if searched else None,
               str(final.status) if final else "pending", searched.accuracy if searched else None,
               final.test_accuracy if final else None, (final or searched).params, (final or searched).macs,
               search_seconds, final.wall_time if final else None, (final.error or "") if final else "",
               genome.describe())


def hypervolume(rows: list[Row], reference_params: float) -> float | None:
    """Of (test error, params) over the rows' trained networks, as a fraction of the box up to
    (1.0, reference_params); None without any."""
    points = [(1.0 - r.test_accuracy, r.params) for r in rows if r.status == "ok"]
    if not points:
        return None
    return pareto.hypervolume(points, (1.0, reference_params)) / reference_params


def _per_seed(rows: list[Row], reference: float) -> dict[int, tuple[float | None, float | None]]:
    """seed -> (test accuracy of the best-by-proxy network, hypervolume of what it returned)."""
    out = {}
    for seed in sorted({r.seed for r in rows}):
        mine = [r for r in rows if r.seed == seed]
        best = next((r for r in mine if r.rank == 0 and r.status == "ok"), None)
        out[seed] = (best.test_accuracy if best else None, hypervolume(mine, reference))
    return out


def _arm(arm: str, rows: list[Row], searches, reference: float) -> Arm:
    per_seed = _per_seed(rows, reference)
    tests = [t for t, _ in per_seed.values() if t is not None]
    hvs = [h for _, h in per_seed.values() if h is not None]
    mine = [s for s in searches if s.arm == arm]
    best_params = [r.params for r in rows if r.rank == 0 and r.params is not None]
    return Arm(arm, len(mine), statistics.fmean(s.history.trained() for s in mine) if mine else 0.0,
               sum(s.seconds for s in mine) / 60, _mean(tests), _sd(tests), *mean_interval(tests),
               statistics.median(best_params) if best_params else None, _mean(hvs), *mean_interval(hvs))


def _compare(arm: str, rows: list[Row], reference: float) -> Comparison:
    mine = _per_seed([r for r in rows if r.arm == arm and r.kind == "search"], reference)
    theirs = _per_seed([r for r in rows if r.arm == "random" and r.kind == "search"], reference)
    seeds = sorted(set(mine) & set(theirs))
    out = [len(seeds)]
    for k in (0, 1):  # test accuracy, hypervolume
        diffs = [mine[s][k] - theirs[s][k] for s in seeds if mine[s][k] is not None and theirs[s][k] is not None]
        out += [_mean(diffs), *mean_interval(diffs), wilcoxon_signed_rank(diffs) if diffs else None]
    return Comparison(arm, *out)


def _mean(values: list[float]) -> float | None:
    return statistics.fmean(values) if values else None


def _sd(values: list[float]) -> float | None:
    return statistics.stdev(values) if len(values) > 1 else None


def csv_text(s: Summary) -> str:
    """study.csv: one row per trained network."""
    buffer = io.StringIO()
    names = [f.name for f in fields(Row)]
    writer = csv.DictWriter(buffer, names, lineterminator="\n")
    writer.writeheader()
    for row in s.rows:
        writer.writerow({k: "" if v is None or (isinstance(v, float) and math.isnan(v)) else v
                         for k, v in zip(names, (getattr(row, n) for n in names))})
    return buffer.getvalue()


def lines(s: Summary) -> list[str]:
    """The summary for the terminal: per arm, per comparison, the proxy's validity."""
    def pct(x):
        return "-" if x is None or math.isnan(x) else f"{100 * x:.2f}"

    out = [f"{s.name}: {s.space} on {s.dataset}, budget {s.budget} evaluations a search, final trainings of "
           f"{s.final_epochs} epoch(s)"]
    for a in s.arms:
        out.append(f"  {a.arm:<8} {a.seeds} seeds  test {pct(a.test_mean)} ± {pct(a.test_sd)} "
                   f"[{pct(a.test_low)}, {pct(a.test_high)}]  hv {a.hv_mean or 0:.4f}  "
                   f"search {a.search_minutes:.1f} min")
    for c in s.comparisons:
        out.append(f"  {c.arm} - random: test {pct(c.test_diff)} points [{pct(c.test_low)}, {pct(c.test_high)}] "
                   f"(Wilcoxon p {c.test_p if c.test_p is not None else '-'}, n={c.pairs}); hv "
                   f"{c.hv_diff if c.hv_diff is not None else float('nan'):+.4f}")
    for r in (r for r in s.rows if r.kind == "baseline"):
        out.append(f"  baseline {r.arm}: test {pct(r.test_accuracy)}, {r.params or 0:,} params")
    if s.proxy_vs_final is not None:
        out.append(f"  proxy vs final test accuracy: Kendall tau {s.proxy_vs_final.text()} "
                   f"(n={s.proxy_vs_final.n} retrained networks)")
    return out
