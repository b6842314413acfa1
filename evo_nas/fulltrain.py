"""`evonas train`: train one chosen architecture properly, report its test accuracy, export it.

The final skeleton of the genome's space (wider, deeper than the search proxy), the whole
training split, many epochs, a cosine schedule: the search's Trainer run epoch by epoch, with a
checkpoint after each, so that running the same command again continues (bit-identically on
a CPU). The files it writes and the decisions behind them are in docs/training.md.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import json
import platform
import re
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path

import torch

from evo_nas import config as configs
from evo_nas import spaces
from evo_nas.build import build
from evo_nas.checkpoint import load_model, load_state, read_info, save_checkpoint, save_model
from evo_nas.config import FULL_TRAINING, DataConfig, Skeleton, TrainConfig, flat_config
from evo_nas.errors import ConfigError, DataError, Interrupted, RunDirError, UserError
from evo_nas.evaluate.count import count_macs, count_params
from evo_nas.evaluate.data import cached_dataset
from evo_nas.evaluate.device_data import load_data
from evo_nas.evaluate.devices import available, torch_device
from evo_nas.evaluate.engine import Trainer, TrainingFailed, evaluate, lr_factor, resolve_precision
from evo_nas.exporting import ONNX_OPSET, export_onnx, onnx_parity
from evo_nas.files import atomic_write
from evo_nas.genome import Genome
from evo_nas.genome_io import dumps, load_genome
from evo_nas.progress import duration
from evo_nas.reading import read_json
from evo_nas.records import Result, Status
from evo_nas.spaces import parse_genome
from evo_nas.store import RunDir

RECIPE = FULL_TRAINING  # config.py says why these numbers
SKELETON_OPTIONS = ("init_channels", "depth", "auxiliary", "drop_path")  # evonas train's options
SKELETON_FIELDS = (*SKELETON_OPTIONS, "stem", "stem_multiplier", "reductions", "dropout")  # a study sets them all
# Settings that may differ when a training is resumed: they do not change its result.
# (On a CPU the thread count changes the float rounding: a bit-identical resume needs the same one.)
RESUMABLE = configs.resumable("train") | {"origin", "out", "test_every"}
NOT_USED = {"val_fraction", "val_limit"}  # a final training has no validation split


@dataclass(frozen=True)
class FullTrainConfig:
    """One full training. Defaults: a proper Fashion-MNIST training on one GPU."""

    genome: Genome
    origin: str  # what was asked for: a genome file or RUN_DIR#ID (the genome's source says more)
    out: str  # the output folder
    data: DataConfig = DataConfig()  # fashion-mnist, the search default; train_limit, test_limit: subsets
    train: TrainConfig = RECIPE
    skeleton: dict = field(default_factory=dict)  # SKELETON_FIELDS given; the rest: the space's final skeleton
    skeleton_name: str | None = None  # a named skeleton of the space (its entry's `skeletons`) instead of the final
    genome_hparams: bool = True  # use the genome's own lr, weight decay, optimizer, dropout if it has them
    device: str = "auto"  # auto: CUDA when torch sees a GPU
    cpu_threads: int | None = None  # CPU training threads (None: this machine's cores)
    seed: int = 0  # model initialisation, data order, augmentation, dropout, drop path
    test_every: int = 1  # measure the test split every this many epochs, for the log only
    onnx: bool = True  # write model.onnx (and check it against torch when onnxruntime is there)

    def __post_init__(self):
        entry = spaces.of(self.genome)
        if self.skeleton_name is not None and self.skeleton_name not in entry.skeletons:
            raise ConfigError(f"train config: {entry.name} genomes have no skeleton {self.skeleton_name!r} "
                              f"(theirs: {', '.join(entry.skeletons) or 'none'})")
        for name, value in self.skeleton.items():
            if name not in SKELETON_FIELDS:
                raise ConfigError(f"train config: unknown skeleton setting {name}")
            if value and name not in entry.skeleton_fields:
                raise ConfigError(f"train config: {name.replace('_', '-')} does not apply to {entry.name} genomes")
        checks = [(self.train.epochs >= 1 and float(self.train.epochs).is_integer(),
                   f"epochs must be a whole number >= 1 (a checkpoint follows each epoch), got {self.train.epochs}"),
                  (self.test_every >= 1, "test_every must be >= 1"),
                  (self.device in ("auto", "cpu", "cuda"), "device must be auto, cpu or cuda")]
        for ok, message in checks:
            if not ok:
                raise ConfigError(f"train config: {message}")

    @property
    def epochs(self) -> int:
        return int(self.train.epochs)

    def skeleton_for(self, input_shape: tuple[int, int, int], classes: int) -> Skeleton:
        entry = spaces.of(self.genome)
        sizes = {**self._base_skeleton(), **self.skeleton}
        if "init_channels" not in entry.skeleton_fields:
            sizes.update(init_channels=None, depth=None)
        return Skeleton(input_shape=input_shape, classes=classes, **sizes)

    def settings(self) -> dict:
        """The resolved skeleton settings, for the log and metrics."""
        entry = spaces.of(self.genome)
        base = self._base_skeleton()
        return {**{k: base.get(k) for k in SKELETON_OPTIONS if k in entry.skeleton_fields},
                **({"stem": base["stem"]} if "stem" in base else {}), **self.skeleton}

    def _base_skeleton(self) -> dict:
        """The final skeleton of the genome's space, or the named one (its data set's shape aside)."""
        entry = spaces.of(self.genome)
        if self.skeleton_name is None:
            return {k: v for k, v in entry.final.items() if k in SKELETON_FIELDS}
        return {k: v for k, v in entry.skeletons[self.skeleton_name].items() if k not in ("input_shape", "classes")}

    def hparams(self):
        return self.genome.hparams if self.genome_hparams else None


def to_json(cfg: FullTrainConfig) -> dict:
    out = {f.name: getattr(cfg, f.name) for f in fields(cfg)}
    out["genome"] = cfg.genome.to_dict()
    out["train"] = dataclasses.asdict(cfg.train)
    out["data"] = {k: v for k, v in dataclasses.asdict(cfg.data).items() if k not in NOT_USED}
    return out


def results_part(cfg: FullTrainConfig) -> dict:
    """The settings the trained model depends on: all but the resumable ones; the genome without
    its name and source (the same network from a file or from a run is the same training)."""
    data = {k: v for k, v in to_json(cfg).items() if k not in RESUMABLE}
    data["data"] = {k: v for k, v in data["data"].items() if k not in RESUMABLE}
    data["genome"] = cfg.genome.anonymous().to_dict()
    return data


# -- from the command line --------------------------------------------------------------------

def config_from_options(target: str, options: dict) -> FullTrainConfig:
    """A config from `evonas train TARGET` and its options (None where not given). TARGET is a
    genome file or RUN_DIR#ID; the dataset defaults to the run's (or fashion-mnist)."""
    genome, run_config, name = resolve_target(target)
    given = {k: v for k, v in options.items() if v is not None}
    run_config = flat_config(run_config or {})
    dataset = given.pop("dataset", None) or run_config.get("dataset") or "fashion-mnist"
    if "data_dir" not in given and dataset == run_config.get("dataset") and run_config.get("data_dir"):
        given["data_dir"] = run_config["data_dir"]
    out = given.pop("out", None) or str(Path("runs") / f"train-{name}")
    data = {k: given.pop(k) for k in list(given) if k in {f.name for f in fields(DataConfig)}}
    train = {k: given.pop(k) for k in list(given) if k in {f.name for f in fields(TrainConfig)}}
    skeleton = {k: given.pop(k) for k in list(given) if k in SKELETON_OPTIONS}
    unknown = sorted(set(given) - {f.name for f in fields(FullTrainConfig)})
    if unknown:
        raise ConfigError(f"train: unknown option {unknown[0]}")
    try:
        recipe = dataclasses.replace(RECIPE, **train)
        data = DataConfig(dataset=dataset, **data)
    except ConfigError as err:
        raise ConfigError(f"train config: {err}") from None
    return FullTrainConfig(genome=genome, origin=target, out=out, data=data, train=recipe, skeleton=skeleton, **given)


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

    run = RunDir.open(run_text)
    try:
        ident = int(id_text)
    except ValueError:
        raise RunDirError(f"{target}: the evaluation id after '#' must be an integer, got {id_text!r}") from None
    history = run.history()
    record = history.final(ident)
    if record is None:
        ids = sorted({r.id for r in history.records})
        known = f"ids {ids[0]}-{ids[-1]}" if ids else "no evaluations yet"
        raise RunDirError(f"{target}: {run.path} has no evaluation {ident} ({known})")
    if not record.ok:
        why = f": {record.error}" if record.error else ""
        raise RunDirError(f"{target}: evaluation {ident} is {record.status}{why}; train a successful one "
                          f"(see `evonas front {run.path}`)")
    genome = record.genome
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
    sizes = ", ".join(f"{k}={v}" for k, v in m["settings"].items() if k in ("init_channels", "depth"))
    lines = [f"trained {m['name']} ({m['space']}{', ' + sizes if sizes else ''}) on {m['dataset']} "
             f"for {result.epochs} epochs on {m['device']}{resumed}",
             f"  test accuracy  {result.test_accuracy:.2%} ({m['test_images']:,} test images)",
             f"  params         {result.params:,}",
             f"  MACs           {result.macs:,} per image",
             f"  time           {m['wall_time']:.0f} s in all, {m['train_seconds']:.0f} s training "
             f"({m['images_per_s']:,.0f} images/s, {m['hardware']}, {m['path']})"]
    onnx = m.get("onnx")
    if onnx and onnx.get("file") is None:
        lines.append(f"  onnx           {onnx['note']}")
    elif onnx:
        diff = onnx.get("max_abs_diff")
        check = "not checked: no onnxruntime" if diff is None else f"onnxruntime vs torch: max |diff| {diff:.1e}"
        lines.append(f"  onnx           {result.out / onnx['file']} ({check})")
    lines.append(f"  files          {result.out}/ model.safetensors genome.yaml metrics.json")
    return "\n".join(lines)


# -- running ---------------------------------------------------------------------------------------

def stderr_line(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def run(cfg: FullTrainConfig, log: Callable[[str], None] | None = stderr_line,
        on_steps: Callable[..., None] | None = None) -> FullTrainResult:
    """Train (or continue, or just report) the training `cfg` describes in cfg.out. `on_steps`
    hears after every step (epoch, epochs, steps done in the epoch, steps per epoch, a function
    giving the epoch's mean loss so far): progress.EpochBar draws it."""
    log = log or (lambda line: None)
    out = Path(cfg.out)
    saved = open_out(out, cfg)
    if saved is not None and saved["epoch"] == cfg.epochs and (out / "metrics.json").is_file():
        metrics = read_json(out / "metrics.json", RunDirError, "metrics file")
        if cfg.onnx and not (out / "model.onnx").is_file() and _has_onnx():  # installed since: export now
            metrics["onnx"] = export_model(out, Skeleton(**metrics["skeleton"]))
            atomic_write(out / "metrics.json", json.dumps(metrics, indent=2) + "\n")
        return _result(out, metrics, resumed_from=cfg.epochs)
    try:
        return _train_and_finish(cfg, out, saved, log, on_steps)
    except KeyboardInterrupt as stop:
        raise Interrupted(f"{out} keeps the checkpoint of the last finished epoch: "
                          f"run the same command to continue", getattr(stop, "signum", 2)) from None


def _has_onnx() -> bool:
    return importlib.util.find_spec("onnx") is not None


NO_ONNX = {"file": None, "note": "onnx is not installed, so there is no model.onnx: pip install 'evo-nas[export]' "
                                 "and run the same command again to write it"}


# Written first into an --out that evonas creates: a folder with it and no checkpoint yet is a
# training stopped in its first epoch (Ctrl-C, kill -9), which the same command starts again.
MARK = ".evonas-train"


def open_out(out: Path, cfg: FullTrainConfig) -> dict | None:
    """None for a fresh training, else the JSON of the checkpoint in `out`. Refuses a folder of
    something else, or of another configuration. Creates nothing."""
    if out.exists() and not out.is_dir():
        raise RunDirError(f"{out}: exists and is not a folder; choose another --out")
    if not (out / "checkpoint.safetensors").is_file():
        if out.is_dir() and any(out.iterdir()) and not (out / MARK).is_file():  # MARK: a start of ours, stopped
            raise RunDirError(f"{out}: exists and holds no evonas training (no checkpoint.safetensors); "
                              f"choose another --out")
        return None
    saved = read_info(out / "checkpoint.safetensors")
    old, new = _flat(saved["config"]), _flat(results_part(cfg))
    old["genome"] = parse_genome(saved["config"].get("genome"), str(out)).anonymous().to_dict()
    for key in new:
        if key == "genome" and old.get(key) != new[key]:
            raise ConfigError(f"{out}: holds the training of another genome; choose another --out")
        if old.get(key) != new[key]:
            raise ConfigError(f"{out}: holds a training with {key}={old.get(key)!r}, not {new[key]!r}; "
                              f"choose another --out, or the same settings to continue it")
    return saved


def _flat(data: dict) -> dict:
    """The config's data, train and skeleton settings beside the others, for comparison by name."""
    out = {k: v for k, v in data.items() if k not in ("data", "train", "skeleton")}
    return {**out, **data.get("data", {}), **data.get("train", {}), **data.get("skeleton", {})}


def _train_and_finish(cfg: FullTrainConfig, out: Path, saved: dict | None, log, on_steps) -> FullTrainResult:


    started = time.perf_counter()
    device = torch_device(available(cfg.device))
    if device.type == "cpu" and cfg.cpu_threads:
        torch.set_num_threads(cfg.cpu_threads)
    dataset = cached_dataset(cfg.data.dataset, cfg.data.data_dir)
    if dataset.y_test is None:  # refused before --out exists: the test split is what a training measures
        raise DataError(f"{dataset.name}: has no test split; add arrays x_test and y_test to it")
    skeleton = cfg.skeleton_for(dataset.input_shape, dataset.classes)
    torch.manual_seed(cfg.seed)  # weight initialisation (a resumed run loads the weights over it)
    model = build(cfg.genome, skeleton)
    counts = {"params": count_params(model), "macs": count_macs(model, skeleton.input_shape)}
    try:
        out.mkdir(parents=True, exist_ok=True)  # only now: bad data or settings leave no folder behind
    except OSError as err:
        raise RunDirError(f"{out}: cannot create the output folder ({err.strerror})") from None
    if saved is None:
        atomic_write(out / MARK, "evonas train's output folder: the same command continues it\n")
    atomic_write(out / "genome.yaml", dumps(cfg.genome))
    precision = resolve_precision(cfg.train, device)  # bf16 images only for bf16 training on CUDA
    train_data, test_data = (load_data(cfg.data, cfg.seed, device, part, precision=precision)
                             for part in ("trainval", "test"))
    state = load_state(out / "checkpoint.safetensors", saved) if saved is not None else None
    guard = torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext()
    with guard:
        trainer, per_epoch, seconds = train_epochs(model, train_data, test_data, cfg, device, state, saved, out,
                                                 started, counts, log, on_steps)
    accuracy = per_epoch[-1]["test_accuracy"]  # the last epoch is always measured
    save_model(out / "model.safetensors", model, cfg.genome, skeleton)
    onnx = (export_model(out, skeleton) if _has_onnx() else NO_ONNX) if cfg.onnx else None
    wall = (saved["wall_seconds"] if saved else 0.0) + time.perf_counter() - started
    metrics = _metrics(cfg, skeleton, counts, trainer, per_epoch, seconds, accuracy, len(train_data), len(test_data),
                       onnx, device, wall)
    atomic_write(out / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    return _result(out, metrics, resumed_from=saved["epoch"] if saved else 0)


# -- the epoch loop ---------------------------------------------------------------------------------

def train_epochs(model, data, test, cfg: FullTrainConfig, device, state: dict | None, saved: dict | None, out: Path,
                 started: float, counts: dict, log, on_steps=None):
    """The epochs from the checkpoint's (or the first) to cfg.epochs, a checkpoint after each.
    Returns (trainer, per_epoch, training seconds over all sessions)."""
    trainer = Trainer(model, data, cfg.train, device, cfg.seed, hparams=cfg.hparams(),
                      total=data.num_batches(cfg.train.batch_size) * cfg.epochs)
    if state is not None:
        trainer.load_state_dict(state)
    per_epoch = list(saved.get("per_epoch", saved.get("history", []))) if saved else []  # earlier versions: "history"
    seconds = saved["train_seconds"] if saved else 0.0
    first = trainer.step // trainer.per_epoch
    log(_start_line(cfg, device, first, counts, len(data)))
    images = trainer.per_epoch * trainer.batch  # per epoch: whole batches only
    try:
        for epoch in range(first, cfg.epochs):
            begin, stop, tick = trainer.step, (epoch + 1) * trainer.per_epoch, time.perf_counter()
            fallbacks = trainer.fallbacks
            before = trainer.loss_sum.detach().clone()
            try:
                for _ in trainer.steps(stop):
                    if on_steps is not None:
                        done = trainer.step - begin
                        on_steps(epoch + 1, cfg.epochs, done, trainer.per_epoch,
                                 lambda done=done, before=before: ((trainer.loss_sum - before) / max(done, 1)).item())
            except TrainingFailed as failure:
                kept = f"{cfg.out} keeps the checkpoint of epoch {epoch}" if epoch else "no epoch finished"
                raise UserError(f"training diverged: {failure.reason} in epoch {epoch + 1} ({kept}); "
                                f"try another --seed or --batch-size, in a new --out") from None
            if trainer.fallbacks > fallbacks:  # each time, in whichever epoch the capture was
                log(f"CUDA graph capture failed ({trainer.fallback_reason}); training eagerly from epoch {epoch + 1}")
            tested = (epoch + 1) % cfg.test_every == 0 or epoch + 1 == cfg.epochs
            elapsed = time.perf_counter() - tick
            per_epoch.append({"epoch": epoch + 1, "train_loss": trainer.mean_loss(begin, stop),
                            "test_accuracy": evaluate(model, test, cfg.train.eval_batch_size, "fp32",
                                                      trainer.memory_format) if tested else None,
                            "lr": trainer.peak * _lr_factor(cfg, trainer, stop - 1), "seconds": round(elapsed, 3),
                            "path": trainer.path, "device": str(device)})
            seconds += elapsed
            info = {"epoch": epoch + 1, "epochs": cfg.epochs, "config": to_json(cfg), "per_epoch": per_epoch,
                    "train_seconds": seconds, "wall_seconds": (saved["wall_seconds"] if saved else 0.0)
                    + time.perf_counter() - started, "torch": torch.__version__}
            save_checkpoint(out / "checkpoint.safetensors", info, trainer.state_dict())
            atomic_write(out / "checkpoint.json", json.dumps({**info, "step": trainer.step}, indent=2,
                                                             sort_keys=True) + "\n")
            log(_epoch_line(cfg, per_epoch[-1], images, elapsed))
    finally:
        trainer.close()
    return trainer, per_epoch, seconds


def _lr_factor(cfg: FullTrainConfig, trainer, step: int) -> float:
    return lr_factor(step, trainer.total, cfg.train.schedule, cfg.train.warmup)


def _start_line(cfg: FullTrainConfig, device, epoch: int, counts: dict, images: int) -> str:
    where = f"resuming after epoch {epoch}" if epoch else "from scratch"
    return (f"training {cfg.genome.name or cfg.origin} on {cfg.data.dataset} ({images:,} images) on {device}, "
            f"{cfg.epochs} epochs, {counts['params']:,} params, {counts['macs']:,} MACs: {where}; "
            f"checkpoints in {cfg.out}")


def _epoch_line(cfg: FullTrainConfig, h: dict, images: int, seconds: float) -> str:
    tested = f"  test {h['test_accuracy']:.2%}" if h["test_accuracy"] is not None else ""
    left = (cfg.epochs - h["epoch"]) * seconds
    eta = f", ~{duration(left)} left" if left else ""
    return (f"epoch {h['epoch']}/{cfg.epochs}  loss {h['train_loss']:.4f}{tested}  lr {h['lr']:.4f}  "
            f"{seconds:.1f} s ({images / max(seconds, 1e-9):,.0f} images/s{eta})")


# -- the final protocol of a study: one training per request ----------------------------------------

@dataclass(frozen=True)
class FinalSettings:
    """How a study trains every network it compares: the same data, recipe and device for all,
    each network in its space's proxy skeleton (`skeletons`: space -> skeleton fields), one
    output folder (checkpoints, metrics) per training under `root`. Picklable."""

    data: DataConfig
    train: TrainConfig
    skeletons: dict
    device: str
    cpu_threads: int | None
    root: str

    @classmethod
    def of(cls, plan, root: Path) -> FinalSettings:
        """A study plan's final protocol: its data set, whole (the test split: once, at the end);
        its proxy's recipe for final_epochs; the proxy skeleton of every space it trains."""
        from evo_nas import runner

        common = {k: v for k, v in plan.options.items() if configs.leaves()[k][0] in ("data", "train", "backend")}
        cfg = runner.plan({**plan.options, "name": "final"})
        skeletons = {}
        for name in spaces.REGISTRY:
            proxy = cfg if name == cfg.space.space else runner.plan({**common, "space": name, "name": "final"})
            skeletons[name] = {k: getattr(proxy.skeleton, k) for k in SKELETON_FIELDS
                               if k in spaces.entry(name).skeleton_fields}
        data = dataclasses.replace(cfg.data, train_limit=plan.settings.final_images, val_limit=None)
        train = dataclasses.replace(cfg.train, epochs=plan.settings.final_epochs, train_images=None, time_limit=0.0)
        return cls(data, train, skeletons, cfg.device, cfg.backend.cpu_threads, str(root))

    def config(self, request) -> FullTrainConfig:
        return FullTrainConfig(genome=request.genome, origin=request.operator, out=str(Path(self.root) /
                               f"{request.id:04d}"), data=self.data, train=self.train,
                               skeleton=self.skeletons[request.genome.space], device=self.device,
                               cpu_threads=self.cpu_threads, seed=request.seed, onnx=False)

    def skeleton_of(self, genome: Genome) -> Skeleton:
        from evo_nas.evaluate.data import cached_dataset

        dataset = cached_dataset(self.data.dataset, self.data.data_dir)
        return FullTrainConfig(genome=genome, origin="", out="", skeleton=self.skeletons[genome.space]).skeleton_for(
            dataset.input_shape, dataset.classes)


class FinalEvaluator:
    """A journaled evaluator's callable for final trainings: `evonas train`'s run of one request
    (its folder keeps a checkpoint per epoch, so a stopped study continues mid-training); a
    training that diverges or runs out of memory is a failed Result."""

    def __init__(self, settings: FinalSettings):
        self.settings = settings

    def __call__(self, request) -> Result:
        from evo_nas.evaluate.evaluator import describe_error

        start = time.perf_counter()
        cfg = self.settings.config(request)
        if not (Path(cfg.out) / "checkpoint.safetensors").is_file():
            shutil.rmtree(cfg.out, ignore_errors=True)  # the study's own folder, stopped before its first epoch ended
        try:
            done = run(cfg, log=None)
        except UserError as err:
            return Result(Status.FAILED, error=str(err), wall_time=round(time.perf_counter() - start, 3))
        except Exception as err:  # noqa: BLE001 - a candidate's failure is data
            return Result(Status.FAILED, error=describe_error(err), wall_time=round(time.perf_counter() - start, 3))
        m = done.metrics
        return Result(Status.OK, test_accuracy=done.test_accuracy, macs=done.macs, params=done.params,
                      train_loss=m["per_epoch"][-1]["train_loss"], epochs=done.epochs, device=m["device"],
                      path=m["path"], wall_time=m["wall_time"], images_per_s=m["images_per_s"])


# -- the model, exported --------------------------------------------------------------------------

def export_model(out: Path, skeleton: Skeleton) -> dict:
    """model.onnx from model.safetensors (which it thereby checks), and its parity with torch."""
    model = load_model(out / "model.safetensors")
    export_onnx(model, skeleton.input_shape, out / "model.onnx")
    diff = None
    if importlib.util.find_spec("onnxruntime") is not None:
        diff = onnx_parity(model, out / "model.onnx", skeleton.input_shape)
    return {"file": "model.onnx", "opset": ONNX_OPSET, "max_abs_diff": diff}


def _metrics(cfg, skeleton, counts, trainer, per_epoch, seconds, accuracy: float, train_images: int,
             test_images: int, onnx, device, wall: float) -> dict:


    hardware = (torch.cuda.get_device_name(device) if device.type == "cuda"
                else f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads")
    images = cfg.epochs * trainer.per_epoch * trainer.batch
    paths = sorted({h["path"] for h in per_epoch})
    return {"name": cfg.genome.name or cfg.origin, "space": cfg.genome.space, "origin": cfg.origin,
            "dataset": cfg.data.dataset, "test_accuracy": accuracy, "test_images": test_images,
            "train_images": train_images, "params": counts["params"], "macs": counts["macs"],
            "epochs": cfg.epochs, "skeleton": dataclasses.asdict(skeleton), "settings": cfg.settings(),
            "optimizer": trainer.optimizer_name, "peak_lr": trainer.peak, "weight_decay": trainer.weight_decay,
            "precision": trainer.precision, "device": str(device), "hardware": hardware,
            "path": "+".join(paths) or "none", "torch": torch.__version__, "wall_time": round(wall, 3),
            "train_seconds": round(seconds, 3), "images_per_s": round(images / seconds, 1) if seconds else 0.0,
            "onnx": onnx, "per_epoch": per_epoch, "config": to_json(cfg)}


def _result(out: Path, metrics: dict, resumed_from: int) -> FullTrainResult:
    return FullTrainResult(out=out, test_accuracy=metrics["test_accuracy"], params=metrics["params"],
                           macs=metrics["macs"], epochs=metrics["epochs"], resumed_from=resumed_from,
                           metrics=metrics)

