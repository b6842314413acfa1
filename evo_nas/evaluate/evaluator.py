"""The fitness evaluator: one request in, one Result out. Failures are results too.   [torch]

An `Evaluator` is a small picklable callable holding only settings; the data are loaded the
first time a process calls it and stay resident on that process's device, so a long-lived
worker pays for loading once. A candidate that runs out of memory, produces a NaN/inf loss,
exceeds its time limit or raises anything at all becomes a FAILED result and the run goes on,
with one exception: a CUDA error after which the process's CUDA context is unusable (an illegal
address, a launch failure, a device-side assert) raises DeviceLost, for the backend to end the
process (docs/backends.md, "A poisoned CUDA context").
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Generator
from dataclasses import dataclass, replace

import torch

from evo_nas.build import build
from evo_nas.config import DataConfig, RunConfig, Skeleton, TrainConfig
from evo_nas.errors import DeviceLost
from evo_nas.evaluate.count import count_macs, count_params
from evo_nas.evaluate.device_data import load_data
from evo_nas.evaluate.devices import torch_device
from evo_nas.evaluate.engine import TrainingFailed, proxy_training, resolve_precision, run_to_end
from evo_nas.journaled import Request
from evo_nas.records import Result, Status


@dataclass(frozen=True)
class EvalSettings:
    """What an evaluation depends on, taken from a RunConfig's parts."""

    data: DataConfig
    split_seed: int  # the run's seed: one fixed split per run
    skeleton: Skeleton
    train: TrainConfig
    device: str = "cpu"
    cpu_threads: int = 1  # fixed per run: CPU float results depend on the thread count
    max_macs: float | None = None  # over a limit: recorded as infeasible, not trained
    max_params: float | None = None

    @classmethod
    def of(cls, cfg: RunConfig) -> EvalSettings:
        return cls(cfg.data, cfg.seed, cfg.skeleton, cfg.train, cfg.backend.device, cfg.backend.cpu_threads,
                   cfg.search.max_macs, cfg.search.max_params)


class Evaluator:
    def __init__(self, settings: EvalSettings):
        self.settings = settings

    def on(self, device: str) -> Evaluator:
        """The same evaluator for another device (a worker's cuda:k)."""
        return self if device == self.settings.device else Evaluator(replace(self.settings, device=device))

    def __call__(self, task: Request) -> Result:
        return run_to_end(self.begin(task))

    def begin(self, task: Request, stream=None) -> Generator[tuple[int, int], None, Result]:
        """The evaluation as a generator: one item per training step ((steps done, steps)),
        the Result as its return value. A worker interleaving several runs each next() with `stream` current."""
        start = time.perf_counter()
        try:
            result = yield from self._evaluate(task, stream)
        except Exception as err:  # noqa: BLE001 - any failure of a candidate is data
            if context_lost(err):  # nothing more can run on this device in this process
                raise self._lost(task, err, time.perf_counter() - start) from err
            result = Result(Status.FAILED, error=describe_error(err))
            if self.settings.device.startswith("cuda"):
                torch.cuda.empty_cache()
        memory = torch.cuda.memory_reserved(self.settings.device) if self.settings.device.startswith("cuda") else None
        return replace(result, device=self.settings.device, wall_time=round(time.perf_counter() - start, 3),
                       memory_reserved=memory)

    def _lost(self, task: Request, err: BaseException, seconds: float) -> DeviceLost:
        device = self.settings.device
        result = Result(Status.FAILED, error=f"CUDA error, the process's CUDA context is lost: {describe_error(err)}",
                        device=device, wall_time=round(seconds, 3))
        return DeviceLost(f"{device}: a CUDA error during evaluation {task.id} left this process unable to use the "
                          f"GPU ({describe_error(err)}); that evaluation is recorded as failed, and resuming the "
                          f"run goes on in a fresh process", result)

    def _evaluate(self, task: Request, stream) -> Generator[None, None, Result]:
        s = self.settings
        if s.device == "cpu":
            torch.set_num_threads(s.cpu_threads)
        torch.manual_seed(task.seed)  # weight initialisation
        model = build(task.genome, s.skeleton)
        counts = {"params": count_params(model), "macs": count_macs(model, s.skeleton.input_shape)}
        over = [name for name, limit in (("macs", s.max_macs), ("params", s.max_params))
                if limit is not None and counts[name] > limit]
        if over:
            return Result(Status.INFEASIBLE, **counts, error=f"{over[0]} over the limit")
        precision = resolve_precision(s.train, torch_device(s.device))
        train_data, val_data = (load_data(s.data, s.split_seed, s.device, part, s.skeleton.classes, precision)
                                for part in ("train", "val"))
        config = replace(s.train, epochs=task_epochs(s.train, task.epochs, len(train_data)))
        try:
            r = yield from proxy_training(model.to(s.device), train_data, val_data, config, s.device, task.seed,
                                          task.genome.hparams, stream)
        except TrainingFailed as failure:
            return Result(Status.FAILED, **counts, error=failure.reason)
        return Result(Status.OK, **counts, accuracy=r.val_accuracy, train_loss=r.train_loss, epochs=r.epochs,
                      path=r.path, fallback=r.fallback_reason, precision=r.precision,
                      images_per_s=round(r.images_per_s, 1))


def task_epochs(train: TrainConfig, epochs: float | None, train_size: int) -> float:
    """The epochs a request trains on a train split of `train_size` images: its own (None:
    train.epochs), or under a budget of train.train_images the images over the split, scaled
    as the request's epochs are to train.epochs (a successive-halving rung trains a fraction
    of the budget)."""
    epochs = train.epochs if epochs is None else epochs
    if train.train_images is None:
        return epochs
    return train.train_images / train_size * epochs / train.epochs


# What a CUDA error that poisons the context says, besides "CUDA error" (the CUDA runtime's
# texts for illegal address, launch failure, device-side assert, ...; cuDNN's and cuBLAS's
# execution failures, which follow such a fault).
_LOST_CONTEXT = ("cuda error", "illegal memory access", "illegal address", "device-side assert",
                 "unspecified launch failure", "misaligned address", "illegal instruction",
                 "uncorrectable ecc", "status_execution_failed", "cuda driver error")


def out_of_memory(err: BaseException) -> bool:
    """CUDA's OutOfMemoryError, or the CPU allocator's "can't allocate memory" RuntimeError."""
    text = str(err).lower()
    return type(err).__name__ == "OutOfMemoryError" or "out of memory" in text or "can't allocate memory" in text


def context_lost(err: BaseException) -> bool:
    """Whether `err` (or what caused it) is a CUDA error after which the process's CUDA context
    is unusable: every later CUDA call fails with it until the process exits. Any CUDA error
    but running out of memory counts: torch.AcceleratorError where torch has it (2.8 on), else
    a RuntimeError with the CUDA runtime's words. (A rare error CUDA can recover from, such as
    a bad launch configuration, then costs a fresh process and a retry: a fair price.)"""
    accelerator = getattr(torch, "AcceleratorError", None)
    seen = 0
    while err is not None and seen < 4:
        if out_of_memory(err):
            return False
        if accelerator is not None and isinstance(err, accelerator):
            return True
        text = str(err).lower()
        if isinstance(err, RuntimeError) and any(words in text for words in _LOST_CONTEXT):
            return True
        err, seen = err.__cause__ or err.__context__, seen + 1
    return False


def describe_error(err: BaseException) -> str:
    """One line: the exception, and where in the code it happened."""
    if out_of_memory(err):
        return "out of memory"
    where = traceback.extract_tb(err.__traceback__)[-1] if err.__traceback__ else None
    at = f" (at {where.filename.rsplit('/', 1)[-1]}:{where.lineno})" if where else ""
    message = " ".join(str(err).split())[:300]
    return f"{type(err).__name__}: {message}{at}"
