"""Hyperparameter genes: learning rate and weight decay on a log scale, dropout, optimizer.

Off by default; when a space carries `HParamSpace`, every genome it samples carries `HParams`
and mutation perturbs them like any other gene. Each gene's range is a run setting
(`lr_range`, `weight_decay_range`, `dropout_range`, `optimizers`; `evonas refine` narrows them
around the best candidates of a run). [stdlib only]
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from evo_nas.errors import ConfigError, GenomeError, short
from evo_nas.genome import OPTIMIZERS, HParams

NUMERIC = ("lr", "weight_decay", "dropout")  # the genes with a range; the optimizer is categorical
# "The best candidates" of the report's border warning and of `evonas refine`: the top quarter by
# accuracy (hyperopt's TPE splits there), at least three; a tenth of a noisy proxy is a few draws.
BEST_SHARE, BEST_MIN = 0.25, 3
BORDER = 0.05  # "at the border": within 5% of the range's width from an edge


@dataclass(frozen=True)
class HParamSpace:
    # Ranges wide enough to hold the usual optima of brief proxy trainings; the report warns
    # when the best candidates sit at a border, which means a range should be widened.
    lr: tuple[float, float] = (1e-3, 0.5)  # log-uniform
    weight_decay: tuple[float, float] = (1e-5, 1e-2)  # log-uniform
    dropout: tuple[float, float] = (0.0, 0.5)  # uniform
    optimizers: tuple[str, ...] = OPTIMIZERS
    sigma: float = 0.5  # std of a mutation step, in natural-log units for lr and weight decay

    LOG_SCALED = ("lr", "weight_decay")
    HARD_LIMITS = {"dropout": (0.0, 1.0)}  # no range may reach past these

    def __post_init__(self):
        """Ranges as the settings `<gene>_range` give them: two numbers, low < high, positive on a log scale."""
        for gene in NUMERIC:
            bounds = tuple(float(x) for x in getattr(self, gene))
            if len(bounds) != 2 or not bounds[0] < bounds[1]:
                raise ConfigError(f"{gene}_range: must be two numbers low,high with low < high, "
                                  f"got {short(list(bounds))}")
            if gene in self.LOG_SCALED and bounds[0] <= 0:
                raise ConfigError(f"{gene}_range: is searched on a log scale, so must be positive, "
                                  f"got {short(list(bounds))}")
            hard = self.HARD_LIMITS.get(gene)
            if hard is not None and not (hard[0] <= bounds[0] and bounds[1] < hard[1]):
                raise ConfigError(f"{gene}_range: must lie in [{hard[0]:g}, {hard[1]:g}), got {short(list(bounds))}")
            object.__setattr__(self, gene, bounds)
        unknown = [o for o in self.optimizers if o not in OPTIMIZERS]
        if unknown or not self.optimizers or len(set(self.optimizers)) != len(self.optimizers):
            raise ConfigError(f"optimizers: must be distinct names from {', '.join(OPTIMIZERS)}, "
                              f"got {short(list(self.optimizers))}")
        object.__setattr__(self, "optimizers", tuple(self.optimizers))

    @classmethod
    def from_settings(cls, settings: dict) -> HParamSpace:
        """The space of a run's flat settings (`lr_range`...; those missing keep their defaults)."""
        given = {gene: tuple(settings[f"{gene}_range"]) for gene in NUMERIC if settings.get(f"{gene}_range")}
        if settings.get("optimizers"):
            given["optimizers"] = tuple(settings["optimizers"])
        return cls(**given)

    def settings(self) -> dict:
        """The inverse of from_settings: setting name -> value."""
        return {**{f"{gene}_range": getattr(self, gene) for gene in NUMERIC}, "optimizers": self.optimizers}

    def sample(self, rng: random.Random) -> HParams:
        return HParams(lr=_log_uniform(rng, *self.lr),
                       weight_decay=_log_uniform(rng, *self.weight_decay),
                       dropout=rng.uniform(*self.dropout),
                       optimizer=rng.choice(self.optimizers))

    def mutate(self, hp: HParams, rng: random.Random) -> HParams:
        """Perturb one gene: a log-normal step for the log-scaled ones, clipped to the range."""
        gene = rng.choice(["lr", "weight_decay", "dropout", "optimizer"])
        if gene == "optimizer" and len(self.optimizers) > 1:
            value = rng.choice([o for o in self.optimizers if o != hp.optimizer])
        elif gene == "dropout":
            width = self.dropout[1] - self.dropout[0]
            value = _clip(hp.dropout + rng.gauss(0.0, self.sigma * width / 2), self.dropout)
        elif gene in self.LOG_SCALED:
            bounds = getattr(self, gene)
            value = _clip(getattr(hp, gene) * math.exp(rng.gauss(0.0, self.sigma)), bounds)
        else:
            return hp
        return HParams(**{**hp.to_dict(), gene: value})

    def cross(self, a: HParams, b: HParams, rng: random.Random) -> HParams:
        da, db = a.to_dict(), b.to_dict()
        return HParams(**{k: (da if rng.random() < 0.5 else db)[k] for k in da})

    def validate(self, hp: HParams | None, where: str) -> None:
        if hp is None:
            raise GenomeError(f"{where}: hparams: missing, and this run searches hyperparameters")
        for gene in NUMERIC:
            low, high = getattr(self, gene)
            if not low <= getattr(hp, gene) <= high:
                raise GenomeError(f"{where}: hparams.{gene}: {getattr(hp, gene)} is outside [{low}, {high}]")
        if hp.optimizer not in self.optimizers:
            raise GenomeError(f"{where}: hparams.optimizer: {short(hp.optimizer)} is not one of {self.optimizers}")


def best_candidates(evaluations: list) -> list:
    """The best candidates among evaluations (records): the top BEST_SHARE, rounded up and at least
    BEST_MIN, of the successful ones that carry hyperparameters, by accuracy (ties: lower id)."""
    ok = sorted((e for e in evaluations if e.ok and e.genome.hparams is not None), key=lambda e: (-e.accuracy, e.id))
    return ok[: max(BEST_MIN, math.ceil(BEST_SHARE * len(ok)))]


def border_edges(values: list[float], bounds: tuple[float, float], log: bool,
                 hard: tuple[float, float] | None = None) -> list[str]:
    """The edges ("lower", "upper") of `bounds` that at least half of `values` sit within
    BORDER of (positions in log space when `log`); edges equal to a hard limit never count."""
    if not values:
        return []
    scale = math.log if log else float
    low, high = scale(bounds[0]), scale(bounds[1])
    positions = [(scale(v) - low) / (high - low) for v in values]
    near = {"lower": sum(p <= BORDER for p in positions), "upper": sum(p >= 1 - BORDER for p in positions)}
    limits = dict(zip(("lower", "upper"), hard or (None, None)))
    edges = dict(zip(("lower", "upper"), bounds))
    return [side for side in ("lower", "upper") if 2 * near[side] >= len(values) and edges[side] != limits[side]]


def _log_uniform(rng: random.Random, low: float, high: float) -> float:
    return math.exp(rng.uniform(math.log(low), math.log(high)))


def _clip(value: float, bounds: tuple[float, float]) -> float:
    return min(max(value, bounds[0]), bounds[1])


def hparams_key(hp: HParams | None) -> str:
    if hp is None:
        return ""
    return f"|hp:{hp.lr!r},{hp.weight_decay!r},{hp.dropout!r},{hp.optimizer}"
