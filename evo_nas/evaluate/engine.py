"""The one training loop: a `Trainer` holds a model's optimizer, schedule and step count, and
trains it on device-resident data, each step one CUDA graph where possible.   [torch]

The search calls it for a whole proxy training (`proxy_training`); `evonas train` calls it
epoch by epoch and checkpoints its `state_dict()` in between. The decisions behind the
schedule, the checks and the graph path are in docs/training.md.
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from evo_nas.config import TrainConfig
from evo_nas.errors import ConfigError
from evo_nas.evaluate.cuda_graph import CaptureError, graphed_step
from evo_nas.evaluate.device_data import Augment, DeviceData
from evo_nas.evaluate.devices import torch_device
from evo_nas.genome import OPTIMIZERS
from evo_nas.rng import derive_seed

REFERENCE_BATCH = 256  # cfg.lr is the peak rate at this batch size
CHECK_EVERY_CUDA = 50  # steps between host reads of the loss sum (NaN) and the time limit, on CUDA
TAIL_FRACTION = 0.1  # a proxy's train_loss averages this last fraction of the steps
DROP_PATH_UPDATES = 100  # drop-path probability is refreshed this many times over a training


class TrainingFailed(Exception):
    """The network could not be trained (NaN loss, time limit); `reason` is one short line."""

    def __init__(self, reason: str, steps: int | None = None):
        super().__init__(reason)
        self.reason = reason
        self.steps = steps

    def __reduce__(self):  # keep `steps` when a worker process sends the failure back
        return type(self), (self.reason, self.steps)


# ---------------------------------------------------------------- settings, resolved

def scaled_lr(lr: float, batch_size: int) -> float:
    """The peak rate for `batch_size`, given `lr` for the reference batch of 256."""
    return lr * batch_size / REFERENCE_BATCH


def lr_factor(step: int, total: int, schedule: str, warmup: float) -> float:
    """Multiplier of the peak rate at 0-based optimizer step `step` of `total`; in (0, 1]."""
    warm = round(warmup * total)
    if step < warm:
        return (step + 1) / warm
    if schedule == "constant":
        return 1.0
    left = total - warm  # steps after the warm-up, >= 1 here
    if schedule == "onecycle":
        return (total - step) / left  # 1 at the first step after warm-up, 1/left at the last
    if schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * (step - warm) / left))  # > 0 before the end
    raise ConfigError(f"unknown schedule {schedule!r}")


def choose_path(device_type: str, cfg: TrainConfig, model: nn.Module, steps: int | None = None) -> tuple[str, str]:
    """("graph", "") or ("eager", why). cuda_graph="on" raises ConfigError instead."""
    if cfg.cuda_graph == "off":
        return "eager", "cuda_graph='off'"
    if device_type != "cuda":
        reason = "not CUDA"
    elif getattr(model, "graph_safe", True) is False:
        reason = "the model says graph_safe=False"
    elif steps is not None and steps <= cfg.warmup_steps_before_capture:
        reason = f"{steps} steps leave none to replay after {cfg.warmup_steps_before_capture} warm-up steps"
    else:
        return "graph", ""
    if cfg.cuda_graph == "on":
        raise ConfigError(f"cuda_graph='on' but {reason}")
    return "eager", reason


def resolve_hparams(cfg: TrainConfig, hparams=None) -> tuple[str, float, float]:
    """(optimizer, reference-batch lr, weight decay): the genome's hparams where given."""
    if hparams is None:
        return cfg.optimizer, cfg.lr, cfg.weight_decay
    if hparams.optimizer not in OPTIMIZERS:
        raise ConfigError(f"hparams.optimizer: {hparams.optimizer!r} is not one of {', '.join(OPTIMIZERS)}")
    return hparams.optimizer, float(hparams.lr), float(hparams.weight_decay)


def resolve_precision(cfg: TrainConfig, device: torch.device) -> str:
    """"bf16" or "fp32" for this device."""
    if cfg.precision != "auto":
        return cfg.precision
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return "bf16"
    return "fp32"


def make_optimizer(params, name: str, lr: float, weight_decay: float, cfg: TrainConfig,
                   device: torch.device | str = "cpu", capturable: bool = False) -> torch.optim.Optimizer:
    """The optimizer `name` at rate `lr`. capturable=True (CUDA): lr becomes a float32 device
    tensor (refill it with set_lr) and the update has no host sync, for CUDA-graph capture."""
    device = torch.device(device)
    cuda = device.type == "cuda"
    if capturable and not cuda:
        raise ValueError("capturable optimizers need a CUDA device")
    rate = torch.tensor(lr, dtype=torch.float32, device=device) if capturable else lr
    foreach = True if cuda else None  # None: torch's own choice on the CPU
    if name == "sgd":
        # fused: the only SGD path with a sync-free tensor lr (docs/training.md)
        return torch.optim.SGD(params, lr=rate, momentum=cfg.momentum, weight_decay=weight_decay,
                               nesterov=cfg.nesterov and cfg.momentum > 0, fused=True if cuda else None)
    if name == "adam":
        return torch.optim.Adam(params, lr=rate, weight_decay=weight_decay, foreach=foreach, capturable=capturable)
    if name == "rmsprop":
        # EfficientNet's RMSprop: decay 0.9, momentum 0.9, eps 1e-3; torch's eps=1e-8 lets the
        # first steps explode while the squared-gradient average is still near zero.
        return torch.optim.RMSprop(params, lr=rate, alpha=0.9, eps=1e-3, momentum=cfg.momentum,
                                   weight_decay=weight_decay, foreach=foreach, capturable=capturable)
    raise ConfigError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}")


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set every group's rate: in place for a tensor rate (no sync, graph-safe), else assign."""
    for group in optimizer.param_groups:
        if isinstance(group["lr"], torch.Tensor):
            group["lr"].fill_(lr)
        else:
            group["lr"] = lr


def autocast(device_type: str, precision: str, cache: bool = True):
    if precision != "bf16":
        return contextlib.nullcontext()
    return torch.autocast(device_type, dtype=torch.bfloat16, cache_enabled=cache)


# ---------------------------------------------------------------- one step

def align_grads(params: Sequence[torch.Tensor]) -> None:
    """Give each grad its parameter's strides, without a copy: autograd may leave a grad whose
    strides differ on size-1 dims (a channels_last depthwise weight), which fused optimizers
    refuse and foreach ops take slowly. A view with the parameter's strides is exact."""
    for p in params:
        g = p.grad
        if g is not None and g.stride() != p.stride():
            p.grad = g.as_strided(p.shape, p.stride())


class StepCore:
    """zero_grad -> forward (autocast) -> loss -> backward -> clip -> optimizer step, and the
    main-head loss added to `loss_sum` (a device scalar). No host sync anywhere."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, cfg: TrainConfig,
                 loss_sum: torch.Tensor, precision: str, autocast_cache: bool = True):
        self.model, self.optimizer, self.cfg, self.loss_sum = model, optimizer, cfg, loss_sum
        self.precision, self.autocast_cache = precision, autocast_cache
        self.device_type = loss_sum.device.type
        self.params = [p for group in optimizer.param_groups for p in group["params"]]
        self.foreach = True if self.device_type == "cuda" else None

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        cfg = self.cfg
        self.optimizer.zero_grad(set_to_none=True)
        with autocast(self.device_type, self.precision, self.autocast_cache):
            out = self.model(x)
            logits, aux = out if isinstance(out, (tuple, list)) else (out, None)
            loss = F.cross_entropy(logits, y, label_smoothing=cfg.label_smoothing)
            total = loss
            if aux is not None and cfg.aux_weight > 0:
                total = loss + cfg.aux_weight * F.cross_entropy(aux, y, label_smoothing=cfg.label_smoothing)
        total.backward()
        if self.device_type == "cuda":
            align_grads(self.params)
        if cfg.grad_clip > 0:
            nn.utils.clip_grad_norm_(self.params, cfg.grad_clip, foreach=self.foreach)
        self.optimizer.step()
        self.loss_sum.add_(loss.detach().float())


# ---------------------------------------------------------------- the trainer

class Trainer:
    """One network's training: optimizer, schedule, step count and RNG streams as state.

    `steps(stop)` trains from the current step to `stop` (default: the end), one item per
    step, so a worker can interleave candidates (each with its `stream` current); `run(stop)`
    does the same in one call. Randomness: the global torch RNG (dropout, drop path) and a CPU
    generator for data order and augmentation (the same batches on any device) are seeded once
    with `seed`; `state_dict()` carries them, so training resumed from a checkpoint draws what
    an uninterrupted one draws (on the eager path; a graph draws from its own CUDA generator
    state, seeded from `seed` and the step it was made at). On CUDA the first call warms up,
    captures and replays a graph, which later calls (the epochs of `evonas train`) replay; if
    capture fails, the call restarts eagerly from where it began (an exact eager run).
    Raises TrainingFailed on a NaN/inf loss or past cfg.time_limit. The time limit counts
    `step_seconds`, the time spent inside this training's own steps (on CUDA with their host
    syncs), so candidates interleaved in one process are each charged their own share.
    """

    def __init__(self, model: nn.Module, data: DeviceData, cfg: TrainConfig, device, seed: int, *,
                 hparams=None, total: int | None = None, stream: torch.cuda.Stream | None = None):
        self.start = time.perf_counter()
        self.model, self.data, self.cfg, self.seed, self.stream = model, data, cfg, seed, stream
        self.device = torch_device(device)
        self.optimizer_name, lr, self.weight_decay = resolve_hparams(cfg, hparams)
        self.batch = min(cfg.batch_size, len(data))
        self.per_epoch = data.num_batches(cfg.batch_size)
        self.total = total if total is not None else max(1, math.floor(cfg.epochs * self.per_epoch + 0.5))
        self.peak = scaled_lr(lr, self.batch)
        self.precision = resolve_precision(cfg, self.device)
        self.memory_format = torch.contiguous_format if cfg.channels_last == "off" else torch.channels_last
        self.check_every = CHECK_EVERY_CUDA if self.device.type == "cuda" else 1
        self.drop_every = max(1, self.total // DROP_PATH_UPDATES)
        self.drop_path = float(getattr(model, "drop_path_max", 0.0) or 0.0)
        model.to(self.device, memory_format=self.memory_format)
        self.loss_sum = torch.zeros((), device=self.device)
        self.generator = torch.Generator()
        torch.manual_seed(seed)
        self.generator.manual_seed(seed)
        self.step = self.checked = 0
        self.marks: dict[int, torch.Tensor] = {0: self.loss_sum.clone()}  # step -> loss sum after it
        self.wanted: set[int] = set()
        self.path, self.fallback_reason, self.fallbacks = "", "", 0
        self.graphed, self._capture_at, self._batches, self._call_start = None, None, None, 0
        self._setup(capturable=False)
        self.train_seconds = 0.0  # wall time of the steps() calls: the rate a caller sees
        self.step_seconds = 0.0  # time inside this training's own steps: what the time limit counts
        self._resumed = 0.0  # when the step now running was resumed
        if self.device.type == "cuda" and cfg.cudnn_benchmark is not None:
            torch.backends.cudnn.benchmark = cfg.cudnn_benchmark  # process-wide (docs/training.md)

    # -- public ---------------------------------------------------------------------------
    def steps(self, stop: int | None = None) -> Iterator[None]:
        stop = self.total if stop is None else min(stop, self.total)
        if not self.path:
            self.path, self.fallback_reason = choose_path(self.device.type, self.cfg, self.model,
                                                          steps=stop - self.step)
        started, self._call_start = time.perf_counter(), self.step
        self.model.train()
        self._resumed = started
        for _ in self._path_steps(stop):
            self.step_seconds += time.perf_counter() - self._resumed
            yield  # other candidates may step now: their time is theirs
            self._resumed = time.perf_counter()
        self.marks[self.step] = self.loss_sum.clone()
        now = time.perf_counter()
        self.step_seconds += now - self._resumed
        self.train_seconds += now - started  # the last step's check synced

    def run(self, stop: int | None = None) -> None:
        for _ in self.steps(stop):
            pass

    def mark(self, step: int) -> None:
        """Keep the loss sum after `step` steps, for mean_loss."""
        self.wanted.add(step)

    def mean_loss(self, start: int, stop: int) -> float:
        """Mean main-head loss of steps start..stop-1 (both marked, or 0 / a run's end)."""
        return ((self.marks[stop] - self.marks[start]) / max(stop - start, 1)).item()

    def close(self) -> None:
        """Wait for the graph's work, then drop it (and its pool); a later call makes a new one."""
        if self.graphed is not None:
            self.graphed.close()
            self.graphed, self._capture_at = None, None

    def state_dict(self) -> dict:
        """Everything to continue exactly: step, weights, optimizer state, RNG streams (CPU tensors)."""
        state = {"step": self.step, "model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
                 "optimizer": {i: {n: t.detach().cpu() for n, t in s.items() if isinstance(t, torch.Tensor)}
                               for i, s in self.optimizer.state_dict()["state"].items()},
                 "generator": self.generator.get_state(), "torch_rng": torch.get_rng_state(),
                 "loss_sum": self.loss_sum.detach().cpu().reshape(1)}
        if self.device.type == "cuda":
            state["cuda_rng"] = torch.cuda.get_rng_state(self.device)
        return state

    def load_state_dict(self, state: dict) -> None:
        self.close()  # a graph would hold the optimizer state tensors replaced below
        self.model.load_state_dict(state["model"])
        _load_optimizer_state(self.optimizer, state["optimizer"])
        self.generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        if "cuda_rng" in state and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["cuda_rng"], self.device)
        self.loss_sum.copy_(state["loss_sum"].reshape(()))  # later sums continue it: the same float rounding
        self.step = self.checked = state["step"]
        self.marks = {self.step: self.loss_sum.clone()}
        self._batches = None

    # -- the two paths --------------------------------------------------------------------
    def _path_steps(self, stop: int) -> Iterator[None]:
        if self.path != "graph":
            yield from self._eager(stop)
            return
        try:
            yield from self._graphed(stop)
        except CaptureError as err:
            if self.cfg.cuda_graph == "on":
                raise TrainingFailed(f"CUDA graph capture failed (cuda_graph='on'): {err}") from err
            self._fall_back(str(err))
            yield from self._eager(stop)

    def _setup(self, capturable: bool) -> torch.optim.Optimizer:
        self.optimizer = make_optimizer(self.model.parameters(), self.optimizer_name, self.peak, self.weight_decay,
                                        self.cfg, self.device, capturable=capturable)
        # autocast's weight cache must be off inside a captured step (docs/training.md)
        self.core = StepCore(self.model, self.optimizer, self.cfg, self.loss_sum, self.precision,
                             autocast_cache=not capturable)
        return self.optimizer

    def _batch_stream(self, stop: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Training batches for steps self.step..stop-1: whole epochs, then part of one. The
        stream continues across calls (an epoch is drawn when its first batch is needed)."""
        if self._batches is None:
            self._batches = self._all_batches()
        while self.step < stop:
            yield next(self._batches)

    def _all_batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        done = self.step
        while done < self.total:
            epoch_left = self.total - done
            for batch in self.data.batches(self.cfg.batch_size, self.generator, Augment.of(self.cfg),
                                           max_batches=epoch_left):
                done += 1
                yield batch

    def _eager(self, stop: int) -> Iterator[None]:
        for x, y in self._batch_stream(stop):
            self._before()
            self.core(x.contiguous(memory_format=self.memory_format), y)
            self._after(stop)
            yield

    def _graphed(self, stop: int) -> Iterator[None]:
        """Warm-up steps, capture, then replays. One graph per Trainer, kept across calls: a
        capture per call (per epoch) piled up pools and restarted the graph's RNG each time, so
        drop-path masks repeated epoch after epoch. Until the capture, each call keeps the state
        it began with, for _fall_back."""
        if self._capture_at is None or self.step <= self._capture_at:
            self._snapshot = self._save_for_fallback()
        if self.graphed is None:
            self._setup(capturable=True)
            _load_optimizer_state(self.optimizer, self._snapshot["optimizer"])
            images = self.data.images
            self.graphed = graphed_step(self.core, (self.batch, *images.shape[1:]), self.device, images.dtype,
                                        self.memory_format, keep=(self.model, self.optimizer, self.core),
                                        seed=derive_seed(self.seed, "graph", self.step), stream=self.stream)
            self._capture_at = self.step + self.cfg.warmup_steps_before_capture
        for batch in self._batch_stream(stop):
            self._before()
            if self.step < self._capture_at:
                self.graphed.run_eager(batch)
            else:
                if self.step == self._capture_at:
                    self.graphed.capture()
                self.graphed.replay(batch)
            self._after(stop)
            yield

    def _save_for_fallback(self) -> dict:
        saved = {"model": copy.deepcopy(self.model.state_dict()),
                 "optimizer": copy.deepcopy(self.optimizer.state_dict()["state"]),
                 "generator": self.generator.get_state(), "torch_rng": torch.get_rng_state(), "step": self.step,
                 "loss": self.loss_sum.clone(), "marks": dict(self.marks)}
        if self.device.type == "cuda":
            saved["cuda_rng"] = torch.cuda.get_rng_state(self.device)
        return saved

    def _fall_back(self, reason: str) -> None:
        """Discard the graph and restore the state this call began with: an eager run from there."""
        self.close()
        saved = self._snapshot
        self.model.load_state_dict(saved["model"])
        self.model.zero_grad(set_to_none=True)
        self._setup(capturable=False)
        _load_optimizer_state(self.optimizer, saved["optimizer"])
        self.generator.set_state(saved["generator"])
        torch.set_rng_state(saved["torch_rng"])
        if "cuda_rng" in saved:
            torch.cuda.set_rng_state(saved["cuda_rng"], self.device)
        self.loss_sum.copy_(saved["loss"])
        self.step = self.checked = saved["step"]
        self.marks, self._batches = saved["marks"], None
        self.path, self.fallback_reason = "eager", reason
        self.fallbacks += 1

    # -- around each step -----------------------------------------------------------------
    def _before(self) -> None:
        """Schedule values for this step, set in place outside the (captured) step."""
        step = self.step
        set_lr(self.optimizer, self.peak * lr_factor(step, self.total, self.cfg.schedule, self.cfg.warmup))
        if self.drop_path and (step % self.drop_every == 0 or step == self._call_start):
            self.model.drop_path_prob = self.drop_path * (step - step % self.drop_every) / self.total

    def _after(self, stop: int) -> None:
        """Every check_every steps and at `stop`: one host read for NaN, then the time limit."""
        self.step = done = self.step + 1
        if done in self.wanted:
            self.marks[done] = self.loss_sum.clone()
        if done % self.check_every and done != stop:
            return
        if not math.isfinite(self.loss_sum.item()):  # a host sync on CUDA
            where = f"at step {done}" if done - self.checked == 1 else f"in steps {self.checked + 1}-{done}"
            raise TrainingFailed(f"nan/inf loss {where}", steps=done)
        self.checked = done
        limit = self.cfg.time_limit
        if limit and self.step_seconds + time.perf_counter() - self._resumed > limit:
            raise TrainingFailed(f"time limit {limit:g}s exceeded after {done} steps", steps=done)


def _load_optimizer_state(optimizer: torch.optim.Optimizer, state: dict) -> None:
    """Per-parameter state (momentum buffers, Adam moments) into an optimizer, each tensor in
    its parameter's memory format and device (fused CUDA kernels want equal strides). The
    param groups stay the optimizer's own: they follow from the config; lr is set every step."""
    if not state:
        return
    params = [p for group in optimizer.param_groups for p in group["params"]]
    capturable = optimizer.defaults.get("capturable", False)  # then step counts live on the device too
    shaped = {}
    for index, entries in state.items():
        p = params[int(index)]
        shaped[int(index)] = {name: _like(p, t) if t.shape == p.shape else t.to(p.device if capturable else "cpu")
                              for name, t in entries.items()}
    optimizer.load_state_dict({"state": shaped, "param_groups": optimizer.state_dict()["param_groups"]})


def _like(param: torch.Tensor, tensor: torch.Tensor) -> torch.Tensor:
    out = torch.empty_like(param, dtype=tensor.dtype)
    out.copy_(tensor)
    return out


# ---------------------------------------------------------------- measuring

@torch.no_grad()
def recalibrate_bn(model: nn.Module, data: DeviceData, images: int, batch_size: int, precision: str = "fp32",
                   memory_format: torch.memory_format = torch.contiguous_format) -> None:
    """Recompute every BatchNorm's running mean/var as the plain average over the first
    `images` training images (no augmentation), with everything else in eval mode."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    if not norms or images <= 0:
        return
    model.eval()
    saved = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches below
        m.train()
    seen = 0
    for x, _ in data.eval_batches(batch_size):
        with autocast(data.device.type, precision):
            model(x[: images - seen].contiguous(memory_format=memory_format))
        seen += min(len(x), images - seen)
        if seen >= images:
            break
    for m, momentum in zip(norms, saved):
        m.momentum = momentum
    model.eval()


@torch.no_grad()
def evaluate(model: nn.Module, data: DeviceData, batch_size: int = 1024, precision: str = "fp32",
             memory_format: torch.memory_format = torch.contiguous_format) -> float:
    """Fraction of `data` the model classifies correctly, in eval mode (left so)."""
    model.eval()
    correct = torch.zeros((), dtype=torch.long, device=data.device)
    for x, y in data.eval_batches(batch_size):
        with autocast(data.device.type, precision):
            out = model(x.contiguous(memory_format=memory_format))
        logits = out[0] if isinstance(out, (tuple, list)) else out
        correct += (logits.argmax(dim=1) == y).sum()
    return correct.item() / len(data)


# ---------------------------------------------------------------- a proxy training

@dataclass(frozen=True)
class TrainResult:
    """What one proxy training produced. Rates are per second of the training phase."""

    val_accuracy: float  # fraction of the whole validation split classified correctly
    train_loss: float  # mean main-head loss over the last TAIL_FRACTION of the steps
    epochs: float  # epochs actually trained (steps / batches per epoch)
    steps: int  # optimizer steps, warm-up steps included
    path: str  # "graph" or "eager"
    fallback_reason: str  # why a CUDA run did not use a graph; "" if it did, or not CUDA
    wall_time: float  # seconds for the whole call: setup, warm-up, capture, training, evaluation
    images_per_s: float  # training images / seconds from the first step to the last one's end
    precision: str  # "bf16" or "fp32"
    optimizer: str  # the optimizer that ran (after hparams)
    lr: float  # the peak learning rate used (after hparams and batch scaling)


def proxy_training(model: nn.Module, train_data: DeviceData, val_data: DeviceData, cfg: TrainConfig, device,
                   seed: int, hparams=None, stream: torch.cuda.Stream | None = None
                   ) -> Generator[tuple[int, int], None, TrainResult]:
    """Train `model` briefly, recompute its BatchNorm statistics, measure it on all of
    val_data: one item per training step ((steps done, steps), for progress), the TrainResult
    as the return value. With a
    `stream`, each next() must run with that stream current. The model is left on `device`,
    in eval mode. Raises TrainingFailed."""
    trainer = Trainer(model, train_data, cfg, device, seed, hparams=hparams, stream=stream)
    _check_devices(trainer.device, train_data, val_data)
    tail = trainer.total - max(1, math.ceil(TAIL_FRACTION * trainer.total))
    trainer.mark(tail)
    try:
        for _ in trainer.steps():
            yield trainer.step, trainer.total
    finally:
        trainer.close()
    loss = trainer.mean_loss(tail, trainer.total)
    model.zero_grad(set_to_none=True)
    recalibrate_bn(model, train_data, cfg.bn_recalibration, cfg.eval_batch_size, trainer.precision,
                   trainer.memory_format)
    accuracy = evaluate(model, val_data, cfg.eval_batch_size, trainer.precision, trainer.memory_format)
    return TrainResult(
        val_accuracy=accuracy, train_loss=loss, epochs=trainer.total / trainer.per_epoch, steps=trainer.total,
        path=trainer.path, fallback_reason=trainer.fallback_reason if trainer.device.type == "cuda" else "",
        wall_time=time.perf_counter() - trainer.start, images_per_s=trainer.total * trainer.batch
        / max(trainer.train_seconds, 1e-9), precision=trainer.precision, optimizer=trainer.optimizer_name,
        lr=trainer.peak)


def train(model: nn.Module, train_data: DeviceData, val_data: DeviceData, cfg: TrainConfig, device, seed: int,
          hparams=None) -> TrainResult:
    """proxy_training in one call (on `device`'s CUDA context where it is a GPU)."""
    device = torch_device(device)
    guard = torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext()
    with guard:
        return run_to_end(proxy_training(model, train_data, val_data, cfg, device, seed, hparams))


def run_to_end(steps: Generator):
    """Run a step generator to its end; its return value."""
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value


def _check_devices(device: torch.device, *datas: DeviceData) -> None:
    for data in datas:
        where = torch_device(data.device) if data.device.type == "cuda" else data.device
        if where != device:
            raise ValueError(f"train: data is on {data.device} but training is on {device}")
