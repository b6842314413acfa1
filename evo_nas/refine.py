"""`evonas refine RUN`: a new run whose hyperparameter ranges are narrowed around the best
candidates of an old run, and widened past a border those best values sit at.   [no torch]

The lecture's advice for hyperparameter search: random rather than grid, on a log scale where
appropriate, "careful with best values on the border", and "may refine the search" once a first
search shows where the good values are. The best candidates and the border rule are the report's
(spaces.hparams), so the report's warning and refine's widening always agree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from evo_nas import config as configs
from evo_nas.errors import ConfigError
from evo_nas.genome import OPTIMIZERS
from evo_nas.records import History
from evo_nas.spaces.hparams import NUMERIC, HParamSpace, best_candidates, border_edges
from evo_nas.store import RunDir

MIN_EVALUATIONS = 4  # fewer successful evaluations say nothing about where the good values are
MARGIN = 0.1  # a narrowed range reaches this share of the old width beyond the best values
WIDEN = 0.25  # a border the best values sit at moves out by this share of the old width


@dataclass(frozen=True)
class Change:
    """What refine did to one gene's range, and why, in a line."""

    gene: str
    old: tuple
    new: tuple
    why: str


@dataclass(frozen=True)
class Plan:
    run: RunDir
    space: HParamSpace  # the new run's ranges
    changes: tuple[Change, ...]
    options: dict  # the new run's settings (flat names)


def refined(history: History, space: HParamSpace) -> tuple[HParamSpace, list[Change]]:
    """The ranges around the best candidates of `history`'s evaluations, searched in `space`."""
    evaluations = [e for e in history.evaluations() if e.ok and e.genome.hparams is not None]
    if len(evaluations) < MIN_EVALUATIONS:
        raise ConfigError(f"refine: {len(evaluations)} successful evaluations with hyperparameters; refining needs "
                          f"at least {MIN_EVALUATIONS}")
    best = best_candidates(evaluations)
    changes = [numeric_change(gene, [getattr(e.genome.hparams, gene) for e in best], getattr(space, gene),
                              gene in space.LOG_SCALED, space.HARD_LIMITS.get(gene), len(evaluations))
               for gene in NUMERIC]
    changes.append(optimizer_change([e.genome.hparams.optimizer for e in best], space.optimizers))
    new = HParamSpace(**{c.gene: c.new for c in changes if c.gene in NUMERIC}, optimizers=changes[-1].new,
                      sigma=space.sigma)
    return new, changes


def numeric_change(gene: str, values: list[float], bounds: tuple[float, float], log: bool,
                   hard: tuple[float, float] | None, n: int) -> Change:
    """Narrow `bounds` to the best `values` and MARGIN of the old width beyond them (log scale
    when `log`); an edge most of them sit at (the report's border rule) moves WIDEN of the old width
    outwards instead, never past a hard limit."""
    edges = border_edges(values, bounds, log, hard)
    new = _new_bounds(values, bounds, log, hard, edges)
    why = [f"the best {len(values)} of {n} lie in {_g(min(values))} to {_g(max(values))}"]
    for k, side in enumerate(("lower", "upper")):
        if side in edges:
            why.append(f"most sit at the {side} edge ({_g(bounds[k])}), so the best may lie beyond it: "
                       f"{WIDEN:.0%} of the old width added")
        elif new[k] != bounds[k]:
            why.append(f"{side} edge narrowed to {MARGIN:.0%} of the old width beyond them")
    if len(why) == 1:
        why.append("they span the range: kept")
    return Change(gene, tuple(bounds), new, "; ".join(why))


def _new_bounds(values: list[float], bounds: tuple[float, float], log: bool, hard: tuple[float, float] | None,
                edges: list[str]) -> tuple[float, float]:
    to, back = (math.log, math.exp) if log else (float, float)
    width, near = to(bounds[1]) - to(bounds[0]), [to(v) for v in values]
    out = []
    for k, side in enumerate(("lower", "upper")):
        sign = 1 if k else -1
        if side in edges:
            edge = _outward(back(to(bounds[k]) + sign * WIDEN * width), up=bool(k))
            if hard is not None and k == 0:
                edge = max(edge, hard[0])  # dropout 0 is allowed
            elif hard is not None and edge >= hard[1]:
                edge = (bounds[1] + hard[1]) / 2  # dropout 1 is not: stop halfway to it
        else:
            edge = _outward(back((max if k else min)(near) + sign * MARGIN * width), up=bool(k))
            edge = min(edge, bounds[1]) if k else max(edge, bounds[0])  # narrowed: never past the old edge
        out.append(edge)
    return out[0], out[1]


def optimizer_change(used: list[str], optimizers: tuple[str, ...]) -> Change:
    """Keep the optimizers the best candidates use (in the usual order)."""
    kept = tuple(o for o in OPTIMIZERS if o in used)
    dropped = [o for o in optimizers if o not in kept]
    counts = ", ".join(f"{o} {used.count(o)}" for o in kept)
    why = f"the best {len(used)} use {counts}" + (f": dropped {', '.join(dropped)}" if dropped else ": kept")
    return Change("optimizer", tuple(optimizers), kept, why)


def plan(run_dir: str | Path, overrides: dict | None = None) -> Plan:
    """The new run's settings: the old run's, with the refined ranges and `overrides` (name,
    generations, budget, seed...). Raises a UserError for a run that did not search hparams."""
    run = RunDir.open(run_dir)
    settings = configs.flat_config(run.config())
    if not settings.get("hparams"):
        raise ConfigError(f"{run.path}: this run did not search hyperparameters (--hparams); nothing to refine")
    space, changes = refined(run.history(), HParamSpace.from_settings(settings))
    options = {k: v for k, v in settings.items() if k not in ("name", "seed_genomes", "device")}
    options.update(space.settings(), name=f"{run.path.name}-refined", runs_dir=str(run.path.parent),
                   device=settings.get("device", "auto"))
    options.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return Plan(run, space, tuple(changes), options)


def describe(p: Plan) -> list[str]:
    """The new ranges and why, a line per gene."""
    lines = [f"refining {p.run.path}: a new run {Path(p.options['runs_dir']) / p.options['name']}"]
    for c in p.changes:
        old, new = (", ".join(map(_g, r)) for r in (c.old, c.new))
        lines.append(f"  {c.gene:<13} {old}  ->  {new}   ({c.why})")
    return lines


def _outward(x: float, up: bool) -> float:
    """x to 3 significant digits, rounded away from the range's inside (so the best values stay in):
    ranges people can read and type."""
    x = float(f"{x:.12g}")  # float noise (0.1 - 0.09) must not cost a digit
    if x == 0:
        return 0.0
    q = 10.0 ** (math.floor(math.log10(abs(x))) - 2)
    return float(f"{(math.ceil(x / q) if up else math.floor(x / q)) * q:.3g}")


def _g(x) -> str:
    return x if isinstance(x, str) else f"{x:.3g}"
