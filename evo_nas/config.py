"""Every setting, defined once: frozen configs whose fields carry their default, help and choices.   [no torch]

A run's config is composed of the library's own configs (space, data, skeleton, train, search,
stop, backend, run). Names are unique across the groups, so the command line and a config file
use flat names (`--population`, `epochs: 2`), while the library reads `cfg.search.population`.
Precedence: field defaults < the device's preset < the space's proxy skeleton < config file <
flags. A resolved config has every value concrete; it is written to the run directory, and
resuming refuses changes that would change the results.
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass, field, fields
from typing import Any

from evo_nas import spaces
from evo_nas.errors import ConfigError, short
from evo_nas.genome import OPTIMIZERS
from evo_nas.pareto import OBJECTIVES
from evo_nas.spaces.hparams import HParamSpace
from evo_nas.variation import OPERATOR_SETS


def setting(default: Any, help: str, choices: tuple | None = None, cli: bool = True, **more) -> Any:
    """A config field: its default, a help line and, for the command line, its choices."""
    return field(default=default, metadata={"help": help, "choices": choices, "cli": cli, **more})


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


# Bounds on counts, so that a typo (population: 99999999999999999999) is an error, not a run.
MAXIMUM = {"population": 100_000, "offspring": 100_000, "sample": 100_000, "generations": 1_000_000,
           "budget": 10_000_000, "workers": 1024, "slots_per_gpu": 64, "cpu_threads": 4096, "sha_rungs": 16,
           "repeats": 100, "retries": 10_000, "init_channels": 4096, "depth": 1000, "stem_multiplier": 64,
           "reductions": 16, "classes": 100_000, "epochs": 100_000, "batch_size": 1 << 20,
           "eval_batch_size": 1 << 20, "train_limit": 1 << 31, "val_limit": 1 << 31, "test_limit": 1 << 31,
           "seed": (1 << 63) - 1}


def _positive(cfg, *names: str) -> None:
    for name in names:
        value = getattr(cfg, name)
        _check(value is None or value > 0, f"{name}: must be positive, got {short(value)}")


def _bounded(cfg) -> None:
    for f in fields(cfg):
        value, top = getattr(cfg, f.name), MAXIMUM.get(f.name)
        if top is not None and isinstance(value, int | float) and value > top:
            raise ConfigError(f"{f.name}: {short(value)} is above the most evonas allows ({top:,})")


def _choices(cfg) -> None:
    for f in fields(cfg):
        allowed = f.metadata.get("choices")
        if allowed and getattr(cfg, f.name) not in allowed:
            raise ConfigError(f"{f.name}: must be one of {', '.join(map(str, allowed))}, "
                              f"got {short(getattr(cfg, f.name))}")


@dataclass(frozen=True)
class DataConfig:
    dataset: str = setting("fashion-mnist", "fashion-mnist, mnist, cifar10, cifar100 or npz:PATH")
    data_dir: str | None = setting(None, "folder with the data set files", resumable={"run", "train"})
    val_fraction: float = setting(0.1, "share of the training set held out for validation (seeded)")
    train_limit: int | None = setting(None, "train on a seeded subset of this many images (all: none)")
    val_limit: int | None = setting(None, "validate on a seeded subset of this many images (all: none)")
    test_limit: int | None = setting(None, "final trainings: test on a seeded subset of this many images (all: none)",
                                     cli=False)

    def __post_init__(self):
        _check(0 < self.val_fraction < 1, f"val_fraction: must be between 0 and 1, got {self.val_fraction}")
        _positive(self, "train_limit", "val_limit", "test_limit")
        _bounded(self)


STEMS = ("cifar", "imagenet")
CIFAR_STEM_MAX = 64  # px: the largest image side the cifar stem takes (64x64: Tiny ImageNet)


@dataclass(frozen=True)
class Skeleton:
    """The network around a genome. Defaults: DARTS' CIFAR-10 search network."""

    input_shape: tuple[int, ...] = setting((3, 32, 32), "(C, H, W) of one image", cli=False)
    classes: int = setting(10, "classes of the data set (npz: the labels give it; name it when some never appear)")
    init_channels: int | None = setting(16, "skeleton width C: channels per state in the first stage")
    depth: int | None = setting(8, "cells in the skeleton (nb201: cells per stage)")
    stem_multiplier: int = setting(3, "the cell stem makes stem_multiplier x C channels, as DARTS")
    stem: str = setting("cifar", f"cells: cifar, one conv at full resolution (images up to {CIFAR_STEM_MAX} px); "
                                 "imagenet, DARTS' two stride-2 stems, 1/8 resolution before the first cell", STEMS)
    reductions: int = setting(2, "stride-2 steps in the skeleton (cells and layers; nb201 always has 2)")
    auxiliary: bool = setting(False, "DARTS' auxiliary head (cells; training only)")
    drop_path: float = setting(0.0, "drop-path probability, annealed from 0 during training (cells)")
    dropout: float = setting(0.0, "classifier dropout; a genome's hparams.dropout overrides it")

    def __post_init__(self):
        shape = tuple(self.input_shape)
        object.__setattr__(self, "input_shape", shape)
        _check(len(shape) == 3 and shape[0] >= 1 and min(shape[1:]) >= 8,
               f"input_shape: needs (C, H, W) with H, W >= 8, got {short(shape)}")
        for name in ("classes", "init_channels", "depth", "stem_multiplier"):
            _check(getattr(self, name) is None or getattr(self, name) >= 1,
                   f"{name}: must be at least 1, got {short(getattr(self, name))}")
        _check(self.reductions >= 0, f"reductions: must not be negative, got {short(self.reductions)}")
        for name in ("drop_path", "dropout"):
            _check(0.0 <= getattr(self, name) < 1.0, f"{name}: must be in [0, 1), got {getattr(self, name)}")
        _check_stem(self)
        _bounded(self)


def _check_stem(sk: Skeleton) -> None:
    """The imagenet stem divides the resolution by 8 before the first cell: on small images the
    last cells would see 1x1 maps. (A cifar stem on large images is the cell network's to refuse:
    the other spaces' networks take any size.)"""
    _choices(sk)
    if sk.stem == "imagenet":
        size = "x".join(map(str, sk.input_shape))
        _check(max(sk.input_shape[1:]) > CIFAR_STEM_MAX,
               f"stem: imagenet divides {size} images by 8 before the first cell; images up to "
               f"{CIFAR_STEM_MAX} px need stem cifar")
        default = next(f.default for f in fields(sk) if f.name == "stem_multiplier")
        _check(sk.stem_multiplier == default, "stem_multiplier: applies to the cifar stem only (the imagenet "
                                              "stem makes C channels, as DARTS)")


SCHEDULES = ("onecycle", "cosine", "constant")
SWITCHES = ("auto", "on", "off")


@dataclass(frozen=True)
class TrainConfig:
    """How a network is trained. Defaults: a short proxy training, airbench/DARTS-style."""

    epochs: float = setting(1.0, "training epochs (fractions allowed)")
    batch_size: int = setting(256, "training batch size")
    lr: float = setting(0.2, "peak learning rate for a batch of 256, scaled linearly with the batch")
    momentum: float = setting(0.9, "SGD and RMSprop momentum")
    nesterov: bool = setting(True, "Nesterov momentum (SGD)")
    weight_decay: float = setting(5e-4, "L2 weight decay (5e-4: the CIFAR ResNet value)")
    label_smoothing: float = setting(0.1, "label smoothing: steadier accuracies for short trainings")
    optimizer: str = setting("sgd", "optimizer; a genome's hparams override it", OPTIMIZERS)
    schedule: str = setting("onecycle", "learning-rate schedule after the warm-up", SCHEDULES)
    warmup: float = setting(0.2, "share of the steps spent warming the rate up linearly")
    grad_clip: float = setting(5.0, "global gradient-norm clip, as DARTS (0: off)")
    precision: str = setting("auto", "auto: bf16 autocast on CUDA, fp32 on the CPU", ("auto", "bf16", "fp32"))
    channels_last: str = setting("auto", "channels_last memory format (auto: on)", SWITCHES)
    cuda_graph: str = setting("auto", "capture each training step as a CUDA graph (auto: where it works)",
                              SWITCHES)
    warmup_steps_before_capture: int = setting(3, "eager steps before a CUDA graph is captured", cli=False)
    time_limit: float = setting(0.0, "seconds per training; beyond it the candidate fails (0: none)")
    augment: bool = setting(True, "augmentation on the device: random crop and mirror (no mirror for digits), and "
                                  "the four below")
    # Each of these left at none takes the data set's default (docs/data.md).
    crop_scale: float | None = setting(None, "random resized crop: least share of the image's area a crop keeps "
                                             "(1: off; none: the data set's)")
    crop_ratio: float | None = setting(None, "random resized crop: largest aspect-ratio stretch r, log-uniform in "
                                             "[1/r, r] (1: off; none: the data set's)")
    brightness: float | None = setting(None, "brightness jitter b: pixels times a factor in [1-b, 1+b] "
                                             "(0: off; none: the data set's)")
    contrast: float | None = setting(None, "contrast jitter c: distance from the image's mean times a factor in "
                                           "[1-c, 1+c] (0: off; none: the data set's)")
    eval_batch_size: int = setting(1024, "batch size when measuring accuracy", cli=False)
    aux_weight: float = setting(0.4, "weight of DARTS' auxiliary-head loss")
    bn_recalibration: int = setting(2048, "training images to recompute BatchNorm statistics on before "
                                          "validating (0: off)")
    train_images: int | None = setting(None, "a budget: train on this many images in all, whatever the data set's "
                                             "size (epochs follow from it; giving epochs turns it off)")
    cudnn_benchmark: bool | None = setting(None, "let cuDNN time its kernels per shape (CUDA, process-wide; "
                                                 "none: torch's default, off)")

    def __post_init__(self):
        _choices(self)
        _positive(self, "epochs", "batch_size", "lr", "eval_batch_size", "train_images")
        _check(self.momentum >= 0, "momentum: must not be negative")
        _check(self.weight_decay >= 0, "weight_decay: must not be negative")
        _check(0 <= self.label_smoothing < 1, "label_smoothing: must be in [0, 1)")
        _check(0 <= self.warmup < 1, "warmup: must be in [0, 1)")
        _check(self.grad_clip >= 0, "grad_clip: must not be negative (0: off)")
        _check(self.warmup_steps_before_capture >= 1,
               "warmup_steps_before_capture: must be >= 1 (optimizer state must exist before capture)")
        _check(self.time_limit >= 0, "time_limit: must not be negative")
        _check(self.aux_weight >= 0, "aux_weight: must not be negative")
        _check(self.bn_recalibration >= 0, "bn_recalibration: must not be negative")
        _check(self.crop_scale is None or 0 < self.crop_scale <= 1,
               f"crop_scale: must be in (0, 1], got {self.crop_scale}")
        _check(self.crop_ratio is None or self.crop_ratio >= 1,
               f"crop_ratio: must be at least 1, got {self.crop_ratio}")
        for name in ("brightness", "contrast"):
            _check(getattr(self, name) is None or 0 <= getattr(self, name) < 1,
                   f"{name}: must be in [0, 1), got {getattr(self, name)}")
        _bounded(self)


# `evonas train`'s recipe: DARTS-V2 at C=16, 8 cells reached 93.9% Fashion-MNIST test accuracy in 20
# one-cycle epochs (docs/performance.md); the final cell network has 12x its MACs (403M vs 33M
# per image) and more to learn, so 2.5x the epochs, with a cosine schedule after a 1-epoch
# linear warm-up (2% of 50: a high peak rate on a fresh deep network needs a short ramp). After
# a long training the BatchNorm statistics are current: no recalibration.
FULL_TRAINING = TrainConfig(epochs=50, batch_size=256, lr=0.2, schedule="cosine", warmup=0.02, bn_recalibration=0)


ALGORITHMS = ("nsga2", "aging", "random")
PREDICTED = "+predictor"  # a study arm "nsga2+predictor": the algorithm with `predictor` on
STUDY_ARMS = (*ALGORITHMS, "aging" + PREDICTED, "nsga2" + PREDICTED)
FIDELITIES = ("none", "sha")


@dataclass(frozen=True)
class SearchConfig:
    algorithm: str = setting("nsga2", "search algorithm", ALGORITHMS)
    population: int = setting(16, "population size")
    offspring: int | None = setting(None, "children per generation (none: the population; aging: a quarter)")
    sample: int = setting(4, "aging: tournament size")
    crossover: float = setting(0.5, "nsga2: share of children made by crossover (then mutation)")
    # semantic: better on the NB201 study's tuning seeds (README, "Variation operators")
    operators: str = setting("semantic", "variation: semantic (the space's own: AmoebaNet's op and hidden-state "
                                         "mutations, cell swap...), deap (DEAP's two-point and uniform crossover and "
                                         "uniform integer mutation on the space's flat encoding) or both",
                             OPERATOR_SETS)
    objectives: tuple[str, ...] = setting(OBJECTIVES, "comma-separated, any of accuracy, macs, params")
    max_macs: float | None = setting(None, "MACs over which a candidate is infeasible: not trained, never a "
                                           "parent (aging: ranked by its excess; nsga2: worst)")
    max_params: float | None = setting(None, "parameters over which a candidate is infeasible (as max_macs)")
    seed_genomes: tuple[str, ...] = setting((), "comma-separated genome files put into the first population")
    repeats: int = setting(1, "trainings of each candidate, each with its own seed; the objective is their mean "
                              "accuracy, and their spread is reported")
    tie_width: float = setting(0.0, "accuracy differences below this count as ties in selection (a fraction: 0.02 "
                                "2 points; 0: exact): NSGA-II compares accuracy in boxes of this width, aging's "
                                "tournament gives near-ties to the cheaper candidate")
    fidelity: str = setting("none", "none, or sha: successive halving inside each generation", FIDELITIES)
    sha_rungs: int = setting(3, "successive-halving rungs")
    retries: int = setting(50, "attempts to breed a child never evaluated before", cli=False)
    predictor: bool = setting(False, "nsga2, aging: after the first population, breed more children than train "
                                     "and train those a model fitted on the run's results predicts best "
                                     "(README, \"Search quality\")")
    # Chosen on the NB201 table study, CIFAR-10, budget 50, tuning seeds 1000-1099, mean test accuracy
    # +- standard error (n=100 each). aging+predictor, ratio/explore: 2/0 94.03 +- 0.03, 2/0.25 94.08
    # +- 0.03, 2/0.5 94.03 +- 0.04, 4/0 94.04 +- 0.03, 4/0.25 94.04 +- 0.04, 4/0.5 94.05 +- 0.04, 8/0
    # 93.95 +- 0.04, 8/0.25 94.04 +- 0.03, 8/0.5 94.04 +- 0.04; nsga2+predictor, ratio 2/4/8: 93.64 /
    # 93.65 / 93.54 (+- 0.05-0.06). Every setting but ratio 8 without exploration lies within about
    # one standard error of the best; 4 and 0.25 (the prior, NPENAS-like) were kept.
    predictor_ratio: float = setting(4.0, "with --predictor: children bred per child trained")
    predictor_explore: float = setting(0.25, "with --predictor, aging: chance that a trained child is drawn at "
                                             "random from those bred instead of the predicted best")

    @property
    def children(self) -> int:
        """Children bred per generation: `offspring`, else the population (aging: a quarter of it)."""
        return self.offspring or (max(1, self.population // 4) if self.algorithm == "aging" else self.population)

    def __post_init__(self):
        _choices(self)
        _positive(self, "population", "offspring", "sample", "sha_rungs", "retries", "max_macs", "max_params",
                  "repeats")
        bad = [o for o in self.objectives if o not in OBJECTIVES]
        _check(not bad and bool(self.objectives) and len(set(self.objectives)) == len(self.objectives),
               f"objectives: must be distinct names from {', '.join(OBJECTIVES)}, got {short(list(self.objectives))}")
        _check(self.algorithm != "aging" or "accuracy" in self.objectives,
               "objectives: aging evolution optimises accuracy; keep it in the list")
        _check(0 <= self.crossover <= 1, f"crossover: must be between 0 and 1, got {self.crossover}")
        _check(0 <= self.tie_width < 1,
               f"tie_width: must be at least 0 and below 1 (a fraction of accuracy), got {self.tie_width}")
        _check(self.algorithm != "aging" or self.sample <= self.population,
               f"sample: tournament size {self.sample} exceeds the population {self.population}")
        _check(not self.predictor or self.algorithm in ("nsga2", "aging"),
               f"predictor: screens the children of nsga2 and aging; {self.algorithm} has none to screen")
        _check(1 <= self.predictor_ratio <= 100,
               f"predictor_ratio: must be between 1 and 100, got {self.predictor_ratio}")
        _check(0 <= self.predictor_explore <= 1,
               f"predictor_explore: must be between 0 and 1, got {self.predictor_explore}")
        _bounded(self)


@dataclass(frozen=True)
class StopConfig:
    generations: int | None = setting(None, "generations after the initial population", resumable={"run"})
    budget: int | None = setting(None, "trained evaluations (dedup hits are free), instead of generations",
                                 resumable={"run"})

    def __post_init__(self):
        _check(self.generations is None or self.generations >= 0, "generations: must not be negative")
        _positive(self, "budget")
        _bounded(self)


BACKENDS = ("serial", "local", "ray")
DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class BackendConfig:
    backend: str = setting("serial", "who runs evaluations", BACKENDS, resumable={"run"})
    workers: int | None = setting(None, "local/ray backend: worker processes (none: one per GPU, or 1)",
                                  resumable={"run"})
    slots_per_gpu: int = setting(1, "candidates in flight per GPU", resumable={"run"})
    ray_address: str | None = setting(None, "ray backend: cluster address", resumable={"run"})
    device: str = setting("auto", "where candidates train", DEVICES, resumable={"train"})
    # Float results on the CPU depend on the thread count: a run fixes it (none: this machine's
    # cores, then written to config.yaml), so results do not depend on the backend or worker.
    cpu_threads: int | None = setting(None, "threads per CPU evaluation (none: this machine's cores)",
                                      resumable={"train"})

    def __post_init__(self):
        _choices(self)
        _positive(self, "workers", "slots_per_gpu", "cpu_threads")
        _bounded(self)


@dataclass(frozen=True)
class RunInfo:
    seed: int = setting(0, "seed: everything random derives from it (the split, the search, each training)")
    name: str | None = setting(None, "run name, one folder name: runs/<name> (none: space-algorithm-time)",
                               resumable={"run"})
    runs_dir: str = setting("runs", "where runs are written", resumable={"run"})
    report: bool = setting(True, "refresh report.html after every generation", resumable={"run"})

    def __post_init__(self):
        _check(self.seed >= 0, f"seed: must not be negative, got {short(self.seed)}")  # numpy's generators refuse it
        _bounded(self)
        _check(self.name is None or re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,99}", self.name) is not None,
               f"name: must be one folder name of letters, digits, '.', '_' and '-' (not starting with '.'), "
               f"got {short(self.name)}")


@dataclass(frozen=True)
class SpaceConfig:
    space: str = setting("cells", f"search space: {', '.join(spaces.NAMES)}")
    hparams: bool = setting(False, "search learning rate, weight decay, dropout and optimizer too")
    # The hyperparameter genes' ranges (with --hparams); `evonas refine RUN` narrows them.
    lr_range: tuple[float, ...] = setting(HParamSpace.lr, "hparams: learning-rate range low,high (log-uniform)")
    weight_decay_range: tuple[float, ...] = setting(HParamSpace.weight_decay,
                                                    "hparams: weight-decay range low,high (log-uniform)")
    dropout_range: tuple[float, ...] = setting(HParamSpace.dropout, "hparams: dropout range low,high (uniform)")
    optimizers: tuple[str, ...] = setting(HParamSpace.optimizers, "hparams: the optimizers to choose from")
    options: dict = setting(None, "the space's own options", cli=False)  # name -> value, see spaces

    def __post_init__(self):
        spaces.entry(self.space)
        for name, value in self.hparam_space().settings().items():  # checked, and as floats
            object.__setattr__(self, name, value)
        object.__setattr__(self, "options", dict(self.options or {}))
        space = self.make(Skeleton())  # checks the options against the space
        object.__setattr__(self, "options", {f.name: getattr(space, f.name) for f in space.options()})

    def make(self, skeleton: Skeleton):
        """The SearchSpace these settings describe."""
        return spaces.entry(self.space).space.from_options(self.options, self.hparam_space() if self.hparams else None,
                                                           reductions=skeleton.reductions)

    def hparam_space(self) -> HParamSpace:
        """The hyperparameter genes' space these ranges describe (searched only with `hparams`)."""
        return HParamSpace.from_settings({f.name: getattr(self, f.name) for f in fields(self)})


GROUPS = {"space": SpaceConfig, "data": DataConfig, "skeleton": Skeleton, "train": TrainConfig,
          "search": SearchConfig, "stop": StopConfig, "backend": BackendConfig, "run": RunInfo}


@dataclass(frozen=True)
class RunConfig:
    space: SpaceConfig = field(default_factory=SpaceConfig)
    data: DataConfig = field(default_factory=DataConfig)
    skeleton: Skeleton = field(default_factory=Skeleton)
    train: TrainConfig = field(default_factory=TrainConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    stop: StopConfig = field(default_factory=StopConfig)
    backend: BackendConfig = field(default_factory=BackendConfig)
    run: RunInfo = field(default_factory=RunInfo)

    @property
    def seed(self) -> int:
        return self.run.seed

    @property
    def device(self) -> str:
        return self.backend.device


# -- the settings of the commands besides `run` (each also takes the groups above it needs) -----

@dataclass(frozen=True)
class FidelityConfig:
    """What `evonas fidelity` measures besides the proxy (which is an `evonas run`'s settings)."""

    genomes: int = setting(16, "genomes sampled from the space", minimum=4)
    from_run: str | None = setting(None, "measure this run's Pareto front instead")
    genome_files: tuple[str, ...] = setting((), "measure these comma-separated genome files instead")
    reference_factor: float = setting(10.0, "the reference trains on this many times the proxy's training images")
    reference_val: int | None = setting(5000, "validation images of the reference (none: the whole split)")
    reference: bool = setting(True, "--no-reference: the proxy's repeatability only, a quick first look")

    def __post_init__(self):
        if self.genomes < 4 or self.genomes > 1000:
            raise ConfigError(f"genomes: a ranking needs 4 to 1000 genomes, got {self.genomes}")
        if self.reference_factor < 1:
            raise ConfigError(f"reference_factor: must be at least 1, got {self.reference_factor}")
        if self.reference_val is not None and self.reference_val < 1:
            raise ConfigError(f"reference_val: must be positive, got {self.reference_val}")


NAMED_SKELETONS = tuple(sorted({name for entry in spaces.REGISTRY.values() for name in entry.skeletons}))


@dataclass(frozen=True)
class TrainCommand:
    """`evonas train`'s own settings (its data, training, skeleton and device settings are the
    groups above)."""

    out: str | None = setting(None, "output folder (none: runs/train-<name>)")
    skeleton_name: str | None = setting(None, "a named skeleton instead of the space's final one (cells: imagenet, "
                                              "DARTS' ImageNet network; it needs images over 64 px, e.g. an npz "
                                              "data set)", (None, *NAMED_SKELETONS), flag="--skeleton")


@dataclass(frozen=True)
class BenchCommand:
    """`evonas bench`'s own settings (its device, data and proxy settings are the groups above)."""

    quick: bool | None = setting(None, "quick: no random cells, the reference loop for 100 steps, on a CPU a tiny "
                                       "proxy (minutes on 2 cores); none: quick on a CPU, full on a GPU")
    measurements: int = setting(3, "n of every measurement (median and spread are reported)")
    random_cells: int | None = setting(None, "seeded random cells besides NASNet-A and DARTS-V2 (none: quick 0, "
                                             "full 2)")
    in_flight: tuple[int, ...] = setting((), "comma-separated candidates in flight per process (none: 1,2,4 on "
                                             "CUDA, 1,2 on a CPU)")
    reference: bool = setting(True, "time the plain reference loop too")
    loader_workers: int = setting(4, "the reference loop's DataLoader workers, as docs/performance.md", cli=False)
    out: str = setting("bench-out", "folder of bench.json, rewritten after every measurement")

    def __post_init__(self):
        _positive(self, "measurements", "loader_workers")
        _check(self.random_cells is None or self.random_cells >= 0, "random_cells: must not be negative")
        _check(all(k >= 1 for k in self.in_flight), f"in_flight: counts of 1 or more, such as 1,2,4; got "
                                                    f"{','.join(map(str, self.in_flight))}")


TABLE_DATASETS = ("cifar10", "cifar100", "imagenet16-120")  # NAS-Bench-201's (nb201_table.DATASETS)
STUDY_PRESETS = ("cpu", "gpu")


@dataclass(frozen=True)
class StudySettings:
    """`evonas study`'s own settings; its searches take every `evonas run` setting besides."""

    table: str | None = setting(None, "look every evaluation up in the NAS-Bench-201 table of this data set instead of "
                                      "training (nb201; seconds on a CPU)", (None, *TABLE_DATASETS))
    preset: str | None = setting(None, "the study's sizes: cpu (Fashion-MNIST on 2 cores, about 90 minutes a "
                                       "space) or gpu (one 10-minute GPU call); none: the device's",
                                 (None, *STUDY_PRESETS))
    algorithms: tuple[str, ...] = setting((), "comma-separated algorithms to compare; aging+predictor and "
                                              "nsga2+predictor screen children with the predictor (none: table "
                                              "aging,nsga2; training nsga2)")
    random_arm: bool = setting(True, "add random search at the same budget, the honest baseline")
    seeds: int | None = setting(None, "searches per arm (none: table 100, training the preset's)")
    first_seed: int = setting(0, "seeds first_seed .. first_seed + seeds - 1 (tune on others than you report)")
    returns: int | None = setting(None, "networks a search returns for the final training: its best by proxy "
                                        "accuracy, then members of its (accuracy, params) front spread by size "
                                        "(none: the preset's)")
    final_epochs: int | None = setting(None, "epochs of a final training on the whole training split (none: the "
                                             "preset's)")
    final_images: int | None = setting(None, "final trainings on a seeded subset of this many training images (none: "
                                             "the whole training split)")
    baselines: bool = setting(True, "also train, by the same final protocol, the published cells (cells studies) "
                                    "and a hand-designed conv-BN-ReLU network of the returned networks' median size")

    def __post_init__(self):
        _positive(self, "seeds", "returns", "final_epochs", "final_images")
        _check(self.first_seed >= 0, f"first_seed: must not be negative, got {self.first_seed}")
        bad = [a for a in self.algorithms if a not in STUDY_ARMS]
        _check(not bad, f"algorithms: choose from {', '.join(STUDY_ARMS)}, got {', '.join(bad)}")
        _check(len(set(self.algorithms)) == len(self.algorithms), "algorithms: each at most once")
        _choices(self)

    @property
    def arms(self) -> tuple[str, ...]:
        """The algorithms compared, random search last unless left out."""
        mine = tuple(a for a in self.algorithms if a != "random")
        return mine + ("random",) if self.random_arm or "random" in self.algorithms else mine


# -- presets: values a run gets when neither the config file nor a flag sets them -----------

# CPU: a search that finishes `make run` in minutes on 2 cores (small net, data subset). GPU:
# device-resident data, CUDA-graph steps (docs/performance.md). The space's proxy skeleton
# (spaces.REGISTRY[...].proxy) adds its width and depth.
PRESETS: dict[str, dict[str, Any]] = {
    "cpu": {"population": 8, "generations": 2, "epochs": 1.0, "batch_size": 64, "train_limit": 1200,
            "val_limit": 500, "bn_recalibration": 512,
            # A 19-step proxy wants a high rate: 3 random cells reached 0.45/0.62/0.63 mean val
            # accuracy at lr 0.1/0.4/1.0 (CPU proxy, n=3 genomes each).
            "lr": 0.4, "train_images": None},
    # A budget in training images, so that an evaluation costs the same on any data set; epochs
    # then follow from it. Chosen on paper, unmeasured by evonas itself: DARTS-V2 (C=16, 8 cells)
    # trained at 19k images/s as one CUDA graph at batch 512 on an H200 (docs/performance.md), so
    # 30,720 images (60 steps) take ~1.6 s, plus ~0.8 s per evaluation to build, warm up and
    # capture, recalibrate BN and validate: ~2.4 s, 1,500 evaluations per GPU-hour with one in
    # flight. Whether DARTS-V2 still reaches 88% there is what `make gpu-check` measures.
    "cuda": {"population": 32, "generations": 20, "epochs": 1.0, "batch_size": 512, "train_images": 30720,
             "train_limit": None, "val_limit": None, "bn_recalibration": 2048, "lr": 0.2},
}
# Settings that earlier versions of evonas wrote under another name: their files still read.
RENAMED = {"noise": "tie_width"}  # "noise" now means only what `evonas fidelity` measures


def resumable(family: str) -> set[str]:
    """The settings a command family ("run": run, resume, fidelity; "train") may change when it
    continues: changing them does not change what is trained or what it returns (each field's
    `resumable` says for which families)."""
    return {f.name for cls in GROUPS.values() for f in fields(cls) if family in f.metadata.get("resumable", ())}


RESUMABLE = resumable("run")


def leaves() -> dict[str, tuple[str, dataclasses.Field]]:
    """Flat name -> (group, field), the options of every registered space included (group
    "space.options")."""
    out: dict[str, tuple[str, dataclasses.Field]] = {}
    for group, cls in GROUPS.items():
        for f in fields(cls):
            if f.name != "options":
                out[f.name] = (group, f)
    for entry in spaces.REGISTRY.values():
        for f in entry.space.options():
            out.setdefault(f.name, ("space.options", f))
    return out


def preset(name: str, device: str, entry: spaces.SpaceEntry) -> Any:
    """What the presets give `name` on `device` in the space `entry` is (KeyError: nothing)."""
    return entry.proxy.get(device, {}).get(name, PRESETS[device][name])


def from_mapping(data: dict[str, Any], where: str = "config", device: str = "cpu",
                 data_shape: tuple[tuple[int, int, int], int] | None = None,
                 cpu_threads: int | None = None) -> RunConfig:
    """A resolved config from given values (flat names, or nested groups as config.yaml has them),
    on `device` ("cpu" or "cuda"); data_shape = (input_shape, classes) of the data set.
    Errors name `where` and the setting."""
    given = flatten(data, where)
    try:
        return _build(_resolved(given, device, data_shape, cpu_threads))
    except ConfigError as err:
        raise ConfigError(f"{where}: {err}") from None


def _resolved(given: dict[str, Any], device: str, data_shape, cpu_threads: int | None) -> dict[str, Any]:
    """Every flat setting's value: given, else the presets', else the field's default (left out)."""
    entry = spaces.entry(given.get("space", SpaceConfig.space))
    values: dict[str, Any] = {}
    for name, (group, _) in leaves().items():
        if name in given:
            values[name] = given[name]
        elif group == "skeleton" and name in ("init_channels", "depth"):
            values[name] = _skeleton_default(name, device, entry)
        elif name in PRESETS.get(device, {}) and not (name == "generations" and given.get("budget") is not None) \
                and not (name == "train_images" and "epochs" in given):  # given epochs: no image budget
            values[name] = preset(name, device, entry)
    if data_shape is not None:
        values["input_shape"], values["classes"] = data_shape
    if values.get("cpu_threads") is None:
        values["cpu_threads"] = cpu_threads or cores()
    values["device"] = device
    return values


def _skeleton_default(name: str, device: str, entry: spaces.SpaceEntry) -> int | None:
    if name not in entry.skeleton_fields:
        return None  # the space's networks set it themselves
    return entry.proxy.get(device, {}).get(name, getattr(Skeleton, name))


def flatten(data: dict[str, Any], where: str) -> dict[str, Any]:
    """Flat names -> coerced values, from a mapping of flat names and/or group sections."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: must be a mapping of settings")
    flat: dict[str, Any] = {}
    for key, value in data.items():
        name = RENAMED.get(str(key).replace("-", "_"), str(key).replace("-", "_"))
        if name in GROUPS and isinstance(value, dict):
            flat.update(flatten(value, where))
        elif name == "options" and isinstance(value, dict):
            flat.update(flatten(value, where))
        elif name in leaves():
            flat[name] = _coerce(leaves()[name][1], value, where)
        else:
            raise ConfigError(f"{where}: {key}: unknown setting (see `evonas run --help`)")
    return flat


def _build(values: dict[str, Any]) -> RunConfig:
    parts: dict[str, dict] = {group: {} for group in GROUPS}
    options = {}
    for name, value in values.items():
        group, _ = leaves()[name]
        (options if group == "space.options" else parts[group])[name] = value
    parts["space"]["options"] = options
    built = {group: GROUPS[group](**kw) for group, kw in parts.items()}
    _check_skeleton(built["space"].space, values)
    return RunConfig(**built)


def _check_skeleton(space: str, values: dict[str, Any]) -> None:
    """A skeleton setting the space's networks do not use must be left alone."""
    entry = spaces.entry(space)
    for f in fields(Skeleton):
        if f.metadata["cli"] and f.name not in entry.skeleton_fields | {"classes"}:
            unused = None if f.name in ("init_channels", "depth") else f.default
            if values.get(f.name, unused) != unused:
                raise ConfigError(f"{f.name}: does not apply to the {space} space")


def cores() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def coerced(values: dict[str, Any], where: str) -> dict[str, Any]:
    """Given values of run settings (flat names, as a command's generated options give them),
    each in its field's type; errors name `where` and the setting."""
    return {name: _coerce(leaves()[name][1], value, where) for name, value in values.items()}


def group_from(cls, values: dict[str, Any], where: str):
    """A command's own settings group (a dataclass of `setting` fields) from given values, each
    coerced to its field's type; errors name `where` and the setting."""
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(f"{where}: {unknown[0]}: unknown setting")
    try:
        return cls(**{name: _coerce(known[name], value, where) for name, value in values.items()})
    except ConfigError as err:
        raise ConfigError(f"{where}: {err}") from None


def to_dict(cfg: RunConfig) -> dict[str, dict[str, Any]]:
    """The nested form config.yaml holds: one section per group, every value concrete."""
    return {group: {f.name: _plain(getattr(getattr(cfg, group), f.name)) for f in fields(getattr(cfg, group))}
            for group in GROUPS}


def flat(cfg: RunConfig) -> dict[str, Any]:
    """Flat name -> plain value, the space options included."""
    return flat_config(to_dict(cfg))


def flat_config(config: dict) -> dict:
    """config.yaml's sections as one mapping of setting names (the space's options included)."""
    out = {}
    for key, value in config.items():
        out.update(flat_config(value) if isinstance(value, dict) else {key: value})
    return out


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def results_part(cfg: RunConfig) -> dict[str, Any]:
    """The settings a run's results depend on (everything resume may not change)."""
    return {k: v for k, v in flat(cfg).items() if k not in RESUMABLE}


def resume_changes(old: dict[str, Any], new: RunConfig) -> list[str]:
    """Settings whose value differs from `old` (a results_part) and would change the results. A
    setting `old` lacks (a run from before it existed) ran at its default."""
    mine, fields_ = results_part(new), leaves()
    old = {RENAMED.get(k, k): v for k, v in old.items()}
    default = {k: _plain(fields_[k][1].default) for k in mine if k in fields_}
    return [k for k in sorted(set(old) | set(mine)) if old.get(k, default.get(k)) != mine.get(k)]


def _coerce(f: dataclasses.Field, value: Any, where: str) -> Any:
    """YAML and click give strings, lists and numbers; turn them into the field's type."""
    kind = str(f.type)
    if value is None or (isinstance(value, str) and value.lower() in ("none", "null") and "None" in kind):
        if "None" in kind:
            return None
        raise ConfigError(f"{where}: {f.name}: must be set")
    try:
        if isinstance(value, dict) or ("tuple" not in kind and isinstance(value, list)):
            raise ValueError(value)  # never str() of a structure: it may be huge
        if "tuple" in kind:
            items = value.split(",") if isinstance(value, str) else list(value)
            if any(isinstance(x, list | dict) for x in items):
                raise ValueError(value)
            items = [str(x).strip() for x in items if str(x).strip()]
            if "tuple[float" in kind:
                return tuple(float(x) for x in items)
            return tuple(_int(x) for x in items) if "tuple[int" in kind else tuple(items)
        if kind.startswith("bool"):
            if isinstance(value, str):
                if value.lower() not in ("true", "false", "yes", "no", "1", "0", "on", "off"):
                    raise ValueError(value)
                return value.lower() in ("true", "yes", "1", "on")
            return bool(value)
        if kind.startswith("int"):
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError(value)
            return _int(value)
        if kind.startswith("float"):
            if isinstance(value, bool):
                raise ValueError(value)
            return float(value)
        return str(value)
    except (TypeError, ValueError, OverflowError):  # OverflowError: float() of a 400-digit integer
        raise ConfigError(f"{where}: {f.name}: expected {kind.replace(' | None', '')}, got {short(value)}") from None


def _int(value: Any) -> int:
    """int(value), refused beyond 1,000 digits (far above every MAXIMUM, which names the real
    bound): YAML reads 0xfff... of any length, and a message that quotes an integer of over
    4,300 digits would fail itself."""
    number = int(value)
    if number.bit_length() > 3300:
        raise ValueError(value)
    return number
