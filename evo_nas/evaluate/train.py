"""Train any nn.Module on device-resident data, the whole step as one CUDA graph where possible.

`train` knows nothing of genomes: it takes a built model, a DeviceData per split and a
TrainConfig, and returns a TrainResult. A candidate that cannot train (NaN loss, time limit)
raises TrainingFailure, which the evaluator records; anything else propagates.

Decisions, and why:

- Learning rate. `lr` is the peak rate for a reference batch of 256 and is scaled linearly with
  the batch actually used (Goyal et al. 2017): peak = lr * batch / 256. The rule is derived for
  SGD; for Adam and RMSprop it is only a heuristic. A genome's `hparams.lr` means the same thing.
- Schedule "onecycle": linear warm-up over `warmup` of the steps, then linear decay to ~0 at
  the last step. Under a fixed small budget a linear decay to zero beats step and cosine
  schedules (Li, Yumer & Ramanan, "Budgeted training", ICLR 2020), and airbench's one-cycle
  does the same. The rate is never exactly 0: warm-up starts at peak/W and the last step gets
  peak/(steps after warm-up), so Adam's capturable update (which divides by lr) stays finite.
- NaN and time checks every CHECK_EVERY_CUDA = 50 steps on CUDA: the losses are summed into a
  device scalar inside the step (a NaN or inf stays in the sum for good) and read, with one
  host sync, only then; at 10-20 ms a step that is one sync per ~1 s, a NaN found at most 50
  steps late and a time limit overshot by at most 50 steps. On the CPU reading the sum costs
  nothing, so both are checked every step.
- `train_loss` is the mean label-smoothed cross-entropy of the main head over the last 10% of
  the steps (at least one): the loss of the final weights rather than the whole run's average,
  and defined the same way for fractional and multi-epoch runs.
- Determinism: `train` reseeds the global torch RNG with `seed` at its start (dropout, drop
  path) and draws the data order and augmentation from a CPU torch.Generator seeded with
  `seed`, so the batches are the same on any device. The caller seeds the model's init. On
  the CPU a seed gives bit-identical results run after run (at a fixed thread count).

The CUDA-graph path (CUDA only):
- The whole step (zero_grad(set_to_none) -> forward under bf16 autocast -> loss -> backward ->
  foreach grad clipping -> optimizer step -> loss sum) is captured as one torch.cuda.CUDAGraph
  after `warmup_steps_before_capture` eager steps on the graph's own stream, as in the PyTorch
  docs' whole-network capture. Each replay first `copy_`s the next batch into static input
  buffers. The step holds no host sync: the warm-up steps run with
  torch.cuda.set_sync_debug_mode("error"), so a model that syncs (`.item()` in forward) is
  found before capture starts and trains eagerly instead, without a failed capture.
- Learning rate under replay: one float32 device tensor, refilled in place before each step.
  What torch accepts under capture (read in the 2.4.1 and 2.13 sources):
    * SGD: the foreach path turns a tensor lr into a Python scalar (`alpha=-lr`, a host sync),
      so it cannot be captured with a changing lr; `fused=True` (CUDA; there in 2.4) has a
      tensor-lr kernel (`_fused_sgd_` overload) and no sync, so CUDA runs use fused SGD.
    * Adam and RMSprop: `capturable=True, foreach=True` accept a tensor lr (torch 2.4 handles
      it explicitly in their capturable foreach code; Adam divides by it, hence the lr > 0 rule).
  Weight decay is a constant per run, so a float captured into the graph is right. The eager
  path uses plain float rates (fused SGD, foreach Adam/RMSprop), no capturable overhead.
  Fused kernels refuse a grad whose strides differ from its parameter's, which autograd
  allows on size-1 dims; align_grads gives such grads the parameter's strides (a free view).
- Drop path and dropout inside the graph draw from the default CUDA generator, whose state
  during capture is the GraphedStep's own (below); capture registers that state, and every
  replay advances its Philox offset, so each replay draws new masks. Drop-path annealing
  reaches the graph only if the model keeps the probability in a device tensor it updates in
  place (evo_nas.ops.DropPath does); a model that applies drop path with a Python float must
  say `graph_safe = False`.
- Fallback: if the warm-up finds a sync or the capture raises (including out of memory: a
  graph's private pool cannot reuse the eager pool, so capture needs more memory than eager),
  the graph is discarded, the model's state_dict (cloned before the warm-up) is loaded back,
  the optimizer is rebuilt, the RNGs are reseeded, and the run restarts eagerly from step 0:
  the fallback run is exactly an eager run. path="eager" and fallback_reason say so.
  cuda_graph="on" turns that into a TrainingFailure. The sync check is process-wide while a
  warm-up step runs: a threaded worker must not warm up while another thread syncs.

GraphedStep is built so that a later worker can hold several candidates in one process and
replay them interleaved on several streams. Replaying two graphs on two streams has been seen
to hit an illegal memory access once a second graph was captured (performance-notes.md); each
GraphedStep therefore owns everything that two graphs could otherwise share:
- its own memory pool (torch.cuda.graph_pool_handle()): a shared pool is only safe when graphs
  replay in capture order on one stream; concurrent replays would overwrite each other's
  intermediates.
- its own capture stream (torch.cuda.graph's default is one side stream for all graphs): cuBLAS
  keeps a workspace per (handle, stream), and a graph bakes in the workspace of the stream it
  was captured on, so two graphs captured on one stream and replayed concurrently would share
  scratch memory. The warm-up runs on the same stream, so that workspace is allocated before
  capture, from the ordinary pool, and lives as long as the process. torch.cuda.Stream() hands
  out 32 pool streams per device round-robin: a worker holding more live GraphedSteps than
  that should pass its own streams.
- its own CUDA RNG state: replay refills the seed/offset tensors of every generator state the
  graph captured, on the replay stream; graphs that share the default state share those
  tensors and race on them. Each GraphedStep clones a state (Generator.clone_state, seeded
  with its seed) and installs it as the default generator's state (graphsafe_set_state) while
  it warms up and captures; the graph then carries that state for all its replays.
- its own references: the step closure (model, optimizer and its state, loss sum, lr tensor)
  and the static inputs are kept until close(), which synchronizes the streams it used before
  dropping the graph.
- autocast's weight-cast cache is off inside the captured step: cached bf16 copies made
  outside the graph would be freed when the autocast region exits, under a graph still
  reading them. Such memory, which a graph reads but the allocator thinks free, is the likely
  cause of the illegal access seen before: torch.cuda.graph empties the allocator's cache
  before each capture, so a second capture hands it back to the driver.
A capture that CUDA itself invalidated (a sync inside it) leaves torch's allocator routing
allocations to the graph's pool and the capture stream current; capture() restores the stream,
and discard_capture ends the routing and releases the pool through torch's private hooks
(names checked for 2.4 and 2.13), and keeps the failed CUDAGraph object alive, because torch
may still hold raw pointers to it. The failed capture's RNG state was the step's own, so the
default generator is left as it was.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import math
import time
import warnings
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from evo_nas.errors import ConfigError
from evo_nas.evaluate.device_data import DeviceData

REFERENCE_BATCH = 256  # cfg.lr is the peak rate at this batch size
CHECK_EVERY_CUDA = 50  # steps between host reads of the loss sum (NaN) and the clock, on CUDA
TAIL_FRACTION = 0.1  # train_loss averages this last fraction of the steps
DROP_PATH_UPDATES = 100  # drop-path probability is refreshed this many times over a run
OPTIMIZERS = ("sgd", "rmsprop", "adam")
SCHEDULES = ("onecycle", "cosine", "constant")


@dataclass(frozen=True)
class TrainConfig:
    """How a candidate is trained. Defaults: a short proxy training, airbench/DARTS-style."""

    epochs: float = 1.0  # a fraction trains that fraction of one epoch's batches
    batch_size: int = 256  # large enough to keep a GPU busy, small enough for 1-epoch proxies
    lr: float = 0.2  # peak SGD rate at batch 256, scaled linearly with the batch (see module doc)
    momentum: float = 0.9  # SGD and RMSprop momentum; the usual value for CNNs
    nesterov: bool = True  # SGD only; as airbench, a little faster to converge than plain
    weight_decay: float = 5e-4  # 5e-4 is the CIFAR ResNet value; DARTS uses 3e-4
    label_smoothing: float = 0.1  # as airbench: better calibrated, more accurate short runs
    optimizer: str = "sgd"  # also "rmsprop", "adam"; a genome's hparams override it
    schedule: str = "onecycle"  # linear warm-up, linear decay to ~0; "cosine", "constant"
    warmup: float = 0.2  # fraction of the steps spent warming up (airbench ~0.23)
    grad_clip: float | None = 5.0  # global grad-norm clip, as DARTS; None turns it off
    precision: str = "auto"  # auto: bf16 autocast on CUDA, fp32 on the CPU; "bf16", "fp32"
    # auto: on. Faster convs under bf16 on CUDA, and on the CPU too: a 3-cell net (C=8) trained
    # at 196 images/s channels_last vs 137 contiguous (2 cores, torch 2.13, batch 64, n=1).
    channels_last: str | bool = "auto"
    cuda_graph: str = "auto"  # auto: capture on CUDA, eager if capture fails; "on" fails; "off"
    warmup_steps_before_capture: int = 3  # eager steps before capture, as the PyTorch docs
    time_limit: float = 0.0  # seconds from the call to the end of training (not eval); 0: none
    augment: bool = True  # random crop + mirror, done on the device by DeviceData
    eval_batch_size: int = 1024  # no gradients: a larger batch is just faster
    aux_weight: float = 0.4  # DARTS' auxiliary-head weight, when the model returns (logits, aux)
    drop_path: float = 0.0  # max drop-path prob, annealed from 0 (DARTS: 0.2); 0 leaves the model's own
    # BatchNorm running statistics after a short training lag far behind the weights (their
    # momentum 0.1 averages over the last ~10 steps of a moving target): a 1-epoch proxy on
    # 1,500 images validated at 16% with them and 58% with statistics recomputed on this
    # many training images after training (measured on the CPU proxy, n=2). 0: off.
    bn_recalibration: int = 2048

    def __post_init__(self):
        checks = [
            (self.epochs > 0, "epochs must be > 0"),
            (self.batch_size >= 1, "batch_size must be >= 1"),
            (self.lr > 0, "lr must be > 0"),
            (self.momentum >= 0, "momentum must be >= 0"),
            (self.weight_decay >= 0, "weight_decay must be >= 0"),
            (0 <= self.label_smoothing < 1, "label_smoothing must be in [0, 1)"),
            (self.optimizer in OPTIMIZERS, f"optimizer must be one of {', '.join(OPTIMIZERS)}"),
            (self.schedule in SCHEDULES, f"schedule must be one of {', '.join(SCHEDULES)}"),
            (0 <= self.warmup < 1, "warmup must be in [0, 1)"),
            (self.grad_clip is None or self.grad_clip > 0, "grad_clip must be > 0 or None"),
            (self.precision in ("auto", "bf16", "fp32"), "precision must be auto, bf16 or fp32"),
            (self.channels_last in ("auto", True, False), "channels_last must be auto, true or false"),
            (self.cuda_graph in ("auto", "on", "off"), "cuda_graph must be auto, on or off"),
            (self.warmup_steps_before_capture >= 1,
             "warmup_steps_before_capture must be >= 1 (optimizer state must exist before capture)"),
            (self.time_limit >= 0, "time_limit must be >= 0"),
            (self.eval_batch_size >= 1, "eval_batch_size must be >= 1"),
            (self.aux_weight >= 0, "aux_weight must be >= 0"),
            (0 <= self.drop_path < 1, "drop_path must be in [0, 1)"),
            (self.bn_recalibration >= 0, "bn_recalibration must be >= 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(f"train config: {message}")


@dataclass(frozen=True)
class TrainResult:
    """What one training produced. Rates are per second of the training phase."""

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


class TrainingFailure(Exception):
    """The candidate could not be trained; `reason` is one short line for the record."""

    def __init__(self, reason: str, steps: int | None = None):
        super().__init__(reason)
        self.reason = reason
        self.steps = steps

    def __reduce__(self):  # keep `steps` when a worker process sends the failure back
        return type(self), (self.reason, self.steps)


class CaptureError(RuntimeError):
    """The step could not be captured as a CUDA graph; train eagerly instead."""


# ---------------------------------------------------------------- pure helpers

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


def choose_path(device_type: str, cfg: TrainConfig, model: nn.Module,
                steps: int | None = None) -> tuple[str, str]:
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
        # fused: the only SGD path with a sync-free tensor lr (see module doc)
        return torch.optim.SGD(params, lr=rate, momentum=cfg.momentum, weight_decay=weight_decay,
                               nesterov=cfg.nesterov and cfg.momentum > 0, fused=True if cuda else None)
    if name == "adam":
        return torch.optim.Adam(params, lr=rate, weight_decay=weight_decay, foreach=foreach,
                                capturable=capturable)
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


def resolve_precision(cfg: TrainConfig, device: torch.device) -> str:
    """"bf16" or "fp32" for this device."""
    if cfg.precision != "auto":
        return cfg.precision
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return "bf16"
    return "fp32"


def _autocast(device_type: str, precision: str, cache: bool = True):
    if precision != "bf16":
        return contextlib.nullcontext()
    return torch.autocast(device_type, dtype=torch.bfloat16, cache_enabled=cache)


def _one_line(err: BaseException, limit: int = 200) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= limit else text[:limit - 3] + "..."


# ---------------------------------------------------------------- one step

def align_grads(params: Sequence[torch.Tensor]) -> None:
    """Give each grad its parameter's strides, without a copy.

    Autograd keeps a grad whose strides differ from the parameter's only on size-1 dims (a
    channels_last (C, 1, k, k) depthwise weight with a contiguous grad, say): the same memory
    layout, but fused optimizers check strides and refuse (torch 2.4 `_fused_sgd_`), and
    foreach ops take their slow path. A view with the parameter's strides is exact. At capture
    this runs once; the graph then writes the same memory."""
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
        with _autocast(self.device_type, self.precision, self.autocast_cache):
            out = self.model(x)
            logits, aux = out if isinstance(out, (tuple, list)) else (out, None)
            loss = F.cross_entropy(logits, y, label_smoothing=cfg.label_smoothing)
            total = loss
            if aux is not None and cfg.aux_weight > 0:
                total = loss + cfg.aux_weight * F.cross_entropy(aux, y, label_smoothing=cfg.label_smoothing)
        total.backward()
        if self.device_type == "cuda":
            align_grads(self.params)
        if cfg.grad_clip is not None:
            nn.utils.clip_grad_norm_(self.params, cfg.grad_clip, foreach=self.foreach)
        self.optimizer.step()
        self.loss_sum.add_(loss.detach().float())


# ---------------------------------------------------------------- the captured step

_UNENDED_CAPTURES: list = []  # failed CUDAGraphs torch may still point at; see discard_capture


@contextlib.contextmanager
def _syncs_are_errors():
    """Make torch raise on any host-device sync (process-wide, for the duration)."""
    old = torch.cuda.get_sync_debug_mode()
    torch.cuda.set_sync_debug_mode("error")
    try:
        yield
    finally:
        torch.cuda.set_sync_debug_mode(old)


def _private_rng(device: torch.device, seed: int | None):
    """A CUDA generator state of our own (seeded), or None where torch lacks graph-safe states."""
    default = torch.cuda.default_generators[device.index]
    try:
        state = default.clone_state()
        if seed is not None:
            state.manual_seed(seed)
        return state
    except (AttributeError, RuntimeError):
        return None


def discard_capture(graph, device: torch.device, pool) -> None:
    """Free what a failed capture left behind. If capture_end never finished, torch's allocator
    still routes allocations to `pool`: end that and release the pool (private hooks, best
    effort), and keep the graph object alive, since torch may hold raw pointers to it."""
    try:
        graph.pool()  # raises unless capture_end finished; then reset() releases the pool
    except RuntimeError:
        end = (getattr(torch._C, "_cuda_endAllocateToPool", None)  # its name in newer torch
               or getattr(torch._C, "_cuda_endAllocateCurrentStreamToPool", None))  # in 2.4
        try:
            if end is not None:
                end(device.index, pool)
                torch._C._cuda_releasePool(device.index, pool)
        except RuntimeError:
            pass  # capture_end had ended the routing before it failed
        _UNENDED_CAPTURES.append(graph)
    try:
        graph.reset()
    except RuntimeError:
        pass


class GraphedStep:
    """One training step as one CUDA graph, with its own stream, memory pool and RNG state.

    `step()` reads `inputs` (static buffers) and does the whole step; `keep` holds whatever
    it writes (model, optimizer, accumulators) alive as long as the graph. Use: run_eager()
    a few times (the warm-up), capture(), then replay() per step; close() at the end.
    Replay a GraphedStep on one stream at a time; different GraphedSteps may replay on
    different streams concurrently.
    """

    def __init__(self, step: Callable[[], None], inputs: Sequence[torch.Tensor], *, keep: Sequence = (),
                 seed: int | None = None, stream: torch.cuda.Stream | None = None,
                 capture_error_mode: str = "global"):
        self.device = inputs[0].device
        self.step, self.inputs, self.keep = step, tuple(inputs), tuple(keep)
        self.stream = stream if stream is not None else torch.cuda.Stream(self.device)
        self.pool = torch.cuda.graph_pool_handle()
        self.rng = _private_rng(self.device, seed)
        self.capture_error_mode = capture_error_mode
        self.graph: torch.cuda.CUDAGraph | None = None
        self._replay_streams: set = set()

    @contextlib.contextmanager
    def _own_rng(self):
        """The default CUDA generator uses this step's state while the step warms up or is
        captured; capture registers that state with the graph for all its replays."""
        if self.rng is None:
            yield
            return
        default = torch.cuda.default_generators[self.device.index]
        saved = default.graphsafe_get_state()
        default.graphsafe_set_state(self.rng)
        try:
            yield
        finally:
            default.graphsafe_set_state(saved)

    def _load(self, batch: Sequence[torch.Tensor], stream: torch.cuda.Stream) -> None:
        """Copy batch into the static inputs on `stream`, which must already wait for the
        stream the batch was made on; record_stream keeps its memory until the copy is done."""
        for static, value in zip(self.inputs, batch):
            static.copy_(value, non_blocking=True)
            value.record_stream(stream)

    def run_eager(self, batch: Sequence[torch.Tensor]) -> None:
        """One eager step on this step's stream (the warm-up). Raises CaptureError if the step
        syncs with the host, which would make capture fail."""
        if self.graph is not None:
            raise RuntimeError("run_eager after capture: the graph owns the step now")
        caller = torch.cuda.current_stream(self.device)
        self.stream.wait_stream(caller)
        with torch.cuda.stream(self.stream), self._own_rng(), warnings.catch_warnings():
            # capturable optimizers warn when they step outside a capture; that is the point here
            warnings.filterwarnings("ignore", message=".*capturable=True.*")
            self._load(batch, self.stream)
            try:
                with _syncs_are_errors():
                    self.step()
            except RuntimeError as err:
                if "synchroniz" in str(err):
                    raise CaptureError(f"the step syncs with the host ({_one_line(err)})") from err
                raise
        caller.wait_stream(self.stream)

    def capture(self) -> None:
        """Capture step() into this step's graph; on any failure discard it, raise CaptureError."""
        graph = torch.cuda.CUDAGraph()
        caller = torch.cuda.current_stream(self.device)
        try:
            with self._own_rng(), torch.cuda.graph(graph, pool=self.pool, stream=self.stream,
                                                   capture_error_mode=self.capture_error_mode):
                self.step()
        except Exception as err:  # any failure: no graph, train eagerly
            # torch.cuda.graph leaves its stream current when capture_begin/_end raise
            torch.cuda.set_stream(caller)
            discard_capture(graph, self.device, self.pool)
            if isinstance(err, torch.cuda.OutOfMemoryError):
                torch.cuda.empty_cache()
                raise CaptureError(f"capture ran out of memory ({_one_line(err)})") from err
            raise CaptureError(f"capture failed ({_one_line(err)})") from err
        self.graph = graph

    def replay(self, batch: Sequence[torch.Tensor] | None = None,
               stream: torch.cuda.Stream | None = None) -> None:
        """Copy batch (if given) into the inputs and replay, on `stream` (default: current).
        The replay stream first waits for the current stream, where the batch was made."""
        caller = torch.cuda.current_stream(self.device)
        stream = caller if stream is None else stream
        if stream != caller:
            stream.wait_stream(caller)
        self._replay_streams.add(stream)
        with torch.cuda.stream(stream):
            if batch is not None:
                self._load(batch, stream)
            self.graph.replay()

    def close(self) -> None:
        """Wait for this step's work, then drop the graph (and its pool) and the references."""
        for stream in (self.stream, *self._replay_streams):
            stream.synchronize()
        if self.graph is not None:
            self.graph.reset()
        self.graph, self.step, self.inputs, self.keep = None, None, (), ()
        self._replay_streams = set()


def graphed_step(core: StepCore, batch_shape: Sequence[int], dtype: torch.dtype = torch.float32,
                 memory_format: torch.memory_format = torch.channels_last, seed: int | None = None,
                 stream: torch.cuda.Stream | None = None) -> GraphedStep:
    """A GraphedStep running `core` (built with autocast_cache=False) on static buffers for
    images of `batch_shape` (B, C, H, W) and their B labels. Keeps core's model and optimizer."""
    device = core.loss_sum.device
    x = torch.empty(tuple(batch_shape), dtype=dtype, device=device, memory_format=memory_format)
    y = torch.empty(batch_shape[0], dtype=torch.long, device=device)
    return GraphedStep(functools.partial(core, x, y), (x, y), keep=(core.model, core.optimizer, core),
                       seed=seed, stream=stream)


# ---------------------------------------------------------------- the training run

def _batches(data: DeviceData, batch_size: int, generator: torch.Generator, augment: bool,
             total: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """`total` training batches: whole epochs, then part of one."""
    done = 0
    while done < total:
        for batch in data.batches(batch_size, generator, augment, max_batches=total - done):
            done += 1
            yield batch


def _resolve_device(device) -> torch.device:
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    return device


class _Run:
    """The state of one training: schedule, accumulators, checks, and the two paths."""

    def __init__(self, model: nn.Module, data: DeviceData, cfg: TrainConfig, device: torch.device,
                 seed: int, hparams, start: float):
        self.model, self.data, self.cfg, self.device, self.seed = model, data, cfg, device, seed
        self.start = start
        self.optimizer_name, lr, self.weight_decay = resolve_hparams(cfg, hparams)
        self.batch = min(cfg.batch_size, len(data))
        self.per_epoch = data.num_batches(cfg.batch_size)
        self.total = max(1, math.floor(cfg.epochs * self.per_epoch + 0.5))
        self.peak = scaled_lr(lr, self.batch)
        self.precision = resolve_precision(cfg, device)
        last = cfg.channels_last if cfg.channels_last != "auto" else True
        self.memory_format = torch.channels_last if last else torch.contiguous_format
        self.check_every = CHECK_EVERY_CUDA if device.type == "cuda" else 1
        self.tail_start = self.total - max(1, math.ceil(TAIL_FRACTION * self.total))
        self.drop_every = max(1, self.total // DROP_PATH_UPDATES)
        self.anneal = cfg.drop_path > 0 and hasattr(model, "drop_path_prob")
        model.to(device, memory_format=self.memory_format)
        self._check_drop_path()
        self.loss_sum = torch.zeros((), device=device)
        self.generator = torch.Generator()
        self.reseed()

    def reseed(self) -> None:
        """Global RNG (dropout, drop path) and data RNG back to the seed; zero the sums."""
        torch.manual_seed(self.seed)
        self.generator.manual_seed(self.seed)
        self.loss_sum.zero_()
        self.tail_base = None
        self.checked = 0

    def _check_drop_path(self) -> None:
        if not self.anneal:
            return
        try:
            self.model.drop_path_prob = self.cfg.drop_path
            self.model.drop_path_prob = 0.0
        except ValueError as err:
            raise ConfigError(f"train config drop_path={self.cfg.drop_path}: {err}") from err

    def batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return _batches(self.data, self.cfg.batch_size, self.generator, self.cfg.augment, self.total)

    def before(self, step: int, optimizer: torch.optim.Optimizer) -> None:
        """Schedule values for `step`, set in place outside the (captured) step."""
        set_lr(optimizer, self.peak * lr_factor(step, self.total, self.cfg.schedule, self.cfg.warmup))
        if self.anneal and step % self.drop_every == 0:
            self.model.drop_path_prob = self.cfg.drop_path * step / self.total
        if step == self.tail_start:
            self.tail_base = self.loss_sum.clone()

    def after(self, step: int) -> None:
        """Every check_every steps and after the last: one host read for NaN and the clock."""
        done = step + 1
        if done % self.check_every and done != self.total:
            return
        if not math.isfinite(self.loss_sum.item()):  # a host sync on CUDA
            where = f"at step {done}" if done - self.checked == 1 else f"in steps {self.checked + 1}-{done}"
            raise TrainingFailure(f"nan/inf loss {where}", steps=done)
        self.checked = done
        limit = self.cfg.time_limit
        if limit and time.perf_counter() - self.start > limit:
            raise TrainingFailure(f"time limit {limit:g}s exceeded after {done} steps", steps=done)

    def train_loss(self) -> float:
        count = self.total - self.tail_start
        return ((self.loss_sum - self.tail_base) / count).item()

    def make_optimizer(self, capturable: bool) -> torch.optim.Optimizer:
        return make_optimizer(self.model.parameters(), self.optimizer_name, self.peak, self.weight_decay,
                              self.cfg, self.device, capturable=capturable)

    def eager_steps(self) -> Iterator[None]:
        """Train eagerly, one optimizer step per item."""
        self.model.train()
        optimizer = self.make_optimizer(capturable=False)
        core = StepCore(self.model, optimizer, self.cfg, self.loss_sum, self.precision)
        for step, (x, y) in enumerate(self.batches()):
            self.before(step, optimizer)
            core(x.contiguous(memory_format=self.memory_format), y)
            self.after(step)
            yield

    def graphed_steps(self, stream: torch.cuda.Stream | None = None) -> Generator[None, None, str]:
        """Warm up, capture, replay, one step per item; returns "" or, after falling back to
        eager (restarted from the initial weights), the reason."""
        snapshot = copy.deepcopy(self.model.state_dict())  # to restart from if capture fails
        self.model.train()
        optimizer = self.make_optimizer(capturable=True)
        core = StepCore(self.model, optimizer, self.cfg, self.loss_sum, self.precision, autocast_cache=False)
        images = self.data.images
        graphed = graphed_step(core, (self.batch, *images.shape[1:]), images.dtype, self.memory_format, self.seed,
                               stream=stream)
        try:
            yield from self._warm_up_and_replay(graphed, optimizer)
            return ""
        except CaptureError as err:
            if self.cfg.cuda_graph == "on":
                raise TrainingFailure(f"CUDA graph capture failed (cuda_graph='on'): {err}") from err
            reason = str(err)
        finally:
            graphed.close()
        del graphed, core, optimizer
        self.model.load_state_dict(snapshot)
        self.model.zero_grad(set_to_none=True)
        self.reseed()
        yield from self.eager_steps()
        return reason

    def _warm_up_and_replay(self, graphed: GraphedStep, optimizer: torch.optim.Optimizer) -> Iterator[None]:
        warm = self.cfg.warmup_steps_before_capture
        for step, batch in enumerate(self.batches()):
            self.before(step, optimizer)
            if step < warm:
                graphed.run_eager(batch)
            else:
                if step == warm:
                    graphed.capture()
                graphed.replay(batch)
            self.after(step)
            yield


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
        with _autocast(data.device.type, precision):
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
        with _autocast(data.device.type, precision):
            out = model(x.contiguous(memory_format=memory_format))
        logits = out[0] if isinstance(out, (tuple, list)) else out
        correct += (logits.argmax(dim=1) == y).sum()
    return correct.item() / len(data)


def _check_devices(device: torch.device, *datas: DeviceData) -> None:
    for data in datas:
        where = _resolve_device(data.device) if data.device.type == "cuda" else data.device
        if where != device:
            raise ValueError(f"train: data is on {data.device} but training is on {device}")


class Training:
    """One training as a sequence of steps, so that a worker can interleave several candidates
    on one GPU: each on its own CUDA stream, with its own graph, pool and RNG state.

    Drive it as `for _ in t.steps(): ...` then `t.result()`. With a `stream`, every call into
    it (each `next()` of steps() and result()) must run with that stream current
    (`torch.cuda.stream(stream)`): batches, schedule updates, replays and checks then stay in
    order on it, and nothing waits on another candidate's stream. The global torch RNG is
    reseeded at the start; interleaved *eager* candidates share it (their dropout draws then
    depend on the interleaving) — graphed ones have private RNG states.
    """

    def __init__(self, model: nn.Module, train_data: DeviceData, val_data: DeviceData, cfg: TrainConfig,
                 device, seed: int, hparams=None, stream: torch.cuda.Stream | None = None):
        self.start = time.perf_counter()
        self.device = _resolve_device(device)
        _check_devices(self.device, train_data, val_data)
        self.model, self.train_data, self.val_data, self.cfg, self.stream = model, train_data, val_data, cfg, stream
        self.run = _Run(model, train_data, cfg, self.device, seed, hparams, self.start)
        self.path, self.reason = choose_path(self.device.type, cfg, model, steps=self.run.total)
        self.train_seconds = 0.0

    def steps(self) -> Iterator[None]:
        train_start = time.perf_counter()
        if self.path == "graph":
            self.reason = yield from self.run.graphed_steps(self.stream)
            self.path = "eager" if self.reason else "graph"
        else:
            yield from self.run.eager_steps()
        self.train_seconds = time.perf_counter() - train_start  # the last step's check synced

    def result(self) -> TrainResult:
        run, cfg, model = self.run, self.cfg, self.model
        loss = run.train_loss()
        model.zero_grad(set_to_none=True)
        recalibrate_bn(model, self.train_data, cfg.bn_recalibration, cfg.eval_batch_size, run.precision,
                       run.memory_format)
        accuracy = evaluate(model, self.val_data, cfg.eval_batch_size, run.precision, run.memory_format)
        return TrainResult(
            val_accuracy=accuracy, train_loss=loss, epochs=run.total / run.per_epoch, steps=run.total,
            path=self.path, fallback_reason=self.reason if self.device.type == "cuda" else "",
            wall_time=time.perf_counter() - self.start,
            images_per_s=run.total * run.batch / max(self.train_seconds, 1e-9),
            precision=run.precision, optimizer=run.optimizer_name, lr=run.peak)


def train(model: nn.Module, train_data: DeviceData, val_data: DeviceData, cfg: TrainConfig,
          device, seed: int, hparams=None) -> TrainResult:
    """Train `model` on train_data, then measure it on all of val_data.

    Reseeds the global torch RNG with `seed` first (dropout, drop path are then reproducible);
    the caller seeds the model's init. `hparams` (lr, weight_decay, optimizer, dropout)
    overrides cfg's lr, weight decay and optimizer; dropout is the builder's. The model is
    moved to `device` (channels_last where configured) and left there in eval mode.
    Raises TrainingFailure on a NaN/inf loss or when cfg.time_limit passes.
    """
    device = _resolve_device(device)
    guard = torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext()
    with guard:
        training = Training(model, train_data, val_data, cfg, device, seed, hparams)
        for _ in training.steps():
            pass
        return training.result()
