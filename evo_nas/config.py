"""A run's configuration: one frozen dataclass, defaults that carry their reasons.   [stdlib]

Precedence: defaults < the device's proxy preset < config file < command-line flags. The
resolved config (every value concrete) is written to the run directory; resuming reads it
back, and refuses changes that would change the results (extending the budget is fine).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, fields
from typing import Any

from evo_nas.errors import ConfigError
from evo_nas.pareto import OBJECTIVES

SPACES = ("cells", "layers", "nb201")
ALGORITHMS = ("nsga2", "aging", "random")
BACKENDS = ("serial", "local", "ray")
DEVICES = ("auto", "cpu", "cuda")
FIDELITIES = ("none", "sha")


@dataclass(frozen=True)
class RunConfig:
    # -- what to search ---------------------------------------------------------------
    space: str = "cells"
    dataset: str = "fashion-mnist"  # ships as a Debian package; fast enough for a CPU run
    data_dir: str | None = None
    val_fraction: float = 0.1  # validation split carved from the training set, seeded
    train_limit: int | None = None  # train on a seeded subset of the train split (proxy)
    val_limit: int | None = None  # validate on a seeded subset of the validation split
    blocks: int = 5  # cells: blocks per cell (NASNet uses 5)
    ops: tuple[str, ...] | None = None  # cells/nb201: op set; None = the space's default
    min_layers: int = 3  # layers space: depth bounds
    max_layers: int = 10
    kernel_sizes: tuple[int, ...] = (1, 3, 5, 7)  # layers space: filter heights and widths (Zoph & Le)
    filter_counts: tuple[int, ...] = (24, 36, 48, 64)  # layers space: filters per layer (Zoph & Le)
    reductions: int = 2  # stride-2 steps in the skeleton: cells/layers at depth*k//(reductions+1)
    hparams: bool = False  # search learning rate, weight decay, dropout, optimizer too
    seed_genomes: tuple[str, ...] = ()  # genome files put into the first population
    # -- how to search ----------------------------------------------------------------
    algorithm: str = "nsga2"
    population: int | None = None
    offspring: int | None = None  # children per generation (None: population; aging: 1/4)
    sample: int = 4  # aging: tournament size
    crossover: float = 0.5  # nsga2: share of children made by crossover (then mutation)
    objectives: tuple[str, ...] = OBJECTIVES
    max_macs: float | None = None  # aging: limits on a candidate to become a parent
    max_params: float | None = None
    # -- when to stop -----------------------------------------------------------------
    generations: int | None = None  # generations after the initial population
    budget: int | None = None  # or: this many trained evaluations (dedup hits are free)
    # -- who evaluates ----------------------------------------------------------------
    backend: str = "serial"
    workers: int | None = None  # local backend: worker processes (None: one per GPU slot, or 1)
    slots_per_gpu: int = 1  # candidates in flight per GPU
    ray_address: str | None = None
    device: str = "auto"
    # CPU evaluations use exactly this many threads (None: this machine's cores, then fixed in
    # config.yaml): float results depend on the thread count, and a run must not depend on
    # which backend or worker evaluated a candidate.
    cpu_threads: int | None = None
    # -- the proxy: skeleton and brief training ---------------------------------------
    init_channels: int | None = None
    layers: int | None = None  # cells in the cell skeleton (nb201: cells per stage)
    epochs: float | None = None
    batch_size: int | None = None
    lr: float | None = None  # peak SGD rate for a batch of 256, scaled linearly with batch size
    weight_decay: float = 5e-4  # brief trainings overfit little; mild decay helps BN nets
    label_smoothing: float = 0.1  # steadier proxy accuracies for short trainings
    optimizer: str = "sgd"  # SGD + Nesterov momentum: the standard for CIFAR-style cells
    cuda_graph: str = "auto"
    time_limit: float = 0.0  # seconds per evaluation; 0 = none; exceeding it fails the candidate
    bn_recalibration: int | None = None  # training images to recompute BN statistics on before validating
    fidelity: str = "none"  # "sha": successive halving inside each generation
    sha_rungs: int = 3
    # -- bookkeeping ------------------------------------------------------------------
    seed: int = 0
    name: str | None = None
    runs_dir: str = "runs"
    report: bool = True  # refresh report.html after every generation


# Values a run gets when neither the config file nor a flag sets them, by device. CPU: a
# search that finishes `make run` in minutes on 2 cores (small net, data subset). GPU: the
# proxy of performance-notes.md (device-resident data, CUDA-graph steps).
PRESETS: dict[str, dict[str, Any]] = {
    "cpu": {"population": 8, "generations": 2, "init_channels": 8, "layers": 3, "epochs": 1.0,
            "batch_size": 64, "train_limit": 1200, "val_limit": 500, "bn_recalibration": 512,
            # A 19-step proxy wants a high rate: 3 random cells reached 0.45/0.62/0.63 mean val
            # accuracy at lr 0.1/0.4/1.0 (CPU proxy, n=3 genomes each).
            "lr": 0.4},
    "cuda": {"population": 32, "generations": 20, "init_channels": 16, "layers": 8, "epochs": 2.0,
             "batch_size": 512, "train_limit": None, "val_limit": None, "bn_recalibration": 2048,
             "lr": 0.2},
}
NB201_PRESET = {"init_channels": 16, "layers": 5}  # the benchmark's TinyNetwork (C=16, N=5)

# Changing these on resume would not change which evaluations happen or what they return.
RESUMABLE_CHANGES = {"generations", "budget", "backend", "workers", "slots_per_gpu", "ray_address",
                     "report", "runs_dir", "name", "data_dir"}


def field_names() -> list[str]:
    return [f.name for f in fields(RunConfig)]


def from_mapping(data: dict[str, Any], where: str = "config") -> RunConfig:
    """Build a config from a mapping (a YAML file, CLI flags), checking names and types."""
    known = {f.name: f for f in fields(RunConfig)}
    values = {}
    for key, value in data.items():
        name = key.replace("-", "_")
        if name not in known:
            raise ConfigError(f"{where}: {key}: unknown setting (see `evonas run --help`)")
        values[name] = _coerce(known[name], value, where)
    return check(RunConfig(**values), where)


def resolve(cfg: RunConfig, device: str) -> RunConfig:
    """Fill the values left open from the device's preset (device: "cpu" or "cuda")."""
    preset = dict(PRESETS[device])
    if cfg.space == "nb201":
        preset.update(NB201_PRESET)
    filled = {k: v for k, v in preset.items() if getattr(cfg, k) is None}
    if cfg.cpu_threads is None:
        filled["cpu_threads"] = max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                                    else os.cpu_count() or 1)
    if cfg.budget is not None and cfg.generations is None:
        filled["generations"] = None  # a budget alone decides when to stop
    return dataclasses.replace(cfg, device=device, **filled)


def to_dict(cfg: RunConfig) -> dict[str, Any]:
    return {f.name: list(v) if isinstance(v := getattr(cfg, f.name), tuple) else v for f in fields(cfg)}


def check(cfg: RunConfig, where: str = "config") -> RunConfig:
    choices = {"space": SPACES, "algorithm": ALGORITHMS, "backend": BACKENDS, "device": DEVICES,
               "fidelity": FIDELITIES, "optimizer": ("sgd", "rmsprop", "adam"),
               "cuda_graph": ("auto", "on", "off")}
    for name, allowed in choices.items():
        if getattr(cfg, name) not in allowed:
            raise ConfigError(f"{where}: {name}: must be one of {', '.join(allowed)}, got {getattr(cfg, name)!r}")
    bad = [o for o in cfg.objectives if o not in OBJECTIVES]
    if bad or not cfg.objectives or len(set(cfg.objectives)) != len(cfg.objectives):
        raise ConfigError(f"{where}: objectives: must be distinct names from {', '.join(OBJECTIVES)}, "
                          f"got {list(cfg.objectives)}")
    if cfg.algorithm == "aging" and "accuracy" not in cfg.objectives:
        raise ConfigError(f"{where}: objectives: aging evolution optimises accuracy; keep it in the list")
    positive = ["population", "budget", "epochs", "batch_size", "init_channels", "layers",
                "workers", "train_limit", "val_limit", "offspring", "blocks", "sample", "slots_per_gpu",
                "sha_rungs", "lr", "cpu_threads"]
    if cfg.bn_recalibration is not None and cfg.bn_recalibration < 0:
        raise ConfigError(f"{where}: bn_recalibration: must not be negative")
    for name in positive:
        value = getattr(cfg, name)
        if value is not None and value <= 0:
            raise ConfigError(f"{where}: {name}: must be positive, got {value}")
    for name in ("generations",):
        if getattr(cfg, name) is not None and getattr(cfg, name) < 0:
            raise ConfigError(f"{where}: {name}: must not be negative")
    if not 0 < cfg.val_fraction < 1:
        raise ConfigError(f"{where}: val_fraction: must be between 0 and 1, got {cfg.val_fraction}")
    if not 0 <= cfg.crossover <= 1:
        raise ConfigError(f"{where}: crossover: must be between 0 and 1, got {cfg.crossover}")
    _check_ops(cfg, where)
    if any(k <= 0 or k % 2 == 0 for k in cfg.kernel_sizes) or not cfg.kernel_sizes:
        raise ConfigError(f"{where}: kernel_sizes: must be odd positive sizes, got {list(cfg.kernel_sizes)}")
    if any(f <= 0 for f in cfg.filter_counts) or not cfg.filter_counts:
        raise ConfigError(f"{where}: filter_counts: must be positive counts, got {list(cfg.filter_counts)}")
    if cfg.reductions < 0:
        raise ConfigError(f"{where}: reductions: must not be negative")
    if cfg.min_layers > cfg.max_layers:
        raise ConfigError(f"{where}: min_layers: {cfg.min_layers} is above max_layers {cfg.max_layers}")
    if cfg.population is not None and cfg.algorithm == "aging" and cfg.sample > cfg.population:
        raise ConfigError(f"{where}: sample: tournament size {cfg.sample} exceeds the population {cfg.population}")
    return cfg


def resume_changes(old: RunConfig, new: RunConfig) -> list[str]:
    """Settings that differ and would change the run's results."""
    return [f.name for f in fields(RunConfig)
            if f.name not in RESUMABLE_CHANGES and getattr(old, f.name) != getattr(new, f.name)]


def _check_ops(cfg: RunConfig, where: str) -> None:
    from evo_nas.genome import CELL_OPS, NB201_OPS

    if cfg.ops is None:
        return
    known = {"cells": CELL_OPS, "nb201": NB201_OPS}.get(cfg.space)
    if known is None:
        raise ConfigError(f"{where}: ops: the {cfg.space} space has no op set (use kernel_sizes, filter_counts)")
    unknown = [op for op in cfg.ops if op not in known]
    if unknown or not cfg.ops:
        raise ConfigError(f"{where}: ops: {unknown[0] if unknown else 'empty'} is not an op of the {cfg.space} space "
                          f"(known: {', '.join(known)})")


def results_part(cfg: RunConfig) -> dict[str, Any]:
    """The settings a run's results depend on (everything resume may not change)."""
    return {k: v for k, v in to_dict(cfg).items() if k not in RESUMABLE_CHANGES}


def _coerce(f: dataclasses.Field, value: Any, where: str) -> Any:
    """YAML and click give strings, lists and numbers; turn them into the field's type."""
    kind = str(f.type)
    if value is None:
        if "None" in kind:
            return None
        raise ConfigError(f"{where}: {f.name}: must be set")
    try:
        if "tuple" in kind:
            items = value.split(",") if isinstance(value, str) else list(value)
            items = [str(x).strip() for x in items if str(x).strip()]
            return tuple(int(x) for x in items) if "tuple[int" in kind else tuple(items)
        if kind.startswith("bool"):
            if isinstance(value, str):
                if value.lower() not in ("true", "false", "yes", "no", "1", "0", "on", "off"):
                    raise ValueError(value)
                return value.lower() in ("true", "yes", "1", "on")
            return bool(value)
        if kind.startswith("int"):
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError(value)
            return int(value)
        if kind.startswith("float"):
            if isinstance(value, bool):
                raise ValueError(value)
            return float(value)
        return str(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: {f.name}: expected {kind.replace(' | None', '')}, got {value!r}") from None
