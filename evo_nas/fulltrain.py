"""Full training of one architecture: `evonas train`.   [torch, safetensors; onnx to export]

A search trains its candidates briefly, on a small proxy network and part of the training
split. This trains one chosen genome properly: the final (wider, deeper) skeleton, the whole
training split, many epochs, a cosine schedule, augmentation, DARTS' auxiliary head and drop
path for cells. It reports test accuracy, params and MACs, checkpoints every epoch, resumes
after an interruption, and writes the model in forms that can be shipped:

    OUT/ (default runs/train-<genome name>, or runs/train-<run>-id<ID>)
      genome.yaml              the architecture trained (source: the file or RUN_DIR#ID)
      checkpoint.safetensors   after every epoch: weights, optimizer state, and in its metadata
                               the same JSON as checkpoint.json (the file that counts)
      checkpoint.json          epoch, config, per-epoch history: for people and tools
      model.safetensors        the final weights; metadata: genome and skeleton (load_model)
      model.onnx               the final model, eval mode, dynamic batch (exporting.export_onnx)
      metrics.json             test accuracy, params, MACs, times, device, history; written
                               last, so its presence means the training is complete

Decisions, and why:
- The test split is used here and only here. Nothing is held out for validation: the whole
  training split trains, and the test split is measured at the end (and each `test_every`
  epochs for the log; nothing is chosen by it: the final weights are the last epoch's).
- Training is built from train.py's parts (make_optimizer, StepCore, graphed_step, lr_factor,
  choose_path, evaluate) with an epoch loop of its own, because train.train() runs a whole
  training in one call and a full training must stop and checkpoint at every epoch boundary.
  The step, the optimizer, the CUDA-graph capture and the schedule function are train.py's.
- Randomness is reseeded at the start of every epoch from (seed, epoch): the global torch RNG
  (dropout, drop path) and the data order and augmentation draws. A checkpoint therefore needs
  no RNG state, and a run resumed after epoch k draws exactly what an uninterrupted run draws.
  On the CPU a resumed run ends bit-identical to an uninterrupted one (tests check it).
  On CUDA a resumed run continues the same schedule from the same weights and optimizer state,
  but is not bit-identical: cuDNN's backward kernels are not deterministic, and on the graph
  path drop path draws from the graph's own generator, seeded once per process (train.py).
- The checkpoint is one safetensors file written atomically (temporary file, fsync, rename).
  Its metadata holds the JSON (epoch, config, history), so weights and epoch can never
  disagree; checkpoint.json is a copy written after it. Resuming compares the stored config
  with the new one and refuses any difference that would change the result (one line naming
  the setting); the data folder, device and output folder may change.
- No pickle anywhere: tensors go to safetensors, everything else to JSON or YAML.
- CUDA: the whole step is captured as a CUDA graph where possible, as in the search (3-6x
  faster for cell networks, performance-notes.md). If capture fails, training restarts
  eagerly from the state this process started from, so the fallback is exactly an eager run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
import math
import os
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from evo_nas.errors import ConfigError, Interrupted, RunDirError, UserError
from evo_nas.genome import Genome, to_dict
from evo_nas.genome_io import dumps, load_genome, loads, parse_genome

FORMAT = 1  # of checkpoint and model files; a different one is refused
DEVICES = ("auto", "cpu", "cuda")

# The network around a genome for a full training, per space; wider and deeper than the search
# proxy (C=16, 8 cells on a GPU; C=8, 3 cells on a CPU).
FINAL_SKELETONS: dict[str, dict[str, Any]] = {
    # DARTS' CIFAR-10 evaluation network: C=36, 20 cells, auxiliary head (weight 0.4) and drop
    # path 0.2. The published params in reference/known-cells.md are of this network, and
    # `evonas inspect` shows it; so trained cells compare with the papers' cells.
    "cells": {"init_channels": 36, "layers": 20, "auxiliary": True, "drop_path": 0.2},
    # NAS-Bench-201's TinyNetwork (C=16, 5 cells per stage): the benchmark's accuracies are
    # of this network. It has no auxiliary head and no drop path.
    "nb201": {"init_channels": 16, "layers": 5, "auxiliary": False, "drop_path": 0.0},
    # A layer genome fixes its widths and depth itself: nothing to scale.
    "layers": {"init_channels": None, "layers": None, "auxiliary": False, "drop_path": 0.0},
}
# Settings that may differ when a training is resumed: they do not change its result.
RESUMABLE = {"origin", "out", "data_dir", "device", "test_every"}
TIMING_KEYS = ("wall_time", "train_seconds", "images_per_s", "seconds")  # metrics that differ run to run


class TrainingDiverged(UserError):
    """The loss became NaN or infinite: the training cannot go on with these settings."""


@dataclass(frozen=True)
class FullTrainConfig:
    """One full training. Defaults: a proper Fashion-MNIST training on one GPU."""

    genome: Genome
    origin: str  # what was asked for: a genome file or RUN_DIR#ID (the genome's source says more)
    out: str  # the output folder
    dataset: str = "fashion-mnist"  # the search default; any name `evonas run` accepts
    data_dir: str | None = None
    # DARTS-V2 at C=16, 8 cells reached 93.9% Fashion-MNIST test accuracy in 20 one-cycle
    # epochs (performance-notes.md); the final cell network has 12x its MACs (403M vs 33M per
    # image) and more to learn, so 2.5x the epochs. DARTS' 600 CIFAR epochs would cost 12x more.
    epochs: int = 50
    init_channels: int | None = None  # None: FINAL_SKELETONS of the genome's space
    layers: int | None = None  # cells (nb201: cells per stage); None: FINAL_SKELETONS
    auxiliary: bool | None = None  # DARTS' auxiliary head (cells); None: FINAL_SKELETONS
    drop_path: float | None = None  # peak drop-path probability, annealed from 0 (cells)
    aux_weight: float = 0.4  # DARTS' weight of the auxiliary loss
    batch_size: int = 256  # the search's reference batch: its lr needs no rescaling
    lr: float = 0.2  # peak SGD rate at batch 256 (scaled linearly), the rate the proxy recipe uses
    weight_decay: float = 5e-4  # the CIFAR ResNet value; DARTS uses 3e-4 at an 8x lower lr
    label_smoothing: float = 0.1  # as the search and airbench: better calibrated, a little more accurate
    # Linear warm-up over the first 2% of the steps (1 epoch of 50), then cosine to ~0: a high
    # peak rate on a freshly initialised deep network needs a short ramp (Goyal et al. 2017).
    warmup: float = 0.02
    grad_clip: float | None = 5.0  # DARTS' global grad-norm clip
    genome_hparams: bool = True  # use the genome's own lr, weight decay, optimizer, dropout if it has them
    cuda_graph: str = "auto"  # as the search: the whole step as one CUDA graph where possible
    device: str = "auto"  # auto: CUDA when torch sees a GPU
    seed: int = 0  # model initialisation, data order, augmentation, dropout, drop path
    test_every: int = 1  # measure the test split every this many epochs, for the log only
    train_limit: int | None = None  # train on a seeded subset of this many images (tests, CPU trials)
    test_limit: int | None = None  # measure on a seeded subset of the test split (tests)
    onnx: bool = True  # write model.onnx (and check it against torch when onnxruntime is there)

    def __post_init__(self):
        final = FINAL_SKELETONS[self.genome.space]
        for name in ("init_channels", "layers", "auxiliary", "drop_path"):
            given = getattr(self, name)
            if given is None:
                object.__setattr__(self, name, final[name])
            elif final[name] is None or (given and not final[name]):
                raise ConfigError(f"train config: {name.replace('_', '-')} does not apply to "
                                  f"{self.genome.space} genomes")
        checks = [
            (self.epochs >= 1, "epochs must be >= 1"), (self.batch_size >= 1, "batch_size must be >= 1"),
            (self.test_every >= 1, "test_every must be >= 1"),
            (self.init_channels is None or self.init_channels >= 1, "init_channels must be >= 1"),
            (self.layers is None or self.layers >= 1, "layers must be >= 1"),
            (self.train_limit is None or self.train_limit >= 1, "train_limit must be >= 1"),
            (self.test_limit is None or self.test_limit >= 1, "test_limit must be >= 1"),
            (self.device in DEVICES, f"device must be one of {', '.join(DEVICES)}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(f"train config: {message}")
        self.train_config()  # lr, decay, drop path, ... are checked there

    def train_config(self):
        """The train.py settings this training uses (its checks apply)."""
        from evo_nas.evaluate.train import TrainConfig

        return TrainConfig(epochs=self.epochs, batch_size=self.batch_size, lr=self.lr,
                           weight_decay=self.weight_decay, label_smoothing=self.label_smoothing,
                           schedule="cosine", warmup=self.warmup, grad_clip=self.grad_clip,
                           cuda_graph=self.cuda_graph, aux_weight=self.aux_weight, drop_path=self.drop_path,
                           bn_recalibration=0)  # after a long training the running statistics are current

    def skeleton(self, input_shape: tuple[int, int, int], classes: int):
        from evo_nas.build import Skeleton

        sizes = {k: getattr(self, k) for k in ("init_channels", "layers") if getattr(self, k) is not None}
        return Skeleton(input_shape=input_shape, classes=classes, auxiliary=self.auxiliary,
                        drop_path=self.drop_path, **sizes)

    def hparams(self):
        return self.genome.hparams if self.genome_hparams else None


def to_json(cfg: FullTrainConfig) -> dict:
    return {f.name: to_dict(cfg.genome) if f.name == "genome" else getattr(cfg, f.name) for f in fields(cfg)}


def results_part(cfg: FullTrainConfig) -> dict:
    """The settings the trained model depends on: all but RESUMABLE; the genome without its
    name and source (the same network from a file or from a run is the same training)."""
    data = {k: v for k, v in to_json(cfg).items() if k not in RESUMABLE}
    data["genome"] = to_dict(cfg.genome.anonymous())
    return data


# -- from the command line --------------------------------------------------------------------

def config_from_options(target: str, options: dict) -> FullTrainConfig:
    """A config from `evonas train TARGET` and its options (None where not given). TARGET is a
    genome file or RUN_DIR#ID; the dataset defaults to the run's (or fashion-mnist)."""
    genome, run_config, name = resolve_target(target)
    given = {k: v for k, v in options.items() if v is not None}
    run_config = run_config or {}
    dataset = given.pop("dataset", None) or run_config.get("dataset") or "fashion-mnist"
    if "data_dir" not in given and dataset == run_config.get("dataset") and run_config.get("data_dir"):
        given["data_dir"] = run_config["data_dir"]
    out = given.pop("out", None) or str(Path("runs") / f"train-{name}")
    known = {f.name for f in fields(FullTrainConfig)}
    unknown = sorted(set(given) - known)
    if unknown:
        raise ConfigError(f"train: unknown option {unknown[0]}")
    return FullTrainConfig(genome=genome, origin=target, out=out, dataset=dataset, **given)


def resolve_target(target: str) -> tuple[Genome, dict | None, str]:
    """(genome, the run's config or None, a name for the output folder) for a genome file or
    RUN_DIR#ID. Bad references raise GenomeError or RunDirError with one line."""
    path = Path(target)
    if path.is_dir():
        raise RunDirError(f"{target}: is a folder; give a genome file, or an evaluation of a run "
                          f"as {target.rstrip('/')}#ID")
    if path.is_file() or "#" not in target:
        genome = load_genome(path)
        return genome, None, slug(genome.name or path.stem)
    run_text, _, id_text = target.rpartition("#")
    return _from_run(target, run_text, id_text)


def _from_run(target: str, run_text: str, id_text: str) -> tuple[Genome, dict, str]:
    from evo_nas.store import RunDir

    run = RunDir.open(run_text)
    try:
        ident = int(id_text)
    except ValueError:
        raise RunDirError(f"{target}: the evaluation id after '#' must be an integer, got {id_text!r}") from None
    records = run.journal()
    mine = [r for r in records if r.get("id") == ident]
    if not mine:
        ids = sorted({r["id"] for r in records})
        known = f"ids {ids[0]}-{ids[-1]}" if ids else "no evaluations yet"
        raise RunDirError(f"{target}: {run.path} has no evaluation {ident} ({known})")
    record = max(mine, key=lambda r: r.get("rung", 0))
    if record.get("status") != "ok":
        why = f": {record['error']}" if record.get("error") else ""
        raise RunDirError(f"{target}: evaluation {ident} is {record.get('status')}{why}; train a successful one "
                          f"(see `evonas front {run.path}`)")
    genome = parse_genome(record.get("genome"), f"{target}")
    source = f"{run.path}#{ident}" + (f" (seeded from {genome.source})" if genome.source else "")
    genome = dataclasses.replace(genome, name=genome.name or f"{run.path.name}-id{ident}", source=source)
    return genome, run.config(), slug(f"{run.path.name}-id{ident}")


def slug(text: str) -> str:
    """A folder-name-safe form of a name: lower case, runs of other characters as one '-'."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "genome"


# -- the result ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class FullTrainResult:
    out: Path
    test_accuracy: float
    params: int
    macs: int
    epochs: int
    resumed_from: int  # epochs already done when this call started (0: from scratch)
    metrics: dict  # what metrics.json holds


def summary(result: FullTrainResult) -> str:
    m = result.metrics
    resumed = (" (already complete)" if result.resumed_from == result.epochs else
               f" (resumed after epoch {result.resumed_from})" if result.resumed_from else "")
    sizes = ", ".join(f"{k}={m['config'][k]}" for k in ("init_channels", "layers") if m["config"][k] is not None)
    lines = [f"trained {m['name']} ({m['space']}{', ' + sizes if sizes else ''}) on {m['dataset']} "
             f"for {result.epochs} epochs on {m['device']}{resumed}",
             f"  test accuracy  {result.test_accuracy:.2%} ({m['test_images']:,} test images)",
             f"  params         {result.params:,}",
             f"  MACs           {result.macs:,} per image",
             f"  time           {m['wall_time']:.0f} s in all, {m['train_seconds']:.0f} s training "
             f"({m['images_per_s']:,.0f} images/s, {m['hardware']}, {m['path']})"]
    onnx = m.get("onnx")
    if onnx:
        diff = onnx.get("max_abs_diff")
        check = "not checked: no onnxruntime" if diff is None else f"onnxruntime vs torch: max |diff| {diff:.1e}"
        lines.append(f"  onnx           {result.out / onnx['file']} ({check})")
    lines.append(f"  files          {result.out}/ model.safetensors genome.yaml metrics.json")
    return "\n".join(lines)


# -- running ---------------------------------------------------------------------------------------

def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def run(cfg: FullTrainConfig, log: Callable[[str], None] | None = _stderr) -> FullTrainResult:
    """Train (or continue, or just report) the training `cfg` describes in cfg.out."""
    log = log or (lambda line: None)
    _require("safetensors", "checkpoints and weights")
    if cfg.onnx:
        _require("onnx", "the ONNX export")
    out = Path(cfg.out)
    saved = open_out(out, cfg)
    if saved is not None and saved["epoch"] == cfg.epochs and (out / "metrics.json").is_file():
        metrics = json.loads((out / "metrics.json").read_text())
        return _result(out, metrics, resumed_from=cfg.epochs)
    try:
        return _train_and_finish(cfg, out, saved, log)
    except KeyboardInterrupt:
        raise Interrupted(f"{out} keeps the checkpoint of the last finished epoch: "
                          f"run the same command to continue") from None


def _require(module: str, what: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise ConfigError(f"evonas train needs the {module} package for {what}: pip install 'evo-nas[export]'")


def resolve_device(requested: str) -> str:
    import torch

    if requested == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device: cuda was asked for, but torch sees no CUDA GPU here")
    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    # an explicit index, as train.py: one device the whole training long, named in the metrics
    return f"cuda:{torch.cuda.current_device()}" if requested == "cuda" else requested


def open_out(out: Path, cfg: FullTrainConfig) -> dict | None:
    """None for a fresh training, else the JSON of the checkpoint in `out`. Refuses a folder of
    something else, or of another configuration. Creates nothing."""
    if out.exists() and not out.is_dir():
        raise RunDirError(f"{out}: exists and is not a folder; choose another --out")
    if not (out / "checkpoint.safetensors").is_file():
        if out.is_dir() and any(out.iterdir()):
            raise RunDirError(f"{out}: exists and holds no evonas training (no checkpoint.safetensors); "
                              f"choose another --out")
        return None
    saved = read_checkpoint_info(out)
    old, new = saved["config"], results_part(cfg)
    old = {**old, "genome": to_dict(parse_genome(old.get("genome"), str(out)).anonymous())}
    for key in new:
        if key == "genome" and old.get(key) != new[key]:
            raise ConfigError(f"{out}: holds the training of another genome; choose another --out")
        if old.get(key) != new[key]:
            raise ConfigError(f"{out}: holds a training with {key}={old.get(key)!r}, not {new[key]!r}; "
                              f"choose another --out, or the same settings to continue it")
    return saved


def _make_out(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise RunDirError(f"{out}: cannot create the output folder ({err.strerror})") from None


def _train_and_finish(cfg: FullTrainConfig, out: Path, saved: dict | None, log) -> FullTrainResult:
    import contextlib

    import torch

    from evo_nas.build import build
    from evo_nas.evaluate.count import count_macs, count_params
    from evo_nas.evaluate.data import load_dataset

    started = time.perf_counter()
    device = torch.device(resolve_device(cfg.device))
    dataset = load_dataset(cfg.dataset, cfg.data_dir)
    skeleton = cfg.skeleton(dataset.input_shape, dataset.classes)
    torch.manual_seed(cfg.seed)  # weight initialisation (a resumed run loads the weights over it)
    model = build(cfg.genome, skeleton)
    counts = {"params": count_params(model), "macs": count_macs(model, skeleton.input_shape)}
    _make_out(out)  # only now: bad data or settings leave no folder behind
    _atomic_text(out / "genome.yaml", dumps(cfg.genome))
    train_data, test_data = device_data(dataset, cfg, device)
    state = _start_state(model, out, saved)
    guard = torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext()
    log(_start_line(cfg, device, state, counts, len(train_data)))
    with guard:
        state, setup = train_epochs(model, train_data, test_data, cfg, device, state, out, started, log)
    accuracy = state.history[-1]["test_accuracy"]  # the last epoch is always measured
    _save_model(out / "model.safetensors", model, cfg, skeleton)
    onnx = export_model(out, cfg, skeleton) if cfg.onnx else None
    metrics = _metrics(cfg, skeleton, counts, state, setup, accuracy, len(train_data), len(test_data), onnx,
                       device, wall=state.wall_base + time.perf_counter() - started)
    _atomic_text(out / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    return _result(out, metrics, resumed_from=saved["epoch"] if saved else 0)


def device_data(dataset, cfg: FullTrainConfig, device):
    """The training split (all of it, or a seeded subset) and the test split, on the device.
    Training images in bf16 on CUDA (as the search; they are trained under bf16 autocast), the
    test images in float32 everywhere: the final accuracy is the float32 model's."""
    import numpy as np
    import torch

    from evo_nas.evaluate.data import subset
    from evo_nas.evaluate.device_data import DeviceData

    cuda = device.type == "cuda"
    train_idx = test_idx = None
    if cfg.train_limit:
        train_idx = subset(np.arange(len(dataset.y_train)), cfg.train_limit, cfg.seed)
    if cfg.test_limit:
        if dataset.y_test is None:
            raise ConfigError(f"{dataset.name}: has no test split to measure on")
        test_idx = subset(np.arange(len(dataset.y_test)), cfg.test_limit, cfg.seed + 1)
    dtype = torch.bfloat16 if cuda else torch.float32
    train = DeviceData(dataset, train_idx, device, dtype, channels_last=cuda)
    test = DeviceData(dataset, test_idx, device, torch.float32, part="test", flip=False, channels_last=cuda)
    return train, test


def _start_line(cfg: FullTrainConfig, device, state, counts: dict, images: int) -> str:
    where = f"resuming after epoch {state.epoch}" if state.epoch else "from scratch"
    return (f"training {cfg.genome.name or cfg.origin} on {cfg.dataset} ({images:,} images) on {device}, "
            f"{cfg.epochs} epochs, {counts['params']:,} params, {counts['macs']:,} MACs: {where}; "
            f"checkpoints in {cfg.out}")


# -- the epoch loop ---------------------------------------------------------------------------------

@dataclass
class TrainState:
    """Where a training stands: after `epoch` epochs. Tensors on the CPU."""

    epoch: int
    model: dict  # state_dict
    optimizer: dict  # parameter index -> {state name: tensor}
    history: list  # one dict per epoch done
    train_seconds: float  # training time of the epochs done, over all sessions
    wall_base: float  # wall time of earlier sessions (until their last checkpoint)


@dataclass(frozen=True)
class _Setup:
    """What the epoch loop needs to know, resolved once."""

    device: Any
    precision: str
    memory_format: Any
    optimizer: str
    peak: float
    weight_decay: float
    per_epoch: int  # optimizer steps per epoch (whole batches)
    total: int  # steps of the whole training
    drop_every: int  # steps between drop-path refreshes
    eval_batch_size: int


def _make_setup(model, data, cfg: FullTrainConfig, device) -> _Setup:
    import torch

    from evo_nas.evaluate.train import DROP_PATH_UPDATES, resolve_hparams, resolve_precision, scaled_lr

    tcfg = cfg.train_config()
    optimizer, lr, weight_decay = resolve_hparams(tcfg, cfg.hparams())
    per_epoch = data.num_batches(cfg.batch_size)
    total = per_epoch * cfg.epochs
    return _Setup(device=device, precision=resolve_precision(tcfg, device), memory_format=torch.channels_last,
                  optimizer=optimizer, peak=scaled_lr(lr, min(cfg.batch_size, len(data))),
                  weight_decay=weight_decay, per_epoch=per_epoch, total=total,
                  drop_every=max(1, total // DROP_PATH_UPDATES), eval_batch_size=tcfg.eval_batch_size)


def train_epochs(model, data, test, cfg: FullTrainConfig, device, state: TrainState, out: Path,
                 started: float, log) -> tuple[TrainState, _Setup]:
    """Train from `state` to cfg.epochs, checkpointing after every epoch. On CUDA with a
    graph, a failed capture restarts from `state` eagerly (a fallback run is an eager run)."""
    from evo_nas.evaluate.train import CaptureError, choose_path

    setup = _make_setup(model, data, cfg, device)
    model.to(device, memory_format=setup.memory_format)
    steps_left = setup.total - state.epoch * setup.per_epoch
    path = choose_path(device.type, cfg.train_config(), model, steps=steps_left)[0] if steps_left else "eager"
    if path == "graph":
        try:
            return _epochs(model, data, test, cfg, setup, state, out, started, log, graph=True), setup
        except CaptureError as err:
            if cfg.cuda_graph == "on":
                raise ConfigError(f"cuda_graph=on, but the training step could not be captured: {err}") from err
            log(f"CUDA graph capture failed ({err}); training eagerly from epoch {state.epoch + 1}")
    return _epochs(model, data, test, cfg, setup, state, out, started, log, graph=False), setup


def _epochs(model, data, test, cfg, setup: _Setup, state: TrainState, out: Path, started: float, log,
            graph: bool) -> TrainState:
    """The epochs from state.epoch on. Returns the state at the end, without tensors (they are
    in the model and the last checkpoint)."""
    model.load_state_dict(state.model)
    stepper = _Stepper(model, cfg, setup, state.optimizer, graph, seed=epoch_seed(cfg.seed, state.epoch))
    history, train_seconds = list(state.history), state.train_seconds
    images = setup.per_epoch * min(cfg.batch_size, len(data))  # per epoch: whole batches only
    try:
        for epoch in range(state.epoch, cfg.epochs):
            loss, seconds = _one_epoch(model, data, cfg, setup, stepper, epoch)
            tested = (epoch + 1) % cfg.test_every == 0 or epoch + 1 == cfg.epochs
            accuracy = _evaluate(model, test, setup) if tested else None
            train_seconds += seconds
            history.append({"epoch": epoch + 1, "train_loss": loss, "test_accuracy": accuracy,
                            "lr": setup.peak * _lr_factor(cfg, setup, (epoch + 1) * setup.per_epoch - 1),
                            "seconds": round(seconds, 3), "path": "graph" if graph else "eager",
                            "device": str(setup.device)})
            wall = state.wall_base + time.perf_counter() - started
            save_checkpoint(out, cfg, epoch + 1, model, stepper.optimizer, history, train_seconds, wall)
            log(_epoch_line(cfg, history[-1], images, seconds))
    finally:
        stepper.close()
    return TrainState(cfg.epochs, {}, {}, history, train_seconds, state.wall_base)


def _one_epoch(model, data, cfg, setup: _Setup, stepper, epoch: int) -> tuple[float, float]:
    """One epoch of steps; returns (mean main-head loss, seconds). Raises TrainingDiverged."""
    import torch

    from evo_nas.evaluate.train import set_lr

    seed = epoch_seed(cfg.seed, epoch)
    torch.manual_seed(seed)  # dropout and drop path on the eager path (all devices)
    generator = torch.Generator().manual_seed(seed)  # data order and augmentation, any device
    stepper.loss_sum.zero_()
    model.train()
    start = time.perf_counter()
    first = epoch * setup.per_epoch
    for i, (x, y) in enumerate(data.batches(cfg.batch_size, generator, augment=True)):
        step = first + i
        set_lr(stepper.optimizer, setup.peak * _lr_factor(cfg, setup, step))
        if cfg.drop_path > 0 and (step % setup.drop_every == 0 or i == 0):
            # the annealed value of the last refresh, so a resumed run sets what a whole run has
            model.drop_path_prob = cfg.drop_path * (step - step % setup.drop_every) / setup.total
        stepper(x, y)
    loss = stepper.loss_sum.item() / setup.per_epoch  # one host sync per epoch
    seconds = time.perf_counter() - start
    if not math.isfinite(loss):
        kept = f"{cfg.out} keeps the checkpoint of epoch {epoch}" if epoch else "no epoch finished"
        raise TrainingDiverged(f"training diverged: nan/inf loss in epoch {epoch + 1} ({kept}); "
                               f"try another --seed or --batch-size, in a new --out")
    return loss, seconds


def _lr_factor(cfg: FullTrainConfig, setup: _Setup, step: int) -> float:
    from evo_nas.evaluate.train import lr_factor

    return lr_factor(step, setup.total, "cosine", cfg.warmup)


def _evaluate(model, test, setup: _Setup) -> float:
    from evo_nas.evaluate.train import evaluate

    return evaluate(model, test, setup.eval_batch_size, "fp32", setup.memory_format)


def _epoch_line(cfg: FullTrainConfig, h: dict, images: int, seconds: float) -> str:
    tested = f"  test {h['test_accuracy']:.2%}" if h["test_accuracy"] is not None else ""
    left = (cfg.epochs - h["epoch"]) * seconds
    eta = f", ~{_duration(left)} left" if left else ""
    return (f"epoch {h['epoch']}/{cfg.epochs}  loss {h['train_loss']:.4f}{tested}  lr {h['lr']:.4f}  "
            f"{seconds:.1f} s ({images / max(seconds, 1e-9):,.0f} images/s{eta})")


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of one epoch's randomness: depends only on the training seed and the epoch."""
    digest = hashlib.sha256(f"{seed}:epoch:{epoch}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


class _Stepper:
    """Training steps on one model: eager, or on CUDA train.py's GraphedStep (a few eager
    warm-up steps, then the whole step captured once and replayed). The optimizer starts from
    `optimizer_state`, a checkpoint's (or empty)."""

    def __init__(self, model, cfg: FullTrainConfig, setup: _Setup, optimizer_state: dict, graph: bool, seed: int):
        import torch

        from evo_nas.evaluate.train import StepCore, make_optimizer

        tcfg = cfg.train_config()
        self.optimizer = make_optimizer(model.parameters(), setup.optimizer, setup.peak, setup.weight_decay, tcfg,
                                        setup.device, capturable=graph)
        load_optimizer_state(self.optimizer, optimizer_state)
        self.loss_sum = torch.zeros((), device=setup.device)
        # autocast's weight cache must be off inside a captured step (train.py explains why)
        self.core = StepCore(model, self.optimizer, tcfg, self.loss_sum, setup.precision, autocast_cache=not graph)
        self.graph, self.memory_format, self.seed = graph, setup.memory_format, seed
        self.warm = tcfg.warmup_steps_before_capture
        self.graphed = None
        self.done = 0

    def __call__(self, x, y) -> None:
        if not self.graph:
            self.core(x.contiguous(memory_format=self.memory_format), y)
            return
        from evo_nas.evaluate.train import graphed_step

        if self.graphed is None:  # static buffers shaped like the batches
            self.graphed = graphed_step(self.core, tuple(x.shape), x.dtype, self.memory_format, self.seed)
        if self.done < self.warm:
            self.graphed.run_eager((x, y))
        else:
            if self.done == self.warm:
                self.graphed.capture()
            self.graphed.replay((x, y))
        self.done += 1

    def close(self) -> None:
        if self.graphed is not None:
            self.graphed.close()
            self.graphed = None


# -- checkpoints and model files -----------------------------------------------------------------

def _start_state(model, out: Path, saved: dict | None) -> TrainState:
    if saved is None:
        initial = {k: v.detach().clone() for k, v in model.state_dict().items()}
        return TrainState(0, initial, {}, [], 0.0, 0.0)
    tensors = _read_tensors(out / "checkpoint.safetensors")
    model_part = {k[len("model/"):]: v for k, v in tensors.items() if k.startswith("model/")}
    optimizer_part: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith("optimizer/"):
            _, index, name = key.split("/", 2)
            optimizer_part.setdefault(int(index), {})[name] = value
    return TrainState(saved["epoch"], model_part, optimizer_part, list(saved["history"]),
                      float(saved["train_seconds"]), float(saved["wall_seconds"]))


def load_optimizer_state(optimizer, state: dict) -> None:
    """Per-parameter state (momentum buffers, Adam moments) into a fresh optimizer, each tensor
    in its parameter's memory format (fused CUDA kernels want equal strides). The param groups
    stay the fresh optimizer's: their values follow from the config, and lr is set every step."""
    if not state:
        return
    params = [p for group in optimizer.param_groups for p in group["params"]]
    shaped = {}
    for index, entries in state.items():
        p = params[index]
        shaped[index] = {name: _like(p, t) if t.shape == p.shape else t for name, t in entries.items()}
    optimizer.load_state_dict({"state": shaped, "param_groups": optimizer.state_dict()["param_groups"]})


def _like(param, tensor):
    import torch

    out = torch.empty_like(param, dtype=tensor.dtype)
    out.copy_(tensor)
    return out


def save_checkpoint(out: Path, cfg: FullTrainConfig, epoch: int, model, optimizer, history: list,
                    train_seconds: float, wall_seconds: float) -> None:
    """checkpoint.safetensors (the truth: tensors + JSON in its metadata), then checkpoint.json."""
    import torch

    info = {"format": FORMAT, "epoch": epoch, "epochs": cfg.epochs, "config": to_json(cfg), "history": history,
            "train_seconds": train_seconds, "wall_seconds": wall_seconds, "torch": torch.__version__}
    tensors = {f"model/{k}": v for k, v in model.state_dict().items()}
    for index, entries in optimizer.state_dict()["state"].items():
        for name, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer/{index}/{name}"] = value
    text = json.dumps(info, sort_keys=True)
    _write_tensors(out / "checkpoint.safetensors", tensors, {"format": "evonas-checkpoint", "checkpoint": text})
    _atomic_text(out / "checkpoint.json", json.dumps(info, indent=2, sort_keys=True) + "\n")


def read_checkpoint_info(out: Path) -> dict:
    """The JSON stored in checkpoint.safetensors' metadata, checked."""
    meta = _read_metadata(out / "checkpoint.safetensors")
    try:
        info = json.loads(meta.get("checkpoint", ""))
    except ValueError:
        info = None
    if not isinstance(info, dict) or info.get("format") != FORMAT or "config" not in info:
        raise RunDirError(f"{out / 'checkpoint.safetensors'}: not an evonas checkpoint of format {FORMAT}; "
                          f"choose another --out")
    return info


def _save_model(path: Path, model, cfg: FullTrainConfig, skeleton) -> None:
    meta = {"format": "evonas-model", "version": str(FORMAT), "genome": dumps(cfg.genome),
            "skeleton": json.dumps(dataclasses.asdict(skeleton))}
    _write_tensors(path, model.state_dict(), meta)


def load_model(path: str | os.PathLike):
    """The model of a model.safetensors (or of the folder holding one), on the CPU, in eval
    mode: built from the genome and skeleton in its metadata, weights loaded strictly."""
    from evo_nas.build import Skeleton, build

    path = Path(path)
    path = path / "model.safetensors" if path.is_dir() else path
    meta = _read_metadata(path)
    if meta.get("format") != "evonas-model":
        raise RunDirError(f"{path}: not an evonas model file")
    genome = loads(meta["genome"], str(path))
    skeleton = Skeleton(**json.loads(meta["skeleton"]))
    model = build(genome, skeleton)
    model.load_state_dict(_read_tensors(path))
    return model.eval()


def export_model(out: Path, cfg: FullTrainConfig, skeleton) -> dict:
    """model.onnx from model.safetensors (which it thereby checks), and its parity with torch."""
    from evo_nas.exporting import export_onnx, onnx_parity

    model = load_model(out / "model.safetensors")
    export_onnx(model, skeleton.input_shape, out / "model.onnx")
    diff = None
    if importlib.util.find_spec("onnxruntime") is not None:
        diff = onnx_parity(model, out / "model.onnx", skeleton.input_shape)
    return {"file": "model.onnx", "opset": 17, "max_abs_diff": diff}


def _write_tensors(path: Path, tensors: dict, metadata: dict) -> None:
    from safetensors.torch import save

    # safetensors stores dense row-major data: channels_last weights are copied to that layout
    cpu = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    _atomic_bytes(path, save(cpu, metadata=metadata))


def _read_tensors(path: Path) -> dict:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as err:
        raise RunDirError(f"{path}: unreadable ({' '.join(str(err).split())}); delete it to start over") from None


def _read_metadata(path: Path) -> dict:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return f.metadata() or {}
    except (SafetensorError, OSError) as err:
        raise RunDirError(f"{path}: unreadable ({' '.join(str(err).split())}); delete it to start over") from None


def _atomic_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _atomic_text(path: Path, text: str) -> None:
    from evo_nas.store import atomic_write

    atomic_write(path, text)


# -- metrics -----------------------------------------------------------------------------------------

def _metrics(cfg, skeleton, counts, state: TrainState, setup: _Setup, accuracy: float, train_images: int,
             test_images: int, onnx, device, wall: float) -> dict:
    import platform

    import torch

    hardware = (torch.cuda.get_device_name(device) if device.type == "cuda"
                else f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads")
    images = state.epoch * setup.per_epoch * min(cfg.batch_size, train_images)
    paths = sorted({h["path"] for h in state.history})
    return {"name": cfg.genome.name or cfg.origin, "space": cfg.genome.space, "origin": cfg.origin,
            "dataset": cfg.dataset, "test_accuracy": accuracy, "test_images": test_images,
            "train_images": train_images, "params": counts["params"], "macs": counts["macs"],
            "epochs": state.epoch, "skeleton": dataclasses.asdict(skeleton), "optimizer": setup.optimizer,
            "peak_lr": setup.peak, "weight_decay": setup.weight_decay, "precision": setup.precision,
            "device": str(device), "hardware": hardware, "path": "+".join(paths) or "none",
            "torch": torch.__version__, "wall_time": round(wall, 3), "train_seconds": round(state.train_seconds, 3),
            "images_per_s": round(images / state.train_seconds, 1) if state.train_seconds else 0.0,
            "onnx": onnx, "history": state.history, "config": to_json(cfg)}


def _result(out: Path, metrics: dict, resumed_from: int) -> FullTrainResult:
    return FullTrainResult(out=out, test_accuracy=metrics["test_accuracy"], params=metrics["params"],
                           macs=metrics["macs"], epochs=metrics["epochs"], resumed_from=resumed_from,
                           metrics=metrics)
